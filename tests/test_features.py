"""One video's AU features: agent + CLIP + frame selection, computed on the fly or read back from disk."""
import numpy as np
import pytest

from affectgpt_patch.agent import create_au_agent
from affectgpt_patch.features.clip_encoder import ClipTextEncoder
from affectgpt_patch.features.compute import compute_video_features, features_from_descriptions, video_features
from affectgpt_patch.features.store import FeatureSettings, load_precomputed, save_video_features
from au_core import contract
from au_core.errors import AUAgentError
from au_core.openface import read_openface_csv


@pytest.fixture()
def models(tiny_clip, cache_dir):
    return (create_au_agent(backend="rules", cache_dir=str(cache_dir)),
            ClipTextEncoder(str(tiny_clip), device="cpu", cache_dir=cache_dir))


def test_one_video(samples, models):
    agent, encoder = models
    track = read_openface_csv(samples / "openface" / "sample_00002.csv")
    vf = compute_video_features(track, agent, encoder)
    assert vf.features.shape == (8, 512) and vf.mask.all()
    np.testing.assert_allclose(np.linalg.norm(vf.features, axis=1), 1.0, atol=2e-3)  # float16-rounded
    for frame, input_str, text in zip(vf.frames, vf.inputs, vf.descriptions):
        i = int(np.flatnonzero(track.frames == frame)[0])
        assert track.valid[i] and input_str == contract.format_input(track.au_values(i))
        assert text == agent.describe_inputs([input_str])[0]
    np.testing.assert_array_equal(vf.features, vf.features.astype(np.float16).astype(np.float32))


def test_precomputed_and_realtime_are_bit_identical(samples, models, tmp_path):
    agent, encoder = models
    track = read_openface_csv(samples / "openface" / "sample_00005.csv")
    save_video_features(tmp_path, compute_video_features(track, agent, encoder))
    from_disk = video_features("sample_00005", precomputed_dir=tmp_path, agent=agent, encoder=encoder)
    fresh = video_features("sample_00005", openface_dir=samples / "openface", agent=agent, encoder=encoder)
    np.testing.assert_array_equal(from_disk.features, fresh.features)
    assert from_disk.frames == fresh.frames and from_disk.descriptions == fresh.descriptions
    assert from_disk.mask.tolist() == fresh.mask.tolist()


def test_precomputed_file_with_other_settings_is_an_error(samples, models, tmp_path):
    agent, encoder = models
    track = read_openface_csv(samples / "openface" / "sample_00005.csv")
    save_video_features(tmp_path, compute_video_features(track, agent, encoder, FeatureSettings(frames=4)))
    with pytest.raises(AUAgentError, match=r"sample_00005.json: precomputed with other settings: T 4 \(config: 8\)"):
        video_features("sample_00005", precomputed_dir=tmp_path, openface_dir=samples / "openface",
                       agent=agent, encoder=encoder, settings=FeatureSettings(frames=8))


def test_corrupt_precomputed_file_is_ignored(samples, models, tmp_path):
    agent, encoder = models
    track = read_openface_csv(samples / "openface" / "sample_00005.csv")
    save_video_features(tmp_path, compute_video_features(track, agent, encoder))
    (tmp_path / "sample_00005.npy").write_bytes(b"truncated")
    assert load_precomputed(tmp_path, "sample_00005") is None


def test_no_source_is_a_clear_error(tmp_path):
    with pytest.raises(AUAgentError, match="no precomputed AU features"):
        video_features("missing", precomputed_dir=tmp_path)


def test_all_invalid_video_gives_masked_zeros(tmp_path, models):
    agent, encoder = models
    csv = tmp_path / "dark.csv"
    csv.write_text("frame, success, confidence, AU01_r\n" + "".join(f"{i}, 0, 0.1, 0.5\n" for i in range(1, 20)))
    vf = compute_video_features(read_openface_csv(csv), agent, encoder)
    assert vf.features.shape == (8, 512) and not vf.mask.any() and not vf.features.any()


def test_features_from_descriptions(models):
    _, encoder = models
    vf = features_from_descriptions([40, 5, 90], ["b", "a", "c"], 120, encoder)
    # AffectGPT's frames 1, 16, 31, 46, 61, 76, 91, 106 → the nearest described frame
    assert vf.frames == [5, 5, 40, 40, 40, 90, 90, 90]
    np.testing.assert_array_equal(vf.features[2], vf.features[4])
    assert vf.descriptions[:3] == ["a", "a", "b"] and vf.mask.all()


def test_several_faces_keep_the_video_timeline(tmp_path):
    """Face 1 has the most valid frames but leaves at frame 60 of a 100-frame video: the AU slots still sit at
    AffectGPT's frames of the 100-frame video (1, 26, 51, 76), the last one on face 1's nearest frame."""
    from affectgpt_patch.features.compute import plan_video

    rows = ["frame, face_id, success, confidence, AU01_r, AU12_r"]
    rows += [f"{i}, 0, 1, {0.95 if i % 2 else 0.1}, 0.2, 1.5" for i in range(1, 101)]  # 50 valid frames
    rows += [f"{i}, 1, 1, 0.95, 1.2, 0.0" for i in range(1, 61)]  # 60 valid frames, then gone
    csv = tmp_path / "two_faces.csv"
    csv.write_text("\n".join(rows) + "\n")
    track = read_openface_csv(csv)
    assert track.face_id == 1 and track.video_frames == 100
    plan = plan_video(track, FeatureSettings(frames=4))
    assert plan.frames == [1, 26, 51, 60] and plan.total_frames == 100

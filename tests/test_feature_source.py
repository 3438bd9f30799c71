"""Where a sample's AU feature comes from (features.source.FeatureSource): the shape and width it guarantees, and the
configurations it refuses at dataset construction instead of training on wrong or missing AU features."""
import json
import logging
import shutil

import numpy as np
import pytest

from affectgpt_patch import per_process
from affectgpt_patch.agent import create_au_agent
from affectgpt_patch.au_settings import AUState
from affectgpt_patch.features.clip_encoder import ClipTextEncoder
from affectgpt_patch.features.compute import compute_video_features
from affectgpt_patch.features.source import FeatureSource, SourceSettings
from affectgpt_patch.features.store import FeatureSettings, save_video_features
from au_core import contract
from au_core.errors import AUAgentError
from au_core.openface import read_openface_csv

NAMES = ("sample_00000", "sample_00002", "sample_00005")


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    """The tiny CLIP at ViT-L/14's width (768)."""
    from au_standins.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip768") / "tiny_clip_768.pt", embed_dim=768)


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    """A fresh cache, model memo and warning memory; the rules agent's settings."""
    monkeypatch.setenv("AU_AGENT_CACHE_DIR", str(tmp_path / "cache"))
    per_process.reset()
    return {"au_agent_backend": "rules", "au_agent_cache_dir": str(tmp_path / "cache")}


def agent_source(agent_settings, frames=8, **keys):
    """The feature source of a dataset with these AU config keys, ``use_au_agent`` and AffectGPT's n_frms."""
    return AUState({"use_au_agent": True, **keys, **agent_settings}, n_frms=frames, dataset=None).feature_source


def precompute(folder, samples, clip, cache, names=NAMES, settings=FeatureSettings(frames=8)):
    agent = create_au_agent(backend="rules", cache_dir=str(cache))
    encoder = ClipTextEncoder(str(clip), device="cpu", cache_dir=cache)
    for name in names:
        track = read_openface_csv(samples / "openface" / f"{name}.csv")
        save_video_features(folder, compute_video_features(track, agent, encoder, settings))
    return folder


def edit_record(folder, name, **fields):
    path = folder / f"{name}.json"
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("width", [512, 768])
def test_agent_source_gives_t_by_clip_width(width, samples, tiny_clip, wide_clip, fresh):
    clip = str(tiny_clip if width == 512 else wide_clip)
    source = agent_source(fresh, openface_output_dir=str(samples / "openface"), au_clip_model=clip)
    source.check(NAMES)
    assert source.dim == width
    feature, mask = source.arrays("sample_00002")
    assert feature.shape == (8, width) and feature.dtype == np.float32 and mask.shape == (8,) and mask.all()
    zeros, no_mask = source.arrays("no_such_video")  # the fallback has the same width
    assert zeros.shape == (8, width) and not zeros.any() and not no_mask.any()


def test_feature_width_must_be_the_models(samples, wide_clip, fresh):
    source = agent_source(fresh, openface_output_dir=str(samples / "openface"), au_clip_model=str(wide_clip),
                          au_feature_dim=512)
    with pytest.raises(AUAgentError, match="gives 768-d features, the model's au_feature_dim is 512"):
        source.check(NAMES)
    assert agent_source(fresh, au_clip_model="ViT-L/14", au_precomputed_dir="x").dim == 768  # no weights needed


@pytest.fixture()
def folder(tmp_path, samples, tiny_clip):
    return precompute(tmp_path / "features", samples, tiny_clip, tmp_path / "cache")


def refusal(source, names=NAMES):
    with pytest.raises(AUAgentError) as info:
        source.check(names)
    return info.value


@pytest.mark.parametrize("change, expected", [
    ({"au_frames": 4}, "T 8 (config: 4) in 3 of 3 files"),
    ({"au_sampling": "peaks"}, "sampling 'uniform' (config: 'peaks')"),
    ({"au_min_confidence": 0.5}, "min_confidence 0.8 (config: 0.5)"),
    ({"au_feature_dim": 768}, "feature width 512 (config: 768)"),
])
def test_precomputed_files_made_another_way_are_refused(folder, tiny_clip, fresh, change, expected):
    settings = {"au_precomputed_dir": str(folder), "au_clip_model": str(tiny_clip), **change}
    error = refusal(agent_source(fresh, **settings))
    assert error.path == str(folder) and expected in error.problem
    assert error.problem.startswith("precomputed AU features do not match the config")


def test_contract_agent_and_clip_fingerprints_are_checked(folder, samples, tiny_clip, wide_clip, fresh):
    edit_record(folder, "sample_00002", contract_version="au-contract-0")
    error = refusal(agent_source(fresh, au_precomputed_dir=str(folder), au_clip_model=str(tiny_clip)))
    assert "contract version 'au-contract-0'" in error.problem and "in 1 of 3 files (e.g. sample_00002.json)" \
        in error.problem
    edit_record(folder, "sample_00002", contract_version=contract.CONTRACT_VERSION)

    error = refusal(agent_source(fresh, au_precomputed_dir=str(folder), au_clip_model=str(wide_clip)))
    assert "CLIP fingerprint" in error.problem and "feature width 512 (config: 768)" in error.problem

    edit_record(folder, "sample_00005", agent="another-agent")
    with_openface = agent_source(fresh, au_precomputed_dir=str(folder), openface_output_dir=str(samples / "openface"),
                                 au_clip_model=str(tiny_clip))
    assert "agent fingerprint 'another-agent'" in refusal(with_openface).problem
    with pytest.raises(AUAgentError, match="precomputed with other settings: agent fingerprint"):
        with_openface.get("sample_00005")  # a file replaced after construction is refused when read, too


def test_a_precomputed_folder_mixing_agents_is_refused(folder, tiny_clip, fresh):
    source = agent_source(fresh, au_precomputed_dir=str(folder), au_clip_model=str(tiny_clip))
    source.check(NAMES)  # one agent, one CLIP, the config's settings
    edit_record(folder, "sample_00000", agent="another-agent")
    error = refusal(source)
    assert "a folder mixing 2 agents" in error.problem and "another-agent: 1 files" in error.problem
    assert "a folder mixing 2 agents" in refusal(source, names=None).problem  # inference: the whole folder


def test_too_many_samples_without_au_is_an_error(tmp_path, samples, tiny_clip, fresh, caplog):
    folder = precompute(tmp_path / "features", samples, tiny_clip, tmp_path / "cache", names=NAMES[:2])
    source = agent_source(fresh, au_precomputed_dir=str(folder), au_clip_model=str(tiny_clip))
    error = refusal(source)
    assert error.path == str(folder) and "1 of 3 samples (33.3%) have no AU source (au_max_missing: 0.05)" \
        in error.problem and "sample_00005" in error.problem
    lenient = agent_source(fresh, au_precomputed_dir=str(folder), au_clip_model=str(tiny_clip), au_max_missing=0.5)
    with caplog.at_level(logging.WARNING, logger="affectgpt_patch.features.source"):
        lenient.check(NAMES)
    assert "1 of 3 samples have no AU source" in caplog.text
    feature, mask = lenient.arrays("sample_00005")
    assert feature.shape == (8, 512) and not mask.any()
    np.testing.assert_array_equal(lenient.arrays("sample_00002")[0], np.load(folder / "sample_00002.npy"))


def test_summary_description_only_when_asked(tmp_path, samples, tiny_clip, fresh):
    src = samples / "mer_factory" / "sample_00002"
    root = tmp_path / "mer"
    shutil.copytree(src, root / "sample_00002")
    path = root / "sample_00002" / "sample_00002_au_analysis.json"
    data = json.loads(path.read_text())
    del data["fine_grained_descriptions"]  # only the earlier agent's summaries are left
    path.write_text(json.dumps(data))
    default = FeatureSource(SourceSettings(mer_factory_output=str(root), au_clip_model=str(tiny_clip)))
    assert default.get("sample_00002") is None
    asked = FeatureSource(SourceSettings(mer_factory_output=str(root), au_clip_model=str(tiny_clip),
                                         au_json_text_key="summary_description"))
    vf = asked.get("sample_00002")
    assert vf.features.shape == (8, 512) and vf.mask.all()
    assert set(vf.descriptions) <= {t.strip() for t in data["summary_description"].values()}

"""The text route into AffectGPT: captions written by precompute (resume, inspect), the ``au_route`` of the
mixin in patched fixture checkouts (every mode, training and inference), the captions file, and the AU fork's
Nonverbal variant fed by au-agent's captions."""
import json
from pathlib import Path

import pytest
from fixtures.affectgpt import NAMES, code_root, digest, imported, make_checkout
from omegaconf import OmegaConf

from affectgpt_patch.agent import create_au_agent
from affectgpt_patch.captions.caption import CaptionSettings, build_caption, token_counter
from affectgpt_patch.captions.captions_file import read_captions_file, write_captions
from affectgpt_patch.captions.text_route import caption_sentence
from affectgpt_patch.features.clip_encoder import load_clip_text_encoder
from affectgpt_patch.features.compute import describe_plan, plan_video
from affectgpt_patch.features.precompute import PrecomputeOptions, precompute
from affectgpt_patch.features.store import FeatureSettings
from affectgpt_patch.mixin import AU_PROMPT, AUSample, mode_without_au
from affectgpt_patch.patcher import ConfigOptions, apply_patch, check_patch, revert_patch
from affectgpt_patch.patcher.text_configs import NONVERBAL_TRAIN_CONFIG, RELEASED_INFERENCE_CONFIG, TEXT_TRAIN_CONFIG
from affectgpt_patch.quality.inspect_options import InspectOptions
from affectgpt_patch.quality.inspect_page import build_report
from au_core.errors import AUAgentError
from au_core.openface import read_openface_csv

BASE_MODES = ("multiface_audio_face_text", "multiframe_audio_frame_text", "multiface_audio_face_frame_text",
              "audio_text", "textonly", "audioonly")


@pytest.fixture(scope="module")
def precomputed(tmp_path_factory, samples, tiny_clip, tiny_llm):
    """``precompute`` of the sample CSVs with captions counted by the fixture LLM's tokenizer."""
    root = tmp_path_factory.mktemp("pre")
    run_precompute(root / "features", samples, tiny_clip, tiny_llm, root / "cache")
    return root / "features"


def run_precompute(out, samples, tiny_clip, tiny_llm, cache, caption=None, **kw):
    """The summary of a ``precompute`` run (``caption=False``: features only)."""
    caption = CaptionSettings(au_text_tokenizer=str(tiny_llm)) if caption is None else caption
    opts = PrecomputeOptions(samples / "openface", out, progress=False, caption=caption or None, **kw)
    agent = create_au_agent(backend="rules", cache_dir=str(cache))
    return precompute(opts, agent, load_clip_text_encoder(str(tiny_clip), cache_dir=cache))


def record(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


# ---- precompute


def test_precompute_stores_the_caption_of_the_chosen_frames(precomputed, samples, tiny_llm):
    meta = record(precomputed, "sample_00000")
    plan = plan_video(read_openface_csv(samples / "openface" / "sample_00000.csv"), FeatureSettings())
    descriptions = dict(zip(meta["inputs"], meta["descriptions"]))
    count = token_counter(str(tiny_llm))
    expected = build_caption(plan.times, describe_plan(plan, descriptions), 256, count, count.fingerprint)
    assert meta["caption"] == expected.record()
    assert meta["caption"]["text"] and meta["caption"]["tokens"] <= 256
    assert meta["agent"] and meta["clip"]  # beside the features, under the same fingerprints


def test_rerun_skips_then_redoes_on_another_budget(precomputed, samples, tiny_clip, tiny_llm, tmp_path):
    out = tmp_path / "f"
    n = run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c")["done"]
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c")["skipped"] == n
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before
    summary = run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c",
                             CaptionSettings(au_text_max_tokens=120, au_text_tokenizer=str(tiny_llm)))
    assert summary["done"] == n and record(out, "sample_00000")["caption"]["max_tokens"] == 120


def test_shards_write_the_same_captions(precomputed, samples, tiny_clip, tiny_llm, tmp_path):
    out = tmp_path / "f"
    for i in range(2):
        run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c", shard=(i, 2))
    for p in precomputed.glob("sample_*.json"):
        assert record(out, p.stem)["caption"] == record(precomputed, p.stem)["caption"]


def test_a_budget_below_one_description_stops_before_writing(samples, tiny_clip, tiny_llm, tmp_path):
    with pytest.raises(AUAgentError, match="au_text_max_tokens 2 is smaller than one description"):
        run_precompute(tmp_path / "f", samples, tiny_clip, tiny_llm, tmp_path / "c",
                       CaptionSettings(au_text_max_tokens=2, au_text_tokenizer=str(tiny_llm)))
    assert not list((tmp_path / "f").glob("*.npy"))


def test_inspect_shows_the_caption(precomputed, tmp_path):
    page, _ = build_report(InspectOptions(input=precomputed, out=tmp_path / "page.html", progress=False))
    html = page.read_text(encoding="utf-8")
    assert "AU caption" in html and "of 256 tokens" in html


# ---- the captions file


def test_captions_file_round_trip_and_merge(precomputed, tmp_path):
    out = tmp_path / "captions.json"
    write_captions(precomputed, "MERCaptionPlus", out)
    write_captions(precomputed, "MER2023", out)
    data = read_captions_file(out)
    assert set(data) == {"MERCaptionPlus", "MER2023"}
    assert data["MER2023"]["sample_00000"]["caption"] == record(precomputed, "sample_00000")["caption"]["text"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"MER2023": {"a": "just text"}}')
    with pytest.raises(AUAgentError, match=r"bad.json: MER2023/a: expected"):
        write_captions(precomputed, "MER2023", bad)


def test_too_many_videos_without_a_caption(samples, tiny_clip, tiny_llm, tmp_path):
    out = tmp_path / "f"
    run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c", caption=False)
    with pytest.raises(AUAgentError, match="have no AU caption"):
        write_captions(out, "MER2023", tmp_path / "captions.json")
    assert not (tmp_path / "captions.json").exists()


# ---- the mixin's au_route in a patched upstream fixture


def patched(tmp_path, features_dir, route, clip=None):
    root = make_checkout(tmp_path / "repo", "upstream", "nested")
    apply_patch(root, ConfigOptions(precomputed_dir=str(features_dir)))
    cfg = OmegaConf.load(code_root(root) / TEXT_TRAIN_CONFIG)
    cfg.datasets.mercaptionplus.au_route = route
    if clip is not None:  # the features' CLIP (route both)
        cfg.datasets.mercaptionplus.au_clip_model = str(clip)
    return root, cfg


def with_au(mode):
    parts = mode.split("_")
    return "_".join(parts[:-1] + ["au", parts[-1]]) if parts[-1] == "text" else mode + "_au"


@pytest.mark.parametrize("route", ["text", "both"])
def test_caption_sentence_in_every_mode(precomputed, tmp_path, tiny_llm, tiny_clip, data_dir, route):
    root, cfg = patched(tmp_path, precomputed, route, tiny_clip)
    caption = record(precomputed, "sample_00000")["caption"]["text"]
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = ag.registry.get_builder_class("mercaptionplus")(cfg.datasets.mercaptionplus, cfg.model) \
            .build_datasets()["train"]
        dataset.au_sample = AUSample("sample_00000")  # as after reading that sample
        for base in BASE_MODES:
            mode = with_au(base)
            assert mode_without_au(mode) == base
            plain = dataset.get_prompt_for_multimodal(base, "hello", "q?")
            prompt = dataset.get_prompt_for_multimodal(mode, "hello", "q?")
            segment = caption_sentence(caption) + (AU_PROMPT if route == "both" else "")
            assert prompt.replace(segment, "", 1) == plain, mode
            anchor = "The subtitle of this video is" if "The subtitle" in plain else "Now, please answer"
            assert prompt.index(segment) < prompt.index(anchor)
            assert ("au" in dataset.get_needed_data(mode)) == (route == "both")


def test_training_and_inference_see_the_same_caption(precomputed, tmp_path, tiny_llm, data_dir):
    root, cfg = patched(tmp_path, precomputed, "text")
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = ag.registry.get_builder_class("mercaptionplus")(cfg.datasets.mercaptionplus, cfg.model) \
            .build_datasets()["train"]
        item = dataset[0]
        assert "au" not in item and "aus" not in dataset.collater([item, dataset[1]])
        trained = dataset.tokenizer.decode(item["text_input"])
        name = next(n for n in NAMES if record(precomputed, n)["caption"]["text"] in trained)
        # inference, as the patched inference_hybird.py builds its dataset
        infer = ag.builders.MER2023_Dataset()
        infer.needed_data = infer.get_needed_data(cfg.inference.face_or_frame)
        infer.vis_processor = dataset.vis_processor
        infer.n_frms = cfg.model.vis_processor.train.n_frms
        infer.configure_au(cfg.inference, *cfg.datasets.values(), cfg.model)
        assert "au" not in infer.needed_data  # read with the default route, dropped once au_route is read
        infer.read_frame_face_audio_text(str(data_dir / "video" / f"{name}.mp4"), None, None, None)
        prompt = infer.get_prompt_for_multimodal(cfg.inference.face_or_frame, "hello there", "q?")
        assert caption_sentence(record(precomputed, name)["caption"]["text"]) in prompt


def test_text_route_refuses_a_folder_without_captions(samples, tiny_clip, tiny_llm, data_dir, tmp_path):
    out = tmp_path / "f"
    run_precompute(out, samples, tiny_clip, tiny_llm, tmp_path / "c", caption=False)
    root, cfg = patched(tmp_path, out, "text")
    with imported(root, tiny_llm, data_dir) as ag:
        with pytest.raises(AUAgentError, match=r"3 of 3 samples \(100.0%\) have no AU caption"):
            ag.registry.get_builder_class("mercaptionplus")(cfg.datasets.mercaptionplus, cfg.model).build_datasets()


def test_released_checkpoint_config_keeps_its_mode_plus_au(precomputed, tmp_path):
    root, _ = patched(tmp_path, precomputed, "text")
    cfg = OmegaConf.load(code_root(root) / RELEASED_INFERENCE_CONFIG)
    assert cfg.inference.face_or_frame == "multiface_audio_face_au_text"  # the released model's mode + AU
    assert cfg.inference.au_route == "text" and cfg.inference.au_precomputed_dir == str(precomputed)


# ---- the AU fork's Nonverbal commits


def test_nonverbal_fork_is_recognised_configured_and_reverted(tmp_path):
    root = make_checkout(tmp_path / "repo", "nonverbal_fork", "flat")
    before = digest(root)
    with pytest.raises(AUAgentError, match="--captions"):
        apply_patch(root, ConfigOptions())
    report = apply_patch(root, ConfigOptions(captions_file=str(tmp_path / "captions.json")))
    assert report.checkout.variant == "nonverbal-fork" and not report.states  # no code edits
    cfg = OmegaConf.load(root / NONVERBAL_TRAIN_CONFIG)
    entry = cfg.datasets.mercaptionplus
    assert entry.use_nonverbal_text is True and entry.nonverbal_json == str(tmp_path / "captions.json")
    assert check_patch(root).complete
    revert_patch(root)
    assert digest(root) == before


def test_nonverbal_fork_reads_au_agent_captions(precomputed, tmp_path, tiny_llm, data_dir):
    captions = tmp_path / "captions.json"
    write_captions(precomputed, "MERCaptionPlus", captions)
    root = make_checkout(tmp_path / "repo", "nonverbal_fork", "nested")
    apply_patch(root, ConfigOptions(captions_file=str(captions)))
    cfg = OmegaConf.load(code_root(root) / NONVERBAL_TRAIN_CONFIG)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = ag.registry.get_builder_class("mercaptionplus")(cfg.datasets.mercaptionplus, cfg.model) \
            .build_datasets()["train"]
        trained = dataset.tokenizer.decode(dataset[0]["text_input"])
        assert any(f"<Nonverbal>{record(precomputed, n)['caption']['text']}</Nonverbal>" in trained for n in NAMES)

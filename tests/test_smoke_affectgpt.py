"""``au-agent smoke-affectgpt``: what runs without AffectGPT (stand-ins, tiny media, run-time shims and probes,
config handling, the table), plus the whole smoke when ``AFFECTGPT_CHECKOUT`` names a checkout."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
import wave
from pathlib import Path

import numpy as np
import pytest

import au_agent_cli
from affectgpt_patch.smoke import configure, media, report, runner, shims
from au_core.errors import AUAgentError
from au_standins import affectgpt_encoders

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ stand-ins


def test_visual_standin_loads_like_clip_vit_large(tmp_path):
    """AffectGPT's CLIP_VIT_LARGE: AutoModel + AutoFeatureExtractor on the folder, get_image_features."""
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoModel

    folder = affectgpt_encoders.build_visual_encoder(tmp_path / "visual", projection_dim=48)
    model = AutoModel.from_pretrained(folder)
    # AffectGPT's transformers (4.49) maps CLIP to a feature extractor; 5.x only to an image processor.
    auto = transformers.AutoFeatureExtractor if int(transformers.__version__.split(".")[0]) < 5 \
        else transformers.AutoImageProcessor
    processor = auto.from_pretrained(folder)
    frames = [Image.fromarray(np.full((224, 224, 3), v, dtype=np.uint8)) for v in (0, 255)]
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = model.get_image_features(pixels)
    if not isinstance(feats, torch.Tensor):  # transformers 5.x returns an output object
        feats = feats.pooler_output
    assert pixels.shape[-2:] == (affectgpt_encoders.IMAGE_SIZE, affectgpt_encoders.IMAGE_SIZE)
    assert feats.shape == (2, 48) == (2, model.config.projection_dim)


def test_audio_standin_has_the_four_hidden_states_affectgpt_averages(tmp_path):
    import torch
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    folder = affectgpt_encoders.build_audio_encoder(tmp_path / "audio")
    model = AutoModel.from_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    raw = np.random.default_rng(0).standard_normal((2, 32000)).astype(np.float32)  # 2 clips of 2 s
    values = extractor(raw, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        hidden = model(values, output_hidden_states=True).hidden_states
    stacked = torch.stack(hidden)[[-4, -3, -2, -1]].mean(dim=0).mean(dim=1)
    assert type(model).__name__ == "HubertModel" and stacked.shape == (2, model.config.hidden_size)
    with pytest.raises(ValueError, match="3 layers"):
        affectgpt_encoders.build_audio_encoder(tmp_path / "shallow", num_layers=2)


def test_llm_standin_tokenizer_is_what_affectgpt_expects(tiny_qwen2):
    """load_tokenizer_from_LLM: slow tokenizer, <|im_start|> as BOS, patch tokens added after the vocab."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2, use_fast=False)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    tok.bos_token = "<|im_start|>"
    tok.pad_token = tok.eos_token
    tok.add_tokens(["<FaceHere>", "<AUHere>"], special_tokens=True)
    ids = tok("a <AUHere> b", add_special_tokens=False).input_ids
    assert tok.get_vocab()["<AUHere>"] in ids and tok.bos_token_id is not None
    assert AutoModelForCausalLM.from_pretrained(tiny_qwen2).config.num_hidden_layers >= 1


# --------------------------------------------------------------------------------------------- tiny media


@pytest.fixture(scope="module")
def tiny_media(tmp_path_factory):
    return media.write_tiny_dataset(tmp_path_factory.mktemp("media"), media.MediaSpec(samples=2, frames=12))


def test_tiny_dataset_layout_matches_mercaptionplus(tiny_media):
    import pandas as pd

    from au_core.openface import read_openface_csv

    folder = tiny_media.folder
    assert folder.name == "mer2025-dataset"
    openset = pd.read_csv(folder / "track2_train_mercaptionplus.csv")
    assert list(openset.columns) == ["name", "openset"] and openset["openset"][0].startswith("[")
    assert list(pd.read_csv(folder / "track3_train_mercaptionplus.csv").columns) == ["name", "reason"]
    assert list(pd.read_csv(folder / "subtitle_chieng.csv").columns) == ["name", "chinese", "english"]
    for name in tiny_media.names:
        face = np.load(tiny_media.face(name))
        assert face.dtype == np.uint8 and face.shape == (12, 48, 48, 3)
        with wave.open(str(tiny_media.audio(name))) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2) and w.getnframes() == 16000
        assert len(read_openface_csv(tiny_media.openface_dir / f"{name}.csv")) == 12


def _decode_with_av(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_tiny_video_decodes_with_its_frames(tiny_media):
    frames = _decode_with_av(tiny_media.video(tiny_media.names[0]))
    assert frames.shape == (12, 48, 64, 3)
    assert not np.array_equal(frames[0], frames[-1]), "the moving square makes frames differ"


def test_tiny_video_decodes_with_decord(tiny_media):
    """AffectGPT reads videos with decord (in .venv-affectgpt, not in the main environment)."""
    decord = pytest.importorskip("decord", reason="decord is installed in AffectGPT's environment only")
    vr = decord.VideoReader(str(tiny_media.video(tiny_media.names[0])))
    assert len(vr) == 12 and vr[0].shape == (48, 64, 3)


# ------------------------------------------------------------------------------------------ run-time shims


def _runner_class():
    class Runner:
        """AffectGPT's RunnerBase.model: the wrapper is only made when .to(device) moved the model."""

        def __init__(self, model):
            self._model, self._wrapped_model = model, None

        @property
        def model(self):
            return self._wrapped_model

    return Runner


def test_runner_model_falls_back_to_the_unwrapped_model():
    Runner = _runner_class()
    assert Runner("m").model is None
    shims.patch_runner_model(Runner)
    runner_ = Runner("m")
    assert runner_.model == "m" and runner_._wrapped_model == "m"
    runner_._wrapped_model = "ddp"
    assert runner_.model == "ddp", "a real wrapper is left alone"


def test_prefetch_loader_is_replaced_where_it_is_imported():
    with_name = types.ModuleType("runner_base")
    with_name.PrefetchLoader = object
    without = types.ModuleType("other")
    assert shims.patch_prefetch_loader(with_name, without, None) == ["runner_base"]
    loader = with_name.PrefetchLoader([{"x": 1}, {"x": 2}])
    assert list(loader) == [{"x": 1}, {"x": 2}] and len(loader) == 2 and loader.count({"x": 1}) == 1


def test_torch_version_shim_only_where_the_version_is_unsupported():
    import torch

    old = types.ModuleType("base_task")
    old.torch = types.SimpleNamespace(__version__="2.11.0+cpu", zeros=torch.zeros)
    fine = types.ModuleType("runner_base")
    fine.torch = types.SimpleNamespace(__version__="2.4.0+cu121")
    assert shims.patch_torch_version(old, fine) == ["base_task"]
    assert old.torch.__version__.startswith("2.4.0") and old.torch.zeros(2).shape == (2,)
    assert fine.torch.__version__ == "2.4.0+cu121"
    assert str(torch.__version__) != old.torch.__version__ or torch.__version__.startswith("2.4.0"), \
        "the real torch module is not changed"


def test_functional_tensor_alias_only_fills_a_missing_module(monkeypatch):
    import torchvision.transforms.functional as functional

    monkeypatch.delitem(sys.modules, shims.FUNCTIONAL_TENSOR, raising=False)
    shims.alias_functional_tensor()
    assert sys.modules[shims.FUNCTIONAL_TENSOR] is functional
    marker = types.ModuleType(shims.FUNCTIONAL_TENSOR)
    monkeypatch.setitem(sys.modules, shims.FUNCTIONAL_TENSOR, marker)
    shims.alias_functional_tensor()
    assert sys.modules[shims.FUNCTIONAL_TENSOR] is marker, "an installed module is left alone"


def test_build_model_hook_may_replace_the_model():
    class Task:
        def build_model(self, cfg):
            return f"model({cfg})"

    seen = []
    shims.patch_build_model(Task, lambda model, cfg: seen.append(model) or model.upper())
    assert Task().build_model("c") == "MODEL(C)" and seen == ["model(c)"]


@pytest.mark.parametrize("name, au", [("au_branch.au_llama_proj.weight", True), ("au_llama_proj.bias", True),
                                      ("audio_llama_proj.weight", False), ("llama_model.base_model.x", False),
                                      ("multi_au_fusion.au_query", True)])
def test_au_parameter_names(name, au):
    assert shims.is_au_name(name) is au


class _TinyAffect:
    """A model shaped like AffectGPT's: encode_au_merge → tokens, spliced at <AUHere> ids into the LLM input."""

    AU_ID = 7

    @staticmethod
    def build(splice_right: bool = True):
        import torch
        import torch.nn as nn

        class LLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Linear(4, 1)

            def forward(self, inputs_embeds=None):
                return self.head(inputs_embeds).mean()

        class Model(nn.Module):
            AU_PATCH_TOKEN_ID = _TinyAffect.AU_ID
            num_au_query_token = 2

            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(10, 4)
                self.au_branch = nn.Linear(3, 4)
                self.llama_model = LLM()

            def encode_au_merge(self, aus, masks=None):
                tokens = self.au_branch(aus.mean(dim=1, keepdim=True)).expand(-1, 2, -1)
                return aus, tokens

            def forward(self, samples):
                ids = samples["input_ids"]
                tokens = self.encode_au_merge(samples["aus"])[1]
                embeds = self.embed(ids.clamp(max=9) * (ids != self.AU_PATCH_TOKEN_ID))
                rows = []
                for b in range(ids.shape[0]):
                    pos = torch.where(ids[b] == self.AU_PATCH_TOKEN_ID)[0]
                    put = tokens[b] if splice_right else torch.zeros_like(tokens[b])
                    rows.append(torch.cat([embeds[b, :pos[0]], put, embeds[b, pos[-1] + 1:]]))
                return {"loss": self.llama_model(inputs_embeds=torch.stack(rows))}

        return Model()


def test_recorder_sees_loss_gradient_features_and_an_exact_splice():
    import torch

    model = _TinyAffect.build()
    rec = shims.Recorder()
    rec.attach(model)
    samples = {"input_ids": torch.tensor([[1, 7, 7, 2], [3, 4, 7, 7]]), "aus": torch.randn(2, 5, 3),
               "au_masks": torch.ones(2, 5, dtype=torch.bool)}
    model(samples)["loss"].backward()
    d = rec.data
    assert len(d["losses"]) == 1 and math.isfinite(d["losses"][0])
    assert set(d["grad_norms"]) == {"au_branch.weight", "au_branch.bias"} == set(d["trainable"])
    assert all(g[0] > 0 for g in d["grad_norms"].values())
    assert d["batches"] == [{"aus": [2, 5, 3], "aus_nonzero": True, "valid_frames": [5, 5]}]
    assert d["splices"] == [{"counts": [2, 2], "expected": 2, "exact": [True, True]}]


def test_recorder_catches_a_splice_that_is_not_the_au_output():
    import torch

    model = _TinyAffect.build(splice_right=False)
    rec = shims.Recorder()
    rec.attach(model)
    model({"input_ids": torch.tensor([[1, 7, 7, 2]]), "aus": torch.randn(1, 5, 3)})
    assert rec.data["splices"][0]["exact"] == [False]


def test_recorder_report_is_json_even_for_a_nan_loss(tmp_path):
    rec = shims.Recorder()
    rec.data["losses"] = [float("nan"), 1.0]
    rec.write(str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["losses"] == ["nan", 1.0]


# ------------------------------------------------------------------------------------------------ table


def _train_record(**kw):
    rec = {"losses": [7.3, 7.1], "error": None, "trainable": ["au_branch.w", "au_branch.b"], "frozen": [],
           "grad_norms": {"au_branch.w": [0.5, 0.4], "au_branch.b": [0.2, 0.1]},
           "batches": [{"aus": [2, 8, 512], "aus_nonzero": True, "valid_frames": [8, 7]}]}
    rec.update(kw)
    return rec


def _rows(**kw):
    changed = kw.pop("changed", {"au_branch.w": True, "au_branch.b": True})
    return {r.check: r for r in report.training_rows(_train_record(**kw), 2, changed)}


def test_training_rows_pass_on_a_healthy_run():
    rows = _rows()
    assert all(r.ok for r in rows.values()), rows
    assert "train.py ran 2 steps" in rows


@pytest.mark.parametrize("change, failing", [
    ({"losses": [7.3, "nan"]}, "loss is finite"),
    ({"losses": [7.3]}, "train.py ran 2 steps"),
    ({"error": "RuntimeError: boom"}, "train.py ran 2 steps"),
    ({"grad_norms": {"au_branch.w": [0.5], "au_branch.b": [0.0, 0.0]}}, "AU branch got a gradient"),
    ({"grad_norms": {"au_branch.w": [0.5], "au_branch.b": [1e-10]}}, "AU branch got a gradient"),
    ({"grad_norms": {"au_branch.w": [0.5]}}, "AU branch got a gradient"),
    ({"trainable": [], "frozen": []}, "AU branch got a gradient"),
    ({"changed": {"au_branch.w": True, "au_branch.b": False}}, "AU weights changed by training"),
    ({"batches": [{"aus": None}]}, "AU features reached the model"),
    ({"batches": [{"aus": [2, 8, 512], "aus_nonzero": False, "valid_frames": [8, 8]}]},
     "AU features reached the model"),
    ({"batches": [{"aus": [2, 8, 512], "aus_nonzero": True, "valid_frames": [8, 0]}]},
     "AU features reached the model"),
])
def test_each_training_failure_fails_its_row(change, failing):
    rows = _rows(**change)
    assert not rows[failing].ok, rows[failing]


def test_a_branch_frozen_by_the_config_has_nothing_to_learn():
    frozen = _train_record(trainable=[], frozen=["au_branch.w", "au_branch.b"], grad_norms={})
    rows = {r.check: r for r in report.training_rows(frozen, 2, {"au_branch.w": False, "au_branch.b": False},
                                                     frozen_by_config=True)}
    assert rows["AU branch got a gradient"].ok and rows["AU weights changed by training"].ok
    moved = report.training_rows(frozen, 2, {"au_branch.w": True, "au_branch.b": False}, frozen_by_config=True)
    assert not moved[-1].ok, "a frozen tensor that changed is a failure"
    unasked = {r.check: r for r in report.training_rows(frozen, 2, {}, frozen_by_config=False)}
    assert not unasked["AU branch got a gradient"].ok, "frozen without being asked to is a failure"


def test_checkpoint_inference_splice_and_answer_rows():
    assert report.checkpoint_row("c.pth", {"a": True, "b": True}).ok
    missing = report.checkpoint_row("c.pth", {"a": True, "b": None})
    assert not missing.ok and "missing: b" in missing.detail
    frozen = report.checkpoint_row("c.pth", {"a": True, "b": None}, frozen=["b"])
    assert frozen.ok and "rebuilt from au_init_seed: b" in frozen.detail, "frozen_au_proj: the runner saves no b"
    assert not report.checkpoint_row("c.pth", {"a": None, "b": None}, frozen=["b"]).ok
    assert not report.checkpoint_row(None, None).ok
    assert report.inference_weights_row({"a": True}, None).ok
    assert not report.inference_weights_row({"a": False}, None).ok
    assert not report.inference_weights_row(None, "RuntimeError: x").ok
    good = [{"counts": [3, 3], "exact": [True, True]}]
    assert report.splice_row(3, good, [{"counts": [3], "exact": [True]}]).ok
    assert not report.splice_row(3, good, [{"counts": [1], "exact": [True]}]).ok
    assert not report.splice_row(3, good, [{"counts": [3], "exact": [False]}]).ok
    assert not report.splice_row(3, good, []).ok
    assert report.answer_row({"answer": "happy", "generated_tokens": 3}).ok
    assert report.answer_row({"answer": "", "generated_tokens": 1}).ok, "random weights may stop at once"
    assert not report.answer_row({"answer": "happy", "generated_tokens": 0}).ok
    assert not report.answer_row({"answer": None, "generated_tokens": 2}).ok
    assert not report.answer_row({"error": "x", "generated_tokens": 2}).ok
    assert report.answer_row({"answer": "x", "generated_tokens": 1}, "text").check == "Chat answered (text route)"


def test_table_and_exit_code():
    ok = report.SmokeReport("title", [report.Row("a", True, "fine"), report.Row("b", True)])
    bad = report.SmokeReport("title", [report.Row("a", True), report.Row("b", False, "why")], ["note"])
    assert ok.exit_code == 0 and bad.exit_code == 1
    text = bad.format()
    assert "note" in text and "FAIL    why" in text and "1/2 checks passed; 1 failed" in text
    assert report.SmokeReport("t", []).exit_code == 1, "no checks is not a pass"


# ----------------------------------------------------------------------------------------------- config


def test_overrides_parse_and_route_to_their_section():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"arch": "affectgpt", "num_au_query_token": 1},
                            "datasets": {"mercaptionplus": {"face_or_frame": "x"}, "ovmerd": {}},
                            "run": {"device": "cuda"}, "inference": {}})
    parsed = configure.parse_overrides(["num_au_query_token=3", "au_fusion_type=mean", "frozen_au_proj=true",
                                     "au_frames=6", "run.amp=False"])
    done = configure.apply_overrides(cfg, parsed)
    assert cfg.model.num_au_query_token == 3 and cfg.model.au_fusion_type == "mean"
    assert cfg.model.frozen_au_proj is True and cfg.run.amp is False
    assert cfg.datasets.mercaptionplus.au_frames == 6 and cfg.datasets.ovmerd.au_frames == 6
    assert "model.num_au_query_token=3" in done
    for bad in ("novalue", "=3", "x=[unclosed"):
        with pytest.raises(AUAgentError, match="--set"):
            configure.parse_overrides([bad])


FAKE_CONFIG_PY = '''import os
PATH_TO_LLM = {'Qwen25': '/models/Qwen2.5-7B-Instruct'}
PATH_TO_VISUAL = {'CLIP_VIT_LARGE': '/models/clip'}
PATH_TO_AUDIO = {'HUBERT_LARGE': '/models/hubert'}
DATA_DIR = {'MERCaptionPlus': os.path.join('/data/affectgpt', 'mer2025-dataset'),
            'MER2023': os.path.join('/data/affectgpt', 'mer2023-dataset-process')}
PATH_TO_RAW_VIDEO = {'MERCaptionPlus': os.path.join(DATA_DIR['MERCaptionPlus'], 'video'),
                     'MER2023': os.path.join(DATA_DIR['MER2023'], 'video')}
PATH_TO_LABEL = {'MERCaptionPlus': '/elsewhere/labels.csv'}
DEFAULT_AU_PATCH_TOKEN = '<AUHere>'
'''


def test_config_py_constants_point_at_the_standins(tmp_path):
    (tmp_path / "config.py").write_text(FAKE_CONFIG_PY)
    si = affectgpt_encoders.StandIns(llm=tmp_path / "llm", visual=tmp_path / "vis", audio=tmp_path / "aud")
    configure.point_config_at_standins(tmp_path, si, tmp_path / "data")
    configure.point_config_at_standins(tmp_path, si, tmp_path / "data")  # idempotent
    ns: dict = {}
    exec(compile((tmp_path / "config.py").read_text(), "config.py", "exec"), ns)
    assert ns["PATH_TO_LLM"] == {"Qwen25": str(tmp_path / "llm")}
    assert ns["PATH_TO_VISUAL"]["CLIP_VIT_LARGE"] == str(tmp_path / "vis")
    assert ns["DATA_DIR"]["MERCaptionPlus"] == str(tmp_path / "data" / "mer2025-dataset")
    assert ns["PATH_TO_RAW_VIDEO"]["MER2023"] == str(tmp_path / "data" / "mer2023-dataset-process" / "video")
    assert ns["PATH_TO_LABEL"]["MERCaptionPlus"] == "/elsewhere/labels.csv", "paths outside DATA_DIR stay"
    assert (tmp_path / "config.py").read_text().count("au-agent smoke-affectgpt") == 1


def test_smoke_config_runs_few_cpu_steps_on_the_tiny_data(tmp_path):
    from omegaconf import OmegaConf

    base = tmp_path / "au.yaml"
    OmegaConf.save(OmegaConf.create({
        "model": {"arch": "affectgpt", "ckpt": "/released.pth", "num_au_query_token": 1, "skip_encoders": True},
        "datasets": {"mercaptionplus": {"face_or_frame": "multiface_audio_face_frame_au_text",
                                        "openface_output_dir": "/user/openface", "use_preextracted_features": True}},
        "run": {"device": "cuda", "amp": True, "max_epoch": 60, "iters_per_epoch": 5000, "num_workers": 4},
        "inference": {"face_or_frame": "x"}}), base)
    opts = runner.SmokeOptions(checkout=tmp_path, steps=3)
    cfg, applied = configure.smoke_config(base, opts, tmp_path / "feats", tmp_path / "clip.pt",
                                       configure.parse_overrides(["num_au_query_token=3"]))
    assert (cfg.run.device, cfg.run.amp, cfg.run.max_epoch, cfg.run.iters_per_epoch, cfg.run.num_workers) == \
        ("cpu", False, 1, 3, 0)
    assert cfg.model.ckpt == "" and cfg.model.skip_encoders is False and cfg.model.num_au_query_token == 3
    assert applied == ["model.num_au_query_token=3"]
    ds = cfg.datasets.mercaptionplus
    assert ds.au_precomputed_dir == str(tmp_path / "feats") and ds.openface_output_dir is None
    assert ds.use_au_agent is True and ds.use_preextracted_features is False
    assert ds.au_clip_model == str(tmp_path / "clip.pt")


def test_latest_checkpoint_is_the_highest_epoch(tmp_path):
    job = tmp_path / "output" / "au_agent_smoke" / "au_agent_smoke_2026"
    job.mkdir(parents=True)
    for name in ("checkpoint_000000_loss_0.000.pth", "checkpoint_000002_loss_7.1.pth",
                 "checkpoint_000001_loss_7.4.pth"):
        (job / name).write_bytes(b"")
    assert runner.latest_checkpoint(tmp_path, runner.SMOKE_CONFIG).name.startswith("checkpoint_000002")
    assert runner.latest_checkpoint(tmp_path / "none", runner.SMOKE_CONFIG) is None


def test_bad_path_is_one_line_and_exit_1(tmp_path, capsys):
    assert au_agent_cli.main(["smoke-affectgpt", str(tmp_path / "missing")]) == 1
    assert au_agent_cli.main(["smoke-affectgpt", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such folder" in err[0] and "not an AffectGPT checkout" in err[1]
    assert au_agent_cli.main(["smoke-affectgpt", str(tmp_path), "--set", "nokey"]) == 1


# ----------------------------------------------------------------------------------- the whole smoke


def _affectgpt_python() -> str:
    venv = REPO / ".venv-affectgpt" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def test_caption_rows_read_the_caption_back_from_the_llm_input():
    from affectgpt_patch.captions.text_route import CAPTION_CLOSE, CAPTION_OPEN, caption_sentence
    from affectgpt_patch.smoke.caption_report import caption_rows, no_branch_row

    captions = {"a": "0.0 s: Lips apart.", "b": "0.4 s: Brows raised."}
    prompt = "###Human: " + caption_sentence(captions["b"]) + "The subtitle of this video is: <Subtitle>hi</Subtitle>."
    markers = (CAPTION_OPEN, CAPTION_CLOSE)
    words = lambda text: len(text.split())  # noqa: E731
    rows = caption_rows([prompt, prompt], [prompt], captions, "b", 4, words, markers)
    assert [r.ok for r in rows] == [True, True, True], rows
    bad = caption_rows([prompt.replace("raised", "lowered")], [prompt], captions, "a", 3, words, markers)
    assert [r.ok for r in bad] == [False, False, False]  # altered text, over budget, another sample's caption
    assert not caption_rows([prompt], ["no caption here"], captions, "b", 4, words, markers)[0].ok
    text_run = {"batches": [{"aus": None}], "splices": [{"counts": [0, 0]}]}
    assert no_branch_row(text_run, {"batches": [{"aus": None}]}).ok
    assert not no_branch_row({"batches": [{"aus": [2, 8, 512]}], "splices": [{"counts": [1, 1]}]}, {}).ok


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AFFECTGPT_CHECKOUT"),
                    reason="set AFFECTGPT_CHECKOUT to an AffectGPT checkout (and run `make affectgpt-env`) "
                           "to run the whole smoke test")
@pytest.mark.parametrize("route", ["features", "text", "both"])
def test_whole_smoke_on_a_real_checkout(route):
    checkout = os.environ["AFFECTGPT_CHECKOUT"]
    before = _tree_state(Path(checkout))
    proc = subprocess.run([_affectgpt_python(), "-m", "au_agent_cli", "smoke-affectgpt", checkout,
                           "--au-route", route],
                          cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "checks passed" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0 and " FAIL " not in proc.stdout, proc.stdout
    assert _tree_state(Path(checkout)) == before, "the user's checkout must not change"


def _tree_state(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_compare_answers_one_sample_three_ways(tmp_path):
    from omegaconf import OmegaConf

    from affectgpt_patch.smoke.compare import compare, format_comparison

    cfg = OmegaConf.create({"datasets": {"mercaptionplus": {"face_or_frame": "multiface_audio_face_au_text",
                                                            "au_route": "both"}}})
    (tmp_path / "train_configs").mkdir()
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "s1.json").write_text(json.dumps({"caption": {"text": "0.0 s: A smile."}}))
    seen = []

    def infer(rel, out):
        ds = OmegaConf.load(tmp_path / rel).datasets.mercaptionplus
        seen.append((ds.face_or_frame, ds.au_route))
        return {"answer": f"answer {len(seen)}", "sample": "s1"}

    results = compare(cfg, tmp_path, tmp_path / "probes", True, infer)
    assert seen == [("multiface_audio_face_text", "both"), ("multiface_audio_face_au_text", "text"),
                    ("multiface_audio_face_au_text", "features")]
    text = format_comparison(results, tmp_path / "f")
    assert "no AU              'answer 1'" in text and "AU caption: 0.0 s: A smile." in text
    assert "n/a: checkpoint has no AU branch" in format_comparison(compare(cfg, tmp_path, tmp_path, False, infer),
                                                                 tmp_path / "f")

"""``au-agent smoke-affectgpt PATH``: train a patched copy of an AffectGPT checkout for a few steps with its own
``train.py``, answer one sample with its own ``Chat``, and print a table of what must hold for AU features to
train and answer: before any GPU time is spent.

    copy the checkout to a temporary folder (the user's tree is never touched)
      → patch the copy (or use it as is when already patched)
      → point the copy's config.py at tiny stand-ins (au_standins.affectgpt_encoders) and a tiny dataset (media)
      → precompute the dataset's AU features with a tiny agent and a tiny CLIP (affectgpt_patch.features.precompute)
      → write the smoke config (the AU config + few steps + --set overrides)
      → python -m affectgpt_patch.smoke.launch train   (train.py, with the CPU shims)
      → python -m affectgpt_patch.smoke.launch infer   (from_config + Chat on the saved checkpoint)
      → the table (affectgpt_patch.smoke.report)

The copy's configuration (config.py at the stand-ins, the smoke config, ``--set``) is :mod:`.configure`.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from au_core.errors import AUAgentError

from . import report, shims
from .caption_report import captions_in_llm_input, no_branch_row
from .configure import parse_overrides, point_config_at_standins, smoke_config
from .media import Clip, MediaSpec, TinyDataset, write_clip_dataset, write_tiny_dataset

if TYPE_CHECKING:  # the stand-ins are built when a smoke run starts, never imported with this module
    from au_standins.affectgpt_encoders import StandIns

log = logging.getLogger(__name__)

SMOKE_CONFIG = "train_configs/au_agent_smoke.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
_COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pth", "output")


@dataclass
class SmokeOptions:
    checkout: Path
    steps: int = 2
    config: Optional[str] = None  # an AU training config of the checkout (default: the patcher's)
    keep: bool = False
    device: str = "cpu"
    overrides: List[str] = field(default_factory=list)  # KEY=VALUE for the smoke config
    clip_width: int = 512  # AU feature width: the tiny CLIP's text embedding size (ViT-B/32: 512, ViT-L/14: 768)
    au_route: str = "features"  # features | text | both (the AU fork's Nonverbal commits: their caption mode)
    compare: bool = False  # also answer one sample without AU, with the caption and with the features
    samples: int = 4
    clip: Optional[Clip] = None  # the user's clip as the only sample (compare-affectgpt), instead of tiny media
    batch_size: int = 2
    timeout_s: int = 1800  # per AffectGPT process
    python: str = sys.executable


def _under_work(name: str) -> property:
    """A read-only attribute: the folder ``name`` under the run's ``work``."""
    return property(lambda run: run.work / name, doc=f"``work/{name}``")


@dataclass
class SmokeRun:
    """Where one run keeps its things (all under ``work``)."""

    work: Path

    copy = _under_work("checkout")  # the patched copy of the checkout
    standins = _under_work("standins")
    data = _under_work("data")
    features = _under_work("au_features")
    probes = _under_work("probes")
    captions = _under_work("au_captions.json")  # for the AU fork's Nonverbal mode


# ------------------------------------------------------------------------------------------------ stages


def checkout_path(path: Path) -> Path:
    """The checkout as an absolute path; one clear refusal before anything is copied."""
    from ..patcher.detect import find_code_root

    src = Path(path).expanduser().absolute()
    if not src.is_dir():
        raise AUAgentError("no such folder", src)
    find_code_root(src)
    return src


def prepare_copy(opts: SmokeOptions, run: SmokeRun) -> Tuple[Any, Path]:
    """Copy and patch; returns the checkout description and the base AU config (code-root relative)."""
    from ..patcher import ConfigOptions, apply_patch, check_patch
    from ..patcher.configs import NONVERBAL, TRAIN_CONFIG
    from ..patcher.text_configs import NONVERBAL_TRAIN_CONFIG, TEXT_TRAIN_CONFIG
    src = checkout_path(opts.checkout)
    log.info("copying %s to %s", src, run.copy)
    shutil.copytree(src, run.copy, ignore=_COPY_IGNORE, symlinks=True)
    state = check_patch(run.copy)
    if state.complete:
        log.info("the checkout is already patched: using it as is")
        checkout = state.checkout
    else:
        nonverbal = state.checkout.variant == NONVERBAL  # its configs name the captions file written later
        report_ = apply_patch(run.copy, ConfigOptions(captions_file=str(run.captions)) if nonverbal else None)
        log.info("patched the copy (%d files written)", len(report_.changed))
        checkout = report_.checkout
    code_root = checkout.code_root
    if opts.config:
        for candidate in (Path(opts.config), code_root / opts.config, code_root / "train_configs" / opts.config):
            if candidate.is_file():
                base = candidate
                break
        else:
            raise AUAgentError("--config not found (a path, or a file in the checkout's train_configs/)",
                               opts.config)
    elif checkout.variant == NONVERBAL:
        base = code_root / NONVERBAL_TRAIN_CONFIG
    else:
        base = code_root / (TEXT_TRAIN_CONFIG if opts.au_route == "text" else TRAIN_CONFIG)
    return checkout, base


def precompute_features(ds: TinyDataset, standins: StandIns, clip_path: Path, features: Path, frames: int,
                        cache: Path) -> Dict[str, Any]:
    """The dataset's AU features with the tiny agent (the tiny Qwen2 through the hf backend) and tiny CLIP."""
    from ..agent import create_au_agent
    from ..captions.caption import CaptionSettings
    from ..features.clip_encoder import load_clip_text_encoder
    from ..features.compute import FeatureSettings
    from ..features.precompute import PrecomputeOptions, precompute

    agent = create_au_agent({"au_agent_base_model": str(standins.llm), "au_agent_use_lora": False},
                            backend="hf", device="cpu", max_new_tokens=12, cache_dir=str(cache))
    encoder = load_clip_text_encoder(str(clip_path), device="cpu", cache_dir=cache)
    try:  # captions counted with the stand-in LLM's tokenizer: AffectGPT's, here
        summary = precompute(PrecomputeOptions(openface_dir=ds.openface_dir, out=features,
                                               settings=FeatureSettings(frames=frames), progress=False,
                                               caption=CaptionSettings(au_text_tokenizer=str(standins.llm))),
                             agent, encoder)
    finally:
        agent.close()
    if summary["failed"]:
        raise AUAgentError(f"precompute failed for {summary['failed']} tiny videos: {summary['failed_by_reason']}")
    return summary


def _env(device: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID"):  # one process, never distributed
        env.pop(var, None)
    return env


def run_process(args: List[str], cwd: Path, log_path: Path, opts: SmokeOptions) -> int:
    log.info("running %s (log: %s)", " ".join(args[1:]), log_path)
    with open(log_path, "w", encoding="utf-8") as out:
        try:
            proc = subprocess.run(args, cwd=cwd, env=_env(opts.device), stdout=out, stderr=subprocess.STDOUT,
                                  timeout=opts.timeout_s)
        except subprocess.TimeoutExpired:
            out.write(f"\n[au-agent smoke-affectgpt] killed after {opts.timeout_s} s\n")
            return 124
    if proc.returncode:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        log.warning("%s exited with %d; last lines of %s:\n%s", args[3], proc.returncode, log_path, "\n".join(tail))
    return proc.returncode


def latest_checkpoint(code_root: Path, cfg_path: str) -> Optional[Path]:
    """``output/{config name}/{job id}/checkpoint_{epoch:06d}_loss_{x}.pth`` with the highest epoch."""
    folder = code_root / "output" / Path(cfg_path).stem
    found = []
    for path in folder.glob("*/checkpoint_*.pth"):
        m = re.match(r"checkpoint_(\d+)", path.name)
        if m:
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def _load(path: Path) -> Optional[Dict[str, Any]]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def compare_tensors(reference: Mapping[str, Any], other: Mapping[str, Any]) -> Dict[str, Optional[bool]]:
    """Name → exactly equal (True), different (False), or absent from ``other`` (None)."""
    import torch

    return {name: (None if name not in other else bool(torch.equal(t.float(), other[name].float().cpu())))
            for name, t in reference.items()}


# ---------------------------------------------------------------------------------------------- the run


def run_smoke(opts: SmokeOptions) -> report.SmokeReport:
    from ..captions.text_route import check_route

    check_route(opts.au_route)
    if opts.steps < 1:
        raise AUAgentError(f"--steps must be at least 1, got {opts.steps}")
    if opts.device not in ("cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise AUAgentError(f"--device {opts.device!r}: choose cpu or cuda")
    overrides = parse_overrides(opts.overrides)
    checkout_path(opts.checkout)
    run = SmokeRun(Path(tempfile.mkdtemp(prefix="au-agent-smoke-")))
    try:
        result = _run(opts, run, overrides)
    except BaseException:
        log.error("the temporary copy is kept for inspection: %s", run.work)
        raise
    if opts.keep:
        log.info("kept: %s", run.work)
    else:
        shutil.rmtree(run.work, ignore_errors=True)
    return result


def _run(opts: SmokeOptions, run: SmokeRun, overrides: Sequence[Tuple[str, Any]]) -> report.SmokeReport:
    from omegaconf import OmegaConf

    from au_standins.affectgpt_encoders import build_standins
    from au_standins.tiny_clip import build_tiny_clip

    from ..patcher.configs import NONVERBAL

    checkout, base = prepare_copy(opts, run)
    code_root = checkout.code_root
    standins = build_standins(run.standins)
    clip_path = build_tiny_clip(run.standins / f"tiny_clip_{opts.clip_width}.pt", embed_dim=opts.clip_width)
    point_config_at_standins(code_root, standins, run.data)
    ds = write_clip_dataset(run.data, opts.clip) if opts.clip else \
        write_tiny_dataset(run.data, MediaSpec(samples=max(opts.samples, opts.batch_size)))

    cfg, applied = smoke_config(base, opts, run.features, clip_path, overrides)
    frames = int(next(iter(cfg.datasets.values())).get("au_frames") or cfg.model.vis_processor.train.n_frms)
    precompute_features(ds, standins, clip_path, run.features, frames, run.work / "cache")
    if checkout.variant == NONVERBAL:
        from ..captions.captions_file import write_captions

        write_captions(run.features, "MERCaptionPlus", run.captions)  # the tiny data is MER-Caption+
    (code_root / SMOKE_CONFIG).write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    expected = cfg.model.get("num_au_query_token")

    run.probes.mkdir(parents=True, exist_ok=True)
    launcher = [opts.python, "-m", "affectgpt_patch.smoke.launch"]
    rc = run_process([*launcher, "train", "--out", str(run.probes), "--device", opts.device, "--",
                      "--cfg-path", SMOKE_CONFIG], code_root, run.work / "train.log", opts)
    train = _json(run.probes / shims.TRAIN_REPORT) or {"error": f"train.py exited with {rc} before any record"}
    initial, final = _load(run.probes / shims.AU_INITIAL), _load(run.probes / shims.AU_FINAL)
    changed = None
    if initial is not None and final is not None:
        changed = {n: v is False for n, v in compare_tensors(initial, final).items()}
    rows = report.training_rows(train, opts.steps, changed, frozen_by_config=bool(cfg.model.get("frozen_au_proj")))
    text_only = opts.au_route == "text" or checkout.variant == NONVERBAL
    if text_only:
        rows = rows[:2]  # train.py ran, loss is finite: the AU branch rows are the feature route's
    ckpt = latest_checkpoint(code_root, SMOKE_CONFIG) if rc == 0 else None
    saved = _load(ckpt) if ckpt is not None else None
    if not text_only:
        rows.append(report.checkpoint_row(ckpt.name if ckpt else None,
                                          compare_tensors(final, saved["model"]) if saved and final is not None
                                          else None,
                                          frozen=train.get("frozen", []) if cfg.model.get("frozen_au_proj") else ()))
    infer: Dict[str, Any] = {"error": "not run: no checkpoint"}
    loaded_equal = None
    if ckpt is not None:
        def answer(cfg_path: str, out: Path) -> Dict[str, Any]:
            out.mkdir(parents=True, exist_ok=True)
            rc = run_process([*launcher, "infer", "--out", str(out), "--device", opts.device, "--cfg-path",
                              cfg_path, "--ckpt", str(ckpt)], code_root, out / "infer.log", opts)
            return _json(out / shims.INFER_REPORT) or {"error": f"inference exited with {rc} before any record"}

        infer = answer(SMOKE_CONFIG, run.probes)
        loaded = _load(run.probes / shims.AU_INFERENCE)
        if loaded is not None and final is not None:
            loaded_equal = {n: bool(v) for n, v in compare_tensors(final, loaded).items()}
    if not text_only:
        rows.append(report.inference_weights_row(loaded_equal, infer.get("error")))
        if expected is None:
            expected = _model_default_tokens(train)
        rows.append(report.splice_row(int(expected), train.get("splices", []), infer.get("splices", [])))
    if opts.au_route != "features" or checkout.variant == NONVERBAL:
        rows += captions_in_llm_input(run.features, standins.llm, checkout.variant == NONVERBAL, train, infer)
    if text_only:
        rows.append(no_branch_row(train, infer))
    rows.append(report.answer_row(infer, "nonverbal" if checkout.variant == NONVERBAL else opts.au_route))

    au_model = {k: cfg.model.get(k) for k in ("au_fusion_type", "num_au_query_token", "frozen_au_proj")}
    notes = [f"config: {base.relative_to(code_root) if base.is_relative_to(code_root) else base}"
             f" → {SMOKE_CONFIG}; device {opts.device}; {opts.steps} steps, batch {opts.batch_size}; "
             + (f"AU captions of {frames} frames" if text_only else f"AU features [{frames}, {opts.clip_width}]"),
             "AU branch: " + ("not used (the caption is text)" if text_only
                              else ", ".join(f"{k}={v}" for k, v in au_model.items())),
             f"python {sys.version.split()[0]}, " + _versions()]
    if applied:
        notes.append("--set " + " ".join(applied))
    used = sorted(set(train.get("shims", [])) | set(infer.get("shims", [])))
    if used:
        notes.append("run-time shims: " + "; ".join(used))
    route = "the fork's Nonverbal mode" if checkout.variant == NONVERBAL else f"au_route {opts.au_route}"
    title = f"AffectGPT smoke test of {opts.checkout} ({checkout.layout}; {_variant(checkout)}; {route})"
    appendix, compared = "", []
    if opts.compare and ckpt is not None:
        from .compare import compare, format_comparison

        compared = compare(cfg, code_root, run.probes, checkout.variant != NONVERBAL, answer)
        appendix = format_comparison(compared, run.features)
    return report.SmokeReport(title, rows, notes, appendix, compared)


def _variant(checkout: Any) -> str:
    from ..patcher.detect import VARIANT_TEXT

    return VARIANT_TEXT.get(checkout.variant, checkout.variant)


def _versions() -> str:
    from importlib import metadata

    out = []
    for name in ("torch", "transformers", "peft", "omegaconf"):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} absent")
    return ", ".join(out)


def _model_default_tokens(train: Mapping[str, Any]) -> int:
    expected = [s.get("expected") for s in train.get("splices", []) if s.get("expected")]
    return int(expected[0]) if expected else 1


def _json(path: Path) -> Optional[Dict[str, Any]]:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

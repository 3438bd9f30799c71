"""The rows of ``make gpu-check`` that are not about the hf backend's batches: each check is a function returning a
:class:`Row` (pass, fail or skipped, a detail in words, the numbers measured), and the verdicts behind them are plain
functions, so all of it is unit-tested on CPU (``tests/test_gpu_check.py``). The run that calls them, in order, is
:mod:`benchmarks.gpu_check`; the hf and vLLM rows are in :mod:`benchmarks.gpu_check_hf`."""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import BenchError, Stopwatch

PASS, FAIL, SKIP = "pass", "fail", "skipped"
#: Cosine similarity every compared feature row must reach (after L2 normalisation).
COSINE_MIN = 0.999
#: The bf16 recipe's shape is kept (LoRA rank/alpha/targets, bf16, gradient checkpointing, template, cosine
#: schedule); these make 10 steps on the tiny model meaningful and quick.
TRAIN_OVERRIDES = ("warmup_steps=1", "learning_rate=5.0e-3", "logging_steps=1", "eval_steps=5", "save_steps=5",
                   "per_device_train_batch_size=8", "gradient_accumulation_steps=1", "cutoff_len=256",
                   "preprocessing_num_workers=1", "dataloader_num_workers=0", "per_device_eval_batch_size=16")
TRAIN_RECIPE = "qwen2.5_7b_lora_sft"


@dataclass
class Row:
    """One line of the table: ``status`` is ``pass``, ``fail`` or ``skipped``; ``detail`` says why in words;
    ``numbers`` holds what was measured (for the report)."""

    name: str
    status: str
    detail: str
    numbers: Dict[str, Any] = field(default_factory=dict)



# ------------------------------------------------------------------------------------------------ verdicts


def compare_features(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Row-wise agreement of two ``[N, D]`` feature stacks after L2 normalisation."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        raise ValueError(f"need two non-empty [N, D] stacks of one shape, got {a.shape} and {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cosine = np.sum(a * b, axis=1)
    return {"rows": int(len(a)), "max_abs_diff": float(np.abs(a - b).max()), "min_cosine": float(cosine.min()),
            "mean_cosine": float(cosine.mean())}


def features_close(stats: Dict[str, float]) -> bool:
    return stats["min_cosine"] >= COSINE_MIN


def count_differences(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} texts against {len(b)}")
    return sum(x != y for x, y in zip(a, b))


def loss_verdict(losses: Sequence[float]) -> Tuple[bool, str]:
    """Finite, and the mean of the last third below the mean of the first third (one step may rise)."""
    if len(losses) < 3:
        return False, f"only {len(losses)} logged losses"
    if not all(math.isfinite(x) for x in losses):
        return False, f"non-finite loss in {[round(x, 4) for x in losses]}"
    k = max(1, len(losses) // 3)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    if last >= first:
        return False, f"loss not falling: first {k} mean {first:.4f}, last {k} mean {last:.4f}"
    return True, f"loss {losses[0]:.3f} → {losses[-1]:.3f} (first/last-third means {first:.3f} → {last:.3f})"


def training_losses(out: Path) -> List[float]:
    """Training losses of a LLaMA-Factory run, in step order (``trainer_state.json``'s log history)."""
    state = json.loads((Path(out) / "trainer_state.json").read_text(encoding="utf-8"))
    return [float(e["loss"]) for e in state.get("log_history", []) if "loss" in e]


def skipped_unless_installed(name: str, package: str) -> Optional[Row]:
    if importlib.util.find_spec(package) is None:
        return Row(name, SKIP, f"skipped: {package} not installed")
    return None


# ------------------------------------------------------------------------------------------ LoRA training


def lora_training_row(base_model: Path, dataset: Path, out: Path, steps: int, device: str,
                      overrides: Sequence[str] = TRAIN_OVERRIDES,
                      probe: Sequence[str] = ()) -> Tuple[Row, Optional[Path]]:
    """``au-agent train`` (LLaMA-Factory) with the bf16 recipe on ``base_model`` for ``steps`` steps; then the
    adapter is loaded by the runtime on ``device`` and describes ``probe``. Returns the row and the agent
    folder (``None`` when training failed)."""
    from affectgpt_patch.agent import create_au_agent
    from llamafactory_configs.train import TrainOptions, train_agent

    name = "LoRA training (LLaMA-Factory)"
    overrides = [f"max_steps={steps}", *overrides]
    with Stopwatch() as sw:
        train_agent(TrainOptions(dataset=dataset, out=out, recipe=TRAIN_RECIPE, base_model=str(base_model),
                                 overwrite=True, overrides=overrides, echo=False))
    losses = training_losses(out)
    falling, detail = loss_verdict(losses)
    numbers: Dict[str, Any] = {"recipe": TRAIN_RECIPE, "overrides": overrides, "losses": losses,
                               "seconds": sw.seconds}
    if not falling:
        return Row(name, FAIL, detail, numbers), out
    agent = create_au_agent(str(out), backend="hf", device=device, max_new_tokens=8, use_cache=False)
    try:
        texts = agent.describe_inputs(list(probe), batch_size=8)
    finally:
        agent.close()
    numbers["adapter_probe"] = texts
    if probe and not all(isinstance(t, str) and t for t in texts):
        return Row(name, FAIL, f"{detail}; the adapter loaded but gave empty descriptions", numbers), out
    return Row(name, PASS, f"{detail}; adapter loads and describes on {device}", numbers), out


# -------------------------------------------------------------------------------------------------- CLIP


def clip_row(clip_path: Path, texts: Sequence[str], device: str) -> Row:
    """CLIP text features on ``device`` (fp16 on CUDA, as ``clip.load`` builds it) against fp32 on CPU."""
    from affectgpt_patch.features.clip_encoder import ClipTextEncoder

    ref = ClipTextEncoder(str(clip_path), device="cpu", use_cache=False)
    dev = ClipTextEncoder(str(clip_path), device=device, use_cache=False)
    label = f"{str(dev.model.dtype).replace('torch.', '')} on {device}"
    stats = compare_features(ref.encode(list(texts)), dev.encode(list(texts)))
    numbers = {**stats, "model": Path(clip_path).name, "device_dtype": label, "cosine_min": COSINE_MIN}
    detail = f"{label} vs float32 on cpu, {stats['rows']} texts: min cosine {stats['min_cosine']:.6f}, " \
             f"max |diff| {stats['max_abs_diff']:.2e}"
    return Row(f"CLIP text features ({label})", PASS if features_close(stats) else FAIL, detail, numbers)


# ---------------------------------------------------------------------------------------------- precompute


@dataclass
class PrecomputeRun:
    agent: Any
    encoder: Any
    features: Path


def run_precompute(openface_dir: Path, root: Path, tiny_qwen2: Path, clip_path: Path, device: str, dtype: str,
                   max_new_tokens: int) -> PrecomputeRun:
    """``precompute`` of ``openface_dir`` into ``root/features`` with its own fresh caches."""
    from affectgpt_patch.agent import create_au_agent
    from affectgpt_patch.features.clip_encoder import ClipTextEncoder
    from affectgpt_patch.features.precompute import PrecomputeOptions, precompute

    from .common import fresh_dir

    root = fresh_dir(root)
    agent = create_au_agent(backend="hf", base_model=str(tiny_qwen2), device=device, dtype=dtype,
                            max_new_tokens=max_new_tokens, cache_dir=str(root / "cache"))
    encoder = ClipTextEncoder(str(clip_path), device=device, cache_dir=root / "cache")
    summary = precompute(PrecomputeOptions(openface_dir=openface_dir, out=root / "features", progress=False),
                         agent, encoder)
    if summary["failed"]:
        raise BenchError(f"precompute on {device} failed on {summary['failed']} videos: {summary['failed_by_reason']}")
    return PrecomputeRun(agent, encoder, root / "features")


def precompute_row(reference: Path, other: Path, label: str) -> Row:
    """Features of two precompute outputs (``reference`` from the CPU in fp32, ``other`` as ``label`` says),
    frame by frame where both made the same description."""
    from affectgpt_patch.features.store import load_precomputed

    name = f"precompute {label} = CPU fp32"
    names = sorted(p.stem for p in Path(reference).glob("*.npy"))
    a_rows, b_rows, frames, differ = [], [], 0, 0
    for video in names:
        a, b = load_precomputed(reference, video), load_precomputed(other, video)
        if a is None or b is None:
            return Row(name, FAIL, f"{video}: no complete feature file in {'the CPU run' if a is None else label}")
        if list(a.mask) != list(b.mask):
            return Row(name, FAIL, f"{video}: the frame masks differ")
        for slot in np.flatnonzero(a.mask):
            frames += 1
            if a.descriptions[slot] != b.descriptions[slot]:
                differ += 1
                continue
            a_rows.append(a.features[slot])
            b_rows.append(b.features[slot])
    numbers: Dict[str, Any] = {"videos": len(names), "frames": frames, "descriptions_differ": differ}
    if not a_rows:
        return Row(name, FAIL, f"no frame to compare: {differ} of {frames} descriptions differ", numbers)
    stats = compare_features(np.stack(a_rows), np.stack(b_rows))
    numbers.update(stats)
    detail = (f"{stats['rows']} frames with equal descriptions: min cosine {stats['min_cosine']:.6f}, max |diff| "
              f"{stats['max_abs_diff']:.2e}; {differ} of {frames} descriptions differ ({label} agent, reported)")
    return Row(name, PASS if features_close(stats) else FAIL, detail, numbers)


def _agent_dtype(agent: Any) -> str:
    from affectgpt_patch.agent.hf import resolve_device_dtype

    device, dtype = resolve_device_dtype(agent.config)
    return f"{str(dtype).replace('torch.', '')} on {device}"


def _encoder_dtype(encoder: Any) -> str:
    return f"{str(encoder.model.dtype).replace('torch.', '')} on {encoder.device}"


def fingerprint_row(agents: Sequence[Any], encoders: Sequence[Any]) -> Row:
    """Two agents (and two CLIP encoders) that differ in dtype must have different fingerprints: those key the
    description and feature caches and the precomputed files, so equal ones let one run's results serve the
    other's. Equal dtypes may share a fingerprint."""
    parts = [("agent", agents, _agent_dtype), ("CLIP", encoders, _encoder_dtype)]
    numbers: Dict[str, Any] = {}
    problems, notes = [], []
    for what, (a, b), describe in parts:
        da, db = describe(a), describe(b)
        same_fp = a.fingerprint == b.fingerprint
        numbers[what] = {"dtypes": [da, db], "fingerprints": [a.fingerprint, b.fingerprint]}
        if da.split(" on ")[0] == db.split(" on ")[0]:
            notes.append(f"{what}: same dtype ({da.split(' on ')[0]})")
        elif same_fp:
            problems.append(f"{what} fingerprint {a.fingerprint} is the same for {da} and {db}")
        else:
            notes.append(f"{what}: {da} ≠ {db} fingerprints differ")
    if problems:
        return Row("cache fingerprint vs dtype", FAIL,
                   "; ".join(problems) + " (a cache filled by one serves the other)", numbers)
    return Row("cache fingerprint vs dtype", PASS, "; ".join(notes), numbers)


# ------------------------------------------------------------------------------------------------ AU branch


def au_branch_row(device: str, dtypes: Sequence[str] = ("bfloat16", "float16"), hidden: int = 64) -> Row:
    """The template's AU branch (``AUProjector``) built standalone: forward + backward under autocast, with
    a partly and a fully masked sample; outputs and gradients finite, every weight reached."""
    import torch

    from affectgpt_patch.templates.au_branch import FUSION_TYPES, AUProjector

    problems: List[str] = []
    numbers: Dict[str, Any] = {}
    device_type = torch.device(device).type
    for fusion in FUSION_TYPES:
        for dtype_name in dtypes:
            case = f"{fusion}/{dtype_name}"
            torch.manual_seed(0)
            branch = AUProjector(hidden, num_tokens=2, fusion_type=fusion).to(device)
            width = branch.au_llama_proj.in_features  # the CLIP width it was built for
            aus = torch.nn.functional.normalize(torch.randn(3, 8, width, device=device), dim=-1)
            mask = torch.ones(3, 8, dtype=torch.bool, device=device)
            mask[1, 5:] = False
            mask[2] = False  # a video without a valid frame
            with torch.autocast(device_type=device_type, dtype=getattr(torch, dtype_name)):
                pooled, tokens = branch(aus, mask)
                loss = tokens.float().pow(2).mean()
            if loss.requires_grad:  # a frozen branch has nothing to differentiate
                loss.backward()
            grads = {n: p.grad for n, p in branch.named_parameters()}
            numbers[case] = {"tokens_dtype": str(tokens.dtype).replace("torch.", ""), "loss": loss.item(),
                             "grad_norms": {n: None if g is None else float(g.float().norm())
                                            for n, g in grads.items()}}
            if not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all() and torch.isfinite(loss)):
                problems.append(f"{case}: non-finite output")
            for n, g in grads.items():
                if g is None or not torch.isfinite(g).all() or not g.abs().sum() > 0:
                    problems.append(f"{case}: {n} gets {'no' if g is None else 'a non-finite or zero'} gradient")
    if problems:
        return Row(f"AU branch autocast ({device_type})", FAIL, "; ".join(problems), numbers)
    return Row(f"AU branch autocast ({device_type})", PASS,
               f"{', '.join(dtypes)} × {', '.join(FUSION_TYPES)} fusion: finite, gradients reach every weight",
               numbers)


# ------------------------------------------------------------------------------------- optional packages


def qlora_row(base_model: Path, adapter_dir: Optional[Path], probe: Sequence[str], max_new_tokens: int) -> Row:
    """The trained adapter on a 4-bit (bitsandbytes) base, as the QLoRA recipe's agent runs."""
    name = "QLoRA 4-bit load"
    missing = skipped_unless_installed(name, "bitsandbytes")
    if missing:
        return missing
    if adapter_dir is None:
        return Row(name, SKIP, "skipped: no adapter (the training row failed)")
    from affectgpt_patch.agent import create_au_agent

    agent = create_au_agent(str(adapter_dir), backend="hf", base_model=str(base_model), device="cuda",
                            load_in_4bit=True, max_new_tokens=max_new_tokens, use_cache=False)
    try:
        texts = agent.describe_inputs(list(probe), batch_size=8)
    finally:
        agent.close()
    ok = len(texts) == len(probe) and all(isinstance(t, str) and t for t in texts)
    return Row(name, PASS if ok else FAIL, f"4-bit base + adapter described {len(texts)} inputs"
               if ok else "4-bit base + adapter gave empty descriptions", {"probe": texts})



"""``make gpu-check``: every CUDA path of au-agent checked once, in one process, offline, in a few minutes on one
H100/H200, on models it builds (the tiny Qwen2 and CLIP of the tests, plus a mid-size random Qwen2 for real
kernel shapes). It prints a table and writes ``gpu_check/report.json`` (atomically).

    python -m benchmarks.gpu_check [--out gpu_check] [--inputs 192] [--max-new-tokens 24] [-q]

Rows (each passes, fails or is skipped with its reason; the numbers are in the report):

- **hf batch invariance** — the hf backend in bf16 describes the same inputs with batch sizes 1, 7, 32, 128
  (mid-size model; 128 of the inputs share one prompt length, so batch 128 really runs as one batch) and must
  give the same text for every batch size. When the default does not, the check
  retries with ``deterministic=True`` and then with ``fixed_batch_rows`` as well (see
  ``affectgpt_patch/agent/hf.py``), and says which setting was needed and what it costs in speed.
- **CPU fp32 vs CUDA bf16** — how many of those descriptions differ between the two (reported, not failed:
  greedy decoding of bf16 logits flips near-ties; the cache fingerprint must keep the two apart).
- **LoRA training (bf16)** — ``llamafactory-cli train`` (through ``au-agent train``) with the shape of
  ``qwen2.5_7b_lora_sft.yaml`` (bf16, LoRA r 64 / α 128 on all linear layers, gradient checkpointing; a higher
  learning rate and short warm-up, see :data:`TRAIN_OVERRIDES`) on the tiny model for 10 steps: losses finite
  and falling; the adapter loads in the runtime and describes.
- **CLIP fp16 vs fp32** — CLIP text features in fp16 on CUDA against fp32 on CPU: cosine ≥ 0.999 after L2
  normalisation, and the max abs difference.
- **precompute CUDA = CPU** — ``precompute`` on CUDA against the CPU run: features within that tolerance on
  every frame whose description agrees; frames whose description differs are counted.
- **cache fingerprint vs dtype** — the agent and CLIP fingerprints (which key the caches and precomputed files)
  differ when the dtype differs; if not, a cache filled on CPU would serve a CUDA run CPU results.
- **AU branch autocast** — the AffectGPT AU branch template, forward + backward under ``torch.autocast`` bf16 and
  fp16, both fusions: outputs and gradients finite, and every weight gets a gradient.
- **hf throughput** — descriptions/s of the hf backend per batch size on the mid-size model (ratio to batch 1)
  and peak GPU memory.
- **vLLM** and **QLoRA 4-bit load** — run only when vLLM / bitsandbytes are installed ("skipped: not installed").

Every row is a small function returning a :class:`Row`, so the verdicts are unit-tested on CPU
(``tests/test_gpu_check.py``). Exit status: 0 when no row failed, 1 when one did, 2 when the check does not
apply (no CUDA device: one line on stderr, nothing written) or for a usage problem.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import (
    BenchError,
    Stopwatch,
    as_jsonable,
    cached_inputs,
    exit_status,
    machine_info,
    source_digest,
    text_table,
)

log = logging.getLogger(__name__)

PASS, FAIL, SKIP = "pass", "fail", "skipped"
#: Cosine similarity every compared feature row must reach (after L2 normalisation).
COSINE_MIN = 0.999
#: The mid-size random Qwen2 (≈ 90 M parameters with the tiny tokenizer): real GEMM and attention shapes.
#: Its initialisation is small enough that logits are flat (near-ties are common, so a kernel that rounds
#: differently shows up) and large enough that the text depends on the input (at Qwen2's 0.02 it does not).
MID_SHAPE: Dict[str, Any] = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
                             "num_attention_heads": 16, "num_key_value_heads": 2, "initializer_range": 0.05}
#: Settings tried in turn until the batch sizes agree (``None``: the largest batch size).
INVARIANCE_SETTINGS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("default", {}),
    ("deterministic kernels", {"deterministic": True}),
    ("deterministic + fixed-shape batches", {"deterministic": True, "fixed_batch_rows": None}),
)
#: The bf16 recipe's shape is kept (LoRA rank/alpha/targets, bf16, gradient checkpointing, template, cosine
#: schedule); these make 10 steps on the tiny model meaningful and quick.
TRAIN_OVERRIDES = ("warmup_steps=1", "learning_rate=5.0e-3", "logging_steps=1", "eval_steps=5", "save_steps=5",
                   "per_device_train_batch_size=8", "gradient_accumulation_steps=1", "cutoff_len=256",
                   "preprocessing_num_workers=1", "dataloader_num_workers=0", "per_device_eval_batch_size=16")
TRAIN_RECIPE = "qwen2.5_7b_lora_sft"
REPORT = "report.json"


@dataclass
class Row:
    """One line of the table: ``status`` is ``pass``, ``fail`` or ``skipped``; ``detail`` says why in words;
    ``numbers`` holds what was measured (for the report)."""

    name: str
    status: str
    detail: str
    numbers: Dict[str, Any] = field(default_factory=dict)


@dataclass
class GpuCheckOptions:
    out: Path = Path("gpu_check")
    device: str = "cuda"
    dtype: str = "bfloat16"  # of the hf runs on the device
    mid_shape: Dict[str, Any] = field(default_factory=lambda: dict(MID_SHAPE))
    train_overrides: Tuple[str, ...] = TRAIN_OVERRIDES
    batch_sizes: Tuple[int, ...] = (1, 7, 32, 128)
    inputs: int = 192  # distinct non-neutral AU inputs described per batch size (the largest batch + others)
    cpu_inputs: int = 64  # of those, described again on the CPU in fp32 for the comparison
    max_new_tokens: int = 24
    train_steps: int = 10
    videos: int = 40  # synthetic OpenFace corpus the inputs come from (the one `make bench` uses)
    frames: int = 300
    precompute_videos: int = 4
    seed: int = 0
    regenerate: bool = False


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


# --------------------------------------------------------------------------- hf: invariance, speed, CPU


@dataclass
class Sweep:
    """The hf backend over the same inputs at each batch size, under one setting."""

    setting: str
    options: Dict[str, Any]
    runs: List[Dict[str, Any]]  # benchmarks.bench_gpu.measure_backend rows, one per batch size
    texts: Dict[int, List[str]]  # batch size → descriptions, in input order

    def mismatches(self) -> Dict[int, int]:
        """Per batch size, the descriptions that differ from the first batch size's."""
        sizes = list(self.texts)
        return {bs: count_differences(self.texts[sizes[0]], self.texts[bs]) for bs in sizes[1:]}

    @property
    def invariant(self) -> bool:
        return not any(self.mismatches().values())

    def rate(self, batch_size: int) -> float:
        return next(r["desc_per_s"] for r in self.runs if r["batch_size"] == batch_size)


def run_sweep(model: Path, inputs: List[str], opts: GpuCheckOptions, device: str, dtype: str,
              setting: str = "default", batch_sizes: Optional[Sequence[int]] = None, **agent_options: Any) -> Sweep:
    """Describe ``inputs`` at each batch size (warm-up, timing and memory as ``make bench --gpu`` does)."""
    from .bench_gpu import GpuBenchOptions, measure_backend

    bench = GpuBenchOptions(out=opts.out, model=Path(model), batch_sizes=tuple(batch_sizes or opts.batch_sizes),
                            max_new_tokens=opts.max_new_tokens, dtype=dtype)
    runs, texts = measure_backend("hf", bench, inputs, device=device, **agent_options)
    return Sweep(setting, agent_options, runs, texts)


def invariance_sweeps(model: Path, inputs: List[str], opts: GpuCheckOptions, device: str,
                      dtype: str = "bfloat16") -> List[Sweep]:
    """Sweeps under :data:`INVARIANCE_SETTINGS` in turn, up to the first whose batch sizes agree."""
    sweeps = []
    for setting, options in INVARIANCE_SETTINGS:
        options = {k: (max(opts.batch_sizes) if v is None else v) for k, v in options.items()}
        sweeps.append(run_sweep(model, inputs, opts, device, dtype, setting, **options))
        if sweeps[-1].invariant:
            break
        log.warning("batch sizes disagree under %r: %s", setting, sweeps[-1].mismatches())
    return sweeps


def batch_invariance_row(sweeps: Sequence[Sweep], label: str) -> Row:
    name = f"hf batch invariance ({label})"
    tried = {s.setting: s.mismatches() for s in sweeps}
    sizes = list(sweeps[0].texts)
    first = sweeps[0].texts[sizes[0]]
    numbers: Dict[str, Any] = {"batch_sizes": sizes, "inputs": len(first), "distinct_descriptions": len(set(first)),
                               "mismatches_by_setting": tried}
    held = next((s for s in sweeps if s.invariant), None)
    if held is None:
        return Row(name, FAIL, "descriptions differ between batch sizes under every setting tried: "
                   + "; ".join(f"{k}: {v}" for k, v in tried.items()), numbers)
    numbers["setting_needed"] = held.setting
    numbers["options_needed"] = held.options
    detail = (f"identical for batch sizes {', '.join(map(str, sizes))} ({numbers['inputs']} inputs, "
              f"{numbers['distinct_descriptions']} distinct descriptions)")
    if held is not sweeps[0]:
        base, top = sweeps[0], max(sizes)
        numbers["speed_cost"] = {bs: held.rate(bs) / base.rate(bs) for bs in sizes}
        detail += (f" only with {held.setting} {held.options} (default differed: {tried[sweeps[0].setting]}); "
                   f"speed at batch {top}: {numbers['speed_cost'][top]:.2f}× the default's")
    else:
        detail += " with the default settings"
    return Row(name, PASS, detail, numbers)


def throughput_row(sweeps: Sequence[Sweep], label: str) -> Row:
    """Descriptions/s per batch size of the default setting (and of the setting batch invariance needed)."""
    base = sweeps[0]
    sizes = list(base.texts)
    ratios = {bs: base.rate(bs) / base.rate(sizes[0]) for bs in sizes}
    peak = [r["peak_torch_memory_gb"] for r in base.runs if r.get("peak_torch_memory_gb") is not None]
    numbers: Dict[str, Any] = {"desc_per_s": {bs: base.rate(bs) for bs in sizes}, "ratio_to_first": ratios,
                               "output_tokens_per_s": {r["batch_size"]: r["output_tokens_per_s"] for r in base.runs},
                               "peak_gpu_memory_gb": max(peak) if peak else None}
    detail = ", ".join(f"bs {bs}: {base.rate(bs):.1f}/s ({ratios[bs]:.1f}×)" for bs in sizes)
    if peak:
        detail += f"; peak GPU memory {max(peak):.2f} GiB"
    for other in sweeps[1:]:
        numbers[f"desc_per_s ({other.setting})"] = {bs: other.rate(bs) for bs in sizes}
    return Row(f"hf throughput ({label})", PASS, detail, numbers)


def cpu_vs_device_row(cpu_texts: Sequence[str], device_texts: Sequence[str], label: str) -> Row:
    """Reported, not failed: bf16 greedy decoding may pick another token at a near-tie."""
    differ = count_differences(cpu_texts, device_texts)
    return Row(f"CPU fp32 vs {label}", PASS, f"{differ} of {len(cpu_texts)} descriptions differ (reported)",
               {"inputs": len(cpu_texts), "differ": differ})


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


def vllm_row(model: Path, inputs: List[str], opts: GpuCheckOptions, hf_texts: Optional[Sequence[str]]) -> Row:
    """The vLLM backend on the same inputs (when installed): it runs, and how many texts equal hf's."""
    missing = skipped_unless_installed("vLLM backend", "vllm")
    if missing:
        return missing
    from .bench_gpu import GpuBenchOptions, measure_backend

    bench = GpuBenchOptions(out=opts.out, model=Path(model), backends=("vllm",),
                            batch_sizes=(max(opts.batch_sizes),), max_new_tokens=opts.max_new_tokens,
                            dtype="bfloat16", gpu_memory_utilization=0.5)
    runs, texts = measure_backend("vllm", bench, inputs)
    out = texts[runs[0]["batch_size"]]
    numbers: Dict[str, Any] = {"desc_per_s": runs[0]["desc_per_s"], "inputs": len(inputs)}
    if not all(isinstance(t, str) for t in out) or len(out) != len(inputs):
        return Row("vLLM backend", FAIL, f"{len(out)} outputs for {len(inputs)} inputs", numbers)
    detail = f"{runs[0]['desc_per_s']:.1f} descriptions/s"
    if hf_texts is not None:
        numbers["differ_from_hf"] = count_differences(hf_texts, out)
        detail += f"; {numbers['differ_from_hf']} of {len(inputs)} differ from hf bf16 (reported)"
    return Row("vLLM backend", PASS, detail, numbers)


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


# ------------------------------------------------------------------------------------------ table, report


def render_table(rows: Sequence[Row]) -> str:
    return text_table(("check", "status", "detail"), [(r.name, r.status.upper() if r.status == FAIL else r.status,
                                                       r.detail) for r in rows])


def write_report(path: Path, rows: Sequence[Row], environment: Dict[str, Any], settings: Any,
                 seconds: float) -> Dict[str, Any]:
    """``report.json``, replaced atomically: ``ok`` is false when any row failed."""
    from au_core import atomic

    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 1),
           "ok": not any(r.status == FAIL for r in rows),
           "counts": {s: sum(r.status == s for r in rows) for s in (PASS, FAIL, SKIP)},
           "environment": environment, "machine": machine_info(), "settings": as_jsonable(settings),
           "rows": [as_jsonable(asdict(r)) for r in rows]}
    atomic.write_json(path, doc)
    return doc


def guarded(name: str, fn: Callable[..., Row], *args: Any, **kwargs: Any) -> Row:
    """Run one row and time it; an exception fails that row only (its first line becomes the detail)."""
    log.info("gpu-check: %s", name)
    with Stopwatch() as sw:
        try:
            row = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure of a checked path is that row's result
            log.exception("%s raised", name)
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            row = Row(name, FAIL, f"{type(e).__name__}: {first[:300]}")
    row.numbers.setdefault("seconds", round(sw.seconds, 2))
    return row


# ------------------------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Models:
    tiny: Path
    mid: Path
    clip: Path
    dataset: Path


def build_models(opts: GpuCheckOptions) -> Models:
    """The sample dataset, the tiny Qwen2 (its BPE trained on the dataset), a mid-size Qwen2 with the same
    tokenizer and the tiny CLIP (the released ViT-B/32 when it is in the local CLIP cache); cached in OUT."""
    from affectgpt_patch.features.clip_encoder import local_vit_b32
    from au_standins import tiny_clip, tiny_qwen2
    from data_prep.build import PrepareOptions, prepare_dataset

    root = opts.out / "models"
    samples = Path(__file__).resolve().parents[1] / "samples"
    dataset = root / "dataset" / "au_dataset"

    def build_dataset(folder: Path) -> Dict[str, Any]:
        prepare_dataset(PrepareOptions(out=folder / "au_dataset", mer_factory_output=samples / "mer_factory",
                                       openface_dir=samples / "openface", progress=False))
        return {}

    cached_inputs(dataset.parent, {"kind": "dataset", "samples": str(samples)}, build_dataset, opts.regenerate)
    texts = tiny_qwen2.dataset_texts([dataset / "train.json"])
    code = source_digest(tiny_qwen2)
    models = {}
    for kind, shape in (("tiny", {}), ("mid", opts.mid_shape)):
        folder = root / f"{kind}-qwen2"
        cached_inputs(folder, {"kind": kind, "shape": shape, "code": code},
                      lambda f, shape=shape: {"path": str(tiny_qwen2.build_tiny_qwen2(
                          f, texts, size=tiny_qwen2.TinyQwen2Size(**shape)))},
                      opts.regenerate)
        models[kind] = folder
    clip = local_vit_b32()
    if clip is None:
        clip = root / "tiny-clip" / "tiny_clip.pt"
        cached_inputs(clip.parent, {"kind": "tiny_clip", "code": source_digest(tiny_clip)},
                      lambda f: {"path": str(tiny_clip.build_tiny_clip(clip))}, opts.regenerate)
    return Models(models["tiny"], models["mid"], clip, dataset)


def corpus_inputs(opts: GpuCheckOptions, model: Path) -> List[str]:
    """The distinct non-neutral inputs of the synthetic corpus (``make bench --gpu``'s), in a stable order."""
    from .bench_gpu import GpuBenchOptions
    from .bench_gpu import corpus_inputs as bench_inputs

    return bench_inputs(GpuBenchOptions(out=opts.out, model=model, videos=opts.videos, frames=opts.frames,
                                        descriptions=None, seed=opts.seed, regenerate=opts.regenerate))


def pick_inputs(candidates: Sequence[str], tokenizer: Any, count: int, full_batch: int) -> List[str]:
    """``count`` inputs whose first ``full_batch`` have one prompt length: the hf backend batches prompts of
    equal length only, so this is what makes the largest batch size really run as one batch."""
    from affectgpt_patch.agent.prompts import encode_prompt

    by_length: Dict[int, List[str]] = {}
    for s in candidates:
        by_length.setdefault(len(encode_prompt(tokenizer, s)), []).append(s)
    largest = max(by_length.values(), key=len)
    if len(largest) < full_batch or len(candidates) < count or count < full_batch:
        raise BenchError(f"need {count} distinct inputs, {full_batch} of one prompt length; the corpus has "
                         f"{len(candidates)}, at most {len(largest)} of one length: raise --inputs or the corpus")
    chosen = largest[:full_batch]
    taken = set(chosen)
    return chosen + [s for s in candidates if s not in taken][:count - full_batch]


def run_checks(opts: GpuCheckOptions) -> List[Row]:
    """Every row, in order; a row that raises fails alone and the rest still run."""
    from .bench_features import build_corpus

    device = opts.device
    label = f"{opts.dtype} on {device}".replace("bfloat16", "bf16").replace("float16", "fp16")
    mid = f"{label}, mid-size"
    from transformers import AutoTokenizer

    models = build_models(opts)
    inputs = pick_inputs(corpus_inputs(opts, models.mid), AutoTokenizer.from_pretrained(str(models.mid)),
                         opts.inputs, max(opts.batch_sizes))
    probe = inputs[-8:]
    rows: List[Row] = []
    sweeps: List[Sweep] = []

    def invariance() -> Row:
        sweeps.extend(invariance_sweeps(models.mid, inputs, opts, device, opts.dtype))
        return batch_invariance_row(sweeps, mid)

    rows.append(guarded(f"hf batch invariance ({mid})", invariance))

    def cpu_vs_device() -> Row:
        if not sweeps:
            return Row(f"CPU fp32 vs {mid}", SKIP, "skipped: the batch-invariance run failed")
        subset = inputs[:opts.cpu_inputs]
        cpu = run_sweep(models.mid, subset, opts, "cpu", "float32", batch_sizes=(32,))
        on_device = dict(zip(inputs, sweeps[0].texts[sweeps[0].runs[-1]["batch_size"]]))
        return cpu_vs_device_row(cpu.texts[32], [on_device[s] for s in subset], mid)

    rows.append(guarded(f"CPU fp32 vs {mid}", cpu_vs_device))
    trained: List[Optional[Path]] = [None]

    def training() -> Row:
        row, trained[0] = lora_training_row(models.tiny, models.dataset, opts.out / "lora", opts.train_steps,
                                            device, opts.train_overrides, probe)
        return row

    rows.append(guarded("LoRA training (LLaMA-Factory)", training))
    clip_texts = sorted({t for t in dataset_descriptions(models.dataset) if t})[:256]
    rows.append(guarded("CLIP text features", clip_row, models.clip, clip_texts, device))

    runs: Dict[str, PrecomputeRun] = {}

    def precompute_equal() -> Row:
        openface = build_corpus(opts.out, opts.precompute_videos, 90, opts.seed, opts.regenerate)
        runs["cpu"] = run_precompute(openface, opts.out / "precompute" / "cpu_fp32", models.tiny, models.clip,
                                     "cpu", "float32", opts.max_new_tokens)
        runs["device"] = run_precompute(openface, opts.out / "precompute" / "device", models.tiny, models.clip,
                                        device, opts.dtype, opts.max_new_tokens)
        return precompute_row(runs["cpu"].features, runs["device"].features, label)

    rows.append(guarded(f"precompute {label} = CPU fp32", precompute_equal))
    if len(runs) == 2:
        pair = (runs["cpu"], runs["device"])
        rows.append(guarded("cache fingerprint vs dtype", fingerprint_row, [r.agent for r in pair],
                            [r.encoder for r in pair]))
    else:
        rows.append(Row("cache fingerprint vs dtype", SKIP, "skipped: the precompute runs failed"))
    rows.append(guarded("AU branch autocast", au_branch_row, device))
    if sweeps:
        rows.append(guarded(f"hf throughput ({mid})", throughput_row, sweeps, mid))
    else:
        rows.append(Row(f"hf throughput ({mid})", SKIP, "skipped: the batch-invariance run failed"))
    hf_texts = sweeps[0].texts[max(opts.batch_sizes)] if sweeps else None
    rows.append(guarded("vLLM backend", vllm_row, models.mid, inputs, opts, hf_texts))
    rows.append(guarded("QLoRA 4-bit load", qlora_row, models.tiny, trained[0], probe, opts.max_new_tokens))
    return rows


def dataset_descriptions(dataset: Path) -> List[str]:
    """The teacher descriptions of the training split: realistic CLIP inputs."""
    return [r["output"] for r in json.loads((dataset / "train.json").read_text(encoding="utf-8"))]


# ----------------------------------------------------------------------------------------------- command


def environment() -> Dict[str, Any]:
    """The GPU and package versions, or a :class:`BenchError` when there is no CUDA device."""
    from .bench_gpu import cuda_environment

    env = cuda_environment("make gpu-check", "; nothing to check on this machine")
    for package in ("transformers", "peft", "llamafactory", "clip", "vllm", "bitsandbytes"):
        if importlib.util.find_spec(package) is None:
            env[package] = None
            continue
        from importlib import metadata

        dist = {"clip": "openai-clip"}.get(package, package)
        try:
            env[package] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[package] = "installed"
    return env


def build_parser() -> argparse.ArgumentParser:
    from .run import positive_int

    defaults = GpuCheckOptions()
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=defaults.out, help=f"models, runs and {REPORT} (default: %(default)s)")
    p.add_argument("--inputs", type=positive_int, default=defaults.inputs,
                   help="distinct AU inputs described per batch size (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=positive_int, default=defaults.max_new_tokens,
                   help="tokens generated per description (default: %(default)s)")
    p.add_argument("--regenerate", action="store_true", help="rebuild the cached models and corpora")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and the table only")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .run import start_run

    args = build_parser().parse_args(argv)
    start_run(args.quiet)
    from affectgpt_patch.agent.hf import CUBLAS_WORKSPACE

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # before the first CUDA matmul
    try:
        env = environment()
    except BenchError as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        return 2
    opts = GpuCheckOptions(out=args.out, inputs=args.inputs, max_new_tokens=args.max_new_tokens,
                           regenerate=args.regenerate)
    return exit_status("gpu-check", lambda: _check_and_report(opts, env))


def _check_and_report(opts: GpuCheckOptions, env: Dict[str, Any]) -> int:
    started = time.perf_counter()
    rows = run_checks(opts)
    doc = write_report(opts.out / REPORT, rows, env, opts, time.perf_counter() - started)
    print(f"\nau-agent gpu-check on {env['gpu']} (CUDA {env['cuda']}, torch {env['torch']}), {doc['seconds']} s")
    print(render_table(rows))
    print(f"\nreport: {opts.out / REPORT}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

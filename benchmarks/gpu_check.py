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

Every row is a small function returning a :class:`~benchmarks.gpu_check_rows.Row`, so the verdicts are unit-tested
on CPU (``tests/test_gpu_check.py``): the backends' rows are in :mod:`benchmarks.gpu_check_hf`, the others in
:mod:`benchmarks.gpu_check_rows`; this module builds the models and inputs, runs the rows in order and writes the
table and the report. Exit status: 0 when no row failed, 1 when one did, 2 when the check does not
apply (no CUDA device: one line on stderr, nothing written) or for a usage problem.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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
from .gpu_check_hf import (
    Sweep,
    batch_invariance_row,
    cpu_vs_device_row,
    invariance_sweeps,
    run_sweep,
    throughput_row,
    vllm_row,
)
from .gpu_check_rows import (
    FAIL,
    PASS,
    SKIP,
    TRAIN_OVERRIDES,
    PrecomputeRun,
    Row,
    au_branch_row,
    clip_row,
    fingerprint_row,
    lora_training_row,
    precompute_row,
    qlora_row,
    run_precompute,
)

log = logging.getLogger(__name__)

#: The mid-size random Qwen2 (≈ 90 M parameters with the tiny tokenizer): real GEMM and attention shapes.
#: Its initialisation is small enough that logits are flat (near-ties are common, so a kernel that rounds
#: differently shows up) and large enough that the text depends on the input (at Qwen2's 0.02 it does not).
MID_SHAPE: Dict[str, Any] = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
                             "num_attention_heads": 16, "num_key_value_heads": 2, "initializer_range": 0.05}
REPORT = "report.json"



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

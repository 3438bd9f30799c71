"""GPU variant: descriptions/s of the hf and vLLM backends with a real-size model (e.g. Qwen2.5-7B + LoRA).

    python -m benchmarks.run --gpu --model /models/Qwen2.5-7B-Instruct --adapter out/agent/checkpoint-best \\
        [--backends hf,vllm] [--batch-sizes 16,64,256] [--max-new-tokens 64] [--descriptions 2048]

The inputs are the distinct non-neutral AU inputs of the same synthetic OpenFace corpus the CPU benchmark uses
(``--videos`` × ``--frames``), described with the description cache off, after a short warm-up. The hf backend
runs once per batch size; vLLM schedules its own batches, so it runs once. hf runs first and its model is freed
before vLLM starts, because vLLM reserves ``--gpu-memory-utilization`` of the whole card at start-up.
Target (issue 5): ≥ 250 descriptions/s for Qwen2.5-7B + LoRA on one H100; a merged adapter
(``llamafactory-cli export``, then ``--model MERGED`` without ``--adapter``) is the fast path for vLLM.
"""
from __future__ import annotations

import gc
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import BenchError, BenchResult, Stopwatch, Target, loadavg

log = logging.getLogger(__name__)

TARGET_DESC_PER_S = 250.0
GPU_BACKENDS = ("hf", "vllm")
WARMUP_INPUTS = 32
#: Distinct inputs described per run: enough for steady throughput, few enough that hf at batch 16 (tens of
#: descriptions/s for a 7B model) finishes in a couple of minutes.
DEFAULT_DESCRIPTIONS = 2048


@dataclass
class GpuBenchOptions:
    out: Path
    model: Path
    adapter: Optional[Path] = None
    backends: Tuple[str, ...] = GPU_BACKENDS
    batch_sizes: Tuple[int, ...] = (16, 64, 256)
    videos: int = 40
    frames: int = 300
    max_new_tokens: int = 64
    descriptions: Optional[int] = DEFAULT_DESCRIPTIONS  # at most this many distinct inputs (None: all)
    gpu_memory_utilization: float = 0.85
    dtype: str = "auto"
    seed: int = 0
    regenerate: bool = False


def validate(opts: GpuBenchOptions) -> None:
    """Argument problems, found before anything heavy is imported (unit-checked on CPU)."""
    from affectgpt_patch.agent.config import check_adapter_dir
    from au_core.errors import AUAgentError

    if not opts.model.is_dir() or not (opts.model / "config.json").is_file():
        raise BenchError(f"--model {opts.model}: not a local model folder with config.json (nothing is downloaded)")
    if opts.adapter is not None:
        try:
            check_adapter_dir(str(opts.adapter))
        except AUAgentError as e:
            raise BenchError(f"--adapter {opts.adapter}: {e.problem}") from None
    unknown = [b for b in opts.backends if b not in GPU_BACKENDS]
    if not opts.backends or unknown:
        raise BenchError(f"--backends: choose from {', '.join(GPU_BACKENDS)} "
                         f"(got {', '.join(opts.backends) or 'none'})")
    if not opts.batch_sizes or min(opts.batch_sizes) < 1:
        raise BenchError(f"--batch-sizes must be positive integers, got {opts.batch_sizes}")
    if opts.max_new_tokens < 1 or (opts.descriptions is not None and opts.descriptions < 1):
        raise BenchError("--max-new-tokens and --descriptions must be positive")
    if not 0.0 < opts.gpu_memory_utilization <= 1.0:
        raise BenchError(f"--gpu-memory-utilization must be in (0, 1], got {opts.gpu_memory_utilization}")


def cuda_environment(what: str, hint: str = "") -> Dict[str, Any]:
    """The GPU, CUDA and torch versions, or a :class:`BenchError` saying that ``what`` needs CUDA."""
    try:
        import torch
    except ImportError:
        raise BenchError(f"{what} needs torch with CUDA: pip install 'au-agent[agent]'") from None
    if not torch.cuda.is_available():
        raise BenchError(f"no CUDA device: {what} needs an NVIDIA GPU and a CUDA build of torch "
                         f"(torch {torch.__version__}, torch.cuda.is_available() is False){hint}")
    return {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
            "cuda": torch.version.cuda, "torch": torch.__version__}


def check_environment(backends: Sequence[str]) -> Dict[str, Any]:
    """The GPU and libraries, or a :class:`BenchError` saying what is missing."""
    env = cuda_environment("the GPU benchmark", "; run `make bench` without --gpu for the CPU benchmark")
    if "vllm" in backends:
        if importlib.util.find_spec("vllm") is None:
            raise BenchError("vLLM is not installed: pip install 'au-agent[vllm]' (or pass --backends hf)")
        import vllm

        env["vllm"] = vllm.__version__
    return env


def corpus_inputs(opts: GpuBenchOptions) -> List[str]:
    """The distinct non-neutral contract inputs of the synthetic corpus, in a stable order."""
    from au_core import contract
    from au_core.openface import read_openface_csv

    from .bench_features import build_corpus

    openface_dir = build_corpus(opts.out, opts.videos, opts.frames, opts.seed, opts.regenerate)
    inputs = sorted({s for csv in sorted(openface_dir.glob("*.csv")) for s in read_openface_csv(csv).input_strings()
                     if s is not None and not contract.is_neutral(s)})
    return inputs[: opts.descriptions] if opts.descriptions else inputs


def _free_gpu() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def measure_backend(backend: str, opts: GpuBenchOptions, inputs: List[str], device: str = "cuda",
                    **agent_options: Any) -> Tuple[List[Dict[str, Any]], Dict[Any, List[str]]]:
    """One row per batch size (one row for vLLM); returns the rows and each run's texts by its row's
    ``batch_size``. ``device="cpu"`` runs the same measurement without CUDA (no peak memory then);
    ``agent_options`` go to :func:`create_au_agent` (e.g. ``deterministic=True``)."""
    import torch

    from affectgpt_patch.agent import create_au_agent

    cuda = device.startswith("cuda")
    with Stopwatch() as load:
        agent = create_au_agent(backend=backend, base_model=str(opts.model),
                                lora_weights=str(opts.adapter) if opts.adapter else None,
                                max_new_tokens=opts.max_new_tokens, use_cache=False, device=device, dtype=opts.dtype,
                                gpu_memory_utilization=opts.gpu_memory_utilization, **agent_options)
    log.info("%s backend loaded in %.1f s", backend, load.seconds)
    rows: List[Dict[str, Any]] = []
    outputs: Dict[Any, List[str]] = {}
    try:
        sizes = opts.batch_sizes if backend == "hf" else (max(opts.batch_sizes),)
        for batch_size in sizes:
            agent.describe_inputs(inputs[:WARMUP_INPUTS], batch_size=batch_size)  # kernels, allocator, graphs
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.synchronize()
            with Stopwatch() as sw:
                texts = agent.describe_inputs(inputs, batch_size=batch_size)
            if cuda:
                torch.cuda.synchronize()
            tokens = sum(len(agent.backend.tokenizer.encode(t, add_special_tokens=False)) for t in texts)
            row = {"backend": backend, "batch_size": batch_size if backend == "hf" else "auto",
                   "descriptions": len(inputs), "seconds": sw.seconds, "desc_per_s": len(inputs) / sw.seconds,
                   "output_tokens_per_s": tokens / sw.seconds, "mean_output_tokens": tokens / max(len(texts), 1),
                   "load_seconds": load.seconds,
                   # vLLM runs its model in an engine process: this process's torch allocator says nothing there
                   "peak_torch_memory_gb": torch.cuda.max_memory_allocated() / 2**30
                   if backend == "hf" and cuda else None}
            log.info("%s batch %s: %.1f descriptions/s (%.0f output tokens/s)", backend, row["batch_size"],
                     row["desc_per_s"], row["output_tokens_per_s"])
            rows.append(row)
            outputs[row["batch_size"]] = texts
    finally:
        agent.close()
        del agent
        if cuda:
            _free_gpu()
    return rows, outputs


def run_gpu(opts: GpuBenchOptions) -> BenchResult:
    validate(opts)
    env = check_environment(opts.backends)
    inputs = corpus_inputs(opts)
    if not inputs:
        raise BenchError("the synthetic corpus has no non-neutral frame; raise --videos/--frames")
    res = BenchResult("gpu")
    res.details.update(environment=env, inputs=len(inputs), model=str(opts.model),
                       adapter=str(opts.adapter) if opts.adapter else None, max_new_tokens=opts.max_new_tokens,
                       loadavg=loadavg())
    outputs: Dict[str, List[str]] = {}
    rows: List[Dict[str, Any]] = []
    for backend in [b for b in GPU_BACKENDS if b in opts.backends]:  # hf first: vLLM reserves the card
        backend_rows, texts = measure_backend(backend, opts, inputs)
        outputs[backend] = texts[backend_rows[-1]["batch_size"]]
        rows += backend_rows
    res.details["runs"] = rows
    for row in rows:
        res.add(f"{row['backend']} batch {row['batch_size']}", row["desc_per_s"], "desc/s",
                Target(">=", TARGET_DESC_PER_S),
                note=f"{row['output_tokens_per_s']:.0f} tok/s, {row['mean_output_tokens']:.0f} tok/desc")
    if len(outputs) == 2:  # greedy in both: differences come from bf16 kernels, not from the prompt
        same = sum(a == b for a, b in zip(outputs["hf"], outputs["vllm"]))
        res.details["hf_vllm_identical_fraction"] = same / len(inputs)
        res.add("hf = vLLM text", 100.0 * same / len(inputs), "%", note="greedy; bf16 kernels may differ")
    return res

"""``make bench``: run the benchmarks, print one table, write ``bench_out/results.json``.

    python -m benchmarks.run                                   # CPU: prepare-data (100K records) + features
    python -m benchmarks.run --only features --videos 10 --frames 120 --max-new-tokens 8
    python -m benchmarks.run --only ray                         # --engine ray vs the local engine (ratio, scaling)
    python -m benchmarks.run --profile                         # also cProfile each stage → bench_out/profiles/
    python -m benchmarks.run --only demo-agent                 # make demo's training time and eval table
    python -m benchmarks.run --gpu --model DIR [--adapter DIR] [--backends hf,vllm] [--batch-sizes 16,64,256]

Exit status: 0 when every run completed and its outputs are right (a missed speed target is reported in the
table, not as a failure: timings on a shared machine vary); 1 when features or descriptions differ between the
seed loop and precompute; 2 for a usage or environment problem (e.g. ``--gpu`` without CUDA or vLLM).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .common import BenchResult, as_jsonable, exit_status, format_table, machine_info

log = logging.getLogger("benchmarks")

BENCHMARKS = ("prepare", "features", "ray", "demo-agent")
DEFAULT_BENCHMARKS = ("prepare", "features")  # ray starts clusters, demo-agent trains: ask with --only
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
CPU_MAX_NEW_TOKENS = 16  # the tiny random model rarely stops early: this bounds the seed loop's run time
GPU_MAX_NEW_TOKENS = 64  # the targets' "≤ 64 new tokens"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def int_list(text: str) -> List[int]:
    try:
        return [positive_int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None


def name_list(choices: Sequence[str]) -> Callable[[str], List[str]]:
    def parse(text: str) -> List[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, got {text!r}")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out"),
                   help="inputs, outputs and results.json (default: bench_out)")
    p.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default: 0)")
    p.add_argument("--regenerate", action="store_true", help="rebuild the cached corpora and tiny models")
    p.add_argument("--profile", action="store_true", help="also run each stage under cProfile (bench_out/profiles)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and the table only, no progress bars")
    g = p.add_argument_group("prepare-data")
    g.add_argument("--records", type=positive_int, default=100_000,
                   help="frame records in the MER-Factory corpus (default: 100000)")
    g.add_argument("--prepare-openface", action="store_true", help="also time prepare-data with --openface-dir")
    g = p.add_argument_group("features (CPU, tiny models) and the GPU variant's inputs")
    g.add_argument("--videos", type=positive_int, default=40, help="videos in the OpenFace corpus (default: 40)")
    g.add_argument("--frames", type=positive_int, default=300, help="frames per video (default: 300)")
    g.add_argument("--max-new-tokens", type=positive_int,
                   help=f"default {CPU_MAX_NEW_TOKENS} on CPU (tiny model), {GPU_MAX_NEW_TOKENS} with --gpu")
    g.add_argument("--batch-size", type=positive_int, default=64,
                   help="precompute's descriptions per model batch (default: 64)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for the tiny models (0: torch's default); one thread is "
                        "fastest for a model this small and steadiest on a shared machine (default: 1)")
    g.add_argument("--warm-repeats", type=positive_int, default=5,
                   help="warm reruns timed, median reported (default: 5)")
    g.add_argument("--no-cli-warm", action="store_true", help="skip timing a warm `au-agent precompute` process")
    g.add_argument("--tiny-qwen2", type=Path, help="use this tiny model folder instead of building one")
    g.add_argument("--tiny-clip", type=Path, help="use this tiny CLIP file instead of building one")
    g = p.add_argument_group("ray (--only ray): the Ray engine against the local engine, same corpus")
    g.add_argument("--ray-actors", type=positive_int, default=2,
                   help="the largest agent actor pool timed on a running local cluster (default: 2)")
    g = p.add_argument_group("demo-agent (make demo's training and its evaluation table)")
    g.add_argument("--demo-quick", action="store_true", help="the demo's CI size instead of its full size")
    g = p.add_argument_group("GPU variant (real-size model; needs CUDA, and vLLM for --backends vllm)")
    g.add_argument("--gpu", action="store_true", help="run the GPU benchmark instead of the CPU ones")
    g.add_argument("--model", type=Path, help="local base model folder (e.g. Qwen2.5-7B-Instruct) or a merged agent")
    g.add_argument("--adapter", type=Path, help="LoRA adapter folder (checkpoint-best)")
    g.add_argument("--backends", type=name_list(("hf", "vllm")), default=["hf", "vllm"],
                   help="comma-separated (default: hf,vllm)")
    g.add_argument("--batch-sizes", type=int_list, default=[16, 64, 256],
                   help="hf batch sizes, comma-separated (default: 16,64,256)")
    g.add_argument("--descriptions", type=int, default=2048,
                   help="distinct AU inputs described per run, 0 for all of the corpus (default: 2048)")
    g.add_argument("--gpu-memory-utilization", type=float, default=0.85,
                   help="vLLM's share of the card (default: 0.85)")
    g.add_argument("--dtype", default="auto", help="auto (bf16 on GPU), bfloat16, float16")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gpu and args.model is None:
        parser.error("--gpu needs --model PATH (a local model folder)")
    if not args.gpu and (args.model is not None or args.adapter is not None):
        parser.error("--model/--adapter belong to the GPU variant: add --gpu")
    if args.gpu and args.only:
        parser.error("--only selects CPU benchmarks; --gpu runs the GPU benchmark alone")
    if args.threads < 0 or args.descriptions < 0:
        parser.error("--threads and --descriptions must be 0 or positive")
    if args.max_new_tokens is None:
        args.max_new_tokens = GPU_MAX_NEW_TOKENS if args.gpu else CPU_MAX_NEW_TOKENS
    return args


def run_benchmarks(args: argparse.Namespace) -> List[BenchResult]:
    if args.gpu:
        from .bench_gpu import GpuBenchOptions, run_gpu

        return [run_gpu(GpuBenchOptions(
            out=args.out, model=args.model, adapter=args.adapter, backends=tuple(args.backends),
            batch_sizes=tuple(args.batch_sizes), videos=args.videos, frames=args.frames,
            max_new_tokens=args.max_new_tokens, descriptions=args.descriptions or None,
            gpu_memory_utilization=args.gpu_memory_utilization, dtype=args.dtype, seed=args.seed,
            regenerate=args.regenerate))]
    selected = args.only or list(DEFAULT_BENCHMARKS)
    results = []
    if "prepare" in selected:
        from .bench_prepare import PrepareBenchOptions, run_prepare

        results.append(run_prepare(PrepareBenchOptions(out=args.out, records=args.records, seed=args.seed,
                                                        openface=args.prepare_openface, profile=args.profile,
                                                        regenerate=args.regenerate)))
    if "features" in selected:
        from .bench_features import FeaturesBenchOptions, run_features

        results.append(run_features(FeaturesBenchOptions(
            out=args.out, videos=args.videos, frames=args.frames, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, threads=args.threads or None, seed=args.seed,
            warm_repeats=args.warm_repeats, cli_warm=not args.no_cli_warm, profile=args.profile,
            regenerate=args.regenerate, tiny_qwen2=args.tiny_qwen2, tiny_clip=args.tiny_clip,
            progress=not args.quiet)))
    if "ray" in selected:
        from .bench_ray import RayBenchOptions, run_ray

        results.append(run_ray(RayBenchOptions(
            out=args.out, videos=args.videos, frames=args.frames, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, actors=args.ray_actors, seed=args.seed, regenerate=args.regenerate,
            tiny_qwen2=args.tiny_qwen2, tiny_clip=args.tiny_clip)))
    if "demo-agent" in selected:
        from .bench_demo import DemoBenchOptions, run_demo_bench

        results.append(run_demo_bench(DemoBenchOptions(out=args.out, quick=args.demo_quick)))
    return results


def write_results(path: Path, args: argparse.Namespace, results: List[BenchResult], started: float) -> dict:
    met = [m.met for r in results for m in r.metrics if m.met is not None]
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "settings": as_jsonable(vars(args)),
        "ok": all(r.ok for r in results),
        "targets_met": all(met) if met else None,
        "results": {r.name: as_jsonable(r.to_json()) for r in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def start_run(quiet: bool) -> None:
    """What every benchmark command does first: nothing is downloaded (also when run without make), and log
    lines go to stderr, warnings only with ``quiet``."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start_run(args.quiet)
    return exit_status("benchmarks", lambda: _run_and_report(args))


def _run_and_report(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    results = run_benchmarks(args)
    out = args.out / ("results_gpu.json" if args.gpu else "results.json")
    doc = write_results(out, args, results, started)
    machine = doc["machine"]
    print(f"\nau-agent benchmarks on {machine['cpus_usable']} CPU cores ({machine['processor']}), "
          f"load average {machine.get('loadavg_1_5_15')}, {doc['seconds']} s in all")
    print(format_table(results))
    print(f"\nresults: {out}")
    if not doc["ok"]:
        print("benchmarks: error: the seed loop and precompute disagree (see 'equality' in the results)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Ray engine against the local engine: the same corpus, agent, CLIP and machine, whole ``au-agent
precompute`` processes, cold caches.

Inputs are the features benchmark's (synthetic OpenFace corpus, tiny random Qwen2 on the hf backend, tiny
CLIP), described with ``--sampling all`` so the job is every valid frame of the corpus. Timed runs:

1. **local** — ``au-agent precompute`` (one process, the local engine).
2. **ray, own cluster** — ``--engine ray`` with no address: the command starts Ray on this machine, runs the
   job and stops Ray, so Ray's start-up is in the time. Ratio = ray / local (target ≤ 1.5).
3. **ray, running cluster** — a Ray head started once (``ray start --head``, not timed) and ``--ray-address``,
   with 1 and then N agent actors: the engine's own overhead, and how the job scales with actors.

Every Ray run must write the local run's bytes (``.npy``, ``.json``, manifest); a difference fails the
benchmark. On a shared 2-core machine, N actors compete with everything else running there: the scaling
figure is a lower bound.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from .common import BenchError, BenchResult, CorpusBenchOptions, Stopwatch, Target, fresh_dir, loadavg

log = logging.getLogger(__name__)

TARGET_RATIO = 1.5


@dataclass
class RayBenchOptions(CorpusBenchOptions):
    actors: int = 2  # the largest pool timed on the running cluster


def _outputs(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


# The benchmark cluster's own token (Ray 2.60 authenticates by token), passed to every process it starts.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_ADDRESS": ""}


def _precompute(opts: RayBenchOptions, corpus: Path, qwen: Path, clip: Path, out: Path, *extra: str) -> float:
    """Seconds of one whole ``au-agent precompute`` process, into fresh output and cache folders."""
    fresh_dir(out)
    cmd = [sys.executable, "-m", "au_agent_cli", "-q", "precompute", "--openface-dir", str(corpus), "--out",
           str(out / "features"), "--cache-dir", str(out / "cache"), "--base-model", str(qwen), "--backend", "hf",
           "--clip-model", str(clip), "--sampling", "all", "--max-new-tokens", str(opts.max_new_tokens),
           "--batch-size", str(opts.batch_size), "--device", "cpu", "--clip-device", "cpu", *extra]
    env = {**os.environ, **AUTH, "OMP_NUM_THREADS": "1", "RAY_DISABLE_USAGE_STATS": "1"}
    with Stopwatch() as sw:
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise BenchError(f"{' '.join(cmd[3:6])} {' '.join(extra)} failed: {run.stderr.strip()[-1500:]}")
    log.info("%-40s %.1f s", " ".join(extra) or "local engine", sw.seconds)
    return sw.seconds


class _Head:
    """A Ray head on 127.0.0.1 for the benchmark's own use (its process group is ended on exit)."""

    def __init__(self, cpus: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        ray = str(Path(sys.executable).parent / "ray")
        self.proc = subprocess.Popen([ray, "start", "--block", "--head", "--disable-usage-stats", "--node-ip-address",
                                      "127.0.0.1", "--port", str(self.port), "--num-cpus", str(cpus),
                                      "--include-dashboard", "false", "--temp-dir", f"/tmp/ray_bench_{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **AUTH, "OMP_NUM_THREADS": "1"})

    def wait(self, timeout: float = 120) -> None:
        probe = ("import sys, ray\nray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n")
        deadline = time.time() + timeout
        while time.time() < deadline:
            probe_run = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True,
                                       env={**os.environ, **AUTH})
            if probe_run.returncode == 0:
                return
            time.sleep(1)
        raise BenchError(f"the Ray head on {self.address} did not start")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(f"/tmp/ray_bench_{self.port}", ignore_errors=True)


def run_ray(opts: RayBenchOptions) -> BenchResult:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise BenchError("the ray benchmark needs Ray: pip install 'au-agent[ray]'") from None
    from .bench_features import FeaturesBenchOptions, build_corpus, build_models

    models = build_models(FeaturesBenchOptions(out=opts.out, regenerate=opts.regenerate, tiny_qwen2=opts.tiny_qwen2,
                                               tiny_clip=opts.tiny_clip))
    corpus = build_corpus(opts.out, opts.videos, opts.frames, opts.seed, opts.regenerate)
    work = opts.out / "ray"
    res = BenchResult("ray")
    load_before = loadavg()

    local_s = _precompute(opts, corpus, models.qwen2, models.clip, work / "local")
    reference = _outputs(work / "local" / "features")
    timings: Dict[str, float] = {"local": local_s}
    differs: List[str] = []

    def check(name: str) -> None:
        if _outputs(work / name / "features") != reference:
            differs.append(name)

    timings["ray_own_cluster"] = _precompute(opts, corpus, models.qwen2, models.clip, work / "ray_own",
                                             "--engine", "ray", "--ray-actors", "1")
    check("ray_own")
    head = _Head(cpus=max(2, opts.actors))
    try:
        head.wait()
        for n in sorted({1, opts.actors}):
            name = f"ray_running_{n}"
            timings[name] = _precompute(opts, corpus, models.qwen2, models.clip, work / name, "--engine", "ray",
                                        "--ray-address", head.address, "--ray-actors", str(n))
            check(name)
    finally:
        head.close()

    meta = [json.loads(v) for k, v in reference.items() if k.endswith(".json") and k != "manifest.jsonl"]
    frames = sum(sum(m["mask"]) for m in meta)
    res.add("local engine", local_s, "s", note=f"{len(meta)} videos, {frames} frames described")
    res.add("ray / local, own cluster", timings["ray_own_cluster"] / local_s, "×", Target("<=", TARGET_RATIO),
            note="Ray started and stopped by the command; 1 agent actor")
    res.add("ray / local, running cluster", timings["ray_running_1"] / local_s, "×", Target("<=", TARGET_RATIO),
            note="1 agent actor")
    if opts.actors > 1:
        n = opts.actors
        res.add(f"speed-up {n} actors vs 1", timings["ray_running_1"] / timings[f"ray_running_{n}"], "×",
                note=f"running cluster, {n} CPUs; {os.cpu_count()} cores shared with the machine's other work")
    res.add("identical bytes", float(not differs), "bool", Target(">=", 1),
            note="every Ray run's .npy/.json/manifest == the local engine's")
    res.ok = not differs
    res.details = {"seconds": {k: round(v, 2) for k, v in timings.items()}, "differs": differs,
                   "videos": len(meta), "frames": frames, "loadavg_before": load_before, "loadavg_after": loadavg()}
    return res

"""AU features: the seed guide's per-frame loop against ``au-agent precompute``, on the same frames and agent.

Inputs (generated once into ``bench_out/``, not timed): a synthetic OpenFace corpus (default 40 videos × 300
frames: smooth AU episodes, blinks, failed and low-confidence frames, neutral stretches), the tiny random Qwen2
(the hf backend, no adapter: the same agent serves both runs) and the tiny CLIP. Models are loaded before any
clock starts; every timing below is in-process.

1. **seed loop** — the guide's step 4: per video, ``pandas.read_csv``; per row ``agent.parse_openface_csv``
   then ``agent.generate_description`` (one frame at a time, description cache off); then CLIP once per video
   over its descriptions (``clip.tokenize(truncate=True)``, ``encode_text``, L2-normalise).
2. **precompute cold** — ``precompute`` with ``sampling=all`` (every valid frame, the loop's valid rows), into
   empty description and CLIP caches. Its features must equal the loop's on every valid frame (within float16
   storage) and its descriptions must be the same strings. Speed-up = loop seconds / precompute seconds.
3. **warm rerun** — precompute again over the finished output (everything skipped): videos/s in-process,
   and the wall time of a whole ``au-agent precompute`` process (interpreter, imports, the plan; it must load
   neither the agent nor CLIP, nor import torch).
4. **T = 8 uniform** — the production setting, cold (fresh caches) and warm.

"descriptions/s" counts the frame descriptions delivered as features: the valid frames, the same number for
both runs, so the ratio of the rates is the ratio of the times. The loop also describes the invalid rows
(the seed guide does not skip them); its rows/s is in the details.
"""
from __future__ import annotations

import logging
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import (
    BenchError,
    BenchResult,
    CorpusBenchOptions,
    Stopwatch,
    Target,
    cached_inputs,
    fresh_dir,
    loadavg,
    profiled,
    source_digest,
)

log = logging.getLogger(__name__)

TARGET_COLD_SPEEDUP = 10.0
TARGET_WARM_VIDEOS_PER_S = 1000.0
#: A whole ``au-agent precompute`` process over a finished folder plans first and loads no model, nor imports
#: torch or numpy (40 videos in 0.1 s on 2 cores: the interpreter, the command's imports, the checks of the records).
TARGET_CLI_WARM_VIDEOS_PER_S = 200.0
#: Features are stored as float16: the loop's float32 vectors may differ from the stored rows by up to half a
#: float16 step (≤ 2**-12 for the |x| < 1 of a unit vector) plus batch-order rounding in CLIP's matmuls.
FP16_ATOL = 1e-3


@dataclass
class FeaturesBenchOptions(CorpusBenchOptions):
    threads: Optional[int] = 1  # torch intra-op threads; None leaves torch's default
    warm_repeats: int = 5
    cli_warm: bool = True  # also time a warm `au-agent precompute` process
    profile: bool = False
    profile_videos: int = 4
    progress: bool = True


@dataclass(frozen=True)
class TinyModels:
    qwen2: Path
    clip: Path


def build_models(opts: FeaturesBenchOptions) -> TinyModels:
    """The tiny Qwen2 and tiny CLIP (built once into bench_out/models, rebuilt when their code changes)."""
    from au_standins import tiny_clip, tiny_qwen2

    models = opts.out / "models"
    qwen = opts.tiny_qwen2
    if qwen is None:
        qwen = models / "tiny-qwen2"
        cached_inputs(qwen, {"kind": "tiny_qwen2", "code": source_digest(tiny_qwen2)},
                      lambda f: {"path": str(tiny_qwen2.build_tiny_qwen2(f))}, opts.regenerate)
    clip = opts.tiny_clip
    if clip is None:
        clip = models / "tiny-clip" / "tiny_clip.pt"
        cached_inputs(clip.parent, {"kind": "tiny_clip", "code": source_digest(tiny_clip)},
                      lambda f: {"path": str(tiny_clip.build_tiny_clip(clip))}, opts.regenerate)
    return TinyModels(Path(qwen), Path(clip))


def build_corpus(out: Path, videos: int, frames: int, seed: int, regenerate: bool = False) -> Path:
    """``videos`` synthetic OpenFace CSVs of ``frames`` rows each (cached); returns their folder."""
    from au_standins import synthetic

    folder = out / "corpus" / f"features-{videos}x{frames}-seed{seed}"

    def build(f: Path) -> Dict[str, Any]:
        for v in range(videos):
            synthetic.write_video(f / "openface", f"video_{v:05d}", frames, seed * 100003 + v)
        return {"videos": videos, "frames": frames}

    cached_inputs(folder, {"kind": "openface", "videos": videos, "frames": frames, "seed": seed,
                           "code": source_digest(synthetic)}, build, regenerate)
    return folder / "openface"


# ------------------------------------------------------------------------------------------ the seed loop


@dataclass
class LoopOutput:
    """What the seed loop produced, per video, in CSV row order."""

    frames: Dict[str, List[int]] = field(default_factory=dict)
    descriptions: Dict[str, List[str]] = field(default_factory=dict)
    features: Dict[str, np.ndarray] = field(default_factory=dict)  # float32 [rows, D]

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.frames.values())


def load_openai_clip(path: Path) -> Any:
    """The OpenAI ``clip`` model as the seed's ``_load_clip_for_au`` loads it (once, CPU, eager)."""
    import clip

    model, _ = clip.load(str(path), device="cpu", jit=False)
    return model.eval()


def seed_loop(csvs: Sequence[Path], agent: Any, clip_model: Any, progress: bool = True) -> LoopOutput:
    """The seed guide's ``_extract_au_with_agent``, for every video: one description per CSV row, one frame
    at a time, then CLIP over the video's descriptions."""
    import clip
    import pandas as pd
    import torch
    from tqdm import tqdm

    out = LoopOutput()
    for csv in tqdm(csvs, desc="seed loop", unit="video", disable=not progress):
        df = pd.read_csv(csv)
        frame_col = next(c for c in df.columns if str(c).strip() == "frame")
        descriptions, frames = [], []
        for _, row in df.iterrows():
            au_values = agent.parse_openface_csv(row.to_dict())
            descriptions.append(agent.generate_description(au_values))
            frames.append(int(row[frame_col]))
        tokens = clip.tokenize(descriptions, truncate=True)
        with torch.no_grad():
            feats = clip_model.encode_text(tokens).float()
            feats = feats / feats.norm(dim=-1, keepdim=True)
        out.frames[csv.stem] = frames
        out.descriptions[csv.stem] = descriptions
        out.features[csv.stem] = feats.numpy().astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------- precompute


class PrecomputeRun:
    """One precompute configuration: its own agent and CLIP encoder over its own (initially empty) caches, so
    the first :meth:`run` is cold and later ones find the finished output (warm)."""

    def __init__(self, root: Path, openface_dir: Path, settings: Any, models: TinyModels,
                 opts: FeaturesBenchOptions) -> None:
        from affectgpt_patch.agent import create_au_agent
        from affectgpt_patch.features.clip_encoder import ClipTextEncoder

        self.root = fresh_dir(root)
        self.cache_dir, self.features_dir = self.root / "cache", self.root / "features"
        self.openface_dir, self.settings, self.models, self.opts = openface_dir, settings, models, opts
        with Stopwatch() as sw:
            self.agent = create_au_agent(**agent_options(models, opts), use_cache=True, cache_dir=str(self.cache_dir))
            self.encoder = ClipTextEncoder(str(models.clip), device="cpu", cache_dir=self.cache_dir, use_cache=True)
        self.load_seconds = sw.seconds

    def run(self, progress: bool = False) -> Tuple[float, Dict[str, Any]]:
        from affectgpt_patch.features.precompute import PrecomputeOptions, precompute

        popts = PrecomputeOptions(openface_dir=self.openface_dir, out=self.features_dir, settings=self.settings,
                                  batch_size=self.opts.batch_size, progress=progress)
        with Stopwatch() as sw:
            summary = precompute(popts, self.agent, self.encoder)
        if summary["failed"]:
            raise BenchError(f"precompute failed on {summary['failed']} videos: {summary['failed_by_reason']}")
        return sw.seconds, summary

    def warm(self, repeats: int) -> List[float]:
        """Seconds of ``repeats`` reruns that must find everything done."""
        times = []
        precompute_log = logging.getLogger("affectgpt_patch.features.precompute")
        level = precompute_log.level
        precompute_log.setLevel(logging.WARNING)  # not one "0 to do" line per rerun
        try:
            runs = [self.run() for _ in range(max(1, repeats))]
        finally:
            precompute_log.setLevel(level)
        for seconds, summary in runs:
            if summary["done"]:
                raise BenchError(f"a warm rerun recomputed {summary['done']} videos (settings or fingerprint drift)")
            times.append(seconds)
        return times

    def cli_warm_seconds(self, repeats: int = 1) -> List[float]:
        """Wall times of whole ``au-agent precompute`` processes over the finished output (everything skipped);
        each must import no torch (it loads no model)."""
        return [self._cli_warm_once() for _ in range(max(1, repeats))]

    def _cli_warm_once(self) -> float:
        opts = self.opts
        probe = ("import sys, au_agent_cli; rc = au_agent_cli.main(); "
                 "print('torch imported' if 'torch' in sys.modules else '', file=sys.stderr); sys.exit(rc)")
        cmd = [sys.executable, "-c", probe, "precompute",
               "--openface-dir", str(self.openface_dir), "--out", str(self.features_dir),
               "--agent", str(self.models.qwen2), "--backend", "hf", "--device", "cpu",
               "--max-new-tokens", str(opts.max_new_tokens), "--batch-size", str(opts.batch_size),
               "--frames", str(self.settings.frames), "--sampling", self.settings.sampling,
               "--clip-model", str(self.models.clip), "--clip-device", "cpu", "--cache-dir", str(self.cache_dir)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package runs: from bytecode after the first run
        if opts.threads:
            env["OMP_NUM_THREADS"] = str(opts.threads)
        with Stopwatch() as sw:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                                  cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise BenchError(f"au-agent precompute exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        m = re.search(r"(\d+) done, (\d+) skipped", proc.stderr)
        if m and int(m.group(1)):
            raise BenchError(f"the warm au-agent precompute process recomputed {m.group(1)} videos")
        if "torch imported" in proc.stderr:
            raise BenchError("the warm au-agent precompute process imported torch (it must load no model)")
        return sw.seconds


def agent_options(models: TinyModels, opts: FeaturesBenchOptions) -> Dict[str, Any]:
    """The one agent both runs use (only the description cache differs: off for the loop, as in the seed)."""
    return {"backend": "hf", "base_model": str(models.qwen2), "max_new_tokens": opts.max_new_tokens,
            "batch_size": opts.batch_size, "device": "cpu"}


def compare(loop: LoopOutput, features_dir: Path) -> Dict[str, Any]:
    """The loop's vectors and texts on every frame precompute made a feature for, against precompute's."""
    from affectgpt_patch.features.store import load_precomputed

    pairs_a, pairs_b, mismatched, compared = [], [], [], 0
    for name, loop_frames in loop.frames.items():
        vf = load_precomputed(features_dir, name)
        if vf is None:
            raise BenchError(f"precompute wrote no complete feature file for {name}")
        row_of = {f: i for i, f in enumerate(loop_frames)}
        slots = [(s, row_of[f]) for s, f in enumerate(vf.frames) if f is not None]
        if not slots:
            continue
        compared += len(slots)
        pairs_a.append(loop.features[name][[r for _, r in slots]])
        pairs_b.append(vf.features[[s for s, _ in slots]])
        mismatched += [(name, f"frame {loop_frames[r]}") for s, r in slots
                       if vf.descriptions[s] != loop.descriptions[name][r]]
    if not compared:
        raise BenchError("the corpus has no valid frame to compare; raise --videos/--frames")
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    diff = np.abs(a - b)
    fp16_equal = np.all(a.astype(np.float16).astype(np.float32) == b, axis=1)
    return {"frames_compared": compared, "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()), "atol": FP16_ATOL, "equal": bool(diff.max() <= FP16_ATOL),
            "rows_bit_identical_after_fp16": int(fp16_equal.sum()),
            "description_mismatches": len(mismatched), "first_mismatches": mismatched[:5]}


# ------------------------------------------------------------------------------------------------- main


def run_features(opts: FeaturesBenchOptions) -> BenchResult:
    """All four runs; torch's thread count is restored afterwards (the smoke test runs in pytest's process)."""
    import torch

    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run_features(opts)
    finally:
        torch.set_num_threads(threads)


def _run_features(opts: FeaturesBenchOptions) -> BenchResult:
    import torch

    from affectgpt_patch.agent import create_au_agent
    from affectgpt_patch.features.store import FeatureSettings

    models = build_models(opts)
    openface_dir = build_corpus(opts.out, opts.videos, opts.frames, opts.seed, opts.regenerate)
    csvs = sorted(openface_dir.glob("*.csv"))
    runs = opts.out / "features"
    res = BenchResult("features")
    res.details.update(videos=len(csvs), frames_per_video=opts.frames, max_new_tokens=opts.max_new_tokens,
                       batch_size=opts.batch_size, torch_threads=torch.get_num_threads(), models=vars(models))

    # 1. the seed loop
    with Stopwatch() as sw:
        loop_agent = create_au_agent(**agent_options(models, opts), use_cache=False)
        clip_model = load_openai_clip(models.clip)
    res.details["load_seconds_loop"] = sw.seconds
    load0 = loadavg()
    with Stopwatch() as loop_sw:
        loop = seed_loop(csvs, loop_agent, clip_model, opts.progress)
    res.details["seed_loop"] = {"seconds": loop_sw.seconds, "rows": loop.rows,
                                "rows_per_s": loop.rows / loop_sw.seconds,
                                "model_calls": loop_agent.generated, "loadavg_before": load0,
                                "loadavg_after": loadavg()}

    # 2. precompute, cold, on the same frames
    cold = PrecomputeRun(runs / "all", openface_dir, FeatureSettings(sampling="all"), models, opts)
    load0 = loadavg()
    cold_seconds, summary = cold.run(opts.progress)
    check = compare(loop, cold.features_dir)
    n = check["frames_compared"]
    res.details["precompute_cold"] = {"seconds": cold_seconds, "summary": summary, "load_seconds": cold.load_seconds,
                                      "loadavg_before": load0, "loadavg_after": loadavg()}
    res.details["equality"] = check
    res.ok = check["equal"] and check["description_mismatches"] == 0
    if not res.ok:
        log.error("features differ: %s", check)
    speedup = loop_sw.seconds / cold_seconds
    res.add("seed loop", n / loop_sw.seconds, "desc/s",
            note=f"{loop_sw.seconds:.1f} s, {loop_agent.generated} model calls")
    res.add("precompute cold", n / cold_seconds, "desc/s",
            note=f"{cold_seconds:.1f} s, {summary['agent_generated']} generated")
    res.add("cold speed-up", speedup, "×", Target(">=", TARGET_COLD_SPEEDUP), note=f"same {n} frames")
    res.add("feature max |diff|", check["max_abs_diff"], "", Target("<=", FP16_ATOL), note="float16 storage")
    res.add("description mismatches", check["description_mismatches"], "", Target("<=", 0))

    # 3. warm rerun
    warm = cold.warm(opts.warm_repeats)
    warm_s = statistics.median(warm)
    res.details["warm_in_process_seconds"] = warm
    res.add("warm rerun (in-process)", len(csvs) / warm_s, "videos/s", Target(">=", TARGET_WARM_VIDEOS_PER_S),
            note=f"median of {len(warm)}: {warm_s * 1000:.1f} ms")
    if opts.cli_warm:
        load0 = loadavg()
        cli = cold.cli_warm_seconds(opts.warm_repeats)
        cli_s = statistics.median(cli)
        res.details["warm_cli_process_seconds"] = cli
        res.add("warm rerun (whole CLI process)", len(csvs) / cli_s, "videos/s",
                Target(">=", TARGET_CLI_WARM_VIDEOS_PER_S),
                note=f"median of {len(cli)}: {cli_s * 1000:.0f} ms incl. Python and imports; load {load0}")

    # 4. T = 8 uniform: cold into fresh caches, then warm
    uniform = PrecomputeRun(runs / "uniform8", openface_dir, FeatureSettings(frames=8, sampling="uniform"), models,
                            opts)
    u_seconds, u_summary = uniform.run(opts.progress)
    u_warm = statistics.median(uniform.warm(opts.warm_repeats))
    res.details["uniform8"] = {"cold_seconds": u_seconds, "summary": u_summary, "warm_seconds": u_warm}
    res.add("T=8 uniform cold", len(csvs) / u_seconds, "videos/s",
            note=f"{u_seconds:.2f} s, {u_summary['agent_generated']} generated")
    res.add("T=8 uniform warm (in-process)", len(csvs) / u_warm, "videos/s", Target(">=", TARGET_WARM_VIDEOS_PER_S))

    if opts.profile:
        res.details["profiles"] = _profile(csvs[: opts.profile_videos], loop_agent, clip_model, models, opts)
    return res


def _profile(csvs: List[Path], loop_agent: Any, clip_model: Any, models: TinyModels,
             opts: FeaturesBenchOptions) -> Dict[str, Any]:
    """cProfile the loop and a cold precompute on the first few videos (separately from the timed runs)."""
    from affectgpt_patch.features.store import FeatureSettings

    root = opts.out / "profiles"
    subset = fresh_dir(opts.out / "features" / "profile_subset")
    for csv in csvs:
        (subset / csv.name).write_bytes(csv.read_bytes())
    found: Dict[str, Any] = {}
    with profiled(True, root / "seed_loop.prof") as found["seed_loop"]:
        seed_loop(csvs, loop_agent, clip_model, progress=False)
    run = PrecomputeRun(opts.out / "features" / "profile_run", subset, FeatureSettings(sampling="all"), models, opts)
    with profiled(True, root / "precompute_cold.prof") as found["precompute_cold"]:
        run.run()
    return found

"""``precompute --engine ray``: the whole precompute as one Ray Data job. Each video is planned in a Ray task
(``features.plan_csv``), the corpus' distinct AU inputs are described once on the cluster
(:func:`.ray_engine.describe_distinct`), and each video is CLIP-encoded and written by an actor pool
(``precompute.write_plans``), so the files, summary, manifest and failures are those of the local engine. Ray is
imported only by the functions of this module, never at import time.
"""
from __future__ import annotations

import collections
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from au_core.errors import AUAgentError

from ..agent.config import AgentConfig, fingerprint
from ..captions.caption import check_caption_budget, with_tokenizer
from ..features.compute import FramePlan
from ..features.precompute import (
    PrecomputeOptions,
    corpus_names,
    log_redone,
    prepare_out,
    split_done,
    write_failures,
    write_manifest,
    write_plans,
)
from ..features.store import FeatureSettings
from .ray_engine import AGENT_STATS, RayOptions, _unwrap, connect, describe_distinct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """How each CLIP actor loads its encoder (``clip_encoder.load_clip_text_encoder``'s arguments)."""

    name: str
    device: Optional[str] = None
    cache_dir: Optional[str] = None
    use_cache: bool = True


def _plan_json(plan: FramePlan) -> str:
    return json.dumps({"name": plan.name, "frames": plan.frames, "mask": [bool(m) for m in plan.mask],
                       "inputs": plan.inputs, "total_frames": plan.total_frames, "times": plan.times,
                       "source": plan.source},
                      ensure_ascii=False)


def _plan_from_json(text: str) -> FramePlan:
    d = json.loads(text)
    return FramePlan(d["name"], d["frames"], np.asarray(d["mask"], dtype=bool), d["inputs"], d["total_frames"],
                     d["times"], d.get("source"))


def _plan_batch(batch: Dict[str, np.ndarray], openface_dir: str, settings: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Read and plan each video of the batch, exactly as the local engine does; a bad CSV becomes its reason."""
    from ..features.compute import plan_csv

    fs = FeatureSettings(**settings)
    plans, errors = [], []
    for name in batch["name"]:
        try:
            plans.append(_plan_json(plan_csv(Path(openface_dir) / f"{name}.csv", fs)))
            errors.append("")
        except AUAgentError as e:
            plans.append("")
            errors.append(e.problem)
    return {"name": batch["name"], "plan": np.array(plans, dtype=object), "error": np.array(errors, dtype=object)}


class _Writer:
    """One CLIP encoder per actor; encodes a batch of planned videos and writes their files."""

    def __init__(self, clip: ClipSpec, descriptions: List[Any], agent_fingerprint: str,
                 opts: PrecomputeOptions) -> None:
        import ray

        from ..features.clip_encoder import load_clip_text_encoder

        self.encoder = load_clip_text_encoder(clip.name, device=clip.device, cache_dir=clip.cache_dir,
                                              use_cache=clip.use_cache)
        self.descriptions = ray.get(descriptions[0])
        self.agent_fingerprint = agent_fingerprint
        self.opts = opts

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        plans = [_plan_from_json(str(p)) for p, error in zip(batch["plan"], batch["error"]) if not error]
        if not plans:
            return {"name": np.array([], dtype=object), "clip_encoded": np.array([], dtype=np.int64)}
        before = self.encoder.encoded
        names = list(write_plans(plans, self.descriptions, self.encoder, self.agent_fingerprint, self.opts))
        encoded = np.zeros(len(names), dtype=np.int64)
        encoded[0] = self.encoder.encoded - before
        return {"name": np.array(names, dtype=object), "clip_encoded": encoded}


def check_clip(name: str) -> str:
    """The fingerprint of a CLIP model name or file, checked on the driver before any actor starts."""
    from ..features.clip_encoder import check_clip_name, clip_fingerprint

    check_clip_name(name)
    return clip_fingerprint(name)


def precompute_on_ray(opts: PrecomputeOptions, config: AgentConfig, clip: ClipSpec,
                      ray_opts: RayOptions) -> Dict[str, Any]:
    """``precompute`` as one Ray job: the same files, summary, manifest and failures as the local engine."""
    names, mine = corpus_names(opts)
    opts = replace(opts, caption=with_tokenizer(opts.caption, config.base_model))
    src = Path(opts.openface_dir)
    agent_fp, clip_fp = fingerprint(config), check_clip(clip.name)
    redone: Dict[str, int] = {}
    todo, done_meta = split_done(mine, opts, agent_fp, clip_fp, redone)
    log.info("%d videos in %s, %d in shard %d/%d: %d to do, %d already done", len(names), src, len(mine),
             *opts.shard, len(todo), len(done_meta))
    if todo:
        check_caption_budget(opts.caption)
    log_redone(redone, prepare_out(opts))
    owns = connect(ray_opts)
    try:
        failed, stats, done, encoded = _run_job(todo, opts, config, clip, agent_fp, ray_opts)
    finally:
        if owns:
            import ray

            ray.shutdown()
    manifest = write_manifest(opts.out, done_meta)
    write_failures(opts.out, failed, set(names))
    by_reason = collections.Counter(failed.values())
    return {"videos": len(mine), "done": done, "skipped": len(done_meta), "failed": len(failed),
            "failed_by_reason": dict(by_reason.most_common()), "manifest_entries": manifest,
            "redone": sum(redone.values()), "redone_by_reason": redone,
            **{f"agent_{k}": v for k, v in stats.items()}, "clip_encoded": encoded}


def _run_job(todo: List[str], opts: PrecomputeOptions, config: AgentConfig, clip: ClipSpec, agent_fp: str,
             ray_opts: RayOptions) -> Tuple[Dict[str, str], Dict[str, int], int, int]:
    import ray

    failed: Dict[str, str] = {}
    if not todo:
        return failed, dict.fromkeys(AGENT_STATS, 0), 0, 0
    per_batch = ray_opts.videos_per_batch
    videos = ray.data.from_items([{"name": n} for n in todo],
                                 override_num_blocks=max(1, min(len(todo) // per_batch + 1, 1024)))
    plans = videos.map_batches(_plan_batch, fn_kwargs={"openface_dir": str(opts.openface_dir),
                                                       "settings": asdict(opts.settings)},
                               batch_size=per_batch, num_cpus=1).materialize()
    inputs = set()
    for row in plans.iter_rows():
        if row["error"]:
            failed[str(row["name"])] = str(row["error"])
            log.warning("%s: %s", Path(opts.openface_dir) / f"{row['name']}.csv", row["error"])
        else:
            inputs.update(s for s in json.loads(row["plan"])["inputs"] if s is not None)
    descriptions, stats = describe_distinct(sorted(inputs), config, ray_opts, opts.batch_size)
    written = plans.map_batches(
        _Writer, fn_constructor_kwargs={"clip": clip, "descriptions": [ray.put(descriptions)],
                                        "agent_fingerprint": agent_fp, "opts": _quiet(opts)},
        batch_size=per_batch, compute=ray.data.ActorPoolStrategy(size=ray_opts.clip_actors), num_cpus=1)
    done = encoded = 0
    try:
        for row in written.iter_rows():
            done += 1
            encoded += int(row["clip_encoded"])
    except Exception as e:  # noqa: BLE001 - a Ray task failure: show the user's error when there is one
        raise _unwrap(e) from None
    return failed, stats, done, encoded


def _quiet(opts: PrecomputeOptions) -> PrecomputeOptions:
    """The options the actors see: no tqdm bars of their own (Ray shows the job's progress)."""
    from dataclasses import replace

    return replace(opts, progress=False)

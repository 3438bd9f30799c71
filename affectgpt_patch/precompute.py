"""``au-agent precompute``: AU features for a whole corpus, once, so training reads them at disk speed.

For every ``{openface_dir}/{name}.csv`` it writes ``{out}/{name}.npy`` (float16 [T, D], D the CLIP model's
width) and ``{name}.json`` (frames, input strings, descriptions, mask, agent and CLIP fingerprints), and
rebuilds ``manifest.jsonl``.

Work is batched across videos: a chunk of videos is planned, its distinct AU inputs are described in large
batches, its distinct descriptions encoded in large batches, then each video is assembled and written. The
``{name}.json`` of a video is written last (atomically, with the npy's checksum), so a killed run leaves each
video either complete or redone by the next run, which skips completed videos made with the same settings.
Descriptions and CLIP features are cached, so the rerun reproduces the uninterrupted run byte for byte.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
from tqdm import tqdm

from data_prep import atomic
from data_prep.errors import AUAgentError
from data_prep.openface import read_openface_csv

from .features import (FeatureSettings, FramePlan, assemble, describe_plan, meta_mismatches, plan_video,
                       precomputed_meta, save_video_features)

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"


def parse_shard(text: str) -> Tuple[int, int]:
    """``"2/4"`` → ``(2, 4)``: shard indices start at 0."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise AUAgentError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise AUAgentError(f"--shard {text}: need 0 <= i < N")
    return i, n


def in_shard(name: str, shard: Tuple[int, int]) -> bool:
    """Stable assignment by name, independent of which other videos exist."""
    i, n = shard
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % n == i


@dataclass
class PrecomputeOptions:
    openface_dir: Path
    out: Path
    settings: FeatureSettings = field(default_factory=FeatureSettings)
    shard: Tuple[int, int] = (0, 1)
    batch_size: int = 64  # descriptions per model batch
    chunk_videos: int = 256  # videos planned and described together
    progress: bool = True


def precompute(opts: PrecomputeOptions, agent: Any, encoder: Any) -> Dict[str, Any]:
    """Run the corpus; return the summary (done / skipped / failed by reason)."""
    src = Path(opts.openface_dir)
    if not src.is_dir():
        raise AUAgentError("OpenFace folder not found", src)
    names = sorted(p.stem for p in src.glob("*.csv"))
    if not names:
        raise AUAgentError("no OpenFace *.csv files", src)
    mine = [n for n in names if in_shard(n, opts.shard)]
    todo, done_meta = split_done(mine, opts, agent.fingerprint, encoder.fingerprint)
    skipped = len(done_meta)
    log.info("%d videos in %s, %d in shard %d/%d: %d to do, %d already done", len(names), src, len(mine),
             *opts.shard, len(todo), skipped)
    failed: Dict[str, str] = {}
    done = 0
    with tqdm(total=len(todo), desc="precomputing AU features", unit="video", disable=not opts.progress) as bar:
        for start in range(0, len(todo), opts.chunk_videos):
            chunk = todo[start:start + opts.chunk_videos]
            done += _run_chunk(chunk, opts, agent, encoder, failed, bar)
    manifest = write_manifest(opts.out, done_meta)
    by_reason = collections.Counter(failed.values())
    write_failures(opts.out, failed)
    return {"videos": len(mine), "done": done, "skipped": skipped, "failed": len(failed),
            "failed_by_reason": dict(by_reason.most_common()), "manifest_entries": manifest,
            **{f"agent_{k}": v for k, v in agent.cache_stats().items()}, "clip_encoded": encoder.encoded}


def _run_chunk(chunk: List[str], opts: PrecomputeOptions, agent: Any, encoder: Any, failed: Dict[str, str],
               bar: tqdm) -> int:
    plans = []
    for name in chunk:
        try:
            track = read_openface_csv(Path(opts.openface_dir) / f"{name}.csv", opts.settings.min_confidence)
            plans.append(plan_video(track, opts.settings))
        except AUAgentError as e:
            failed[name] = e.problem
            log.warning("%s", e)
            bar.update(1)
    inputs = sorted({s for p in plans for s in p.inputs if s is not None})
    descriptions = dict(zip(inputs, agent.describe_inputs(inputs, batch_size=opts.batch_size,
                                                           progress=opts.progress)))
    done = 0
    for _ in write_plans(plans, descriptions, encoder, agent.fingerprint, opts):
        done += 1
        bar.update(1)
    return done


def split_done(names: List[str], opts: PrecomputeOptions, agent_fingerprint: Optional[str],
               clip_fingerprint: Optional[str]) -> Tuple[List[str], Dict[str, Dict[str, Any]]]:
    """Names still to do, and the records of those already complete with these settings (every engine skips
    the same videos): the JSON and the npy checksum decide; the features themselves are not decoded."""
    todo, done_meta = [], {}
    for name in names:
        meta = precomputed_meta(opts.out, name)
        if meta is not None and not meta_mismatches(meta, opts.settings, agent_fingerprint, clip_fingerprint):
            done_meta[name] = meta
        else:
            todo.append(name)
    return todo, done_meta


def write_plans(plans: List[FramePlan], descriptions: Mapping[str, str], encoder: Any,
                agent_fingerprint: Optional[str], opts: PrecomputeOptions) -> Iterator[str]:
    """Encode the plans' distinct descriptions in one pass, then assemble and write each video; yields names."""
    encoded = _EncodedTexts(encoder, sorted({descriptions[s] for p in plans for s in p.inputs if s is not None}),
                            opts.progress)
    for plan in plans:
        vf = assemble(plan, describe_plan(plan, descriptions), encoded, agent_fingerprint, opts.settings)
        save_video_features(opts.out, vf)
        yield plan.name


def write_failures(out: os.PathLike, failed: Mapping[str, str]) -> None:
    """``failures.jsonl``: one ``{"name", "reason"}`` line per failed video, by name."""
    if failed:
        atomic.write_text(Path(out) / FAILURES, "".join(
            json.dumps({"name": n, "reason": r}, ensure_ascii=False) + "\n" for n, r in sorted(failed.items())))


class _EncodedTexts:
    """A chunk's descriptions encoded in one pass; ``assemble`` looks vectors up here instead of re-encoding."""

    def __init__(self, encoder: Any, texts: List[str], progress: bool) -> None:
        self.dim, self.fingerprint = encoder.dim, encoder.fingerprint
        self._vectors = dict(zip(texts, encoder.encode(texts, progress=progress))) if texts else {}

    def encode(self, texts: List[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])


def write_manifest(out: os.PathLike, known: Optional[Dict[str, Dict[str, Any]]] = None) -> int:
    """Rebuild ``manifest.jsonl`` from the complete videos in ``out`` (all shards' work included); ``known``
    holds records this process has just read and checked (by name), which are not parsed again."""
    out = Path(out)
    known = known or {}
    lines = []
    for meta_path in sorted(out.glob("*.json")):
        meta = known.get(meta_path.stem)
        if meta is None:
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
        if not isinstance(meta, dict) or "npy_sha256" not in meta:
            continue
        lines.append(json.dumps({"name": meta["name"], "shape": meta["shape"], "valid_frames": sum(meta["mask"]),
                                 "agent": meta.get("agent"), "clip": meta.get("clip"),
                                 "settings": meta.get("settings"), "npy_sha256": meta["npy_sha256"]},
                                ensure_ascii=False))
    atomic.write_text(out / MANIFEST, "".join(line + "\n" for line in lines))
    return len(lines)

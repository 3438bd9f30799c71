"""``au-agent precompute``: AU features for a whole corpus, once, so training reads them at disk speed.

For every ``{openface_dir}/{name}.csv`` it writes ``{out}/{name}.npy`` (float16 [T, D], D the CLIP model's
width) and ``{name}.json`` (frames, input strings, descriptions, mask, agent and CLIP fingerprints), and
rebuilds ``manifest.jsonl``.

Work is batched across videos: a chunk of videos is planned, its distinct AU inputs are described in large
batches, its distinct descriptions encoded in large batches, then each video is assembled and written. The
``{name}.json`` of a video is written last (atomically, with the npy's checksum), so a killed run leaves each
video either complete or redone by the next run, which skips completed videos made with the same settings,
of the same name and from the same input bytes (see :mod:`.provenance`: a stale record is redone, and counted).
Descriptions and CLIP features are cached, so the rerun reproduces the uninterrupted run byte for byte.

A video that cannot be done (unreadable CSV, a name the file system refuses) is that video's failure; one
without any valid frame is written all masked, as the dataset mixin would compute it, and listed as a failure
too (it is re-checked on every run, so a fixed CSV is picked up). A failure is recorded atomically in
``.failures/`` (one file per video, so shards writing into one folder keep each other's) and removed when the
video later succeeds; ``failures.jsonl`` is merged from those records at the end of every run. A run starts by
removing the temporary files that killed runs left.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from au_core import atomic
from au_core.errors import AUAgentError, StorageError
from au_core.folder_lock import folder_lock
from au_core.storage import output_errors
from au_core.video_names import check_unique_videos

from ..captions.caption import CaptionSettings, caption_mismatch, check_caption_budget, video_caption, with_tokenizer
from ..config_access import PathArg
from .protocols import CorpusDescriber, CorpusEncoder
from .provenance import stale_reason
from .store import FeatureSettings, meta_mismatches, precomputed_meta, save_video_features

if TYPE_CHECKING:
    import numpy as np
    from tqdm import tqdm

    from .compute import FramePlan

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
FAILURE_DIR = ".failures"  # one {"name", "reason"} record per failed video
COMMAND = "precompute"


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
    #: the AU caption written into each {name}.json (the text route); None: features only
    caption: Optional[CaptionSettings] = field(default_factory=CaptionSettings)


def corpus_names(opts: PrecomputeOptions) -> Tuple[List[str], List[str]]:
    """All videos of ``--openface-dir`` (one per ``{name}.csv``) and those of this shard; both engines list so."""
    src = Path(opts.openface_dir)
    if not src.is_dir():
        raise AUAgentError("OpenFace folder not found", src)
    csvs = sorted(src.glob("*.csv"))
    if not csvs:
        raise AUAgentError("no OpenFace *.csv files", src)
    check_unique_videos(csvs)  # e.g. clip.csv and Clip.csv: one {name}.npy on case-insensitive file systems
    names = [p.stem for p in csvs]
    return names, [n for n in names if in_shard(n, opts.shard)]


def precompute(opts: PrecomputeOptions, agent: CorpusDescriber, encoder: CorpusEncoder) -> Dict[str, Any]:
    """Run the corpus; return the summary (done / skipped / failed by reason)."""
    with output_errors(opts.out):  # a full disk stops the run at once, named by --out
        return _precompute(opts, agent, encoder)


def _precompute(opts: PrecomputeOptions, agent: CorpusDescriber, encoder: CorpusEncoder) -> Dict[str, Any]:
    names, mine = corpus_names(opts)
    opts = replace(opts, caption=with_tokenizer(opts.caption, getattr(getattr(agent, "config", None), "base_model",
                                                                      None)))
    src = Path(opts.openface_dir)
    atomic.check_output_dir(opts.out, COMMAND, legacy=(MANIFEST,))  # refuses a foreign folder; writes nothing
    redone: Dict[str, int] = {}
    todo, done_meta = split_done(mine, opts, agent.fingerprint, encoder.fingerprint, redone)
    if todo:  # a finished rerun loads no tokenizer; a budget too small is refused before any output exists
        check_caption_budget(opts.caption)
    out = prepare_out(opts)
    skipped = len(done_meta)
    log.info("%d videos in %s, %d in shard %d/%d: %d to do, %d already done", len(names), src, len(mine),
             *opts.shard, len(todo), skipped)
    log_redone(redone, out)
    failed: Dict[str, str] = {}
    done = 0
    if todo:  # a finished rerun imports no progress bar and loads no model
        from tqdm import tqdm

        with tqdm(total=len(todo), desc="precomputing AU features", unit="video", disable=not opts.progress) as bar:
            for start in range(0, len(todo), opts.chunk_videos):
                chunk = todo[start:start + opts.chunk_videos]
                done += _run_chunk(chunk, opts, out, agent, encoder, failed, bar)
    manifest = write_manifest(out, done_meta)
    write_failures(out, failed, set(names))
    by_reason = collections.Counter(failed.values())
    return {"videos": len(mine), "done": done, "skipped": skipped, "failed": len(failed),
            "failed_by_reason": dict(by_reason.most_common()), "manifest_entries": manifest,
            "redone": sum(redone.values()), "redone_by_reason": redone,
            **{f"agent_{k}": v for k, v in agent.cache_stats().items()}, "clip_encoded": encoder.encoded}


#: Why a finished record is redone when nothing is wrong with it but the way it was made.
OTHER_SETTINGS = "was made otherwise"


def log_redone(redone: Mapping[str, int], out: Path) -> None:
    """Say how many finished-looking videos are redone because their record is stale or made otherwise, and why."""
    if redone:
        log.warning("%s: redoing %d finished videos whose record %s", out, sum(redone.values()),
                    ", ".join(f"{reason} ({n})" for reason, n in sorted(redone.items())))


def _done_meta(out: Path, name: str) -> Optional[Dict[str, Any]]:
    """The record of a finished video, or None: an unreadable or malformed ``{name}.json`` (or one the file
    system refuses) means the video is redone, not that the corpus stops."""
    try:
        meta = precomputed_meta(out, name)
    except (AUAgentError, OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        log.warning("%s: unreadable earlier output (%s); redoing the video", out / f"{name}.json", e)
        return None
    return meta if isinstance(meta, dict) else None


def _fail(out: Path, failed: Dict[str, str], name: str, reason: str, bar: Optional[tqdm]) -> None:
    failed[name] = reason
    log.warning("%s: %s", name, reason)
    try:
        atomic.write_json(_failure_path(out, name), {"name": name, "reason": reason})
    except OSError as e:
        log.error("%s: cannot record the failure of %s (%s)", out / FAILURE_DIR, name, e)
    if bar is not None:
        bar.update(1)


def _run_chunk(chunk: List[str], opts: PrecomputeOptions, out: Path, agent: CorpusDescriber,
               encoder: CorpusEncoder, failed: Dict[str, str], bar: tqdm) -> int:
    from .compute import plan_csv  # numpy and the CSV reader: only when a video is to be done

    plans = []
    for name in chunk:
        try:
            plan = plan_csv(Path(opts.openface_dir) / f"{name}.csv", opts.settings)
        except AUAgentError as e:
            _fail(out, failed, name, e.problem, bar)
            continue
        except (OSError, ValueError) as e:
            _fail(out, failed, name, f"cannot read {name}.csv ({getattr(e, 'strerror', None) or e})", bar)
            continue
        plans.append(plan)
    inputs = sorted({s for p in plans for s in p.inputs if s is not None})
    descriptions = dict(zip(inputs, agent.describe_inputs(inputs, batch_size=opts.batch_size,
                                                           progress=opts.progress)))
    done = 0
    for _ in write_plans(plans, descriptions, encoder, agent.fingerprint, opts, failed, bar):
        done += 1
        bar.update(1)
    return done


def _has_valid_frame(meta: Dict[str, Any]) -> bool:
    mask = meta.get("mask")
    return isinstance(mask, list) and any(m is True for m in mask)


def _failure_path(out: Path, name: str) -> Path:
    """A bounded file name whatever the video's name (the record inside holds the name)."""
    return out / FAILURE_DIR / f"{hashlib.sha1(name.encode('utf-8')).hexdigest()[:20]}.json"


def _clear_failure(out: Path, name: str) -> None:
    path = _failure_path(out, name)
    if path.exists():
        path.unlink()
        atomic.fault_point(f"unlink {path}")


def merge_failures(out: PathArg, names: Optional[set] = None) -> int:
    """Rewrite ``failures.jsonl`` from the per-video records of every shard (removed when there are none);
    records of videos no longer among ``names`` (the corpus) are dropped. Under the folder's lock, as the
    manifest: the last list written is complete."""
    out = Path(out)
    with folder_lock(out):
        return _merge_failures(out, names)


def _merge_failures(out: Path, names: Optional[set]) -> int:
    records = []
    folder = out / FAILURE_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            name, reason = str(record["name"]), str(record["reason"])
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a record being replaced by another shard right now
        if names is not None and name not in names:
            path.unlink(missing_ok=True)
            atomic.fault_point(f"unlink {path}")
            continue
        records.append((name, reason))
    if records:
        atomic.write_text_if_changed(out / FAILURES, "".join(json.dumps({"name": n, "reason": r}, ensure_ascii=False)
                                                             + "\n" for n, r in sorted(records)))
    elif (out / FAILURES).exists():
        (out / FAILURES).unlink()
        atomic.fault_point("unlink failures")
    return len(records)


def split_done(names: List[str], opts: PrecomputeOptions, agent_fingerprint: Optional[str],
               clip_fingerprint: Optional[str], redone: Optional[Dict[str, int]] = None
               ) -> Tuple[List[str], Dict[str, Dict[str, Any]]]:
    """Names still to do, and the records of those already complete with these settings (every engine skips
    the same videos): the JSON and the npy checksum decide; the features themselves are not decoded. A video
    without a valid frame is re-checked on every run (a fixed CSV is picked up). A record of another video,
    of an input that has changed, without an input fingerprint, or made with other settings, agent or CLIP is
    redone, counted by reason in ``redone`` (a record made otherwise under the differences that make it so)."""
    todo, done_meta = [], {}
    for name in names:
        meta = _done_meta(Path(opts.out), name)
        if meta is not None and _has_valid_frame(meta):
            differences = (meta_mismatches(meta, opts.settings, agent_fingerprint, clip_fingerprint)
                           + caption_mismatch(meta, opts.caption))
            reason = (f"{OTHER_SETTINGS}: {'; '.join(differences)}" if differences
                      else _stale(meta, name, Path(opts.openface_dir) / f"{name}.csv"))
            if reason is None:
                done_meta[name] = meta
                continue
            if redone is not None:
                redone[reason] = redone.get(reason, 0) + 1
        todo.append(name)
    return todo, done_meta


def _stale(meta: Dict[str, Any], name: str, csv: Path) -> Optional[str]:
    """Why a complete record must be redone (see :mod:`.provenance`); an unreadable CSV is the rerun's failure."""
    try:
        return stale_reason(meta, name, csv)
    except OSError:
        return "its input cannot be read"


def write_plans(plans: List[FramePlan], descriptions: Mapping[str, str], encoder: CorpusEncoder,
                agent_fingerprint: Optional[str], opts: PrecomputeOptions,
                failed: Optional[Dict[str, str]] = None, bar: Optional[tqdm] = None) -> Iterator[str]:
    """Encode the plans' distinct descriptions in one pass, then assemble and write each video; yields the
    names written. A video that cannot be written, or has no valid frame (written all masked, as computed on
    the fly), is recorded as a failure (in ``.failures/``, and in ``failed`` when given)."""
    from .compute import assemble, describe_plan

    out = Path(opts.out)
    encoded = _EncodedTexts(encoder, sorted({descriptions[s] for p in plans for s in p.inputs if s is not None}),
                            opts.progress)
    failed = {} if failed is None else failed
    for plan in plans:
        try:
            caption = None if opts.caption is None else video_caption(plan.times, describe_plan(plan, descriptions),
                                                                        opts.caption)
        except AUAgentError as e:  # this video's first description alone is over the budget: its failure
            _fail(out, failed, plan.name, e.problem, bar)
            continue
        vf = assemble(plan, describe_plan(plan, descriptions), encoded, agent_fingerprint, opts.settings)
        if caption is not None:
            vf.meta["caption"] = caption.record()
        try:
            save_video_features(out, vf)
        except StorageError:  # a full or read-only file system: every later video would fail the same way
            raise
        except OSError as e:  # e.g. a name too long for the file system
            _fail(out, failed, plan.name, f"cannot write its features ({e.strerror or e})", bar)
            continue
        except AUAgentError as e:  # e.g. a folder where its file should go
            _fail(out, failed, plan.name, f"cannot write its features ({e})", bar)
            continue
        if not plan.mask.any():
            _fail(out, failed, plan.name, f"no valid frame (no face, or confidence below "
                                          f"{opts.settings.min_confidence})", bar)
            continue
        _clear_failure(out, plan.name)
        yield plan.name


def write_failures(out: PathArg, failed: Mapping[str, str], names: Optional[set] = None) -> int:
    """Record ``failed`` (one atomic record per video in ``.failures/``) and rewrite ``failures.jsonl`` from the
    records of every shard; returns how many it lists."""
    for name, reason in failed.items():
        path = _failure_path(Path(out), name)
        if not path.is_file() or path.read_bytes() != atomic.dumps_json({"name": name, "reason": reason}).encode():
            atomic.write_json(path, {"name": name, "reason": reason})
    return merge_failures(out, names)


def prepare_out(opts: PrecomputeOptions) -> Path:
    """Claim the output folder (see :func:`au_core.atomic.claim_output_dir`) and remove what killed runs left."""
    out = atomic.claim_output_dir(opts.out, COMMAND, legacy=(MANIFEST,))
    atomic.remove_stale_temps(out / FAILURE_DIR)
    return out


class _EncodedTexts:
    """A chunk's descriptions encoded in one pass; ``assemble`` looks vectors up here instead of re-encoding."""

    def __init__(self, encoder: CorpusEncoder, texts: List[str], progress: bool) -> None:
        self._vectors = dict(zip(texts, encoder.encode(texts, progress=progress))) if texts else {}
        self.dim, self.fingerprint = encoder.dim, encoder.fingerprint  # after encoding: a cached vector tells it

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        return np.stack([self._vectors[t] for t in texts])


def write_manifest(out: PathArg, known: Optional[Dict[str, Dict[str, Any]]] = None) -> int:
    """Rebuild ``manifest.jsonl`` from the complete videos in ``out`` (all shards' work included); ``known``
    holds records this process has just read and checked (by name), which are not parsed again.

    Shards finish in any order, so the folder is listed again under its lock right before the write: the last
    manifest written lists every video. (A listing taken before another shard's last video, renamed into
    place after that shard's own manifest, would drop it.) Only the records new since the first pass are read
    under the lock."""
    out = Path(out)
    known = dict(known or {})
    _manifest_lines(out, known)
    with folder_lock(out):
        lines = _manifest_lines(out, known)
        atomic.write_text_if_changed(out / MANIFEST, "".join(line + "\n" for line in lines))
    return len(lines)


def _manifest_lines(out: Path, known: Dict[str, Dict[str, Any]]) -> List[str]:
    lines = []
    for meta_path in sorted(out.glob("*.json")):
        meta = known.get(meta_path.stem)
        if meta is None:
            try:
                meta = known[meta_path.stem] = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # half-made or foreign: not a finished video
                continue
        if not isinstance(meta, dict) or not all(k in meta for k in ("npy_sha256", "name", "shape", "mask")):
            continue
        lines.append(json.dumps({"name": meta["name"], "shape": meta["shape"], "valid_frames": sum(meta["mask"]),
                                 "agent": meta.get("agent"), "clip": meta.get("clip"),
                                 "settings": meta.get("settings"), "npy_sha256": meta["npy_sha256"]},
                                ensure_ascii=False))
    return lines

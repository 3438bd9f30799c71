"""What ``au-agent inspect`` shows, read from a pipeline output: a features folder (``au-agent precompute``), a
descriptions file (``au-agent describe``) or an evaluation folder (``au-agent eval``).

Everything is read and checked before the page is drawn (:mod:`affectgpt_patch.quality.inspect_page`), so a bad input
fails with one line and no HTML is written. The summary covers every video; the per-video views, which cost a
heatmap each, only the ``videos`` shown. The views and heatmaps themselves are :mod:`.inspect_views`.
"""
from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from tqdm import tqdm

from au_core import contract, fidelity
from au_core.errors import AUAgentError
from au_core.facs import INTENSITY_AUS
from au_core.video_names import check_unique_videos, check_video_lines

from ..features.frames import select_frames
from ..features.store import FeatureSettings
from .inspect_options import InspectOptions
from .inspect_views import (
    Corpus,
    EvalView,
    FrameRow,
    SystemTexts,
    VideoView,
    _csv_heatmap_or_none,
    _input_values,
    _slot_heatmap,
    heatmap_from_inputs,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ helpers


def detect_kind(path: Path) -> str:
    """Which pipeline output ``path`` is; raises for anything else."""
    if path.is_dir():
        if (path / "report.json").is_file() and (path / "predictions.jsonl").is_file():
            return "eval"
        if any(path.glob("*.npy")) or (path / "failures.jsonl").is_file():
            return "features"
        raise AUAgentError("no AU features ({name}.npy + {name}.json from au-agent precompute) and no evaluation "
                           "(report.json + predictions.jsonl from au-agent eval) in this folder", path)
    if path.is_file():
        if path.suffix == ".jsonl":
            return "descriptions"
        raise AUAgentError("expected a features folder, an eval folder or a descriptions .jsonl file", path)
    raise AUAgentError("not found", path)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AUAgentError(f"not valid JSON ({e.msg}, line {e.lineno}); the file is truncated or corrupt",
                           path) from None
    except UnicodeDecodeError:
        raise AUAgentError("not UTF-8 text", path) from None


def _check_list(values: Any, kind: type, key: str, where: Path) -> None:
    """A list of ``kind`` or None (masked slots), as precompute writes it."""
    if not isinstance(values, list) or not all(v is None or isinstance(v, kind) for v in values):
        raise AUAgentError(f"{key!r} is not a list of {kind.__name__} (or null) values", where)


def _load_jsonl(path: Path) -> List[Dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AUAgentError("not UTF-8 text", path) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AUAgentError(f"line {n} is not valid JSON ({e.msg}); the file is truncated or corrupt",
                               path) from None
        if not isinstance(row, dict):
            raise AUAgentError(f"line {n} is not a JSON object", path)
        rows.append(row)
    return rows


def _score(input_str: Optional[str], description: Optional[str], where: Path,
           memo: Dict[Tuple[frozenset, str], fidelity.FidelityScore]) -> Optional[fidelity.FidelityScore]:
    """The fidelity of a description against its input; None for masked and neutral frames (nothing to check).

    The score depends on the active AUs and the text only, so each distinct pair is scored once."""
    if input_str is None or description is None or contract.is_neutral(input_str):
        return None
    key = (frozenset(_input_values(input_str, where)), description)
    if key not in memo:
        memo[key] = fidelity.fidelity(description, key[0])
    return memo[key]


class _Tally:
    """Summary counts shared by the features and descriptions readers."""

    def __init__(self) -> None:
        self.au_active: collections.Counter = collections.Counter()
        self.frames = 0
        self.words: List[int] = []
        self.fidelity = fidelity.FidelityTally()

    def add(self, input_str: str, description: Optional[str], score: Optional[fidelity.FidelityScore],
            where: Path) -> None:
        self.frames += 1
        self.au_active.update(_input_values(input_str, where).keys())
        if description is not None:
            self.words.append(len(description.split()))
        if score is not None:
            self.fidelity.add(score)

    def fill(self, corpus: Corpus) -> None:
        corpus.au_active = {code: self.au_active.get(code, 0) for code in INTENSITY_AUS}
        corpus.au_frames = self.frames
        corpus.words = {"agent": self.words}
        corpus.fidelity = {"agent": self.fidelity.summary(per_au=False)}


def _activity(inputs: Iterable[Optional[str]], where: Path) -> float:
    counts = [len(_input_values(s, where)) for s in inputs if s is not None]
    return sum(counts) / len(counts) if counts else 0.0


def _fmt_settings(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _sort_videos(videos: List[VideoView], order: str) -> List[VideoView]:
    if order == "name":
        return sorted(videos, key=lambda v: v.name)
    if order == "activity":
        return sorted(videos, key=lambda v: (-v.activity, v.name))
    worst = lambda v: v.worst_f1 if v.worst_f1 is not None else 1.0  # noqa: E731
    return sorted(videos, key=lambda v: (-(v.masked / v.total if v.total else 1.0), worst(v), v.name))


def _shown_note(shown: int, total: int, what: str, order: str) -> str:
    return (f"{shown} of {total} {what} shown, sorted by {order}" + ("" if shown == total else
            " (raise --videos to see more; the summary covers all)"))


# ------------------------------------------------------------------------------------------------ features


_FEATURE_KEYS = ("name", "mask", "frames", "inputs", "descriptions", "settings")


def load_features(opts: InspectOptions) -> Corpus:
    """A precompute folder: every ``{name}.json`` for the summary, the first ``videos`` (sorted) drawn."""
    folder = opts.input
    metas: List[Dict[str, Any]] = []
    incomplete = []
    paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))  # not the output marker
    check_unique_videos(paths)
    for path in tqdm(paths, desc="reading features", unit="video", disable=not opts.progress):
        meta = _load_json(path)
        if not isinstance(meta, dict) or any(k not in meta for k in _FEATURE_KEYS):
            raise AUAgentError(f"not an au-agent precompute record (needs {', '.join(_FEATURE_KEYS)})", path)
        _check_list(meta["mask"], bool, "mask", path)
        _check_list(meta["frames"], int, "frames", path)
        _check_list(meta["inputs"], str, "inputs", path)
        _check_list(meta["descriptions"], str, "descriptions", path)
        if len({len(meta[k]) for k in ("mask", "frames", "inputs", "descriptions")}) != 1:
            raise AUAgentError("mask, frames, inputs and descriptions differ in length", path)
        if not (folder / f"{path.stem}.npy").is_file():
            incomplete.append(path.stem)
        metas.append(meta)
    failures = _load_jsonl(folder / "failures.jsonl") if (folder / "failures.jsonl").is_file() else []
    if not metas and not failures:
        raise AUAgentError("no {name}.json feature records in this folder", folder)

    tally, memo = _Tally(), {}
    masked_slots, fully_masked, partly_masked = 0, 0, 0
    fingerprints: collections.Counter = collections.Counter()
    views = []
    for meta in metas:
        where = folder / f"{meta['name']}.json"
        mask = [bool(m) for m in meta["mask"]]
        masked = mask.count(False)
        masked_slots += masked
        fully_masked += int(masked == len(mask))
        partly_masked += int(0 < masked < len(mask))
        fingerprints[(meta.get("agent"), meta.get("clip"), meta.get("contract_version"),
                      json.dumps(meta.get("settings"), sort_keys=True))] += 1
        rows = []
        for slot, (ok, f, s, d) in enumerate(zip(mask, meta["frames"], meta["inputs"], meta["descriptions"]), 1):
            score = _score(s, d, where, memo) if ok else None
            if ok and s is not None:
                tally.add(s, d, score, where)
            rows.append(FrameRow(slot, f, s if ok else None, d if ok else None,
                                 None if ok else "no valid frame in the video", score))
        views.append(VideoView(meta["name"], None, rows, masked, len(mask),  # type: ignore[arg-type]
                               _activity(meta["inputs"], where), caption=_caption_line(meta.get("caption"))))
    by_reason = collections.Counter(str(f.get("reason", "unknown")) for f in failures)
    corpus = Corpus("features", folder, [
        ("videos with features", str(len(metas))),
        ("videos failed (failures.jsonl)", str(len(failures))),
        ("videos with every slot masked (no valid frame)", str(fully_masked)),
        ("videos with some slots masked", str(partly_masked)),
        ("masked slots", f"{masked_slots} of {sum(len(m['mask']) for m in metas)}"),
    ] + ([("JSON without its .npy (incomplete)", str(len(incomplete)))] if incomplete else []),
        problems=dict(by_reason.most_common()),
        failed=sorted((str(f.get("name", "?")), str(f.get("reason", "unknown"))) for f in failures))
    tally.fill(corpus)
    for (agent, clip, version, settings), n in fingerprints.most_common():
        prefix = f"{n} videos: " if len(fingerprints) > 1 else ""
        corpus.settings += [(f"{prefix}agent fingerprint", str(agent)), (f"{prefix}CLIP fingerprint", str(clip)),
                            (f"{prefix}prompt contract", str(version)),
                            (f"{prefix}frame settings", _fmt_settings(json.loads(settings) or {}))]
    if len(fingerprints) > 1:
        corpus.settings.insert(0, ("warning", f"{len(fingerprints)} different agent / CLIP / settings combinations "
                                              "in one folder: AffectGPT would train on mixed features"))

    shown = _sort_videos(views, opts.sort)[:opts.videos]
    by_name = {m["name"]: m for m in metas}
    for view in shown:
        meta = by_name[view.name]
        settings = meta.get("settings") or {}
        min_conf = float(settings.get("min_confidence", FeatureSettings().min_confidence))
        chosen = [f if ok else None for f, ok in zip(meta["frames"], meta["mask"])]
        heatmap, view.note = _csv_heatmap_or_none(opts, view.name, min_conf, chosen)
        if heatmap is None:
            heatmap = _slot_heatmap(meta, folder / f"{view.name}.json", opts.max_columns)
        view.heatmap = heatmap
    corpus.videos = shown
    corpus.shown_note = _shown_note(len(shown), len(views), "videos", opts.sort)
    return corpus


# ------------------------------------------------------------------------------------------------ descriptions


def _caption_line(cap: Any) -> Optional[str]:
    """``"(37 of 256 tokens, 1 description cut) 0.0 s: …"`` from a record's caption, None without one."""
    if not isinstance(cap, dict) or not isinstance(cap.get("text"), str):
        return None
    cut = cap.get("cut") or 0
    return (f"({cap.get('tokens')} of {cap.get('max_tokens')} tokens"
            + (f", {cut} description{'s' if cut != 1 else ''} cut" if cut else "") + f") {cap['text']}")


def load_descriptions(opts: InspectOptions) -> Corpus:
    """A ``describe`` JSONL file: one line per frame; the chosen frames are the T frames AffectGPT would see
    (:func:`frames.select_frames` with the default feature settings)."""
    path = opts.input
    rows = _load_jsonl(path)
    if not rows:
        raise AUAgentError("no frame records", path)
    videos: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
    for n, row in enumerate(rows, 1):
        if (not isinstance(row.get("video"), str) or not isinstance(row.get("frame"), int)
                or not isinstance(row.get("input", 0), (str, type(None)))
                or not isinstance(row.get("description"), (str, type(None)))):
            raise AUAgentError(f"line {n} is not an au-agent describe record (video, frame, input, description)",
                               path)
        videos[row["video"]].append(row)
    check_video_lines(rows, path)
    settings = FeatureSettings()
    tally, memo = _Tally(), {}
    masked_by_reason: collections.Counter = collections.Counter()
    views, plans = [], {}
    for name, recs in tqdm(videos.items(), desc="reading descriptions", unit="video", disable=not opts.progress):
        recs.sort(key=lambda r: r["frame"])
        frames = [r["frame"] for r in recs]
        valid = [r["input"] is not None for r in recs]
        for r in recs:
            if r["input"] is None:
                masked_by_reason[str(r.get("masked") or "masked")] += 1
            else:
                tally.add(r["input"], r.get("description"), _score(r["input"], r.get("description"), path, memo),
                          path)
        sampling = "uniform" if settings.sampling == "peaks" else settings.sampling
        selection = select_frames(np.array(frames), np.array(valid), settings.frames, sampling)
        by_frame = {r["frame"]: r for r in recs}
        out_rows = []
        for slot, f in enumerate(selection.frames, 1):
            r = by_frame.get(f) if f is not None else None
            s, d = (r["input"], r.get("description")) if r else (None, None)
            out_rows.append(FrameRow(slot, f, s, d, None if r else "no valid frame in the video",
                                     _score(s, d, path, memo)))
        plans[name] = (frames, [r["input"] for r in recs], selection.frames)
        views.append(VideoView(name, None, out_rows, valid.count(False), len(recs),  # type: ignore[arg-type]
                               _activity([r["input"] for r in recs], path)))
    corpus = Corpus("descriptions", path, [
        ("videos", str(len(videos))),
        ("frames", str(len(rows))),
        ("masked frames (not described)", str(sum(masked_by_reason.values()))),
        ("videos without a valid frame", str(sum(v.masked == v.total for v in views))),
    ], problems=dict(masked_by_reason.most_common()))
    tally.fill(corpus)
    corpus.settings = [("chosen frames", f"the {settings.frames} frames AffectGPT would see "
                                         f"(sampling {sampling}, as au-agent precompute picks them)"),
                       ("agent fingerprint", "not recorded by au-agent describe")]
    shown = _sort_videos(views, opts.sort)[:opts.videos]
    for view in shown:
        frames, inputs, chosen = plans[view.name]
        heatmap, view.note = _csv_heatmap_or_none(opts, view.name, settings.min_confidence, chosen)
        view.heatmap = heatmap or heatmap_from_inputs(frames, inputs, chosen, path, opts.max_columns)
    corpus.videos = shown
    corpus.shown_note = _shown_note(len(shown), len(views), "videos", opts.sort)
    return corpus


# ------------------------------------------------------------------------------------------------ eval


def load_eval(opts: InspectOptions) -> Corpus:
    """An eval folder: its report's numbers, and agent vs teacher vs rules for the least faithful records."""
    from ..agent.rules import rules_description
    from .evaluate import LABELS, SYSTEMS

    folder = opts.input
    if opts.openface_dir is not None:
        log.warning("--openface-dir is not used for an eval folder: its records are single frames")
    report = _load_json(folder / "report.json")
    if not isinstance(report, dict) or not isinstance(report.get("systems"), dict):
        raise AUAgentError("not an au-agent eval report (no 'systems')", folder / "report.json")
    preds_path = folder / "predictions.jsonl"
    preds = _load_jsonl(preds_path)
    for n, p in enumerate(preds, 1):
        if not all(isinstance(p.get(k), str) for k in ("input", "prediction", "reference")):
            raise AUAgentError(f"line {n} is not an au-agent eval prediction (input, prediction, reference)",
                               preds_path)
    records, memo = [], {}
    words: Dict[str, List[int]] = {name: [] for name in SYSTEMS}
    tallies = {name: fidelity.FidelityTally() for name in SYSTEMS}
    for i, p in enumerate(tqdm(preds, desc="scoring records", unit="record", disable=not opts.progress)):
        active = _input_values(p["input"], preds_path)
        texts = {"agent": p["prediction"], "teacher": p["reference"], "rules": rules_description(p["input"])}
        systems = []
        for name in SYSTEMS:
            score = _score(p["input"], texts[name], preds_path, memo) or fidelity.fidelity(texts[name], active)
            tallies[name].add(score)
            words[name].append(len(texts[name].split()))
            systems.append(SystemTexts(LABELS[name], texts[name], score))
        frame = p.get("frame")
        records.append(EvalView(i, str(p.get("video") or ""), frame if isinstance(frame, int) else None,
                                p["input"], systems))
    dataset = report.get("dataset") or {}
    agent = report.get("agent") or {}
    corpus = Corpus("eval", folder, [
        ("records", str(len(preds))),
        ("distinct AU inputs", str(len({p["input"] for p in preds}))),
        ("records where the agent hallucinates", str(sum(bool(r.systems[0].score.hallucinated) for r in records))),
        ("records where the agent omits an active AU", str(sum(bool(r.systems[0].score.missed) for r in records))),
    ], eval_report=report)
    au_active: collections.Counter = collections.Counter()
    for p in preds:
        au_active.update(_input_values(p["input"], preds_path).keys())
    corpus.au_active = {code: au_active.get(code, 0) for code in INTENSITY_AUS}
    corpus.au_frames = len(preds)
    corpus.words = words
    corpus.fidelity = {name: tallies[name].summary(per_au=False) for name in SYSTEMS}
    corpus.settings = [("dataset", f"{dataset.get('path')} (sha1 {dataset.get('sha1')})"),
                       ("agent backend", str(agent.get("backend"))),
                       ("agent", str(agent.get("agent_dir") or agent.get("base_model") or "—")),
                       ("agent fingerprint", str(agent.get("fingerprint"))),
                       ("generation", _fmt_settings(agent.get("generation") or {})),
                       ("prompt contract", str(report.get("contract_version"))),
                       ("fidelity lexicon", str(report.get("lexicon_version")))]
    worst = sorted(records, key=lambda r: (r.systems[0].score.f1, r.systems[1].score.f1, r.index))
    corpus.records = worst[:opts.videos]
    corpus.shown_note = (f"the {len(corpus.records)} least faithful of {len(records)} records (lowest agent AU F1 "
                         "first)")
    return corpus


def load_corpus(opts: InspectOptions) -> Corpus:
    kind = detect_kind(opts.input)
    log.info("reading %s (%s)", opts.input, kind)
    return {"features": load_features, "descriptions": load_descriptions, "eval": load_eval}[kind](opts)


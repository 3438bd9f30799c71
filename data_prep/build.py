"""Build the instruction dataset: gather records, clean, split by video, write LLaMA-Factory files and stats.

Output folder (written atomically, byte-identical for identical input):

    au_instruction_dataset.json / .jsonl   every kept record (Alpaca + video/frame)
    train.json, val.json                   the two splits, disjoint by video
    dataset_info.json                      registers them as TRAIN_SPLIT / VAL_SPLIT for LLaMA-Factory
    contract.json                          the prompt contract the records follow
    stats.json, stats.md, stats.png        what was kept and dropped, and why
"""
from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from tqdm import tqdm

from au_core import atomic, contract, fidelity, mer_factory
from au_core.errors import AUAgentError
from au_core.openface import DEFAULT_MIN_CONFIDENCE

from . import clean, json_records
from .sources import FrameRecord, read_alpaca, read_mer_factory_output

log = logging.getLogger(__name__)

TRAIN_SPLIT = "au_agent_train"
VAL_SPLIT = "au_agent_val"
DATASET_FILES = {TRAIN_SPLIT: "train.json", VAL_SPLIT: "val.json"}
COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
FIDELITY_SAMPLE = 1000  # records scored for the AU-fidelity line of the stats


@dataclass
class PrepareOptions:
    out: Path
    mer_factory_output: Optional[Path] = None
    openface_dir: Optional[Path] = None
    import_alpaca: Sequence[Path] = ()
    val_ratio: float = 0.05
    seed: int = 42
    max_samples: Optional[int] = None
    text_key: str = mer_factory.DEFAULT_TEXT_KEY
    keep_temporal: bool = False
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    min_fidelity: Optional[float] = None
    progress: bool = True
    extra_filters: List[Callable[[clean.CleanRecord], Optional[str]]] = field(default_factory=list)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector: building 100K acyclic records would trigger it hundreds of times."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


COMMAND = "prepare-data"  # the output folder's marker: --out is replaced only when it holds an earlier dataset
LEGACY_FILES = ("dataset_info.json", "contract.json")  # an earlier dataset written before the marker


def prepare_dataset(opts: PrepareOptions) -> Dict[str, object]:
    """Run the whole stage and return the stats that were written to ``stats.json``."""
    with _gc_paused():
        return _prepare(opts)


def _prepare(opts: PrepareOptions) -> Dict[str, object]:
    atomic.check_output_dir(opts.out, COMMAND, LEGACY_FILES)  # before any reading: a wrong --out fails at once
    if opts.mer_factory_output is None and not opts.import_alpaca:
        raise AUAgentError("nothing to read: give a MER-Factory output folder and/or --import-alpaca files")
    if not 0.0 <= opts.val_ratio < 1.0:
        raise AUAgentError(f"the validation ratio must be in [0, 1), got {opts.val_ratio}")
    if opts.min_fidelity is not None and not 0.0 <= opts.min_fidelity <= 1.0:
        raise AUAgentError(f"--min-fidelity must be in [0, 1], got {opts.min_fidelity}")
    records: List[FrameRecord] = []
    if opts.mer_factory_output is not None:
        records += read_mer_factory_output(opts.mer_factory_output, opts.text_key, opts.progress)
    if opts.import_alpaca:
        records += read_alpaca(opts.import_alpaca)

    kept, dropped, notes, tally = _clean_all(records, opts)
    kept = _deduplicate(kept, dropped)
    if opts.max_samples is not None and len(kept) > opts.max_samples:
        rng = random.Random(opts.seed)
        kept = sorted(rng.sample(kept, opts.max_samples), key=_order)
    train, val = split_by_video(kept, opts.val_ratio, opts.seed)
    if not train:
        raise AUAgentError(f"no usable record (dropped: {dict(dropped) or 'none'})",
                           opts.mer_factory_output or opts.import_alpaca[0])

    stats = _stats(records, kept, train, val, dropped, notes, opts, tally)
    with atomic.staged_dir(opts.out, command=COMMAND, legacy=LEGACY_FILES) as stage:
        _write_dataset(stage, kept, train, val, stats)
    log.info("wrote %d train / %d val records to %s", len(train), len(val), opts.out)
    return stats


def _order(r: clean.CleanRecord) -> tuple:
    return (r.video is None, r.video or "", r.frame, r.source, r.path)


def _clean_all(records: List[FrameRecord], opts: PrepareOptions):
    checker = clean.CsvChecker(opts.openface_dir, opts.min_confidence) if opts.openface_dir else None
    filters = list(opts.extra_filters)
    tally = None
    if opts.min_fidelity is not None:
        tally = fidelity.FidelityTally()
        filters.append(clean.fidelity_filter(opts.min_fidelity, tally))
    kept: List[clean.CleanRecord] = []
    dropped: collections.Counter = collections.Counter()
    notes: collections.Counter = collections.Counter()
    for rec in tqdm(records, desc="cleaning", unit="rec", disable=not opts.progress or len(records) < 10000):
        cleaned, reason, rec_notes = clean.clean_record(rec, opts.keep_temporal, checker)
        notes.update(rec_notes)
        if cleaned is not None:
            reason = next((r for r in (f(cleaned) for f in filters) if r), None)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(cleaned)
    if checker is not None and checker.unchecked:
        notes["not cross-checked (no OpenFace CSV for the video)"] += checker.unchecked
    return sorted(kept, key=_order), dropped, notes, tally


def _deduplicate(kept: List[clean.CleanRecord], dropped: collections.Counter) -> List[clean.CleanRecord]:
    seen = set()
    unique = []
    for r in kept:
        key = (r.input, r.output)
        if key in seen:
            dropped[clean.DUPLICATE] += 1
            continue
        seen.add(key)
        unique.append(r)
    return unique


def _group(r: clean.CleanRecord) -> str:
    """The unit of splitting: the video, or the record itself when its video is unknown."""
    return f"video:{r.video}" if r.video is not None else f"record:{r.path}"


def split_by_video(records: List[clean.CleanRecord], val_ratio: float, seed: int):
    """Seeded split that never puts two frames of one video on different sides."""
    groups = sorted({_group(r) for r in records})
    random.Random(seed).shuffle(groups)
    n_val = round(len(groups) * val_ratio)
    if val_ratio > 0 and n_val == 0 and len(groups) >= 2:
        n_val = 1
    val_groups = set(groups[:n_val])
    train = [r for r in records if _group(r) not in val_groups]
    val = [r for r in records if _group(r) in val_groups]
    return train, val


def _alpaca(records: List[clean.CleanRecord]) -> List[Dict[str, object]]:
    return [contract.alpaca_record(r.input, r.output, r.video if r.video is not None else "", r.frame)
            for r in records]


def _write_dataset(stage: Path, kept, train, val, stats) -> None:
    # Every record is encoded once; its text serves the full file and its split (train and val are subsets
    # of kept, the same objects).
    fields = [json_records.json_fields(a) for a in _alpaca(kept)]
    blocks = {id(r): json_records.json_list_item(f) for r, f in zip(kept, fields)}
    files = {
        "au_instruction_dataset.json": json_records.json_list(list(blocks.values())),
        "au_instruction_dataset.jsonl": "".join(json_records.json_line(f) + "\n" for f in fields),
        DATASET_FILES[TRAIN_SPLIT]: json_records.json_list([blocks[id(r)] for r in train]),
        DATASET_FILES[VAL_SPLIT]: json_records.json_list([blocks[id(r)] for r in val]),
        "contract.json": atomic.dumps_json(contract.describe()),
        "stats.json": atomic.dumps_json(stats),
        "stats.md": stats_markdown(stats),
    }
    info = {}
    for split, name in DATASET_FILES.items():
        info[split] = {
            "file_name": name,
            "formatting": "alpaca",
            "columns": COLUMNS,
            "file_sha1": hashlib.sha1(files[name].encode("utf-8")).hexdigest(),
        }
    files["dataset_info.json"] = atomic.dumps_json(info)
    for name, text in files.items():
        (stage / name).write_text(text, encoding="utf-8")
    _plot(stage / "stats.png", stats)


def _stats(records, kept, train, val, dropped, notes, opts: PrepareOptions, tally=None) -> Dict[str, object]:
    au_counts: collections.Counter = collections.Counter()
    for r in kept:
        au_counts.update(contract.parse_input(r.input).keys())
    lengths = sorted(len(r.output.split()) for r in kept)
    # Scoring costs about 0.6 ms a record: the stats score an evenly spaced sample of large datasets.
    scored = kept[::max(1, -(-len(kept) // FIDELITY_SAMPLE))]
    by_source = collections.Counter(r.source for r in records)
    kept_by_source = collections.Counter(r.source for r in kept)

    def videos(rs):
        return len({_group(r) for r in rs})

    return {
        "contract_version": contract.CONTRACT_VERSION,
        "inputs": {
            "mer_factory_output": str(opts.mer_factory_output) if opts.mer_factory_output else None,
            "openface_dir": str(opts.openface_dir) if opts.openface_dir else None,
            "import_alpaca": [str(p) for p in opts.import_alpaca],
            "text_key": opts.text_key,
        },
        "settings": {"val_ratio": opts.val_ratio, "seed": opts.seed, "max_samples": opts.max_samples,
                     "keep_temporal": opts.keep_temporal, "min_confidence": opts.min_confidence,
                     "min_fidelity": opts.min_fidelity},
        "records_read": len(records),
        "records_by_source": dict(sorted(by_source.items())),
        "kept": len(kept),
        "kept_by_source": dict(sorted(kept_by_source.items())),
        "dropped": dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        "notes": dict(sorted(notes.items())),
        "splits": {
            TRAIN_SPLIT: {"records": len(train), "groups": videos(train)},
            VAL_SPLIT: {"records": len(val), "groups": videos(val)},
        },
        "records_without_video": sum(r.video is None for r in kept),
        "au_frequency": {code: au_counts[code] for code in sorted(au_counts, key=lambda c: int(c[2:]))},
        "fidelity": {
            "lexicon": fidelity.LEXICON_VERSION,
            "kept_scored": len(scored),
            "kept": fidelity.corpus_fidelity(((r.output, contract.parse_input(r.input)) for r in scored), per_au=False),
            "before_filter": tally.summary(per_au=False) if tally is not None else None,
        },
        "description_words": {
            "mean": round(sum(lengths) / len(lengths), 2) if lengths else 0,
            "median": lengths[len(lengths) // 2] if lengths else 0,
            "max": lengths[-1] if lengths else 0,
            "histogram": dict(sorted(collections.Counter(min(n // 5 * 5, 100) for n in lengths).items())),
        },
    }


def stats_markdown(stats: Dict[str, object]) -> str:
    lines = [
        "# AU instruction dataset",
        "",
        f"Prompt contract `{stats['contract_version']}`. "
        f"{stats['records_read']} records read, **{stats['kept']} kept**.",
        "",
        "| split | records | videos |",
        "|---|---:|---:|",
    ]
    for split, s in stats["splits"].items():
        lines.append(f"| {split} | {s['records']} | {s['groups']} |")
    lines += ["", "| dropped because | records |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in stats["dropped"].items()] or ["| (nothing dropped) | 0 |"]
    if stats["notes"]:
        lines += ["", "| changed or noted | records |", "|---|---:|"]
        lines += [f"| {note} | {n} |" for note, n in stats["notes"].items()]
    lines += ["", "| source | read | kept |", "|---|---:|---:|"]
    lines += [f"| {src} | {n} | {stats['kept_by_source'].get(src, 0)} |"
              for src, n in stats["records_by_source"].items()]
    words = stats["description_words"]
    lines += ["", f"Descriptions: {words['mean']} words on average (median {words['median']}, max {words['max']}).",
              "", fidelity.summary_line(stats["fidelity"]["kept"])
              + (f" (scored on {stats['fidelity']['kept_scored']} of {stats['kept']} records)"
                 if stats["fidelity"]["kept_scored"] < stats["kept"] else ""),
              "Records by description F1 (bin lower edge: records): "
              + ", ".join(f"{k}: {n}" for k, n in stats["fidelity"]["kept"]["record_f1_histogram"].items()) + ".",
              "", "Active AU frequency: " + ", ".join(f"{c} {n}" for c, n in stats["au_frequency"].items()), ""]
    return "\n".join(lines)


def _plot(path: Path, stats: Dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    freq = stats["au_frequency"]
    ax1.bar(list(freq), list(freq.values()), color="#4c72b0")
    ax1.set_title("Active AUs in kept records")
    ax1.tick_params(axis="x", rotation=60, labelsize=8)
    hist = stats["description_words"]["histogram"]
    ax2.bar([int(k) for k in hist], list(hist.values()), width=4.5, align="edge", color="#dd8452")
    ax2.set_title("Description length (words)")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)

"""``au-agent eval``: how good and how faithful an AU Agent is on a dataset split, next to its teacher and the rules.

    au-agent eval --agent runs/agent --dataset data/au_dataset/val.json --out eval/

For every record of the split (an Alpaca JSON list written by ``prepare-data``) the agent describes the input
through :meth:`AUAgent.describe_inputs` (batched, deduplicated, cached). Three systems are then scored side by
side: the **agent**, the **teacher** (the reference descriptions themselves) and the **rules** baseline:

* BLEU (sacrebleu, corpus) and ROUGE-L (rouge-score, mean F-measure) against the reference descriptions;
* AU fidelity (:mod:`au_core.fidelity`): the AUs a text mentions vs the AUs active in its input — precision,
  recall, F1, hallucination rate (mentioned but not active / mentioned), per AU;
* feature similarity (with ``--clip-model``, the CLIP text encoder the AU features use): what AffectGPT sees is
  not words but CLIP text features, so each system's descriptions are encoded and compared with the teacher's
  (mean cosine; the teacher against itself is 1), and the features' separation of expressions is measured (mean
  cosine between records with the same set of active AUs vs records with different sets);
* description length in words; and, for the agent, throughput, cache hits and peak memory.

Written to ``--out``: ``report.md``, ``report.json`` (deterministic except its ``timing`` section),
``predictions.jsonl`` (one line per record) and the charts ``au_f1.png``, ``lengths.png`` and, with
``--clip-model``, ``features.png``; :mod:`.eval_report` draws the Markdown, the terminal table and the charts.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from au_core import atomic, contract, fidelity
from au_core.errors import AUAgentError

from .eval_report import FEATURE_CHART, SYSTEMS, _plot, _plot_features, report_markdown

log = logging.getLogger(__name__)

REPORT_VERSION = "au-eval-1"
LABELS = {"agent": "agent", "teacher": "teacher (reference texts)", "rules": "rules baseline"}
FILES = ("report.md", "report.json", "predictions.jsonl", "au_f1.png", "lengths.png")
COMMAND = "eval"  # the output folder's marker: --out is replaced only when it holds an earlier report
LEGACY_FILES = ("report.json", "report.md")  # an earlier report written before the marker
#: Pairwise feature cosines are computed on at most this many records (evenly spaced through the split).
MAX_PAIR_RECORDS = 2000


@dataclass(frozen=True)
class EvalRecord:
    input: str
    reference: str
    video: str = ""
    frame: Optional[int] = None


@dataclass
class EvalOptions:
    dataset: Path
    out: Path
    limit: Optional[int] = None
    batch_size: Optional[int] = None
    progress: bool = True
    clip_model: Optional[str] = None  # a CLIP name or .pt file: adds feature similarity (None: words only)

    def __post_init__(self) -> None:  # checked before any model is loaded
        atomic.check_output_dir(self.out, COMMAND, legacy=LEGACY_FILES)


# ------------------------------------------------------------------------------------------------ the split


def load_split(path: Path, limit: Optional[int] = None) -> List[EvalRecord]:
    """Read an Alpaca split (JSON list, or JSON lines) of contract records; the first ``limit`` if given."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise AUAgentError(f"--limit must be at least 1, got {limit}")
    if not path.is_file():
        raise AUAgentError("dataset file not found" if not path.exists() else "dataset is not a file", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AUAgentError(f"not UTF-8 text (byte {e.start})", path) from None
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise AUAgentError(f"not valid JSON ({e.msg}, line {e.lineno})", path) from None
    if not isinstance(rows, list):
        raise AUAgentError("expected a JSON list of Alpaca records (instruction/input/output), as prepare-data "
                           "writes to train.json and val.json", path)
    if not rows:
        raise AUAgentError("the split has no records", path)
    records = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        if not isinstance(row, dict):
            raise AUAgentError(f"record {i} is not an object", path)
        for key in ("input", "output"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise AUAgentError(f"record {i} has no {key!r} text", path)
        try:
            values = contract.parse_input(row["input"])
        except (AUAgentError, ValueError):
            raise AUAgentError(f"record {i}: input {row['input'][:60]!r} is not a contract input string (e.g. "
                               "'AU04: 1.20, AU07: 0.95'); re-create the split with prepare-data", path) from None
        try:
            contract.active_aus(values)  # unknown AUs (AU99), absurd intensities
        except AUAgentError as e:
            raise AUAgentError(f"record {i}: {e}", path) from None
        frame = row.get("frame")
        records.append(EvalRecord(row["input"], row["output"].strip(), str(row.get("video") or ""),
                                  int(frame) if isinstance(frame, (int, float)) and math.isfinite(frame) else None))
    return records


# ------------------------------------------------------------------------------------------------ metrics


def text_similarity(hypotheses: Sequence[str], references: Sequence[str]) -> Dict[str, Optional[float]]:
    """Corpus BLEU (0–100) and mean ROUGE-L F-measure (0–1); ``None`` when the ``eval`` extra is missing."""
    try:
        import sacrebleu
        from rouge_score import rouge_scorer
    except ImportError:
        log.warning("BLEU/ROUGE-L skipped: install the eval extra (pip install 'au-agent[eval]')")
        return {"bleu": None, "rouge_l": None}
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." per scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = statistics.fmean(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references))
    return {"bleu": round(bleu, 2), "rouge_l": round(rouge, 4)}


def length_stats(texts: Sequence[str]) -> Dict[str, object]:
    words = sorted(len(t.split()) for t in texts)
    return {
        "mean": round(statistics.fmean(words), 2),
        "median": statistics.median_low(words),
        "p90": words[min(len(words) - 1, int(0.9 * len(words)))],
        "min": words[0],
        "max": words[-1],
    }


def _system(texts: Sequence[str], references: Sequence[str], actives: Sequence[frozenset], compare: bool):
    tally = fidelity.FidelityTally()
    scores = [tally.add(fidelity.fidelity(t, a)) for t, a in zip(texts, actives)]
    similarity = text_similarity(texts, references) if compare else {"bleu": None, "rouge_l": None}
    return {**similarity, "fidelity": tally.summary(), "words": length_stats(texts)}, scores


def feature_similarity(texts: Mapping[str, Sequence[str]], actives: Sequence[frozenset], encoder,
                       progress: bool = False) -> Dict[str, object]:
    """Per system: mean cosine of each description's CLIP text feature with the teacher's for the same record,
    and mean cosine between records whose active AUs are the same vs different (``separation`` is the gap).

    Features are L2-normalised, so a cosine is a dot product. Pairs exclude a record with itself; above
    ``MAX_PAIR_RECORDS`` records the pairs are taken among evenly spaced records."""
    import numpy as np

    n = len(actives)
    picked = np.unique(np.linspace(0, n - 1, min(n, MAX_PAIR_RECORDS)).round().astype(int))
    groups = {key: i for i, key in enumerate(dict.fromkeys(actives[i] for i in picked))}
    labels = np.array([groups[actives[i]] for i in picked])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(picked), dtype=bool)
    features = {name: encoder.encode(list(texts[name]), progress=progress) for name in SYSTEMS}
    out: Dict[str, object] = {}
    for name in SYSTEMS:
        f = features[name]
        pairs = f[picked] @ f[picked].T
        same_mean = float(pairs[same & off_diagonal].mean()) if (same & off_diagonal).any() else None
        diff_mean = float(pairs[~same].mean()) if (~same).any() else None
        out[name] = {
            "cosine_to_teacher": round(float((f * features["teacher"]).sum(axis=1).mean()), 4),
            "same_aus_cosine": None if same_mean is None else round(same_mean, 4),
            "different_aus_cosine": None if diff_mean is None else round(diff_mean, 4),
            "separation": None if None in (same_mean, diff_mean) else round(same_mean - diff_mean, 4),
        }
    return {"clip_model": encoder.name, "clip_fingerprint": encoder.fingerprint, "dim": encoder.dim,
            "pair_records": int(len(picked)), "active_sets": len(groups), "systems": out}


def _peak_rss_mib() -> Optional[float]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def _cuda_peak_mib() -> Optional[float]:
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)


# ------------------------------------------------------------------------------------------------- the run


def evaluate(opts: EvalOptions, agent, records: Optional[List[EvalRecord]] = None,
             encoder=None) -> Dict[str, object]:
    """Describe the split with ``agent`` (an :class:`AUAgent`), score three systems, write the report files.

    ``records`` (from :func:`load_split`) saves reading the split again when the caller has checked it already;
    ``encoder`` (a :class:`~affectgpt_patch.features.clip_encoder.ClipTextEncoder`) is loaded from ``opts.clip_model``
    when not given."""
    from ..agent.rules import rules_description

    out = Path(opts.out)
    if records is None:
        records = load_split(opts.dataset, opts.limit)
    inputs = [r.input for r in records]
    references = [r.reference for r in records]
    actives = [fidelity.active_set(contract.parse_input(s)) for s in inputs]
    if encoder is None and opts.clip_model:  # loaded first: a wrong --clip-model fails before generation
        from ..features.clip_encoder import load_clip_text_encoder

        encoder = load_clip_text_encoder(opts.clip_model, cache_dir=agent.config.cache_dir,
                                         use_cache=agent.config.use_cache)

    before = agent.cache_stats()
    start = time.perf_counter()
    predictions = agent.describe_inputs(inputs, batch_size=opts.batch_size, progress=opts.progress)
    generation_s = time.perf_counter() - start
    after = agent.cache_stats()
    rules = [rules_description(s) for s in inputs]

    texts = {"agent": predictions, "teacher": references, "rules": rules}
    systems, scores = {}, {}
    for name in SYSTEMS:
        systems[name], scores[name] = _system(texts[name], references, actives, compare=name != "teacher")
        systems[name] = {"label": LABELS[name], **systems[name]}
    config = agent.config
    features = feature_similarity(texts, actives, encoder, opts.progress) if encoder is not None else None
    report: Dict[str, object] = {
        "report_version": REPORT_VERSION,
        "contract_version": contract.CONTRACT_VERSION,
        "lexicon_version": fidelity.LEXICON_VERSION,
        "dataset": {
            "path": str(opts.dataset),
            "sha1": atomic.file_digest(opts.dataset, "sha1"),
            "records": len(records),
            "limit": opts.limit,
            "distinct_inputs": len(set(inputs)),
        },
        "agent": {
            "backend": config.backend,
            "agent_dir": config.agent_dir,
            "base_model": config.base_model,
            "lora_weights": config.lora_weights,
            "fingerprint": agent.fingerprint,
            "generation": config.generation_settings(),
        },
        "systems": systems,
        "features": features,
        "files": list(FILES) + ([FEATURE_CHART] if features else []),
        "timing": {
            "generation_s": round(generation_s, 3),
            "descriptions_per_s": round(len(records) / generation_s, 2) if generation_s > 0 else None,
            "batch_size": opts.batch_size or config.batch_size,
            "cache_hits": after["hits"] - before["hits"],
            "generated": after["generated"] - before["generated"],
            "peak_rss_mib": _peak_rss_mib(),
            "cuda_max_memory_allocated_mib": _cuda_peak_mib(),
        },
    }
    with atomic.staged_dir(out, command=COMMAND, legacy=LEGACY_FILES) as stage:  # all files, or none
        atomic.write_json(stage / "report.json", report)
        atomic.write_text(stage / "report.md", report_markdown(report, records, texts, scores))
        atomic.write_text(stage / "predictions.jsonl", _predictions(records, texts, scores))
        _plot(stage, report, texts)
        if features:
            _plot_features(stage / FEATURE_CHART, report)
    log.info("evaluation report written to %s", out / "report.md")
    return report


def _predictions(records: Sequence[EvalRecord], texts, scores) -> str:
    lines = []
    for i, r in enumerate(records):
        agent, teacher = scores["agent"][i], scores["teacher"][i]
        lines.append(json.dumps({
            "video": r.video, "frame": r.frame, "input": r.input,
            "reference": r.reference, "prediction": texts["agent"][i],
            "active": sorted(agent.active),
            "mentioned": {"prediction": sorted(agent.mentioned), "reference": sorted(teacher.mentioned)},
            "hallucinated": {"prediction": sorted(agent.hallucinated), "reference": sorted(teacher.hallucinated)},
            "missed": {"prediction": sorted(agent.missed), "reference": sorted(teacher.missed)},
            "f1": {"prediction": round(agent.f1, 4), "reference": round(teacher.f1, 4)},
        }, ensure_ascii=False))
    return "\n".join(lines) + "\n"

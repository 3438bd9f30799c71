"""Existing Alpaca datasets (JSON list, JSONL, or a ``{"train": [...], "validation": [...]}`` wrapper).

The first public AU Agent's records look like::

    input: "Emotion: [uneasy, tense]\\nPrompt: Given the emotion label, ...\\nAU values: AU04: 2.24, AU14: 2.93\\n
            AU descriptions: Brow lowerer (intensity: 2.24), Dimpler (intensity: 2.93)"

The ``Emotion:`` line is the ground-truth label (it leaks the label into training and does not exist at
inference) and ``Prompt:`` is a second instruction: both are dropped. The AU values are re-expressed in the
contract's input format by the dataset builder. Records that already carry ``video``/``frame`` (this project's
own datasets) keep them; others have no video and are split one record at a time.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from au_core.errors import AUAgentError
from au_core.facs import parse_au_template
from au_core.record import FrameRecord, load_json

NAME = "alpaca"
LABEL_REMOVED = "emotion label removed from input"
_VALUE_RE = re.compile(r"(AU\d{1,2}): (-?\d+(?:\.\d+)?)")
_PREFIXES = ("Emotion:", "Prompt:", "AU values:", "AU detections:", "AU descriptions:")


def read_file(path: Path) -> Iterator[FrameRecord]:
    if not path.is_file():
        raise AUAgentError("Alpaca file not found", path)
    for i, rec in enumerate(_load_records(path)):
        if not isinstance(rec, dict) or "input" not in rec or "output" not in rec:
            raise AUAgentError(f"record {i} is not an object with 'input' and 'output'", path)
        yield _record(path, i, rec)


def _load_records(path: Path) -> List[Any]:
    if path.suffix == ".jsonl":
        records = []
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise AUAgentError(f"not UTF-8 text (byte {e.start})", path) from None
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise AUAgentError(f"line {n} is not JSON ({e.msg})", path) from None
        return records
    data = load_json(path)
    if isinstance(data, dict) and ("train" in data or "validation" in data):
        return list(data.get("train") or []) + list(data.get("validation") or [])
    if not isinstance(data, list):
        raise AUAgentError("expected a list of records, JSONL, or an object with 'train'/'validation'", path)
    return data


def _record(path: Path, i: int, rec: Dict[str, Any]) -> FrameRecord:
    text = rec["input"]
    if not isinstance(text, str):
        raise AUAgentError(f"record {i}: 'input' is not text", path)
    values: Optional[Dict[str, float]] = None
    described: Optional[Dict[str, float]] = None
    notes = []
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) == 1 and (_VALUE_RE.match(lines[0]) or lines[0] == "none"):
        lines = [f"AU values: {lines[0]}"]  # this project's own format
    for line in lines:
        prefix = next((p for p in _PREFIXES if line.startswith(p)), None)
        body = line[len(prefix):].strip() if prefix else ""
        if prefix == "Emotion:":
            notes.append(LABEL_REMOVED)
        elif prefix in ("AU values:", "AU detections:"):
            values = {f"AU{int(code[2:]):02d}": float(v) for code, v in _VALUE_RE.findall(body)}
            if body not in ("", "none") and not values:
                raise AUAgentError(f"record {i}: cannot read AU values {body!r}", path)
        elif prefix == "AU descriptions:":
            try:
                described = parse_au_template(body)
            except AUAgentError as e:
                raise AUAgentError(f"record {i}: {e.problem}", path) from None
        elif prefix is None:
            raise AUAgentError(f"record {i}: unknown input line {line[:60]!r}", path)
    if values is None and described is not None:
        values = described
    problem = None
    if values is not None and described is not None and _rounded(values) != _rounded(described):
        problem = "AU values disagree with their descriptions"
    video = rec.get("video")
    frame = rec.get("frame", 1)
    return FrameRecord(
        video=str(video) if video is not None else None,
        frame=int(frame) if isinstance(frame, (int, float, str)) and str(frame).isdigit() else 1,
        au_values=values,
        description=rec["output"],
        source=NAME,
        path=f"{path}#{i}",
        problem=problem,
        notes=tuple(notes),
    )


def _rounded(values: Dict[str, float]) -> Dict[str, str]:
    return {k: f"{float(v):.2f}" for k, v in values.items()}

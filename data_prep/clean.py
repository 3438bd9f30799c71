"""Cleaning teacher records: each rejected record is counted under one reason, never dropped silently."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from au_core import contract
from au_core.errors import AUAgentError
from au_core.fidelity import FidelityScore, FidelityTally, fidelity
from au_core.mer_factory import clean_text
from au_core.openface import OpenFaceTrack, read_openface_csv

from .sources import FrameRecord

# Reasons a record is dropped (keys of stats["dropped"]).
NO_DESCRIPTION = "no face-only description (MER/AU pipeline output)"
EMPTY = "empty or non-string description"
ERROR_TEXT = "teacher error text ('Error ...')"
GATE_REJECTED = "gate-agent rejection"
NO_AU = "no AU values for the frame"
NEUTRAL = "neutral frame (no AU above 0.8; described by the contract, not trained)"
TEMPORAL = "description refers to other frames or to time"
CSV_MISMATCH = "AU values disagree with the OpenFace CSV"
CSV_INVALID = "frame invalid in the OpenFace CSV (no face or low confidence)"
DUPLICATE = "exact duplicate (same input and output)"
LOW_FIDELITY = "description contradicts its AUs (fidelity below --min-fidelity)"

#: Longest description kept, in characters. The training recipes cut a sample at 1,024 tokens (about 4,000
#: characters of English) and a frame description is a few sentences; anything longer is not one frame's text.
MAX_DESCRIPTION_CHARS = 4000
TOO_LONG = f"description longer than {MAX_DESCRIPTION_CHARS} characters"

_GATE_PATTERNS = ("rejected by gate agent", "(au rejected)")
_TEMPORAL = re.compile(
    r"\bframes?\s*#?\d+\b"
    r"|\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|previous|preceding|"
    r"subsequent|following|earlier|later|final|last)\s+frames?\b"
    r"|\bfurther progression\b|\bas the (?:video|clip|sequence) (?:progresses|continues)\b"
    r"|\b(?:compared (?:to|with)|than (?:in|at)) (?:the )?(?:previous|earlier|prior|preceding|last)\b",
    re.IGNORECASE,
)
#: Every match of _TEMPORAL contains one of these (casefolded, as re.IGNORECASE compares); testing them first
#: skips the regex for the descriptions that cannot match, which is most of the cleaning time on a large corpus.
_TEMPORAL_HINTS = ("frame", "progress", "as the ", "compared ", "than ")


def is_temporal(text: str) -> bool:
    folded = text.casefold()
    return any(h in folded for h in _TEMPORAL_HINTS) and _TEMPORAL.search(text) is not None


@dataclass
class CleanRecord:
    video: Optional[str]
    frame: int
    input: str  # the contract input string
    output: str
    source: str
    path: str


class CsvChecker:
    """Cross-checks record AU values against ``{openface_dir}/{video}.csv``; CSVs are read once each."""

    def __init__(self, openface_dir: os.PathLike, min_confidence: float) -> None:
        self.dir = Path(openface_dir)
        if not self.dir.is_dir():
            raise AUAgentError("OpenFace folder not found", self.dir)
        self.min_confidence = min_confidence
        self._tracks: Dict[str, Optional[OpenFaceTrack]] = {}
        self.unchecked = 0

    def problem(self, video: Optional[str], frame: int, input_str: str) -> Optional[str]:
        if video is None:
            self.unchecked += 1
            return None
        if video not in self._tracks:
            csv = self.dir / f"{video}.csv"
            self._tracks[video] = read_openface_csv(csv, self.min_confidence) if csv.is_file() else None
        track = self._tracks[video]
        if track is None:
            self.unchecked += 1
            return None
        hits = (track.frames == frame).nonzero()[0]
        if len(hits) == 0:
            return CSV_MISMATCH
        i = int(hits[0])
        if not track.valid[i]:
            return CSV_INVALID
        return None if track.input_string(i) == input_str else CSV_MISMATCH


def clean_record(
    rec: FrameRecord, keep_temporal: bool = False, csv_checker: Optional[CsvChecker] = None
) -> Tuple[Optional[CleanRecord], Optional[str], Tuple[str, ...]]:
    """``(record, None, notes)`` for a usable record, else ``(None, reason, notes)``."""
    notes = tuple(rec.notes)
    if rec.problem:
        return None, rec.problem, notes
    text = rec.description
    if text is None:
        return None, NO_DESCRIPTION, notes
    if not isinstance(text, str) or not text.strip():
        return None, EMPTY, notes
    text, note = clean_text(text)
    if note:
        notes += (note,)
    if not text:
        return None, EMPTY, notes
    if len(text) > MAX_DESCRIPTION_CHARS:
        return None, TOO_LONG, notes
    if text.startswith("Error"):
        return None, ERROR_TEXT, notes
    if any(p in text.lower() for p in _GATE_PATTERNS):
        return None, GATE_REJECTED, notes
    if rec.au_values is None:
        return None, NO_AU, notes
    try:
        input_str = contract.format_input(rec.au_values)
    except AUAgentError as e:
        raise AUAgentError(f"frame {rec.frame}: {e.problem}", rec.path) from None
    if contract.is_neutral(input_str):
        return None, NEUTRAL, notes
    if not keep_temporal and is_temporal(text):
        return None, TEMPORAL, notes
    if csv_checker is not None:
        problem = csv_checker.problem(rec.video, rec.frame, input_str)
        if problem:
            return None, problem, notes
    return CleanRecord(rec.video, rec.frame, input_str, text, rec.source, rec.path), None, notes


def record_fidelity(record: CleanRecord) -> FidelityScore:
    """Fidelity of a cleaned training record's description against its own input."""
    return fidelity(record.output, contract.parse_input(record.input))


def fidelity_filter(min_f1: float, tally: Optional[FidelityTally] = None
                    ) -> Callable[[CleanRecord], Optional[str]]:
    """A ``prepare-data`` filter: ``LOW_FIDELITY`` for records whose description F1 is below ``min_f1``.

    ``tally`` collects the score of every record checked, so the stats can report the fidelity before filtering
    without scoring twice."""
    if not 0.0 <= min_f1 <= 1.0:
        raise AUAgentError(f"--min-fidelity must be between 0 and 1, got {min_f1}")

    def check(record: CleanRecord) -> Optional[str]:
        score = record_fidelity(record)
        if tally is not None:
            tally.add(score)
        return LOW_FIDELITY if score.f1 + 1e-9 < min_f1 else None

    return check

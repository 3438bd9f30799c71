"""The record every source yields: one frame's AU values and the teacher's description of it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import AUAgentError


@dataclass
class FrameRecord:
    video: Optional[str]  # None when the source does not say (some imported Alpaca files)
    frame: int  # 1-based OpenFace frame number
    au_values: Optional[Dict[str, float]]  # AU intensities keyed "AU01"...; None when the source has none
    description: Any  # the teacher text; checked by cleaning, so any JSON value is possible here
    source: str  # which reader produced it
    path: str  # the file it came from
    problem: Optional[str] = None  # a reason the reader already knows to drop the record
    notes: Tuple[str, ...] = field(default_factory=tuple)  # what the reader changed (counted in the stats)


def load_json(path: os.PathLike) -> Any:
    """Parse a JSON file, naming the file and the position of the problem when it is not valid JSON."""
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AUAgentError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except UnicodeDecodeError:
        raise AUAgentError("not UTF-8 text", path) from None


def stem_without(path: Path, suffixes: tuple) -> str:
    """``sample_7_au_analysis.json`` → ``sample_7`` for the given MER-Factory suffixes."""
    stem = path.stem
    for suffix in suffixes:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem

"""The per-frame MER-Factory variant: ``<name>_au_analysis.json`` with ``per_frame_au_descriptions``.

This is what the first public AU Agent was trained on. ``fine_grained_descriptions`` maps a frame number to
the teacher LLM's text for that frame; ``per_frame_au_descriptions[i].active_aus`` holds that frame's AUs.
``summary_description`` holds text written by an earlier agent, not by the teacher, so it is used only when
asked for (``text_key="summary_description"``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from .errors import AUAgentError
from .facs import normalize_code
from .openface import frame_number
from .record import FrameRecord

NAME = "per_frame"
#: How the file names end (``<name>_au_analysis.json``, ``<name>_au_data.json``); upstream MER-Factory's AU
#: pipeline names its files the same way, with other keys inside.
SUFFIXES = ("_au_analysis", "_au_data")
#: The per-frame texts a file may hold; the first, the teacher's own, is the default everywhere.
TEXT_KEYS = ("fine_grained_descriptions", "summary_description")
DEFAULT_TEXT_KEY = TEXT_KEYS[0]

# What cleaning changes without dropping (a key of prepare-data's stats["notes"]).
CHAT_PREFIX_STRIPPED = "leaked chat prefix stripped from description"
_CHAT_LEAK = re.compile(r"(?:^|\n)assistant\n", re.IGNORECASE)


def matches(data: Any) -> bool:
    return isinstance(data, dict) and "per_frame_au_descriptions" in data


def read(path: Path, data: Mapping[str, Any], video: str, text_key: str = DEFAULT_TEXT_KEY) -> Iterator[FrameRecord]:
    entries = data.get("per_frame_au_descriptions")
    if not isinstance(entries, list):
        raise AUAgentError("'per_frame_au_descriptions' is not a list", path)
    by_frame: Dict[int, Mapping[str, Any]] = {}
    for entry in entries:
        if isinstance(entry, dict) and "frame" in entry:
            try:
                by_frame[frame_number(entry["frame"])] = entry
            except AUAgentError as e:
                raise AUAgentError(e.problem, path) from None
    texts = data.get(text_key) or {}
    if not isinstance(texts, dict):
        raise AUAgentError(f"'{text_key}' is not an object keyed by frame", path)
    for key in sorted(texts, key=_frame_order):
        try:
            frame = frame_number(key)
        except AUAgentError:
            raise AUAgentError(f"'{text_key}' key {key!r} is not a frame number", path) from None
        entry = by_frame.get(frame)
        values = _au_values(entry.get("active_aus"), path) if entry is not None else None
        yield FrameRecord(video, frame, values, texts[key], NAME, str(path))


def _frame_order(key: str) -> tuple:
    return (0, int(key), "") if str(key).lstrip("-").isdigit() else (1, 0, str(key))


def _au_values(active: Any, path: Path) -> Dict[str, float]:
    if not active:
        return {}
    if not isinstance(active, dict):
        raise AUAgentError(f"'active_aus' is not an object: {active!r}", path)
    values = {}
    for key, value in active.items():
        code = normalize_code(key)
        if code is None:
            raise AUAgentError(f"'active_aus' has a non-AU key {key!r}", path)
        values[code] = value
    return values


def clean_text(text: str) -> Tuple[str, Optional[str]]:
    """Strip a leaked ``system\\n…user\\n…assistant\\n`` chat prefix and normalise whitespace."""
    note = None
    # The prefix test is cheap and almost always false: the regex runs only when it is true.
    leaks = list(_CHAT_LEAK.finditer(text)) if text.lstrip().lower().startswith(("system\n", "user\n")) else []
    if leaks:
        text = text[leaks[-1].end():]
        note = CHAT_PREFIX_STRIPPED
    return " ".join(text.split()), note

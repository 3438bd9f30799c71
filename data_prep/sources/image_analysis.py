"""Upstream MER-Factory ``<stem>_image_analysis.json``: the only upstream file with LLM text about AUs alone.

``au_text_description`` is MER-Factory's template (``"Inner brow raiser (intensity: 0.98), ..."``), mapped back
to AU codes; ``llm_au_description`` is the teacher's description. Images are one frame (frame 1).
Files from before July 2025 name these ``peak_au_text`` and ``llm_facial_summary``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from au_core.errors import AUAgentError
from au_core.facs import parse_au_template
from au_core.record import FrameRecord

NAME = "image_analysis"
SUFFIXES = ("_image_analysis", "_image_data")
NEUTRAL_AU_TEXT = "Neutral expression."


def matches(data: Any) -> bool:
    return isinstance(data, dict) and any(k in data for k in ("au_text_description", "peak_au_text"))


def read(path: Path, data: Mapping[str, Any], video: str) -> Iterator[FrameRecord]:
    au_text = data.get("au_text_description", data.get("peak_au_text"))
    if not isinstance(au_text, str):
        raise AUAgentError(f"'au_text_description' is not text: {au_text!r}", path)
    try:
        values = {} if au_text.strip() == NEUTRAL_AU_TEXT else parse_au_template(au_text)
    except AUAgentError as e:
        raise AUAgentError(e.problem, path) from None
    text = data.get("llm_au_description", data.get("llm_facial_summary"))
    yield FrameRecord(video, 1, values, text, NAME, str(path))

"""Upstream MER-Factory ``<stem>_merr_data.json`` (MER pipeline) and ``<stem>_au_analysis.json`` (AU pipeline).

They hold AU values for the overall peak frame (``top_aus_intensities``, or the OpenFace CSV beside the file)
but no LLM text about the face alone: ``visual_expression`` and ``overall_peak_au_description`` are
MER-Factory's template, and ``final_summary`` mixes audio, video and image evidence. A record is yielded with
the peak frame's AUs and a description only when a face-only text (``llm_au_description``) is present;
otherwise the description is ``None`` and the frame is counted as "no description".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

from au_core import mer_factory
from au_core.errors import AUAgentError
from au_core.facs import normalize_code, parse_au_template
from au_core.openface import frame_number
from au_core.record import FrameRecord

NAME = "merr"
#: The MER pipeline's files; the AU pipeline's are named like the per-frame variant's (told apart by their keys).
SUFFIXES = ("_merr_data", "_mer_data") + mer_factory.SUFFIXES
FACE_ONLY_TEXT_KEYS = ("llm_au_description",)


def matches(data: Any) -> bool:
    return isinstance(data, dict) and (
        "overall_peak_frame_info" in data or "overall_peak_au_description" in data or "peak_au_text" in data
    )


def read(path: Path, data: Mapping[str, Any], video: str) -> Iterator[FrameRecord]:
    frame, values = _peak_values(path, data, video)
    text: Optional[Any] = None
    for key in FACE_ONLY_TEXT_KEYS:
        text = data.get(key, (data.get("coarse_descriptions_at_peak") or {}).get(key))
        if text is not None:
            break
    if any("(AU rejected)" in str(p) for p in data.get("chronological_emotion_peaks") or []):
        text = data.get("overall_peak_au_description") or "AU data rejected by Gate Agent"  # cleaning counts it
    yield FrameRecord(video, frame, values, text, NAME, str(path))


def _peak_values(path: Path, data: Mapping[str, Any], video: str) -> "tuple[int, Optional[Dict[str, float]]]":
    info = data.get("overall_peak_frame_info")
    if isinstance(info, dict):
        try:
            frame = frame_number(info.get("frame_number") or 1)
        except AUAgentError as e:
            raise AUAgentError(f"overall_peak_frame_info: {e.problem}", path) from None
        top = info.get("top_aus_intensities")
        if isinstance(top, dict):
            return frame, {normalize_code(k) or k: v for k, v in top.items()}
    else:
        frame = None
    csv = path.parent / f"{video}.csv"
    if csv.is_file():
        return _peak_from_csv(csv, frame)
    au_text = data.get("overall_peak_au_description", data.get("peak_au_text"))
    if isinstance(au_text, str) and "(intensity:" in au_text:
        try:
            return frame or 1, parse_au_template(au_text)
        except AUAgentError as e:
            raise AUAgentError(e.problem, path) from None
    return frame or 1, None


def _peak_from_csv(csv: Path, frame: Optional[int]) -> "tuple[int, Optional[Dict[str, float]]]":
    """The given frame's AUs, or MER-Factory's overall peak: the valid frame with the largest summed intensity."""
    from au_core.openface import read_openface_csv

    track = read_openface_csv(csv)
    if frame is None:
        if not track.valid.any():
            return 1, None
        sums = track.intensities.sum(axis=1)
        sums[~track.valid] = -1.0
        i = int(sums.argmax())
    else:
        hits = (track.frames == frame).nonzero()[0]
        if len(hits) == 0 or not track.valid[hits[0]]:
            return frame, None
        i = int(hits[0])
    return int(track.frames[i]), track.au_values(i)

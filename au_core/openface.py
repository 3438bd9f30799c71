"""Reading OpenFace 2.x ``FeatureExtraction`` CSVs into per-frame AU intensities with a validity mask.

OpenFace writes a row for every video frame, face or not. On failed frames its AU predictions are zero, but
its post-processing (3-frame smoothing) leaks small values into them, so zeros are not a "neutral face":
such frames are marked invalid (``success == 0`` or ``confidence`` below the threshold) and never described.

Accepted variations: ``", "`` or ``","`` separators, padded header names, a UTF-8 BOM, CRLF line ends, the full
714-column output or ``-aus`` alone (40 columns), missing ``success``/``confidence`` columns (treated as 1).
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from . import contract
from .errors import AUAgentError
from .facs import AU_NAMES, MAX_INTENSITY, intensity_value, normalize_code, sort_codes

log = logging.getLogger(__name__)

DEFAULT_MIN_CONFIDENCE = contract.DEFAULT_MIN_CONFIDENCE
#: Largest frame number accepted (a year of video at 30 fps); larger numbers are corrupt and would overflow.
MAX_FRAME = 10**9
_INTENSITY_COL = re.compile(r"^AU\d+_r$", re.IGNORECASE)
_PRESENCE_COL = re.compile(r"^AU\d+_c$", re.IGNORECASE)

#: Why a frame is not described (the values written to ``mask_reason`` fields).
NO_FACE = "no face (success=0)"
LOW_CONFIDENCE = "low confidence"
BAD_VALUE = "non-numeric or missing AU value"


def frame_number(raw: Any) -> int:
    """A frame number read from JSON (``1``, ``"12"``, ``3.0``): a whole number from 0 to ``MAX_FRAME``.
    Raises :class:`AUAgentError` (without the file: the caller names it)."""
    try:
        value = float(raw) if not isinstance(raw, (int, bool)) else raw
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not (0 <= value <= MAX_FRAME) or value != int(value):
        raise AUAgentError(f"frame {raw!r} is not a whole number from 0 to {MAX_FRAME}")
    return int(value)


@dataclass
class OpenFaceTrack:
    """One face's frames from one CSV. Arrays are aligned, one entry per frame, in frame order."""

    path: str
    video: str
    face_id: int
    frames: np.ndarray  # OpenFace frame numbers, 1-based
    au_codes: List[str]  # intensity columns present, ascending AU number
    intensities: np.ndarray  # [N, len(au_codes)] float64, NaN where a cell was not numeric
    confidence: np.ndarray
    success: np.ndarray
    valid: np.ndarray  # bool
    reasons: List[Optional[str]] = field(default_factory=list)  # None for valid frames
    #: The video's length in frames: the largest frame number over every row (all faces), so that frame i
    #: still means video frame i when the chosen face leaves early. None: the largest of ``frames``.
    total_frames: Optional[int] = None
    #: OpenFace's ``timestamp`` (seconds) per frame; None when the CSV has no such column.
    timestamps: Optional[np.ndarray] = None

    @property
    def video_frames(self) -> int:
        """The clip length this track's frames are numbered in."""
        if self.total_frames is not None:
            return int(self.total_frames)
        return int(self.frames.max()) if len(self.frames) else 0

    def __len__(self) -> int:
        return len(self.frames)

    def au_values(self, i: int) -> Dict[str, float]:
        """``{"AU01": 0.98, ...}`` for the frame at position ``i``."""
        return dict(zip(self.au_codes, self.intensities[i].tolist()))

    def input_string(self, i: int) -> Optional[str]:
        """The contract input string of frame ``i``, or ``None`` for an invalid frame."""
        return contract.format_input(self.au_values(i)) if self.valid[i] else None

    def input_strings(self) -> List[Optional[str]]:
        return [self.input_string(i) for i in range(len(self))]

    def no_valid_frame(self) -> Optional[str]:
        """Why no frame of the track can be described ("no valid frame: 40 no face (success=0), 2 low
        confidence"), or ``None`` when at least one frame is valid."""
        if self.valid.any():
            return None
        counts: Dict[str, int] = {}
        for reason in self.reasons:
            counts[reason or "?"] = counts.get(reason or "?", 0) + 1
        return "no valid frame: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def intensities_from_row(row: Mapping[str, Any]) -> Dict[str, float]:
    """The AU intensities of one CSV row given as a dict (``pandas`` ``row.to_dict()``), keyed ``"AU01"``…

    Header padding is ignored; presence columns and non-AU columns are skipped; an unknown AU intensity
    column or a non-numeric value raises.
    """
    values: Dict[str, float] = {}
    for key, raw in row.items():
        name = str(key).strip()
        if not _INTENSITY_COL.match(name):
            continue
        code = normalize_code(name)
        if code not in AU_NAMES:
            raise AUAgentError(f"unknown AU intensity column {name!r}; OpenFace 2.x writes {', '.join(AU_NAMES)}")
        values[code] = intensity_value(name, raw)
    if not values:
        raise AUAgentError("the row has no AU intensity columns (AUxx_r)")
    return values


def read_openface_csv(
    path: Union[str, os.PathLike],
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    face_id: Optional[int] = None,
) -> OpenFaceTrack:
    """Read one OpenFace CSV.

    With several faces (``face_id`` column), the face with the most valid frames is used (ties: the lowest
    id) unless ``face_id`` picks one; the choice is logged. Raises :class:`AUAgentError` naming the file for a
    missing, empty, header-only or unparseable file, or one without AU intensity columns.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise AUAgentError("OpenFace CSV not found", path)
    raw = path.read_bytes()
    if not raw.strip(b"\xef\xbb\xbf \t\r\n"):
        raise AUAgentError("empty file (OpenFace writes at least a header; did it crash?)", path)
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=",", skipinitialspace=True, encoding="utf-8-sig", dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise AUAgentError(f"not a readable CSV ({str(e).strip().splitlines()[-1]})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise AUAgentError("header only, no frame rows (OpenFace found no face in this video)", path)

    intensity_cols = [c for c in df.columns if _INTENSITY_COL.match(c)]
    if not intensity_cols:
        raise AUAgentError("no AU intensity columns (AUxx_r); run OpenFace FeatureExtraction with -aus", path)
    unknown = [c for c in intensity_cols if normalize_code(c) not in AU_NAMES]
    if unknown:
        raise AUAgentError(f"unknown AU intensity columns {unknown}; this reader expects OpenFace 2.x", path)
    # Every column's code is known here (checked above); the test narrows ``Optional[str]`` for the type checker.
    by_code = {code: c for c in intensity_cols if (code := normalize_code(c)) is not None}
    codes = sort_codes(by_code)

    def numeric(col: str, default: float) -> np.ndarray:
        if col not in df.columns:
            return np.full(len(df), default, dtype=np.float64)
        cells = df[col].str.strip()
        out = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
        # pandas reads a number beyond the float range ("1e309") as NaN, which would pass for a missing value;
        # Python reads it as the infinity it is, which the range checks below refuse.
        for i in np.flatnonzero(np.isnan(out) & cells.notna().to_numpy()):
            try:
                out[i] = float(cells.iloc[i])
            except ValueError:
                pass
        return out

    frames = numeric("frame", math.nan)
    if "frame" not in df.columns:
        frames = np.arange(1, len(df) + 1, dtype=np.float64)
    if np.isnan(frames).any():
        bad = int(np.flatnonzero(np.isnan(frames))[0]) + 2
        raise AUAgentError(f"line {bad}: the frame number is not a number", path)
    odd = ~((frames >= 0) & (frames <= MAX_FRAME) & (frames == np.floor(frames)))
    if odd.any():
        bad = int(np.flatnonzero(odd)[0])
        raise AUAgentError(f"line {bad + 2}: the frame number {df['frame'].iloc[bad].strip()!r} is not a whole "
                           f"number from 0 to {MAX_FRAME}", path)
    faces = numeric("face_id", 0.0)
    faces = np.where(np.isnan(faces), -1, faces).astype(np.int64)
    confidence = numeric("confidence", 1.0)
    success = numeric("success", 1.0)
    values = np.stack([numeric(by_code[c], math.nan) for c in codes], axis=1)
    # An empty or non-numeric cell masks its frame (BAD_VALUE); a number OpenFace cannot write (inf, negative,
    # above MAX_INTENSITY) means the file is not what it claims to be, and is refused.
    out_of_range = ~np.isnan(values) & ~((values >= 0.0) & (values <= MAX_INTENSITY))
    if out_of_range.any():
        row, col = (int(x[0]) for x in np.nonzero(out_of_range))
        column = by_code[codes[col]]
        raise AUAgentError(f"line {row + 2}: {column} = {df[column].iloc[row].strip()!r} is outside OpenFace's "
                           f"intensity range 0-{MAX_INTENSITY:g}", path)

    bad_value = np.isnan(values).any(axis=1)
    no_face = ~(success == 1)
    low_conf = ~(confidence >= min_confidence)
    valid = ~(bad_value | no_face | low_conf)

    face_ids = sorted(set(faces.tolist()))
    if face_id is None:
        face_id = max(face_ids, key=lambda f: (int(valid[faces == f].sum()), -f))
        if len(face_ids) > 1:
            log.info("%s: %d faces %s; using face_id %d (most valid frames)", path, len(face_ids), face_ids, face_id)
    elif face_id not in face_ids:
        raise AUAgentError(f"face_id {face_id} not in the file (it has {face_ids})", path)
    keep = faces == face_id
    order = np.argsort(frames[keep], kind="stable")
    frames_kept = frames[keep][order].astype(np.int64)
    if len(np.unique(frames_kept)) != len(frames_kept):
        raise AUAgentError(f"face_id {face_id} has repeated frame numbers", path)

    def pick(a: np.ndarray) -> np.ndarray:
        return a[keep][order]

    reasons: List[Optional[str]] = []
    for nf, bv, lc in zip(pick(no_face), pick(bad_value), pick(low_conf)):
        reasons.append(NO_FACE if nf else BAD_VALUE if bv else LOW_CONFIDENCE if lc else None)
    return OpenFaceTrack(
        path=str(path),
        video=path.stem,
        face_id=int(face_id),
        frames=frames_kept,
        au_codes=codes,
        intensities=pick(values),
        confidence=pick(confidence),
        success=pick(success) == 1,
        valid=pick(valid),
        reasons=reasons,
        total_frames=int(frames.max()),
        timestamps=pick(numeric("timestamp", math.nan)) if "timestamp" in df.columns else None,
    )

"""What ``au-agent inspect`` draws, as data: the summary and per-video views of a pipeline output (:class:`Corpus`,
:class:`VideoView`, :class:`FrameRow`, :class:`EvalView`) and the AU × frame heatmaps, built from an OpenFace CSV
or, without one, from the contract input strings (each distinct string parsed once). :mod:`.inspect_data` fills
them from a features folder, a descriptions file or an eval folder; :mod:`.inspect_page` draws them.
"""
from __future__ import annotations

import collections
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from au_core import contract, fidelity
from au_core.errors import AUAgentError
from au_core.facs import INTENSITY_AUS

from .inspect_options import InspectOptions

MAX_COLUMNS = InspectOptions.max_columns


# ------------------------------------------------------------------------------------------------ views


@dataclass
class Heatmap:
    """AU × frame intensities of one video; columns are frames, or bins of frames for long videos."""

    au_codes: List[str]  # rows
    columns: List[Tuple[int, int]]  # (first, last) OpenFace frame number of each column
    values: np.ndarray  # [rows, columns]; NaN: not known
    invalid: List[bool]  # per column: no valid frame in it
    chosen: Dict[int, List[Tuple[int, int]]]  # column → (slot, frame) of the chosen frames in it; slots from 1
    source: str


@dataclass
class FrameRow:
    """One chosen frame: what the agent saw and what it said."""

    slot: int
    frame: Optional[int]
    input: Optional[str]
    description: Optional[str]
    masked: Optional[str] = None
    score: Optional[fidelity.FidelityScore] = None  # None when no fidelity check applies


@dataclass
class VideoView:
    name: str
    heatmap: Heatmap
    rows: List[FrameRow]
    masked: int  # masked slots (features) or invalid frames (descriptions)
    total: int
    activity: float  # mean number of active AUs per valid frame
    note: str = ""
    caption: Optional[str] = None  # the AU caption precompute wrote (the text route), with its token count

    @property
    def worst_f1(self) -> Optional[float]:
        f1s = [r.score.f1 for r in self.rows if r.score is not None]
        return min(f1s) if f1s else None


@dataclass
class SystemTexts:
    """One system's text for an eval record, with its fidelity."""

    label: str
    text: str
    score: fidelity.FidelityScore


@dataclass
class EvalView:
    index: int
    video: str
    frame: Optional[int]
    input: str
    systems: List[SystemTexts]


@dataclass
class Corpus:
    """Everything the page shows."""

    kind: str
    source: Path
    counts: List[Tuple[str, str]]  # (label, value) of the summary table
    problems: Dict[str, int] = field(default_factory=dict)  # failed videos / masked frames by reason
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (video, reason)
    au_active: Dict[str, int] = field(default_factory=dict)  # frames in which each AU is active
    au_frames: int = 0  # valid frames counted in au_active
    words: Dict[str, List[int]] = field(default_factory=dict)  # words per description, per system
    fidelity: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # FidelityTally summary, per system
    settings: List[Tuple[str, str]] = field(default_factory=list)
    videos: List[VideoView] = field(default_factory=list)
    records: List[EvalView] = field(default_factory=list)
    eval_report: Optional[Dict[str, Any]] = None
    shown_note: str = ""


# ------------------------------------------------------------------------------------------- input strings


def _input_values(input_str: str, where: Path) -> Dict[str, float]:
    parsed = _parsed_input(input_str)
    if parsed is None:
        raise AUAgentError(f"{input_str[:60]!r} is not a contract input string", where)
    return dict(parsed)


@functools.lru_cache(maxsize=1 << 16)
def _parsed_input(input_str: str) -> Optional[Tuple[Tuple[str, float], ...]]:
    """``contract.parse_input`` once per distinct string (a corpus repeats them); None when not one."""
    try:
        return tuple(contract.parse_input(input_str).items())
    except (AUAgentError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ heatmaps


def heatmap_from_values(frames: Sequence[int], values: np.ndarray, valid: Sequence[bool],
                        chosen: Sequence[Optional[int]], au_codes: Sequence[str], source: str,
                        max_columns: int = MAX_COLUMNS) -> Heatmap:
    """Bin ``values`` [frames, AUs] into at most ``max_columns`` columns (the maximum over a bin's valid frames,
    or over all its frames when none is valid) and place the chosen frames (``None``: a masked slot)."""
    frames = [int(f) for f in frames]
    values = np.asarray(values, dtype=np.float64).reshape(len(frames), len(au_codes))
    valid = np.asarray(valid, dtype=bool)
    n = len(frames)
    per = max(1, math.ceil(n / max_columns))
    columns, cols, invalid = [], [], []
    for start in range(0, n, per):
        stop = min(n, start + per)
        ok = valid[start:stop]
        block = values[start:stop][ok] if ok.any() else values[start:stop]
        top = np.where(np.isnan(block), -np.inf, block).max(axis=0)  # NaN only where the whole bin is NaN
        col = np.where(np.isneginf(top), np.nan, top)
        columns.append((frames[start], frames[stop - 1]))
        cols.append(col)
        invalid.append(not ok.any())
    position = {f: i for i, f in enumerate(frames)}
    placed: Dict[int, List[Tuple[int, int]]] = collections.defaultdict(list)
    for slot, f in enumerate(chosen, 1):
        if f is not None and int(f) in position:
            placed[position[int(f)] // per].append((slot, int(f)))
    grid = np.stack(cols, axis=1) if cols else np.zeros((len(au_codes), 0))
    return Heatmap(list(au_codes), columns, grid, invalid, dict(placed), source)


def heatmap_from_inputs(frames: Sequence[int], inputs: Sequence[Optional[str]], chosen: Sequence[Optional[int]],
                        where: Path, max_columns: int = MAX_COLUMNS) -> Heatmap:
    """A heatmap from contract input strings alone: active AUs are known, the rest only as "at most the
    threshold" (NaN)."""
    values = np.full((len(frames), len(INTENSITY_AUS)), np.nan)
    row = {code: i for i, code in enumerate(INTENSITY_AUS)}
    for i, s in enumerate(inputs):
        if s is not None:
            for code, v in _input_values(s, where).items():
                values[i, row[code]] = v
    return heatmap_from_values(frames, values, [s is not None for s in inputs], chosen, INTENSITY_AUS,
                               "input strings (AUs above the threshold only; pass --openface-dir for all values)",
                               max_columns)


def heatmap_from_csv(csv: Path, min_confidence: float, chosen: Sequence[Optional[int]],
                     max_columns: int = MAX_COLUMNS) -> Heatmap:
    """The full AU × frame heatmap of one OpenFace CSV."""
    from au_core.openface import read_openface_csv

    track = read_openface_csv(csv, min_confidence)
    values = np.full((len(track), len(INTENSITY_AUS)), np.nan)
    for j, code in enumerate(track.au_codes):
        if code in INTENSITY_AUS:
            values[:, INTENSITY_AUS.index(code)] = track.intensities[:, j]
    return heatmap_from_values(track.frames.tolist(), values, track.valid.tolist(), chosen, INTENSITY_AUS,
                               f"OpenFace CSV {csv.name}", max_columns)


def _csv_heatmap_or_none(opts: InspectOptions, name: str, min_confidence: float,
                         chosen: Sequence[Optional[int]]) -> Tuple[Optional[Heatmap], str]:
    if opts.openface_dir is None:
        return None, ""
    csv = Path(opts.openface_dir) / f"{name}.csv"
    if not csv.is_file():
        return None, f"{csv} not found: the heatmap shows the input strings only"
    return heatmap_from_csv(csv, min_confidence, chosen, opts.max_columns), ""


def _slot_heatmap(meta: Mapping[str, Any], where: Path, max_columns: int) -> Heatmap:
    """Without the CSV, the heatmap has the T chosen frames (distinct, in frame order) as its columns."""
    frames, inputs = [], []
    for f, s, ok in zip(meta["frames"], meta["inputs"], meta["mask"]):
        if ok and f is not None and f not in frames:
            frames.append(int(f))
            inputs.append(s)
    order = sorted(range(len(frames)), key=frames.__getitem__)
    chosen = [f if ok else None for f, ok in zip(meta["frames"], meta["mask"])]
    return heatmap_from_inputs([frames[i] for i in order], [inputs[i] for i in order], chosen, where, max_columns)

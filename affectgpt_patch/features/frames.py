"""Which frames of a video become its T AU features.

    uniform (default)  the frame indices AffectGPT's ``load_video(..., sampling="uniform")`` picks for the same
                       clip, so the i-th AU feature describes the i-th visual frame: with ``vlen`` frames,
                       ``np.arange(0, vlen, vlen / min(T, vlen)).astype(int)``; shorter clips repeat the last
                       index up to T, exactly as AffectGPT pads its frames. Where the float step makes that
                       ``arange`` return T + 1 indices (17 frames and T = 7; T = 11, 13, 14, 15 …; AffectGPT
                       then loads T + 1 visual frames), the first T are kept: always exactly T, each the
                       same as AffectGPT's i-th frame.
    peaks              MER-Factory's emotion peaks: ``find_peaks`` on the summed AU intensity (height 0.8,
                       distance 15 frames); the T highest peaks in time order, topped up with uniform frames.
    all                every frame; T is the video's length.

Video frame index ``i`` is OpenFace ``frame == i + 1``. A chosen frame that is invalid (no face, low
confidence, missing from the CSV) is replaced by the nearest valid frame (the earlier one on a tie), so invalid
frames are never used while valid ones exist. A video with no valid frame gets T masked slots (mask False,
zero features); the mask exists because AffectGPT's collater silently drops a key whose shapes differ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from au_core.errors import AUAgentError

SAMPLING_MODES = ("uniform", "peaks", "all")
PEAK_HEIGHT = 0.8  # MER-Factory's default --threshold
PEAK_DISTANCE = 15  # MER-Factory's default --peak_dis


def uniform_indices(vlen: int, n: int) -> List[int]:
    """AffectGPT's uniform frame indices (0-based) for a clip of ``vlen`` frames: exactly ``n`` of them."""
    if vlen <= 0:
        return []
    indices = np.arange(0, vlen, vlen / min(n, vlen)).astype(int).tolist()[:n]  # the float step may give n + 1
    return indices + [indices[-1]] * (n - len(indices))


def _nearest_valid(target: int, valid_frames: np.ndarray) -> int:
    """The valid frame number closest to ``target`` (the earlier one on a tie)."""
    pos = int(np.searchsorted(valid_frames, target))
    candidates = [valid_frames[p] for p in (pos - 1, pos) if 0 <= p < len(valid_frames)]
    return int(min(candidates, key=lambda f: (abs(int(f) - target), int(f))))


def _peak_frames(frames: np.ndarray, valid: np.ndarray, intensity: np.ndarray, n: int) -> List[int]:
    from scipy.signal import find_peaks

    signal = np.where(valid, intensity, 0.0)
    peaks, props = find_peaks(signal, height=PEAK_HEIGHT, distance=PEAK_DISTANCE)
    strongest = sorted(peaks.tolist(), key=lambda p: (-signal[p], p))[:n]
    return sorted(int(frames[p]) for p in strongest)


@dataclass
class FrameSelection:
    frames: List[Optional[int]]  # OpenFace frame numbers (1-based), None for a masked slot
    mask: np.ndarray  # bool [T]


def select_frames(frames: np.ndarray, valid: np.ndarray, n: int, mode: str = "uniform",
                  intensity: Optional[np.ndarray] = None, total_frames: Optional[int] = None) -> FrameSelection:
    """Choose T frame numbers among ``frames`` (OpenFace numbers with their validity).

    ``total_frames`` is the clip length when it may differ from the largest frame number (the video's length
    when a chosen face leaves early, or when only described frames are listed); ``intensity`` (summed AU
    intensity per frame) is needed for peaks.
    """
    if mode not in SAMPLING_MODES:
        raise AUAgentError(f"unknown frame sampling {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
    frames = np.asarray(frames, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    vlen = int(total_frames if total_frames is not None else (frames.max() if len(frames) else 0))
    valid_frames = np.sort(frames[valid])
    if mode == "all":
        chosen: List[Optional[int]] = [int(f) if ok else None for f, ok in zip(frames, valid)]
        return FrameSelection(chosen, np.array([f is not None for f in chosen], dtype=bool))
    if n <= 0:
        raise AUAgentError(f"the number of frames must be positive, got {n}")
    if len(valid_frames) == 0:
        return FrameSelection([None] * n, np.zeros(n, dtype=bool))
    targets = [i + 1 for i in uniform_indices(vlen, n)]
    if mode == "peaks":
        if intensity is None:
            raise AUAgentError("peak sampling needs the AU intensities")
        peaks = _peak_frames(frames, valid, np.asarray(intensity, dtype=np.float64), n)
        rest = list(targets)
        for peak in peaks:  # one uniform slot per peak (a short clip repeats its frames, so remove one copy)
            if peak in rest:
                rest.remove(peak)
        targets = sorted(peaks + rest[: n - len(peaks)])
    valid_set = set(valid_frames.tolist())
    chosen = [t if t in valid_set else _nearest_valid(t, valid_frames) for t in targets]
    return FrameSelection(chosen, np.ones(n, dtype=bool))

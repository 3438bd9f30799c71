import numpy as np
import pytest

from affectgpt_patch.features.frames import select_frames, uniform_indices
from au_core.errors import AUAgentError


def affectgpt_uniform(vlen, n):
    """AffectGPT's load_video(..., sampling="uniform") indices, written out from its documented formula."""
    idx = list(np.arange(0, vlen, vlen / min(n, vlen)).astype(int))
    while len(idx) < n:
        idx.append(idx[-1])
    return [int(i) for i in idx]


@pytest.mark.parametrize("vlen", list(range(1, 40)) + [99, 100, 300, 1234])
@pytest.mark.parametrize("n", [1, 8, 16])
def test_uniform_matches_affectgpt(vlen, n):
    assert uniform_indices(vlen, n) == affectgpt_uniform(vlen, n)


def test_uniform_300_frames():
    sel = select_frames(np.arange(1, 301), np.ones(300, bool), 8)
    assert sel.frames == [1, 38, 76, 113, 151, 188, 226, 263]  # OpenFace numbers = video index + 1
    assert sel.mask.all()


def test_short_video_repeats_last_frame_like_affectgpt():
    sel = select_frames(np.arange(1, 4), np.ones(3, bool), 8)
    assert sel.frames == [1, 2, 3, 3, 3, 3, 3, 3] and sel.mask.all()


def test_invalid_frames_are_replaced_by_the_nearest_valid_one():
    valid = np.ones(300, bool)
    valid[35:41] = False  # frames 36..41 (frame 38 would be chosen): 35 is nearer than 42
    valid[74:77] = False  # frames 75..77 (frame 76 would be chosen): 74 and 78 tie, the earlier wins
    sel = select_frames(np.arange(1, 301), valid, 8)
    assert sel.frames[1] == 35 and sel.frames[2] == 74
    assert all(valid[f - 1] for f in sel.frames)


def test_all_invalid_video_is_masked():
    sel = select_frames(np.arange(1, 51), np.zeros(50, bool), 8)
    assert sel.frames == [None] * 8 and not sel.mask.any()


def test_missing_rows_count_as_invalid():
    frames = np.array([1, 2, 3, 10, 11, 12])
    sel = select_frames(frames, np.ones(6, bool), 4)
    assert sel.frames == [1, 3, 10, 10]  # targets 1, 4, 7, 10: missing 4 → 3 (1 away), missing 7 → 10 (3 away)


def test_peaks_takes_the_strongest_peaks_in_time_order():
    intensity = np.zeros(200)
    for center, height in [(20, 3.0), (60, 5.0), (120, 4.0), (180, 1.0)]:
        intensity[center - 3:center + 4] = height * np.array([0.2, 0.5, 0.8, 1.0, 0.8, 0.5, 0.2])
    sel = select_frames(np.arange(1, 201), np.ones(200, bool), 3, "peaks", intensity)
    assert sel.frames == [21, 61, 121]
    sel = select_frames(np.arange(1, 201), np.ones(200, bool), 6, "peaks", intensity)
    assert {21, 61, 121, 181} <= set(sel.frames) and len(sel.frames) == 6 and sel.frames == sorted(sel.frames)


def test_all_mode_keeps_every_frame_and_masks_invalid():
    valid = np.array([True, False, True])
    sel = select_frames(np.arange(1, 4), valid, 8, "all")
    assert sel.frames == [1, None, 3] and sel.mask.tolist() == [True, False, True]


def test_bad_settings():
    with pytest.raises(AUAgentError, match="unknown frame sampling"):
        select_frames(np.arange(1, 4), np.ones(3, bool), 8, "random")
    with pytest.raises(AUAgentError, match="peak sampling needs"):
        select_frames(np.arange(1, 4), np.ones(3, bool), 8, "peaks")


def test_exactly_t_frames_for_every_clip_length():
    """AffectGPT's float step gives T + 1 indices for some lengths (17 frames, T = 7); the AU side always has
    exactly T, each AffectGPT's i-th index, and AffectGPT's own indices wherever those are exactly T."""
    plus_one = 0
    for vlen in range(1, 401):
        frames = np.arange(1, vlen + 1)
        valid = np.ones(vlen, bool)
        for n in range(1, 33):
            ours = uniform_indices(vlen, n)
            theirs = affectgpt_uniform(vlen, n)
            assert len(ours) == n and ours == theirs[:n], (vlen, n)
            assert all(0 <= i < vlen for i in ours) and ours == sorted(ours)
            plus_one += len(theirs) > n
            sel = select_frames(frames, valid, n)
            assert len(sel.frames) == len(sel.mask) == n, (vlen, n)
    assert plus_one > 0  # the case this guards against does occur (e.g. 17 frames, T = 7)
    assert len(affectgpt_uniform(17, 7)) == 8 and uniform_indices(17, 7) == [0, 2, 4, 7, 9, 12, 14]


@pytest.mark.parametrize("vlen", [3, 17, 40])
@pytest.mark.parametrize("n", [7, 8, 13])
def test_peaks_and_short_clips_give_exactly_t(vlen, n):
    intensity = np.zeros(vlen)
    intensity[vlen // 2] = 3.0  # one peak
    sel = select_frames(np.arange(1, vlen + 1), np.ones(vlen, bool), n, "peaks", intensity)
    assert len(sel.frames) == len(sel.mask) == n and vlen // 2 + 1 in sel.frames

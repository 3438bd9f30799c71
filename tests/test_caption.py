"""The AU caption (the text route into AffectGPT): times, merging, neutral once, the budget cut between
descriptions, determinism, peak frames, and token counts of a real tokenizer."""
from __future__ import annotations

import pytest

from affectgpt_patch.captions.caption import (
    Caption,
    CaptionSettings,
    build_caption,
    caption_mismatch,
    caption_segments,
    frame_seconds,
    token_counter,
)
from affectgpt_patch.features.compute import plan_video
from affectgpt_patch.features.store import FeatureSettings
from au_core.contract import NEUTRAL_DESCRIPTION
from au_core.errors import AUAgentError
from au_core.openface import read_openface_csv


def words(text: str) -> int:
    return len(text.split())


SMILE = "Lip corners pulled up and cheeks raised."
FROWN = "Brows lowered and drawn together"


def test_times_in_seconds_from_openface_timestamps_or_the_frame_number():
    assert frame_seconds([1, 26, None], {1: 0.0, 26: 1.04}) == [0.0, 1.04, None]
    assert frame_seconds([1, 26]) == [0.0, 1.0]  # no timestamps: 25 fps


def test_consecutive_identical_descriptions_merge_into_one_time_range():
    segs = caption_segments([0.0, 0.5, 1.0, 1.5], [SMILE, SMILE, FROWN, SMILE])
    assert segs == [f"0.0–0.5 s: {SMILE}", f"1.0 s: {FROWN}.", f"1.5 s: {SMILE}"]


def test_neutral_frames_are_said_once_where_the_first_one_stands():
    texts = [NEUTRAL_DESCRIPTION, SMILE, NEUTRAL_DESCRIPTION, FROWN, NEUTRAL_DESCRIPTION]
    segs = caption_segments([0.0, 1.0, 2.0, 3.0, 4.0], texts)
    assert segs[0] == f"0.0 s, 2.0 s, 4.0 s: {NEUTRAL_DESCRIPTION}"
    assert " ".join(segs).count(NEUTRAL_DESCRIPTION) == 1
    assert segs[1:] == [f"1.0 s: {SMILE}", f"3.0 s: {FROWN}."]


def test_neutral_stretches_are_ranges_so_every_frame_sampling_stays_short():
    # sampling: all describes every frame; a neutral stretch is one range, not a time per frame
    times = [i / 10 for i in range(10)]
    texts = [NEUTRAL_DESCRIPTION] * 5 + [SMILE] * 2 + [NEUTRAL_DESCRIPTION] * 3
    assert caption_segments(times, texts) == [f"0.0–0.4 s, 0.7–0.9 s: {NEUTRAL_DESCRIPTION}", f"0.5–0.6 s: {SMILE}"]


def test_masked_slots_and_repeated_frames_of_short_clips():
    # a short clip repeats its last frame: one time, said once; masked slots (None) are left out
    assert caption_segments([0.0, 0.2, 0.2, None], [SMILE, FROWN, FROWN, None]) == \
        [f"0.0 s: {SMILE}", f"0.2 s: {FROWN}."]
    assert build_caption([None, None], [None, None], 10, words).text == ""


def test_budget_cuts_only_between_descriptions_and_records_how_many():
    times, texts = [0.0, 1.0, 2.0], [SMILE, FROWN, "Eyes closed."]
    full = build_caption(times, texts, 1000, words)
    assert (full.cut, full.descriptions) == (0, 3)
    first_two = words(" ".join(full.segments[:2]))
    cap = build_caption(times, texts, first_two, words)
    assert cap.segments == full.segments[:2] and cap.cut == 1 and cap.tokens == first_two
    assert cap.text == " ".join(full.segments[:2])  # whole descriptions, never a cut one
    assert build_caption(times, texts, first_two - 1, words).cut == 2


def test_budget_smaller_than_one_description_is_an_error_naming_the_option():
    with pytest.raises(AUAgentError, match="au_text_max_tokens 3 is smaller than one description"):
        build_caption([0.0], [SMILE], 3, words)


def test_same_inputs_same_caption_byte_for_byte():
    args = ([0.0, 0.4, 0.8], [SMILE, NEUTRAL_DESCRIPTION, FROWN])
    first = build_caption(*args, 50, words)
    assert all(build_caption(*args, 50, words) == first for _ in range(3))
    assert isinstance(first, Caption) and first.record()["text"] == first.text


@pytest.mark.parametrize("sampling", ["uniform", "peaks"])
def test_captions_follow_the_frames_the_features_use(samples, sampling):
    track = read_openface_csv(samples / "openface" / "sample_00000.csv")
    plan = plan_video(track, FeatureSettings(sampling=sampling))
    assert len(plan.times) == len(plan.frames)
    texts = [None if s is None else f"input {s}" for s in plan.inputs]
    cap = build_caption(plan.times, texts, 10_000, words)
    stamp = dict(zip(track.frames.tolist(), track.timestamps.tolist()))
    first = next(f for f in plan.frames if f is not None)
    assert cap.text.startswith(f"{stamp[first]:.1f}")  # OpenFace's timestamp of the first chosen frame


def test_a_real_tokenizer_counts_the_budget(tiny_qwen2):
    count = token_counter(str(tiny_qwen2))
    texts = [SMILE, FROWN, "Eyes wide open, jaw dropped."]
    cap = build_caption([0.0, 1.0, 2.0], texts, 10_000, count, count.fingerprint)
    assert cap.tokens == count(cap.text) > 0
    small = build_caption([0.0, 1.0, 2.0], texts, count(" ".join(cap.segments[:2])), count, count.fingerprint)
    assert small.cut == 1 and small.tokens <= small.max_tokens
    assert count.fingerprint == token_counter(str(tiny_qwen2)).fingerprint


def test_a_record_made_with_another_budget_or_tokenizer_does_not_match():
    meta = {"caption": {"text": "x", "max_tokens": 256, "tokenizer": "tok-a"}}
    assert caption_mismatch(meta, CaptionSettings(), "tok-a") == []
    assert caption_mismatch(meta, CaptionSettings(au_text_max_tokens=128), "tok-a")
    assert caption_mismatch(meta, CaptionSettings(), "tok-b")
    assert caption_mismatch({}, CaptionSettings(), None) == ["no AU caption"]

"""``au-agent compare-affectgpt``: one user clip as the smoke's only sample, and the three ways' LLM inputs
checked; the whole command when ``AFFECTGPT_CHECKOUT`` names a checkout."""
from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affectgpt_patch.smoke import media
from affectgpt_patch.smoke.compare import WAYS, as_expected, format_comparison, llm_input

REPO = Path(__file__).resolve().parents[1]


def test_the_clip_becomes_the_only_sample_with_its_own_files(tmp_path):
    clip = media.write_synthetic_clip(tmp_path / "user")
    ds = media.write_clip_dataset(tmp_path / "data", clip)
    name = clip.name
    assert ds.names == [name]
    for src, dst in ((clip.video, ds.video(name)), (clip.audio, ds.audio(name)),
                     (clip.openface, ds.openface_dir / f"{name}.csv")):
        assert dst.read_bytes() == src.read_bytes()
    faces = np.load(ds.face(name))
    assert faces.dtype == np.uint8 and faces.shape == (media.MediaSpec.frames, 48, 48, 3), "the video's frames"
    with open(ds.folder / "subtitle_chieng.csv", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == [{"name": name, "chinese": "", "english": clip.subtitle}]


def test_given_face_crops_are_used_as_they_are(tmp_path):
    clip = media.write_synthetic_clip(tmp_path / "user")
    crops = np.full((5, 32, 32, 3), 7, dtype=np.uint8)
    np.save(tmp_path / "faces.npy", crops)
    ds = media.write_clip_dataset(tmp_path / "data", media.Clip(clip.video, clip.audio, "hi", clip.openface,
                                                                tmp_path / "faces.npy"))
    assert np.array_equal(np.load(ds.face(clip.name)), crops)


def test_no_au_also_drops_the_fork_nonverbal_caption():
    from omegaconf import OmegaConf

    from affectgpt_patch.smoke.compare import way_config

    cfg = OmegaConf.create({"datasets": {"mercaptionplus": {"face_or_frame": "multiface_audio_face_text"}},
                            "inference": {"use_nonverbal_text": True, "nonverbal_json": "c.json"}})
    assert way_config(cfg, None).inference.use_nonverbal_text is False
    assert way_config(cfg, "text").inference.use_nonverbal_text is True


def _record(caption: bool, tokens: int) -> dict:
    text = "<Video><FaceHere></Video> " + ("<AUText>0.0 s: A smile.</AUText> " if caption else "") + "Subtitle"
    return {"answer": "x", "sample": "s", "texts": [text], "splices": [{"counts": [tokens]}] if tokens else []}


def test_each_way_must_carry_what_it_promises():
    right = {None: _record(False, 0), "text": _record(True, 0), "features": _record(False, 2)}
    for _, route in WAYS:
        assert as_expected(route, right[route])
    assert llm_input(right["text"]) == (True, 0) and llm_input(right["features"]) == (False, 2)
    assert not as_expected(None, _record(True, 0)), "no AU must not carry the caption"
    assert not as_expected("text", _record(True, 1)), "the text route adds no AU tokens"
    assert not as_expected("features", _record(False, 0))
    assert not as_expected("text", {"error": "boom"})
    assert as_expected("features", {"na": "checkpoint has no AU branch"})
    table = format_comparison([(label, right[route]) for label, route in WAYS], Path("missing"))
    assert "[LLM input: caption yes, <AUHere> x0]  'x'" in table


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AFFECTGPT_CHECKOUT"),
                    reason="set AFFECTGPT_CHECKOUT to an AffectGPT checkout (and run `make affectgpt-env`) "
                           "to answer a clip with its own inference")
def test_compare_a_clip_on_a_real_checkout(tmp_path):
    checkout = os.environ["AFFECTGPT_CHECKOUT"]
    clip = media.write_synthetic_clip(tmp_path / "user")
    venv = REPO / ".venv-affectgpt" / "bin" / "python"
    proc = subprocess.run([str(venv) if venv.is_file() else "python", "-m", "au_agent_cli", "compare-affectgpt",
                           checkout, "--video", str(clip.video), "--audio", str(clip.audio), "--subtitle",
                           clip.subtitle, "--openface", str(clip.openface)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    ways = {label: next(line for line in lines if line.strip().startswith(label)) for label, _ in WAYS}
    assert "caption no, <AUHere> x0" in ways["no AU"]
    assert "caption yes, <AUHere> x0" in ways["AU caption (text)"]
    assert "caption no" in ways["AU features"] and "<AUHere> x0" not in ways["AU features"]
    caption = next(line for line in lines if line.strip().startswith("AU caption:"))
    assert caption.strip() != "AU caption: (none)"

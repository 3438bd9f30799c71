"""``au-agent compare-affectgpt CHECKOUT --video V --audio A --subtitle TEXT --openface CSV``: one user clip
answered by the checkout's own inference three ways (no AU, the AU caption as text, the AU features when the
checkpoint has an AU branch), printed side by side with the caption.

The clip goes through the smoke run (:mod:`.runner`) as its only sample: a temporary patched copy of the
checkout, au-agent's own ``precompute`` (the same frames and caption builder as ``au-agent precompute``), the
checkout's ``train.py`` for ``--steps`` steps to make a checkpoint, then its ``Chat`` once per way
(:mod:`.compare`). The models are the smoke's tiny stand-ins (random weights, CPU): the answers show that each
route reaches the LLM and answers, not what a trained AffectGPT would say.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Tuple

from au_core import argtypes
from au_core.errors import AUAgentError

from .compare import WAYS, as_expected
from .media import Clip, read_video_frames
from .runner import SmokeOptions, checkout_path, run_smoke

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CompareOptions:
    steps: int = 1  # training steps that make the stand-in checkpoint: one is enough to save one
    device: str = "cpu"
    keep: bool = False


STANDINS_NOTE = ("models: the smoke's tiny stand-ins (random LLM, vision and audio encoders, a tiny AU agent and "
                 "CLIP), trained {steps} step(s) on this clip: the answers show each route runs, not what it says")


def add_arguments(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The subcommand's options; returns its handler."""
    p.add_argument("checkout", type=Path, help="the AffectGPT checkout (never modified: a temporary copy is used)")
    g = p.add_argument_group("the clip")
    g.add_argument("--video", type=Path, required=True, help="the clip's video (e.g. .mp4)")
    g.add_argument("--audio", type=Path, required=True, help="the clip's audio (.wav, 16 kHz mono)")
    g.add_argument("--subtitle", required=True, help="what is said in the clip (English)")
    g.add_argument("--openface", type=Path, required=True, help="OpenFace FeatureExtraction CSV of the video")
    g.add_argument("--face", type=Path, help="OpenFace aligned faces as uint8 [T, H, W, 3] .npy "
                                             "(default: the video's frames)")
    p.add_argument("--steps", type=argtypes.int_range(1), default=argtypes.default_of(CompareOptions, "steps"),
                   help="training steps that make the stand-in checkpoint (default %(default)s)")
    p.add_argument("--device", type=argtypes.device, default=argtypes.default_of(CompareOptions, "device"),
                   help="cpu or cuda (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy, logs and probes for inspection")

    def run(a: argparse.Namespace) -> int:
        import sys

        clip = Clip(video=a.video, audio=a.audio, subtitle=a.subtitle, openface=a.openface, face=a.face)
        text, rc = compare_clip(a.checkout, clip, CompareOptions(steps=a.steps, device=a.device, keep=a.keep))
        sys.stdout.write(text + "\n")
        return rc

    return run


def check_clip(clip: Clip) -> None:
    """One line naming the option and the file for a clip that cannot be answered, before anything is copied."""
    from au_core.openface import read_openface_csv

    for option, path in (("--video", clip.video), ("--audio", clip.audio), ("--openface", clip.openface),
                         ("--face", clip.face)):
        if path is not None and not Path(path).is_file():
            raise AUAgentError(f"{option}: no such file", path)
    if not clip.subtitle.strip():
        raise AUAgentError("--subtitle is empty: give what is said in the clip")
    read_video_frames(clip.video, 8, limit=1)
    read_openface_csv(clip.openface)  # an unreadable CSV is named now, not after the copy and the stand-ins


def compare_clip(checkout: Path, clip: Clip, opts: CompareOptions = CompareOptions()) -> Tuple[str, int]:
    """The side-by-side text and the exit status: 1 when a way did not answer, its LLM input did not carry what
    the way promises (no AU: neither caption nor AU tokens; text: the caption only; features: AU tokens only),
    or a smoke check failed (then the smoke table follows, saying which)."""
    check_clip(clip)
    checkout_path(checkout)
    result = run_smoke(SmokeOptions(checkout=checkout, steps=opts.steps, device=opts.device, keep=opts.keep,
                                    compare=True, clip=clip, samples=1, batch_size=1))
    header = [f"AffectGPT checkout {checkout}: clip {clip.name} (video {clip.video}, audio {clip.audio}, "
              f"OpenFace {clip.openface})", f"subtitle: {clip.subtitle!a}",
              STANDINS_NOTE.format(steps=opts.steps), ""]
    answered = len(result.compared) == len(WAYS) and all(as_expected(route, r) for (_, route), (_, r)
                                                         in zip(WAYS, result.compared))
    if answered and result.ok:
        return "\n".join(header + [result.appendix]), 0
    return "\n".join(header + [result.format()]), 1  # the smoke table says which step failed

"""``au-agent smoke-affectgpt``: train + answer a patched copy for a few CPU steps (``affectgpt_patch.smoke``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from au_core import argtypes

from .options import Handler


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.smoke import SmokeOptions

    p.add_argument("path", type=Path, help="the AffectGPT checkout (never modified: a temporary copy is used)")
    p.add_argument("--steps", type=argtypes.int_range(1), default=argtypes.default_of(SmokeOptions, "steps"),
                   help="training steps (default %(default)s)")
    p.add_argument("--config", help="an AU training config of the checkout (default: the one the patcher writes)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy, logs and probes for inspection")
    p.add_argument("--device", type=argtypes.device, default=argtypes.default_of(SmokeOptions, "device"),
                   help="cpu or cuda: the same check with real kernels (default %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. au_fusion_type=mean, num_au_query_token=3, "
                        "frozen_au_proj=true, run.batch_size_train=3 (repeatable)")
    p.add_argument("--clip-width", type=argtypes.int_range(8, 4096),
                   default=argtypes.default_of(SmokeOptions, "clip_width"),
                   help="AU feature width of the tiny CLIP (512 like ViT-B/32, 768 like ViT-L/14; default %(default)s)")
    p.add_argument("--au-route", choices=["features", "text", "both"], default=argtypes.default_of(SmokeOptions,
                                                                                                 "au_route"),
                   help="AU tokens, the AU caption as text, or both (default %(default)s; the AU fork's "
                        "Nonverbal commits always use their caption mode)")
    p.add_argument("--compare", action="store_true", help="also answer one sample without AU, with the AU caption "
                                                          "and with the AU features; print them side by side")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.smoke import run_smoke

        result = run_smoke(SmokeOptions(checkout=a.path, steps=a.steps, config=a.config, keep=a.keep,
                                        device=a.device, overrides=a.overrides, clip_width=a.clip_width,
                                        au_route=a.au_route, compare=a.compare))
        sys.stdout.write(result.format() + "\n")
        return result.exit_code

    return run

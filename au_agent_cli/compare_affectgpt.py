"""``au-agent compare-affectgpt``: one clip answered without AU / caption / features
(``affectgpt_patch.smoke.clip_compare``, which defines the options)."""
from __future__ import annotations

import argparse

from .options import Handler


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.smoke.clip_compare import add_arguments as add_compare_arguments

    return add_compare_arguments(p)

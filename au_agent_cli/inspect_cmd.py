"""``au-agent inspect``: one HTML page of a corpus (``affectgpt_patch.quality.inspect_page``).

Not ``inspect.py``: that name would shadow the standard library's ``inspect`` wherever this folder is on the
path."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from au_core import argtypes

from .options import Handler

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.quality.inspect_options import SORT_ORDERS, InspectOptions

    p.add_argument("input", type=Path, help="a precompute features folder, a describe .jsonl file or an eval folder")
    p.add_argument("--openface-dir", type=Path, help="OpenFace CSVs {name}.csv, for full AU × frame heatmaps")
    p.add_argument("--out", type=Path, help="HTML file (default: INPUT/report.html for a folder; for a file, INPUT "
                                            "with its extension replaced by .html: run1.jsonl → run1.html). A file "
                                            "there is replaced only when it is an earlier inspect page")
    p.add_argument("--videos", type=int, default=argtypes.default_of(InspectOptions, "videos"),
                   help="videos (eval: records) drawn in detail; the summary covers all (default %(default)s)")
    p.add_argument("--sort", choices=SORT_ORDERS, default=argtypes.default_of(InspectOptions, "sort"),
                   help="order of the videos: most masked / least faithful first, by name, or most active AUs "
                        "first (default %(default)s)")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.quality.inspect_page import build_report

        out, _ = build_report(InspectOptions(input=a.input, out=a.out, openface_dir=a.openface_dir,
                                             videos=a.videos, sort=a.sort, progress=not a.quiet))
        log.info("page written to %s (open it in any browser)", out)
        return 0

    return run

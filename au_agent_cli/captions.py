"""``au-agent captions``: AU captions → the AU fork's nonverbal_json file
(``affectgpt_patch.captions.captions_file``)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from au_core import argtypes

from .options import Handler

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.features.source import SourceSettings

    p.add_argument("--features", type=Path, required=True, help="an `au-agent precompute` output folder")
    p.add_argument("--dataset-name", required=True, help="the dataset key, e.g. MERCaptionPlus or MER2023")
    p.add_argument("--out", type=Path, required=True, help="captions JSON file (merged into when it exists)")
    p.add_argument("--max-missing", type=float, default=argtypes.default_of(SourceSettings, "au_max_missing"),
                   help="largest fraction of videos without a caption (au_max_missing; default %(default)s)")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.captions.captions_file import write_captions

        summary = write_captions(a.features, a.dataset_name, a.out, a.max_missing)
        log.info("%s: %d captions of %s (%d cut to the budget); %d datasets in the file", a.out,
                 summary["samples"], a.dataset_name, summary["cut"], summary["datasets"])
        return 0

    return run

"""``au-agent describe``: OpenFace CSVs → one description per frame (``affectgpt_patch.agent.describe``)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .options import Handler, add_agent_arguments, add_engine_arguments, add_min_confidence_argument, agent_from_args

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("csv", nargs="+", type=Path, help="OpenFace CSV files or folders of them")
    p.add_argument("--out", type=Path, help="JSONL file to write (default: print to stdout)")
    add_min_confidence_argument(p)
    add_agent_arguments(p)
    add_engine_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.agent.describe import describe_csvs

        agent = agent_from_args(a, lazy=True)
        try:
            lines, summary = describe_csvs(a.csv, agent, a.out, a.batch_size, a.min_confidence, progress=not a.quiet)
        finally:
            agent.close()
        if a.out is None:
            sys.stdout.write("".join(line + "\n" for line in lines))
        log.info("%(videos)d videos, %(frames)d frames (%(masked)d masked), %(distinct_inputs)d distinct AU "
                 "inputs; cache %(hits)d hits / %(misses)d misses, %(generated)d generated", summary)
        if a.out is not None:
            log.info("written to %s", a.out)
        return 0

    return run

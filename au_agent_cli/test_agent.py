"""``au-agent test-agent``: the agent's descriptions of FACS test cases (``affectgpt_patch.quality.facs_cases``).

The command's module, not a pytest file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from au_core.errors import AUAgentError

from .options import Handler, add_agent_arguments, agent_from_args


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--cases", type=Path, help="more cases: JSON ({name: {AU06: 2.1, ...}}) or CSV (AU columns)")
    p.add_argument("--no-builtin", action="store_true", help="run only the cases of --cases")
    add_agent_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.quality.facs_cases import BUILTIN_CASES, format_report, load_cases

        cases = ([] if a.no_builtin else list(BUILTIN_CASES)) + (load_cases(a.cases) if a.cases else [])
        if not cases:
            raise AUAgentError("no cases to run: --no-builtin needs --cases FILE")
        agent = agent_from_args(a)
        descriptions = agent.batch_generate_descriptions([c.au_values for c in cases], a.batch_size)
        sys.stdout.write(format_report(cases, descriptions))
        return 0

    return run

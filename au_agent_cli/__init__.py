"""``au-agent``: one command over the three stages. Each subcommand parses arguments and calls one library
function; user errors (:class:`au_core.errors.AUAgentError`) become one line on stderr and exit status 1. Its commands:

    prepare-data      stage 1  MER-Factory outputs → LLaMA-Factory dataset        data_prep.build
    train             stage 2  render a recipe, run llamafactory-cli, agent card  llamafactory_configs.train
    test-agent        stage 2  print descriptions for FACS test cases             affectgpt_patch.agent
    describe          stage 3  OpenFace CSVs → one description per frame          affectgpt_patch.agent.describe
    precompute        stage 3  OpenFace CSVs → AU features [T, D] per video       affectgpt_patch.features.precompute
    eval              stage 3  BLEU / ROUGE-L / AU fidelity report                affectgpt_patch.quality.evaluate
    inspect           stage 3  one HTML page: AU heatmaps, chosen frames, texts   affectgpt_patch.quality.inspect_page
    captions          stage 3  AU captions → the AU fork's nonverbal_json file    affectgpt_patch.captions.captions_file
    patch-affectgpt   stage 3  add the AU modality to an AffectGPT checkout       affectgpt_patch.patcher
    smoke-affectgpt   stage 3  train + answer a patched copy for a few CPU steps  affectgpt_patch.smoke
    compare-affectgpt stage 3  one clip answered without AU / caption / features  affectgpt_patch.smoke

Each command is one module of this package (``au_agent_cli/<command>.py``, ``inspect_cmd.py`` for inspect) with
``add_arguments(parser) -> handler``; the option groups several share are in ``options.py``. A run imports the
module of its own command only: the table below holds every command's name and help.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from typing import Dict, NamedTuple, NoReturn, Optional, Sequence

from au_core.errors import AUAgentError
from au_core.termination import EXIT_STATUS as TERMINATED_STATUS
from au_core.termination import Terminated, sigterm_as_interrupt

from .options import Handler


class Command(NamedTuple):
    name: str
    module: str  # in this package
    help: str


#: The commands in pipeline order, as ``au-agent --help`` lists them.
COMMANDS = (
    Command("prepare-data", "prepare_data", "MER-Factory outputs → LLaMA-Factory instruction dataset"),
    Command("train", "train", "train the AU Agent with a LLaMA-Factory recipe → checkpoint-best/ + agent_card.json"),
    Command("test-agent", "test_agent",
            "print the agent's descriptions of FACS test cases (basic emotions) and your own"),
    Command("describe", "describe", "OpenFace CSVs → one description per frame (JSON lines)"),
    Command("precompute", "precompute",
            "OpenFace CSVs → AU features {name}.npy [T, D] + {name}.json, resumable"),
    Command("eval", "eval",
            "BLEU / ROUGE-L / AU fidelity of an agent on a dataset split, beside its teacher and the rules"),
    Command("inspect", "inspect_cmd",
            "one self-contained HTML page: AU heatmaps, chosen frames and descriptions of a corpus"),
    Command("captions", "captions",
            "the AU captions of a precompute folder → nonverbal_json {dataset: {sample: {caption}}}"),
    Command("patch-affectgpt", "patch_affectgpt",
            "add the AU modality to an AffectGPT checkout (idempotent; --check, --revert)"),
    Command("smoke-affectgpt", "smoke_affectgpt",
            "train a patched copy of an AffectGPT checkout for a few steps and answer one sample with AU; a table, "
            "exit 1 when a check fails"),
    Command("compare-affectgpt", "compare_affectgpt",
            "answer one clip through a checkout's own inference without AU, with the AU caption and with the AU "
            "features; print them side by side with the caption"),
)
PIPELINE_ORDER = [c.name for c in COMMANDS]
_HANDLERS: Dict[str, Handler] = {}


class UsageError(Exception):
    """A bad command line, reported as one line (``PROG: error: MESSAGE``) with exit status 1."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: error: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse prints the usage and exits 2 on a bad value; here it is one line and exit 1, like every error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


_WHY = {errno.EEXIST: "a file where a folder is needed", errno.ENOTDIR: "a file where a folder is needed",
        errno.EISDIR: "a folder where a file is needed", errno.ELOOP: "a symbolic link loop"}


def os_error_line(e: Exception) -> str:
    """``PATH: what went wrong`` for a file-system error (``OSError`` and its subclasses, undecodable text)."""
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at position {e.start})"
    assert isinstance(e, OSError)
    what = e.strerror or str(e) or type(e).__name__
    # a rename names its temporary source first: the destination is the path the user gave
    path = e.filename2 if e.filename2 is not None else e.filename
    if e.errno in _WHY:
        what += f" ({_WHY[e.errno]})"
    return f"{os.fsdecode(path)}: {what}" if path is not None else what


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the options of that subcommand alone (the others keep their name
    and help): a run imports only what its own command needs, so a finished rerun starts in a fraction of a
    second."""
    parser = _Parser(prog="au-agent", description="The AU Agent pipeline for AffectGPT: "
                                     "OpenFace AUs → descriptions → CLIP features.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sp = subs.add_parser(command.name, help=command.help, description=command.help)
        if only is None or command.name == only:
            module = importlib.import_module(f"{__name__}.{command.module}")
            _HANDLERS[command.name] = module.add_arguments(sp)
    return parser


def _command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand ``argv`` names, when it comes first after the global flags; else None."""
    for arg in argv:
        if arg in ("-v", "--verbose", "-q", "--quiet"):
            continue
        return arg if arg in PIPELINE_ORDER else None
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_of(argv))
    try:
        args, unknown = parser.parse_known_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 1
    if unknown:
        print(f"au-agent {args.command}: error: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
        return 1
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        with sigterm_as_interrupt():
            return _HANDLERS[args.command](args)
    except Terminated:
        print(f"au-agent {args.command}: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        return TERMINATED_STATUS
    except AUAgentError as e:
        print(f"au-agent {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:  # the one place file-system errors become a line, not a traceback
        print(f"au-agent {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"au-agent {args.command}: interrupted", file=sys.stderr)
        return 130

"""Plan the output folder of a run, and keep the nodes of a multi-node run in step.

An OUT that holds checkpoints is resumed from the last one; one that holds anything else is refused unless
``--overwrite`` is given, which deletes the previous run first. Only node 0 plans (resume, start over, delete);
the other nodes wait for its ready marker, so none plans against a folder that node 0 is deleting. Node 0 logs
to ``train.log``, node N to ``train.node{N}.log``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from au_core.agent_card import CARD_NAME
from au_core.errors import AUAgentError

log = logging.getLogger(__name__)

RECIPE_FILE = "au_agent_recipe.yaml"  # the resolved recipe, in the output folder
LOG_FILE = "train.log"
READY_FILE = ".au_agent_train_ready.json"  # written by node 0 once the output folder is planned
_NODE_LOG_RE = re.compile(r"train\.node\d+\.log")
NODE_WAIT_ENV = "AU_AGENT_NODE_WAIT_S"  # how long other nodes wait for node 0 (default one hour)
#: What a run leaves before its first checkpoint: such a folder starts over without --overwrite.
RESTARTABLE = {RECIPE_FILE, LOG_FILE, "trainer_log.jsonl", READY_FILE}
#: Signs that a folder holds a training run, which --overwrite may delete.
RUN_MARKERS = {RECIPE_FILE, LOG_FILE, "trainer_state.json", "trainer_log.jsonl", "adapter_config.json", CARD_NAME}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out: Path) -> List[Path]:
    """Complete ``checkpoint-N`` folders (with trainer state), by step."""
    found = []
    for p in out.iterdir() if out.is_dir() else ():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def plan_output(recipe: Dict[str, Any], overwrite: bool) -> Tuple[str, Optional[Path]]:
    """Decide what happens to the output folder: ``("fresh", None)``, ``("resume", checkpoint)`` or
    ``("overwrite", None)``; refuse what would silently destroy or mix runs."""
    out = Path(recipe["output_dir"])
    if any(ch.isspace() for ch in str(out)):
        raise AUAgentError("the output path contains whitespace, which LLaMA-Factory's torchrun launcher splits "
                           "into separate arguments; choose another --out", out)
    protected = {"dataset": Path(recipe["dataset_dir"]), "base model": Path(recipe["model_name_or_path"])}
    for what, path in protected.items():
        if path.exists() and (out == path or out in path.parents):
            raise AUAgentError(f"--out must not be or contain the {what} folder", out)
    if out.exists() and not out.is_dir():
        raise AUAgentError("exists and is not a folder", out)
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    found = checkpoints(out)
    if overwrite:
        if entries and not (entries & RUN_MARKERS or found or any(map(_NODE_LOG_RE.fullmatch, entries))):
            raise AUAgentError("refusing to --overwrite a folder that does not hold a training run "
                               f"(no {RECIPE_FILE}, trainer_state.json or checkpoints)", out)
        return ("overwrite" if entries else "fresh"), None
    if found:
        return "resume", found[-1]
    if {e for e in entries if not _NODE_LOG_RE.fullmatch(e)} <= RESTARTABLE:
        return "fresh", None
    raise AUAgentError("not empty and holds no checkpoint to resume from; pass --overwrite to start over "
                       "or choose another --out", out)


def node_rank() -> int:
    """This node's rank: ``NODE_RANK`` (torchrun's multi-node launcher), else ``RANK``, else 0."""
    for var in ("NODE_RANK", "RANK"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise AUAgentError(f"{var}={value!r} is not a node rank (an integer)") from None
    return 0


def node_log_file(out: Path, rank: int) -> Path:
    """One log per node: several nodes appending to one file on a shared folder interleave their lines."""
    return out / (LOG_FILE if rank == 0 else f"train.node{rank}.log")


def wait_for_main_node(out: Path, since: float, timeout: Optional[float] = None, poll: float = 2.0) -> None:
    """Block until node 0 has planned ``out`` for this run (its ready marker, written after ``since``)."""
    timeout = float(os.environ.get(NODE_WAIT_ENV, 3600)) if timeout is None else timeout
    ready = out / READY_FILE
    deadline = time.time() + timeout
    log.info("node %d: waiting for node 0 to prepare %s", node_rank(), out)
    while True:
        try:
            if json.loads(ready.read_text(encoding="utf-8")).get("time", 0) >= since - 60:  # 60 s clock skew
                return
        except (OSError, ValueError, AttributeError):
            pass
        if time.time() > deadline:
            raise AUAgentError(f"node 0 did not prepare the output folder within {timeout:.0f} s (no {READY_FILE}); "
                               f"start node 0 too, or raise {NODE_WAIT_ENV}", out)
        time.sleep(poll)

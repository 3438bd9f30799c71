"""``au-agent train``: train the AU Agent with a LLaMA-Factory recipe, and hand off its best checkpoint.

    recipe (YAML in this folder, or a file) + --dataset/--base-model/--out + key=value overrides
        → validated before launch (recipe.py, inputs.py: each problem is one AUAgentError line; nothing written)
        → the output folder planned: fresh, resumed or overwritten (plan.py)
        → OUT/au_agent_recipe.yaml, run by ``llamafactory-cli train`` (output streamed and kept in OUT/train.log)
        → OUT/checkpoint-best/ (the weights with the lowest eval loss) and OUT/agent_card.json (handoff.py)

Training a day on the wrong split, with a base model that is not there or into a folder that held last week's
agent are the mistakes this package exists to stop.

Multi-GPU and multi-node runs go through LLaMA-Factory's torchrun launcher (``FORCE_TORCHRUN=1`` with
``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment). Every node
validates its inputs; only node 0 plans the output folder, writes the resolved recipe and then a ready marker,
and only node 0 writes ``checkpoint-best/`` and the card.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from au_core import atomic
from au_core.agent_card import BEST_DIR, CARD_NAME, AgentCard
from au_core.errors import AUAgentError

from .handoff import finish_run
from .inputs import check_base_model, check_dataset
from .plan import READY_FILE, RECIPE_FILE, node_log_file, node_rank, plan_output, wait_for_main_node
from .recipe import DEFAULT_RECIPE, check_packages, check_precision, check_recipe, load_recipe, render_recipe

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    dataset: Path
    out: Path
    recipe: str = DEFAULT_RECIPE
    base_model: Optional[str] = None  # default: the recipe's model_name_or_path
    overwrite: bool = False
    overrides: Sequence[str] = ()  # OmegaConf dotlist, e.g. ["num_train_epochs=5"]
    echo: bool = True  # copy LLaMA-Factory's output to stdout (it always goes to OUT/train.log)


def run_llamafactory(command: str, recipe_file: Path, log_file: Path, echo: bool = True,
                     env: Optional[Dict[str, str]] = None) -> None:
    """Run ``llamafactory-cli COMMAND RECIPE`` with this interpreter, copying its output to ``log_file`` (and
    stdout) as it comes; raise with its last line when it fails."""
    env = dict(os.environ if env is None else env)
    # torchrun (multi-GPU) is looked up on PATH: make it this environment's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", "llamafactory.cli", command, str(recipe_file)]
    log.info("running llamafactory-cli %s %s (log: %s)", command, recipe_file, log_file)
    sink = getattr(sys.stdout, "buffer", None)
    tail = b""
    with open(log_file, "ab") as log_f:
        log_f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} llamafactory-cli {command} {recipe_file}\n".encode())
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, bufsize=0) as proc:
            try:
                for chunk in iter(lambda: proc.stdout.read(1 << 16), b""):
                    log_f.write(chunk)
                    tail = (tail + chunk)[-4096:]
                    if echo and sink is not None:
                        sink.write(chunk)
                        sink.flush()
                    elif echo:
                        sys.stdout.write(chunk.decode("utf-8", "replace"))
            except BaseException:  # Ctrl-C or SIGTERM: the trainer stops too (it saves nothing half-way)
                stop_process(proc)
                raise
    if proc.returncode != 0:
        lines = [line.strip() for line in tail.decode("utf-8", "replace").replace("\r", "\n").splitlines()]
        last = next((line for line in reversed(lines) if line), "no output")
        raise AUAgentError(f"llamafactory-cli {command} failed (exit status {proc.returncode}): {last}; "
                           f"full log: {log_file}")


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM a child, then SIGKILL it when it has not exited after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def checked_inputs(opts: TrainOptions) -> Tuple[Dict[str, Any], Path, Dict[str, Any]]:
    """The rendered recipe, its source file and the dataset summary, each checked (what every node checks)."""
    recipe, source = render_recipe(opts.recipe, opts.dataset, opts.out, opts.base_model, opts.overrides)
    check_recipe(recipe, source)
    dataset = check_dataset(recipe)
    check_base_model(recipe["model_name_or_path"])
    return recipe, source, dataset


def launch_env(recipe: Dict[str, Any]) -> Dict[str, str]:
    """This environment, with torchrun forced for DeepSpeed (LLaMA-Factory runs DeepSpeed only under it)."""
    env = dict(os.environ)
    if recipe.get("deepspeed"):
        env.setdefault("FORCE_TORCHRUN", "1")
    return env


def prepare_run(opts: TrainOptions) -> Tuple[Dict[str, Any], Path, Dict[str, Any], str, Optional[Path]]:
    """Render and validate everything; nothing is written. Returns the recipe, its source file, the dataset
    summary, and the output plan (``fresh`` / ``resume`` / ``overwrite``) with the checkpoint to resume."""
    recipe, source, dataset = checked_inputs(opts)
    action, checkpoint = plan_output(recipe, opts.overwrite)
    check_packages(recipe)
    check_precision(recipe)
    return recipe, source, dataset, action, checkpoint


def train_agent(opts: TrainOptions) -> Optional[AgentCard]:
    """Validate, launch ``llamafactory-cli train``, and hand off the best checkpoint. Returns the agent card
    (``None`` on nodes other than node 0, which leave the hand-off to node 0)."""
    from omegaconf import OmegaConf

    started = time.time()
    if node_rank() != 0:
        return _train_other_node(opts, started)
    recipe, source, dataset, action, checkpoint = prepare_run(opts)
    out = Path(recipe["output_dir"])
    with contextlib.suppress(FileNotFoundError):
        (out / READY_FILE).unlink()  # a crashed run's marker must not release the other nodes early
    recipe["overwrite_output_dir"] = action == "overwrite"
    if action == "resume" and "resume_from_checkpoint" not in recipe:
        recipe["resume_from_checkpoint"] = str(checkpoint)
        _warn_changed_recipe(out / RECIPE_FILE, recipe)
        log.info("resuming from %s (--overwrite starts over)", checkpoint)
    elif action == "overwrite":
        log.info("--overwrite: deleting the previous run in %s", out)
        shutil.rmtree(out)
    elif action == "fresh" and (out / "trainer_log.jsonl").is_file():
        (out / "trainer_log.jsonl").unlink()  # steps of a run that saved no checkpoint
    env = launch_env(recipe)
    if recipe.get("ray_num_workers"):
        env.setdefault("USE_RAY", "1")  # LLaMA-Factory's Ray Train path reads the switch from the environment
    out.mkdir(parents=True, exist_ok=True)
    recipe_file = out / RECIPE_FILE
    text = OmegaConf.to_yaml(OmegaConf.create(recipe))
    atomic.write_text(recipe_file, text)
    log.info("recipe %s resolved to %s:\n%s", source.name, recipe_file, text)
    atomic.write_json(out / READY_FILE, {"time": time.time(), "action": action})
    try:
        run_llamafactory("train", recipe_file, node_log_file(out, 0), opts.echo, env)
    finally:
        with contextlib.suppress(FileNotFoundError):
            (out / READY_FILE).unlink()
    return finish_run(out, recipe, source.stem, dataset)


def _train_other_node(opts: TrainOptions, started: float) -> None:
    """A node other than 0: check the inputs, wait for node 0's plan, train with node 0's recipe."""
    recipe, _, _ = checked_inputs(opts)
    out = Path(recipe["output_dir"])
    wait_for_main_node(out, started)
    rank = node_rank()
    run_llamafactory("train", out / RECIPE_FILE, node_log_file(out, rank), opts.echo, launch_env(recipe))
    log.info("node %d: done; node 0 writes %s and %s", rank, BEST_DIR, CARD_NAME)
    return None


def _warn_changed_recipe(previous_file: Path, recipe: Dict[str, Any]) -> None:
    if not previous_file.is_file():
        return
    previous = load_recipe(previous_file)
    ignore = {"resume_from_checkpoint", "overwrite_output_dir"}
    changed = sorted(k for k in set(previous) | set(recipe) if k not in ignore and previous.get(k) != recipe.get(k))
    if changed:
        log.warning("resuming with a changed recipe: %s", ", ".join(
            f"{k}: {previous.get(k)!r} → {recipe.get(k)!r}" for k in changed))

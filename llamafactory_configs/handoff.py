"""Hand off a finished run: pick the checkpoint with the lowest eval loss, copy it to ``checkpoint-best/``
without optimizer state, and write the :class:`~au_core.agent_card.AgentCard` the runtime loads it by.
"""
from __future__ import annotations

import json
import logging
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from au_core import atomic, contract
from au_core.agent_card import BEST_DIR, CARD_NAME, AgentCard
from au_core.errors import AUAgentError

from .plan import CHECKPOINT_RE, LOG_FILE, RECIPE_FILE, checkpoints

log = logging.getLogger(__name__)

#: Checkpoint files that only resuming needs; checkpoint-best leaves them out.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "training_args.bin",
               "global_step*", "latest", "zero_to_fp32.py")
#: Packages whose versions decide how an agent was trained (listed in the card when installed).
PACKAGES = ("au-agent", "llamafactory", "transformers", "peft", "torch", "accelerate", "datasets", "trl",
            "tokenizers", "deepspeed", "bitsandbytes")


def select_best_checkpoint(out: Path, state: Dict[str, Any]) -> Tuple[Path, Optional[int], Optional[float]]:
    """The checkpoint with the lowest eval loss: the trainer's ``best_model_checkpoint`` when it is still there
    (looked up by name, so a moved folder works), else the lowest logged eval loss among saved checkpoints, else
    the final adapter in ``out`` (a run without evaluation)."""
    losses: Dict[int, float] = {}
    for entry in state.get("log_history", []):
        if "eval_loss" in entry:
            losses.setdefault(int(entry["step"]), float(entry["eval_loss"]))  # the periodic eval, not a re-run
    saved = {int(CHECKPOINT_RE.match(p.name).group(1)): p for p in checkpoints(out)}
    recorded = state.get("best_model_checkpoint")
    if recorded and (out / Path(recorded).name).is_dir():
        best = out / Path(recorded).name
    elif any(step in saved for step in losses):
        best = saved[min((loss, step) for step, loss in losses.items() if step in saved)[1]]
    else:
        log.warning("no evaluated checkpoint in %s: checkpoint-best holds the final adapter", out)
        return out, state.get("global_step"), None
    step = int(CHECKPOINT_RE.match(best.name).group(1))
    return best, step, losses.get(step)


def export_best(source: Path, out: Path) -> Path:
    """Copy the adapter and tokenizer of ``source`` (without optimizer state) to ``out/checkpoint-best``."""
    skip = shutil.ignore_patterns(*RESUME_ONLY, "checkpoint-*", RECIPE_FILE, LOG_FILE, "train.node*.log", CARD_NAME,
                                  "trainer_log.jsonl",
                                  "*.png", "*_results.json", "runs", ".*")
    with atomic.staged_dir(out / BEST_DIR) as stage:
        shutil.copytree(source, stage, ignore=skip, dirs_exist_ok=True)
    return out / BEST_DIR


def package_versions() -> Dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _lora_settings(adapter_dir: Path, recipe: Dict[str, Any]) -> Dict[str, Any]:
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    return {
        "rank": adapter["r"],
        "alpha": adapter["lora_alpha"],
        "dropout": adapter["lora_dropout"],
        "target": recipe.get("lora_target"),
        "target_modules": sorted(adapter["target_modules"]),
        "use_rslora": adapter.get("use_rslora", False),
        "use_dora": adapter.get("use_dora", False),
        "quantization_bit": recipe.get("quantization_bit"),
    }


def build_agent_card(recipe: Dict[str, Any], recipe_name: str, out_dir: Path, best: Dict[str, Any],
                     dataset: Dict[str, Any], state: Dict[str, Any]) -> AgentCard:
    """The card of a finished run. ``best`` describes the checkpoint copied to ``checkpoint-best/`` (its
    ``source`` folder name, ``step`` and ``eval_loss``); ``dataset`` is what training validated and hashed;
    ``state`` is the run's ``trainer_state.json``."""
    finetuning = recipe.get("finetuning_type", "lora")
    evals = [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in state.get("log_history", []) if "eval_loss" in h]
    return AgentCard(
        contract_version=contract.CONTRACT_VERSION,
        base_model=recipe["model_name_or_path"],
        adapter_dir=BEST_DIR,
        template=recipe["template"],
        system_prompt=recipe["default_system"],
        contract=contract.describe(),
        best_checkpoint=best,
        dataset=dataset,
        finetuning_type=finetuning,
        lora=_lora_settings(out_dir / BEST_DIR, recipe) if finetuning == "lora" else None,
        metrics={
            "global_step": state.get("global_step"),
            "epoch": state.get("epoch"),
            "best_eval_loss": state.get("best_metric"),
            "eval_history": evals,
            "train": _read_json(out_dir / "train_results.json"),
            "eval": _read_json(out_dir / "eval_results.json"),
        },
        packages=package_versions(),
        recipe_name=recipe_name,
        recipe=recipe,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def finish_run(out: Path, recipe: Dict[str, Any], recipe_name: str, dataset: Dict[str, Any]) -> AgentCard:
    """Write ``checkpoint-best/`` and the agent card of a finished run; return the card."""
    state_path = out / "trainer_state.json"
    if not state_path.is_file():
        raise AUAgentError("training ended without trainer_state.json; see train.log", out)
    state = json.loads(state_path.read_text(encoding="utf-8"))
    source, step, loss = select_best_checkpoint(out, state)
    export_best(source, out)
    best = {"source": source.name if source != out else ".", "step": step, "eval_loss": loss}
    card = build_agent_card(recipe, recipe_name, out, best, dataset, state)
    card.write(out)
    log.info("best checkpoint: %s (step %s, eval_loss %s) → %s", best["source"], step,
             f"{loss:.4f}" if loss is not None else "n/a", out / BEST_DIR)
    return card

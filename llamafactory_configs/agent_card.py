"""The agent card: what a trained AU Agent is, written by ``au-agent train`` beside its adapter.

Whoever loads the agent later (the agent runtime, AffectGPT, a colleague on another machine) needs more than
LoRA weights: the base model they belong to, the template and system prompt they were trained under, the prompt
contract version, and enough provenance (dataset hash, recipe, metrics, package versions) to tell two agents
apart. ``agent_card.json`` holds all of it. It is written twice: in the training output folder, pointing at
``checkpoint-best/``, and inside ``checkpoint-best/`` itself, pointing at ``.``, so either folder can be copied
alone.
"""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Union

from data_prep import atomic, contract
from data_prep.errors import AUAgentError

CARD_NAME = "agent_card.json"
#: How a recipe may train the agent: a LoRA adapter (the 7B recipes) or the whole model (the demo's tiny one).
FINETUNING_TYPES = ("lora", "full")
CARD_VERSION = 1
BEST_DIR = "checkpoint-best"
#: Keys every card has; loading the agent needs contract_version, base_model and adapter_dir.
REQUIRED_KEYS = ("card_version", "contract_version", "base_model", "adapter_dir", "template", "system_prompt",
                 "contract", "dataset", "lora", "metrics", "packages", "recipe")


#: Packages whose versions decide how an agent was trained (listed in the card when installed).
PACKAGES = ("au-agent", "llamafactory", "transformers", "peft", "torch", "accelerate", "datasets", "trl",
            "tokenizers", "deepspeed", "bitsandbytes")


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


def build_agent_card(recipe: Dict[str, Any], recipe_name: str, out_dir: Path, best: Dict[str, Any],
                     dataset: Dict[str, Any], state: Dict[str, Any]) -> Dict[str, Any]:
    """The card of a finished run. ``best`` describes the checkpoint copied to ``checkpoint-best/`` (its
    ``source`` folder name, ``step`` and ``eval_loss``); ``dataset`` is what training validated and hashed;
    ``state`` is the run's ``trainer_state.json``."""
    finetuning = recipe.get("finetuning_type", "lora")
    evals = [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in state.get("log_history", []) if "eval_loss" in h]
    return {
        "card_version": CARD_VERSION,
        "contract_version": contract.CONTRACT_VERSION,
        "base_model": recipe["model_name_or_path"],
        "adapter_dir": BEST_DIR,
        "template": recipe["template"],
        "system_prompt": recipe["default_system"],
        "stop_tokens": list(contract.STOP_TOKENS),
        "contract": contract.describe(),
        "best_checkpoint": best,
        "dataset": dataset,
        "finetuning_type": finetuning,
        "lora": _lora_settings(out_dir / BEST_DIR, recipe) if finetuning == "lora" else None,
        "metrics": {
            "global_step": state.get("global_step"),
            "epoch": state.get("epoch"),
            "best_eval_loss": state.get("best_metric"),
            "eval_history": evals,
            "train": _read_json(out_dir / "train_results.json"),
            "eval": _read_json(out_dir / "eval_results.json"),
        },
        "packages": package_versions(),
        "recipe_name": recipe_name,
        "recipe": recipe,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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


def is_full_model(card: Dict[str, Any]) -> bool:
    """A fully fine-tuned agent: ``adapter_dir`` holds the whole model, which is also its base model."""
    return card.get("finetuning_type") == "full"


def write_agent_card(card: Dict[str, Any], out_dir: Union[str, os.PathLike]) -> Path:
    """Write ``card`` to ``out_dir/agent_card.json`` and ``out_dir/checkpoint-best/agent_card.json``.

    ``card["adapter_dir"]`` is written relative to each card's folder, so both copies stay valid when moved.
    """
    out_dir = Path(out_dir)
    best = out_dir / BEST_DIR
    atomic.write_json(out_dir / CARD_NAME, {**card, "adapter_dir": BEST_DIR})
    atomic.write_json(best / CARD_NAME, {**card, "adapter_dir": "."})
    return out_dir / CARD_NAME


def find_agent_card(path_or_dir: Union[str, os.PathLike]) -> Path:
    """The card file for a training output folder, its ``checkpoint-best/`` folder, or the card itself."""
    path = Path(path_or_dir)
    candidates = [path] if path.is_file() else [path / CARD_NAME, path / BEST_DIR / CARD_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not path.exists():
        raise AUAgentError("agent not found", path)
    raise AUAgentError(f"no {CARD_NAME} here: not an `au-agent train` output folder or its {BEST_DIR}/", path)


def load_agent_card(path_or_dir: Union[str, os.PathLike], check_contract: bool = True) -> Dict[str, Any]:
    """Read and check an agent card; ``adapter_dir`` comes back absolute and ``card_path`` is added. For a fully
    fine-tuned agent (``finetuning_type: full``) ``adapter_dir`` is the trained model itself.

    Accepts the training output folder, its ``checkpoint-best/`` folder or the ``agent_card.json`` file. With
    ``check_contract`` an agent trained under another prompt contract is refused: it would be prompted with text
    it never saw in training.
    """
    card_path = find_agent_card(path_or_dir)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AUAgentError(f"agent card is not readable JSON ({e})", card_path) from None
    if not isinstance(card, dict):
        raise AUAgentError("agent card is not a JSON object", card_path)
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        raise AUAgentError(f"agent card lacks {', '.join(missing)}", card_path)
    if card["card_version"] != CARD_VERSION:
        raise AUAgentError(f"agent card version {card['card_version']!r} is not {CARD_VERSION}; "
                           "this au-agent cannot read it", card_path)
    if check_contract and card["contract_version"] != contract.CONTRACT_VERSION:
        raise AUAgentError(f"agent was trained with prompt contract {card['contract_version']!r}, this au-agent "
                           f"speaks {contract.CONTRACT_VERSION!r}; retrain it or install the matching au-agent",
                           card_path)
    adapter = (card_path.parent / card["adapter_dir"]).resolve()
    if is_full_model(card):
        if not (adapter / "config.json").is_file():
            raise AUAgentError("the card's model folder has no config.json", adapter)
    elif not (adapter / "adapter_config.json").is_file():
        raise AUAgentError("the card's adapter folder has no adapter_config.json", adapter)
    return {**card, "adapter_dir": str(adapter), "card_path": str(card_path.resolve())}

"""The agent card: what a trained AU Agent is, written by ``au-agent train`` beside its weights.

Whoever loads the agent later (the agent runtime, AffectGPT, a colleague on another machine) needs more than
LoRA weights: the base model they belong to, the template and system prompt they were trained under, the prompt
contract version, and enough provenance (dataset hash, recipe, metrics, package versions) to tell two agents
apart. ``agent_card.json`` holds all of it. It is written twice: in the training output folder, pointing at
``checkpoint-best/``, and inside ``checkpoint-best/`` itself, pointing at ``.``, so either folder can be copied
alone.

Training writes an :class:`AgentCard` (``llamafactory_configs``); the runtime reads one (``affectgpt_patch``).
The JSON is versioned by ``card_version``: a reader refuses a version it does not know rather than guess.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

from . import atomic, contract
from .errors import AUAgentError

CARD_NAME = "agent_card.json"
CARD_VERSION = 1
BEST_DIR = "checkpoint-best"
#: How a recipe may train the agent: a LoRA adapter (the 7B recipes) or the whole model (the demo's tiny one).
FINETUNING_TYPES = ("lora", "full")


@dataclass(frozen=True, kw_only=True)
class AgentCard:
    """One trained agent. The fields, in order, are the keys of ``agent_card.json`` (but ``card_path``)."""

    card_version: int = CARD_VERSION
    contract_version: str  # the prompt contract the agent was trained under (au_core.contract.CONTRACT_VERSION)
    base_model: str  # what the adapter belongs to; for a full fine-tune, the model that was trained
    adapter_dir: str  # in the file: relative to the card; once loaded: absolute
    template: str  # LLaMA-Factory's chat template
    system_prompt: str
    stop_tokens: List[str] = field(default_factory=lambda: list(contract.STOP_TOKENS))
    contract: Dict[str, Any]  # au_core.contract.describe() at training time
    best_checkpoint: Optional[Dict[str, Any]] = None  # the checkpoint copied to checkpoint-best/
    dataset: Dict[str, Any]  # the validated splits and their sha1
    finetuning_type: str = "lora"
    lora: Optional[Dict[str, Any]]  # rank, alpha, targets…; None for a full fine-tune
    metrics: Dict[str, Any]
    packages: Dict[str, str]  # versions that decide how the agent was trained
    recipe_name: Optional[str] = None
    recipe: Dict[str, Any]  # the rendered LLaMA-Factory recipe, as run
    created: Optional[str] = None  # UTC, ISO 8601
    card_path: Optional[str] = None  # where it was read from (never written)

    #: The keys of the JSON, in file order (set below, from the fields).
    KEYS: ClassVar[Tuple[str, ...]] = ()

    @property
    def is_full_model(self) -> bool:
        """A fully fine-tuned agent: ``adapter_dir`` holds the whole model, which is also its base model."""
        return self.finetuning_type == "full"

    def to_json(self) -> Dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    @classmethod
    def from_json(cls, data: Any, path: Union[str, os.PathLike, None] = None) -> "AgentCard":
        """Check the JSON object of a card: its version, the keys loading needs and their types."""
        if not isinstance(data, dict):
            raise AUAgentError("agent card is not a JSON object", path)
        fields = [f for f in dataclasses.fields(cls) if f.name in cls.KEYS]
        required = [f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [key for key in ["card_version"] + required if key not in data]
        if missing:
            raise AUAgentError(f"agent card lacks {', '.join(missing)}", path)
        if data["card_version"] != CARD_VERSION:
            raise AUAgentError(f"agent card version {data['card_version']!r} is not {CARD_VERSION}; "
                               "this au-agent cannot read it", path)
        for f in fields:
            if f.type in ("str", str) and f.name in data and not isinstance(data[f.name], str):
                raise AUAgentError(f"agent card: {f.name} is not a string ({data[f.name]!r})", path)
        finetuning = data.get("finetuning_type", "lora")
        if finetuning not in FINETUNING_TYPES:
            raise AUAgentError(f"agent card: finetuning_type {finetuning!r} is not one of "
                               f"{', '.join(FINETUNING_TYPES)}", path)
        return cls(**{key: data[key] for key in cls.KEYS if key in data})

    def write(self, out_dir: Union[str, os.PathLike]) -> Path:
        """Write ``out_dir/agent_card.json`` and ``out_dir/checkpoint-best/agent_card.json``, each with
        ``adapter_dir`` relative to its own folder, so both copies stay valid when moved."""
        out_dir = Path(out_dir)
        atomic.write_json(out_dir / CARD_NAME, {**self.to_json(), "adapter_dir": BEST_DIR})
        atomic.write_json(out_dir / BEST_DIR / CARD_NAME, {**self.to_json(), "adapter_dir": "."})
        return out_dir / CARD_NAME


AgentCard.KEYS = tuple(f.name for f in dataclasses.fields(AgentCard) if f.name != "card_path")


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


def load_agent_card(path_or_dir: Union[str, os.PathLike], check_contract: bool = True) -> AgentCard:
    """Read and check an agent card; ``adapter_dir`` comes back absolute and ``card_path`` is set. For a fully
    fine-tuned agent (``finetuning_type: full``) ``adapter_dir`` is the trained model itself.

    Accepts the training output folder, its ``checkpoint-best/`` folder or the ``agent_card.json`` file. With
    ``check_contract`` an agent trained under another prompt contract is refused: it would be prompted with text
    it never saw in training.
    """
    card_path = find_agent_card(path_or_dir)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AUAgentError(f"agent card is not readable JSON ({e})", card_path) from None
    card = AgentCard.from_json(data, card_path)
    if check_contract and card.contract_version != contract.CONTRACT_VERSION:
        raise AUAgentError(f"agent was trained with prompt contract {card.contract_version!r}, this au-agent "
                           f"speaks {contract.CONTRACT_VERSION!r}; retrain it or install the matching au-agent",
                           card_path)
    adapter = (card_path.parent / card.adapter_dir).resolve()
    if card.is_full_model:
        if not (adapter / "config.json").is_file():
            raise AUAgentError("the card's model folder has no config.json", adapter)
    elif not (adapter / "adapter_config.json").is_file():
        raise AUAgentError("the card's adapter folder has no adapter_config.json", adapter)
    return dataclasses.replace(card, adapter_dir=str(adapter), card_path=str(card_path.resolve()))

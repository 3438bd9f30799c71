"""Agent settings from whatever the caller has: an AffectGPT dataset config with the seed's keys, a dict,
an OmegaConf node, an agent folder / ``agent_card.json`` written by ``au-agent train``, or a bare adapter.

Also computes the agent *fingerprint* that keys the description cache. It identifies what determines the
text — base model (hub id at its revision, or every byte of local weights), precision (dtype, 8-/4-bit
loading), adapter bytes, prompt contract, generation settings — and not how it is run, so the hf,
vLLM and OpenAI-server backends share cached descriptions and a changed adapter never hits a stale entry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from au_core import contract
from au_core.errors import AUAgentError

from ..config_access import config_get
from .backends import REGISTRY, check_backend
from .cache import SQLiteCache, digest_memo, file_sha256

if TYPE_CHECKING:
    from au_core.agent_card import AgentCard

log = logging.getLogger(__name__)

BACKENDS = tuple(REGISTRY)  # the registered backends (agent/backends.py), in their order
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")

#: Seed / AffectGPT config keys → AgentConfig fields.
CONFIG_KEYS = {
    "au_agent_base_model": "base_model",
    "au_agent_revision": "revision",
    "au_agent_lora_weights": "lora_weights",
    "au_agent_use_lora": "use_lora",
    "au_agent_backend": "backend",
    "au_agent_dir": "agent_dir",
    "au_agent_batch_size": "batch_size",
    "au_agent_max_new_tokens": "max_new_tokens",
    "au_agent_api_base": "api_base",
    "au_agent_api_model": "api_model",
    "au_agent_cache_dir": "cache_dir",
    "au_agent_use_cache": "use_cache",
    "au_agent_device": "device",
    "au_agent_deterministic": "deterministic",
    "au_agent_fixed_batch_rows": "fixed_batch_rows",
}


@dataclass
class AgentConfig:
    backend: str = "hf"
    base_model: Optional[str] = None  # local folder or hub id
    revision: Optional[str] = None  # hub branch, tag or commit of base_model (default: main)
    lora_weights: Optional[str] = None  # adapter folder (checkpoint-best)
    use_lora: bool = True
    agent_dir: Optional[str] = None  # an `au-agent train` output folder (read through its agent card)
    merge_lora: bool = True  # merge the adapter into the weights once at load time (faster, same text)
    max_new_tokens: int = 96
    do_sample: bool = False  # greedy by default: the same AU input always gives the same text
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 16
    device: Optional[str] = None  # default: cuda if available, else cpu
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    # Batch invariance on CUDA (hf backend; neither changes the text by design, so neither is in the
    # fingerprint): ``deterministic`` runs generation with deterministic kernels and full-precision
    # reductions; ``fixed_batch_rows`` > 0 gives every model call exactly that many rows (short batches padded
    # with copies), so cuBLAS picks the same kernels whatever the batch size. ``make gpu-check`` says which is needed.
    deterministic: bool = False
    fixed_batch_rows: int = 0
    api_base: Optional[str] = None  # OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    api_key: Optional[str] = None
    api_model: Optional[str] = None  # default: the server's first model
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 3
    gpu_memory_utilization: float = 0.85  # vLLM
    use_cache: bool = True
    cache_dir: Optional[str] = None
    card: Optional["AgentCard"] = None  # the agent card agent_dir was read through

    def generation_settings(self) -> Dict[str, Any]:
        """What changes the generated text (part of the fingerprint)."""
        settings: Dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            settings.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        return settings


def agent_config(cfg: Any = None, **overrides: Any) -> AgentConfig:
    """Build an :class:`AgentConfig`. ``overrides`` use the field names and win over ``cfg``."""
    values: Dict[str, Any] = {}
    if isinstance(cfg, (str, os.PathLike)):
        values["agent_dir"] = os.fspath(cfg)
    elif isinstance(cfg, AgentConfig):
        values = dataclasses.asdict(cfg)
    elif cfg is not None:
        for key, name in CONFIG_KEYS.items():
            value = config_get(cfg, key)
            if value is not None:
                values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - {f.name for f in dataclasses.fields(AgentConfig)}
    if unknown:
        raise AUAgentError(f"unknown agent options {sorted(unknown)}")
    config = AgentConfig(**values)
    if config.agent_dir:
        _apply_agent_dir(config, config.agent_dir)
    check_backend(config.backend)
    for name in ("batch_size", "max_new_tokens", "concurrency"):  # a config file's 0 would fail deep in a backend
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AUAgentError(f"agent option {name} must be an integer >= 1, got {value!r}")
    if config.backend in ("hf", "vllm") and not config.base_model:
        raise AUAgentError(f"the {config.backend} backend needs a base model (au_agent_base_model or an agent folder)")
    if config.backend == "openai" and not config.api_base:
        raise AUAgentError("the openai backend needs api_base (e.g. http://127.0.0.1:8000/v1)")
    if config.fixed_batch_rows < 0:
        raise AUAgentError(f"fixed_batch_rows must be 0 (off) or positive, got {config.fixed_batch_rows}")
    if not config.use_lora:
        config.lora_weights = None
    elif config.lora_weights:
        check_adapter_dir(config.lora_weights)
    return config


def _apply_agent_dir(config: AgentConfig, agent_dir: str) -> None:
    """Fill base model and adapter from an agent card, a bare adapter folder or a merged model folder."""
    from au_core.agent_card import BEST_DIR, CARD_NAME, load_agent_card

    path = Path(agent_dir)
    if path.is_file() or (path / CARD_NAME).is_file() or (path / BEST_DIR / CARD_NAME).is_file():
        card = load_agent_card(path)
        config.card = card
        if card.is_full_model:  # the trained weights are the whole model
            config.base_model = config.base_model or card.adapter_dir
        else:
            config.base_model = config.base_model or card.base_model
            config.lora_weights = config.lora_weights or card.adapter_dir
    elif (path / "adapter_config.json").is_file():
        adapter_cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        config.lora_weights = config.lora_weights or str(path)
        config.base_model = config.base_model or adapter_cfg.get("base_model_name_or_path")
    elif (path / "config.json").is_file():
        config.base_model = config.base_model or str(path)  # a merged model
    elif not path.exists():
        raise AUAgentError("agent not found", path)
    else:
        raise AUAgentError("not an agent: expected agent_card.json, an adapter (adapter_config.json) or a model", path)


def check_adapter_dir(path: str) -> None:
    p = Path(path)
    if not p.is_dir():
        raise AUAgentError("LoRA adapter folder not found", p)
    if not (p / "adapter_config.json").is_file():
        raise AUAgentError("not a LoRA adapter: adapter_config.json is missing", p)
    if not any((p / name).is_file() for name in ADAPTER_FILES[1:]):
        raise AUAgentError("LoRA adapter weights are missing (adapter_model.safetensors)", p)


# -------------------------------------------------------------------------------------------- fingerprint


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def _file_digest(path: Path, memo: Optional[SQLiteCache] = None) -> str:
    return file_sha256(path, memo)[:16]


def hub_revision(model_id: str, revision: Optional[str] = None) -> Optional[str]:
    """The commit a hub id resolves to in the local Hugging Face cache (what an offline load reads), else
    the requested revision as given."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return revision
    ref = Path(HF_HUB_CACHE) / f"models--{model_id.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref.read_text(encoding="utf-8").strip() or revision
    except OSError:
        return revision


def model_identity(base_model: str, revision: Optional[str] = None, memo: Optional[SQLiteCache] = None
                   ) -> Dict[str, Any]:
    """A hub id stands for itself at its revision; a local folder for its name, config, weight index and
    the full sha256 of every weight file."""
    path = Path(base_model)
    if not path.is_dir():
        return {"id": base_model, "revision": hub_revision(base_model, revision)}
    weights = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    indexes = sorted(p for p in path.iterdir() if p.name.endswith(".index.json") and p.is_file())
    return {
        "id": path.name,
        "config": _file_digest(path / "config.json") if (path / "config.json").is_file() else None,
        "index": {p.name: _file_digest(p) for p in indexes},
        "weights": {p.name: _file_digest(p, memo) for p in weights},
    }


def _digest_memo(config: AgentConfig) -> Optional[SQLiteCache]:
    return digest_memo(config.cache_dir) if config.use_cache else None


def fingerprint(config: AgentConfig) -> str:
    """The description-cache namespace of this agent (see module docstring)."""
    if config.backend == "rules":
        from .rules import RULES_VERSION

        parts: Dict[str, Any] = {"rules": RULES_VERSION}
    elif config.backend == "openai" and not config.base_model:
        parts = {"server_model": config.api_model or "default", "api_base": config.api_base}
        log.warning("openai backend without an agent folder: cached descriptions are keyed by the server's "
                    "model name; pass --agent to key them by the adapter's bytes")
    else:
        assert config.base_model is not None  # agent_config requires one for every other backend
        parts = {"base": model_identity(config.base_model, config.revision, _digest_memo(config)),
                 # how the weights are loaded changes the text too (a 4-bit model is not the bf16 one)
                 "precision": {"dtype": config.dtype, "load_in_8bit": config.load_in_8bit,
                               "load_in_4bit": config.load_in_4bit}}
        if config.lora_weights:
            adapter = Path(config.lora_weights)
            parts["adapter"] = {name: _file_digest(adapter / name) for name in ADAPTER_FILES
                                if (adapter / name).is_file()}
    parts["contract"] = contract.CONTRACT_VERSION
    parts["generation"] = config.generation_settings()
    blob = json.dumps(parts, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]

"""The agent backends: what each one provides (:class:`AgentBackend`) and the one registry of their names.

A backend registers here and nowhere else: its name and a loader that imports its module only when an agent
uses it, so a process that describes with ``rules`` never imports torch, transformers or vLLM. The names that
:func:`~.config.agent_config` accepts (``BACKENDS``) are this registry's keys, in this order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Protocol, Sequence

from au_core.errors import AUAgentError

if TYPE_CHECKING:
    from .config import AgentConfig


class AgentBackend(Protocol):
    """A model that writes one description per contract input string, in order."""

    name: str

    def generate(self, inputs: Sequence[str], batch_size: int) -> List[str]: ...

    def close(self) -> None: ...


def _hf(config: AgentConfig) -> AgentBackend:
    from .hf import HFBackend

    return HFBackend(config)


def _vllm(config: AgentConfig) -> AgentBackend:
    from .vllm_backend import VLLMBackend

    return VLLMBackend(config)


def _openai(config: AgentConfig) -> AgentBackend:
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(config)


def _rules(config: AgentConfig) -> AgentBackend:
    from .rules import RulesBackend

    return RulesBackend()


#: Backend name → its loader (to add a backend: a module ``agent/<name>_backend.py`` and one line here).
REGISTRY: Dict[str, Callable[[AgentConfig], AgentBackend]] = {
    "hf": _hf,
    "vllm": _vllm,
    "openai": _openai,
    "rules": _rules,
}



def check_backend(name: str) -> str:
    if name not in REGISTRY:
        raise AUAgentError(f"unknown agent backend {name!r}; choose one of {', '.join(REGISTRY)}")
    return name


def load_backend(config: AgentConfig) -> AgentBackend:
    """The backend ``config.backend`` names, loaded (a hub model is downloaded here)."""
    return REGISTRY[check_backend(config.backend)](config)

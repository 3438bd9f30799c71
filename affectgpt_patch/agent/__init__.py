"""The AU Agent: AU values → one English description per frame, batched, deterministic and cached.

    agent = create_au_agent(dataset_cfg)                        # seed keys, a dict, or an agent folder
    agent.generate_description({"AU06": 1.4, "AU12": 2.1})     # one frame
    agent.batch_generate_descriptions(list_of_au_dicts, 16)    # many frames
    agent.describe_inputs(["AU06: 1.40, AU12: 2.10", ...])      # contract input strings (used by the pipeline)

Every call goes through :meth:`AUAgent.describe_inputs`: neutral inputs get the contract's neutral text with no
model call, repeated inputs are generated once, cached inputs are read from the SQLite cache, and only the rest
reach the backend (``hf``, ``vllm``, ``openai`` or ``rules``: :mod:`.backends`) in large batches.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from au_core import contract

from .. import per_process
from .backends import AgentBackend, load_backend
from .cache import SQLiteCache, default_cache_dir
from .config import AgentConfig, agent_config, fingerprint

log = logging.getLogger(__name__)

__all__ = ["AUAgent", "AgentConfig", "create_au_agent", "shared_au_agent", "agent_config"]

DESCRIPTION_CACHE = "descriptions.sqlite"


class AUAgent:
    """Describes AU frames with one backend; see the module docstring."""

    def __init__(self, config: AgentConfig, lazy: bool = False) -> None:
        self.config = config
        # a hub model is downloaded here: its revision is known after (a lazy agent re-reads the fingerprint
        # once the model is loaded)
        self._backend: Optional[AgentBackend] = None if lazy else load_backend(config)
        self.fingerprint = fingerprint(config)
        self.cache: Optional[SQLiteCache] = None
        if config.use_cache:
            cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
            self.cache = SQLiteCache(cache_dir / DESCRIPTION_CACHE)
        self.generated = 0  # descriptions produced by the backend in this process
        if not lazy:
            log.info("AU agent ready: backend %s, fingerprint %s", config.backend, self.fingerprint)

    @property
    def backend(self) -> AgentBackend:
        """The model; an agent made with ``lazy=True`` loads it here, on the first description not cached."""
        if self._backend is None:
            self._backend = load_backend(self.config)
            self.fingerprint = fingerprint(self.config)
            log.info("AU agent loaded: backend %s, fingerprint %s", self.config.backend, self.fingerprint)
        return self._backend

    # ---- the seed guide's API

    @staticmethod
    def parse_openface_csv(row_dict: Mapping[str, Any]) -> Dict[str, float]:
        """AU intensities of one OpenFace CSV row (``row.to_dict()``), keyed ``"AU01"``…"""
        from au_core.openface import intensities_from_row  # the CSV reader's numpy: not for a finished rerun

        return intensities_from_row(row_dict)

    def generate_description(self, au_values: Mapping[str, float]) -> str:
        return self.describe_inputs([contract.format_input(au_values)])[0]

    def batch_generate_descriptions(self, au_values_list: Sequence[Mapping[str, float]],
                                    batch_size: int = 16) -> List[str]:
        return self.describe_inputs([contract.format_input(v) for v in au_values_list], batch_size=batch_size)

    # ---- the pipeline's API

    def describe_inputs(self, inputs: Sequence[str], batch_size: Optional[int] = None,
                        progress: bool = False) -> List[str]:
        """Descriptions for contract input strings, in order (see the module docstring)."""
        unique = list(dict.fromkeys(s for s in inputs if not contract.is_neutral(s)))
        known: Dict[str, str] = {}
        if self.cache is not None and unique:
            known = {k: v.decode("utf-8") for k, v in self.cache.get_many(self.fingerprint, unique).items()}
        todo = [s for s in unique if s not in known]
        if todo:
            known.update(self._generate(todo, batch_size or self.config.batch_size, progress))
        return [contract.NEUTRAL_DESCRIPTION if contract.is_neutral(s) else known[s] for s in inputs]

    def _generate(self, todo: List[str], batch_size: int, progress: bool) -> Dict[str, str]:
        from tqdm import tqdm

        # Feed the backend in large slices so the progress bar moves and a crash loses little. Inputs are
        # ordered by length first: contract items have a fixed width, so equal lengths mean equal AU counts
        # (equal prompt lengths), and each slice fills the backend's length buckets to whole batches.
        todo = sorted(todo, key=len)
        step = max(batch_size * 8, 64)
        out: Dict[str, str] = {}
        with tqdm(total=len(todo), desc=f"describing ({self.config.backend})", unit="desc",
                  disable=not progress or len(todo) <= step) as bar:
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                texts = dict(zip(chunk, self.backend.generate(chunk, batch_size)))
                if self.cache is not None:  # persist as we go (a crash keeps what was generated); where another
                    # process stored a key first, its text is the one used
                    stored = self.cache.put_many(self.fingerprint, {k: v.encode("utf-8") for k, v in texts.items()})
                    texts = {k: stored[k].decode("utf-8") for k in chunk}
                out.update(texts)
                bar.update(len(chunk))
        self.generated += len(out)
        return out

    def cache_stats(self) -> Dict[str, int]:
        stats = self.cache.stats() if self.cache is not None else {"hits": 0, "misses": 0}
        return {**stats, "generated": self.generated}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def create_au_agent(cfg: Any = None, backend: Optional[str] = None, lazy: bool = False, **options: Any) -> AUAgent:
    """Create an agent from an AffectGPT ``dataset_cfg`` (the seed's ``au_agent_*`` keys), a dict, an OmegaConf
    node, an :class:`AgentConfig`, or a path to an ``au-agent train`` output / ``agent_card.json`` / adapter.
    ``lazy``: load the model only when a description is missing from the cache (a finished rerun loads none)."""
    return AUAgent(agent_config(cfg, backend=backend, **options), lazy=lazy)


def shared_au_agent(cfg: Any = None, backend: Optional[str] = None, **options: Any) -> AUAgent:
    """Like :func:`create_au_agent`, but one agent per process and configuration
    (:mod:`affectgpt_patch.per_process`), for dataset code that would otherwise load a 7B model per sample."""
    config = agent_config(cfg, backend=backend, **options)
    return per_process.once(("AUAgent", repr(config)), lambda: AUAgent(config))

"""The ``vllm`` backend: offline ``vllm.LLM`` with the adapter as a ``LoRARequest``, or a merged model folder.

For one fixed adapter a merged model (``llamafactory-cli export``) serves faster; the unmerged path reads the
adapter's rank so ``max_lora_rank`` (vLLM's default is 16) never rejects a rank-64 adapter. Prompts are sent
as token ids from :func:`.prompts.encode_prompt`, the same ids the hf backend and training use.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from au_core.errors import AUAgentError

from .config import AgentConfig
from .prompts import encode_prompt, stop_token_ids

log = logging.getLogger(__name__)

SUPPORTED_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter_dir: str) -> int:
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    ranks = [int(cfg.get("r", 8))] + [int(r) for r in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds ``rank``."""
    for supported in SUPPORTED_LORA_RANKS:
        if rank <= supported:
            return supported
    raise AUAgentError(f"LoRA rank {rank} is above what vLLM supports ({SUPPORTED_LORA_RANKS[-1]})")


def llm_kwargs(config: AgentConfig, max_model_len: int = 2048) -> Dict[str, Any]:
    """Arguments of ``vllm.LLM`` for this agent."""
    kwargs: Dict[str, Any] = {
        "model": config.base_model,
        "tokenizer": config.base_model,
        "seed": config.seed,
        "dtype": "auto" if config.dtype == "auto" else config.dtype,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": max_model_len,
        "enable_prefix_caching": True,  # every prompt shares the system + instruction prefix
    }
    if config.revision:
        kwargs.update(revision=config.revision, tokenizer_revision=config.revision)
    if config.lora_weights:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank(adapter_rank(config.lora_weights)))
    return kwargs


def sampling_kwargs(config: AgentConfig, stop_ids: Sequence[int]) -> Dict[str, Any]:
    """Arguments of ``vllm.SamplingParams``: greedy unless sampling was asked for."""
    kwargs: Dict[str, Any] = {"max_tokens": config.max_new_tokens, "stop_token_ids": list(stop_ids),
                              "skip_special_tokens": True, "repetition_penalty": 1.0}
    if config.do_sample:
        kwargs.update(temperature=config.temperature, top_p=config.top_p, seed=config.seed)
    else:
        kwargs.update(temperature=0.0)
    return kwargs


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: AgentConfig) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise AUAgentError("the vllm backend needs vLLM on a CUDA machine: pip install 'au-agent[vllm]'") from None
        self.llm = LLM(**llm_kwargs(config))
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling = SamplingParams(**sampling_kwargs(config, stop_token_ids(self.tokenizer)))
        self.lora: Optional[Any] = LoRARequest("au-agent", 1, config.lora_weights) if config.lora_weights else None

    def generate(self, inputs: Sequence[str], batch_size: int) -> List[str]:
        prompts = [{"prompt_token_ids": encode_prompt(self.tokenizer, s)} for s in inputs]
        results = self.llm.generate(prompts, self.sampling, lora_request=self.lora, use_tqdm=False)
        return [r.outputs[0].text.strip() for r in results]

    def close(self) -> None:
        self.llm = None

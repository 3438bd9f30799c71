"""au-agent's AU branch for AffectGPT, installed as ``my_affectgpt/models/au_branch.py`` by
``au-agent patch-affectgpt`` (remove it with ``--revert``).

An AU feature is a ``[T, 512]`` stack of CLIP text embeddings, one per sampled frame, with a ``[T]`` mask of the
frames that carry a description. The branch pools it over time (a masked mean, or masked attention with one
query per output token), projects it to the LLM width and returns ``num_au_query_token`` tokens that
``forward`` / ``Chat.answer_sample`` splice where ``<AUHere>`` stands, exactly like faces, frames and audio.

Everything here is new trainable state. AffectGPT saves the parameters that require grad and loads checkpoints
with ``strict=False``, so released checkpoints keep loading (the AU layers then start untrained), and configs
without the AU keys get the defaults below.

Runs inside AffectGPT's environment (Python 3.10, torch 2.4): only ``torch`` is imported.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

AU_FEATURE_DIM = 512  # OpenAI CLIP ViT-B/32 text embedding width
AU_PATCH_TOKEN = "<AUHere>"
FUSION_TYPES = ("mean", "attention")
#: Model-config keys of the branch and their defaults (read with ``cfg.get`` so old configs still load).
DEFAULTS: Dict[str, Any] = {"num_au_query_token": 1, "au_fusion_type": "attention", "frozen_au_proj": False}


def au_branch_settings(cfg: Any) -> Dict[str, Any]:
    """The branch's keys from a model config (an OmegaConf node or a dict), defaults for the missing ones."""
    return {key: cfg.get(key, default) for key, default in DEFAULTS.items()}


class AUProjector(nn.Module):
    """``[B, T, D]`` AU features (+ ``[B, T]`` mask) → ``[B, n, llm_hidden]`` LLM tokens.

    ``mean`` averages the valid frames and repeats the projection ``n`` times (AffectGPT's own ``mean``
    fusion); ``attention`` learns ``n`` frame-weighting queries, so each token can attend to different frames.
    A sample with no valid frame pools to zeros instead of NaN.
    """

    def __init__(self, llm_hidden_size: int, num_tokens: int = 1, fusion_type: str = "attention",
                 feature_dim: int = AU_FEATURE_DIM, frozen: bool = False) -> None:
        super().__init__()
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"au_fusion_type must be one of {FUSION_TYPES}, got {fusion_type!r}")
        if int(num_tokens) < 1:
            raise ValueError(f"num_au_query_token must be at least 1, got {num_tokens!r}")
        self.num_tokens = int(num_tokens)
        self.fusion_type = fusion_type
        self.au_attention_mlp = nn.Linear(feature_dim, self.num_tokens) if fusion_type == "attention" else None
        self.au_llama_proj = nn.Linear(feature_dim, llm_hidden_size)
        for param in self.parameters():
            param.requires_grad = not frozen

    def forward(self, aus: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(pooled [B, n, D], tokens [B, n, llm_hidden])``."""
        if mask is None:
            mask = torch.ones(aus.shape[:2], dtype=torch.bool, device=aus.device)
        mask = mask.to(device=aus.device, dtype=torch.bool)
        if self.fusion_type == "mean":
            weights = mask.float().unsqueeze(-1)  # [B, T, 1]
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        else:
            scores = self.au_attention_mlp(aus).float()  # [B, T, n]
            scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            weights = torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0)  # all-masked rows → 0
        pooled = torch.einsum("btn,btd->bnd", weights.to(aus.dtype), aus)  # [B, n or 1, D]
        tokens = self.au_llama_proj(pooled)
        if tokens.shape[1] != self.num_tokens:
            tokens = tokens.expand(-1, self.num_tokens, -1)
            pooled = pooled.expand(-1, self.num_tokens, -1)
        return pooled, tokens


class AUBranchMixin:
    """What ``AffectGPT`` gains (the patch puts this class first among its bases).

    Relies on AffectGPT's ``llama_tokenizer``, ``llama_model`` and ``maybe_autocast``.
    """

    def init_au_branch(self, num_au_query_token: int = DEFAULTS["num_au_query_token"],
                       au_fusion_type: str = DEFAULTS["au_fusion_type"],
                       frozen_au_proj: bool = DEFAULTS["frozen_au_proj"]) -> None:
        """Called by ``from_config`` right after the model is built, before its checkpoints are loaded."""
        import config  # AffectGPT's own config.py (scripts run from the code root)

        self.num_au_query_token = int(num_au_query_token)
        self.AU_PATCH_TOKEN_ID = self.llama_tokenizer.get_vocab()[config.DEFAULT_AU_PATCH_TOKEN]
        self.au_branch = AUProjector(self.llama_model.config.hidden_size, self.num_au_query_token,
                                     au_fusion_type, frozen=bool(frozen_au_proj))

    def encode_au_merge(self, aus: torch.Tensor, au_masks: Optional[torch.Tensor] = None):
        """``aus`` [B, T, 512] (+ ``au_masks`` [B, T]) → ``(pooled, tokens [B, num_au_query_token, hidden])``."""
        with self.maybe_autocast():
            return self.au_branch(aus, au_masks)


class AUChatMixin:
    """What ``Chat`` gains (first among its bases): the ``<AUHere>`` expansion and ``postprocess_au``.

    The token count comes from the model, so it always matches what the model splices.
    """

    @property
    def au_token_id(self) -> int:
        import config

        return self.tokenizer.get_vocab()[config.DEFAULT_AU_PATCH_TOKEN]

    @property
    def num_au_query_token(self) -> int:
        return int(getattr(self.model, "num_au_query_token", DEFAULTS["num_au_query_token"]))

    def expand_au_tokens(self, prompt: str) -> str:
        import config

        token = config.DEFAULT_AU_PATCH_TOKEN
        return prompt.replace(token, token * self.num_au_query_token)

    def postprocess_au(self, sample_data):
        """The sample's ``au`` [T, 512] (+ ``au_mask``) → ``(pooled, tokens)``; ``(None, None)`` without AU."""
        au = sample_data.get("au") if sample_data is not None else None
        if au is None:
            return None, None
        mask = sample_data.get("au_mask")
        au = au.unsqueeze(0).to(self.device)
        mask = None if mask is None else mask.unsqueeze(0).to(self.device)
        return self.model.encode_au_merge(au, mask)

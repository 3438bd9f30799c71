"""au-agent's AU branch for AffectGPT, installed as ``my_affectgpt/models/au_branch.py`` by
``au-agent patch-affectgpt`` (remove it with ``--revert``).

An AU feature is a ``[T, D]`` stack of CLIP text embeddings, one per sampled frame (D = ``au_feature_dim``, the
CLIP model's width: 512 for ViT-B/32, 768 for ViT-L/14), with a ``[T]`` mask of the frames that carry a
description. The branch pools it over time (a masked mean, or masked attention with one
query per output token), projects it to the LLM width and returns ``num_au_query_token`` tokens that
``forward`` / ``Chat.answer_sample`` splice where ``<AUHere>`` stands, exactly like faces, frames and audio.

Everything here is new state. AffectGPT saves the parameters that require grad and loads checkpoints with
``strict=False``, so released checkpoints keep loading (the AU layers then start untrained), and configs
without the AU keys get the defaults below. Two consequences are handled here:

* a frozen branch (``frozen_au_proj: true``) is never saved, so inference rebuilds it: its weights come from
  ``au_init_seed`` alone (the global RNG is left as it was), identical in every build;
* ``strict=False`` would load a checkpoint of another AU configuration (``num_au_query_token``,
  ``au_fusion_type``, ``au_feature_dim``) as an opaque size mismatch or leave a layer silently random: loading
  one raises an error naming the key, both shapes and the config key to change.

Runs inside AffectGPT's environment (Python 3.10, torch 2.4): only ``torch`` is imported.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

AU_PATCH_TOKEN = "<AUHere>"
FUSION_TYPES = ("mean", "attention")
#: Model-config keys of the branch and their defaults (read with ``cfg.get`` so old configs still load).
#: ``au_feature_dim`` 512 is OpenAI CLIP ViT-B/32's text width (768 for ViT-L/14).
DEFAULTS: Dict[str, Any] = {"num_au_query_token": 1, "au_fusion_type": "attention", "frozen_au_proj": False,
                            "au_feature_dim": 512, "au_init_seed": 0}
#: A checkpoint key that older versions of the branch saved and that never had an effect (a constant added to
#: every frame's attention score, cancelled by the softmax over time): ignored when loading.
DROPPED_KEYS = ("au_attention_mlp.bias",)


def au_branch_settings(cfg: Any) -> Dict[str, Any]:
    """The branch's keys from a model config (an OmegaConf node or a dict), defaults for the missing ones."""
    return {key: cfg.get(key, default) for key, default in DEFAULTS.items()}


class AUProjector(nn.Module):
    """``[B, T, D]`` AU features (+ ``[B, T]`` mask) → ``[B, n, llm_hidden]`` LLM tokens.

    ``mean`` averages the valid frames and repeats the projection ``n`` times (AffectGPT's own ``mean``
    fusion); ``attention`` learns ``n`` frame-weighting queries (no bias: a constant score is cancelled by the
    softmax over time), so each token can attend to different frames. A sample with no valid frame pools to
    zeros instead of NaN. The initial weights depend on ``seed`` only.
    """

    def __init__(self, llm_hidden_size: int, num_tokens: int = 1, fusion_type: str = "attention",
                 feature_dim: int = DEFAULTS["au_feature_dim"], frozen: bool = False,
                 seed: int = DEFAULTS["au_init_seed"]) -> None:
        super().__init__()
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"au_fusion_type must be one of {FUSION_TYPES}, got {fusion_type!r}")
        if int(num_tokens) < 1:
            raise ValueError(f"num_au_query_token must be at least 1, got {num_tokens!r}")
        if int(feature_dim) < 1:
            raise ValueError(f"au_feature_dim must be positive, got {feature_dim!r}")
        self.num_tokens = int(num_tokens)
        self.fusion_type = fusion_type
        self.feature_dim = int(feature_dim)
        # Built on the CPU from the seed alone; fork_rng restores the global CPU RNG on exit, and seeding only
        # the CPU generator leaves the CUDA ones alone.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            self.au_attention_mlp = nn.Linear(self.feature_dim, self.num_tokens, bias=False, device="cpu") \
                if fusion_type == "attention" else None
            self.au_llama_proj = nn.Linear(self.feature_dim, llm_hidden_size, device="cpu")
        for param in self.parameters():
            param.requires_grad = not frozen

    def forward(self, aus: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(pooled [B, n, D], tokens [B, n, llm_hidden])``."""
        if aus.shape[-1] != self.feature_dim:
            raise ValueError(f"AU features are {aus.shape[-1]}-d, the AU branch takes au_feature_dim "
                             f"{self.feature_dim}: set model.au_feature_dim to the CLIP model's width")
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

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Runs on every ``load_state_dict`` of the model, before the branch's layers load their keys."""
        for key in DROPPED_KEYS:
            state_dict.pop(prefix + key, None)
        check_checkpoint(self, {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)},
                         prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _config_key(name: str, axis: int) -> str:
    """The config key that decides one axis of one of the branch's weights."""
    if name.startswith("au_attention_mlp"):
        return "num_au_query_token" if axis == 0 else "au_feature_dim"
    return "LLM hidden size (llama_model)" if axis == 0 else "au_feature_dim"


def check_checkpoint(branch: AUProjector, saved: Dict[str, Any], prefix: str = "au_branch.") -> None:
    """Refuse a checkpoint whose AU branch (``saved``: its keys without ``prefix``) was built with another AU
    configuration. A checkpoint without AU keys (a released one, or a frozen branch) is fine."""
    if not saved:
        return
    own = dict(branch.state_dict())
    for name, value in saved.items():
        if name not in own:
            hint = ("the checkpoint was trained with au_fusion_type: attention; set model.au_fusion_type to match"
                    if name.startswith("au_attention_mlp") else "it is not part of this AU branch")
            raise ValueError(f"checkpoint key {prefix}{name} {list(value.shape)} does not fit this model's AU branch "
                             f"(au_fusion_type: {branch.fusion_type}): {hint}")
        if tuple(value.shape) != tuple(own[name].shape):
            axis = next(i for i, (a, b) in enumerate(zip(value.shape, own[name].shape)) if a != b) \
                if len(value.shape) == len(own[name].shape) else 0
            raise ValueError(f"checkpoint key {prefix}{name} has shape {list(value.shape)}, this model's is "
                             f"{list(own[name].shape)}: the checkpoint's {_config_key(name, axis)} differs from "
                             f"the config's ({value.shape[axis]} vs {own[name].shape[axis]})")
    absent = [name for name in own if name not in saved]
    if absent:
        hint = ("the checkpoint was trained with au_fusion_type: mean; set model.au_fusion_type to match"
                if any(n.startswith("au_attention_mlp") for n in absent) else "the checkpoint is incomplete")
        raise ValueError(f"checkpoint has an AU branch without {', '.join(prefix + n for n in absent)} "
                         f"(this model: au_fusion_type {branch.fusion_type}, shapes "
                         f"{[list(own[n].shape) for n in absent]}): {hint}")


class AUBranchMixin:
    """What ``AffectGPT`` gains (the patch puts this class first among its bases).

    Relies on AffectGPT's ``llama_tokenizer``, ``llama_model`` and ``maybe_autocast``.
    """

    def init_au_branch(self, num_au_query_token: int = DEFAULTS["num_au_query_token"],
                       au_fusion_type: str = DEFAULTS["au_fusion_type"],
                       frozen_au_proj: bool = DEFAULTS["frozen_au_proj"],
                       au_feature_dim: int = DEFAULTS["au_feature_dim"],
                       au_init_seed: int = DEFAULTS["au_init_seed"]) -> None:
        """Called by ``from_config`` right after the model is built, before its checkpoints are loaded."""
        import config  # AffectGPT's own config.py (scripts run from the code root)

        self.num_au_query_token = int(num_au_query_token)
        self.AU_PATCH_TOKEN_ID = self.llama_tokenizer.get_vocab()[config.DEFAULT_AU_PATCH_TOKEN]
        self.au_branch = AUProjector(self.llama_model.config.hidden_size, self.num_au_query_token,
                                     au_fusion_type, feature_dim=int(au_feature_dim), frozen=bool(frozen_au_proj),
                                     seed=int(au_init_seed))

    def encode_au_merge(self, aus: torch.Tensor, au_masks: Optional[torch.Tensor] = None):
        """``aus`` [B, T, D] (+ ``au_masks`` [B, T]) → ``(pooled, tokens [B, num_au_query_token, hidden])``."""
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
        """The sample's ``au`` [T, D] (+ ``au_mask``) → ``(pooled, tokens)``; ``(None, None)`` without AU."""
        au = sample_data.get("au") if sample_data is not None else None
        if au is None:
            return None, None
        mask = sample_data.get("au_mask")
        au = au.unsqueeze(0).to(self.device)
        mask = None if mask is None else mask.unsqueeze(0).to(self.device)
        return self.model.encode_au_merge(au, mask)

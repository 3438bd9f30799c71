"""The option groups several ``au-agent`` commands share, defined once: the agent, the engine (Ray), the
features, the AU caption and ``--min-confidence``; and the objects each group's values describe.

Light on import (argparse and ``au_core`` only): every library is imported where an option's default or a
value is first needed, so a command pays only for the groups it uses.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Callable, Optional

from au_core import argtypes
from au_core.errors import AUAgentError

if TYPE_CHECKING:
    from affectgpt_patch.captions.caption import CaptionSettings
    from affectgpt_patch.engines.ray_engine import RayOptions
    from affectgpt_patch.features.clip_encoder import DeferredClipEncoder
    from affectgpt_patch.features.store import FeatureSettings

#: What a command's ``add_arguments(parser)`` returns: it runs the parsed command line, returns the exit status.
Handler = Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------------------- agent options


def add_min_confidence_argument(p: argparse._ActionsContainer) -> None:
    """A command's own option, or one of the feature group's."""
    from au_core.contract import DEFAULT_MIN_CONFIDENCE

    p.add_argument("--min-confidence", type=argtypes.float_range(0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE,
                   help="OpenFace confidence below which a frame is invalid (0 to 1; default %(default)s)")


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that generates descriptions shares."""
    from affectgpt_patch.agent.config import BACKENDS, AgentConfig

    g = p.add_argument_group("agent")
    g.add_argument("--agent", help="agent folder (au-agent train output, checkpoint-best, an adapter or a "
                                   "merged model)")
    g.add_argument("--backend", choices=list(BACKENDS),
                   help="default: hf with --agent, else rules")
    g.add_argument("--base-model", help="base model folder or hub id (overrides the agent card)")
    g.add_argument("--api-base", help="OpenAI-compatible server URL for --backend openai, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--api-model", help="model name on that server (default: its first model)")
    g.add_argument("--batch-size", type=argtypes.int_range(1), default=argtypes.default_of(AgentConfig, "batch_size"),
                   help="descriptions per model batch (default %(default)s)")
    g.add_argument("--max-new-tokens", type=argtypes.int_range(1),
                   default=argtypes.default_of(AgentConfig, "max_new_tokens"),
                   help="longest description, in tokens (default %(default)s)")
    g.add_argument("--device", type=argtypes.device, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    g.add_argument("--cache-dir", help="description cache folder (default: $AU_AGENT_CACHE_DIR or ~/.cache/au-agent)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write cached descriptions")


def agent_from_args(a: argparse.Namespace, lazy: bool = False):
    """The agent the options describe; ``lazy``: its model loads on the first description not in the cache."""
    from affectgpt_patch.agent import agent_config, create_au_agent

    backend = a.backend or ("hf" if a.agent else "rules")
    if backend != "rules" and backend != "openai" and not (a.agent or a.base_model):
        raise AUAgentError(f"--backend {backend} needs --agent DIR (or --base-model)")
    if backend == "openai" and not a.api_base:
        raise AUAgentError("--backend openai needs --api-base URL (e.g. http://127.0.0.1:8000/v1)")
    options = dict(backend=backend, base_model=a.base_model, api_base=a.api_base, api_model=a.api_model,
                   batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, device=a.device,
                   cache_dir=a.cache_dir, use_cache=not a.no_cache)
    if getattr(a, "engine", "local") == "ray":
        from affectgpt_patch.engines.ray_engine import RayAgent

        return RayAgent(agent_config(a.agent, **options), ray_options_from_args(a))
    return create_au_agent(a.agent, lazy=lazy, **options)


# ------------------------------------------------------------------------------------------ engine options


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine ray`` for the commands that run over a corpus (see affectgpt_patch/engines/ray_engine.py)."""
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray Data job on a Ray cluster (pip install 'au-agent[ray]')")
    g.add_argument("--ray-address", help="auto, ray://host:10001 or host:port (default: $RAY_ADDRESS, else a "
                                         "Ray started on this machine)")
    g.add_argument("--ray-actors", type=argtypes.int_range(1),
                   help="agent actors (default: one per GPU of the cluster, else one per 2 CPUs)")


def ray_options_from_args(a: argparse.Namespace) -> "RayOptions":
    from affectgpt_patch.engines.ray_engine import RayOptions

    return RayOptions(address=a.ray_address, describe_actors=a.ray_actors, progress=not a.quiet)


# ------------------------------------------------------------------------------------------ feature options


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    from affectgpt_patch.features.clip_encoder import DEFAULT_CLIP
    from affectgpt_patch.features.store import FeatureSettings

    g = p.add_argument_group("features")
    g.add_argument("--frames", type=argtypes.int_range(1), default=argtypes.default_of(FeatureSettings, "frames"),
                   help="T, the number of frames per video (AffectGPT's n_frms; default %(default)s)")
    g.add_argument("--sampling", choices=["uniform", "peaks", "all"],
                   default=argtypes.default_of(FeatureSettings, "sampling"),
                   help="uniform: AffectGPT's frame indices; peaks: MER-Factory's emotion peaks; all: every frame "
                        "(default %(default)s)")
    g.add_argument("--clip-model", default=DEFAULT_CLIP,
                   help="CLIP model name or a local .pt file (default %(default)s)")
    g.add_argument("--clip-device", type=argtypes.device, help="device for CLIP (default: cuda when available)")
    add_min_confidence_argument(g)


def add_caption_arguments(p: argparse.ArgumentParser) -> None:
    from affectgpt_patch.captions.caption import CaptionSettings

    g = p.add_argument_group("AU caption (the text route into AffectGPT's prompt)")
    g.add_argument("--au-text-max-tokens", type=argtypes.int_range(1),
                   default=argtypes.default_of(CaptionSettings, "au_text_max_tokens"),
                   help="caption budget in tokens of AffectGPT's LLM tokenizer (default %(default)s)")
    g.add_argument("--au-text-tokenizer", help="AffectGPT's LLM folder, whose tokenizer counts the budget "
                                               "(default: the AU Agent's base model, the same Qwen2.5 tokenizer)")
    g.add_argument("--no-au-caption", action="store_true", help="write features only, no caption")


def caption_settings_from_args(a: argparse.Namespace) -> Optional["CaptionSettings"]:
    from affectgpt_patch.captions.caption import CaptionSettings

    return None if a.no_au_caption else CaptionSettings(a.au_text_max_tokens, a.au_text_tokenizer)


def encoder_from_args(a: argparse.Namespace) -> "DeferredClipEncoder":
    """CLIP as the options describe it, loaded on the first text not in the feature cache."""
    from affectgpt_patch.features.clip_encoder import DeferredClipEncoder

    return DeferredClipEncoder(a.clip_model, device=a.clip_device, cache_dir=a.cache_dir, use_cache=not a.no_cache)


def settings_from_args(a: argparse.Namespace) -> "FeatureSettings":
    from affectgpt_patch.features.store import FeatureSettings

    return FeatureSettings(frames=a.frames, sampling=a.sampling, min_confidence=a.min_confidence)


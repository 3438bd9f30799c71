"""``--engine ray``: ``precompute``, ``describe`` and ``eval`` on a Ray cluster, with the bytes of one machine.

One Ray Data job, built from the functions the local engine runs (nothing here selects frames, builds a prompt
or assembles a feature):

    list the CSVs, skip finished videos            (precompute.split_done, on the driver)
      → plan each video                            Ray tasks: features.plan_csv (fingerprint, read, plan)
      → describe the corpus' distinct AU inputs    actor pool, each actor loads the agent once (1 GPU per
                                                   actor where the cluster has GPUs); or ray.data.llm's vLLM
                                                   engine for ``--backend vllm``
      → CLIP-encode + write each video             actor pool, each actor loads CLIP once;
                                                   precompute.write_plans (.npy, then .json, atomically)

Identical AU inputs are generated once per job (the inputs are deduplicated on the driver before the
describe stage). Each actor uses the SQLite caches of its own node (``--cache-dir`` or
``~/.cache/au-agent`` there): SQLite is never shared over a network filesystem. The output folder must be
shared storage that every node can write; resuming, ``failures.jsonl`` and ``manifest.jsonl`` work exactly
as with the local engine, so a killed job rerun gives the same bytes.

This module joins the cluster and runs the describe stage (also what ``describe`` and ``eval`` use, as a
:class:`RayAgent`); the precompute job around it is :mod:`.ray_precompute`. Ray is imported only by the functions
of these modules, never at import time.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from au_core import contract
from au_core.errors import AUAgentError

from ..agent.config import AgentConfig, fingerprint

log = logging.getLogger(__name__)

INSTALL_HINT = ("--engine ray needs Ray: pip install 'au-agent[ray]' (for --backend vllm also "
                "'ray[data,llm]' and 'au-agent[vllm]')")
AGENT_STATS = ("hits", "misses", "generated")


@dataclass
class RayOptions:
    address: Optional[str] = None  # None: $RAY_ADDRESS, else a Ray started on this machine; "auto"; "ray://host:10001"
    describe_actors: Optional[int] = None  # default: one per GPU of the cluster, else one per 2 CPUs
    clip_actors: int = 1
    inputs_per_batch: int = 512  # AU inputs per describe call of an actor
    videos_per_batch: int = 64  # videos planned, or encoded and written, per call
    progress: bool = True


# ---------------------------------------------------------------------------------------------- the cluster


def import_ray():
    """Ray and Ray Data, or the one-line error that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise AUAgentError(INSTALL_HINT) from None
    return ray


def connect(opts: RayOptions) -> bool:
    """Join (or start) the cluster; True when this call started the connection (and should end it)."""
    ray = import_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = opts.progress
    if not opts.progress:
        logging.getLogger("ray").setLevel(logging.WARNING)
        ctx.enable_operator_progress_bars = False
    if ray.is_initialized():
        return False
    try:
        ray.init(address=opts.address, include_dashboard=False, log_to_driver=opts.progress,
                 logging_level=logging.INFO if opts.progress else logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise AUAgentError(f"cannot reach the Ray cluster ({str(e).splitlines()[0][:200]})",
                           opts.address or "local") from None
    return True


def _describe_resources(config: AgentConfig) -> Dict[str, float]:
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus and config.backend == "hf" and (config.device is None or config.device.startswith("cuda")):
        return {"num_gpus": 1}
    return {"num_cpus": 1}


def _pool_size(requested: Optional[int], resources: Mapping[str, float]) -> int:
    import ray

    if requested:
        return requested
    total = ray.cluster_resources()
    if "num_gpus" in resources:
        return max(1, int(total.get("GPU", 1)))
    return max(1, int(total.get("CPU", 1)) // 2)


def _unwrap(error: BaseException) -> BaseException:
    """The AUAgentError behind a Ray task failure, so the user reads one line, not a remote traceback."""
    seen = error
    while seen is not None:
        if isinstance(seen, AUAgentError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return error


# -------------------------------------------------------------------------------------------- describing


class _Describer:
    """One agent per actor; describes a batch of distinct contract inputs (cached per node)."""

    def __init__(self, config: AgentConfig, batch_size: int) -> None:
        from ..agent import AUAgent

        self.agent = AUAgent(config)
        self.batch_size = batch_size

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        inputs = [str(s) for s in batch["input"]]
        before = self.agent.cache_stats()
        texts = self.agent.describe_inputs(inputs, batch_size=self.batch_size)
        after = self.agent.cache_stats()
        out = {"input": np.array(inputs, dtype=object), "description": np.array(texts, dtype=object)}
        for key in AGENT_STATS:  # the batch's counts on its first row, so a sum over rows is the job's count
            counts = np.zeros(len(inputs), dtype=np.int64)
            counts[0] = after[key] - before[key]
            out[key] = counts
        return out


def vllm_processor_settings(config: AgentConfig, stop_ids: Sequence[int], concurrency: int = 1,
                            batch_size: int = 64) -> Tuple[Dict[str, Any], Dict[str, Any], Optional[str]]:
    """What ``ray.data.llm`` needs for this agent: the ``vLLMEngineProcessorConfig`` arguments, each row's
    ``sampling_params`` and the row's ``model`` (the adapter folder; None for a merged model).

    Prompts arrive as the contract's token ids (no chat template, no tokenizer stage) and decoding is greedy,
    with the same engine and sampling arguments as the local vLLM backend, so the text is the same."""
    from ..agent.vllm_backend import llm_kwargs, sampling_kwargs

    engine = llm_kwargs(config)
    model = engine.pop("model")
    engine.pop("tokenizer", None)
    processor = {
        "model_source": model,
        "engine_kwargs": engine,
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,  # vLLM's own detokenized text, as in the local vllm backend
        "batch_size": batch_size,
        "concurrency": concurrency,
    }
    return processor, sampling_kwargs(config, stop_ids), (str(Path(config.lora_weights).resolve())
                                                          if config.lora_weights else None)


def vllm_request(input_str: str, tokenizer: Any, sampling: Mapping[str, Any], lora: Optional[str]) -> Dict[str, Any]:
    """One row for the vLLM engine stage: the contract prompt's token ids (the ids training saw), the greedy
    sampling parameters and, for an unmerged agent, the adapter as the row's model."""
    from ..agent.prompts import encode_prompt

    request = {"input": input_str, "tokenized_prompt": encode_prompt(tokenizer, input_str),
               "sampling_params": dict(sampling)}
    if lora:
        request["model"] = lora
    return request


_TOKENIZERS: Dict[str, Any] = {}


def _tokenizer(model: str) -> Any:
    if model not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[model] = AutoTokenizer.from_pretrained(model)
    return _TOKENIZERS[model]


def _describe_with_vllm(ds: Any, config: AgentConfig, opts: RayOptions) -> Any:
    """The vLLM engine processor of ``ray.data.llm`` over rows ``{"input"}`` → rows ``{"input", "description"}``."""
    try:
        import vllm  # noqa: F401 - the engine stage needs it on the GPU nodes; fail here, not in an actor
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError:
        raise AUAgentError("--engine ray --backend vllm needs ray[data,llm] and vLLM on the GPU nodes: "
                           "pip install 'ray[data,llm]' 'au-agent[vllm]'") from None
    from ..agent.prompts import stop_token_ids

    stop_ids = stop_token_ids(_tokenizer(config.base_model))
    actors = _pool_size(opts.describe_actors, {"num_gpus": 1})
    settings, sampling, lora = vllm_processor_settings(config, stop_ids, actors, opts.inputs_per_batch)
    base = config.base_model

    def preprocess(row: Dict[str, Any]) -> Dict[str, Any]:
        return vllm_request(row["input"], _tokenizer(base), sampling, lora)

    def postprocess(row: Dict[str, Any]) -> Dict[str, Any]:
        return {"input": row["input"], "description": row["generated_text"].strip(), "hits": 0, "misses": 1,
                "generated": 1}

    processor = build_processor(vLLMEngineProcessorConfig(**settings), preprocess=preprocess, postprocess=postprocess)
    return processor(ds)


def describe_distinct(inputs: Sequence[str], config: AgentConfig, opts: RayOptions,
                      batch_size: Optional[int] = None) -> Tuple[Dict[str, str], Dict[str, int]]:
    """Describe distinct contract inputs on the cluster: ``{input: description}`` and the agent's counts."""
    import ray

    stats = dict.fromkeys(AGENT_STATS, 0)
    if not inputs:
        return {}, stats
    known: Dict[str, str] = {}
    # By length first, as AUAgent._generate orders them: equal lengths are equal prompt lengths, so each
    # block fills the backend's length buckets to whole batches.
    todo = sorted(inputs, key=lambda s: (len(s), s))
    use_vllm = config.backend == "vllm"
    if use_vllm:  # the contract's neutral text, never generated (AUAgent.describe_inputs does the same)
        known = {s: contract.NEUTRAL_DESCRIPTION for s in todo if contract.is_neutral(s)}
        todo = [s for s in todo if s not in known]
    if use_vllm and config.use_cache and todo:  # vLLM reads no cache: the driver node's cache serves it
        from ..agent import DESCRIPTION_CACHE
        from ..agent.cache import SQLiteCache, default_cache_dir

        cache = SQLiteCache(Path(config.cache_dir or default_cache_dir()) / DESCRIPTION_CACHE)
        fp = fingerprint(config)
        cached = {k: v.decode("utf-8") for k, v in cache.get_many(fp, todo).items()}
        stats["hits"] = len(cached)
        known.update(cached)
        todo = [s for s in todo if s not in known]
    if todo:
        resources = {"num_gpus": 1} if use_vllm else _describe_resources(config)
        actors = _pool_size(opts.describe_actors, resources)
        # At least two blocks per actor, so every actor of the pool gets work.
        blocks = min(len(todo), max(2 * actors, len(todo) // opts.inputs_per_batch + 1))
        ds = ray.data.from_items([{"input": s} for s in todo], override_num_blocks=blocks)
        if use_vllm:
            described = _describe_with_vllm(ds, config, opts)
        else:
            described = ds.map_batches(_Describer, fn_constructor_kwargs={
                "config": config, "batch_size": batch_size or config.batch_size},
                batch_size=opts.inputs_per_batch, compute=ray.data.ActorPoolStrategy(size=actors), **resources)
        fresh: Dict[str, str] = {}
        try:
            for row in described.iter_rows():
                fresh[str(row["input"])] = str(row["description"])
                for key in AGENT_STATS:
                    stats[key] += int(row[key])
        except Exception as e:  # noqa: BLE001 - a Ray task failure: show the user's error when there is one
            raise _unwrap(e) from None
        if use_vllm and config.use_cache:
            cache.put_many(fp, {k: v.encode("utf-8") for k, v in fresh.items()})
        known.update(fresh)
    missing = [s for s in inputs if s not in known]
    if missing:
        raise AUAgentError(f"the Ray job returned no description for {len(missing)} inputs, e.g. {missing[0]!r}")
    return known, stats


class RayAgent:
    """What ``describe`` and ``eval`` use of an :class:`~.agent.AUAgent` (``describe_inputs``, ``cache_stats``,
    ``fingerprint``, ``config``), with the generation done by a Ray job: the same texts, on a cluster."""

    def __init__(self, config: AgentConfig, opts: RayOptions) -> None:
        self.config = config
        self.opts = opts
        self.fingerprint = fingerprint(config)
        self._stats = collections.Counter(dict.fromkeys(AGENT_STATS, 0))
        self._owns_connection = connect(opts)

    def describe_inputs(self, inputs: Sequence[str], batch_size: Optional[int] = None,
                        progress: bool = False) -> List[str]:
        table, stats = describe_distinct(sorted(set(inputs)), self.config, self.opts, batch_size)
        self._stats.update(stats)
        return [table[s] for s in inputs]

    def cache_stats(self) -> Dict[str, int]:
        return dict(self._stats)

    def close(self) -> None:
        if self._owns_connection:
            import ray

            ray.shutdown()
            self._owns_connection = False

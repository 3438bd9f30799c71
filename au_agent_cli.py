"""``au-agent``: one command over the three stages. Each subcommand parses arguments and calls one library
function; user errors (:class:`au_core.errors.AUAgentError`) become one line on stderr and exit status 1.

    au-agent prepare-data     stage 1  MER-Factory outputs → LLaMA-Factory dataset      (data_prep.build)
    au-agent train            stage 2  render a recipe, run llamafactory-cli, agent card (llamafactory_configs.train)
    au-agent test-agent       stage 2  print descriptions for FACS test cases           (affectgpt_patch.agent)
    au-agent describe         stage 3  OpenFace CSVs → one description per frame         (affectgpt_patch.agent.describe)
    au-agent precompute       stage 3  OpenFace CSVs → AU features [T, D] per video      (affectgpt_patch.features.precompute)
    au-agent eval             stage 3  BLEU / ROUGE-L / AU fidelity report               (affectgpt_patch.quality.evaluate)
    au-agent inspect          stage 3  one HTML page: AU heatmaps, chosen frames, texts  (affectgpt_patch.quality.inspect_page)
    au-agent captions         stage 3  AU captions → the AU fork's nonverbal_json file   (affectgpt_patch.captions.captions_file)
    au-agent patch-affectgpt  stage 3  add the AU modality to an AffectGPT checkout      (affectgpt_patch.patcher)
    au-agent smoke-affectgpt  stage 3  train + answer a patched copy for a few CPU steps  (affectgpt_patch.smoke)
    au-agent compare-affectgpt stage 3 one clip answered without AU / caption / features (affectgpt_patch.smoke)
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from au_core import argtypes
from au_core.errors import AUAgentError
from au_core.termination import EXIT_STATUS as TERMINATED_STATUS
from au_core.termination import Terminated, sigterm_as_interrupt

log = logging.getLogger("au_agent")

Handler = Callable[[argparse.Namespace], int]
_SUBCOMMANDS: List = []  # (name, help, add_arguments)
PIPELINE_ORDER = ["prepare-data", "train", "test-agent", "describe", "precompute", "eval", "inspect", "captions",
                  "patch-affectgpt", "smoke-affectgpt", "compare-affectgpt"]
_HANDLERS: Dict[str, Handler] = {}


def subcommand(name: str, help: str):
    """Register ``add_arguments(parser)`` and its handler under ``name``."""

    def wrap(add_arguments: Callable[[argparse.ArgumentParser], Handler]):
        _SUBCOMMANDS.append((name, help, add_arguments))
        return add_arguments

    return wrap


# ------------------------------------------------------------------------------------------ prepare-data


@subcommand("prepare-data", "MER-Factory outputs → LLaMA-Factory instruction dataset")
def _prepare_data(p: argparse.ArgumentParser) -> Handler:
    from au_core import mer_factory
    from data_prep.build import PrepareOptions

    p.add_argument("--mer-factory-output", type=Path, help="MER-Factory output folder (searched recursively)")
    p.add_argument("--openface-dir", type=Path, help="OpenFace CSVs ({video}.csv) to cross-check AU values against")
    p.add_argument("--import-alpaca", type=Path, nargs="+", default=[], metavar="FILE",
                   help="existing Alpaca JSON/JSONL datasets to re-express in the prompt contract")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--val-ratio", type=argtypes.float_range(0.0, 1.0, high_open=True),
                   default=argtypes.default_of(PrepareOptions, "val_ratio"),
                   help="share of videos in the validation split (default %(default)s)")
    p.add_argument("--seed", type=int, default=argtypes.default_of(PrepareOptions, "seed"),
                   help="seed of the split and of --max-samples (default %(default)s)")
    p.add_argument("--max-samples", type=argtypes.int_range(1), help="keep at most this many records (a random sample)")
    p.add_argument("--text-key", default=argtypes.default_of(PrepareOptions, "text_key"),
                   choices=mer_factory.TEXT_KEYS,
                   help="which per-frame text to train on (per-frame MER-Factory variant; default %(default)s)")
    p.add_argument("--keep-temporal", action="store_true",
                   help="keep descriptions that refer to other frames or to time (dropped by default)")
    add_min_confidence_argument(p)
    p.add_argument("--min-fidelity", type=argtypes.float_range(0.0, 1.0),
                   help="drop records whose description's AU fidelity F1 against its input is below this")

    def run(a: argparse.Namespace) -> int:
        from data_prep.build import PrepareOptions, prepare_dataset

        stats = prepare_dataset(PrepareOptions(
            out=a.out, mer_factory_output=a.mer_factory_output, openface_dir=a.openface_dir,
            import_alpaca=a.import_alpaca, val_ratio=a.val_ratio, seed=a.seed, max_samples=a.max_samples,
            text_key=a.text_key, keep_temporal=a.keep_temporal, min_confidence=a.min_confidence,
            min_fidelity=a.min_fidelity, progress=not a.quiet))
        splits = stats["splits"]
        log.info("%d records kept of %d read; %s", stats["kept"], stats["records_read"],
                 ", ".join(f"{k}: {v['records']} records / {v['groups']} videos" for k, v in splits.items()))
        for reason, n in stats["dropped"].items():
            log.info("  dropped %6d  %s", n, reason)
        log.info("dataset written to %s (see stats.md)", a.out)
        return 0

    return run


# ------------------------------------------------------------------------------------- agent options


def add_min_confidence_argument(p: argparse.ArgumentParser) -> None:
    from au_core.contract import DEFAULT_MIN_CONFIDENCE

    p.add_argument("--min-confidence", type=argtypes.float_range(0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE,
                   help="OpenFace confidence below which a frame is invalid (0 to 1; default %(default)s)")


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that generates descriptions shares."""
    from affectgpt_patch.agent.config import AgentConfig

    g = p.add_argument_group("agent")
    g.add_argument("--agent", help="agent folder (au-agent train output, checkpoint-best, an adapter or a merged model)")
    g.add_argument("--backend", choices=["hf", "vllm", "openai", "rules"],
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


def ray_options_from_args(a: argparse.Namespace):
    from affectgpt_patch.engines.ray_engine import RayOptions

    return RayOptions(address=a.ray_address, describe_actors=a.ray_actors, progress=not a.quiet)


# ------------------------------------------------------------------------------------------------ describe


@subcommand("describe", "OpenFace CSVs → one description per frame (JSON lines)")
def _describe(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("csv", nargs="+", type=Path, help="OpenFace CSV files or folders of them")
    p.add_argument("--out", type=Path, help="JSONL file to write (default: print to stdout)")
    add_min_confidence_argument(p)
    add_agent_arguments(p)
    add_engine_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.agent.describe import describe_csvs

        agent = agent_from_args(a, lazy=True)
        try:
            lines, summary = describe_csvs(a.csv, agent, a.out, a.batch_size, a.min_confidence, progress=not a.quiet)
        finally:
            agent.close()
        if a.out is None:
            sys.stdout.write("".join(line + "\n" for line in lines))
        log.info("%(videos)d videos, %(frames)d frames (%(masked)d masked), %(distinct_inputs)d distinct AU "
                 "inputs; cache %(hits)d hits / %(misses)d misses, %(generated)d generated", summary)
        if a.out is not None:
            log.info("written to %s", a.out)
        return 0

    return run


# ---------------------------------------------------------------------------------------------- precompute


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


def caption_settings_from_args(a: argparse.Namespace):
    from affectgpt_patch.captions.caption import CaptionSettings

    return None if a.no_au_caption else CaptionSettings(a.au_text_max_tokens, a.au_text_tokenizer)


def encoder_from_args(a: argparse.Namespace):
    """CLIP as the options describe it, loaded on the first text not in the feature cache."""
    from affectgpt_patch.features.clip_encoder import DeferredClipEncoder

    return DeferredClipEncoder(a.clip_model, device=a.clip_device, cache_dir=a.cache_dir, use_cache=not a.no_cache)


def settings_from_args(a: argparse.Namespace):
    from affectgpt_patch.features.store import FeatureSettings

    return FeatureSettings(frames=a.frames, sampling=a.sampling, min_confidence=a.min_confidence)


@subcommand("precompute", "OpenFace CSVs → AU features {name}.npy [T, D] + {name}.json, resumable")
def _precompute(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.features.precompute import PrecomputeOptions

    p.add_argument("--openface-dir", type=Path, required=True, help="folder of OpenFace {name}.csv files")
    p.add_argument("--out", type=Path, required=True, help="feature folder (resumed when it has finished videos)")
    p.add_argument("--shard", default="{}/{}".format(*argtypes.default_of(PrecomputeOptions, "shard")),
                   help="i/N: process the i-th of N deterministic shards (0-based; default %(default)s)")
    p.add_argument("--keep-going", action="store_true", help="exit 0 even when some videos failed")
    p.add_argument("--chunk-videos", type=argtypes.int_range(1),
                   default=argtypes.default_of(PrecomputeOptions, "chunk_videos"),
                   help="videos described together (default %(default)s)")
    add_feature_arguments(p)
    add_caption_arguments(p)
    add_agent_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(batch_size=argtypes.default_of(PrecomputeOptions, "batch_size"))

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.features.precompute import PrecomputeOptions, parse_shard, precompute

        opts = PrecomputeOptions(openface_dir=a.openface_dir, out=a.out, settings=settings_from_args(a),
                                 shard=parse_shard(a.shard), batch_size=a.batch_size, chunk_videos=a.chunk_videos,
                                 progress=not a.quiet, caption=caption_settings_from_args(a))
        if a.engine == "ray":
            summary = precompute_on_ray_from_args(a, opts)
        else:
            summary = precompute(opts, agent_from_args(a, lazy=True), encoder_from_args(a))
        log.info("%(videos)d videos: %(done)d done, %(skipped)d skipped (already done), %(failed)d failed, "
                 "%(redone)d redone (stale records); "
                 "descriptions: %(agent_hits)d cached, %(agent_generated)d generated; %(clip_encoded)d texts "
                 "encoded", summary)
        for reason, n in summary["failed_by_reason"].items():
            log.warning("  failed %5d  %s", n, reason)
        if summary["failed"] and not a.keep_going:
            print(f"au-agent precompute: error: {summary['failed']} videos failed (listed in "
                  f"{a.out / 'failures.jsonl'}); rerun with --keep-going to accept that", file=sys.stderr)
            return 1
        return 0

    return run


def precompute_on_ray_from_args(a: argparse.Namespace, opts):
    from affectgpt_patch.engines.ray_engine import import_ray
    from affectgpt_patch.engines.ray_precompute import ClipSpec, precompute_on_ray
    from affectgpt_patch.features.precompute import corpus_names

    import_ray()  # the install hint before anything else is checked
    corpus_names(opts)  # the corpus's errors before a cluster starts
    agent = agent_from_args(a)  # a RayAgent: the agent's configuration, checked here, loaded by the actors
    try:
        return precompute_on_ray(opts, agent.config, ClipSpec(a.clip_model, a.clip_device, a.cache_dir,
                                                              not a.no_cache), ray_options_from_args(a))
    finally:
        agent.close()


# --------------------------------------------------------------------------------------------------- train


@subcommand("train", "train the AU Agent with a LLaMA-Factory recipe → checkpoint-best/ + agent_card.json")
def _train(p: argparse.ArgumentParser) -> Handler:
    from llamafactory_configs.recipe import training_recipe_names
    from llamafactory_configs.train import TrainOptions

    p.add_argument("--recipe", default=argtypes.default_of(TrainOptions, "recipe"),
                   help=f"recipe name in llamafactory_configs/ ({', '.join(training_recipe_names())}) or a YAML "
                        "file; default %(default)s")
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder written by prepare-data")
    p.add_argument("--base-model", help="base model folder or hub id (default: the recipe's)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder; resumed from its last checkpoint when it has one")
    p.add_argument("--overwrite", action="store_true", help="delete the previous run in --out and start over")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="recipe overrides, e.g. num_train_epochs=5 per_device_train_batch_size=2")

    def run(a: argparse.Namespace) -> int:
        from llamafactory_configs.train import TrainOptions, train_agent

        card = train_agent(TrainOptions(dataset=a.dataset, out=a.out, recipe=a.recipe, base_model=a.base_model,
                                        overwrite=a.overwrite, overrides=a.overrides, echo=not a.quiet))
        if card is not None:
            log.info("agent written to %s (load it with --agent %s)", a.out / "agent_card.json", a.out)
        return 0

    return run


# ---------------------------------------------------------------------------------------------- test-agent


@subcommand("test-agent", "print the agent's descriptions of FACS test cases (basic emotions) and your own")
def _test_agent(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--cases", type=Path, help="more cases: JSON ({name: {AU06: 2.1, ...}}) or CSV (AU columns)")
    p.add_argument("--no-builtin", action="store_true", help="run only the cases of --cases")
    add_agent_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.quality.facs_cases import BUILTIN_CASES, format_report, load_cases

        cases = ([] if a.no_builtin else list(BUILTIN_CASES)) + (load_cases(a.cases) if a.cases else [])
        if not cases:
            raise AUAgentError("no cases to run: --no-builtin needs --cases FILE")
        agent = agent_from_args(a)
        descriptions = agent.batch_generate_descriptions([c.au_values for c in cases], a.batch_size)
        sys.stdout.write(format_report(cases, descriptions))
        return 0

    return run


# ------------------------------------------------------------------------------------------------ captions


@subcommand("captions", "the AU captions of a precompute folder → nonverbal_json {dataset: {sample: {caption}}}")
def _captions(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.features.source import SourceSettings

    p.add_argument("--features", type=Path, required=True, help="an `au-agent precompute` output folder")
    p.add_argument("--dataset-name", required=True, help="the dataset key, e.g. MERCaptionPlus or MER2023")
    p.add_argument("--out", type=Path, required=True, help="captions JSON file (merged into when it exists)")
    p.add_argument("--max-missing", type=float, default=argtypes.default_of(SourceSettings, "au_max_missing"),
                   help="largest fraction of videos without a caption (au_max_missing; default %(default)s)")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.captions.captions_file import write_captions

        summary = write_captions(a.features, a.dataset_name, a.out, a.max_missing)
        log.info("%s: %d captions of %s (%d cut to the budget); %d datasets in the file", a.out,
                 summary["samples"], a.dataset_name, summary["cut"], summary["datasets"])
        return 0

    return run


# ----------------------------------------------------------------------------------------- patch-affectgpt


@subcommand("patch-affectgpt", "add the AU modality to an AffectGPT checkout (idempotent; --check, --revert)")
def _patch_affectgpt(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("path", type=Path, help="the AffectGPT checkout (code under AffectGPT/ or at its root)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show what would change (a diff); write nothing")
    mode.add_argument("--check", action="store_true",
                      help="report each edit's state; exit status 0 only when every edit is applied")
    mode.add_argument("--revert", action="store_true", help="restore every patched file byte for byte")
    g = p.add_argument_group("generated configs",
                             "train_configs/config_with_au_agent.yaml and inference_config_au_agent.yaml")
    g.add_argument("--face-or-frame", help="AU mode (default multiface_audio_face_frame_au_text)")
    g.add_argument("--base-config", help="training config to start from (default: the checkout's released one)")
    g.add_argument("--agent", help="agent folder written by `au-agent train` (au_agent_dir)")
    g.add_argument("--openface-dir", help="OpenFace CSVs {video}.csv (openface_output_dir)")
    g.add_argument("--precomputed-dir", help="`au-agent precompute` output (au_precomputed_dir)")
    g.add_argument("--mer-factory-output", help="per-frame MER-Factory output, for use_au_agent: false")
    g.add_argument("--captions", help="`au-agent captions` output: nonverbal_json of the AU fork's Nonverbal mode")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.patcher import ConfigOptions, apply_patch, check_patch, revert_patch

        if a.revert:
            restored = revert_patch(a.path)
            sys.stdout.write("".join(f"restored {rel}\n" for rel in restored))
            return 0
        if a.check:
            report = check_patch(a.path)
            sys.stdout.write(report.format() + "\n")
            return 0 if report.complete else 1
        options = ConfigOptions(face_or_frame=a.face_or_frame, base_config=a.base_config, agent_dir=a.agent,
                                openface_dir=a.openface_dir, mer_factory_output=a.mer_factory_output,
                                precomputed_dir=a.precomputed_dir, captions_file=a.captions)
        report = apply_patch(a.path, options, dry_run=a.dry_run)
        sys.stdout.write(report.format() + "\n" + report.diff)
        if not a.dry_run:
            log.info("%d files written%s", len(report.changed), "" if report.changed else " (already patched)")
        return 0

    return run


# ----------------------------------------------------------------------------------------- smoke-affectgpt


@subcommand("smoke-affectgpt", "train a patched copy of an AffectGPT checkout for a few steps and answer one "
                               "sample with AU; a table, exit 1 when a check fails")
def _smoke_affectgpt(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.smoke import SmokeOptions

    p.add_argument("path", type=Path, help="the AffectGPT checkout (never modified: a temporary copy is used)")
    p.add_argument("--steps", type=argtypes.int_range(1), default=argtypes.default_of(SmokeOptions, "steps"),
                   help="training steps (default %(default)s)")
    p.add_argument("--config", help="an AU training config of the checkout (default: the one the patcher writes)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy, logs and probes for inspection")
    p.add_argument("--device", type=argtypes.device, default=argtypes.default_of(SmokeOptions, "device"),
                   help="cpu or cuda: the same check with real kernels (default %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. au_fusion_type=mean, num_au_query_token=3, "
                        "frozen_au_proj=true, run.batch_size_train=3 (repeatable)")
    p.add_argument("--clip-width", type=argtypes.int_range(8, 4096),
                   default=argtypes.default_of(SmokeOptions, "clip_width"),
                   help="AU feature width of the tiny CLIP (512 like ViT-B/32, 768 like ViT-L/14; default %(default)s)")
    p.add_argument("--au-route", choices=["features", "text", "both"], default=argtypes.default_of(SmokeOptions,
                                                                                                 "au_route"),
                   help="AU tokens, the AU caption as text, or both (default %(default)s; the AU fork's "
                        "Nonverbal commits always use their caption mode)")
    p.add_argument("--compare", action="store_true", help="also answer one sample without AU, with the AU caption "
                                                          "and with the AU features; print them side by side")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.smoke import run_smoke

        result = run_smoke(SmokeOptions(checkout=a.path, steps=a.steps, config=a.config, keep=a.keep,
                                        device=a.device, overrides=a.overrides, clip_width=a.clip_width,
                                        au_route=a.au_route, compare=a.compare))
        sys.stdout.write(result.format() + "\n")
        return result.exit_code

    return run


@subcommand("compare-affectgpt", "answer one clip through a checkout's own inference without AU, with the AU "
                                 "caption and with the AU features; print them side by side with the caption")
def _compare_affectgpt(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.smoke.clip_compare import add_arguments

    return add_arguments(p)


# ---------------------------------------------------------------------------------------------------- eval


@subcommand("eval", "BLEU / ROUGE-L / AU fidelity of an agent on a dataset split, beside its teacher and the rules")
def _eval(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--dataset", type=Path, required=True, help="an Alpaca split written by prepare-data (val.json)")
    p.add_argument("--out", type=Path, required=True,
                   help="report folder: report.md, report.json, predictions.jsonl, au_f1.png, lengths.png")
    p.add_argument("--limit", type=argtypes.int_range(1), help="evaluate the first N records only")
    p.add_argument("--clip-model", help="CLIP model the AU features use (ViT-B/32 or a local .pt file): adds "
                                        "feature similarity to the report")
    add_agent_arguments(p)
    add_engine_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.quality.eval_report import summary_text
        from affectgpt_patch.quality.evaluate import EvalOptions, evaluate, load_split

        opts = EvalOptions(dataset=a.dataset, out=a.out, limit=a.limit, batch_size=a.batch_size,
                           progress=not a.quiet, clip_model=a.clip_model)
        records = load_split(opts.dataset, opts.limit)  # a bad split fails before a model is loaded
        agent = agent_from_args(a)
        try:
            report = evaluate(opts, agent, records)
        finally:
            agent.close()
        print(summary_text(report))
        print(f"report: {a.out / 'report.md'}")
        return 0

    return run


# ------------------------------------------------------------------------------------------------- inspect


@subcommand("inspect", "one self-contained HTML page: AU heatmaps, chosen frames and descriptions of a corpus")
def _inspect(p: argparse.ArgumentParser) -> Handler:
    from affectgpt_patch.quality.inspect_options import SORT_ORDERS, InspectOptions

    p.add_argument("input", type=Path, help="a precompute features folder, a describe .jsonl file or an eval folder")
    p.add_argument("--openface-dir", type=Path, help="OpenFace CSVs {name}.csv, for full AU × frame heatmaps")
    p.add_argument("--out", type=Path, help="HTML file (default: INPUT/report.html for a folder; for a file, INPUT "
                                            "with its extension replaced by .html: run1.jsonl → run1.html). A file "
                                            "there is replaced only when it is an earlier inspect page")
    p.add_argument("--videos", type=int, default=argtypes.default_of(InspectOptions, "videos"),
                   help="videos (eval: records) drawn in detail; the summary covers all (default %(default)s)")
    p.add_argument("--sort", choices=SORT_ORDERS, default=argtypes.default_of(InspectOptions, "sort"),
                   help="order of the videos: most masked / least faithful first, by name, or most active AUs "
                        "first (default %(default)s)")

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.quality.inspect_page import build_report

        out, _ = build_report(InspectOptions(input=a.input, out=a.out, openface_dir=a.openface_dir,
                                             videos=a.videos, sort=a.sort, progress=not a.quiet))
        log.info("page written to %s (open it in any browser)", out)
        return 0

    return run


# ------------------------------------------------------------------------------------------------- main


class UsageError(Exception):
    """A bad command line, reported as one line (``PROG: error: MESSAGE``) with exit status 1."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: error: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse prints the usage and exits 2 on a bad value; here it is one line and exit 1, like every error."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


_WHY = {errno.EEXIST: "a file where a folder is needed", errno.ENOTDIR: "a file where a folder is needed",
        errno.EISDIR: "a folder where a file is needed", errno.ELOOP: "a symbolic link loop"}


def os_error_line(e: Exception) -> str:
    """``PATH: what went wrong`` for a file-system error (``OSError`` and its subclasses, undecodable text)."""
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at position {e.start})"
    assert isinstance(e, OSError)
    what = e.strerror or str(e) or type(e).__name__
    # a rename names its temporary source first: the destination is the path the user gave
    path = e.filename2 if e.filename2 is not None else e.filename
    if e.errno in _WHY:
        what += f" ({_WHY[e.errno]})"
    return f"{os.fsdecode(path)}: {what}" if path is not None else what


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the options of that subcommand alone (the others keep their name
    and help): a run imports only what its own command needs, so a finished rerun starts in a fraction of a
    second."""
    parser = _Parser(prog="au-agent", description="The AU Agent pipeline for AffectGPT: "
                                     "OpenFace AUs → descriptions → CLIP features.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_arguments in sorted(_SUBCOMMANDS, key=lambda c: PIPELINE_ORDER.index(c[0])):
        sp = subs.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            _HANDLERS[name] = add_arguments(sp)
    return parser


def _command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand ``argv`` names, when it comes first after the global flags; else None."""
    for arg in argv:
        if arg in ("-v", "--verbose", "-q", "--quiet"):
            continue
        return arg if arg in {name for name, _, _ in _SUBCOMMANDS} else None
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_of(argv))
    try:
        args, unknown = parser.parse_known_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 1
    if unknown:
        print(f"au-agent {args.command}: error: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
        return 1
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        with sigterm_as_interrupt():
            return _HANDLERS[args.command](args)
    except Terminated:
        print(f"au-agent {args.command}: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        return TERMINATED_STATUS
    except AUAgentError as e:
        print(f"au-agent {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:  # the one place file-system errors become a line, not a traceback
        print(f"au-agent {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"au-agent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

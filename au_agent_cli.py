"""``au-agent``: one command over the three stages. Each subcommand parses arguments and calls one library
function; user errors (:class:`data_prep.AUAgentError`) become one line on stderr and exit status 1.

    au-agent prepare-data     stage 1  MER-Factory outputs → LLaMA-Factory dataset      (data_prep.build)
    au-agent train            stage 2  render a recipe, run llamafactory-cli, agent card (llamafactory_configs.train)
    au-agent test-agent       stage 2  print descriptions for FACS test cases           (affectgpt_patch.agent)
    au-agent describe         stage 3  OpenFace CSVs → one description per frame         (affectgpt_patch.describe)
    au-agent precompute       stage 3  OpenFace CSVs → AU features [T, 512] per video    (affectgpt_patch.precompute)
    au-agent eval             stage 3  BLEU / ROUGE-L / AU fidelity report               (affectgpt_patch.evaluate)
    au-agent patch-affectgpt  stage 3  add the AU modality to an AffectGPT checkout      (affectgpt_patch.patcher)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from data_prep.errors import AUAgentError

log = logging.getLogger("au_agent")

Handler = Callable[[argparse.Namespace], int]
_SUBCOMMANDS: List = []  # (name, help, add_arguments)
PIPELINE_ORDER = ["prepare-data", "train", "test-agent", "describe", "precompute", "eval", "patch-affectgpt"]
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
    p.add_argument("--mer-factory-output", type=Path, help="MER-Factory output folder (searched recursively)")
    p.add_argument("--openface-dir", type=Path, help="OpenFace CSVs ({video}.csv) to cross-check AU values against")
    p.add_argument("--import-alpaca", type=Path, nargs="+", default=[], metavar="FILE",
                   help="existing Alpaca JSON/JSONL datasets to re-express in the prompt contract")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--val-ratio", type=float, default=0.05, help="share of videos in the validation split")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-samples", type=int)
    p.add_argument("--text-key", default="fine_grained_descriptions",
                   choices=["fine_grained_descriptions", "summary_description"],
                   help="which per-frame text to train on (per-frame MER-Factory variant)")
    p.add_argument("--keep-temporal", action="store_true",
                   help="keep descriptions that refer to other frames or to time (dropped by default)")
    p.add_argument("--min-confidence", type=float, default=0.8, help="OpenFace confidence below which a frame is invalid")
    p.add_argument("--min-fidelity", type=float,
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


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that generates descriptions shares."""
    g = p.add_argument_group("agent")
    g.add_argument("--agent", help="agent folder (au-agent train output, checkpoint-best, an adapter or a merged model)")
    g.add_argument("--backend", choices=["hf", "vllm", "openai", "rules"],
                   help="default: hf with --agent, else rules")
    g.add_argument("--base-model", help="base model folder or hub id (overrides the agent card)")
    g.add_argument("--api-base", help="OpenAI-compatible server URL for --backend openai, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--api-model", help="model name on that server (default: its first model)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--max-new-tokens", type=int, default=96)
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    g.add_argument("--cache-dir", help="description cache folder (default: $AU_AGENT_CACHE_DIR or ~/.cache/au-agent)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write cached descriptions")


def agent_from_args(a: argparse.Namespace):
    from affectgpt_patch.agent import create_au_agent

    backend = a.backend or ("hf" if a.agent else "rules")
    if backend != "rules" and backend != "openai" and not (a.agent or a.base_model):
        raise AUAgentError(f"--backend {backend} needs --agent DIR (or --base-model)")
    return create_au_agent(a.agent, backend=backend, base_model=a.base_model, api_base=a.api_base,
                           api_model=a.api_model, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                           device=a.device, cache_dir=a.cache_dir, use_cache=not a.no_cache)


# ------------------------------------------------------------------------------------------------ describe


@subcommand("describe", "OpenFace CSVs → one description per frame (JSON lines)")
def _describe(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("csv", nargs="+", type=Path, help="OpenFace CSV files or folders of them")
    p.add_argument("--out", type=Path, help="JSONL file to write (default: print to stdout)")
    p.add_argument("--min-confidence", type=float, default=0.8)
    add_agent_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.describe import describe_csvs

        lines, summary = describe_csvs(a.csv, agent_from_args(a), a.out, a.batch_size, a.min_confidence,
                                       progress=not a.quiet)
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
    g = p.add_argument_group("features")
    g.add_argument("--frames", type=int, default=8, help="T, the number of frames per video (AffectGPT's n_frms)")
    g.add_argument("--sampling", choices=["uniform", "peaks", "all"], default="uniform",
                   help="uniform: AffectGPT's frame indices; peaks: MER-Factory's emotion peaks; all: every frame")
    g.add_argument("--clip-model", default="ViT-B/32", help="CLIP model name or a local .pt file")
    g.add_argument("--clip-device", help="device for CLIP (default: cuda when available)")
    g.add_argument("--min-confidence", type=float, default=0.8, help="OpenFace confidence below which a frame is invalid")


def encoder_from_args(a: argparse.Namespace):
    from affectgpt_patch.clip_encoder import load_clip_text_encoder

    return load_clip_text_encoder(a.clip_model, device=a.clip_device, cache_dir=a.cache_dir, use_cache=not a.no_cache)


def settings_from_args(a: argparse.Namespace):
    from affectgpt_patch.features import FeatureSettings

    return FeatureSettings(frames=a.frames, sampling=a.sampling, min_confidence=a.min_confidence)


@subcommand("precompute", "OpenFace CSVs → AU features {name}.npy [T, 512] + {name}.json, resumable")
def _precompute(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--openface-dir", type=Path, required=True, help="folder of OpenFace {name}.csv files")
    p.add_argument("--out", type=Path, required=True, help="feature folder (resumed when it has finished videos)")
    p.add_argument("--shard", default="0/1", help="i/N: process the i-th of N deterministic shards (0-based)")
    p.add_argument("--keep-going", action="store_true", help="exit 0 even when some videos failed")
    p.add_argument("--chunk-videos", type=int, default=256, help="videos described together")
    add_feature_arguments(p)
    add_agent_arguments(p)
    p.set_defaults(batch_size=64)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.precompute import PrecomputeOptions, parse_shard, precompute

        opts = PrecomputeOptions(openface_dir=a.openface_dir, out=a.out, settings=settings_from_args(a),
                                 shard=parse_shard(a.shard), batch_size=a.batch_size, chunk_videos=a.chunk_videos,
                                 progress=not a.quiet)
        summary = precompute(opts, agent_from_args(a), encoder_from_args(a))
        log.info("%(videos)d videos: %(done)d done, %(skipped)d skipped (already done), %(failed)d failed; "
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


# --------------------------------------------------------------------------------------------------- train


@subcommand("train", "train the AU Agent with a LLaMA-Factory recipe → checkpoint-best/ + agent_card.json")
def _train(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--recipe", default="qwen2.5_7b_lora_sft",
                   help="recipe name in llamafactory_configs/ (qwen2.5_7b_lora_sft, qwen2.5_7b_qlora_sft, "
                        "qwen2.5_7b_lora_sft_8bit, qwen2.5_7b_lora_sft_ds_z2, qwen2.5_7b_lora_sft_ds_z3, "
                        "tiny_cpu_lora_sft) or a YAML file; default %(default)s")
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
        from llamafactory_configs.facs_cases import BUILTIN_CASES, format_report, load_cases

        cases = ([] if a.no_builtin else list(BUILTIN_CASES)) + (load_cases(a.cases) if a.cases else [])
        if not cases:
            raise AUAgentError("no cases to run: --no-builtin needs --cases FILE")
        agent = agent_from_args(a)
        descriptions = agent.batch_generate_descriptions([c.au_values for c in cases], a.batch_size)
        sys.stdout.write(format_report(cases, descriptions))
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
                                precomputed_dir=a.precomputed_dir)
        report = apply_patch(a.path, options, dry_run=a.dry_run)
        sys.stdout.write(report.format() + "\n" + report.diff)
        if not a.dry_run:
            log.info("%d files written%s", len(report.changed), "" if report.changed else " (already patched)")
        return 0

    return run


# ---------------------------------------------------------------------------------------------------- eval


@subcommand("eval", "BLEU / ROUGE-L / AU fidelity of an agent on a dataset split, beside its teacher and the rules")
def _eval(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--dataset", type=Path, required=True, help="an Alpaca split written by prepare-data (val.json)")
    p.add_argument("--out", type=Path, required=True,
                   help="report folder: report.md, report.json, predictions.jsonl, au_f1.png, lengths.png")
    p.add_argument("--limit", type=int, help="evaluate the first N records only")
    p.add_argument("--clip-model", help="CLIP model the AU features use (ViT-B/32 or a local .pt file): adds "
                                        "feature similarity to the report")
    add_agent_arguments(p)

    def run(a: argparse.Namespace) -> int:
        from affectgpt_patch.evaluate import EvalOptions, evaluate, load_split, summary_text

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


# ------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="au-agent", description="The AU Agent pipeline for AffectGPT: "
                                     "OpenFace AUs → descriptions → CLIP features.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_arguments in sorted(_SUBCOMMANDS, key=lambda c: PIPELINE_ORDER.index(c[0])):
        sp = subs.add_parser(name, help=help_text, description=help_text)
        _HANDLERS[name] = add_arguments(sp)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return _HANDLERS[args.command](args)
    except AUAgentError as e:
        print(f"au-agent {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"au-agent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``au-agent precompute``: OpenFace CSVs → AU features per video (``affectgpt_patch.features.precompute``).

Imports nothing heavy until it runs: a finished rerun starts, skips every video and exits in a fraction of a
second."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from au_core import argtypes

from .options import (
    Handler,
    add_agent_arguments,
    add_caption_arguments,
    add_engine_arguments,
    add_feature_arguments,
    agent_from_args,
    caption_settings_from_args,
    encoder_from_args,
    ray_options_from_args,
    settings_from_args,
)

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
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
                 "%(redone)d redone (stale or made otherwise); "
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

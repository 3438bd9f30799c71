"""``au-agent prepare-data``: MER-Factory outputs → a LLaMA-Factory dataset (``data_prep.build``)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from au_core import argtypes

from .options import Handler, add_min_confidence_argument

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
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

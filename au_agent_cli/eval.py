"""``au-agent eval``: BLEU / ROUGE-L / AU fidelity report (``affectgpt_patch.quality.evaluate``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from au_core import argtypes

from .options import Handler, add_agent_arguments, add_engine_arguments, agent_from_args


def add_arguments(p: argparse.ArgumentParser) -> Handler:
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

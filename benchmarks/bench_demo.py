"""demo-agent: ``make demo``'s training on CPU and what the trained agent scores, next to the teacher and the rules.

    make bench BENCH_ARGS="--only demo-agent"

Runs ``samples/run_demo.py`` (its full size, or ``--demo-quick``) into ``bench_out/demo/`` and reports the wall
time of the whole demo and of its training step (``llamafactory-cli train``, start to finish, and the trainer's own
``train_runtime``), then the evaluation table on the held-out split: BLEU, ROUGE-L, AU fidelity and CLIP feature
similarity for the agent, the rules baseline and the teacher. The fidelity targets are the demo's promise
(AU F1 ≥ 0.85, hallucination rate ≤ 0.05 on ≥ 200 records); a missed target is reported, not a failure.
"""
from __future__ import annotations

import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from .common import BenchResult, Stopwatch, Target, fresh_dir, loadavg

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DemoBenchOptions:
    out: Path
    quick: bool = False


def _report(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def run_demo_bench(opts: DemoBenchOptions) -> BenchResult:
    demo = runpy.run_path(str(REPO / "samples" / "run_demo.py"), run_name="demo")
    out = fresh_dir(Path(opts.out).absolute() / "demo")
    size = demo["QUICK"] if opts.quick else demo["FULL"]
    load_before = loadavg()
    with Stopwatch() as total:
        table = demo["run"](out, size=size)
    res = demo_result(out, table, total.seconds, size, opts.quick)
    res.details.update(loadavg_before=load_before, loadavg_after=loadavg())
    return res


def demo_result(out: Path, table: str, seconds: float, size: Any, quick: bool) -> BenchResult:
    """The metrics of a finished demo run in ``out`` (``table`` is what ``run`` returned)."""
    train_row = next(line for line in table.splitlines() if line.startswith("train "))
    train_wall = float(train_row.split()[1].rstrip("s"))
    trainer = _report(out / "agent" / "train_results.json")
    report = _report(out / "eval" / "report.json")
    untrained = _report(out / "eval_untrained" / "report.json")

    res = BenchResult("demo-agent")
    res.details = {"size": size.__dict__, "systems": report["systems"], "features": report["features"],
                   "untrained": untrained["systems"]["agent"], "lexicon_version": report["lexicon_version"]}
    res.add("demo total", seconds, "s", note=f"{size.videos} videos, {size.train_steps} steps")
    res.add("training (au-agent train)", train_wall, "s", Target("<=", 120),
            note="llamafactory-cli start to checkpoint-best")
    res.add("training (train_runtime)", trainer["train_runtime"], "s", note="the trainer's own clock")
    records = report["dataset"]["records"]
    res.add("val records", records, "records", Target(">=", 200) if not quick else None)
    res.add("untrained AU F1", untrained["systems"]["agent"]["fidelity"]["f1"], "", note="the random base model")
    features = (report["features"] or {}).get("systems", {})
    for name in ("agent", "rules", "teacher"):
        s = report["systems"][name]
        f = s["fidelity"]
        targets = name == "agent" and not quick
        res.add(f"{name} AU F1", f["f1"], "", Target(">=", 0.85) if targets else None)
        res.add(f"{name} hallucination rate", f["hallucination_rate"], "", Target("<=", 0.05) if targets else None)
        if s["rouge_l"] is not None:
            res.add(f"{name} ROUGE-L", s["rouge_l"], "", note="vs the teacher")
            res.add(f"{name} BLEU", s["bleu"], "")
        if name in features:
            res.add(f"{name} CLIP cosine to teacher", features[name]["cosine_to_teacher"], "",
                    note=report["features"]["clip_model"].split("/")[-1])
            if features[name]["separation"] is not None:
                res.add(f"{name} CLIP separation", features[name]["separation"], "",
                        note="same-AU minus different-AU cosine")
    rouge = {n: report["systems"][n]["rouge_l"] for n in ("agent", "rules")}
    res.details["agent_rouge_above_rules"] = rouge["agent"] > rouge["rules"]
    return res

"""``make demo``: the whole pipeline on synthetic data, on CPU, offline, in a few minutes, with an agent that learns.

    synthetic MER-Factory corpus → prepare-data → eval of the untrained model → train (a small random Qwen2,
        fully fine-tuned with LLaMA-Factory) → describe (rules and agent) → precompute CLIP features
        → eval (words, AU fidelity and CLIP features: agent vs teacher vs rules) → three sample frames

Each step runs the same code as the ``au-agent`` command printed beside it. The base model is random (nothing
is downloaded) and its tokenizer is trained on the dataset's texts; the ``tiny_cpu_full_sft`` recipe trains all of
it in a few minutes of CPU time (400 steps of batch 32), and the evaluation shows what it learned on held-out
videos. Real training needs a GPU and Qwen2.5-7B-Instruct (see the README). CLIP is the real ViT-B/32 when its
weights are already in ``~/.cache/clip``; otherwise a tiny random CLIP is built and used, and the summary says so.

``--out DIR`` is created by the demo and marked as its own (``.au-agent-demo``); a folder that exists, is not
empty and does not carry that mark is refused, and in a marked folder only the demo's own entries are replaced.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import au_agent_cli  # noqa: E402

log = logging.getLogger("demo")
SAMPLES = REPO / "samples"
MARKER = ".au-agent-demo"
#: What the demo writes into --out: only these are replaced when a marked folder is reused.
ENTRIES = (MARKER, "synthetic", "dataset", "models", "eval_untrained", "agent", "descriptions_rules.jsonl",
           "descriptions_agent.jsonl", "features", "eval", "cache")
RECIPE = "tiny_cpu_full_sft"


@dataclass(frozen=True)
class DemoSize:
    """How much the demo generates and trains. ``FULL`` is ``make demo``; ``QUICK`` is its CI variant."""

    videos: int  # synthetic videos (about 16 described frames each; a tenth of the videos are held out)
    train_steps: int  # optimizer steps of tiny_cpu_full_sft (batch 32)
    eval_limit: Optional[int]  # val records scored (None: all)
    max_new_tokens: int
    agent_csvs: Optional[int]  # bundled OpenFace CSVs described by the agent (None: all)


FULL = DemoSize(videos=200, train_steps=400, eval_limit=None, max_new_tokens=48, agent_csvs=None)
QUICK = DemoSize(videos=120, train_steps=200, eval_limit=80, max_new_tokens=48, agent_csvs=2)


class Demo:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: List[List[str]] = []

    def step(self, name: str, argv: Sequence[str], outputs: str, check: Callable[[], str] = lambda: "") -> None:
        """Run one ``au-agent`` command in-process, time it, and record a summary row."""
        log.info("\n==> %s\n    au-agent %s", name, " ".join(shlex.quote(str(a)) for a in argv))
        start = time.time()
        code = au_agent_cli.main([str(a) for a in argv])
        if code != 0:
            raise SystemExit(f"demo step '{name}' failed (exit {code})")
        self.rows.append([name, f"{time.time() - start:.1f}s", outputs, check()])

    def timed(self, name: str, command: str, outputs: str, action: Callable[[], str]) -> None:
        """Run a step that is not an ``au-agent`` command (``command`` is what a user would type)."""
        log.info("\n==> %s\n    %s", name, command)
        start = time.time()
        what = action()
        self.rows.append([name, f"{time.time() - start:.1f}s", outputs, what])

    def table(self) -> str:
        head = ["step", "time", "output", "what is in it"]
        widths = [max(len(r[i]) for r in self.rows + [head]) for i in range(4)]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in self.rows])


def claim_out(out: Path) -> None:
    """Make ``out`` the demo's folder without deleting anything the demo did not create.

    A missing or empty folder is created and marked; a marked folder (an earlier demo run) loses only the demo's
    own entries; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"demo: error: --out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise SystemExit(f"demo: error: --out {out} is not empty and was not made by the demo (no {MARKER}); "
                             "choose a new folder or empty it")
        for name in ENTRIES:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by samples/run_demo.py; rerunning the demo replaces its entries here\n",
                              encoding="utf-8")


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8"))


def _f1(report_dir: Path, system: str = "agent") -> float:
    return json.loads((report_dir / "report.json").read_text())["systems"][system]["fidelity"]["f1"]


def sample_frames(predictions: Path, n: int = 3) -> List[Dict[str, object]]:
    """``n`` evaluated records with different sets of active AUs, the most AUs first (ties in split order)."""
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    chosen, seen = [], set()
    for p in sorted(records, key=lambda p: -min(len(p["active"]), 3)):  # stable: split order within a size
        key = tuple(p["active"])
        if key and key not in seen:
            seen.add(key)
            chosen.append(p)
        if len(chosen) == n:
            break
    return chosen


def show_samples(predictions: Path) -> str:
    from affectgpt_patch.agent.rules import rules_description

    blocks = []
    for p in sample_frames(predictions):
        blocks.append("\n".join([
            f"{p['video']} frame {p['frame']}",
            f"  AU input : {p['input']}",
            f"  teacher  : {p['reference']}",
            f"  rules    : {rules_description(p['input'])}",
            f"  agent    : {p['prediction']}  (AU F1 {p['f1']['prediction']:.2f})",
        ]))
    return "\n\n".join(blocks)


def run(out: Path, quick: bool = False, size: Optional[DemoSize] = None) -> str:
    """Run the demo into ``out``; return the summary table. ``quick`` is the CI variant (``QUICK``): fewer
    videos and training steps, a part of the validation split, two videos described by the agent."""
    from affectgpt_patch.features.clip_encoder import local_vit_b32
    from au_standins.synthetic import write_corpus
    from au_standins.tiny_clip import build_tiny_clip
    from au_standins.tiny_qwen2 import DEMO_SIZE, build_tiny_qwen2, dataset_texts

    size = size or (QUICK if quick else FULL)
    claim_out(out)
    demo = Demo(out)
    started = time.time()
    rel = lambda p: str(p.relative_to(out.parent)) if p.is_relative_to(out.parent) else str(p)  # noqa: E731
    tokens = str(size.max_new_tokens)
    limit = ["--limit", str(size.eval_limit)] if size.eval_limit else []

    corpus = out / "synthetic"
    demo.timed("synthetic data", f"python -m au_standins.synthetic {rel(corpus)} --videos {size.videos} --seed 1",
               rel(corpus), lambda: "{videos} videos, {described_frames} teacher descriptions".format(
                   **write_corpus(corpus, n_videos=size.videos, seed=1, n_described=16)))

    dataset = out / "dataset"
    demo.step("prepare-data", ["prepare-data", "--mer-factory-output", corpus / "mer_factory",
                               "--openface-dir", corpus / "openface",
                               "--import-alpaca", corpus / "legacy_alpaca" / "au_instruction_dataset_val.jsonl",
                               "--val-ratio", "0.1", "--out", dataset], rel(dataset),
              lambda: "{kept} records ({train} train / {val} val)".format(
                  kept=json.loads((dataset / "stats.json").read_text())["kept"],
                  train=len(json.loads((dataset / "train.json").read_text())),
                  val=len(json.loads((dataset / "val.json").read_text()))))

    base = out / "models" / "tiny-qwen2"

    def build_base() -> str:
        build_tiny_qwen2(base, dataset_texts([dataset / "train.json"]), size=DEMO_SIZE)
        return "random Qwen2 (stands in for Qwen2.5-7B-Instruct); its tokenizer is trained on the dataset's texts"

    demo.timed("base model", f"python -m au_standins.tiny_qwen2 {rel(base)} --demo-size "
               f"--texts {rel(dataset / 'train.json')}", rel(base), build_base)

    untrained = out / "eval_untrained"
    demo.step("eval (untrained)", ["eval", "--base-model", base, "--backend", "hf", "--dataset", dataset / "val.json",
                                   "--out", untrained, "--max-new-tokens", tokens, "--cache-dir", out / "cache",
                                   *limit], rel(untrained / "report.md"),
              lambda: f"AU F1 of the random model: {_f1(untrained):.3f}")

    agent = out / "agent"
    every = max(1, size.train_steps // 3)  # evaluate and save three times: checkpoint-best is one of them
    demo.step("train", ["train", "--recipe", RECIPE, "--dataset", dataset, "--base-model", base, "--out", agent,
                        f"max_steps={size.train_steps}", f"eval_steps={every}", f"save_steps={every}"],
              rel(agent / "checkpoint-best"),
              lambda: "fully fine-tuned model + agent_card.json; training_loss.png")

    for backend, csvs, extra in (("rules", [SAMPLES / "openface"], ["--backend", "rules"]),
                                 ("agent", sorted((SAMPLES / "openface").glob("*.csv"))[:size.agent_csvs],
                                  ["--agent", agent, "--max-new-tokens", tokens])):
        path = out / f"descriptions_{backend}.jsonl"
        demo.step(f"describe ({backend})", ["describe", *csvs, "--out", path, "--cache-dir", out / "cache", *extra],
                  rel(path), lambda path=path: f"{_count_lines(path)} frames, one JSON line each")

    vit = local_vit_b32()
    if vit is not None:
        clip_model, clip_note = str(vit), "CLIP ViT-B/32 (local cache)"
    else:
        clip_model = str(build_tiny_clip(out / "models" / "tiny_clip.pt"))
        clip_note = "tiny random CLIP (ViT-B/32 weights not in ~/.cache/clip)"
        log.info("\n==> ViT-B/32 weights are not in ~/.cache/clip: using a tiny random CLIP instead")
    features = out / "features"

    def feature_summary() -> str:
        import numpy as np

        first = sorted(features.glob("*.npy"))[0]
        return f"{len(list(features.glob('*.npy')))} x {list(np.load(first).shape)} float16; {clip_note}"

    demo.step("precompute", ["precompute", "--openface-dir", SAMPLES / "openface", "--out", features,
                             "--agent", agent, "--max-new-tokens", tokens, "--clip-model", clip_model,
                             "--cache-dir", out / "cache"], rel(features), feature_summary)

    report = out / "eval"
    demo.step("eval", ["eval", "--agent", agent, "--dataset", dataset / "val.json", "--out", report,
                       "--max-new-tokens", tokens, "--clip-model", clip_model, "--cache-dir", out / "cache", *limit],
              rel(report / "report.md"),
              lambda: f"AU F1 {_f1(untrained):.3f} untrained → {_f1(report):.3f} trained; words and CLIP features")

    from affectgpt_patch.quality.eval_report import summary_text

    table = demo.table()
    print("\nThree held-out frames (eval/predictions.jsonl):\n\n" + show_samples(report / "predictions.jsonl"))
    print("\n" + summary_text(json.loads((report / "report.json").read_text())))
    print(f"\nTraining curve: {agent / 'training_loss.png'}")
    print("\n" + table)
    print(f"\nDemo finished in {time.time() - started:.0f}s. Everything is under {out}/. The agent is a small random "
          "model trained on CPU for minutes on synthetic data; real training needs a GPU and Qwen2.5-7B-Instruct.")
    au_agent_cli.main(["-q", "inspect", str(features), "--openface-dir", str(SAMPLES / "openface")])
    print(f"Look at the features, chosen frames and descriptions in a browser: {features / 'report.html'}")
    return table


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo_out",
                        help="a new or empty folder, or one an earlier demo made")
    parser.add_argument("--train-steps", type=int, help=f"optimizer steps (default {FULL.train_steps}, "
                                                        f"--quick {QUICK.train_steps})")
    parser.add_argument("--quick", action="store_true", help="a trimmed run (CI)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    size = QUICK if args.quick else FULL
    if args.train_steps:
        size = DemoSize(**{**size.__dict__, "train_steps": args.train_steps})
    run(args.out.absolute(), size=size)


if __name__ == "__main__":
    main()

"""``make demo``: the whole pipeline on the bundled synthetic samples, on CPU, offline, in a few minutes.

    prepare-data → train (tiny model, a few steps: a smoke run) → describe (rules and smoke agent)
        → precompute CLIP features → eval → summary table

Each step runs the same code as the ``au-agent`` command printed beside it. The tiny Qwen2 model is random and
trained for seconds, so its descriptions are gibberish: it proves the plumbing, not the quality. Real training
needs a GPU and Qwen2.5-7B-Instruct (see the README). CLIP is the real ViT-B/32 when its weights are already in
``~/.cache/clip``; otherwise a tiny random CLIP is built and used, and the summary says so.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import au_agent_cli  # noqa: E402

log = logging.getLogger("demo")
SAMPLES = REPO / "samples"


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

    def table(self) -> str:
        head = ["step", "time", "output", "what is in it"]
        widths = [max(len(r[i]) for r in self.rows + [head]) for i in range(4)]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in self.rows])


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8"))


def run(out: Path, train_steps: int = 30, quick: bool = False) -> str:
    """Run the demo into ``out``; return the summary table. ``quick`` trims it for CI: fewer training steps,
    shorter descriptions, two videos described by the agent."""
    from affectgpt_patch.clip_encoder import local_vit_b32
    from affectgpt_patch.tiny_clip import build_tiny_clip
    from llamafactory_configs.tiny_qwen2 import build_tiny_qwen2, dataset_texts

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    demo = Demo(out)
    started = time.time()
    rel = lambda p: str(p.relative_to(out.parent)) if p.is_relative_to(out.parent) else str(p)  # noqa: E731

    tokens = "8" if quick else "24"
    train_steps = min(train_steps, 4) if quick else train_steps
    agent_csvs = sorted((SAMPLES / "openface").glob("*.csv"))[:2] if quick else [SAMPLES / "openface"]
    dataset = out / "dataset"
    demo.step("prepare-data", ["prepare-data", "--mer-factory-output", SAMPLES / "mer_factory",
                               "--openface-dir", SAMPLES / "openface",
                               "--import-alpaca", SAMPLES / "legacy_alpaca" / "au_instruction_dataset_val.jsonl",
                               "--out", dataset], rel(dataset),
              lambda: "{kept} records ({train} train / {val} val)".format(
                  kept=json.loads((dataset / "stats.json").read_text())["kept"],
                  train=len(json.loads((dataset / "train.json").read_text())),
                  val=len(json.loads((dataset / "val.json").read_text()))))

    log.info("\n==> building the tiny Qwen2 base model (random weights; stands in for Qwen2.5-7B-Instruct)")
    base = build_tiny_qwen2(out / "models" / "tiny-qwen2", dataset_texts([dataset / "train.json"]))

    agent = out / "agent"
    demo.step("train (smoke run)", ["train", "--recipe", "tiny_cpu_lora_sft", "--dataset", dataset,
                                    "--base-model", base, "--out", agent, f"max_steps={train_steps}"],
              rel(agent / "checkpoint-best"),
              lambda: "LoRA adapter + agent_card.json (tiny model: gibberish by design)")

    for backend, csvs, extra in (("rules", [SAMPLES / "openface"], ["--backend", "rules"]),
                                 ("agent", agent_csvs, ["--agent", agent, "--max-new-tokens", tokens])):
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
                       "--max-new-tokens", tokens, "--cache-dir", out / "cache"], rel(report / "report.md"),
              lambda: "BLEU, ROUGE-L, AU fidelity: agent vs teacher vs rules")

    table = demo.table()
    print("\n" + table)
    print(f"\nDemo finished in {time.time() - started:.0f}s. Everything is under {out}/. "
          "The smoke agent is a tiny random model: real training needs a GPU and Qwen2.5-7B-Instruct.")
    au_agent_cli.main(["-q", "inspect", str(features), "--openface-dir", str(SAMPLES / "openface")])
    print(f"Look at the features, chosen frames and descriptions in a browser: {features / 'report.html'}")
    return table


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo_out")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a trimmed run (CI)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args.out.absolute(), args.train_steps, args.quick)


if __name__ == "__main__":
    main()

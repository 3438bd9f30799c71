"""`make demo`, trimmed: every stage of the pipeline runs on the bundled samples and leaves its outputs."""
import json
import runpy
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_demo_quick(tmp_path, capsys):
    demo = runpy.run_path(str(REPO / "samples" / "run_demo.py"), run_name="demo")
    out = tmp_path / "demo_out"
    table = demo["run"](out, quick=True)
    for step in ("prepare-data", "train (smoke run)", "describe (rules)", "describe (agent)", "precompute", "eval"):
        assert step in table
    assert (out / "dataset" / "train.json").is_file() and (out / "dataset" / "dataset_info.json").is_file()
    card = json.loads((out / "agent" / "agent_card.json").read_text())
    assert (out / "agent" / card["adapter_dir"] / "adapter_model.safetensors").is_file()
    rules = (out / "descriptions_rules.jsonl").read_text().splitlines()
    agent = (out / "descriptions_agent.jsonl").read_text().splitlines()
    assert len(rules) > len(agent) > 0
    npys = sorted((out / "features").glob("*.npy"))
    assert len(npys) == 12 and np.load(npys[0]).shape == (8, 512)
    report = json.loads((out / "eval" / "report.json").read_text())
    assert set(report["systems"]) == {"agent", "teacher", "rules"}
    assert (out / "eval" / "report.md").is_file()
    assert "<svg" in (out / "features" / "report.html").read_text(encoding="utf-8")  # au-agent inspect
    assert "Demo finished" in capsys.readouterr().out

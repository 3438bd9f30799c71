"""Features do not depend on the stack that computed them: `au-agent precompute` (hf agent on the tiny Qwen2 + LoRA,
then CLIP) writes the same bytes on AffectGPT's stack (Python 3.10, torch 2.4, transformers 4.49, peft 0.13) as on
the main venv's (Python 3.11, torch 2.11, transformers 5), from the same model files and OpenFace CSVs. Users
precompute in one environment and train AffectGPT in the other, or mix precomputed and on-the-fly features.

The LoRA adapter is made on the other stack: in `make test-affectgpt-env` that is the main venv, where users train
the agent, so AffectGPT's peft 0.13 loads an adapter written by the training venv's peft.

The other stack's interpreter is ``$AU_AGENT_OTHER_PYTHON`` (`make test-affectgpt-env` sets it to the main venv's);
unset, it is this checkout's other venv (.venv or .venv-affectgpt), and the test skips, saying why, without one."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
VENVS = (".venv", ".venv-affectgpt")
VIDEOS = ("sample_00002", "sample_00005", "sample_00007")


def other_python() -> Path:
    named = os.environ.get("AU_AGENT_OTHER_PYTHON")
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"AU_AGENT_OTHER_PYTHON={named} is no interpreter (run `make install` for the main venv)")
        return Path(named)
    here = Path(sys.prefix).resolve()
    for venv in VENVS:
        python = REPO / venv / "bin" / "python"
        if (REPO / venv).resolve() != here and python.is_file():
            return python
    pytest.skip("no second stack to compare with: run `make install` and `make affectgpt-env` "
                "(or set AU_AGENT_OTHER_PYTHON)")


def make_adapter(python: Path, base: Path, out: Path) -> Path:
    code = "import sys; from helpers import make_random_adapter; make_random_adapter(sys.argv[1], sys.argv[2], seed=5)"
    run(python, ["-c", code, str(base), str(out)], cwd=REPO / "tests")
    return out


def run(python: Path, args: List[str], cwd: Path = REPO) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{python}: {done.stderr[-3000:]}"


def precompute(python: Path, openface: Path, adapter: Path, clip: Path, out: Path) -> Dict[str, bytes]:
    run(python, ["-m", "au_agent_cli", "-q", "precompute", "--openface-dir", str(openface), "--out", str(out),
                 "--agent", str(adapter), "--backend", "hf", "--device", "cpu", "--max-new-tokens", "12", "--no-cache",
                 "--clip-model", str(clip)])
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}


def _descriptions(raw: bytes) -> List:
    return json.loads(raw)["descriptions"]


def test_features_are_byte_identical_across_stacks(samples, tiny_qwen2, tiny_clip, tmp_path):
    other = other_python()
    openface = tmp_path / "openface"
    openface.mkdir()
    for name in VIDEOS:
        shutil.copy(samples / "openface" / f"{name}.csv", openface)
    adapter = make_adapter(other, tiny_qwen2, tmp_path / "adapter")

    here = precompute(Path(sys.executable), openface, adapter, tiny_clip, tmp_path / "here")
    there = precompute(other, openface, adapter, tiny_clip, tmp_path / "there")

    assert sorted(here) == sorted(there)
    assert {f"{name}.npy" for name in VIDEOS} <= set(here)
    for name in VIDEOS:
        assert _descriptions(here[f"{name}.json"]) == _descriptions(there[f"{name}.json"]), name
        a = np.load(tmp_path / "here" / f"{name}.npy")
        b = np.load(tmp_path / "there" / f"{name}.npy")
        assert here[f"{name}.npy"] == there[f"{name}.npy"], (
            f"{name}: features differ between {sys.executable} and {other}: max |diff| "
            f"{float(np.abs(a.astype(np.float64) - b).max()):.3g}, {int((a != b).sum())} of {a.size} values")
    assert here == there  # the metadata and the manifest too

"""SIGTERM (what Slurm and other schedulers send on a timeout or a cancel) in the middle of every long command:
one line on stderr, exit status 143, no temporary file or staging folder left, the output as it was before.

Each command runs as a subprocess on the bundled samples or a synthetic corpus and waits at one of its write
points (``AU_AGENT_FAULT_AT`` + ``AU_AGENT_FAULT_PAUSE``, see :mod:`au_core.atomic`), a temporary file or
staging folder on disk; the test sends SIGTERM from outside once the process is there. ``train`` gets it while
LLaMA-Factory trains, and its trainer process must be gone too.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_helpers import REPO, cli_env, fault_points, short, tree

import au_agent_cli
from au_core import atomic
from au_standins.synthetic import write_video
from llamafactory_configs.plan import READY_FILE

LINE_END = "terminated (SIGTERM); temporary files removed"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_clip):
    """A synthetic OpenFace corpus, and a finished precompute folder of it (inspect's input)."""
    root = tmp_path_factory.mktemp("sigterm")
    for i in range(4):
        write_video(root / "openface", f"vid_{i}", 30 + 9 * i, seed=i)
    assert au_agent_cli.main(["-q", *map(str, precompute_args(root / "openface", root / "features", root / "cache",
                                                                tiny_clip))]) == 0
    return root


def precompute_args(openface, out, cache, clip):
    return ["precompute", "--openface-dir", openface, "--out", out, "--cache-dir", cache, "--clip-model", clip,
            "--backend", "rules", "--chunk-videos", "2"]


def command(name, corpus, samples, sample_dataset, tiny_clip, work):
    """The arguments of one long command, writing under ``work``."""
    cache = ["--cache-dir", work / "cache"]
    if name == "prepare-data":
        return ["prepare-data", "--mer-factory-output", samples / "mer_factory", "--openface-dir",
                samples / "openface", "--out", work / "dataset"]
    if name == "describe":
        return ["describe", corpus / "openface", "--out", work / "frames.jsonl", "--backend", "rules", *cache]
    if name == "precompute":
        return precompute_args(corpus / "openface", work / "features", work / "cache", tiny_clip)
    if name == "eval":
        return ["eval", "--dataset", sample_dataset / "val.json", "--out", work / "report", "--backend", "rules",
                *cache]
    assert name == "inspect"
    return ["inspect", corpus / "features", "--out", work / "page.html", "--openface-dir", corpus / "openface"]


def leftovers(root: Path):
    """Temporary files and staging folders (any run's) below ``root``."""
    return [p for p in root.rglob("*") if atomic._TEMP_RE.match(p.name)]


def start(args, **env):
    return subprocess.Popen([sys.executable, "-m", "au_agent_cli", "-q", *map(str, args)], cwd=REPO,
                            env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(proc, ready, what, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:.0f} s"
        time.sleep(0.05)


def terminate(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def pick_point(points):
    """A write point in the middle of the run (a temporary file exists there), else the last point."""
    writes = [i for i, p in enumerate(points, 1) if p.startswith(("write", "staged"))]
    return writes[len(writes) // 2] if writes else len(points)


@pytest.mark.parametrize("name", ["prepare-data", "describe", "precompute", "eval", "inspect"])
def test_sigterm_is_one_line_and_leaves_nothing(name, corpus, samples, sample_dataset, tiny_clip, tmp_path,
                                                 record_property):
    listing = command(name, corpus, samples, sample_dataset, tiny_clip, tmp_path / "listing")
    points = fault_points(listing, tmp_path / "points.log")
    n = pick_point(points)
    work = tmp_path / "run"
    work.mkdir()
    before = tree(work)
    log = tmp_path / "run.log"
    proc = start(command(name, corpus, samples, sample_dataset, tiny_clip, work), AU_AGENT_FAULT_AT=str(n),
                 AU_AGENT_FAULT_PAUSE="1", AU_AGENT_FAULT_LOG=str(log))
    wait_until(proc, lambda: log.is_file() and len(log.read_text().splitlines()) >= n, f"point {points[n - 1]}")
    rc, err = terminate(proc)
    assert rc == 143, (rc, err)
    assert err.splitlines() == [f"au-agent {name}: {LINE_END}"], err
    assert leftovers(tmp_path) == []
    if name == "precompute":  # finished videos stay; the rerun completes the folder as one run would
        assert au_agent_cli.main(["-q", *map(str, command(name, corpus, samples, sample_dataset, tiny_clip,
                                                          work))]) == 0
        assert tree(work / "features") == tree(tmp_path / "listing" / "features"), short(tree(work / "features"))
    else:
        assert {k for k in tree(work) if "cache" not in k} == {k for k in before}, short(tree(work))
    record_property("fault_case", "sigterm:survived")


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.slow
def test_sigterm_stops_training_and_its_trainer(sample_dataset, tiny_qwen2, tmp_path, record_property):
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file():
        pytest.skip("needs /proc/PID/task/TID/children to find the trainer process")
    out = tmp_path / "agent"
    proc = start(["train", "--recipe", "tiny_cpu_lora_sft", "--dataset", sample_dataset, "--base-model", tiny_qwen2,
                  "--out", out])
    log = out / "train.log"
    # LLaMA-Factory is running once its log has more than the header line
    wait_until(proc, lambda: _children(proc.pid) and log.is_file() and len(log.read_bytes().splitlines()) > 1,
               "the trainer's first output")
    trainers = _children(proc.pid)
    rc, err = terminate(proc)
    assert rc == 143, (rc, err[-2000:])
    assert err.splitlines()[-1:] == [f"au-agent train: {LINE_END}"] and "Traceback" not in err, err[-2000:]
    assert all(_gone(pid) for pid in trainers)
    assert leftovers(tmp_path) == [] and not (out / READY_FILE).exists()
    record_property("fault_case", "sigterm:survived")

"""Helpers of the crash tests: run an ``au-agent`` command as a subprocess, list its fault points, kill it at
one of them (``AU_AGENT_FAULT_AT``, see :mod:`au_core.atomic`) or at a random instant, and compare trees."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AU_AGENT_FAULT")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli(args: Sequence[object], **env: str) -> subprocess.CompletedProcess:
    """``python -m au_agent_cli ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "au_agent_cli", "-q", *map(str, args)], cwd=REPO,
                          env=cli_env(**env), capture_output=True, text=True, timeout=300)


def spawn(args: Sequence[object], **env: str) -> subprocess.Popen:
    """``python -m au_agent_cli -q ARGS`` started in the background; its stderr is kept, as text."""
    return subprocess.Popen([sys.executable, "-m", "au_agent_cli", "-q", *map(str, args)], cwd=REPO,
                            env=cli_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def fault_points(args: Sequence[object], log: Path, **env: str) -> List[str]:
    """The fault points an uninterrupted run passes, in order (``"write foo.npy"``, ``"rename foo.npy"``...)."""
    log.unlink(missing_ok=True)
    done = cli(args, AU_AGENT_FAULT_LOG=str(log), **env)
    assert done.returncode in (0, 1), done.stderr
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()]


def kill_at(args: Sequence[object], point: int, **env: str) -> subprocess.CompletedProcess:
    """Run until the ``point``-th fault point (1-based) and die there by SIGKILL."""
    done = cli(args, AU_AGENT_FAULT_AT=str(point), **env)
    assert done.returncode == -signal.SIGKILL, f"point {point} not reached: {done.returncode} {done.stderr}"
    return done


def kill_after(args: Sequence[object], seconds: float, **env: str) -> Optional[int]:
    """Run and SIGKILL after ``seconds`` (None when it finished first, else the signal's return code)."""
    proc = subprocess.Popen([sys.executable, "-m", "au_agent_cli", "-q", *map(str, args)], cwd=REPO,
                            env=cli_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=seconds)
        return None
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        return proc.wait()


def kind(point: str) -> str:
    """``"write /x/.au_agent_patch/originals/a/b.py"`` → ``"write originals .py"``: the action, the area (the
    state or record folder it lies in, else ``out``) and the file type."""
    action, _, where = point.partition(" ")
    path = Path(where)
    area = next((part for part in ("originals", "pending", ".au_agent_patch", ".failures") if part in path.parts),
                "out")
    return f"{action} {area} {path.suffix or path.name}"


def sample_points(points: Sequence[str], per_kind: int, seed: int, ends: bool = True) -> List[int]:
    """1-based indices covering every kind of point: its first and last (``ends``; else one seeded pick) plus
    ``per_kind`` seeded others."""
    by_kind: Dict[str, List[int]] = defaultdict(list)
    for i, p in enumerate(points, 1):
        by_kind[kind(p)].append(i)
    rng = random.Random(seed)
    chosen = set()
    for indices in by_kind.values():
        chosen.update({indices[0], indices[-1]} if ends else {rng.choice(indices)})
        rest = [i for i in indices if i not in chosen]
        chosen.update(rng.sample(rest, min(per_kind, len(rest))))
    return sorted(chosen)


def tree(root: Path) -> Dict[str, Tuple[bytes, int]]:
    """Every file below ``root`` (hidden ones included): relative path → (bytes, mode)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def short(t: Dict[str, Tuple[bytes, int]]) -> Dict[str, str]:
    """A readable digest of :func:`tree` for assertion messages."""
    return {k: f"{hashlib.sha256(v[0]).hexdigest()[:12]} {v[1]:o}" for k, v in t.items()}


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def record_kills(record_property: Callable[[str, object], None], kills: int) -> None:
    """One ``kill:survived`` per process killed and recovered from, for the fault suite's figures."""
    for _ in range(kills):
        record_property("fault_case", "kill:survived")

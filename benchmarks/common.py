"""What every benchmark shares: metrics with targets, the final table, timing, profiling and cached inputs.

Timings are wall-clock (``time.perf_counter``) on whatever else the machine is doing, so the machine, its
load average and the torch thread count are recorded with every result: a number from a busy shared machine
is a lower bound, not the product's speed.
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from au_core import atomic

log = logging.getLogger(__name__)

MARKER = "bench_inputs.json"


class BenchError(RuntimeError):
    """A benchmark could not run or its results are wrong (not merely slow)."""


def exit_status(prog: str, command: Callable[[], int]) -> int:
    """``command()``'s exit status; a :class:`BenchError` ends it with one line on stderr and status 2."""
    try:
        return command()
    except BenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


@dataclass
class CorpusBenchOptions:
    """The synthetic corpus and tiny models a benchmark runs on (shared by the features and Ray benchmarks, so
    both time the same work)."""

    out: Path
    videos: int = 40
    frames: int = 300
    max_new_tokens: int = 16
    batch_size: int = 64
    seed: int = 0
    regenerate: bool = False
    tiny_qwen2: Optional[Path] = None  # an existing tiny model folder to use instead of building one
    tiny_clip: Optional[Path] = None  # an existing tiny CLIP file to use instead of building one


@dataclass(frozen=True)
class Target:
    """``value op threshold``, e.g. ``Target("<=", 10)`` for "at most 10 s"."""

    op: str
    threshold: float

    def met(self, value: float) -> bool:
        return value <= self.threshold if self.op == "<=" else value >= self.threshold

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.threshold:g}"


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    target: Optional[Target] = None
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        return None if self.target is None or not math.isfinite(self.value) else self.target.met(self.value)

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "target": str(self.target) if self.target else None, "met": self.met, "note": self.note}


@dataclass
class BenchResult:
    name: str
    metrics: List[Metric] = field(default_factory=list)
    details: Dict[str, Any] = field(default_factory=dict)
    ok: bool = True  # False when a correctness check failed (features differ): `make bench` then exits 1

    def add(self, name: str, value: float, unit: str, target: Optional[Target] = None, note: str = "") -> Metric:
        metric = Metric(name, float(value), unit, target, note)
        self.metrics.append(metric)
        return metric

    def to_json(self) -> Dict[str, Any]:
        return {"ok": self.ok, "metrics": [m.to_json() for m in self.metrics], "details": self.details}


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e9:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Aligned plain-text columns under a dashed header line; columns in ``right`` are right-aligned."""
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(results: List[BenchResult]) -> str:
    """A plain-text table: one line per metric, with its target and whether it is met."""
    header = ("benchmark", "metric", "value", "unit", "target", "met", "note")
    rows = []
    for res in results:
        for m in res.metrics:
            met = "" if m.met is None else ("yes" if m.met else "NO")
            rows.append((res.name, m.name, _fmt(m.value), m.unit, str(m.target or ""), met, m.note))
    return text_table(header, rows, right=(2,))  # numbers right-aligned


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.seconds = math.nan
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextlib.contextmanager
def profiled(enabled: bool, dump: Path, top: int = 20) -> Iterator[Dict[str, Any]]:
    """Run the block under cProfile when ``enabled``: write ``dump`` (for snakeviz / pstats) and log the
    functions with the most own time. Yields a dict that receives the top entries (for results.json)."""
    found: Dict[str, Any] = {}
    if not enabled:
        yield found
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield found
    finally:
        prof.disable()
        dump.parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(dump))
        stats = pstats.Stats(prof)
        entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # kv[1] = (cc, nc, tt, ct, callers)
        found["profile"] = str(dump)
        found["top_tottime"] = [{"function": f"{Path(fn).name}:{line}({name})", "calls": nc,
                                 "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)}
                                for (fn, line, name), (cc, nc, tt, ct, _) in entries]
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
        log.info("profile written to %s; top %d by own time:\n%s", dump, top, text.getvalue().strip())


def cached_inputs(folder: Path, params: Dict[str, Any], build: Callable[[Path], Dict[str, Any]],
                  regenerate: bool = False) -> Dict[str, Any]:
    """Build generated inputs into ``folder`` once: a rerun with the same ``params`` reuses them.

    The marker holding ``params`` (and what ``build`` returned) is written last, so an interrupted build is
    redone rather than reused half-written.
    """
    marker = folder / MARKER
    if not regenerate and marker.is_file():
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            saved = {}
        if saved.get("params") == params:
            log.info("reusing %s", folder)
            return saved.get("info", {})
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log.info("generating %s (%s) — not timed", folder, ", ".join(f"{k}={v}" for k, v in params.items()))
    info = build(folder)
    marker.write_text(json.dumps({"params": params, "info": info}, indent=2) + "\n", encoding="utf-8")
    return info


def source_digest(module: Any) -> str:
    """A short hash of a module's source: cached inputs built by changed code are rebuilt."""
    return atomic.file_digest(module.__file__)[:12]


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (a cold run must not find a previous run's caches or outputs)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    return info


def loadavg() -> Optional[float]:
    """The 1-minute load average (recorded around timed sections: > cores means the timing is pessimistic)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def as_jsonable(obj: Any) -> Any:
    """Dataclasses and paths inside results → plain JSON values."""
    if hasattr(obj, "__dataclass_fields__"):
        return as_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): as_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

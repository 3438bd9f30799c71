"""The fault suite's figures, printed at the end of every run that collects ``tests/faults``.

Each fault test records what it tried and how it ended with
``record_property("fault_case", "<kind>:<outcome>")`` once its assertions hold, where kind is ``bad-input``,
``kill``, ``race``, ``stale`` (a finished-looking record of another video or input), ``disk-full`` (a full or
read-only output file system) or ``sigterm``, and outcome is ``clean-error``, ``survived`` or ``failed``. A test
of this folder that fails before recording counts as ``failed`` under its file's kind. The summary reads the
recorded properties from the test reports, so it needs no state of its own (and no cache plugin).
"""
from __future__ import annotations

import collections
from typing import Counter, Dict

PROPERTY = "fault_case"
KINDS = ("bad-input", "kill", "race", "stale", "disk-full", "sigterm")
OUTCOMES = ("clean-error", "survived", "failed")
#: The kind of a test that failed before recording one, by the name of its file.
KIND_OF_FILE = {"test_bad_inputs.py": "bad-input", "test_races.py": "race", "test_stale_records.py": "stale",
                "test_disk_full.py": "disk-full", "test_sigterm.py": "sigterm"}
#: The kinds whose cases end well in either way (caught as a clean error, or survived), and how the line says so.
HANDLED = {"stale": "stale records caught", "disk-full": "full or read-only disks stopped cleanly",
           "sigterm": "SIGTERMs handled"}


def fault_counts(reports) -> Dict[str, Counter]:
    """``{kind: Counter(outcome → n)}`` over the call-phase reports (the teardown report repeats properties)."""
    counts: Dict[str, Counter] = collections.defaultdict(collections.Counter)
    for report in reports:
        if getattr(report, "when", None) != "call":
            continue
        recorded = [value for name, value in getattr(report, "user_properties", ()) if name == PROPERTY]
        for value in recorded:
            kind, _, outcome = str(value).partition(":")
            counts[kind][outcome] += 1
        if not recorded and report.failed:
            name = report.nodeid.split("::")[0].rsplit("/", 1)[-1]
            kind = "kill" if name.startswith("test_kill") else KIND_OF_FILE.get(name)
            if kind:
                counts[kind]["failed"] += 1
    return counts


def summary_line(counts: Dict[str, Counter]) -> str:
    """e.g. ``fault suite: 137 bad inputs tried, 137 clean errors; 41 kills survived; 2 races survived``."""
    parts = []
    bad = counts.get("bad-input")
    if bad:
        part = f"{sum(bad.values())} bad inputs tried, {bad['clean-error']} clean errors"
        parts.append(part + (f", {bad['failed']} failed" if bad["failed"] else ""))
    for kind, plural in (("kill", "kills"), ("race", "races")):
        c = counts.get(kind)
        if c:
            tried = sum(c.values())
            parts.append(f"{c['survived']} {plural} survived" + (f" of {tried}" if tried != c["survived"] else ""))
    for kind, label in HANDLED.items():
        c = counts.get(kind)
        if c:
            tried, handled = sum(c.values()), c["survived"] + c["clean-error"]
            parts.append(f"{handled} {label}" + (f" of {tried}" if tried != handled else ""))
    return "fault suite: " + "; ".join(parts)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reports = [r for category in terminalreporter.stats.values() for r in category]
    counts = fault_counts(reports)
    if counts:
        terminalreporter.write_line(summary_line(counts))

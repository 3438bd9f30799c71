"""The figures line at the end of ``make test``: the protocol every fault test records through."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

_spec = importlib.util.spec_from_file_location("fault_suite_conftest", Path(__file__).with_name("conftest.py"))
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)


def report(nodeid, when="call", failed=False, *values):
    return SimpleNamespace(nodeid=nodeid, when=when, failed=failed,
                           user_properties=[("fault_case", v) for v in values] + [("other", "x")])


def test_figures_count_call_reports_once_and_failures_by_file():
    reports = [
        *(report(f"tests/faults/test_bad_inputs.py::t[{i}]", "call", False, "bad-input:clean-error") for i in range(3)),
        report("tests/faults/test_bad_inputs.py::t[0]", "teardown", False, "bad-input:clean-error"),  # repeated
        report("tests/faults/test_bad_inputs.py::t[9]", "call", True),  # failed before recording
        report("tests/faults/test_kills.py::k[0]", "call", False, "kill:survived"),
        report("tests/faults/test_kills.py::k[1]", "call", False, "kill:survived"),
        report("tests/faults/test_races.py::r", "call", False, "race:survived"),
        report("tests/test_other.py::x", "call", True),  # not a fault test
    ]
    line = summary.summary_line(summary.fault_counts(reports))
    assert line == "fault suite: 4 bad inputs tried, 3 clean errors, 1 failed; 2 kills survived; 1 races survived"


def test_a_kill_that_was_not_survived_shows():
    counts = summary.fault_counts([report("tests/faults/test_kills.py::k", "call", False, "kill:failed"),
                                   report("tests/faults/test_kills.py::j", "call", False, "kill:survived")])
    assert summary.summary_line(counts) == "fault suite: 1 kills survived of 2"


def test_stale_disk_and_sigterm_cases_are_counted():
    counts = summary.fault_counts([
        report("tests/faults/test_stale_records.py::a", "call", False, "stale:survived"),
        report("tests/faults/test_stale_records.py::b", "call", False, "stale:clean-error"),
        report("tests/faults/test_stale_records.py::c", "call", True),  # failed before recording
        report("tests/faults/test_disk_full.py::d", "call", False, "disk-full:clean-error"),
        report("tests/faults/test_sigterm.py::e", "call", False, "sigterm:survived"),
        report("tests/faults/test_sigterm.py::f", "call", True),
    ])
    assert summary.summary_line(counts) == ("fault suite: 2 stale records caught of 3; 1 full or read-only disks "
                                            "stopped cleanly; 1 SIGTERMs handled of 2")

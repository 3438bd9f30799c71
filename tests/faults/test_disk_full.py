"""A full or read-only file system under ``--out``: ``precompute``, ``prepare-data`` and ``describe`` stop at once
(no model work after the first failed write) with exit status 1 and one line that names the user's ``--out``,
never a temporary file, and leave no temporary file or staging folder behind.

The file systems are real: a small tmpfs (full) and a read-only tmpfs, mounted by the test, which needs root
(as in CI); elsewhere the tests are skipped, saying why.
"""
import contextlib
import os
import sqlite3
import subprocess
import uuid

import pytest

import au_agent_cli
from au_core import atomic
from au_standins.synthetic import write_video

VIDEOS = 6


def _mount(target, options):
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"au-agent-test-{uuid.uuid4().hex[:8]}",
                           str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip() or done.returncode})")


@pytest.fixture()
def disk(tmp_path):
    """``disk(kind)`` → a folder on a fresh tmpfs: ``"full"`` (room for one small file) or ``"read-only"``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted = []

    def make(kind):
        target = tmp_path / f"disk-{kind}"
        _mount(target, "size=12k,mode=0777" if kind == "full" else "size=64k,ro")
        mounted.append(target)
        return target
    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk_corpus") / "openface"
    for i in range(VIDEOS):
        write_video(root, f"vid_{i}", 40 + 5 * i, seed=40 + i)
    return root


def run(args, capsys):
    capsys.readouterr()
    rc = au_agent_cli.main(["-q", *map(str, args)])
    return rc, capsys.readouterr().err


def described(cache):
    """How many descriptions the agent generated (each is stored in the description cache)."""
    path = cache / "descriptions.sqlite"
    if not path.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute("SELECT COUNT(*) FROM kv").fetchone()[0]


def one_named_line(rc, err, out, what):
    assert rc == 1, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert f"{out}: " in lines[0] and what in lines[0], lines[0]
    assert ".tmp" not in lines[0] and ".partial" not in lines[0], lines[0]


def no_leftovers(root):
    assert [p for p in root.rglob("*") if atomic._TEMP_RE.match(p.name)] == []


@pytest.mark.parametrize("kind, what", [("full", "no space left"), ("read-only", "read-only file system")])
def test_precompute_stops_at_once(kind, what, disk, corpus, tiny_clip, tmp_path, capsys, record_property):
    full_cache = tmp_path / "cache-all"  # how many descriptions the whole corpus needs
    assert run(["precompute", "--openface-dir", corpus, "--out", tmp_path / "all", "--cache-dir", full_cache,
                "--clip-model", tiny_clip, "--backend", "rules", "--chunk-videos", "2"], capsys)[0] == 0
    out, cache = disk(kind) / "features", tmp_path / "cache"
    rc, err = run(["precompute", "--openface-dir", corpus, "--out", out, "--cache-dir", cache,
                   "--clip-model", tiny_clip, "--backend", "rules", "--chunk-videos", "2"], capsys)
    one_named_line(rc, err, out, what)
    assert described(cache) < described(full_cache) / 2  # the first chunk of 2 videos out of 6, at most
    no_leftovers(out.parent)
    record_property("fault_case", "disk-full:clean-error")


@pytest.mark.parametrize("kind, what", [("full", "no space left"), ("read-only", "read-only file system")])
def test_prepare_data_names_out(kind, what, disk, samples, capsys, record_property):
    out = disk(kind) / "dataset"
    rc, err = run(["prepare-data", "--mer-factory-output", samples / "mer_factory", "--openface-dir",
                   samples / "openface", "--out", out], capsys)
    one_named_line(rc, err, out, what)
    no_leftovers(out.parent)
    assert not out.exists()
    record_property("fault_case", "disk-full:clean-error")


@pytest.mark.parametrize("kind, what", [("full", "no space left"), ("read-only", "read-only file system")])
def test_describe_names_out(kind, what, disk, corpus, tmp_path, capsys, record_property):
    out = disk(kind) / "frames.jsonl"
    rc, err = run(["describe", corpus, "--out", out, "--backend", "rules", "--cache-dir", tmp_path / "cache"],
                  capsys)
    one_named_line(rc, err, out, what)
    no_leftovers(out.parent)
    assert not out.exists()
    record_property("fault_case", "disk-full:clean-error")

"""Concurrent ``precompute`` processes: two on one folder, four shards sharing one cache and one folder. The
folder ends byte-identical to one clean run, every process exits 0, and none reports a lock error.
Concurrent ``patch-affectgpt`` runs on one checkout take turns: the checkout ends patched (or reverted) once."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from fixtures.affectgpt import make_checkout
from kill_helpers import REPO, cli_env, short, tree

import au_agent_cli
from au_standins.synthetic import write_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("race_corpus") / "openface"
    for i in range(8):
        write_video(root, f"vid_{i}", 30 + 5 * i, seed=10 + i)
    (root / "broken_a.csv").write_text("")
    (root / "broken_b.csv").write_text("frame, success, AU01_r\n")
    return root


def argv(corpus, out, cache, clip, *extra):
    return ["-q", "precompute", "--openface-dir", str(corpus), "--out", str(out), "--cache-dir", str(cache),
            "--clip-model", str(clip), "--backend", "rules", "--keep-going", "--chunk-videos", "2", *extra]


@pytest.fixture(scope="module")
def clean(corpus, tiny_clip, tmp_path_factory):
    base = tmp_path_factory.mktemp("race_clean")
    assert au_agent_cli.main(argv(corpus, base / "out", base / "cache", tiny_clip)) == 0
    return tree(base / "out")


def together(commands):
    procs = [subprocess.Popen([sys.executable, "-m", "au_agent_cli", *c], cwd=REPO, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    return [(p.wait(timeout=300), p.communicate()[1]) for p in procs]


@pytest.mark.slow
def test_two_runs_on_one_folder(corpus, clean, tiny_clip, tmp_path, record_property):
    out, cache = tmp_path / "out", tmp_path / "cache"
    for rc, err in together([argv(corpus, out, cache, tiny_clip)] * 2):
        assert rc == 0 and "locked" not in err.lower(), err
    assert tree(out) == clean, short(tree(out))
    record_property("fault_case", "race:survived")


@pytest.mark.slow
def test_four_shards_share_one_cache_and_folder(corpus, clean, tiny_clip, tmp_path, record_property):
    from affectgpt_patch.features.precompute import in_shard

    assert len({i for n in ("broken_a", "broken_b") for i in range(4) if in_shard(n, (i, 4))}) == 2
    out, cache = tmp_path / "out", tmp_path / "cache"
    for rc, err in together([argv(corpus, out, cache, tiny_clip, "--shard", f"{i}/4") for i in range(4)]):
        assert rc == 0 and "locked" not in err.lower(), err
    assert tree(out) == clean, short(tree(out))  # failures of every shard listed, features from one cache
    record_property("fault_case", "race:survived")


# ------------------------------------------------------------------------------------------- patch-affectgpt


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory):
    """An original checkout to copy, and the trees of the original and of it patched once."""
    base = tmp_path_factory.mktemp("race_affectgpt")
    original = make_checkout(base / "original")
    patched = shutil.copytree(original, base / "patched")
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(patched)]) == 0
    return original, tree(original), tree(patched)


def patch_argv(root, *extra):
    return ["-q", "patch-affectgpt", str(root), *extra]


@pytest.mark.slow
def test_patch_runs_at_once_on_one_checkout(checkouts, tmp_path, record_property):
    """Three ``patch-affectgpt`` at once (two terminals, a script run twice): all exit 0, the checkout is patched
    once; then three ``--revert`` at once: one restores it, the others find nothing to revert, as they would
    one after the other."""
    source, original, patched = checkouts
    for attempt in range(2):
        root = shutil.copytree(source, tmp_path / f"r{attempt}")
        for rc, err in together([patch_argv(root)] * 3):
            assert rc == 0, err
        assert tree(root) == patched, short(tree(root))
        results = together([patch_argv(root, "--revert")] * 3)
        assert sorted(rc for rc, _ in results) == [0, 1, 1], results
        for rc, err in results:
            if rc:
                assert err.splitlines()[-1].startswith("au-agent patch-affectgpt: error: ") and "not patched" in err
        assert tree(root) == original, short(tree(root))
    record_property("fault_case", "race:survived")


def test_a_held_checkout_lock_is_waited_for_then_named(checkouts, tmp_path, capsys, monkeypatch, record_property):
    """While another run holds the checkout (its flock on the folder), patch, --check and --revert wait a
    bounded time, then refuse in one line naming the checkout and the lock, and write nothing."""
    from affectgpt_patch.patcher import lock

    source, original, _ = checkouts
    root = shutil.copytree(source, tmp_path / "held")
    monkeypatch.setattr(lock, "WAIT_S", 0.3)
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for extra in ([], ["--check"], ["--revert"], ["--dry-run"]):
            capsys.readouterr()
            assert au_agent_cli.main(patch_argv(root, *extra)) == 1, extra
            err = capsys.readouterr().err.splitlines()
            assert err[-1].startswith(f"au-agent patch-affectgpt: error: {root}: locked by another au-agent "
                                      "patch-affectgpt (an flock on this folder)"), (extra, err)
    finally:
        os.close(fd)
    assert tree(root) == original
    assert au_agent_cli.main(patch_argv(root)) == 0  # free again
    record_property("fault_case", "race:survived")


# ------------------------------------------------------------------------------------------- shards finishing at once


@pytest.mark.parametrize("listing", ["manifest", "failures"])
def test_the_last_list_written_is_complete(listing, tmp_path, monkeypatch, record_property):
    """Two shards finish at once: shard X lists the folder and is descheduled before its rename, while shard Y
    adds its last video and writes its list. X's list is the one left, so it must have been taken after Y's
    video: the folder's lock orders list-and-write. (Without it, the four-shard race lost a video from
    ``manifest.jsonl`` or a failure from ``failures.jsonl`` now and then under load.)"""
    from affectgpt_patch.features import precompute
    from au_core import atomic

    out = tmp_path / "out"
    out.mkdir()

    def add(name):
        if listing == "manifest":
            atomic.write_json(out / f"{name}.json", {"name": name, "shape": [8, 4], "mask": [True], "npy_sha256": "0"})
        else:
            atomic.write_json(precompute._failure_path(out, name), {"name": name, "reason": "no valid frame"})

    def finish():
        precompute.write_manifest(out) if listing == "manifest" else precompute.merge_failures(out)

    listed, write_text = threading.Event(), atomic.write_text

    def descheduled(path, text):
        if threading.current_thread().name == "x":
            listed.set()
            time.sleep(0.5)
        write_text(path, text)

    monkeypatch.setattr(atomic, "write_text", descheduled)
    add("a")
    x = threading.Thread(target=finish, name="x")
    x.start()
    assert listed.wait(30)
    add("b")
    finish()  # shard Y
    x.join()
    written = (out / (precompute.MANIFEST if listing == "manifest" else precompute.FAILURES)).read_text()
    assert [json.loads(line)["name"] for line in written.splitlines()] == ["a", "b"]
    record_property("fault_case", "race:survived")

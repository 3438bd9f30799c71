"""SIGKILL ``patch-affectgpt`` and ``--revert`` at their write/rename points and at random instants: the next
``patch-affectgpt`` gives the patched tree and ``--revert`` the original tree, byte for byte and mode for mode.
Also with a second run at the same time, which finishes the killed one's work."""
import random
import shutil
import signal

import pytest
from fixtures.affectgpt import make_checkout
from kill_helpers import Timer, fault_points, kill_after, kill_at, record_kills, sample_points, short, spawn, tree

import au_agent_cli

SEED = 11


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Reference checkouts never written to: the original (with AffectGPT's own 664/755 modes), and patched."""
    base = tmp_path_factory.mktemp("affectgpt")
    original = make_checkout(base / "original", "upstream", "nested")
    (original / "AffectGPT" / "config.py").chmod(0o664)
    (original / "AffectGPT" / "inference_hybird.py").chmod(0o755)
    patched = base / "patched"
    shutil.copytree(original, patched)
    assert patch(patched) == 0
    return {"original": original, "patched": patched}


def patch(root, *extra):
    return au_agent_cli.main(["-q", "patch-affectgpt", str(root), *extra])


def fresh(refs, dst, which):
    return shutil.copytree(refs[which], dst)


def test_patch_and_revert_keep_modes(refs, tmp_path):
    patched = tree(refs["patched"])
    assert patched["AffectGPT/config.py"][1] == 0o664 and patched["AffectGPT/inference_hybird.py"][1] == 0o755
    root = fresh(refs, tmp_path / "r", "patched")
    assert patch(root, "--revert") == 0 and tree(root) == tree(refs["original"])


@pytest.mark.parametrize("start, extra", [("original", []), ("patched", ["--revert"])], ids=["patch", "revert"])
def test_killed_run_recovers_by_patch_or_revert(refs, tmp_path, record_property, start, extra):
    """A ``patch-affectgpt`` (from the original) or ``--revert`` (from the patched tree) killed at each sampled
    point once; the recovery alternates between patching again and reverting."""
    original, patched = tree(refs["original"]), tree(refs["patched"])
    points = fault_points(["patch-affectgpt", fresh(refs, tmp_path / "listing", start), *extra], tmp_path / "log")
    chosen = sample_points(points, per_kind=0, seed=SEED)
    for i, n in enumerate(chosen):
        where = (n, points[n - 1])
        root = fresh(refs, tmp_path / f"k{n}", start)
        kill_at(["patch-affectgpt", root, *extra], n)
        if i % 2 == 0:
            assert patch(root) == 0 and tree(root) == patched, (where, short(tree(root)))
        assert patch(root, "--revert") == 0 and tree(root) == original, (where, short(tree(root)))
    record_property("kill_points", f"{' '.join(['patch-affectgpt', *extra])}: {len(chosen)} of {len(points)}")
    record_kills(record_property, len(chosen))


def test_random_time_kills(refs, tmp_path, record_property):
    original, patched = tree(refs["original"]), tree(refs["patched"])
    with Timer() as t:
        assert kill_after(["patch-affectgpt", fresh(refs, tmp_path / "timing", "original")], 600) is None
    rng = random.Random(SEED)
    for i in range(4):
        revert = i % 2 == 1
        root = fresh(refs, tmp_path / f"r{i}", "patched" if revert else "original")
        kill_after(["patch-affectgpt", root, *(["--revert"] if revert else [])], rng.uniform(0.1, t.seconds))
        assert patch(root) == 0 and tree(root) == patched, i
        assert patch(root, "--revert") == 0 and tree(root) == original, i
    record_kills(record_property, 4)


@pytest.mark.slow
def test_one_of_two_runs_at_once_killed(refs, tmp_path, record_property):
    """Two ``patch-affectgpt`` at once on one checkout, one of them killed at a sampled point: the other exits 0
    and leaves the patched tree (it went first, or waited for the lock and finished the killed run's change);
    the killed one, when it came second, found nothing to do and exited 0 before any point."""
    original, patched = tree(refs["original"]), tree(refs["patched"])
    points = fault_points(["patch-affectgpt", fresh(refs, tmp_path / "listing", "original")], tmp_path / "log")
    chosen = sample_points(points, per_kind=0, seed=SEED, ends=False)
    killed = 0
    for n in chosen:
        root = fresh(refs, tmp_path / f"k{n}", "original")
        victim = spawn(["patch-affectgpt", root], AU_AGENT_FAULT_AT=str(n))
        other = spawn(["patch-affectgpt", root])
        other_err, victim_err = other.communicate(timeout=300)[1], victim.communicate(timeout=300)[1]
        where = (n, points[n - 1])
        assert other.returncode == 0, (where, other_err)
        assert victim.returncode in (0, -signal.SIGKILL), (where, victim.returncode, victim_err)
        assert tree(root) == patched, (where, short(tree(root)))
        assert patch(root, "--revert") == 0 and tree(root) == original, where
        killed += victim.returncode == -signal.SIGKILL
    record_property("kill_points", f"patch-affectgpt beside another: {len(chosen)} of {len(points)}")
    record_kills(record_property, killed)

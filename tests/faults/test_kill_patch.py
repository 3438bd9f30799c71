"""SIGKILL ``patch-affectgpt`` and ``--revert`` at their write/rename points and at random instants: the next
``patch-affectgpt`` gives the patched tree and ``--revert`` the original tree, byte for byte and mode for mode."""
import random
import shutil

import pytest

import au_agent_cli
from fixtures.affectgpt import make_checkout
from kill_helpers import Timer, record_kills, fault_points, kill_after, kill_at, sample_points, short, tree

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

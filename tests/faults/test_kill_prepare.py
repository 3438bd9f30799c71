"""SIGKILL ``prepare-data`` at every point of its folder swap, with RENAME_EXCHANGE and with the two-rename
fallback, and at random instants: the output path holds the old or the new dataset whenever the swap can be
one step, and the rerun gives the uninterrupted run's bytes."""
import random
import shutil

import pytest
from kill_helpers import Timer, fault_points, kill_after, kill_at, record_kills, short, tree

import au_agent_cli

SEED = 3


def argv(samples, out, seed):
    return ["prepare-data", "--mer-factory-output", samples / "mer_factory", "--openface-dir", samples / "openface",
            "--out", out, "--seed", seed]


def run(args):
    return au_agent_cli.main(["-q", *map(str, args)])


@pytest.fixture(scope="module")
def datasets(samples, tmp_path_factory):
    """An older dataset (seed 1) and the one the runs below write (seed 2), made without interruption."""
    base = tmp_path_factory.mktemp("kill_prepare")
    for seed in (1, 2):
        assert run(argv(samples, base / f"seed{seed}", seed)) == 0
    old, new = tree(base / "seed1"), tree(base / "seed2")
    assert old != new
    return base, old, new


@pytest.mark.parametrize("exchange", ["1", "0"], ids=["rename-exchange", "two-renames"])
def test_killed_swap_keeps_old_or_new(samples, datasets, tmp_path, exchange, record_property):
    base, old, new = datasets
    env = {"AU_AGENT_RENAME_EXCHANGE": exchange}
    listing = shutil.copytree(base / "seed1", tmp_path / "listing")
    replacing = fault_points(argv(samples, listing, 2), tmp_path / "log", **env)
    creating = fault_points(argv(samples, tmp_path / "new", 2), tmp_path / "log", **env)
    assert tree(listing) == new and tree(tmp_path / "new") == new
    for existing, points in ((True, replacing), (False, creating)):
        for n in range(1, len(points) + 1):
            out = tmp_path / f"k{n}-{existing}" / "data"
            if existing:
                shutil.copytree(base / "seed1", out)
            kill_at(argv(samples, out, 2), n, **env)
            between = tree(out)
            one_step = exchange == "1" or "aside" not in points[n - 1]
            assert between in ((old, new) if existing else ({}, new)) or not one_step, (n, points[n - 1])
            assert run(argv(samples, out, 2)) == 0 and tree(out) == new, (n, points[n - 1], short(tree(out)))
            assert [p.name for p in out.parent.iterdir()] == ["data"]  # no staging or old folder left
    record_property("kill_points", f"prepare-data ({'exchange' if exchange == '1' else 'two renames'}): "
                                   f"{len(replacing) + len(creating)} of {len(replacing) + len(creating)}")
    record_kills(record_property, len(replacing) + len(creating))


def test_random_time_kills(samples, datasets, tmp_path, record_property):
    base, old, new = datasets
    with Timer() as t:
        assert kill_after(argv(samples, tmp_path / "timing", 2), 600) is None
    rng = random.Random(SEED)
    for i in range(3):
        out = shutil.copytree(base / "seed1", tmp_path / f"r{i}" / "data")
        kill_after(argv(samples, out, 2), rng.uniform(0.3 * t.seconds, t.seconds))
        assert tree(out) in (old, new)
        assert run(argv(samples, out, 2)) == 0 and tree(out) == new, i
        assert [p.name for p in out.parent.iterdir()] == ["data"]
    record_kills(record_property, 3)

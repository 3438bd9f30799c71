"""SIGKILL ``precompute`` at one write/rename point of every kind and at random instants: the rerun leaves the
folder byte-identical to an uninterrupted run (hidden records included, no temporary file left)."""
import random

import pytest
from kill_helpers import Timer, fault_points, kill_after, kill_at, record_kills, sample_points, short, tree

import au_agent_cli
from au_standins.synthetic import write_video

SEED = 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_corpus") / "openface"
    for i in range(4):
        write_video(root, f"vid_{i}", 30 + 9 * i, seed=i)
    (root / "broken.csv").write_text("")  # a failure record and failures.jsonl too
    return root


def argv(corpus, out, cache, clip):
    return ["precompute", "--openface-dir", corpus, "--out", out, "--cache-dir", cache, "--clip-model", clip,
            "--backend", "rules", "--keep-going", "--chunk-videos", "2"]


def run(args):
    return au_agent_cli.main(["-q", *map(str, args)])


@pytest.fixture(scope="module")
def clean(corpus, tiny_clip, tmp_path_factory):
    base = tmp_path_factory.mktemp("kill_clean")
    assert run(argv(corpus, base / "out", base / "cache", tiny_clip)) == 0
    return tree(base / "out")


@pytest.mark.slow
def test_killed_precompute_reruns_to_identical_bytes(corpus, clean, tiny_clip, tmp_path, record_property):
    points = fault_points(argv(corpus, tmp_path / "listing", tmp_path / "c", tiny_clip), tmp_path / "log")
    chosen = sample_points(points, per_kind=0, seed=SEED, ends=False)
    for n in chosen:
        out, cache = tmp_path / f"k{n}", tmp_path / f"c{n}"
        kill_at(argv(corpus, out, cache, tiny_clip), n)
        assert run(argv(corpus, out, cache, tiny_clip)) == 0
        assert tree(out) == clean, (n, points[n - 1], short(tree(out)))
    record_property("kill_points", f"precompute: {len(chosen)} of {len(points)}")
    record_kills(record_property, len(chosen))


@pytest.mark.slow
def test_random_time_kills(corpus, clean, tiny_clip, tmp_path, record_property):
    with Timer() as t:
        assert kill_after(argv(corpus, tmp_path / "timing", tmp_path / "c", tiny_clip), 600) is None
    rng = random.Random(SEED)
    for i in range(2):  # the import of torch takes most of a run: kill in its second half
        out, cache = tmp_path / f"r{i}", tmp_path / f"c{i}"
        kill_after(argv(corpus, out, cache, tiny_clip), rng.uniform(0.5 * t.seconds, t.seconds))
        assert run(argv(corpus, out, cache, tiny_clip)) == 0
        assert tree(out) == clean, (i, short(tree(out)))
    record_kills(record_property, 2)

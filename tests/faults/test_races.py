"""Concurrent ``precompute`` processes: two on one folder, four shards sharing one cache and one folder. The
folder ends byte-identical to one clean run, every process exits 0, and none reports a lock error."""
import subprocess
import sys

import pytest

import au_agent_cli
from au_standins.synthetic import write_video
from kill_helpers import REPO, cli_env, short, tree


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
    from affectgpt_patch.precompute import in_shard

    assert len({i for n in ("broken_a", "broken_b") for i in range(4) if in_shard(n, (i, 4))}) == 2
    out, cache = tmp_path / "out", tmp_path / "cache"
    for rc, err in together([argv(corpus, out, cache, tiny_clip, "--shard", f"{i}/4") for i in range(4)]):
        assert rc == 0 and "locked" not in err.lower(), err
    assert tree(out) == clean, short(tree(out))  # failures of every shard listed, features from one cache
    record_property("fault_case", "race:survived")

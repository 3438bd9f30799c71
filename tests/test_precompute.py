"""`au-agent precompute`: resumable, sharded, atomic; a killed run finishes byte-identical to a clean one."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import au_agent_cli
from affectgpt_patch.features.precompute import in_shard
from au_standins.synthetic import write_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "openface"
    for i in range(24):
        write_video(root, f"vid_{i:03d}", 40 + 7 * i, seed=i)
    return root


def args(corpus, out, cache, *extra, agent=("--backend", "rules"), clip=None):
    return ["-q", "precompute", "--openface-dir", str(corpus), "--out", str(out), "--cache-dir", str(cache),
            "--clip-model", str(clip), *agent, *extra]


def outputs(out):
    return {p.name: p.read_bytes() for p in sorted(Path(out).iterdir()) if not p.name.startswith(".")}


def test_writes_features_json_and_manifest(corpus, tmp_path, tiny_clip):
    assert au_agent_cli.main(args(corpus, tmp_path / "f", tmp_path / "c", clip=tiny_clip)) == 0
    files = outputs(tmp_path / "f")
    assert len([n for n in files if n.endswith(".npy")]) == 24
    manifest = [json.loads(line) for line in files["manifest.jsonl"].decode().splitlines()]
    assert [m["name"] for m in manifest] == [f"vid_{i:03d}" for i in range(24)]
    assert all(m["shape"] == [8, 512] for m in manifest)
    meta = json.loads(files["vid_003.json"])
    assert len(meta["descriptions"]) == 8 and meta["settings"]["sampling"] == "uniform"


def test_rerun_skips_finished_videos(corpus, tmp_path, tiny_clip, capsys):
    out = tmp_path / "f"
    assert au_agent_cli.main(args(corpus, out, tmp_path / "c", clip=tiny_clip)) == 0
    before = outputs(out)
    from affectgpt_patch.agent import create_au_agent
    from affectgpt_patch.features.clip_encoder import ClipTextEncoder
    from affectgpt_patch.features.precompute import PrecomputeOptions, precompute

    summary = precompute(PrecomputeOptions(corpus, out, progress=False),
                         create_au_agent(backend="rules", cache_dir=str(tmp_path / "c")),
                         ClipTextEncoder(str(tiny_clip), "cpu", tmp_path / "c"))
    assert summary["skipped"] == 24 and summary["done"] == 0
    assert outputs(out) == before


def test_killed_run_resumes_to_identical_bytes(corpus, tmp_path, tiny_qwen2, tiny_clip):
    """SIGKILL in the middle of a real run (hf agent, one video per chunk), then rerun."""
    agent = ("--agent", str(tiny_qwen2), "--max-new-tokens", "6")
    clean = tmp_path / "clean"
    assert au_agent_cli.main(args(corpus, clean, tmp_path / "c1", "--chunk-videos", "1", agent=agent,
                                  clip=tiny_clip)) == 0

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "au_agent_cli", *args(corpus, out, tmp_path / "c2", "--chunk-videos", "1",
                                                        agent=agent, clip=tiny_clip)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.is_dir() and len(list(out.glob("*.json"))) >= 6:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = len(list(out.glob("*.json")))
    assert 6 <= partial < 24

    assert au_agent_cli.main(args(corpus, out, tmp_path / "c2", "--chunk-videos", "1", agent=agent,
                                  clip=tiny_clip)) == 0
    assert outputs(out) == outputs(clean)


def test_half_written_video_is_redone(corpus, tmp_path, tiny_clip):
    out = tmp_path / "f"
    assert au_agent_cli.main(args(corpus, out, tmp_path / "c", clip=tiny_clip)) == 0
    good = outputs(out)
    (out / "vid_004.json").unlink()                       # crash between the npy and its json
    (out / "vid_007.npy").write_bytes(b"\x93NUMPY trunc")  # an npy that does not match its json
    assert au_agent_cli.main(args(corpus, out, tmp_path / "c", clip=tiny_clip)) == 0
    assert outputs(out) == good


def test_shards_cover_every_video_once(corpus, tmp_path, tiny_clip):
    names = sorted(p.stem for p in corpus.glob("*.csv"))
    owners = {n: [i for i in range(3) if in_shard(n, (i, 3))] for n in names}
    assert all(len(v) == 1 for v in owners.values())
    out = tmp_path / "f"
    for i in range(3):
        assert au_agent_cli.main(args(corpus, out, tmp_path / "c", "--shard", f"{i}/3", clip=tiny_clip)) == 0
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(m)["name"] for m in manifest) == names
    whole = tmp_path / "whole"
    assert au_agent_cli.main(args(corpus, whole, tmp_path / "c", clip=tiny_clip)) == 0
    assert outputs(out) == outputs(whole)


def test_failed_videos_exit_non_zero_unless_keep_going(corpus, tmp_path, tiny_clip, capsys):
    import shutil

    src = tmp_path / "openface"
    shutil.copytree(corpus, src)
    (src / "broken.csv").write_text("")
    (src / "no_face.csv").write_text("frame, success, AU01_r\n")
    assert au_agent_cli.main(args(src, tmp_path / "f", tmp_path / "c", clip=tiny_clip)) == 1
    assert "2 videos failed" in capsys.readouterr().err
    failures = [json.loads(line) for line in (tmp_path / "f" / "failures.jsonl").read_text().splitlines()]
    assert {f["name"] for f in failures} == {"broken", "no_face"}
    assert len(list((tmp_path / "f").glob("vid_*.npy"))) == 24  # the good videos were all done
    assert au_agent_cli.main(args(src, tmp_path / "f", tmp_path / "c", "--keep-going", clip=tiny_clip)) == 0


@pytest.mark.parametrize("extra,message", [(["--shard", "3/3"], "need 0 <= i < N"),
                                          (["--shard", "x"], "--shard must look like i/N")])
def test_bad_arguments(corpus, tmp_path, tiny_clip, capsys, extra, message):
    assert au_agent_cli.main(args(corpus, tmp_path / "f", tmp_path / "c", *extra, clip=tiny_clip)) == 1
    assert message in capsys.readouterr().err


def test_features_do_not_depend_on_the_company_they_keep(corpus, tmp_path, tiny_clip):
    """Without any cache, a video encoded alone, inside the corpus, or with other batch sizes: same bytes."""
    import shutil

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(corpus / "vid_005.csv", alone)
    runs = {"corpus": (corpus, ()), "alone": (alone, ()), "batch3": (corpus, ("--batch-size", "3")),
            "chunk5": (corpus, ("--chunk-videos", "5"))}
    for name, (src, extra) in runs.items():
        assert au_agent_cli.main(args(src, tmp_path / f"out_{name}", tmp_path / "c", "--no-cache", *extra,
                                     clip=tiny_clip)) == 0
    npy = {name: (tmp_path / f"out_{name}" / "vid_005.npy").read_bytes() for name in runs}
    assert len(set(npy.values())) == 1


def test_one_bad_video_does_not_stop_the_corpus(corpus, tmp_path, tiny_clip, capsys):
    """A corrupt earlier {name}.json is redone; a name too long for the file system, an unreadable CSV and a
    CSV without a valid frame are that video's failures, listed once each, and cleared once they succeed."""
    import shutil

    src = shutil.copytree(corpus, tmp_path / "openface")
    long_name = "v" * 251  # {name}.csv fits in 255 bytes, {name}.json does not
    shutil.copy(src / "vid_001.csv", src / f"{long_name}.csv")
    no_valid = (src / "vid_002.csv").read_text().splitlines()
    header = no_valid[0].split(",")
    col = [c.strip() for c in header].index("success")
    rows = [",".join("0" if i == col else v for i, v in enumerate(r.split(","))) for r in no_valid[1:]]
    (src / "no_valid.csv").write_text("\n".join([no_valid[0], *rows]) + "\n")
    out = tmp_path / "f"
    out.mkdir()
    assert au_agent_cli.main(args(src, out, tmp_path / "c", "--keep-going", clip=tiny_clip)) == 0
    good = (out / "vid_003.json").read_bytes()
    (out / "vid_003.json").write_bytes(b"\xff\xfe not json")  # corrupt earlier output
    (out / "vid_004.json").write_text("[1, 2]")                 # valid JSON, wrong shape
    (out / "vid_005.npy").unlink()
    (out / "vid_005.npy").mkdir()                              # a folder where a file goes
    assert au_agent_cli.main(args(src, out, tmp_path / "c", "--keep-going", clip=tiny_clip)) == 0
    assert (out / "vid_003.json").read_bytes() == good and json.loads((out / "vid_004.json").read_text())["name"]
    failures = {json.loads(line)["name"]: json.loads(line)["reason"]
                for line in (out / "failures.jsonl").read_text().splitlines()}
    assert set(failures) == {long_name, "no_valid", "vid_005"}
    assert "cannot write its features" in failures[long_name] and "no valid frame" in failures["no_valid"]
    assert len(list((out / ".failures").iterdir())) == 3
    assert json.loads((out / "no_valid.json").read_text())["mask"] == [False] * 8  # as the mixin computes it
    (out / "vid_005.npy").rmdir()
    shutil.copy(src / "vid_002.csv", src / "no_valid.csv")  # fixed: it succeeds now
    assert au_agent_cli.main(args(src, out, tmp_path / "c", "--keep-going", clip=tiny_clip)) == 0
    assert [json.loads(line)["name"] for line in (out / "failures.jsonl").read_text().splitlines()] == [long_name]
    (src / f"{long_name}.csv").unlink()  # gone from the corpus
    assert au_agent_cli.main(args(src, out, tmp_path / "c", clip=tiny_clip)) == 0  # a clean rerun
    assert not (out / "failures.jsonl").exists() and not list((out / ".failures").iterdir())


def test_refuses_a_folder_it_did_not_write(corpus, tmp_path, tiny_clip, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.json").write_text("{}")
    assert au_agent_cli.main(args(corpus, out, tmp_path / "c", clip=tiny_clip)) == 1
    assert "not empty and not an output of au-agent precompute" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.json"]


PROBE = ("import sys, au_agent_cli; rc = au_agent_cli.main(); "
         "print('loaded:', sorted(m for m in ('torch', 'transformers', 'clip', 'numpy') if m in sys.modules), "
         "file=sys.stderr); "
         "sys.exit(rc)")


def probed(argv):
    """Run the CLI in a fresh process; its stderr ends with the heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=300,
                          cwd=Path(au_agent_cli.__file__).parents[1])
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()[-1]


def test_a_rerun_with_nothing_to_do_loads_no_model(tmp_path, tiny_qwen2, tiny_clip):
    corpus = tmp_path / "openface"
    for i in range(3):
        write_video(corpus, f"v{i}", 20 + 5 * i, seed=70 + i)
    agent = ("--backend", "hf", "--agent", str(tiny_qwen2), "--device", "cpu", "--max-new-tokens", "4")
    argv = args(corpus, tmp_path / "f", tmp_path / "c", agent=agent, clip=tiny_clip) + ["--clip-device", "cpu"]
    assert probed(argv) == "loaded: ['clip', 'numpy', 'torch', 'transformers']"  # the first run describes, encodes
    before = outputs(tmp_path / "f")
    manifest = (tmp_path / "f" / "manifest.jsonl").stat()
    assert probed(argv) == "loaded: []"  # finished: neither model, not even torch or numpy
    again = (tmp_path / "f" / "manifest.jsonl").stat()  # and it writes nothing: the same manifest file, unsynced
    assert (again.st_ino, again.st_mtime_ns) == (manifest.st_ino, manifest.st_mtime_ns)
    for suffix in (".npy", ".json"):
        (tmp_path / "f" / f"v1{suffix}").unlink()
    # redone from the description and CLIP caches alone: no CLIP; transformers only for the caption's tokenizer
    assert probed(argv) == "loaded: ['numpy', 'torch', 'transformers']"
    assert outputs(tmp_path / "f") == before
    describe = ["-q", "describe", str(corpus), "--out", str(tmp_path / "frames.jsonl"), "--cache-dir",
                str(tmp_path / "c"), *agent]
    assert au_agent_cli.main(describe) == 0  # every frame, not only the T chosen ones: describes the others
    assert probed(describe) == "loaded: ['numpy']"  # every description is cached: no model (numpy reads the CSVs)

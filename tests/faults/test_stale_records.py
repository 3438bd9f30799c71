"""Resume verifies what it keeps: a ``{name}.npy/.json`` pair of another video, or one whose OpenFace CSV has
changed since, is redone by ``precompute`` (which says how many) and refused by the dataset's feature source
(one line naming the file); a CSV that was only touched is not redone."""
import json
import logging
import os
import shutil

import pytest
from kill_helpers import short, tree

import au_agent_cli
from affectgpt_patch import per_process
from affectgpt_patch.features.source import FeatureSource, SourceSettings
from affectgpt_patch.features.store import FeatureSettings
from au_core.errors import AUAgentError
from au_standins.synthetic import write_video

VIDEOS = ("vid_0", "vid_1", "vid_2")


def write_corpus(root, changed=False):
    for i, name in enumerate(VIDEOS):
        write_video(root, name, 30 + 7 * i, seed=100 + i if not (changed and name == "vid_2") else 999)
    return root


def argv(corpus, out, cache, clip):
    return ["-q", "precompute", "--openface-dir", corpus, "--out", out, "--cache-dir", cache, "--clip-model", clip,
            "--backend", "rules", "--chunk-videos", "2"]


def run(*args):
    return au_agent_cli.main([str(a) for a in args])


def same_features(a, b):
    """The trees of two runs, less the input fingerprints' mtimes (the corpora were written at other times)."""
    def strip(t):
        out = {}
        for rel, (data, mode) in t.items():
            if rel.endswith(".json") and not rel.startswith("."):
                record = json.loads(data)
                record.get("input", {}).pop("mtime_ns", None)
                data = json.dumps(record, sort_keys=True).encode()
            elif rel == "manifest.jsonl":
                continue
            out[rel] = (data, mode)
        return out
    return strip(a) == strip(b)


@pytest.fixture()
def made(tmp_path, tiny_clip):
    """A finished precompute folder, and a clean run over the corpus with vid_2's CSV replaced."""
    corpus = write_corpus(tmp_path / "openface")
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert run(*argv(corpus, out, cache, tiny_clip)) == 0
    changed = write_corpus(tmp_path / "changed" / "openface", changed=True)
    assert run(*argv(changed, tmp_path / "changed" / "out", tmp_path / "changed" / "cache", tiny_clip)) == 0
    return corpus, out, cache, tree(out), tree(tmp_path / "changed" / "out")


def copy_pair(out, source, target):
    for suffix in (".npy", ".json"):
        shutil.copyfile(out / f"{source}{suffix}", out / f"{target}{suffix}")


def test_resume_redoes_a_pair_of_another_video(made, tiny_clip, caplog, record_property):
    corpus, out, cache, clean, _ = made
    copy_pair(out, "vid_1", "vid_0")
    with caplog.at_level(logging.WARNING):
        assert run(*argv(corpus, out, cache, tiny_clip)) == 0
    assert tree(out) == clean, short(tree(out))
    assert [json.loads(line)["name"] for line in (out / "manifest.jsonl").read_text().splitlines()] == list(VIDEOS)
    assert "redoing 1 finished videos" in caplog.text and "belongs to another video (1)" in caplog.text
    record_property("fault_case", "stale:survived")


def test_resume_redoes_a_video_whose_csv_changed(made, tiny_clip, caplog, record_property):
    corpus, out, cache, clean, changed = made
    shutil.copyfile(corpus.parent / "changed" / "openface" / "vid_2.csv", corpus / "vid_2.csv")
    with caplog.at_level(logging.WARNING):
        assert run(*argv(corpus, out, cache, tiny_clip)) == 0
    now = tree(out)
    assert now != clean and same_features(now, changed), short(now)
    assert "redoing 1 finished videos" in caplog.text and "its input changed (1)" in caplog.text
    record_property("fault_case", "stale:survived")


def test_resume_keeps_a_video_whose_csv_was_only_touched(made, tiny_clip, caplog):
    corpus, out, cache, clean, _ = made
    st = os.stat(corpus / "vid_1.csv")
    os.utime(corpus / "vid_1.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO):
        assert run("precompute", "--openface-dir", corpus, "--out", out, "--cache-dir", cache, "--clip-model",
                   tiny_clip, "--backend", "rules", "--chunk-videos", "2") == 0
    assert tree(out) == clean and "0 done, 3 skipped" in caplog.text and "redoing" not in caplog.text


def test_resume_redoes_records_written_before_fingerprints(made, tiny_clip, caplog, record_property):
    corpus, out, cache, clean, _ = made
    for name in VIDEOS:  # what an older au-agent wrote: the same record without "input"
        record = json.loads((out / f"{name}.json").read_text())
        del record["input"]
        (out / f"{name}.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        assert run(*argv(corpus, out, cache, tiny_clip)) == 0
    assert tree(out) == clean and "has no input fingerprint (3)" in caplog.text
    record_property("fault_case", "stale:survived")


def test_resume_says_why_it_redoes_videos_made_otherwise(made, tiny_clip, caplog, record_property):
    """Another frame count redoes every finished video, and says so: the user learns why nothing was skipped."""
    corpus, out, cache, _, _ = made
    without_quiet = [str(a) for a in argv(corpus, out, cache, tiny_clip)][1:]  # the summary is logged at INFO
    with caplog.at_level(logging.INFO):
        assert au_agent_cli.main(without_quiet + ["--frames", "4"]) == 0
    assert "redoing 3 finished videos whose record was made otherwise: T 8 (config: 4) (3)" in caplog.text
    assert "3 done, 0 skipped" in caplog.text and "3 redone" in caplog.text
    assert all(json.loads((out / f"{name}.json").read_text())["shape"][0] == 4 for name in VIDEOS)
    record_property("fault_case", "stale:survived")


@pytest.fixture()
def source(made, tiny_clip):
    """``make(openface=True)``: a fresh feature source over the finished folder (with or without the CSVs)."""
    corpus, out, cache, _, _ = made
    per_process.reset()

    def make(openface=True):
        settings = SourceSettings(use_au_agent=True, au_precomputed_dir=str(out), au_clip_model=str(tiny_clip),
                                  openface_output_dir=str(corpus) if openface else None)
        return FeatureSource(settings, FeatureSettings(frames=8), {"au_agent_backend": "rules",
                                                                   "au_agent_cache_dir": str(cache)})
    return make, corpus, out


@pytest.mark.parametrize("fault", ["foreign pair", "changed csv"])
def test_feature_source_refuses_a_stale_record(fault, source, record_property):
    make, corpus, out = source
    make().check(list(VIDEOS))  # the fresh folder passes
    if fault == "foreign pair":
        copy_pair(out, "vid_1", "vid_0")
        bad = "vid_0"
    else:
        write_video(corpus, "vid_2", 44, seed=999)
        bad = "vid_2"
    with pytest.raises(AUAgentError, match="stale") as check:
        make().check(list(VIDEOS))
    assert str(out) in str(check.value) and f"{bad}.json" in str(check.value)
    with pytest.raises(AUAgentError, match="stale precomputed AU features") as sample:
        make().get(bad)
    assert sample.value.path == str(out / f"{bad}.json") and "\n" not in str(sample.value)
    if fault == "foreign pair":  # the name is checked even where the CSVs are not reachable
        with pytest.raises(AUAgentError, match="of video 'vid_1'"):
            make(openface=False).get(bad)
    record_property("fault_case", "stale:clean-error")

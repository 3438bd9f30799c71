import json

import pytest

from au_core.errors import AUAgentError
from data_prep import clean
from data_prep.sources import read_alpaca, read_mer_factory_output
from data_prep.sources.alpaca import LABEL_REMOVED


def records(samples):
    return list(read_mer_factory_output(samples / "mer_factory", progress=False))


def test_every_schema_is_read(samples):
    by_source = {}
    for r in records(samples):
        by_source.setdefault(r.source, []).append(r)
    assert set(by_source) == {"per_frame", "image_analysis", "merr"}
    per_frame = by_source["per_frame"]
    assert {r.video for r in per_frame} == {f"sample_{i:05d}" for i in range(12)}
    data = json.loads((samples / "mer_factory/sample_00003/sample_00003_au_analysis.json").read_text())
    first = next(r for r in per_frame if r.video == "sample_00003")
    assert first.description == data["fine_grained_descriptions"][str(first.frame)]
    entry = next(e for e in data["per_frame_au_descriptions"] if e["frame"] == first.frame)
    assert first.au_values == {k[:-2]: v for k, v in entry["active_aus"].items()}


def test_image_analysis_reverse_maps_names(tmp_path):
    d = tmp_path / "out" / "face_1"
    d.mkdir(parents=True)
    (d / "face_1_image_analysis.json").write_text(json.dumps({
        "au_text_description": "Cheek raiser (intensity: 1.45), Lip corner puller (smile) (intensity: 1.74)",
        "llm_au_description": "A warm smile."}))
    (rec,) = read_mer_factory_output(tmp_path / "out", progress=False)
    assert (rec.video, rec.frame, rec.au_values, rec.description) == (
        "face_1", 1, {"AU06": 1.45, "AU12": 1.74}, "A warm smile.")


def test_legacy_keys_and_suffixes(tmp_path):
    d = tmp_path / "out" / "old"
    d.mkdir(parents=True)
    (d / "old_image_data.json").write_text(json.dumps({
        "peak_au_text": "Lips part (intensity: 1.20)", "llm_facial_summary": "Lips apart."}))
    (rec,) = read_mer_factory_output(tmp_path / "out", progress=False)
    assert (rec.video, rec.au_values, rec.description) == ("old", {"AU25": 1.2}, "Lips apart.")


def test_merr_values_from_top_aus_and_no_text(samples):
    merr = [r for r in records(samples) if r.source == "merr" and r.video == "clip_000"]
    (rec,) = merr
    data = json.loads((samples / "mer_factory/clip_000/clip_000_merr_data.json").read_text())
    info = data["overall_peak_frame_info"]
    assert rec.frame == info["frame_number"]
    assert rec.au_values == {k[:-2]: v for k, v in info["top_aus_intensities"].items()}
    assert rec.description is None
    assert clean.clean_record(rec)[1] == clean.NO_DESCRIPTION


def test_upstream_au_analysis_values_from_csv(tmp_path, samples):
    import shutil

    d = tmp_path / "out" / "clip_000"
    d.mkdir(parents=True)
    shutil.copy(samples / "mer_factory/clip_000/clip_000.csv", d)
    (d / "clip_000_au_analysis.json").write_text(json.dumps({
        "chronological_emotion_peaks": ["Peak at 1.00s: happy (slight)"],
        "overall_peak_au_description": "Cheek raiser (intensity: 1.45)"}))
    (rec,) = read_mer_factory_output(tmp_path / "out", progress=False)
    assert rec.au_values and rec.description is None  # peak frame AUs recomputed from the CSV


def test_alpaca_import_removes_labels(samples):
    recs = list(read_alpaca([samples / "legacy_alpaca/au_instruction_dataset_val.jsonl"]))
    assert len(recs) == 16 and all(LABEL_REMOVED in r.notes for r in recs)
    assert all(r.video is None and r.au_values for r in recs)
    assert sum(r.problem is not None for r in recs) == 1  # the record whose values and descriptions disagree


@pytest.mark.parametrize("content,match", [
    ('{"input": "Mood: calm", "output": "x"}\n', "unknown input line"),
    ('{"input": "AU values: lots", "output": "x"}\n', "cannot read AU values"),
    ('not json\n', "line 1 is not JSON"),
    ('{"output": "x"}\n', "record 0 is not an object"),
])
def test_alpaca_bad_records(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(AUAgentError, match=match) as e:
        list(read_alpaca([path]))
    assert str(path) in str(e.value)


def test_wrapper_json_is_accepted(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"train": [{"instruction": "i", "input": "AU values: AU01: 1.50", "output": "a"}],
                                "validation": [{"instruction": "i", "input": "AU01: 2.00", "output": "b"}],
                                "metadata": {"total_samples": 2}}))
    recs = list(read_alpaca([path]))
    assert [r.au_values for r in recs] == [{"AU01": 1.5}, {"AU01": 2.0}]


def test_invalid_json_names_file(tmp_path):
    d = tmp_path / "out" / "v"
    d.mkdir(parents=True)
    (d / "v_au_analysis.json").write_text("{broken")
    with pytest.raises(AUAgentError, match="invalid JSON at line 1"):
        list(read_mer_factory_output(tmp_path / "out", progress=False))


@pytest.mark.parametrize("text,expected", [
    ("system\nYou are x.\nuser\nDescribe.\nassistant\nThe brows lift.", "The brows lift."),
    ("  The  brows\nlift. ", "The brows lift."),
])
def test_clean_text(text, expected):
    assert clean.clean_text(text)[0] == expected

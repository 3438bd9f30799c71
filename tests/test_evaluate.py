import json

import pytest

import au_agent_cli
from affectgpt_patch.quality.evaluate import FILES, SYSTEMS, load_split, text_similarity
from au_core import contract
from au_core.errors import AUAgentError


def run_eval(dataset, out, cache_dir, *extra):
    return au_agent_cli.main(["-q", "eval", "--dataset", str(dataset), "--out", str(out),
                              "--cache-dir", str(cache_dir), *map(str, extra)])


def load(path):
    return json.loads(path.read_text())


def without_timing(report):
    return {k: v for k, v in report.items() if k != "timing"}


@pytest.fixture(scope="module")
def rules_eval(sample_dataset, tmp_path_factory):
    """Two runs of ``eval --backend rules`` on the sample val split, sharing one description cache."""
    base = tmp_path_factory.mktemp("eval")
    for name in ("first", "second"):
        assert run_eval(sample_dataset / "val.json", base / name, base / "cache", "--backend", "rules") == 0
    return base / "first", base / "second"


def test_rules_backend_mentions_exactly_the_active_aus(rules_eval):
    report = load(rules_eval[0] / "report.json")
    assert list(report["systems"]) == list(SYSTEMS)
    for name in ("agent", "rules"):
        f = report["systems"][name]["fidelity"]
        assert (f["precision"], f["recall"], f["f1"], f["hallucination_rate"], f["omission_rate"]) == (1, 1, 1, 0, 0)
        assert f["hallucinated"] == f["missed"] == 0
    assert report["systems"]["agent"]["bleu"] == report["systems"]["rules"]["bleu"]


def test_teacher_is_scored_and_is_not_perfect(rules_eval, sample_dataset):
    report = load(rules_eval[0] / "report.json")
    teacher = report["systems"]["teacher"]
    assert teacher["bleu"] is None and teacher["rouge_l"] is None  # the references themselves
    assert teacher["fidelity"]["f1"] < 1.0 and teacher["fidelity"]["hallucinated"] >= 1
    assert report["dataset"]["records"] == len(load(sample_dataset / "val.json"))
    md = (rules_eval[0] / "report.md").read_text()
    for label in ("agent (rules)", "teacher (reference texts)", "rules baseline"):
        assert f"| {label} |" in md
    assert "## Per AU" in md and "## Throughput and memory" in md


def test_text_metrics():
    assert text_similarity(["the brows are lowered"], ["the brows are lowered"]) == {"bleu": 100.0, "rouge_l": 1.0}
    scores = text_similarity(["the brows are lowered today"], ["the brows are raised"])
    assert 0 < scores["bleu"] < 100 and 0 < scores["rouge_l"] < 1


def test_report_files_and_predictions(rules_eval, sample_dataset):
    out = rules_eval[0]
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in ("au_f1.png", "lengths.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = load(sample_dataset / "val.json")
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["input"] for p in lines] == [r["input"] for r in records]
    assert [p["reference"] for p in lines] == [r["output"] for r in records]
    for p in lines:
        assert p["active"] == sorted(contract.parse_input(p["input"]))
        assert p["mentioned"]["prediction"] == p["active"] and p["f1"]["prediction"] == 1.0
        assert set(p["mentioned"]) == {"prediction", "reference"}


def test_report_json_is_deterministic_apart_from_timing(rules_eval):
    first, second = (load(out / "report.json") for out in rules_eval)
    assert without_timing(first) == without_timing(second)
    assert list(first) == list(second) and list(first)[-1] == "timing"
    n = first["dataset"]["distinct_inputs"]
    assert (first["timing"]["generated"], first["timing"]["cache_hits"]) == (n, 0)
    assert (second["timing"]["generated"], second["timing"]["cache_hits"]) == (0, n)
    assert first["timing"]["peak_rss_mib"] > 0


def test_limit_and_no_cache(sample_dataset, tmp_path):
    assert run_eval(sample_dataset / "val.json", tmp_path / "out", tmp_path / "cache", "--backend", "rules",
                    "--limit", 3, "--no-cache") == 0
    report = load(tmp_path / "out" / "report.json")
    assert report["dataset"]["records"] == 3 and report["dataset"]["limit"] == 3
    assert report["timing"]["cache_hits"] == 0 and not (tmp_path / "cache").exists()


GOOD = {"instruction": contract.INSTRUCTION, "input": "AU04: 1.20", "output": "Brow lowering.", "system": ""}


@pytest.mark.parametrize("name, content, problem", [
    ("missing.json", None, "dataset file not found"),
    ("broken.json", "[{", "not valid JSON"),
    ("dict.json", json.dumps({"train": []}), "expected a JSON list"),
    ("empty.json", "[]", "the split has no records"),
    ("no_output.json", json.dumps([GOOD, {**GOOD, "output": ""}]), "record 1 has no 'output' text"),
    ("no_input.json", json.dumps([{k: v for k, v in GOOD.items() if k != "input"}]), "record 0 has no 'input' text"),
    ("label.json", json.dumps([{**GOOD, "input": "Emotion: [happy]\nAU values: AU12: 2.00"}]),
     "not a contract input string"),
])
def test_bad_datasets_give_one_error_line(tmp_path, capsys, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    rc = run_eval(path, tmp_path / "out", tmp_path / "cache", "--backend", "rules")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("au-agent eval: error: ") and problem in err[0] and name in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_options_give_one_error_line(sample_dataset, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for extra, problem in ((["--limit", "0"], "--limit"), (["--backend", "hf"], "--agent"),
                           (["--agent", str(tmp_path / "nowhere")], "nowhere")):
        rc = run_eval(sample_dataset / "val.json", tmp_path / "out", tmp_path / "cache", *extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and problem in err[0], (extra, err)
    rc = run_eval(sample_dataset / "val.json", tmp_path / "file", tmp_path / "cache", "--backend", "rules")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "not a folder" in err[0]


def test_load_split_reads_jsonl(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "video": "v1", "frame": 7}) + "\n")
    records = load_split(path)
    assert [(r.video, r.frame) for r in records] == [("", None), ("v1", 7)]
    assert len(load_split(path, limit=1)) == 1
    with pytest.raises(AUAgentError, match="--limit"):
        load_split(path, limit=0)


def test_eval_with_the_tiny_trained_adapter(tiny_adapter, sample_dataset, rules_eval, tmp_path):
    """The hf backend end to end: base model + LoRA adapter from an ``au-agent train`` folder."""
    out = tmp_path / "out"
    assert run_eval(sample_dataset / "val.json", out, tmp_path / "cache", "--agent", tiny_adapter, "--limit", 4,
                    "--batch-size", 2, "--max-new-tokens", 24, "--device", "cpu") == 0
    report = load(out / "report.json")
    assert report["agent"]["backend"] == "hf" and report["agent"]["lora_weights"]
    assert report["dataset"]["records"] == 4 and report["timing"]["generated"] == 4
    agent = report["systems"]["agent"]
    assert 0.0 <= agent["fidelity"]["f1"] <= 1.0 and agent["bleu"] is not None
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and all(isinstance(p["prediction"], str) for p in predictions)
    for name in FILES:
        assert (out / name).is_file(), name


def test_feature_similarity_in_clip_space(sample_dataset, tiny_clip, tmp_path):
    """``--clip-model``: each system's CLIP text features against the teacher's (the teacher scores 1 against
    itself) and the features' separation of expressions, in report.json, report.md, the terminal table and a
    chart; the numbers are the cosines of the features the encoder gives."""
    import numpy as np

    from affectgpt_patch.features.clip_encoder import load_clip_text_encoder
    from affectgpt_patch.quality.evaluate import FEATURE_CHART

    out = tmp_path / "out"
    assert run_eval(sample_dataset / "val.json", out, tmp_path / "cache", "--backend", "rules",
                    "--clip-model", tiny_clip) == 0
    report = load(out / "report.json")
    features = report["features"]
    assert features["clip_model"] == str(tiny_clip) and features["dim"] > 0
    assert set(features["systems"]) == set(SYSTEMS)
    assert features["systems"]["teacher"]["cosine_to_teacher"] == 1.0
    records = load(sample_dataset / "val.json")
    assert features["pair_records"] == len(records)
    encoder = load_clip_text_encoder(str(tiny_clip), use_cache=False)
    from affectgpt_patch.agent.rules import rules_description

    rules = encoder.encode([rules_description(r["input"]) for r in records])
    teacher = encoder.encode([r["output"] for r in records])
    expected = float((rules * teacher).sum(axis=1).mean())
    assert features["systems"]["rules"]["cosine_to_teacher"] == pytest.approx(expected, abs=1e-3)
    actives = [frozenset(contract.parse_input(r["input"])) for r in records]
    same = [(i, j) for i in range(len(records)) for j in range(len(records)) if i != j and actives[i] == actives[j]]
    if same:
        want = float(np.mean([rules[i] @ rules[j] for i, j in same]))
        assert features["systems"]["rules"]["same_aus_cosine"] == pytest.approx(want, abs=1e-3)
    f = features["systems"]["rules"]
    if f["separation"] is not None:
        assert f["separation"] == pytest.approx(f["same_aus_cosine"] - f["different_aus_cosine"], abs=2e-4)
    md = (out / "report.md").read_text()
    assert "## Feature similarity" in md and "| rules baseline |" in md.split("## Feature similarity")[1]
    assert f"lexicon `{report['lexicon_version']}`" in md
    assert FEATURE_CHART in report["files"] and (out / FEATURE_CHART).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_clip_model_the_report_says_how_to_get_features(rules_eval):
    report = load(rules_eval[0] / "report.json")
    assert report["features"] is None
    assert "pass `--clip-model`" in (rules_eval[0] / "report.md").read_text()


def test_a_bad_clip_model_is_one_error_line(sample_dataset, tmp_path, capsys):
    rc = run_eval(sample_dataset / "val.json", tmp_path / "out", tmp_path / "cache", "--backend", "rules",
                  "--clip-model", tmp_path / "no_clip.pt")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no_clip.pt" in err[0], err
    assert not (tmp_path / "out").exists()

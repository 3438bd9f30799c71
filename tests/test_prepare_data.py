import json
import subprocess
import sys

import pytest

import au_agent_cli
from au_core import contract, mer_factory
from data_prep import clean
from data_prep.build import DATASET_FILES, TRAIN_SPLIT, VAL_SPLIT

LABELS = ("happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt", "tense", "Emotion")


def run_cli(*args):
    return au_agent_cli.main(["-q", *map(str, args)])


def prepare(samples, out, *extra):
    return run_cli("prepare-data", "--mer-factory-output", samples / "mer_factory", "--openface-dir",
                   samples / "openface", "--import-alpaca", samples / "legacy_alpaca/au_instruction_dataset_val.jsonl",
                   "--out", out, *extra)


@pytest.fixture(scope="module")
def dataset(samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "ds"
    assert prepare(samples, out) == 0
    return out


def load(path):
    return json.loads(path.read_text())


def test_output_files_and_registration(dataset):
    names = {p.name for p in dataset.iterdir()}
    assert names == {"au_instruction_dataset.json", "au_instruction_dataset.jsonl", "train.json", "val.json",
                     "dataset_info.json", "contract.json", "stats.json", "stats.md", "stats.png",
                     ".au_agent_output.json"}
    info = load(dataset / "dataset_info.json")
    assert set(info) == {TRAIN_SPLIT, VAL_SPLIT}
    for split, entry in info.items():
        assert entry["file_name"] == DATASET_FILES[split]
        assert entry["columns"]["prompt"] == "instruction" and entry["columns"]["response"] == "output"
    assert load(dataset / "contract.json")["contract_version"] == contract.CONTRACT_VERSION
    assert load(dataset / "stats.json")["contract_version"] == contract.CONTRACT_VERSION
    jsonl = [json.loads(line) for line in (dataset / "au_instruction_dataset.jsonl").read_text().splitlines()]
    assert jsonl == load(dataset / "au_instruction_dataset.json")


def test_records_follow_the_contract_and_trace_to_source(dataset):
    records = load(dataset / "au_instruction_dataset.json")
    assert records
    for r in records:
        assert r["instruction"] == contract.INSTRUCTION and r["system"] == contract.SYSTEM_PROMPT
        assert contract.format_input(contract.parse_input(r["input"])) == r["input"]
        assert not contract.is_neutral(r["input"])
        assert "video" in r and isinstance(r["frame"], int)
        assert not r["output"].startswith("Error") and "assistant\n" not in r["output"]


def test_no_label_text_in_any_input(dataset):
    for r in load(dataset / "au_instruction_dataset.json"):
        assert not any(label.lower() in r["input"].lower() for label in LABELS)
        assert "\n" not in r["input"]


def test_split_by_video(dataset):
    train, val = load(dataset / "train.json"), load(dataset / "val.json")
    assert train and val
    train_videos = {r["video"] for r in train if r["video"]}
    val_videos = {r["video"] for r in val if r["video"]}
    assert not train_videos & val_videos


def test_cleaning_counts_every_reason(dataset):
    stats = load(dataset / "stats.json")
    dropped = stats["dropped"]
    for reason in (clean.ERROR_TEXT, clean.TEMPORAL, clean.NEUTRAL, clean.GATE_REJECTED, clean.NO_DESCRIPTION,
                   clean.CSV_INVALID):
        assert dropped.get(reason, 0) >= 1, reason
    assert stats["notes"][mer_factory.CHAT_PREFIX_STRIPPED] == 1
    assert stats["kept"] + sum(dropped.values()) == stats["records_read"]


def test_byte_identical_reruns(samples, dataset, tmp_path):
    out = tmp_path / "again"
    assert prepare(samples, out) == 0
    for path in dataset.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


def test_seed_and_ratio_change_the_split(samples, tmp_path):
    assert prepare(samples, tmp_path / "a", "--seed", "1", "--val-ratio", "0.3") == 0
    val = load(tmp_path / "a" / "val.json")
    assert len({r["video"] for r in val}) >= 5


def test_max_samples(samples, tmp_path):
    assert prepare(samples, tmp_path / "m", "--max-samples", "20") == 0
    assert len(load(tmp_path / "m" / "au_instruction_dataset.json")) == 20


def test_failed_run_keeps_previous_output(samples, dataset, tmp_path, capsys):
    import shutil

    out = tmp_path / "keep"
    shutil.copytree(dataset, out)
    bad = tmp_path / "bad_out"
    shutil.copytree(samples / "mer_factory", bad)
    (bad / "sample_00004" / "sample_00004_au_analysis.json").write_text("{oops")
    assert run_cli("prepare-data", "--mer-factory-output", bad, "--out", out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample_00004_au_analysis.json" in err and "invalid JSON" in err
    assert (out / "train.json").read_bytes() == (dataset / "train.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keep")]


@pytest.mark.parametrize("args,message", [
    (["--mer-factory-output", "missing_dir"], "MER-Factory output folder not found"),
    ([], "nothing to read"),
    (["--import-alpaca", "missing.jsonl"], "Alpaca file not found"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    assert run_cli("prepare-data", *[str(tmp_path / a) if a.startswith("missing") else a for a in args],
                   "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_console_script_exit_code(tmp_path):
    exe = subprocess.run([sys.executable, "-m", "au_agent_cli", "prepare-data", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert exe.returncode == 1 and "nothing to read" in exe.stderr


def test_overlong_description_is_dropped_and_counted(tmp_path):
    """A megabyte 'description' (a teacher run gone wrong) is counted under its own reason, not trained on."""
    good = {"instruction": contract.INSTRUCTION, "input": "AU04: 1.50, AU07: 1.20", "output": "Brows lowered."}
    huge = dict(good, input="AU12: 2.00", output="A broad smile with raised cheeks. " * 30_000)
    alpaca = tmp_path / "in.jsonl"
    alpaca.write_text("".join(json.dumps(r) + "\n" for r in (good, huge)))
    assert run_cli("prepare-data", "--import-alpaca", alpaca, "--out", tmp_path / "ds", "--val-ratio", "0") == 0
    stats = load(tmp_path / "ds" / "stats.json")
    assert stats["dropped"] == {clean.TOO_LONG: 1} and stats["kept"] == 1
    assert [r["output"] for r in load(tmp_path / "ds" / "train.json")] == ["Brows lowered."]

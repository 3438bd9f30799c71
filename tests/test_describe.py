"""`au-agent describe`: every frame of every CSV, one JSON line each, masked frames explained."""
import json

import au_agent_cli
from au_core import contract
from au_core.openface import read_openface_csv


def test_describe_folder_with_rules(samples, tmp_path):
    out = tmp_path / "d.jsonl"
    assert au_agent_cli.main(["-q", "describe", str(samples / "openface"), "--backend", "rules",
                              "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    track = read_openface_csv(samples / "openface" / "sample_00000.csv")
    first = [r for r in lines if r["video"] == "sample_00000"]
    assert [r["frame"] for r in first] == track.frames.tolist()
    for r, ok, reason in zip(first, track.valid, track.reasons):
        if ok:
            assert r["input"] == contract.format_input(contract.parse_input(r["input"])) and r["description"]
        else:
            assert r["input"] is None and r["description"] is None and r["masked"] == reason
    assert len({r["video"] for r in lines}) == 12


def test_stdout_and_errors(samples, tmp_path, capsys):
    assert au_agent_cli.main(["-q", "describe", str(samples / "openface" / "sample_00001.csv"), "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["video"] == "sample_00001"
    assert au_agent_cli.main(["-q", "describe", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("none.csv: OpenFace CSV not found") and not (tmp_path / "o.jsonl").exists()
    assert au_agent_cli.main(["-q", "describe", str(samples / "openface"), "--backend", "hf"]) == 1
    assert "--backend hf needs --agent" in capsys.readouterr().err


def test_a_csv_without_a_valid_frame_is_named(samples, tmp_path, caplog):
    """Every frame masked (no face anywhere) is legal output, but the user must hear which file it was."""
    lines = (samples / "openface" / "sample_00000.csv").read_text().splitlines()
    header = [c.strip() for c in lines[0].split(",")]
    rows = []
    for line in lines[1:6]:
        cells = line.split(", ")
        cells[header.index("success")] = "0"
        rows.append(", ".join(cells))
    csv = tmp_path / "no_face.csv"
    csv.write_text("\n".join([lines[0], *rows]) + "\n")
    with caplog.at_level("WARNING"):
        assert au_agent_cli.main(["-q", "describe", str(csv), "--out", str(tmp_path / "d.jsonl")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(csv) in w and "no valid frame: 5 no face (success=0)" in w for w in warnings), warnings
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["masked"] for r in records] == ["no face (success=0)"] * 5

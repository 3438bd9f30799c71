"""`au-agent inspect`: one self-contained HTML page, checked in a real headless Chromium (DOM after the script
ran, console, screenshot), built from the samples with the rules agent and the tiny CLIP."""
import csv
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from chromium import Chromium, install_chromium

import au_agent_cli
from affectgpt_patch.quality.inspect_data import load_corpus
from affectgpt_patch.quality.inspect_options import InspectOptions
from affectgpt_patch.quality.inspect_svg import ACTIVE_COLORS, cell_levels
from affectgpt_patch.quality.inspect_views import heatmap_from_values
from au_core import contract
from au_core.facs import INTENSITY_AUS
from au_core.fidelity import fidelity

N_AUS = len(INTENSITY_AUS)


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    binary, why = install_chromium()
    if binary is None:
        pytest.skip(f"no headless Chromium: {why}")
    return Chromium(binary)


def inspect(*argv) -> int:
    return au_agent_cli.main(["-q", "inspect", *map(str, argv)])


@pytest.fixture(scope="module")
def openface(tmp_path_factory, samples):
    """The sample CSVs, one video whose face is never found, and one CSV OpenFace left with a header only."""
    root = tmp_path_factory.mktemp("inspect") / "openface"
    shutil.copytree(samples / "openface", root)
    lines = (root / "sample_00000.csv").read_text().splitlines()
    head = [c.strip() for c in lines[0].split(",")]
    ok = head.index("success")
    noface = [lines[0]] + [", ".join("0" if i == ok else c.strip() for i, c in enumerate(line.split(",")))
                           for line in lines[1:]]
    (root / "noface.csv").write_text("\n".join(noface) + "\n")
    (root / "broken.csv").write_text(lines[0] + "\n")
    return root


@pytest.fixture(scope="module")
def features(openface, tmp_path_factory, tiny_clip):
    out = tmp_path_factory.mktemp("inspect") / "features"
    assert au_agent_cli.main(["-q", "precompute", "--openface-dir", str(openface), "--out", str(out),
                              "--backend", "rules", "--clip-model", str(tiny_clip), "--keep-going",
                              "--cache-dir", str(out.parent / "cache")]) == 0
    return out


@pytest.fixture(scope="module")
def descriptions(openface, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "descriptions.jsonl"
    csvs = [p for p in sorted(openface.glob("*.csv")) if p.name != "broken.csv"]
    assert au_agent_cli.main(["-q", "describe", *map(str, csvs), "--out", str(out), "--backend", "rules",
                              "--no-cache"]) == 0
    return out


@pytest.fixture(scope="module")
def eval_dir(sample_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "eval"
    assert au_agent_cli.main(["-q", "eval", "--dataset", str(sample_dataset / "val.json"), "--out", str(out),
                              "--backend", "rules", "--no-cache"]) == 0
    return out


def csv_frames(path: Path):
    """Frames of an OpenFace CSV, and how many of its (frame, AU) cells the contract calls active."""
    rows = list(csv.DictReader(path.read_text().splitlines(), skipinitialspace=True))
    active = sum(len(contract.active_aus({k: v for k, v in r.items() if k.endswith("_r")})) for r in rows)
    return len(rows), active


def heatmap_cells(html: str):
    """Per AU row of the section's heatmap: the columns its cells cover; and the number of active cells."""
    cw = float(re.search(r'data-cw="([\d.]+)"', html).group(1))
    rows = re.findall(r'<g data-au="[^"]*"[^>]*>(.*?)</g>', html)
    covered = [sum(float(w) for w in re.findall(r'<rect class="c [^"]*" x="[^"]*" width="([^"]*)"', row)) / cw
               for row in rows]
    return covered, len(re.findall(r'<rect class="c a\d', html))


def sections(dom: str, cls: str):
    """(name, html) of each ``<section class=cls>`` in the DOM."""
    parts = re.split(rf'<section class="{cls}" id="[^"]+">', dom)[1:]
    return [(re.search(r"<h3>(.*?)</h3>", p).group(1), p.split("</section>")[0]) for p in parts]


def no_external_references(page: str) -> None:
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/", page)
    assert "xmlns" not in page  # inline SVG in HTML needs no namespace URL
    for attr in re.findall(r'\b(?:src|href|action|poster|srcset)\s*=\s*"([^"]*)"', page):
        assert attr.startswith("#"), attr  # only in-page anchors
    assert "@import" not in page and "url(" not in page


def png_size(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# ------------------------------------------------------------------------------------------------ pages


def test_features_page_in_chromium(features, openface, chromium, tmp_path):
    assert inspect(features, "--openface-dir", openface, "--videos", 6) == 0
    page = features / "report.html"  # the default --out of a folder
    text = page.read_text(encoding="utf-8")
    no_external_references(text)

    run = chromium.load(page)
    assert run.console == []
    assert 'data-ready="1"' in run.dom  # the inline script ran to its end
    shown = sections(run.dom, "video")
    assert len(shown) == 6
    assert shown[0][0] == "noface"  # sorted by failures: every slot masked comes first
    for name, html in shown:  # every AU row covers every frame of the CSV; each active cell is drawn on its own
        frames, active = csv_frames(openface / f"{name}.csv")
        covered, drawn_active = heatmap_cells(html)
        assert covered == [frames] * N_AUS and drawn_active == active
        assert name == "noface" or active > 0
    noface = shown[0][1]
    assert "8 of 8 slots masked" in noface and 'class="pick"' not in noface
    frames = len(re.findall(r'<rect class="inv"', noface))
    assert frames == 1  # one shaded run: no frame of the video has a face
    for name, html in shown[1:]:
        meta = json.loads((features / f"{name}.json").read_text())
        assert len(re.findall(r'class="pick"', html)) == len(set(meta["frames"]))  # the T chosen frames
        assert 'class="inv"' in html  # the samples have frames without a face
        for s, d in zip(meta["inputs"], meta["descriptions"]):
            assert s.replace(", ", "") in re.sub(r"<[^>]+>|, ", "", html)  # each input string, as written
            assert d in html.replace("&#x27;", "'")
    # the summary covers all videos, not just the ones drawn, and names the failure
    assert "videos with features</td><td>13</td>" in run.dom
    # broken.csv, and noface.csv: written all masked and listed as a failure (no valid frame)
    assert "videos failed (failures.jsonl)</td><td>2</td>" in run.dom and "broken" in run.dom
    assert f"active above {contract.ACTIVE_THRESHOLD:g}" in run.dom

    png = tmp_path / "features.png"
    shot = chromium.screenshot(page, png, 1400, 2400)
    assert shot.console == [] and png_size(png) == (1400, 2400)
    from PIL import Image

    pixels = {"#%02x%02x%02x" % rgb: n for n, rgb in Image.open(png).convert("RGB").getcolors(1 << 22)}
    legend = 34 * 14  # the pixels of one colour in the legend
    painted = [pixels.get(c, 0) - legend for c in ACTIVE_COLORS]
    assert sum(painted) > 10 * legend and sum(n > 0 for n in painted) >= 3  # the heatmaps were painted


def test_features_page_without_csvs_shows_the_chosen_frames(features, chromium, tmp_path):
    page = tmp_path / "page.html"
    assert inspect(features, "--out", page, "--videos", 3, "--sort", "name") == 0
    run = chromium.load(page)
    assert run.console == []
    shown = sections(run.dom, "video")
    assert [name for name, _ in shown] == ["noface", "sample_00000", "sample_00001"]
    for name, html in shown[1:]:
        meta = json.loads((features / f"{name}.json").read_text())
        covered, drawn_active = heatmap_cells(html)
        assert covered == [len(set(meta["frames"]))] * N_AUS  # one column per distinct chosen frame
        # only the AUs of the input strings are known: the other cells say so (class u), none is guessed
        known = sum(len(contract.parse_input(s)) for s in dict(zip(meta["frames"], meta["inputs"])).values())
        assert drawn_active == known


def test_descriptions_page_in_chromium(descriptions, openface, chromium):
    assert inspect(descriptions, "--videos", 4, "--sort", "activity") == 0
    page = descriptions.with_suffix(".html")  # the default --out of a file
    no_external_references(page.read_text(encoding="utf-8"))
    run = chromium.load(page)
    assert run.console == [] and 'data-ready="1"' in run.dom
    shown = sections(run.dom, "video")
    assert len(shown) == 4
    records = [json.loads(line) for line in descriptions.read_text().splitlines()]
    activity = {}
    for name in {r["video"] for r in records}:
        valid = [r["input"] for r in records if r["video"] == name and r["input"] is not None]
        activity[name] = sum(len(contract.parse_input(s)) for s in valid) / max(1, len(valid))
    assert [n for n, _ in shown] == sorted(activity, key=lambda n: (-activity[n], n))[:4]
    for name, html in shown:
        mine = [r for r in records if r["video"] == name]
        covered, drawn_active = heatmap_cells(html)
        assert covered == [len(mine)] * N_AUS
        assert drawn_active == sum(len(contract.parse_input(r["input"])) for r in mine if r["input"] is not None)
        assert len(re.findall(r"<tr><td>\d+</td>", html)) == 8  # the T frames AffectGPT would see
    masked = sum(r["input"] is None for r in records)
    assert f"masked frames (not described)</td><td>{masked}</td>" in run.dom


def test_eval_page_puts_the_least_faithful_records_side_by_side(eval_dir, chromium):
    assert inspect(eval_dir, "--videos", 3) == 0
    page = eval_dir / "report.html"
    no_external_references(page.read_text(encoding="utf-8"))
    run = chromium.load(page)
    assert run.console == [] and 'data-ready="1"' in run.dom
    shown = sections(run.dom, "record")
    assert len(shown) == 3
    for _, html in shown:
        assert [h for h in re.findall(r"<h4>(.*?)</h4>", html)] == ["agent", "teacher (reference texts)",
                                                                    "rules baseline"]
    predictions = [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    worst = min(predictions, key=lambda p: (p["f1"]["prediction"], p["f1"]["reference"]))
    assert worst["f1"]["reference"] < 1  # the teacher errs somewhere in the samples
    first = shown[0][1]
    assert worst["input"].split(", ")[0] in first
    hallucinated = fidelity(worst["reference"], contract.parse_input(worst["input"])).hallucinated
    for code in hallucinated:
        assert f"+{code} hallucinated" in first
    assert "| agent (rules) |" not in run.dom and "agent (rules)" in run.dom  # the report's table, as HTML


def test_every_text_is_escaped(tmp_path, chromium):
    evil = '<img src=x onerror="console.error(1)">'
    rows = [{"video": f"v{evil}", "frame": 1, "input": "AU12: 2.00", "description": f"A smile {evil}</td>"},
            {"video": f"v{evil}", "frame": 2, "input": None, "description": None, "masked": f"no face {evil}"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert inspect(path) == 0
    page = path.with_suffix(".html")
    text = page.read_text(encoding="utf-8")
    assert evil not in text and "&lt;img src=x onerror=&quot;console.error(1)&quot;&gt;" in text
    run = chromium.load(page)
    assert run.console == [] and "<img" not in run.dom


# ------------------------------------------------------------------------------------------------ options


def test_videos_caps_the_drawn_sections_but_not_the_summary(features, tmp_path):
    opts = InspectOptions(features, out=tmp_path / "p.html", videos=2, sort="name")
    corpus = load_corpus(opts)
    assert [v.name for v in corpus.videos] == ["noface", "sample_00000"]
    assert dict(corpus.counts)["videos with features"] == "13"
    assert corpus.au_frames == 12 * 8  # every valid chosen frame of every video, drawn or not
    assert "2 of 13 videos shown" in corpus.shown_note


def test_page_is_deterministic(features, openface, tmp_path):
    for name in ("a.html", "b.html"):
        assert inspect(features, "--openface-dir", openface, "--out", tmp_path / name, "--videos", 2) == 0
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_long_videos_are_binned():
    frames = list(range(1, 1001))
    values = np.zeros((1000, N_AUS))
    values[502, 3] = 2.5  # inside the bin of frames 501–505
    values[503, 3] = 4.0  # the maximum of that bin, but the frame is invalid
    valid = np.ones(1000, dtype=bool)
    valid[503] = False
    valid[600:700] = False
    h = heatmap_from_values(frames, values, valid, [1, 503, None, 1000], INTENSITY_AUS, "test", 240)
    assert h.values.shape == (N_AUS, 200) and h.columns[100] == (501, 505)
    assert h.values[3, 100] == 2.5  # invalid frames do not count while the bin has a valid one
    assert h.invalid == [120 <= c < 140 for c in range(200)]
    assert h.chosen == {0: [(1, 1)], 100: [(2, 503)], 199: [(4, 1000)]}  # slot 3 is masked


def test_threshold_is_the_contract_s():
    t = contract.ACTIVE_THRESHOLD
    values = np.array([[np.nan, 0.0, t, t + 0.004, t + 0.005, 0.805, 1.6, 5.0]])
    levels = cell_levels(values).tolist()[0]
    assert levels[0] == "u" and levels[1].startswith("i") and levels[2].startswith("i")
    for v, level in zip(values[0, 3:6], levels[3:6]):  # active exactly when the contract says so
        assert level.startswith("a") == bool(contract.active_aus({"AU01": v})), (v, level)
    assert levels[6] == "a1" and levels[7] == "a6"


# ------------------------------------------------------------------------------------------------ bad input


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_folder_without_features(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert inspect(tmp_path) == 1
    assert "no AU features" in one_error_line(capsys)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("victim", ["sample_00003.json", "failures.jsonl"])
def test_truncated_json_in_a_features_folder(features, tmp_path, capsys, victim):
    broken = tmp_path / "features"
    shutil.copytree(features, broken, ignore=shutil.ignore_patterns("report.html"))
    text = (broken / victim).read_text()
    (broken / victim).write_text(text[: len(text) // 2])
    (broken / "old.html").write_text("previous page")
    assert inspect(broken) == 1
    line = one_error_line(capsys)
    assert str(broken / victim) in line and "truncated" in line
    assert not (broken / "report.html").exists()
    assert inspect(broken, "--out", broken / "old.html") == 1
    assert (broken / "old.html").read_text() == "previous page"  # never replaced by a partial page
    assert not list(broken.glob(".*.tmp"))  # no temporary file left behind


def test_a_record_of_the_wrong_shape(features, tmp_path, capsys):
    broken = tmp_path / "features"
    shutil.copytree(features, broken, ignore=shutil.ignore_patterns("report.html"))
    meta = json.loads((broken / "sample_00002.json").read_text())
    meta["inputs"][0] = 1.5
    (broken / "sample_00002.json").write_text(json.dumps(meta))
    assert inspect(broken) == 1
    assert f"{broken / 'sample_00002.json'}: 'inputs' is not a list of str" in one_error_line(capsys)
    assert not (broken / "report.html").exists()


def test_truncated_descriptions_and_eval_report(descriptions, eval_dir, tmp_path, capsys):
    lines = descriptions.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20] + "\n")
    assert inspect(cut) == 1
    assert f"{cut}: line 6 is not valid JSON" in one_error_line(capsys)
    assert not cut.with_suffix(".html").exists()

    broken = tmp_path / "eval"
    shutil.copytree(eval_dir, broken, ignore=shutil.ignore_patterns("report.html"))
    (broken / "report.json").write_text((broken / "report.json").read_text()[:100])
    assert inspect(broken) == 1
    assert str(broken / "report.json") in one_error_line(capsys)
    assert not (broken / "report.html").exists()


def test_bad_options(features, tmp_path, capsys):
    assert inspect(tmp_path / "missing") == 1
    assert "not found" in one_error_line(capsys)
    assert inspect(features, "--openface-dir", tmp_path / "nope") == 1
    assert "--openface-dir" in one_error_line(capsys)
    assert au_agent_cli.main(["inspect", str(features), "--sort", "size"]) == 1
    assert "--sort" in one_error_line(capsys)


def test_a_page_replaces_only_an_earlier_page(descriptions, tmp_path):
    """``inspect run1.jsonl`` writes run1.html; a rerun replaces its own page (also one made before pages were
    marked), never a file inspect did not write."""
    from affectgpt_patch.quality.inspect_page import GENERATOR

    jsonl = Path(shutil.copy(descriptions, tmp_path / "run1.jsonl"))
    page = tmp_path / "run1.html"
    assert inspect(jsonl, "--videos", 1) == 0 and GENERATOR in page.read_text(encoding="utf-8")
    page.write_text(page.read_text(encoding="utf-8").replace(GENERATOR, ""), encoding="utf-8")  # an older page
    assert inspect(jsonl, "--videos", 2) == 0 and GENERATOR in page.read_text(encoding="utf-8")
    page.write_text("<p>my notes</p>\n", encoding="utf-8")
    assert inspect(jsonl) == 1 and page.read_text(encoding="utf-8") == "<p>my notes</p>\n"


def test_help_states_the_default_page_name(capsys):
    with pytest.raises(SystemExit):
        au_agent_cli.main(["inspect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "INPUT/report.html for a folder" in text and "run1.jsonl → run1.html" in text
    assert InspectOptions(Path("run1.jsonl")).out_path == Path("run1.html")

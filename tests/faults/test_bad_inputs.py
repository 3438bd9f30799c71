"""Bad input to every subcommand: each case must end in exit status 1, exactly one line on stderr that names
the file or option at fault, nothing on stdout, and no new, changed or partial file.

Cases are a table: ``(subcommand, name, build)`` where ``build(env)`` creates the inputs in a fresh folder and
returns the arguments after the subcommand and the text the error line must contain (a path or an option).
Everything runs in process on the rules backend and tiny fixtures: no model is loaded. Commands run with ``-q``,
as scripts run them: without it, a progress bar drawn before the error also goes to stderr.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest

import au_agent_cli
from au_core import contract

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_CSV = SAMPLES / "openface" / "sample_00000.csv"
_LINES = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()
HEADER, ROWS = _LINES[0], _LINES[1:]
COLUMNS = [c.strip() for c in HEADER.split(",")]


class Env:
    """Builds a case's inputs under ``root``; paths are returned as strings, as a user would type them."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self._request = request

    def p(self, rel: str) -> str:
        return str(self.root / rel)

    def write(self, rel: str, content) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def mkdir(self, rel: str) -> str:
        (self.root / rel).mkdir(parents=True, exist_ok=True)
        return self.p(rel)

    def symlink(self, rel: str, target: str) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return str(path)

    # OpenFace CSVs -----------------------------------------------------------------------------------------
    def csv(self, rel: str = "of/clip.csv", cells: Optional[Dict[Tuple[int, str], str]] = None,
            rows: Optional[List[str]] = None, header: str = HEADER) -> str:
        """The sample CSV with ``cells[(row, column)]`` replaced (rows 0-based), or with other ``rows``."""
        rows = list(ROWS[:12] if rows is None else rows)
        for (r, col), value in (cells or {}).items():
            parts = rows[r].split(", ")
            parts[COLUMNS.index(col)] = value
            rows[r] = ", ".join(parts)
        return self.write(rel, "\n".join([header, *rows]) + "\n")

    # MER-Factory output --------------------------------------------------------------------------------------
    def mer(self, entry: Optional[dict] = None, texts: Optional[dict] = None, raw=None) -> Tuple[str, str]:
        """A MER-Factory folder with one per-frame AU analysis: ``(folder, json file)``."""
        entry = {"frame": 1, "timestamp": 0.0, "active_aus": {"AU12": 2.0}, "au_description": "",
                 "is_peak_frame": False} if entry is None else entry
        data = {"per_frame_au_descriptions": [entry],
                "fine_grained_descriptions": texts if texts is not None else {"1": "A broad smile."}}
        f = self.write("mer/clip/clip_au_analysis.json", raw if raw is not None else json.dumps(data))
        return self.p("mer"), f

    def alpaca(self, records: Sequence, rel: str = "in.jsonl") -> str:
        return self.write(rel, "".join(json.dumps(r) + "\n" for r in records))

    # datasets and splits -------------------------------------------------------------------------------------
    def dataset(self) -> str:
        return str(shutil.copytree(self._request.getfixturevalue("sample_dataset"), self.root / "ds"))

    def edit_train(self, key: str, value) -> Tuple[str, str]:
        ds = self.dataset()
        records = json.loads(Path(ds, "train.json").read_text())
        records[0][key] = value
        Path(ds, "train.json").write_text(json.dumps(records))
        return ds, str(Path(ds, "train.json"))

    def tiny_clip(self) -> str:
        return str(self._request.getfixturevalue("tiny_clip"))

    def tiny_qwen2(self) -> str:
        return str(self._request.getfixturevalue("tiny_qwen2"))

    # precompute outputs and captions files -----------------------------------------------------------------
    def features(self, caption: bool = True) -> str:
        """A precompute folder of one video, with its AU caption or without (``--no-au-caption``)."""
        self.csv()
        args = ["-q", "precompute", "--openface-dir", self.p("of"), "--out", self.p("feats"), "--clip-model",
                self.tiny_clip(), "--backend", "rules", "--cache-dir", self.p("cache")]
        args += ["--au-text-tokenizer", self.tiny_qwen2()] if caption else ["--no-au-caption"]
        assert au_agent_cli.main(args) == 0
        return self.p("feats")


GOOD_RECORD = {"instruction": contract.INSTRUCTION, "input": "AU04: 1.50, AU07: 1.20", "output": "Brows lowered."}
Build = Callable[[Env], Tuple[List[str], str]]
CASES: List[Tuple[str, str, Build]] = []


def cases(subcommand: str, table: Dict[str, Build]) -> None:
    CASES.extend((subcommand, name, build) for name, build in table.items())


# ------------------------------------------------------------------------------------------- CSV readers
# The same broken CSVs go to describe (a file argument) and to prepare-data (--openface-dir cross-check).

def _one(cells: Dict[Tuple[int, str], str]) -> Callable[[Env], str]:
    return lambda e: e.csv(cells=cells)


BAD_CSVS: Dict[str, Callable[[Env], str]] = {
    "empty file": lambda e: e.write("of/clip.csv", ""),
    "only a BOM and blank lines": lambda e: e.write("of/clip.csv", b"\xef\xbb\xbf\n\n"),
    "header only": lambda e: e.csv(rows=[]),
    "binary": lambda e: e.write("of/clip.csv", bytes(range(256)) * 8),
    "Latin-1 header": lambda e: e.write("of/clip.csv", (HEADER.replace("timestamp", "zeitmaß") + "\n")
                                         .encode("latin-1") + "\n".join(ROWS[:3]).encode()),
    "no AU intensity columns": lambda e: e.write("of/clip.csv", "frame, face_id, confidence, success\n1, 0, 0.9, 1\n"),
    "unknown AU column AU99_r": lambda e: e.csv(header=HEADER.replace("AU45_r", "AU99_r")),
    "ragged row (too many cells)": lambda e: e.csv(rows=ROWS[:3] + [ROWS[3] + ", 0.5, 0.5"] + ROWS[4:8]),
}
#: One bad cell in an otherwise good CSV, as name: (row, column, value).
BAD_CELLS: Dict[str, Tuple[int, str, str]] = {
    "NaN frame number": (2, "frame", "nan"), "text frame number": (2, "frame", "abc"),
    "frame number 1e20": (2, "frame", "1e20"), "negative frame number": (2, "frame", "-5"),
    "fractional frame number": (2, "frame", "2.5"), "infinite frame number": (2, "frame", "inf"),
    "duplicate frames": (3, "frame", "3"),
    "intensity inf": (4, "AU12_r", "inf"), "intensity -inf": (4, "AU04_r", "-inf"),
    "intensity 1e308": (4, "AU12_r", "1e308"), "intensity 1e309 (overflows to inf)": (4, "AU06_r", "1e309"),
    "negative intensity": (4, "AU12_r", "-1.5"), "intensity above 5": (4, "AU25_r", "7.2"),
}
BAD_CSVS.update({name: _one({(row, column): value}) for name, (row, column, value) in BAD_CELLS.items()})


def _describe_csv(make: Callable[[Env], str]) -> Build:
    def build(e: Env):
        path = make(e)
        return [path], path
    return build


def _prepare_with_csv(make: Callable[[Env], str]) -> Build:
    def build(e: Env):
        path = make(e)
        mer, _ = e.mer()
        return ["--mer-factory-output", mer, "--openface-dir", str(Path(path).parent), "--out", e.p("ds")], path
    return build


cases("describe", {name: _describe_csv(make) for name, make in BAD_CSVS.items()})
cases("prepare-data", {f"OpenFace CSV: {name}": _prepare_with_csv(make) for name, make in BAD_CSVS.items()})


def _good_csv(e: Env) -> str:
    return e.csv()


def _card_folder(e: Env) -> Tuple[List[str], str]:
    e.mkdir("ag/agent_card.json")
    return [_good_csv(e), "--agent", e.p("ag")], e.p("ag")


def _describe_opt(*opts: str, named: Optional[str] = None) -> Build:
    return lambda e: ([_good_csv(e), *opts], named or opts[0])


cases("describe", {
    "missing file": lambda e: ([e.p("nope.csv")], e.p("nope.csv")),
    "a folder without CSVs": lambda e: ([e.mkdir("of/empty")], e.p("of/empty")),
    "missing file with a Unicode name": lambda e: ([e.p("видео_😀.csv")], e.p("видео_😀.csv")),
    "Unicode-named empty file": lambda e: ([e.write("ビデオ.csv", "")], e.p("ビデオ.csv")),
    "symlink loop": lambda e: ([e.symlink("loop.csv", e.p("loop.csv"))], e.p("loop.csv")),
    "dangling symlink": lambda e: ([e.symlink("dangling.csv", e.p("gone.csv"))], e.p("dangling.csv")),
    "second of two files bad": lambda e: ([_good_csv(e), e.write("of/bad.csv", "")], e.p("of/bad.csv")),
    "--out parent is a file": lambda e: ([_good_csv(e), "--out", e.write("afile", "x") + "/out.jsonl"], e.p("afile")),
    "--out is a folder": lambda e: ([_good_csv(e), "--out", e.mkdir("outdir")], e.p("outdir")),
    "--batch-size 0": _describe_opt("--batch-size", "0"),
    "--batch-size -3": _describe_opt("--batch-size", "-3"),
    "--batch-size abc": _describe_opt("--batch-size", "abc"),
    "--max-new-tokens 0": _describe_opt("--max-new-tokens", "0"),
    "--max-new-tokens -1": _describe_opt("--max-new-tokens", "-1"),
    "--min-confidence nan": _describe_opt("--min-confidence", "nan"),
    "--min-confidence 2": _describe_opt("--min-confidence", "2"),
    "--min-confidence -0.1": _describe_opt("--min-confidence", "-0.1"),
    "--min-confidence inf": _describe_opt("--min-confidence", "inf"),
    "--device cuda:7": _describe_opt("--device", "cuda:7"),
    "--device tpu": _describe_opt("--device", "tpu"),
    "--device cpu:1": _describe_opt("--device", "cpu:1"),
    "--backend bogus": _describe_opt("--backend", "bogus"),
    "--backend hf without --agent": _describe_opt("--backend", "hf", named="--agent"),
    "--cache-dir is a file": lambda e: ([_good_csv(e), "--cache-dir", e.write("cache", "x")], e.p("cache")),
    "--agent folder missing": lambda e: ([_good_csv(e), "--agent", e.p("no-agent")], e.p("no-agent")),
    "--agent is an empty folder": lambda e: ([_good_csv(e), "--agent", e.mkdir("agent")], e.p("agent")),
    "agent card Latin-1": lambda e: ([_good_csv(e), "--agent", e.p("ag")],
                                     e.write("ag/agent_card.json", '{"x": "café"}'.encode("latin-1"))),
    "agent card a list": lambda e: ([_good_csv(e), "--agent", e.p("ag")], e.write("ag/agent_card.json", "[1]")),
    "agent card incomplete": lambda e: ([_good_csv(e), "--agent", e.p("ag")],
                                        e.write("ag/agent_card.json", '{"base_model": 5}')),
    "agent card a folder": lambda e: _card_folder(e),
    "--backend openai without --api-base": _describe_opt("--backend", "openai", named="--api-base"),
    "unknown option": _describe_opt("--frobnicate", named="--frobnicate"),
})


# ------------------------------------------------------------------------------------------- prepare-data

def _prep(*extra: str, named: Optional[str] = None) -> Build:
    def build(e: Env):
        mer, _ = e.mer()
        return ["--mer-factory-output", mer, "--out", e.p("ds"), *extra], named or extra[0]
    return build


def _mer_entry(**changes) -> Build:
    def build(e: Env):
        entry = {"frame": 1, "timestamp": 0.0, "active_aus": {"AU12": 2.0}, "au_description": "",
                 "is_peak_frame": False, **changes}
        mer, f = e.mer(entry)
        return ["--mer-factory-output", mer, "--out", e.p("ds")], f
    return build


def _mer_raw(raw) -> Build:
    def build(e: Env):
        mer, f = e.mer(raw=raw)
        return ["--mer-factory-output", mer, "--out", e.p("ds")], f
    return build


def _mer_folder_analysis(e: Env) -> Tuple[List[str], str]:
    e.mkdir("mer/clip/clip_au_analysis.json")
    return ["--mer-factory-output", e.p("mer"), "--out", e.p("ds")], e.p("mer")


def _alpaca(records: Sequence, raw=None) -> Build:
    def build(e: Env):
        f = e.write("in.jsonl", raw) if raw is not None else e.alpaca(records)
        return ["--import-alpaca", f, "--out", e.p("ds")], f
    return build


cases("prepare-data", {
    "nothing to read": lambda e: (["--out", e.p("ds")], "--import-alpaca"),
    "MER folder missing": lambda e: (["--mer-factory-output", e.p("nope"), "--out", e.p("ds")], e.p("nope")),
    "MER folder is a file": lambda e: (["--mer-factory-output", e.write("f.json", "{}"), "--out", e.p("ds")],
                                       e.p("f.json")),
    "MER folder without analyses": lambda e: (["--mer-factory-output", e.mkdir("mer"), "--out", e.p("ds")], e.p("mer")),
    "MER JSON truncated": _mer_raw('{"per_frame_au_descriptions": [{"frame": 1, '),
    "MER JSON empty": _mer_raw(""),
    "MER JSON binary": _mer_raw(bytes(range(256))),
    "MER JSON Latin-1": _mer_raw('{"summary_description": "café"}'.encode("latin-1")),
    "MER JSON is a list": _mer_raw("[1, 2, 3]"),
    "MER JSON has unknown keys": _mer_raw('{"hello": 1}'),
    "MER per-frame list not a list": _mer_raw('{"per_frame_au_descriptions": 3, "fine_grained_descriptions": {}}'),
    "MER frame 1e20": _mer_entry(frame=1e20),
    "MER frame text": _mer_entry(frame="first"),
    "MER frame negative": _mer_entry(frame=-4),
    "MER intensity 1e308": _mer_entry(active_aus={"AU12": 1e308}),
    "MER intensity Infinity": _mer_entry(active_aus={"AU12": float("inf")}),
    "MER intensity NaN": _mer_entry(active_aus={"AU12": float("nan")}),
    "MER intensity negative": _mer_entry(active_aus={"AU12": -3.0}),
    "MER intensity text": _mer_entry(active_aus={"AU12": "high"}),
    "MER unknown AU99": _mer_entry(active_aus={"AU99": 2.0}),
    "MER active_aus a list": _mer_entry(active_aus=[1, 2]),
    "MER analysis is a folder": lambda e: _mer_folder_analysis(e),
    "Alpaca file missing": lambda e: (["--import-alpaca", e.p("none.jsonl"), "--out", e.p("ds")], e.p("none.jsonl")),
    "Alpaca empty file": _alpaca([], raw=""),
    "Alpaca JSONL bad line": _alpaca([], raw=json.dumps(GOOD_RECORD) + "\n{oops\n"),
    "Alpaca JSONL Latin-1": _alpaca([], raw=json.dumps(GOOD_RECORD).replace("Brows", "Bräue").encode("latin-1")),
    "Alpaca record not an object": _alpaca([GOOD_RECORD, [1, 2]]),
    "Alpaca record without output": _alpaca([{"input": "AU04: 1.50"}]),
    "Alpaca intensity 999": _alpaca([dict(GOOD_RECORD, input="AU12: 999.00")]),
    "Alpaca unknown AU99": _alpaca([dict(GOOD_RECORD, input="AU99: 2.00")]),
    "Alpaca only neutral records": _alpaca([dict(GOOD_RECORD, input="AU04: 0.10")]),
    "--val-ratio 1": _prep("--val-ratio", "1"),
    "--val-ratio -0.1": _prep("--val-ratio", "-0.1"),
    "--val-ratio nan": _prep("--val-ratio", "nan"),
    "--max-samples 0": _prep("--max-samples", "0"),
    "--max-samples -1": _prep("--max-samples", "-1"),
    "--min-confidence nan": _prep("--min-confidence", "nan"),
    "--min-confidence 2": _prep("--min-confidence", "2"),
    "--min-fidelity 1.5": _prep("--min-fidelity", "1.5"),
    "--min-fidelity nan": _prep("--min-fidelity", "nan"),
    "--seed abc": _prep("--seed", "abc"),
    "--text-key bogus": _prep("--text-key", "bogus"),
    "--openface-dir missing": lambda e: _prep("--openface-dir", e.p("no-of"), named=e.p("no-of"))(e),
    "--openface-dir is a file": lambda e: _prep("--openface-dir", e.write("of.txt", "x"), named=e.p("of.txt"))(e),
    "--out parent is a file": lambda e: _prep("--out", e.write("afile", "x") + "/ds", named=e.p("afile"))(e),
})


# ------------------------------------------------------------------------------------------- precompute

def _pre(*extra: str, named: Optional[str] = None) -> Build:
    def build(e: Env):
        _good_csv(e)
        return ["--openface-dir", e.p("of"), "--out", e.p("feats"), "--clip-model", e.tiny_clip(), *extra], \
            named or extra[0]
    return build


cases("precompute", {
    "--openface-dir missing": lambda e: (["--openface-dir", e.p("nope"), "--out", e.p("feats"), "--clip-model",
                                          e.tiny_clip()], e.p("nope")),
    "--openface-dir is a file": lambda e: (["--openface-dir", e.write("x.csv", "a"), "--out", e.p("feats"),
                                            "--clip-model", e.tiny_clip()], e.p("x.csv")),
    "--openface-dir without CSVs": lambda e: (["--openface-dir", e.mkdir("of"), "--out", e.p("feats"),
                                               "--clip-model", e.tiny_clip()], e.p("of")),
    "--shard 2/2": _pre("--shard", "2/2"),
    "--shard abc": _pre("--shard", "abc"),
    "--shard 0/0": _pre("--shard", "0/0"),
    "--chunk-videos 0": _pre("--chunk-videos", "0"),
    "--chunk-videos -1": _pre("--chunk-videos", "-1"),
    "--frames 0": _pre("--frames", "0"),
    "--frames many": _pre("--frames", "many"),
    "--batch-size 0": _pre("--batch-size", "0"),
    "--max-new-tokens 0": _pre("--max-new-tokens", "0"),
    "--min-confidence nan": _pre("--min-confidence", "nan"),
    "--sampling bogus": _pre("--sampling", "bogus"),
    "--clip-device cuda:9": _pre("--clip-device", "cuda:9"),
    "--device mystery": _pre("--device", "mystery"),
    "--clip-model missing file": lambda e: (["--openface-dir", e.mkdir("of"), "--out", e.p("feats"), "--clip-model",
                                             e.p("none.pt")], e.p("none.pt")),
    "--out is a file": lambda e: _pre("--out", e.write("feats.txt", "x"), named=e.p("feats.txt"))(e),
    "--au-text-max-tokens 0": _pre("--au-text-max-tokens", "0"),
    "--au-text-max-tokens below one description": lambda e: _pre(
        "--au-text-max-tokens", "3", "--au-text-tokenizer", e.tiny_qwen2(), named="au_text_max_tokens 3")(e),
    "--au-text-tokenizer not a tokenizer": lambda e: _pre("--au-text-tokenizer", e.mkdir("llm"), named=e.p("llm"))(e),
})


# ------------------------------------------------------------------------------------------- captions

def _captions_into(make_out: Callable[[Env], str]) -> Build:
    def build(e: Env):
        feats = e.features()
        out = make_out(e)
        return ["--features", feats, "--dataset-name", "MER2023", "--out", out], out
    return build


cases("captions", {
    "--features missing": lambda e: (["--features", e.p("feats"), "--dataset-name", "MER2023", "--out",
                                      e.p("c.json")], e.p("feats")),
    "--features without records": lambda e: (["--features", e.mkdir("feats"), "--dataset-name", "MER2023",
                                              "--out", e.p("c.json")], e.p("feats")),
    "videos without a caption": lambda e: (["--features", e.features(caption=False), "--dataset-name", "MER2023",
                                            "--out", e.p("c.json")], e.p("feats")),
    "--out not a captions file": _captions_into(lambda e: e.write("c.json", '["a list"]')),
    "--out with a sample without caption": _captions_into(lambda e: e.write("c.json", '{"MER2023": {"a": {}}}')),
    "--out not JSON": _captions_into(lambda e: e.write("c.json", "{oops")),
    "--dataset-name empty": lambda e: (["--features", e.features(), "--dataset-name", "", "--out", e.p("c.json")],
                                       "--dataset-name"),
})


# ------------------------------------------------------------------------------------------- train

def _train(ds: str, *extra: str) -> List[str]:
    return ["--recipe", "tiny_cpu_lora_sft", "--dataset", ds, "--base-model", "/nonexistent-model", "--out",
            "/nonexistent-out/agent", *extra]


def _train_edit(key: str, value) -> Build:
    def build(e: Env):
        ds, f = e.edit_train(key, value)
        return _train(ds), f
    return build


def _train_file(rel: str, content) -> Build:
    def build(e: Env):
        ds = e.dataset()
        path = Path(ds, rel)
        if path.is_file():
            path.unlink()
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return _train(ds), str(path) if content is not None else ds
    return build


def _recipe_file(e: Env, content) -> Tuple[List[str], str]:
    f = e.write("recipe.yaml", content)
    return ["--recipe", f, "--dataset", e.dataset(), "--out", e.p("o")], f


cases("train", {
    "dataset missing": lambda e: (_train(e.p("nods")), e.p("nods")),
    "dataset is a file": lambda e: (_train(e.write("ds.json", "[]")), e.p("ds.json")),
    "dataset folder empty": lambda e: (_train(e.mkdir("ds")), e.p("ds")),
    "dataset_info.json not JSON": _train_file("dataset_info.json", "{oops"),
    "dataset_info.json Latin-1": _train_file("dataset_info.json", '{"é": 1}'.encode("latin-1")),
    "contract.json is a list": _train_file("contract.json", "[1, 2]"),
    "contract.json Latin-1": _train_file("contract.json", '{"contract_version": "é"}'.encode("latin-1")),
    "contract.json edited system prompt": _train_file(
        "contract.json", json.dumps({**contract.describe(), "system_prompt": "You are helpful."})),
    "contract.json a folder": _train_file("contract.json", None),
    "train.json not JSON": _train_file("train.json", "[{"),
    "train.json an object": _train_file("train.json", "{}"),
    "train.json binary": _train_file("train.json", bytes(range(256))),
    "train.json empty list": _train_file("train.json", "[]"),
    "train.json a folder": _train_file("train.json", None),
    "val.json empty list": _train_file("val.json", "[]"),
    "record instruction edited": _train_edit("instruction", "Describe the face."),
    "record system prompt edited": _train_edit("system", "You are helpful."),
    "record input not the contract format": _train_edit("input", "AU12=2.0"),
    "record input with AU99": _train_edit("input", "AU99: 2.00"),
    "record input intensity 1e308": _train_edit("input", "AU12: 1e308"),
    "record input neutral": _train_edit("input", "none"),
    "record without output": _train_edit("output", ""),
    "recipe YAML Latin-1": lambda e: _recipe_file(e, "a: café\n".encode("latin-1")),
    "recipe YAML binary": lambda e: _recipe_file(e, bytes(range(256))),
    "recipe YAML a list": lambda e: _recipe_file(e, "[1, 2]\n"),
    "recipe YAML unparseable": lambda e: _recipe_file(e, "key: [unclosed\n"),
    "recipe YAML empty": lambda e: _recipe_file(e, ""),
    "unknown recipe": lambda e: (["--recipe", "nope", "--dataset", e.dataset(), "--out", e.p("o")], "'nope'"),
    "bad override": lambda e: (_train(e.dataset(), "max_steps"), "max_steps"),
})


# ------------------------------------------------------------------------------------------- test-agent

def _cases_file(rel: str, content) -> Build:
    def build(e: Env):
        f = e.mkdir(rel) if content is None else e.write(rel, content)
        return ["--cases", f], f
    return build


cases("test-agent", {
    "cases file missing": lambda e: (["--cases", e.p("none.json")], e.p("none.json")),
    "cases empty object": _cases_file("c.json", "{}"),
    "cases empty list": _cases_file("c.json", "[]"),
    "cases empty JSON file": _cases_file("c.json", ""),
    "cases empty CSV": _cases_file("c.csv", ""),
    "cases header-only CSV": _cases_file("c.csv", "name,AU12\n"),
    "cases binary JSON": _cases_file("c.json", bytes(range(256))),
    "cases Latin-1 JSON": _cases_file("c.json", '{"café": {"AU12": 2.0}}'.encode("latin-1")),
    "cases wrong extension": _cases_file("c.txt", "{}"),
    "cases AU99": _cases_file("c.json", '{"x": {"AU99": 2.0}}'),
    "cases intensity 1e308": _cases_file("c.json", '{"x": {"AU12": 1e308}}'),
    "cases intensity NaN": _cases_file("c.json", '{"x": {"AU12": NaN}}'),
    "cases intensity negative": _cases_file("c.json", '{"x": {"AU12": -2}}'),
    "cases list of numbers": _cases_file("c.json", "[1, 2]"),
    "cases a folder": _cases_file("c.json", None),
    "CSV cases with inf": _cases_file("c.csv", "name,AU12_r\nx,inf\n"),
    "--no-builtin without --cases": lambda e: (["--no-builtin"], "--cases"),
    "--batch-size 0": lambda e: (["--batch-size", "0"], "--batch-size"),
    "--max-new-tokens 0": lambda e: (["--max-new-tokens", "0"], "--max-new-tokens"),
    "--device cuda:5": lambda e: (["--device", "cuda:5"], "--device"),
})


# ------------------------------------------------------------------------------------------- eval

def _eval(content, rel: str = "val.json") -> Build:
    def build(e: Env):
        f = e.mkdir(rel) if content is None else e.write(rel, content)
        return ["--dataset", f, "--out", e.p("report")], f
    return build


def _eval_record(**changes) -> Build:
    return _eval(json.dumps([GOOD_RECORD, dict(GOOD_RECORD, **changes)]))


cases("eval", {
    "split missing": lambda e: (["--dataset", e.p("none.json"), "--out", e.p("r")], e.p("none.json")),
    "split is a folder": _eval(None),
    "split empty file": _eval(""),
    "split empty list": _eval("[]"),
    "split not JSON": _eval("[{"),
    "split Latin-1": _eval(json.dumps([dict(GOOD_RECORD, output="Bräue")], ensure_ascii=False).encode("latin-1")),
    "split binary": _eval(bytes(range(256))),
    "split an object": _eval('{"records": []}'),
    "split JSONL bad line": _eval(json.dumps(GOOD_RECORD) + "\n{oops\n", rel="val.jsonl"),
    "record not an object": _eval(json.dumps([GOOD_RECORD, "text"])),
    "record without output": _eval_record(output=""),
    "record input AU99": _eval_record(input="AU99: 2.00"),
    "record input intensity 999": _eval_record(input="AU12: 999.00"),
    "record input free text": _eval_record(input="a smiling face"),
    "--limit 0": lambda e: (["--dataset", e.write("val.json", json.dumps([GOOD_RECORD])), "--out", e.p("r"),
                             "--limit", "0"], "--limit"),
    "--out is a file": lambda e: (["--dataset", e.write("val.json", json.dumps([GOOD_RECORD])), "--out",
                                   e.write("r.txt", "x")], e.p("r.txt")),
    "--batch-size 0": lambda e: (["--dataset", e.write("val.json", json.dumps([GOOD_RECORD])), "--out", e.p("r"),
                                  "--batch-size", "0"], "--batch-size"),
})


# ------------------------------------------------------------------------------------------- patch-affectgpt

cases("patch-affectgpt", {
    "checkout missing": lambda e: ([e.p("AffectGPT")], e.p("AffectGPT")),
    "checkout is a file": lambda e: ([e.write("AffectGPT", "x")], e.p("AffectGPT")),
    "empty folder": lambda e: ([e.mkdir("AffectGPT")], e.p("AffectGPT")),
    "empty folder --revert": lambda e: ([e.mkdir("AffectGPT"), "--revert"], e.p("AffectGPT")),
    "empty folder --check": lambda e: ([e.mkdir("AffectGPT"), "--check"], e.p("AffectGPT")),
    "empty folder --dry-run": lambda e: ([e.mkdir("AffectGPT"), "--dry-run"], e.p("AffectGPT")),
    "symlink loop": lambda e: ([e.symlink("AffectGPT", e.p("AffectGPT"))], e.p("AffectGPT")),
    "Unicode name missing": lambda e: ([e.p("AffectGPT-ü")], e.p("AffectGPT-ü")),
    "--check with --revert": lambda e: ([e.mkdir("AffectGPT"), "--check", "--revert"], "--revert"),
})


# ------------------------------------------------------------------------------------------- inspect

def _inspect_jsonl(content) -> Build:
    def build(e: Env):
        f = e.write("descriptions.jsonl", content)
        return [f], f
    return build


GOOD_LINE = json.dumps({"video": "clip", "frame": 1, "input": "AU12: 2.00", "description": "A smile."})

cases("inspect", {
    "input missing": lambda e: ([e.p("features")], e.p("features")),
    "folder without features": lambda e: ([e.mkdir("features")], e.p("features")),
    "folder with only notes": lambda e: ([str(Path(e.write("features/notes.txt", "x")).parent)], e.p("features")),
    "feature record without its npy": lambda e: ([str(Path(e.write("features/clip.json", '{"name": "cl')).parent)],
                                                 e.p("features")),
    "descriptions empty": _inspect_jsonl(""),
    "descriptions binary": _inspect_jsonl(bytes(range(256))),
    "descriptions truncated line": _inspect_jsonl(GOOD_LINE + "\n" + GOOD_LINE[:20] + "\n"),
    "descriptions line not an object": _inspect_jsonl(GOOD_LINE + "\n[1]\n"),
    "eval report without predictions": lambda e: ([str(Path(e.write("eval/report.json", "{}")).parent)],
                                                  e.p("eval")),
    "--openface-dir missing": lambda e: ([e.write("d.jsonl", GOOD_LINE + "\n"), "--openface-dir", e.p("of")],
                                         "--openface-dir"),
    "--videos -1": lambda e: ([e.write("d.jsonl", GOOD_LINE + "\n"), "--videos", "-1"], "--videos"),
    "--sort unknown": lambda e: ([e.write("d.jsonl", GOOD_LINE + "\n"), "--sort", "size"], "--sort"),
    "--out is a folder": lambda e: ([e.write("d.jsonl", GOOD_LINE + "\n"), "--out", e.mkdir("page")], e.p("page")),
})


# ------------------------------------------------------------------------------------------- smoke-affectgpt

cases("smoke-affectgpt", {
    "checkout missing": lambda e: ([e.p("AffectGPT")], e.p("AffectGPT")),
    "checkout is a file": lambda e: ([e.write("AffectGPT", "x")], e.p("AffectGPT")),
    "empty folder": lambda e: ([e.mkdir("AffectGPT")], e.p("AffectGPT")),
    "symlink loop": lambda e: ([e.symlink("AffectGPT", e.p("AffectGPT"))], e.p("AffectGPT")),
    "--steps 0": lambda e: ([e.mkdir("AffectGPT"), "--steps", "0"], "--steps"),
    "--device unknown": lambda e: ([e.mkdir("AffectGPT"), "--device", "tpu"], "--device"),
    "--clip-width 0": lambda e: ([e.mkdir("AffectGPT"), "--clip-width", "0"], "--clip-width"),
    "--au-route unknown": lambda e: ([e.mkdir("AffectGPT"), "--au-route", "tokens"], "--au-route"),
})


# ------------------------------------------------------------------------------------------ compare-affectgpt

def clip_args(e: Env, **change: str) -> List[str]:
    """A checkout folder and a good clip (video, wav, OpenFace CSV); ``change`` replaces options."""
    from affectgpt_patch.smoke.media import write_synthetic_clip

    clip = write_synthetic_clip(e.root / "clip")
    options = {"--video": str(clip.video), "--audio": str(clip.audio), "--openface": str(clip.openface),
               "--subtitle": clip.subtitle}
    options.update(change)
    return [e.mkdir("AffectGPT"), *[x for item in options.items() for x in item]]


cases("compare-affectgpt", {
    "checkout missing": lambda e: ([e.p("nowhere"), *clip_args(e)[1:]], e.p("nowhere")),
    "checkout is not AffectGPT": lambda e: (clip_args(e), e.p("AffectGPT")),
    "--video missing": lambda e: (clip_args(e, **{"--video": e.p("none.mp4")}), e.p("none.mp4")),
    "--video not a video": lambda e: (clip_args(e, **{"--video": e.write("v.mp4", "text")}), e.p("v.mp4")),
    "--video is the audio": lambda e: (_video_is_audio(clip_args(e)), "sample_00000000.wav"),
    "--audio missing": lambda e: (clip_args(e, **{"--audio": e.p("none.wav")}), e.p("none.wav")),
    "--openface missing": lambda e: (clip_args(e, **{"--openface": e.p("none.csv")}), e.p("none.csv")),
    "--openface empty": lambda e: (clip_args(e, **{"--openface": e.write("empty.csv", "")}), e.p("empty.csv")),
    "--openface header only": lambda e: (clip_args(e, **{"--openface": e.write("h.csv", HEADER + "\n")}),
                                         e.p("h.csv")),
    "--face missing": lambda e: ([*clip_args(e), "--face", e.p("none.npy")], e.p("none.npy")),
    "--subtitle empty": lambda e: (clip_args(e, **{"--subtitle": " "}), "--subtitle"),
    "--video not given": lambda e: (_without(clip_args(e), "--video"), "--video"),
    "--steps 0": lambda e: ([*clip_args(e), "--steps", "0"], "--steps"),
})


def _video_is_audio(args: List[str]) -> List[str]:
    args[args.index("--video") + 1] = args[args.index("--audio") + 1]
    return args


def _without(args: List[str], option: str) -> List[str]:
    i = args.index(option)
    return args[:i] + args[i + 2:]


# ------------------------------------------------------------------------------------------- the caches
# A description or CLIP feature cache that another program, version or crash left is refused by name, before
# anything is written to it or to --out (the caches live in --cache-dir here, so the snapshot covers them).

_KV = "CREATE TABLE kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID"


def _sqlite(path: Path, script: str, rows: int = 0) -> None:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(script)
    if rows:
        con.executemany("INSERT INTO kv VALUES (?, ?, ?)", [("ns", f"key {i}", bytes(200)) for i in range(rows)])
    con.commit()
    con.close()


def _truncated(path: Path) -> None:
    _sqlite(path, f"{_KV}; PRAGMA user_version = 1", rows=2000)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


BAD_CACHES: Dict[str, Callable[[Path], None]] = {
    "random bytes": lambda path: (path.parent.mkdir(parents=True), path.write_bytes(os.urandom(8192))),
    "truncated": _truncated,
    "a table of another version": lambda path: _sqlite(path, "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)"),
    "schema version 2": lambda path: _sqlite(path, f"{_KV}; PRAGMA user_version = 2"),
}


def _bad_cache(make: Callable[[Path], None], file: str, args: Callable[[Env], List[str]]) -> Build:
    def build(e: Env):
        make(Path(e.p(f"cache/{file}")))
        return [*args(e), "--cache-dir", e.p("cache")], e.p(f"cache/{file}")
    return build


def _pre_args(e: Env) -> List[str]:
    _good_csv(e)
    return ["--openface-dir", e.p("of"), "--out", e.p("feats"), "--clip-model", e.tiny_clip()]


for _problem, _make in BAD_CACHES.items():
    cases("describe", {f"description cache: {_problem}": _bad_cache(_make, "descriptions.sqlite",
                                                                     lambda e: [_good_csv(e)])})
    cases("precompute", {f"description cache: {_problem}": _bad_cache(_make, "descriptions.sqlite", _pre_args)})


# ------------------------------------------------------------------------------------------- one name, one video
# Two inputs with one video name would be written over each other or shown as one video: refused, naming both.

def _two_named(*rels: str) -> Callable[[Env], str]:
    """CSVs at ``rels``; the error names the first two as ``A and B``."""
    def make(e: Env) -> str:
        for rel in rels:
            e.csv(rel)
        return f"{e.p(rels[0])} and {e.p(rels[1])}"
    return make


def _features(*names: str) -> Callable[[Env], Tuple[List[str], str]]:
    def build(e: Env):
        for name in names:
            e.write(f"feats/{name}.json", "{}")
            e.write(f"feats/{name}.npy", b"")
        return [e.p("feats")], f"{e.p(f'feats/{names[0]}.json')} and {e.p(f'feats/{names[1]}.json')}"
    return build


def _lines(*videos_frames: Tuple[str, int]) -> str:
    return "".join(json.dumps({"video": v, "frame": f, "input": "AU12: 2.00", "description": "A smile."}) + "\n"
                   for v, f in videos_frames)


cases("describe", {
    "one name in two folders": lambda e: ([e.p("a"), e.p("b")], _two_named("a/x.csv", "b/x.csv")(e)),
    "one file given twice": lambda e: ([e.csv("a/x.csv"), e.p("a")], f"{e.p('a/x.csv')} and {e.p('a/x.csv')}"),
    "names differing in case only": lambda e: ([e.p("a"), e.p("b")], _two_named("a/Clip.csv", "b/clip.csv")(e)),
})
cases("precompute", {
    "names differing in case only": lambda e: (
        ["--openface-dir", e.p("of"), "--out", e.p("feats"), "--clip-model", e.tiny_clip()],
        _two_named("of/Clip.csv", "of/clip.csv")(e)),
    "names differing in case only, --engine ray": lambda e: (
        ["--openface-dir", e.p("of"), "--out", e.p("feats"), "--clip-model", e.tiny_clip(), "--engine", "ray"],
        _two_named("of/Clip.csv", "of/clip.csv")(e)),
})
cases("inspect", {
    "feature records differing in case only": _features("Clip", "clip"),
    "descriptions: a video's lines come back": lambda e: (
        [e.write("d.jsonl", _lines(("x", 1), ("x", 2), ("y", 1), ("x", 3)))], "line 4"),
    "descriptions: a video's frames start over": lambda e: (
        [e.write("d.jsonl", _lines(("x", 1), ("x", 2), ("x", 1), ("x", 2)))], "line 3"),
})


# ------------------------------------------------------------------------------------------- files it did not write
# An output file is replaced only when the command wrote it (the folders' marker rule, for one file).

cases("inspect", {
    "default page would replace the user's run1.html": lambda e: (
        [e.write("run1.jsonl", GOOD_LINE + "\n")], e.write("run1.html", "<p>my notes</p>\n")),
    "--out names a file inspect did not write": lambda e: (
        [e.write("d.jsonl", GOOD_LINE + "\n"), "--out", e.write("notes.html", "mine\n")], e.p("notes.html")),
})


# ------------------------------------------------------------------------------------------- the command itself

cases("", {
    "no subcommand": lambda e: ([], "COMMAND"),
    "unknown subcommand": lambda e: (["frobnicate"], "frobnicate"),
})


# ------------------------------------------------------------------------------------------- the test

def snapshot(root: Path) -> Dict[str, str]:
    """Every entry under ``root`` (links not followed) with its kind and content hash."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


@pytest.fixture()
def stderr_logging():
    """Warnings reach stderr as they do outside pytest (whose log capture would swallow them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)


@pytest.mark.parametrize("subcommand, name, build", CASES, ids=[f"{s or 'au-agent'}: {n}" for s, n, _ in CASES])
def test_bad_input_is_one_named_line(subcommand, name, build, tmp_path, request, capsys, monkeypatch,
                                     record_property, stderr_logging):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AU_AGENT_CACHE_DIR", str(tmp_path / "cache"))  # the shared cache is not an output
    args, named = build(Env(work, request))
    before = snapshot(work)
    capsys.readouterr()
    rc = au_agent_cli.main(["-q", *([subcommand] if subcommand else []), *map(str, args)])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert rc == 1, f"exit status {rc}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    prefix = f"au-agent {subcommand}: error: " if subcommand else "au-agent: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert named in lines[0], f"{named!r} not named in {lines[0]!r}"
    assert out == "", f"stdout: {out!r}"
    assert snapshot(work) == before, "a file was created, changed or left behind"
    record_property("fault_case", "bad-input:clean-error")


def test_the_table_covers_every_subcommand():
    """A new subcommand must bring its bad inputs here."""
    covered = {s for s, _, _ in CASES}
    assert set(au_agent_cli.PIPELINE_ORDER) <= covered
    assert len(CASES) >= 100


# ------------------------------------------------------------------------------------------- write failures
# Conditions a test cannot create as root on a shared machine (a full disk, a read-only mount, a denied
# folder), injected where every output is written: the atomic writer.

def _raise(error: BaseException):
    def write(path, data):
        raise error
    return write


WRITE_FAILURES = {
    "disk full": lambda out: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), out),
    "read-only file system": lambda out: OSError(errno.EROFS, os.strerror(errno.EROFS), out),
    "permission denied": lambda out: PermissionError(errno.EACCES, os.strerror(errno.EACCES), out),
    "quota exceeded": lambda out: OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), out),
}


@pytest.mark.parametrize("failure", WRITE_FAILURES)
def test_write_failure_is_one_named_line(failure, tmp_path, capsys, monkeypatch, record_property):
    from au_core import atomic

    out = tmp_path / "descriptions.jsonl"
    monkeypatch.setattr(atomic, "write_bytes", _raise(WRITE_FAILURES[failure](str(out))))
    rc = au_agent_cli.main(["-q", "describe", str(SAMPLE_CSV), "--out", str(out)])
    out_text, err = capsys.readouterr()
    assert rc == 1 and out_text == ""
    assert err.splitlines() == [f"au-agent describe: error: {out}: {os.strerror(WRITE_FAILURES[failure]('').errno)}"]
    assert not out.exists()
    record_property("fault_case", "bad-input:clean-error")


# ------------------------------------------------------------------------------------------- precomputed records
# A `{name}.json` beside `{name}.npy` is read by precompute (resume), the AffectGPT mixin and evaluation.

def _saved_pair(out: Path) -> Path:
    import numpy as np

    from affectgpt_patch.features.store import VideoFeatures, save_video_features

    save_video_features(out, VideoFeatures("clip", np.zeros((2, 4), dtype=np.float32), np.array([True, False]),
                                           [1, None], ["AU12: 2.00", None], ["A smile.", None]))
    return out / "clip.json"


BAD_RECORDS = {
    "a JSON list": lambda meta: meta.write_text("[1, 2, 3]"),
    "mask of strings": lambda meta: meta.write_text(json.dumps({**json.loads(meta.read_text()), "mask": "yes"})),
    "frames of text": lambda meta: meta.write_text(json.dumps({**json.loads(meta.read_text()), "frames": ["a", 1]})),
    "no npy hash": lambda meta: meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items()
                                                            if k != "npy_sha256"})),
    "Latin-1 text": lambda meta: meta.write_bytes('{"name": "café"}'.encode("latin-1")),
    "a folder": lambda meta: (meta.unlink(), meta.mkdir()),
}


@pytest.mark.parametrize("problem", BAD_RECORDS)
def test_bad_precomputed_record_is_named(problem, tmp_path, record_property):
    from affectgpt_patch.features.store import load_precomputed, precomputed_meta
    from au_core.errors import AUAgentError

    meta = _saved_pair(tmp_path)
    assert load_precomputed(tmp_path, "clip") is not None  # the pair as written is fine
    BAD_RECORDS[problem](meta)
    for read in (load_precomputed, precomputed_meta):
        with pytest.raises(AUAgentError) as e:
            read(tmp_path, "clip")
        assert str(e.value).startswith(f"{meta}: ") and "\n" not in str(e.value)
    record_property("fault_case", "bad-input:clean-error")


# ------------------------------------------------------------------------------------------- the CLIP feature cache
# Opened after the description cache, which a run creates when it is missing: here only --out must stay unwritten.

@pytest.mark.parametrize("problem", BAD_CACHES)
def test_bad_clip_feature_cache_is_named(problem, tmp_path, capsys, request, record_property):
    e = Env(tmp_path, request)
    cache = tmp_path / "cache" / "clip_text_features.sqlite"
    BAD_CACHES[problem](cache)
    before = cache.read_bytes()
    rc = au_agent_cli.main(["-q", "precompute", *_pre_args(e), "--cache-dir", str(cache.parent)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "", err
    assert err.startswith(f"au-agent precompute: error: {cache}: ") and err.count("\n") == 1, err
    assert "--no-cache" in err and cache.read_bytes() == before and not (tmp_path / "feats").exists()
    record_property("fault_case", "bad-input:clean-error")

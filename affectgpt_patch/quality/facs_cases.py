"""Test cases for a trained agent (``au-agent test-agent``): the basic emotions as FACS Action Unit sets, plus
the user's own cases, and the report that shows what the agent says about each.

The built-in sets are the EMFACS prototypes restricted to the 17 AUs OpenFace 2.x estimates (so AU16 of disgust
and the one-sided AU12/AU14 of contempt are approximated), at intensities a clear expression reaches. They are a
smoke test of whether an agent names the right facial actions, not a benchmark (``au-agent eval`` is that).
"""
from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

from au_core import contract
from au_core.errors import AUAgentError
from au_core.facs import normalize_code


@dataclass(frozen=True)
class Case:
    name: str
    au_values: Dict[str, float]


BUILTIN_CASES: List[Case] = [
    Case("Neutral", {"AU01": 0.12, "AU04": 0.30, "AU12": 0.25, "AU25": 0.45}),  # nothing above the threshold
    Case("Happiness", {"AU06": 2.10, "AU12": 2.85, "AU25": 1.20}),
    Case("Sadness", {"AU01": 2.05, "AU04": 1.60, "AU15": 1.90, "AU17": 1.10}),
    Case("Surprise", {"AU01": 2.60, "AU02": 2.40, "AU05": 2.10, "AU25": 1.50, "AU26": 2.20}),
    Case("Fear", {"AU01": 2.20, "AU02": 1.80, "AU04": 1.50, "AU05": 2.30, "AU07": 1.20, "AU20": 2.00, "AU26": 1.40}),
    Case("Anger", {"AU04": 2.70, "AU05": 1.30, "AU07": 2.20, "AU23": 2.00}),
    Case("Disgust", {"AU09": 2.40, "AU10": 1.90, "AU15": 1.30, "AU17": 1.00}),
    Case("Contempt", {"AU12": 1.20, "AU14": 2.30}),
]


def _case(name: str, values: Mapping[str, Any], source: Path) -> Case:
    """Keep the AU intensity entries of ``values`` under their plain codes; contract rules decide what is valid."""
    au_values: Dict[str, Any] = {}
    for key, value in values.items():
        code = normalize_code(str(key))
        if code is None or str(key).strip().lower().endswith("_c"):
            continue
        if code in au_values:
            raise AUAgentError(f"case {name!r} gives {code} twice", source)
        au_values[code] = value
    if not au_values:
        raise AUAgentError(f"case {name!r} has no AU values (keys like AU12 or AU12_r)", source)
    try:
        contract.format_input(au_values)
    except AUAgentError as e:
        raise AUAgentError(f"case {name!r}: {e}", source) from None
    return Case(name, {code: float(v) for code, v in au_values.items()})


def load_cases(path: Union[str, os.PathLike]) -> List[Case]:
    """Cases from a JSON or CSV file.

    JSON: ``{"name": {"AU06": 2.1, ...}, ...}``, or a list of ``{"name": ..., "au_values": {...}}`` or of bare AU
    dicts. CSV: one case per row with AU columns (``AU12`` or OpenFace's ``AU12_r``; an OpenFace CSV works as
    it is) and an optional ``name`` column; rows are otherwise named after their ``frame`` or row number.
    """
    path = Path(path)
    if not path.is_file():
        raise AUAgentError("cases file not found", path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise AUAgentError("cases must be a .json or .csv file", path)
    cases = _json_cases(path) if suffix == ".json" else _csv_cases(path)
    if not cases:  # an empty file of cases is a mistake, not a request for the built-in cases alone
        raise AUAgentError("the file holds no case (expected {name: {AU06: 2.1, ...}, ...} or AU rows)", path)
    return cases


def _json_cases(path: Path) -> List[Case]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AUAgentError(f"not valid JSON ({e})", path) from None
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for i, item in enumerate(data, 1):
            if not isinstance(item, dict):
                raise AUAgentError(f"case {i} is not a JSON object", path)
            values = item.get("au_values", item)
            items.append((str(item.get("name", f"Case {i}")), values))
    else:
        raise AUAgentError("expected a JSON object or list of cases", path)
    for name, values in items:
        if not isinstance(values, dict):
            raise AUAgentError(f"case {name!r}: AU values must be a JSON object", path)
    return [_case(name, values, path) for name, values in items]


def _csv_cases(path: Path) -> List[Case]:
    import pandas as pd

    try:
        df = pd.read_csv(path, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise AUAgentError(f"not a readable CSV ({str(e).strip().splitlines()[-1]})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    cases = []
    for i, row in enumerate(df.to_dict("records"), 1):
        if "name" in row:
            name = str(row["name"])
        elif "frame" in row:
            name = f"frame {row['frame']}"
        else:
            name = f"row {i}"
        cases.append(_case(name, row, path))
    return cases


def format_report(cases: Sequence[Case], descriptions: Sequence[str], width: int = 100) -> str:
    """One block per case: its AU values, what the model was given, and the description."""
    blocks = []
    for i, (case, text) in enumerate(zip(cases, descriptions), 1):
        shown = {k: round(v, 2) for k, v in case.au_values.items()}
        given = contract.format_input(case.au_values)
        if contract.is_neutral(given):
            given += " (no AU above the threshold: the neutral description, no model call)"
        blocks.append("\n".join([
            f"Test Case {i}: {case.name}",
            f"AU Values: {shown}",
            f"Model input: {given}",
            "",
            "Generated Description:",
            textwrap.fill(text, width=width, initial_indent="  ", subsequent_indent="  ") or "  (empty)",
        ]))
    return "\n\n".join(blocks) + "\n"

"""The dataset files' JSON text, written fast: byte for byte what ``atomic.dumps_json(records)`` (a list) and
``json.dumps(record, ensure_ascii=False)`` (a JSONL line) write for flat records.

``json.dumps(..., indent=...)`` runs json's pure-Python encoder (about 20 µs a record); here each record's
``"key": value`` texts are made once with json's C string encoder and serve the full file, its split and the
JSONL file alike.
"""
from __future__ import annotations

import json
from typing import Any, List, Mapping

_encode_str = json.encoder.encode_basestring  # json's C encoder (ensure_ascii=False)


def json_fields(record: Mapping[str, Any]) -> List[str]:
    """The ``"key": value`` texts of a flat record (str/int/float/bool/None values), as ``json.dumps`` writes
    them, for :func:`json_list_item` and :func:`json_line`."""
    return [f"{_encode_str(k)}: {_json_scalar(v)}" for k, v in record.items()]


def _json_scalar(value: Any) -> str:
    if isinstance(value, str):
        return _encode_str(value)
    return int.__repr__(value) if type(value) is int else json.dumps(value)


def json_list_item(fields: List[str], indent: int = 2) -> str:
    """One record exactly as ``dumps_json(list_of_records, indent)`` writes it inside the list."""
    pad = " " * indent
    return f"{pad}{{\n{pad}{pad}" + f",\n{pad}{pad}".join(fields) + f"\n{pad}}}" if fields else f"{pad}{{}}"


def json_line(fields: List[str]) -> str:
    """One record exactly as ``json.dumps(record, ensure_ascii=False)`` writes it (a JSONL line)."""
    return "{" + ", ".join(fields) + "}"


def json_list(items: List[str]) -> str:
    """``dumps_json(records)``, byte for byte, from the :func:`json_list_item` texts of the records."""
    return "[\n" + ",\n".join(items) + "\n]\n" if items else "[]\n"

"""Atomic file and directory writes: a crash never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Union

PathLike = Union[str, os.PathLike]
_encode_str = json.encoder.encode_basestring  # json's C encoder (ensure_ascii=False)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, indent: Union[int, None] = 2) -> str:
    """The project's canonical JSON text: stable key order as given, UTF-8, trailing newline."""
    return json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"


def json_fields(record: Mapping[str, Any]) -> List[str]:
    """The ``"key": value`` texts of a flat record (str/int/float/bool/None values), as ``json.dumps`` writes
    them, for :func:`json_list_item` and :func:`json_line`. Large record lists are written this way because
    ``json.dumps(..., indent=...)`` runs json's pure-Python encoder (about 20 µs a record)."""
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


def write_json(path: PathLike, obj: Any, indent: Union[int, None] = 2) -> None:
    write_text(path, dumps_json(obj, indent))


@contextlib.contextmanager
def staged_dir(out_dir: PathLike) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``out_dir`` only when the block succeeds.

    The staging folder sits beside ``out_dir`` (same file system), so the swap is two renames; on any error it
    is removed and ``out_dir`` keeps its previous content.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(stage, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

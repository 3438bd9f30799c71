"""Which video, and which bytes of its input, a precomputed record was made from.

Every ``{name}.json`` that ``au-agent precompute`` writes carries ``"name"`` (the video) and ``"input"``: the
input file's name, size, ``mtime_ns`` and sha256, taken just before the file is read. A record is stale when
its name is not the file's (a pair copied or renamed from another video) or when its input has changed since
(OpenFace run again, a corrected CSV). Checking is cheap: size and mtime are compared first, and the content is
hashed only when either differs, so a file that was merely touched still matches.

``precompute`` redoes a stale video on resume; the dataset mixin refuses a stale file when its input is
reachable. A record written before fingerprints existed has no ``"input"``: resume redoes it (descriptions and
CLIP features come from the caches), the mixin uses it with one warning, since it cannot be verified.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from au_core import atomic
from au_core.errors import AUAgentError

from ..config_access import PathArg

log = logging.getLogger(__name__)

INPUT_KEY = "input"
#: Why a record is redone or refused, one phrase each (also the keys of precompute's "redone" counts).
FOREIGN, CHANGED, UNVERIFIED = "belongs to another video", "its input changed", "has no input fingerprint"


def input_fingerprint(path: PathArg) -> Dict[str, Any]:
    """``{"file", "size", "mtime_ns", "sha256"}`` of an input file (stat first: a later change shows)."""
    st = os.stat(path)
    return {"file": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": atomic.file_digest(path)}


def input_changed(recorded: Any, path: PathArg) -> bool:
    """True when ``path`` no longer holds the bytes ``recorded`` (an :func:`input_fingerprint`) describes."""
    if not isinstance(recorded, dict):
        return True
    st = os.stat(path)
    if st.st_size == recorded.get("size") and st.st_mtime_ns == recorded.get("mtime_ns"):
        return False
    return st.st_size != recorded.get("size") or atomic.file_digest(path) != recorded.get("sha256")


def stale_reason(meta: Mapping[str, Any], name: str, input_path: Optional[PathArg]) -> Optional[str]:
    """Why the record ``{name}.json`` must not stand for ``name`` now (:data:`FOREIGN`, :data:`CHANGED` or
    :data:`UNVERIFIED`), or None. The input is checked only when ``input_path`` is an existing file."""
    if meta.get("name") != name:
        return FOREIGN
    if input_path is None or not os.path.isfile(input_path):
        return None
    if INPUT_KEY not in meta:
        return UNVERIFIED
    return CHANGED if input_changed(meta[INPUT_KEY], input_path) else None


def describe_stale(reason: str, meta: Mapping[str, Any], input_path: Optional[PathArg]) -> str:
    """One phrase for an error line: what is wrong with the record, naming the other video or the input."""
    if reason == FOREIGN:
        return f"the record is of video {meta.get('name')!r} (a file copied or renamed from another video)"
    if reason == CHANGED:
        return f"{input_path} changed since the features were computed"
    return "the record has no input fingerprint (written by an older au-agent)"


def check_record(meta: Mapping[str, Any], name: str, input_path: Optional[PathArg],
                 record_path: PathArg) -> None:
    """Refuse (one line naming the record) a record from another video or from an input that has changed."""
    reason = stale_reason(meta, name, input_path)
    if reason in (FOREIGN, CHANGED):
        raise AUAgentError(f"stale precomputed AU features: {describe_stale(reason, meta, input_path)}; rerun "
                           f"`au-agent precompute` on this folder (it redoes such videos)", record_path)


def stale_problems(records: Mapping[str, Mapping[str, Any]], input_of: Callable[[str], Optional[str]],
                   folder: Any) -> Dict[str, List[str]]:
    """The records (by name) of another video or of a changed input, by problem; warns once about records
    that cannot be verified (no fingerprint), which are used as they are."""
    problems: Dict[str, List[str]] = {}
    unverified = []
    for name, meta in records.items():
        reason = stale_reason(meta, name, input_of(name))
        if reason == UNVERIFIED:
            unverified.append(name)
        elif reason is not None:
            problems.setdefault(f"stale ({reason})", []).append(name)
    if unverified:
        log.warning("%s: %d of %d precomputed files have no input fingerprint (written by an older au-agent) and "
                    "cannot be checked against their input (e.g. %s.json); rerun `au-agent precompute` on the "
                    "folder to verify them", folder, len(unverified), len(records), unverified[0])
    return problems

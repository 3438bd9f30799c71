"""One name, one video: every command that lists a corpus refuses two inputs with the same video name.

A video's name (its CSV's stem) keys everything made from it: the ``video`` of its describe lines, its
``{name}.npy/.json`` features, its section in ``inspect`` and its lookup by AffectGPT. Two inputs with one
name would be written over each other or shown as one video, so describe, precompute (both engines) and
inspect refuse them in one line that names both. Names that differ only in case or Unicode normalisation
count as the same: their ``{name}.npy`` files are one file on macOS and Windows file systems.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Sequence, Set

from au_core.errors import AUAgentError


def name_key(name: str) -> str:
    """What makes two video names the same name."""
    return unicodedata.normalize("NFC", name).casefold()


def duplicate_error(name: str, first: object, second: object) -> AUAgentError:
    return AUAgentError(f"two inputs have the video name {name!r}: {first} and {second}; rename one of them "
                        "(descriptions and features are keyed by video name)")


def check_unique_videos(paths: Iterable[Path]) -> None:
    """Refuse two paths whose stems (video names) are the same name (see :func:`name_key`)."""
    seen: Dict[str, Path] = {}
    for path in paths:
        key = name_key(path.stem)
        if key in seen:
            raise duplicate_error(path.stem, seen[key], path)
        seen[key] = path


def check_video_lines(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """describe writes the lines of a video together and each frame once: a video whose lines come back after
    another video's, or whose frame comes again, is two inputs with one name (``video`` and ``frame`` keys)."""
    first: Dict[str, int] = {}
    frames: Dict[str, Set[object]] = {}
    last = None
    for n, row in enumerate(rows, 1):
        name, frame = str(row["video"]), row["frame"]
        if name in first and (name != last or frame in frames[name]):
            raise AUAgentError(f"line {n}: video {name!r} again (first at line {first[name]}): two inputs with "
                               "this video name were described together; describe them under distinct names", path)
        first.setdefault(name, n)
        frames.setdefault(name, set()).add(frame)
        last = name

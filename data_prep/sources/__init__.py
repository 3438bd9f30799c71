"""Readers of teacher descriptions, one module per input schema; each yields :class:`FrameRecord` objects.

=====================  ========================================================  =======================
schema                 files                                                     reader
=====================  ========================================================  =======================
per-frame variant      ``<name>_au_analysis.json`` with per_frame_au_descriptions  :mod:`au_core.mer_factory`
upstream image         ``<stem>_image_analysis.json`` (legacy ``_image_data``)     :mod:`.image_analysis`
upstream MER / AU      ``<stem>_merr_data.json``, ``<stem>_au_analysis.json``      :mod:`.merr`
existing Alpaca data   any ``.json`` / ``.jsonl`` given with ``--import-alpaca``  :mod:`.alpaca`
=====================  ========================================================  =======================
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Tuple

from tqdm import tqdm

from au_core import mer_factory
from au_core.errors import AUAgentError
from au_core.record import FrameRecord, load_json, stem_without

from . import alpaca, image_analysis, merr

log = logging.getLogger(__name__)

__all__ = ["FrameRecord", "read_mer_factory_output", "read_alpaca", "find_mer_factory_files"]

SKIP_DIRS = {"error_logs", ".llm_cache"}
_READERS = (mer_factory, image_analysis, merr)  # each names the file-name suffixes of its schema
_SUFFIXES = tuple(dict.fromkeys(suffix for reader in _READERS for suffix in reader.SUFFIXES))


def find_mer_factory_files(root: os.PathLike) -> List[Path]:
    """The MER-Factory JSON files below ``root`` that carry AU information, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise AUAgentError("MER-Factory output folder not found", root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".json") and Path(name).stem.endswith(_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def read_mer_factory_output(root: os.PathLike, text_key: str = mer_factory.DEFAULT_TEXT_KEY,
                            progress: bool = True) -> Iterator[FrameRecord]:
    """Every frame record found in a MER-Factory output folder, whatever mix of schemas it holds."""
    files = find_mer_factory_files(root)
    if not files:
        raise AUAgentError("no MER-Factory *_au_analysis / *_image_analysis / *_merr_data JSON files found", root)
    seen: Dict[Tuple[str, str], Path] = {}
    for path in tqdm(files, desc="reading MER-Factory output", unit="file", disable=not progress):
        video = stem_without(path, _SUFFIXES)
        kind = path.stem[len(video):]
        if (video, kind) in seen:
            log.warning("%s: stem %r also at %s (MER-Factory overwrites equal stems)", path, video, seen[video, kind])
        seen[video, kind] = path
        data = load_json(path)
        if mer_factory.matches(data):
            yield from mer_factory.read(path, data, video, text_key)
        elif image_analysis.matches(data):
            yield from image_analysis.read(path, data, video)
        elif merr.matches(data):
            yield from merr.read(path, data, video)
        else:
            raise AUAgentError("not a MER-Factory AU, image or MER analysis (unknown keys)", path)


def read_alpaca(paths: Iterable[os.PathLike]) -> Iterator[FrameRecord]:
    for path in paths:
        yield from alpaca.read_file(Path(path))

"""``au-agent captions``: the AU captions of a ``precompute`` folder as the AU fork's ``nonverbal_json`` file.

The AU fork's newest commits (``ouyangjutian/AffectGPT`` 88593b0, "Nonverbal") read, when
``use_nonverbal_text: true``, a caption per sample from ``{dataset: {sample_name: {"caption": text}}}`` and put
it in the prompt. This module writes that shape from the captions ``precompute`` stored beside the features
(so the fork sees the same text as au-agent's own text route), one dataset per call, merged into an existing
file; the extra keys (``tokens``, ``max_tokens``, ``cut``) are ignored by the fork and kept for the record.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict

from au_core import atomic
from au_core.errors import AUAgentError

from ..config_access import PathArg
from ..features.source import SourceSettings
from ..features.store import precomputed_meta
from .text_route import caption_of

log = logging.getLogger(__name__)

#: The fork's dataset names (its ``get_nonverbal_text`` maps the dataset classes onto these keys).
FORK_DATASET_NAMES = ("MER2023", "MER2024", "MERCaptionPlus", "MELD", "IEMOCAP", "CMU-MOSI", "CMU-MOSEI",
                      "CH-SIMS", "CH-SIMS v2")


def read_captions_file(path: PathArg) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """A ``nonverbal_json`` file, checked: ``{dataset: {sample: {"caption": str, ...}}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AUAgentError(f"not a readable JSON captions file ({getattr(e, 'strerror', None) or e})", path) from None
    if not isinstance(data, dict):
        raise AUAgentError("not a captions file: expected {dataset: {sample: {\"caption\": text}}}", path)
    for dataset, samples in data.items():
        if not isinstance(samples, dict):
            raise AUAgentError(f"dataset {dataset!r} is not an object of samples", path)
        for name, entry in samples.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("caption"), str):
                raise AUAgentError(f"{dataset}/{name}: expected {{\"caption\": text}}", path)
    return data


def collect_captions(features: PathArg, max_missing: float = SourceSettings.au_max_missing
                     ) -> Dict[str, Dict[str, Any]]:
    """``{sample: {"caption", "tokens", "max_tokens", "cut"}}`` of every record of a ``precompute`` folder;
    more than ``max_missing`` of the records without a caption is an error naming the folder."""
    folder = Path(features)
    if not folder.is_dir():
        raise AUAgentError("features folder not found (an `au-agent precompute` output)", folder)
    names = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("manifest", "failures"))
    entries: Dict[str, Dict[str, Any]] = {}
    missing = []
    for name in names:
        meta = precomputed_meta(folder, name)
        if meta is None:
            continue  # not a complete record (its .npy is missing or being written)
        text = caption_of(meta)
        if text is None:
            missing.append(name)
            continue
        cap = meta["caption"]
        entries[name] = {"caption": text, **{k: cap.get(k) for k in ("tokens", "max_tokens", "cut")}}
    total = len(entries) + len(missing)
    if total == 0:
        raise AUAgentError("no {name}.json records of `au-agent precompute` in this folder", folder)
    if len(missing) > max_missing * total:
        raise AUAgentError(f"{len(missing)} of {total} videos have no AU caption (au_max_missing: {max_missing:g}), "
                           f"e.g. {', '.join(missing[:3])}; rerun `au-agent precompute` without --no-au-caption",
                           folder)
    if missing:
        log.warning("%d of %d videos have no AU caption (e.g. %s)", len(missing), total, ", ".join(missing[:3]))
    return entries


def write_captions(features: PathArg, dataset_name: str, out: PathArg,
                   max_missing: float = SourceSettings.au_max_missing) -> Dict[str, int]:
    """Write (or merge into) ``out``: this dataset's entries replace its earlier ones, other datasets stay."""
    if not dataset_name:
        raise AUAgentError("--dataset-name must not be empty")
    out = Path(out)
    data: Dict[str, Any] = read_captions_file(out) if out.exists() else {}
    entries = collect_captions(features, max_missing)
    if dataset_name not in FORK_DATASET_NAMES:
        log.warning("dataset name %r is none of the AU fork's (%s): its get_nonverbal_text looks samples up "
                    "under the dataset's own name", dataset_name, ", ".join(FORK_DATASET_NAMES))
    data[dataset_name] = entries
    atomic.write_json(out, data)
    return {"datasets": len(data), "samples": len(entries),
            "cut": sum(1 for e in entries.values() if e.get("cut"))}


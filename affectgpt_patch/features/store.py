"""The precomputed file format: ``{name}.npy`` (float16 [T, D]) and its ``{name}.json`` record, and the one check
that a record was made the way the caller would make it now (:func:`meta_mismatches`).

Deciding that a video is done reads only records and checksums, so this module imports no numpy until features
are written or decoded: a finished rerun of ``au-agent precompute`` stays a fraction of a second.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set, Tuple

from au_core import atomic, contract
from au_core.contract import DEFAULT_MIN_CONFIDENCE
from au_core.errors import AUAgentError

from ..config_access import PathArg

if TYPE_CHECKING:
    import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureSettings:
    """Which frames of a video become its T features: ``precompute``'s options, and the AffectGPT config keys
    named in each field's ``config_key`` (the dataset mixin reads them; an AffectGPT dataset without ``au_frames``
    takes T from AffectGPT's ``n_frms``). Every ``{name}.json`` stores these fields under ``"settings"``."""

    frames: int = field(default=8, metadata={"config_key": "au_frames"})  # T; AffectGPT's n_frms
    sampling: str = field(default="uniform", metadata={"config_key": "au_sampling"})  # uniform | peaks | all
    min_confidence: float = field(default=DEFAULT_MIN_CONFIDENCE, metadata={"config_key": "au_min_confidence"})


#: The AffectGPT config key of each FeatureSettings field (``au_frames`` → ``frames`` …).
FEATURE_CONFIG_KEYS: Dict[str, str] = {f.metadata["config_key"]: f.name for f in fields(FeatureSettings)}


@dataclass
class VideoFeatures:
    name: str
    features: np.ndarray  # float32 [T, D], float16-exact values, zero rows where masked
    mask: np.ndarray  # bool [T]
    frames: List[Optional[int]]
    inputs: List[Optional[str]]
    descriptions: List[Optional[str]]
    meta: Dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- files


def npy_bytes(features: np.ndarray) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, features.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def save_video_features(out_dir: PathArg, vf: VideoFeatures) -> None:
    """Write ``{name}.npy`` (float16 [T, D]) then ``{name}.json``; the JSON, written last and holding the
    npy's sha256, marks the pair complete."""
    out_dir = Path(out_dir)
    data = npy_bytes(vf.features)
    atomic.write_bytes(out_dir / f"{vf.name}.npy", data)
    record = {
        "name": vf.name,
        "shape": list(vf.features.shape),
        "mask": [bool(m) for m in vf.mask],
        "frames": vf.frames,
        "inputs": vf.inputs,
        "descriptions": vf.descriptions,
        **vf.meta,
        "npy_sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic.write_json(out_dir / f"{vf.name}.json", record)


def _complete_pair(out_dir: Path, name: str) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """The JSON record and npy bytes of a complete, consistent pair; None when missing or incomplete."""
    npy, meta_path = out_dir / f"{name}.npy", out_dir / f"{name}.json"
    if meta_path.is_dir():
        raise AUAgentError("a folder where a precomputed record (JSON file) is expected", meta_path)
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    except UnicodeDecodeError:
        raise AUAgentError("not UTF-8 text: not a record written by au-agent precompute", meta_path) from None
    problem = _record_problem(meta)
    if problem:
        raise AUAgentError(f"{problem}: not a record written by au-agent precompute", meta_path)
    data = npy.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("npy_sha256"):
        return None
    return meta, data


#: The element types of each list in a record (a set of exact types: checked for every frame on every rerun).
_LIST_TYPES: Dict[str, Set[type]] = {"shape": {int}, "mask": {bool}, "frames": {int, type(None)},
                                     "inputs": {str, type(None)}, "descriptions": {str, type(None)}}


def _record_problem(meta: Any) -> Optional[str]:
    """What makes a parsed ``{name}.json`` unusable (wrong JSON types), or None."""
    if not isinstance(meta, dict):
        return f"a JSON {type(meta).__name__}, not an object"
    for key, kinds in _LIST_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, list) or not set(map(type, value)) <= kinds:  # exact types, as json.loads gives
            return f"{key!r} is not a list of the expected values"
    if not isinstance(meta.get("npy_sha256"), str):
        return "'npy_sha256' is not a string"
    return None


def precomputed_meta(out_dir: PathArg, name: str) -> Optional[Dict[str, Any]]:
    """The JSON record of a complete pair, checked like :func:`load_precomputed` but without decoding the
    features: all precompute needs to decide that a video is done."""
    found = _complete_pair(Path(out_dir), name)
    return found[0] if found is not None else None


def load_precomputed(out_dir: PathArg, name: str) -> Optional[VideoFeatures]:
    """The precomputed features of ``name``, or None when the pair is missing or incomplete."""
    found = _complete_pair(Path(out_dir), name)
    if found is None:
        return None
    meta, data = found
    import numpy as np

    feats = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
    keys = ("name", "shape", "mask", "frames", "inputs", "descriptions", "npy_sha256")
    return VideoFeatures(str(meta.get("name", name)), feats, np.asarray(meta["mask"], dtype=bool), meta["frames"],
                         meta["inputs"], meta["descriptions"], {k: v for k, v in meta.items() if k not in keys})


SETTING_LABELS = {"frames": "T", "sampling": "sampling", "min_confidence": "min_confidence"}


def meta_mismatches(meta: Mapping[str, Any], settings: FeatureSettings, agent_fingerprint: Optional[str] = None,
                    clip_fingerprint: Optional[str] = None, dim: Optional[int] = None) -> List[str]:
    """How a precomputed record (its JSON, or a VideoFeatures' meta) differs from the way the caller would make
    it now: one short phrase per difference, none when it matches. A ``None`` expectation is not checked."""
    problems = []
    if meta.get("format") != FORMAT_VERSION:
        problems.append(f"file format {meta.get('format')!r} (this version reads {FORMAT_VERSION})")
    if meta.get("contract_version") != contract.CONTRACT_VERSION:
        problems.append(f"contract version {meta.get('contract_version')!r} (now {contract.CONTRACT_VERSION})")
    stored = meta.get("settings")
    stored = stored if isinstance(stored, dict) else {}
    for key, value in asdict(settings).items():
        if stored.get(key) != value:
            problems.append(f"{SETTING_LABELS.get(key, key)} {stored.get(key)!r} (config: {value!r})")
    if agent_fingerprint is not None and meta.get("agent") != agent_fingerprint:
        problems.append(f"agent fingerprint {meta.get('agent')!r} (config's agent: {agent_fingerprint!r})")
    if clip_fingerprint is not None and meta.get("clip") != clip_fingerprint:
        problems.append(f"CLIP fingerprint {meta.get('clip')!r} (config's au_clip_model: {clip_fingerprint!r})")
    shape = meta.get("shape")
    if dim is not None and isinstance(shape, list) and len(shape) == 2 and shape[1] != dim:
        problems.append(f"feature width {shape[1]} (config: {dim})")
    return problems

"""AU features of one video: the one way a feature is computed, shared by ``precompute``, ``make bench``, the
evaluation and the AffectGPT dataset mixin.

    OpenFace CSV ─ read_openface_csv ─► track ─ plan_video (frames.select_frames) ─► T frames + mask
        ─ contract.format_input ─► input strings ─ agent.describe_inputs ─► descriptions
        ─ encoder.encode (CLIP, L2-normalised) ─► float16-rounded [T, 512] + mask ─► VideoFeatures

Features are rounded through float16 in every path, because that is what ``{name}.npy`` stores: a feature
read from a precomputed file and one computed on the fly are bit-identical.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from data_prep import atomic, contract
from data_prep.errors import AUAgentError
from data_prep.openface import DEFAULT_MIN_CONFIDENCE, OpenFaceTrack, read_openface_csv

from .frames import select_frames

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureSettings:
    frames: int = 8  # T; AffectGPT's n_frms
    sampling: str = "uniform"  # uniform | peaks | all (see frames.py)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass
class FramePlan:
    """What will be described for one video, before any model runs."""

    name: str
    frames: List[Optional[int]]
    mask: np.ndarray
    inputs: List[Optional[str]]
    total_frames: int


@dataclass
class VideoFeatures:
    name: str
    features: np.ndarray  # float32 [T, D], float16-exact values, zero rows where masked
    mask: np.ndarray  # bool [T]
    frames: List[Optional[int]]
    inputs: List[Optional[str]]
    descriptions: List[Optional[str]]
    meta: Dict[str, Any] = field(default_factory=dict)


def plan_video(track: OpenFaceTrack, settings: FeatureSettings) -> FramePlan:
    intensity = np.nan_to_num(track.intensities).sum(axis=1) if settings.sampling == "peaks" else None
    selection = select_frames(track.frames, track.valid, settings.frames, settings.sampling, intensity)
    position = {int(f): i for i, f in enumerate(track.frames.tolist())}
    inputs = [track.input_string(position[f]) if f is not None else None for f in selection.frames]
    total = int(track.frames.max()) if len(track) else 0
    return FramePlan(track.video, selection.frames, selection.mask, inputs, total)


def assemble(plan: FramePlan, texts: Sequence[Optional[str]], encoder: Any, agent_fingerprint: Optional[str],
             settings: FeatureSettings) -> VideoFeatures:
    """Encode the plan's descriptions (``None`` for masked slots) into features; CLIP runs here, cached."""
    present = [t for t in texts if t is not None]
    feats = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if present:
        feats[[i for i, t in enumerate(texts) if t is not None]] = encoder.encode(present)
    feats = feats.astype(np.float16).astype(np.float32)
    meta = {"format": FORMAT_VERSION, "agent": agent_fingerprint, "clip": encoder.fingerprint,
            "contract_version": contract.CONTRACT_VERSION, "settings": asdict(settings),
            "total_frames": plan.total_frames}
    return VideoFeatures(plan.name, feats, plan.mask.copy(), list(plan.frames), list(plan.inputs), list(texts), meta)


def describe_plan(plan: FramePlan, descriptions: Mapping[str, str]) -> List[Optional[str]]:
    return [descriptions[s] if s is not None else None for s in plan.inputs]


def compute_video_features(track: OpenFaceTrack, agent: Any, encoder: Any,
                           settings: FeatureSettings = FeatureSettings()) -> VideoFeatures:
    """Features of one video from its OpenFace track, the agent and the CLIP encoder."""
    plan = plan_video(track, settings)
    inputs = sorted({s for s in plan.inputs if s is not None})
    descriptions = dict(zip(inputs, agent.describe_inputs(inputs)))
    return assemble(plan, describe_plan(plan, descriptions), encoder, agent.fingerprint, settings)


def features_from_descriptions(frame_numbers: Sequence[int], descriptions: Sequence[str],
                               total_frames: Optional[int], encoder: Any,
                               settings: FeatureSettings = FeatureSettings(), name: str = "") -> VideoFeatures:
    """Features from descriptions that already exist for some frames (MER-Factory's per-frame texts).

    Only described frames count as valid, so uniform sampling takes the described frame nearest to each
    of AffectGPT's frame indices. ``peaks`` needs intensities, which texts lack: it falls back to uniform.
    """
    if len(frame_numbers) != len(descriptions):
        raise AUAgentError("frame_numbers and descriptions differ in length")
    text_of = {int(f): t for f, t in zip(frame_numbers, descriptions)}
    frames = np.array(sorted(text_of), dtype=np.int64)
    sampling = "uniform" if settings.sampling == "peaks" else settings.sampling
    selection = select_frames(frames, np.ones(len(frames), dtype=bool), settings.frames, sampling,
                              total_frames=total_frames)
    total = int(total_frames or (frames.max() if len(frames) else 0))
    plan = FramePlan(name, selection.frames, selection.mask, [None] * len(selection.frames), total)
    vf = assemble(plan, [text_of[f] if f is not None else None for f in selection.frames], encoder, None, settings)
    vf.meta["source"] = "descriptions"
    return vf


# ------------------------------------------------------------------------------------------------- files


def npy_bytes(features: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, features.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def save_video_features(out_dir: os.PathLike, vf: VideoFeatures) -> None:
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


def _record_problem(meta: Any) -> Optional[str]:
    """What makes a parsed ``{name}.json`` unusable (wrong JSON types), or None."""
    if not isinstance(meta, dict):
        return f"a JSON {type(meta).__name__}, not an object"
    lists = {"shape": int, "mask": bool, "frames": (int, type(None)), "inputs": (str, type(None)),
             "descriptions": (str, type(None))}
    for key, kind in lists.items():
        value = meta.get(key)
        if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
            return f"{key!r} is not a list of the expected values"
    if not isinstance(meta.get("npy_sha256"), str):
        return "'npy_sha256' is not a string"
    return None


def precomputed_meta(out_dir: os.PathLike, name: str) -> Optional[Dict[str, Any]]:
    """The JSON record of a complete pair, checked like :func:`load_precomputed` but without decoding the
    features: all precompute needs to decide that a video is done."""
    found = _complete_pair(Path(out_dir), name)
    return found[0] if found is not None else None


def load_precomputed(out_dir: os.PathLike, name: str) -> Optional[VideoFeatures]:
    """The precomputed features of ``name``, or None when the pair is missing or incomplete."""
    found = _complete_pair(Path(out_dir), name)
    if found is None:
        return None
    meta, data = found
    feats = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
    keys = ("name", "shape", "mask", "frames", "inputs", "descriptions", "npy_sha256")
    return VideoFeatures(name, feats, np.asarray(meta["mask"], dtype=bool), meta["frames"], meta["inputs"],
                         meta["descriptions"], {k: v for k, v in meta.items() if k not in keys})


def meta_matches(meta: Mapping[str, Any], settings: FeatureSettings, agent_fingerprint: Optional[str],
                 clip_fingerprint: Optional[str]) -> bool:
    """Whether a precomputed record (its JSON, or a VideoFeatures' meta) was made the way the caller would
    make it now."""
    return (meta.get("settings") == asdict(settings)
            and meta.get("contract_version") == contract.CONTRACT_VERSION
            and (agent_fingerprint is None or meta.get("agent") == agent_fingerprint)
            and (clip_fingerprint is None or meta.get("clip") == clip_fingerprint))


def matches_settings(vf: VideoFeatures, settings: FeatureSettings, agent_fingerprint: Optional[str],
                     clip_fingerprint: Optional[str]) -> bool:
    """Whether a precomputed file was made the way the caller would make it now."""
    return meta_matches(vf.meta, settings, agent_fingerprint, clip_fingerprint)


def video_features(name: str, *, precomputed_dir: Optional[os.PathLike] = None,
                   openface_dir: Optional[os.PathLike] = None, agent: Any = None, encoder: Any = None,
                   settings: FeatureSettings = FeatureSettings()) -> VideoFeatures:
    """Features of one video: the precomputed file when present (and made with these settings), else
    computed from ``{openface_dir}/{name}.csv`` exactly as ``au-agent precompute`` would."""
    if precomputed_dir is not None:
        vf = load_precomputed(precomputed_dir, name)
        if vf is not None:
            if matches_settings(vf, settings, getattr(agent, "fingerprint", None), getattr(encoder, "fingerprint", None)):
                return vf
            log.warning("%s: precomputed with other settings/agent/CLIP; recomputing", Path(precomputed_dir) / name)
    if openface_dir is None or agent is None or encoder is None:
        where = Path(precomputed_dir) / f"{name}.npy" if precomputed_dir else name
        raise AUAgentError("no precomputed AU features, and no OpenFace folder + agent + CLIP to compute them", where)
    track = read_openface_csv(Path(openface_dir) / f"{name}.csv", settings.min_confidence)
    return compute_video_features(track, agent, encoder, settings)

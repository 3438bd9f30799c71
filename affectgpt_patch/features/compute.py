"""AU features of one video: the one way a feature is computed, shared by ``precompute``, ``make bench``, the
evaluation and the AffectGPT dataset mixin.

    OpenFace CSV ─ read_openface_csv ─► track ─ plan_video (frames.select_frames) ─► T frames + mask
        ─ contract.format_input ─► input strings ─ agent.describe_inputs ─► descriptions
        ─ encoder.encode (CLIP, L2-normalised) ─► float16-rounded [T, D] + mask ─► VideoFeatures

Features are rounded through float16 in every path, because that is what ``{name}.npy`` stores: a feature
read from a precomputed file and one computed on the fly are bit-identical. D is the CLIP model's width.

:class:`~.source.FeatureSource` is the one place that decides where a training sample's feature comes from
(a precomputed file, OpenFace → agent → CLIP, or MER-Factory's descriptions → CLIP), what shape it has, and which
configurations are refused before training starts. The file format and the one check of a record
(:func:`~.store.meta_mismatches`) are in :mod:`.store`; the agent and encoder protocols in :mod:`.protocols`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from au_core import contract
from au_core.errors import AUAgentError
from au_core.openface import OpenFaceTrack, read_openface_csv

from ..captions.caption import frame_seconds
from ..config_access import PathArg
from .frames import select_frames
from .protocols import Describer, TextEncoder
from .provenance import input_fingerprint
from .store import FORMAT_VERSION, FeatureSettings, VideoFeatures, load_precomputed, meta_mismatches

log = logging.getLogger(__name__)


@dataclass
class FramePlan:
    """What will be described for one video, before any model runs."""

    name: str
    frames: List[Optional[int]]
    mask: np.ndarray
    inputs: List[Optional[str]]
    total_frames: int
    times: List[Optional[float]] = field(default_factory=list)  # seconds of each chosen frame (the AU caption's)
    source: Optional[Dict[str, Any]] = None  # the input file's fingerprint (provenance.input_fingerprint)


def plan_video(track: OpenFaceTrack, settings: FeatureSettings) -> FramePlan:
    intensity = np.nan_to_num(track.intensities).sum(axis=1) if settings.sampling == "peaks" else None
    total = track.video_frames  # the video's timeline (every face's rows), not the chosen face's last frame
    selection = select_frames(track.frames, track.valid, settings.frames, settings.sampling, intensity,
                              total_frames=total)
    position = {int(f): i for i, f in enumerate(track.frames.tolist())}
    inputs = [track.input_string(position[f]) if f is not None else None for f in selection.frames]
    stamps = None if track.timestamps is None else {
        int(f): float(t) for f, t in zip(track.frames.tolist(), track.timestamps.tolist()) if t == t}
    times = frame_seconds(selection.frames, stamps)
    return FramePlan(track.video, selection.frames, selection.mask, inputs, total, times)


def plan_csv(csv: PathArg, settings: FeatureSettings) -> FramePlan:
    """Fingerprint, read and plan one OpenFace CSV: the plan carries the fingerprint into the record."""
    try:
        fingerprint: Optional[Dict[str, Any]] = input_fingerprint(csv)
    except OSError:
        fingerprint = None  # the reader names the problem; a record without a fingerprint is redone on resume
    plan = plan_video(read_openface_csv(csv, settings.min_confidence), settings)
    plan.source = fingerprint
    return plan


def assemble(plan: FramePlan, texts: Sequence[Optional[str]], encoder: TextEncoder,
             agent_fingerprint: Optional[str], settings: FeatureSettings) -> VideoFeatures:
    """Encode the plan's descriptions (``None`` for masked slots) into features; CLIP runs here, cached."""
    present: List[str] = [t for t in texts if t is not None]
    feats = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if present:
        feats[[i for i, t in enumerate(texts) if t is not None]] = encoder.encode(present)
    feats = feats.astype(np.float16).astype(np.float32)
    meta = {"format": FORMAT_VERSION, "agent": agent_fingerprint, "clip": encoder.fingerprint,
            "contract_version": contract.CONTRACT_VERSION, "settings": asdict(settings),
            "total_frames": plan.total_frames}
    if plan.source is not None:
        meta["input"] = plan.source
    return VideoFeatures(plan.name, feats, plan.mask.copy(), list(plan.frames), list(plan.inputs), list(texts), meta)


def describe_plan(plan: FramePlan, descriptions: Mapping[str, str]) -> List[Optional[str]]:
    return [descriptions[s] if s is not None else None for s in plan.inputs]


def compute_video_features(track: OpenFaceTrack, agent: Describer, encoder: TextEncoder,
                           settings: FeatureSettings = FeatureSettings()) -> VideoFeatures:
    """Features of one video from its OpenFace track, the agent and the CLIP encoder."""
    plan = plan_video(track, settings)
    inputs = sorted({s for s in plan.inputs if s is not None})
    descriptions = dict(zip(inputs, agent.describe_inputs(inputs)))
    return assemble(plan, describe_plan(plan, descriptions), encoder, agent.fingerprint, settings)


def features_from_descriptions(frame_numbers: Sequence[int], descriptions: Sequence[str],
                               total_frames: Optional[int], encoder: TextEncoder,
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


def checked_precomputed(folder: PathArg, name: str, settings: FeatureSettings,
                        agent_fingerprint: Optional[str] = None, clip_fingerprint: Optional[str] = None,
                        dim: Optional[int] = None, input_path: Optional[PathArg] = None
                        ) -> Optional[VideoFeatures]:
    """:func:`load_precomputed`, refusing a file made another way than the caller would make it now, or one
    of another video or of an input that has changed since (see :mod:`.provenance`)."""
    from .provenance import check_record

    vf = load_precomputed(folder, name)
    if vf is not None:
        check_record({**vf.meta, "name": vf.name}, name, input_path, Path(folder) / f"{name}.json")
        problems = meta_mismatches({**vf.meta, "shape": list(vf.features.shape)}, settings, agent_fingerprint,
                                   clip_fingerprint, dim)
        if problems:
            raise AUAgentError(f"precomputed with other settings: {'; '.join(problems)}",
                               Path(folder) / f"{name}.json")
    return vf


def video_features(name: str, *, precomputed_dir: Optional[PathArg] = None,
                   openface_dir: Optional[PathArg] = None, agent: Optional[Describer] = None,
                   encoder: Optional[TextEncoder] = None, settings: FeatureSettings = FeatureSettings()
                   ) -> VideoFeatures:
    """Features of one video: the precomputed file when present, else computed from ``{openface_dir}/{name}.csv``
    exactly as ``au-agent precompute`` would. A precomputed file made another way (settings, contract, agent or
    CLIP) is an error, never silently replaced or used."""
    if precomputed_dir is not None:
        vf = checked_precomputed(precomputed_dir, name, settings, getattr(agent, "fingerprint", None),
                                 getattr(encoder, "fingerprint", None),
                                 getattr(encoder, "dim", None) if encoder is not None else None,
                                 Path(openface_dir) / f"{name}.csv" if openface_dir is not None else None)
        if vf is not None:
            return vf
    if openface_dir is None or agent is None or encoder is None:
        where = Path(precomputed_dir) / f"{name}.npy" if precomputed_dir else name
        raise AUAgentError("no precomputed AU features, and no OpenFace folder + agent + CLIP to compute them", where)
    track = read_openface_csv(Path(openface_dir) / f"{name}.csv", settings.min_confidence)
    return compute_video_features(track, agent, encoder, settings)

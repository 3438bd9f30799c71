"""Where a training sample's AU feature comes from (:class:`FeatureSource`), decided once per dataset.

The AU Agent and CLIP it uses are built once per process (:mod:`affectgpt_patch.per_process`) and load their
models only for the first text that needs them: while every sample has a precomputed file, none is loaded.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, cast

import numpy as np

from au_core import mer_factory
from au_core.errors import AUAgentError

from .. import per_process
from .clip_encoder import DEFAULT_CLIP
from .compute import checked_precomputed, features_from_descriptions, video_features
from .store import FeatureSettings, VideoFeatures, meta_mismatches, precomputed_meta

if TYPE_CHECKING:
    from ..agent import AUAgent
    from .clip_encoder import ClipTextEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSettings:
    """Where a dataset's AU features come from: these AU keys of an AffectGPT config, one field each, with their
    defaults (the dataset mixin reads exactly these names). The frame keys (``au_frames``, ``au_sampling``,
    ``au_min_confidence``) are :class:`~.store.FeatureSettings`'."""

    use_au_agent: bool = False  # true: precomputed files / OpenFace → agent → CLIP; false: MER-Factory JSON
    au_precomputed_dir: Optional[str] = None  # {name}.npy/.json from `au-agent precompute`
    openface_output_dir: Optional[str] = None  # {name}.csv from OpenFace FeatureExtraction -aus
    mer_factory_output: Optional[str] = None  # {name}/{name}_au_analysis.json
    au_json_text_key: str = mer_factory.DEFAULT_TEXT_KEY  # summary_description only when asked for
    au_clip_model: str = DEFAULT_CLIP
    au_feature_dim: Optional[int] = None  # the AU branch's input width (model config); None: the CLIP's
    au_max_missing: float = 0.05  # the largest fraction of samples allowed to have no AU source


def _warn_once(kind: str, message: str) -> None:
    per_process.warn_once(log, kind, message)


class LazyAgent:
    """The AU Agent as :func:`video_features` sees it: its fingerprint comes from the settings alone (enough to
    check a precomputed file), and the model loads on the first description actually needed."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from ..agent.config import agent_config, fingerprint

        self.config = agent_config(dict(settings))  # checks the settings now, loudly
        self.fingerprint = fingerprint(self.config)
        self._agent: Optional[AUAgent] = None

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (a precomputed file never needs it)."""
        return self._agent is not None

    def describe_inputs(self, inputs: Sequence[str], **kwargs: Any) -> List[str]:
        if self._agent is None:
            from ..agent import AUAgent

            log.info("loading the AU Agent (pid %d)", os.getpid())
            self._agent = AUAgent(self.config)
        return self._agent.describe_inputs(inputs, **kwargs)


class LazyClip:
    """CLIP as :func:`video_features` sees it: fingerprint and width first, the model on the first text."""

    def __init__(self, name_or_path: str) -> None:
        from .clip_encoder import clip_fingerprint

        self.name = name_or_path
        try:
            self.fingerprint = clip_fingerprint(name_or_path)
        except OSError as e:
            raise AUAgentError(f"au_clip_model: not a CLIP model name nor a readable file ({e.strerror})",
                               name_or_path) from None
        self._dim: Optional[int] = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            from .clip_encoder import clip_text_width

            self._dim = clip_text_width(self.name)
        return self._dim

    def encoder(self) -> ClipTextEncoder:
        from .clip_encoder import load_clip_text_encoder

        return load_clip_text_encoder(self.name)

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.encoder().encode(texts, **kwargs)


class FeatureSource:
    """The one answer to "where does this sample's AU feature come from".

    ``use_au_agent`` → ``{au_precomputed_dir}/{name}.npy/.json`` when present, else ``{openface_output_dir}/
    {name}.csv`` → agent → CLIP (exactly what ``au-agent precompute`` writes); otherwise MER-Factory's per-frame
    descriptions → CLIP. Every feature it returns is ``[T, D]`` with a ``[T]`` mask, D the configured width
    (``au_feature_dim``, else the CLIP's); :meth:`check` refuses, with one message naming the folder, a
    configuration whose files disagree with it or that leaves more than ``au_max_missing`` samples without a
    source. A folder ``root/{dataset}`` is used when it exists (one root for several datasets).

    ``agent_settings`` are the ``au_agent_*`` config keys (``AgentConfig`` checks them when the agent is first
    needed). ``features`` may hold values as a config file gave them (a YAML string): they are converted here.
    """

    def __init__(self, settings: SourceSettings, features: FeatureSettings = FeatureSettings(),
                 agent_settings: Optional[Mapping[str, Any]] = None, dataset: Optional[str] = None) -> None:
        self.settings = settings
        self.features = FeatureSettings(frames=int(features.frames), sampling=str(features.sampling),
                                        min_confidence=float(features.min_confidence))
        self.agent_settings = dict(agent_settings or {})
        self.dataset = dataset
        self.precomputed_dir = self.dataset_folder(settings.au_precomputed_dir) if settings.use_au_agent else None
        self.openface_dir = self.dataset_folder(settings.openface_output_dir) if settings.use_au_agent else None
        self.mer_factory_output = None if settings.use_au_agent else settings.mer_factory_output

    def dataset_folder(self, root: Optional[str]) -> Optional[str]:
        """``root/{dataset}`` when that folder exists (one root for several datasets), else ``root``."""
        if not root:
            return None
        sub = os.path.join(os.fspath(root), self.dataset) if isinstance(self.dataset, str) else None
        return sub if sub and os.path.isdir(sub) else os.fspath(root)

    # ---- models, once per process, loaded on first use

    @property
    def clip(self) -> LazyClip:
        name = str(self.settings.au_clip_model)
        return per_process.once(("LazyClip", name), lambda: LazyClip(name))

    @property
    def agent(self) -> LazyAgent:
        settings = self.agent_settings
        return per_process.once(("LazyAgent", repr(sorted(settings.items()))), lambda: LazyAgent(settings))

    @property
    def dim(self) -> int:
        """The width every feature has: the AU branch's (``au_feature_dim``), else the CLIP model's."""
        return int(self.settings.au_feature_dim or self.clip.dim)

    def computes(self) -> bool:
        """Whether features can be computed (an OpenFace or MER-Factory folder), not only read."""
        return bool(self.openface_dir or self.mer_factory_output)

    # ---- construction-time check

    def check(self, names: Optional[Sequence[str]] = None) -> None:
        """Refuse, before any sample is read, what would train on wrong or missing AU features.

        ``names`` are the dataset's samples (unknown at inference: then only the folders are checked).
        """
        from .frames import SAMPLING_MODES

        s = self.settings
        if self.features.sampling not in SAMPLING_MODES:
            raise AUAgentError(f"au_sampling {self.features.sampling!r}: choose one of {', '.join(SAMPLING_MODES)}")
        if self.features.frames < 1:
            raise AUAgentError(f"au_frames must be at least 1, got {self.features.frames}")
        if not 0.0 <= float(s.au_max_missing) <= 1.0:
            raise AUAgentError(f"au_max_missing must be a fraction between 0 and 1, got {s.au_max_missing!r}")
        keys = ("au_precomputed_dir", "openface_output_dir") if s.use_au_agent else ("mer_factory_output",)
        given = [k for k in keys if getattr(s, k)]
        if not given:
            raise AUAgentError(f"AU features need {' or '.join(keys)} (use_au_agent: {bool(s.use_au_agent)})")
        for key in given:
            if not os.path.isdir(getattr(s, key)):
                raise AUAgentError(f"{key}: folder not found", getattr(s, key))
        if self.openface_dir:  # building the agent's config checks its settings (adapter, base model), no model
            log.debug("AU Agent fingerprint %s", self.agent.fingerprint)
        if self.computes() and s.au_feature_dim and self.clip.dim != int(s.au_feature_dim):
            raise AUAgentError(f"au_clip_model {s.au_clip_model} gives {self.clip.dim}-d features, the model's "
                               f"au_feature_dim is {s.au_feature_dim}: set model.au_feature_dim to "
                               f"{self.clip.dim}", self.openface_dir or self.mer_factory_output)
        names = [n for n in names or () if n]
        found = self._check_precomputed(self.precomputed_dir, names) if self.precomputed_dir else set()
        if names:
            self._check_missing(names, found)

    def _check_precomputed(self, precomputed_dir: str, names: Sequence[str]) -> Set[str]:
        """The names with a complete precomputed pair; raises when any of them was made another way."""
        from .provenance import stale_problems

        folder = Path(precomputed_dir)
        candidates = names or sorted(p.stem for p in folder.glob("*.json"))
        records = {}
        for name in candidates:
            meta = precomputed_meta(folder, name)
            if meta is not None:
                records[name] = meta
        if not records:
            return set()
        agent_fp = self.agent.fingerprint if self.openface_dir else None
        problems = stale_problems(records, self._csv, precomputed_dir)
        for name, meta in records.items():
            for problem in meta_mismatches(meta, self.features, agent_fp, self.clip.fingerprint, self.dim):
                problems.setdefault(problem, []).append(name)
        for key, what in (("agent", "agents"), ("clip", "CLIP models")):
            made_by: Dict[Any, int] = {}
            for meta in records.values():
                made_by[meta.get(key)] = made_by.get(meta.get(key), 0) + 1
            if len(made_by) > 1:
                problems.setdefault(f"a folder mixing {len(made_by)} {what} ("
                                    + ", ".join(f"{fp}: {n} files" for fp, n in sorted(made_by.items(), key=str))
                                    + ")", [])
        if problems:
            parts = [f"{p} in {len(n)} of {len(records)} files (e.g. {n[0]}.json)" if n else p
                     for p, n in problems.items()]
            raise AUAgentError("precomputed AU features do not match the config: " + "; ".join(parts)
                               + ". Rerun `au-agent precompute` with these settings into an empty folder", folder)
        return set(records)

    def _check_missing(self, names: Sequence[str], found: Set[str]) -> None:
        missing = [n for n in names if n not in found and not self._has_input(n)]
        allowed = float(self.settings.au_max_missing)
        if len(missing) > allowed * len(names):
            folders = [f for f in (self.precomputed_dir, self.openface_dir, self.mer_factory_output) if f]
            also = f"; also searched {', '.join(folders[1:])}" if len(folders) > 1 else ""
            raise AUAgentError(f"{len(missing)} of {len(names)} samples ({len(missing) / len(names):.1%}) have no AU "
                               f"source (au_max_missing: {allowed:g}), e.g. {', '.join(missing[:3])}{also}",
                               folders[0])
        if missing:
            log.warning("%d of %d samples have no AU source (e.g. %s); they get a masked zero AU feature",
                        len(missing), len(names), ", ".join(missing[:3]))

    def _csv(self, name: str) -> Optional[str]:
        return os.path.join(self.openface_dir, f"{name}.csv") if self.openface_dir else None

    def _has_input(self, name: str) -> bool:
        csv = self._csv(name)  # None without an OpenFace folder
        if csv is not None:
            return os.path.isfile(csv)
        return self.json_path(name) is not None

    # ---- one sample

    def get(self, name: str) -> Optional[VideoFeatures]:
        """The sample's features (``[T, D]``, mask ``[T]``), or None when it has no AU source (warned once)."""
        vf = self.from_agent(name) if self.settings.use_au_agent else self.from_json(name)
        return None if vf is None else self._checked(vf, name)

    def arrays(self, name: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
        """``(features float32 [T, D], mask bool [T])``; zeros and an all-False mask without a source."""
        vf = self.get(name) if name else None
        if vf is None:
            if not name:
                _warn_once("missing", "no sample name to look AU features up by; using a masked zero AU feature")
            frames = self.features.frames
            return np.zeros((frames, self.dim), dtype=np.float32), np.zeros(frames, dtype=bool)
        return vf.features.astype(np.float32, copy=False), vf.mask.astype(bool, copy=False)

    def _checked(self, vf: VideoFeatures, name: str) -> VideoFeatures:
        t = self.features.frames if self.features.sampling != "all" else len(vf.mask)
        if vf.features.shape != (t, self.dim) or vf.mask.shape != (t,):
            raise AUAgentError(f"AU features of shape {list(vf.features.shape)} with a mask of "
                               f"{list(vf.mask.shape)}; the config wants [{t}, {self.dim}] and [{t}]", name)
        return vf

    def from_agent(self, name: str) -> Optional[VideoFeatures]:
        """Precomputed features if present, else OpenFace CSV → AU Agent → CLIP (as ``au-agent precompute``)."""
        if self.precomputed_dir:
            vf = checked_precomputed(self.precomputed_dir, name, self.features,
                                     self.agent.fingerprint if self.openface_dir else None, self.clip.fingerprint,
                                     self.dim, self._csv(name))
            if vf is not None:
                return vf
        csv = self._csv(name)
        if csv is None or not os.path.isfile(csv):
            where = " or ".join(f for f in (self.precomputed_dir, self.openface_dir) if f)
            _warn_once("missing", f"{name}: no AU features in {where}; using a masked zero AU feature")
            return None
        try:
            return video_features(name, openface_dir=self.openface_dir, agent=self.agent, encoder=self.clip,
                                  settings=self.features)
        except AUAgentError as e:
            _warn_once("missing", f"{name}: no AU features ({e}); using a masked zero AU feature")
            return None

    def json_path(self, name: str) -> Optional[str]:
        root = self.mer_factory_output
        if not root:
            return None
        folders = ([os.path.join(root, self.dataset, name)] if isinstance(self.dataset, str) else []) \
            + [os.path.join(root, name)]
        for folder in folders:
            for suffix in mer_factory.SUFFIXES:
                path = os.path.join(folder, f"{name}{suffix}.json")
                if os.path.isfile(path):
                    return path
        return None

    def from_json(self, name: str) -> Optional[VideoFeatures]:
        """MER-Factory's per-frame descriptions (``au_json_text_key`` only) → CLIP, with the same frame
        selection and T as the agent path."""
        from au_core.record import load_json

        path = self.json_path(name)
        if path is None:
            _warn_once("missing", f"{name}: no {name}_au_analysis.json under {self.mer_factory_output}; "
                                  f"using a masked zero AU feature")
            return None
        key = str(self.settings.au_json_text_key)
        try:
            data = load_json(cast("os.PathLike[str]", path))  # au_core's readers take any path; the str names it
            frames, texts = [], []
            for rec in mer_factory.read(cast(Path, path), data, name, key):
                text = mer_factory.clean_text(rec.description)[0] if isinstance(rec.description, str) else ""
                if text and not text.startswith("Error"):
                    frames.append(rec.frame)
                    texts.append(text)
            if not texts:
                raise AUAgentError(f"no per-frame descriptions under {key!r}", path)
        except AUAgentError as e:
            _warn_once("missing", f"{name}: unusable AU descriptions ({e}); using a masked zero AU feature")
            return None
        info = data.get("au_info") if isinstance(data, dict) else None
        total = info.get("total_frames") if isinstance(info, dict) else None
        return features_from_descriptions(frames, texts, total, self.clip, self.features, name=name)

"""The AU modality for AffectGPT's ``BaseDataset``, as a mixin placed first in the MRO.

    class BaseDataset(AUDatasetMixin, BaseDataset): ...      # what `au-agent patch-affectgpt` installs
    class AU_MERCaptionPlus(AUDatasetMixin, MERCaptionPlus_Dataset): ...   # or by hand, per dataset

A ``face_or_frame`` mode with an ``au`` part (``multiface_audio_face_frame_au_text`` …; detected by splitting on
``_``, since "audio" contains "au") behaves like the same mode without it, plus AU:

* ``get_needed_data`` adds ``'au'``; ``get_prompt_for_multimodal`` adds ``<AU><AUHere></AU>`` before the
  subtitle; ``replace_token_for_multimodal`` repeats ``<AUHere>`` ``num_au_query_token`` times;
* ``read_frame_face_audio_text`` adds ``au`` [T, 512] and ``au_mask`` [T] for the sample, whose name it takes
  from the video / audio / face path (AffectGPT passes paths, not names);
* ``__getitem__`` keeps them (AffectGPT's returns a fixed key set) and ``collater`` stacks ``aus`` [B, T, 512]
  and ``au_masks`` [B, T] (AffectGPT's stacks a hard-coded key list).

A sample whose AU source is missing gets a zero feature with an all-False mask and one warning per process,
never a random replacement sample. Other modes are untouched.

Where features come from — the seed guide's ``_extract_au_features_realtime(video_name)``:

* ``use_au_agent: true`` → ``_extract_au_with_agent``: ``{au_precomputed_dir}/{name}.npy/.json`` written by
  ``au-agent precompute`` when present, else ``{openface_output_dir}/{name}.csv`` → AU Agent → CLIP, exactly
  as ``precompute`` computes it (:func:`affectgpt_patch.features.video_features`);
* ``use_au_agent: false`` → ``_extract_au_from_json``: the descriptions MER-Factory already wrote in
  ``{mer_factory_output}/[{Dataset}/]{name}/{name}_au_analysis.json`` → CLIP, same frame selection and T.

The agent and CLIP are loaded lazily, once per process (a DataLoader worker loads its own), and not at all
while every sample has a precomputed feature.

Settings are read with ``.get`` from ``dataset_cfg`` then ``model_cfg`` before ``BaseDataset.__init__`` runs
(it calls ``__getitem__`` for debugging); at inference, where the dataset is built with no configs, the patched
scripts call :meth:`AUSourceMixin.configure_au` with the inference, dataset and model configs, and attributes
set by hand on the dataset (the seed's ``dataset_cls.use_au_agent = True``) work too.

This module runs inside AffectGPT's process (Python 3.10, torch 2.4): it imports nothing heavy at import time.
"""
from __future__ import annotations

import inspect
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from data_prep.errors import AUAgentError

log = logging.getLogger(__name__)

AU_PATCH_TOKEN = "<AUHere>"
AU_FEATURE_DIM = 512
DEFAULT_FRAMES = 8  # AffectGPT's n_frms
AU_PROMPT = f"The facial action units of the person, described frame by frame, are: <AU>{AU_PATCH_TOKEN}</AU>. "
_PROMPT_ANCHORS = ("The subtitle of this video is", "Now, please answer")
JSON_SUFFIXES = ("_au_analysis", "_au_data")

#: The AU settings and their defaults (class attributes, so a dataset built without configs has them). The
#: agent's own keys (``au_agent_dir``, ``au_agent_backend``, ``au_agent_cache_dir`` …) are read as well: see
#: ``affectgpt_patch.agent.config.CONFIG_KEYS``.
SETTINGS: Dict[str, Any] = {
    "use_au_agent": False,
    "au_agent_base_model": None,  # the seed's keys; or au_agent_dir: an `au-agent train` output
    "au_agent_lora_weights": None,
    "au_agent_use_lora": True,
    "openface_output_dir": None,
    "au_precomputed_dir": None,
    "mer_factory_output": None,
    "au_json_text_key": "fine_grained_descriptions",
    "au_frames": None,  # T; default n_frms (8)
    "au_sampling": "uniform",
    "au_min_confidence": 0.8,
    "au_clip_model": "ViT-B/32",
    "num_au_query_token": 1,
}


def is_au_mode(face_or_frame: Any) -> bool:
    """``multiface_audio_face_frame_au_text`` → True; ``multiface_audio_face_text`` → False."""
    return isinstance(face_or_frame, str) and "au" in face_or_frame.split("_")


def mode_without_au(face_or_frame: str) -> str:
    return "_".join(part for part in face_or_frame.split("_") if part != "au")


def insert_au_segment(prompt: str) -> str:
    """The AU sentence before the subtitle (or before the question when there is no subtitle)."""
    for anchor in _PROMPT_ANCHORS:
        at = prompt.find(anchor)
        if at >= 0:
            return prompt[:at] + AU_PROMPT + prompt[at:]
    head = "###Human: "
    at = prompt.find(head)
    return prompt[: at + len(head)] + AU_PROMPT + prompt[at + len(head):] if at >= 0 else AU_PROMPT + prompt


def name_from_paths(video_path: Any = None, audio_path: Any = None, face_npy: Any = None) -> Optional[str]:
    """The sample name from the first path given: ``…/sample_1.mp4`` and ``…/sample_1/sample_1.npy`` → ``sample_1``."""
    for path in (video_path, audio_path, face_npy):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path):
            return os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return None


def _get(source: Any, key: str) -> Any:
    """``source.get(key)`` for dicts and OmegaConf nodes (attribute access to a missing key raises there)."""
    if source is None:
        return None
    getter = getattr(source, "get", None)
    if callable(getter):
        try:
            return getter(key)
        except Exception:  # noqa: BLE001 - a config object without the key
            return None
    return getattr(source, key, None)


def _setting_keys() -> List[str]:
    from .agent.config import CONFIG_KEYS

    return list(dict.fromkeys([*SETTINGS, *CONFIG_KEYS]))


# ---- models, once per process


_LOCK = threading.Lock()
_MODELS: Dict[Tuple, Any] = {}
_WARNED: set = set()


def _once(key: Tuple, build):
    """Process-wide memo keyed by pid: a forked DataLoader worker builds its own (CUDA does not survive fork)."""
    key = (os.getpid(),) + key
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = build()
        return _MODELS[key]


def _warn_once(kind: str, message: str) -> None:
    if kind in _WARNED:
        log.debug(message)
        return
    _WARNED.add(kind)
    log.warning("%s (further cases are logged at debug level)", message)


class _LazyAgent:
    """The AU Agent as ``video_features`` sees it: its fingerprint comes from the settings alone (enough to
    validate a precomputed file), and the model loads on the first description actually needed."""

    def __init__(self, settings: Dict[str, Any]) -> None:
        from .agent.config import agent_config, fingerprint

        self.config = agent_config(settings)  # validates the settings now, loudly
        self.fingerprint = fingerprint(self.config)
        self._agent = None

    def describe_inputs(self, inputs: Sequence[str], **kwargs: Any) -> List[str]:
        if self._agent is None:
            from .agent import AUAgent

            log.info("loading the AU Agent (pid %d)", os.getpid())
            self._agent = AUAgent(self.config)
        return self._agent.describe_inputs(inputs, **kwargs)


class _LazyClip:
    """CLIP as ``video_features`` sees it: fingerprint first, the model on the first text to encode."""

    def __init__(self, name_or_path: str) -> None:
        from .clip_encoder import clip_fingerprint

        self.name = name_or_path
        self.fingerprint = clip_fingerprint(name_or_path)
        self.dim = AU_FEATURE_DIM

    def encode(self, texts: Sequence[str], **kwargs: Any):
        from .clip_encoder import load_clip_text_encoder

        return load_clip_text_encoder(self.name).encode(texts, **kwargs)


# ---- the mixins


class AUSourceMixin:
    """AU settings and the seed guide's extraction methods; enough for a ``BaseDataset`` that already has its
    own AU modality (the AU fork), which calls :meth:`au_feature_for_sample` from its AU code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            bound = inspect.signature(super().__init__).bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = kwargs
        dataset_cfg, model_cfg = bound.get("dataset_cfg"), bound.get("model_cfg")
        self.configure_au(dataset_cfg, model_cfg, wanted=is_au_mode(_get(dataset_cfg, "face_or_frame")))
        super().__init__(*args, **kwargs)

    def configure_au(self, *sources: Any, wanted: Optional[bool] = None) -> None:
        """Set the AU settings from configs; for each key the first source that has it wins.

        Checks them when AU is wanted (an AU ``face_or_frame``; by default: ``'au'`` in ``needed_data``), so a
        wrong path fails here, loudly, instead of inside ``__getitem__``, whose retry loop would hide it.
        """
        for key in _setting_keys():
            for source in sources:
                value = _get(source, key)
                if value is not None:
                    setattr(self, key, value)
                    break
        if wanted is None:
            wanted = self._au_wanted()
        if wanted:
            self._check_au_settings()

    # ---- settings

    def _au_wanted(self) -> bool:
        return "au" in (getattr(self, "needed_data", None) or ())

    def _au_settings(self):
        from .features import FeatureSettings

        frames = self.au_frames or getattr(self, "n_frms", None) or DEFAULT_FRAMES
        return FeatureSettings(frames=int(frames), sampling=str(self.au_sampling),
                               min_confidence=float(self.au_min_confidence))

    def _agent_settings(self) -> Dict[str, Any]:
        from .agent.config import CONFIG_KEYS

        return {k: getattr(self, k) for k in CONFIG_KEYS if getattr(self, k, None) is not None}

    def _au_dir(self, root: Any) -> Optional[str]:
        """``root/{Dataset}`` when that folder exists (one root for several datasets), else ``root``."""
        if not root:
            return None
        dataset = getattr(self, "dataset", None)
        sub = os.path.join(os.fspath(root), dataset) if isinstance(dataset, str) else None
        return sub if sub and os.path.isdir(sub) else os.fspath(root)

    def _check_au_settings(self) -> None:
        from .frames import SAMPLING_MODES

        if self.au_sampling not in SAMPLING_MODES:
            raise AUAgentError(f"au_sampling {self.au_sampling!r}: choose one of {', '.join(SAMPLING_MODES)}")
        keys = ("au_precomputed_dir", "openface_output_dir") if self.use_au_agent else ("mer_factory_output",)
        given = [k for k in keys if getattr(self, k)]
        if not given:
            raise AUAgentError(f"AU features need {' or '.join(keys)} (use_au_agent: {bool(self.use_au_agent)})")
        for key in given:
            if not os.path.isdir(getattr(self, key)):
                raise AUAgentError(f"{key}: folder not found", getattr(self, key))
        if self.use_au_agent and self.openface_output_dir:
            self._au_agent()  # validates the agent settings (adapter folder, base model) without loading it

    # ---- the seed guide's methods

    def _load_clip_for_au(self):
        """The CLIP text encoder (``.encode(texts)`` → L2-normalised [N, 512]); loaded once per process."""
        from .clip_encoder import load_clip_text_encoder

        return load_clip_text_encoder(str(self.au_clip_model))

    def _au_agent(self) -> _LazyAgent:
        settings = self._agent_settings()
        return _once(("agent", repr(sorted(settings.items()))), lambda: _LazyAgent(settings))

    def _extract_au_features_realtime(self, video_name: str):
        """``VideoFeatures`` (``.features`` [T, 512], ``.mask`` [T]) of one video, or None without a source."""
        if self.use_au_agent:
            return self._extract_au_with_agent(video_name)
        return self._extract_au_from_json(video_name)

    def _extract_au_with_agent(self, video_name: str):
        """Precomputed features if present, else OpenFace CSV → AU Agent → CLIP (as ``au-agent precompute``)."""
        from .features import video_features

        openface = self._au_dir(self.openface_output_dir)
        try:
            return video_features(
                video_name, precomputed_dir=self._au_dir(self.au_precomputed_dir), openface_dir=openface,
                agent=self._au_agent() if openface else None,
                encoder=_once(("clip", str(self.au_clip_model)), lambda: _LazyClip(str(self.au_clip_model)))
                if openface else None,
                settings=self._au_settings())
        except AUAgentError as e:
            _warn_once("missing", f"{video_name}: no AU features ({e}); using a masked zero AU feature")
            return None

    def _extract_au_from_json(self, video_name: str):
        """MER-Factory's per-frame descriptions → CLIP, with the same frame selection and T as the agent path."""
        from data_prep.clean import clean_text
        from data_prep.sources import per_frame
        from data_prep.sources.record import load_json

        from .features import features_from_descriptions

        path = self._au_json_path(video_name)
        if path is None:
            _warn_once("missing", f"{video_name}: no {video_name}_au_analysis.json under {self.mer_factory_output}; "
                                  f"using a masked zero AU feature")
            return None
        try:
            data = load_json(path)
            frames, texts = [], []
            for key in dict.fromkeys((self.au_json_text_key, *per_frame.TEXT_KEYS)):
                for rec in per_frame.read(path, data, video_name, key):
                    text = clean_text(rec.description)[0] if isinstance(rec.description, str) else ""
                    if text and not text.startswith("Error"):
                        frames.append(rec.frame)
                        texts.append(text)
                if texts:
                    break
            if not texts:
                raise AUAgentError(f"no per-frame descriptions ({', '.join(per_frame.TEXT_KEYS)})", path)
        except AUAgentError as e:
            _warn_once("missing", f"{video_name}: unusable AU descriptions ({e}); using a masked zero AU feature")
            return None
        total = _get(data.get("au_info"), "total_frames") if isinstance(data, dict) else None
        return features_from_descriptions(frames, texts, total, self._load_clip_for_au(), self._au_settings(),
                                          name=video_name)

    def _au_json_path(self, video_name: str) -> Optional[str]:
        root = self.mer_factory_output
        if not root:
            return None
        dataset = getattr(self, "dataset", None)
        folders = ([os.path.join(root, dataset, video_name)] if isinstance(dataset, str) else []) \
            + [os.path.join(root, video_name)]
        for folder in folders:
            for suffix in JSON_SUFFIXES:
                path = os.path.join(folder, f"{video_name}{suffix}.json")
                if os.path.isfile(path):
                    return path
        return None

    # ---- one sample's tensors

    def au_feature(self, video_name: Optional[str]):
        """``(feature float32 [T, 512], mask bool [T])``; zeros and an all-False mask when there is no source."""
        import torch

        vf = self._extract_au_features_realtime(video_name) if video_name else None
        if vf is None:
            if not video_name:
                _warn_once("missing", "no sample name to look AU features up by; using a masked zero AU feature")
            frames = self._au_settings().frames
            return torch.zeros(frames, AU_FEATURE_DIM), torch.zeros(frames, dtype=torch.bool)
        return torch.from_numpy(vf.features.astype("float32")), torch.from_numpy(vf.mask.astype(bool))

    def au_feature_for_sample(self, sample_name: Optional[str] = None, video_path: Any = None,
                              audio_path: Any = None, face_npy: Any = None):
        """:meth:`au_feature` of a sample given by name or, failing that, by its paths."""
        return self.au_feature(sample_name or name_from_paths(video_path, audio_path, face_npy))


for _key, _default in SETTINGS.items():  # class-level defaults: what a dataset built with no configs sees
    setattr(AUSourceMixin, _key, _default)


class AUDatasetMixin(AUSourceMixin):
    """The whole AU modality for an upstream ``BaseDataset`` (see the module docstring)."""

    def get_needed_data(self, face_or_frame):
        if not is_au_mode(face_or_frame):
            return super().get_needed_data(face_or_frame)
        base = mode_without_au(face_or_frame)
        try:
            needed = super().get_needed_data(base)
        except UnboundLocalError:  # AffectGPT's if/elif chain has no else
            raise AUAgentError(f"face_or_frame {face_or_frame!r}: AffectGPT has no mode {base!r} to add AU to"
                               ) from None
        return [*needed, "au"]

    def get_prompt_for_multimodal(self, face_or_frame, subtitle, user_message, *args: Any, **kwargs: Any):
        if not is_au_mode(face_or_frame):
            return super().get_prompt_for_multimodal(face_or_frame, subtitle, user_message, *args, **kwargs)
        prompt = super().get_prompt_for_multimodal(mode_without_au(face_or_frame), subtitle, user_message,
                                                   *args, **kwargs)
        return insert_au_segment(prompt)

    def replace_token_for_multimodal(self, prompt):
        prompt = super().replace_token_for_multimodal(prompt)
        return prompt.replace(AU_PATCH_TOKEN, AU_PATCH_TOKEN * int(self.num_au_query_token))

    def read_frame_face_audio_text(self, video_path=None, face_npy=None, audio_path=None, image_path=None,
                                   sample_name: Optional[str] = None, **kwargs: Any):
        sample_data = super().read_frame_face_audio_text(video_path, face_npy, audio_path, image_path, **kwargs)
        if self._au_wanted():
            feature, mask = self.au_feature_for_sample(sample_name, video_path, audio_path, face_npy)
            sample_data["au"], sample_data["au_mask"] = feature, mask
            self._au_last = (feature, mask)  # the sample __getitem__ finally returns is the last one read
        return sample_data

    def __getitem__(self, index):
        self._au_last = None
        item = super().__getitem__(index)
        if self._au_wanted() and "au" not in item:
            item["au"], item["au_mask"] = self._au_last if self._au_last is not None else self.au_feature(None)
        return item

    def collater(self, instances):
        batch = super().collater(instances)
        if instances and all(x.get("au") is not None for x in instances):
            import torch

            length = max(x["au"].shape[0] for x in instances)  # fixed T unless au_sampling is 'all'
            feats = torch.zeros(len(instances), length, instances[0]["au"].shape[1])
            masks = torch.zeros(len(instances), length, dtype=torch.bool)
            for i, x in enumerate(instances):
                n = x["au"].shape[0]
                feats[i, :n] = x["au"]
                masks[i, :n] = x["au_mask"] if x.get("au_mask") is not None else True
            batch["aus"], batch["au_masks"] = feats, masks
        return batch

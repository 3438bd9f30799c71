"""The AU modality for AffectGPT's ``BaseDataset``, as a mixin placed first in the MRO.

    class BaseDataset(UpstreamAUDatasetMixin, BaseDataset): ...   # upstream AffectGPT (no AU of its own)
    class BaseDataset(AUForkSourceMixin, BaseDataset): ...        # the AU fork (its own AU modality)
    class AU_MERCaptionPlus(UpstreamAUDatasetMixin, MERCaptionPlus_Dataset): ...   # or by hand, per dataset

``au-agent patch-affectgpt`` installs them under their older names, ``AUDatasetMixin`` and ``AUSourceMixin``,
which stay as aliases: checkouts patched before keep importing them, and ``--check`` / ``--revert`` keep
recognising their edits.

A ``face_or_frame`` mode with an ``au`` part (``multiface_audio_face_frame_au_text`` …; detected by splitting on
``_``, since "audio" contains "au") behaves like the same mode without it, plus AU:

* ``get_needed_data`` adds ``'au'``; ``get_prompt_for_multimodal`` adds ``<AU><AUHere></AU>`` before the
  subtitle; ``replace_token_for_multimodal`` repeats ``<AUHere>`` ``num_au_query_token`` times;
* ``read_frame_face_audio_text`` adds ``au`` [T, D] and ``au_mask`` [T] for the sample, whose name it takes
  from the video / audio / face path (AffectGPT passes paths, not names);
* ``__getitem__`` keeps them (AffectGPT's returns a fixed key set) and ``collater`` stacks ``aus`` [B, T, D]
  and ``au_masks`` [B, T] (AffectGPT's stacks a hard-coded key list).

``au_route`` (:mod:`affectgpt_patch.captions.text_route`; default ``features``) chooses what an AU mode adds: the AU
tokens above (``features``), the sample's AU caption as one sentence before the subtitle with no ``'au'`` in
``needed_data`` and no AU branch used (``text``), or both.

D is the AU branch's width (``model.au_feature_dim``, which must equal the CLIP model's: 512 for ViT-B/32, 768
for ViT-L/14). A sample whose AU source is missing gets a zero feature with an all-False mask and one warning
per process, never a random replacement sample; more than ``au_max_missing`` (5 %) of the samples without a
source, or precomputed files made with other settings, fail the dataset's construction. Other modes are
untouched.

**The settings.** A dataset holds one :class:`~affectgpt_patch.au_settings.AUSettings` (``dataset.au_settings``:
where features come from, the frames, the agent keys, the text route, ``num_au_query_token``), read once from
``dataset_cfg`` then ``model_cfg`` (for each key the first that has it) before ``BaseDataset.__init__`` runs (it
calls ``__getitem__`` for debugging). At inference, where the dataset is built with no configs, the patched scripts
call :meth:`AUForkSourceMixin.configure_au` with the inference, dataset and model configs. The feature and caption
sources are built from the settings once, on first use. One explicit step changes the settings afterwards and
rebuilds the sources (:class:`~affectgpt_patch.au_settings.AUSettingsHolder`): ``configure_au``, an AU key
assigned by hand on the dataset (the seed guide's ``dataset_cls.use_au_agent = True``), or AffectGPT assigning
another ``n_frms`` or ``dataset``. The AU keys still read as attributes (``dataset.use_au_agent``).

Where features come from (one owner: :class:`affectgpt_patch.features.source.FeatureSource`; the seed guide's
``_extract_au_features_realtime(video_name)`` and friends delegate to it):

* ``use_au_agent: true`` → ``_extract_au_with_agent``: ``{au_precomputed_dir}/{name}.npy/.json`` written by
  ``au-agent precompute`` when present, else ``{openface_output_dir}/{name}.csv`` → AU Agent → CLIP, exactly
  as ``precompute`` computes it (:func:`affectgpt_patch.features.compute.video_features`);
* ``use_au_agent: false`` → ``_extract_au_from_json``: the descriptions MER-Factory already wrote in
  ``{mer_factory_output}/[{Dataset}/]{name}/{name}_au_analysis.json`` → CLIP, same frame selection and T.

The agent and CLIP are loaded lazily, once per process (a DataLoader worker loads its own), and not at all
while every sample has a precomputed feature. This module runs inside AffectGPT's process (Python 3.10, torch
2.4): it imports nothing heavy at import time.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from au_core.errors import AUAgentError

from .au_settings import DEFAULT_FRAMES, DEFAULTS, SEED_AGENT_KEYS, AUSettingsHolder, read_config_values
from .branch_template import branch_constants
from .captions.text_route import CaptionSource, caption_sentence, check_route, uses_features, uses_text
from .config_access import config_get
from .features.source import FeatureSource
from .features.store import VideoFeatures

if TYPE_CHECKING:
    import torch

    from .features.protocols import TextEncoder

__all__ = ["AUDatasetMixin", "AUForkSourceMixin", "AUSample", "AUSourceMixin", "UpstreamAUDatasetMixin",
           "AU_PATCH_TOKEN", "AU_PROMPT", "DEFAULT_FRAMES", "SEED_AGENT_KEYS", "SETTINGS", "insert_au_segment",
           "is_au_mode", "mode_without_au", "name_from_paths"]

_BRANCH = branch_constants()  # the installed AU branch's token and defaults, read from its template
AU_PATCH_TOKEN: str = _BRANCH["AU_PATCH_TOKEN"]
AU_PROMPT = f"The facial action units of the person, described frame by frame, are: <AU>{AU_PATCH_TOKEN}</AU>. "
_PROMPT_ANCHORS = ("The subtitle of this video is", "Now, please answer")

#: The AU keys and their defaults, what a dataset built with no configs has (the patcher writes the seed's agent
#: keys from here): see :data:`affectgpt_patch.au_settings.DEFAULTS`.
SETTINGS: Dict[str, Any] = DEFAULTS


def is_au_mode(face_or_frame: Any) -> bool:
    """``multiface_audio_face_frame_au_text`` → True; ``multiface_audio_face_text`` → False."""
    return isinstance(face_or_frame, str) and "au" in face_or_frame.split("_")


def mode_without_au(face_or_frame: str) -> str:
    return "_".join(part for part in face_or_frame.split("_") if part != "au")


def insert_au_segment(prompt: str, segment: str = AU_PROMPT) -> str:
    """The AU sentence(s) before the subtitle (or before the question when there is no subtitle)."""
    for anchor in _PROMPT_ANCHORS:
        at = prompt.find(anchor)
        if at >= 0:
            return prompt[:at] + segment + prompt[at:]
    head = "###Human: "
    at = prompt.find(head)
    return prompt[: at + len(head)] + segment + prompt[at + len(head):] if at >= 0 else segment + prompt


def name_from_paths(video_path: Any = None, audio_path: Any = None, face_npy: Any = None) -> Optional[str]:
    """The sample name from the first path given: ``…/sample_1.mp4`` and ``…/sample_1/sample_1.npy`` → ``sample_1``."""
    for path in (video_path, audio_path, face_npy):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path):
            return os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return None


def _configs_of(init: Callable[..., Any], args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Tuple[Any, Any]:
    """``(dataset_cfg, model_cfg)`` of a call to AffectGPT's ``BaseDataset.__init__``, passed by keyword or by
    position (its signature, not ours, says where they are)."""
    try:
        bound: Mapping[str, Any] = inspect.signature(init).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = kwargs
    return bound.get("dataset_cfg"), bound.get("model_cfg")


def _n_frms(model_cfg: Any) -> Optional[int]:
    """``model.vis_processor.train.n_frms``: AffectGPT's T, known before ``BaseDataset.__init__`` sets it."""
    value = config_get(config_get(config_get(model_cfg, "vis_processor"), "train"), "n_frms")
    return int(value) if isinstance(value, int) else None


def _sample_names(dataset: Any) -> List[str]:
    annotation = getattr(dataset, "annotation", None) or ()
    return [a["name"] for a in annotation if isinstance(a, dict) and isinstance(a.get("name"), str)]


@dataclass(frozen=True)
class AUSample:
    """The AU part of the sample this dataset read last (``dataset.au_sample``).

    Why it exists: AffectGPT's ``__getitem__`` reads a sample with ``read_frame_face_audio_text`` (given its
    paths), then builds its prompt with ``get_prompt_for_multimodal`` (given no sample at all), then returns a
    fixed set of keys without ``au``; inference makes the same two calls in a row. So the sample's name (whose
    caption goes into the prompt) and its AU feature (which ``__getitem__`` adds to what it returns) go from the
    read to the later calls in this one value, replaced by every read.
    """

    name: Optional[str]
    feature: Optional[torch.Tensor] = None  # float32 [T, D], when the mode reads AU features
    mask: Optional[torch.Tensor] = None  # bool [T]


if TYPE_CHECKING:
    class _AffectGPTDataset:
        """What the mixins override or call of AffectGPT's ``BaseDataset`` (for the type checker only)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def get_needed_data(self, face_or_frame: str) -> List[str]: ...
        def get_prompt_for_multimodal(self, face_or_frame: str, subtitle: Any, user_message: Any, *args: Any,
                                      **kwargs: Any) -> str: ...
        def replace_token_for_multimodal(self, prompt: str) -> str: ...
        def read_frame_face_audio_text(self, video_path: Any = None, face_npy: Any = None, audio_path: Any = None,
                                       image_path: Any = None, **kwargs: Any) -> Dict[str, Any]: ...
        def __getitem__(self, index: int) -> Dict[str, Any]: ...
        def collater(self, instances: List[Dict[str, Any]]) -> Dict[str, Any]: ...
else:
    _AffectGPTDataset = object


# ---- the mixins


class AUForkSourceMixin(AUSettingsHolder, _AffectGPTDataset):
    """AU settings and the seed guide's extraction methods; enough for a ``BaseDataset`` that already has its
    own AU modality (the AU fork), which calls :meth:`au_feature_for_sample` from its AU code. Where a
    feature comes from is :class:`~affectgpt_patch.features.source.FeatureSource`'s business; this class only
    reads AffectGPT's configs into :class:`~affectgpt_patch.au_settings.AUSettings` and builds the source once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dataset_cfg, model_cfg = _configs_of(super().__init__, args, kwargs)
        n_frms = _n_frms(model_cfg)
        if n_frms is not None and getattr(self, "n_frms", None) is None:
            self.n_frms = n_frms  # BaseDataset.__init__ sets the same value later
        wanted = is_au_mode(config_get(dataset_cfg, "face_or_frame"))
        self.configure_au(dataset_cfg, model_cfg, wanted=wanted)
        if wanted:
            self._check_model_side(model_cfg)
        super().__init__(*args, **kwargs)

    def configure_au(self, *sources: Any, wanted: Optional[bool] = None) -> None:
        """Read the AU settings from configs; for each key the first source that has it wins, and a key none
        of them has keeps its value.

        Checks them when AU is wanted (an AU ``face_or_frame``; by default: ``'au'`` in ``needed_data``), so a
        wrong path, a precomputed folder made another way or too many samples without AU fail here, loudly,
        instead of inside ``__getitem__``, whose retry loop would hide it.
        """
        self._set_au_inputs({**self._au().values, **read_config_values(sources)})
        self._settings_read()
        if wanted is None:
            wanted = self._au_wanted()
        if wanted:
            self._check_au_settings()

    @property
    def au_source(self) -> FeatureSource:
        """Where this dataset's AU features come from, built once from :attr:`au_settings`."""
        return self._au().feature_source

    def _settings_read(self) -> None:
        """A hook run once the settings are read (the upstream mixin adjusts ``needed_data`` there)."""

    def _au_wanted(self) -> bool:
        return "au" in (getattr(self, "needed_data", None) or ())

    def _check_au_settings(self) -> None:
        if self._owns_au_sources():
            self.au_source.check(_sample_names(self))

    #: The AU feature width the checkout's own model accepts when it is fixed: the AU fork's model builds its
    #: AU layers for 512-d input (``au_hidden_size = 512``); None where the installed AU branch reads
    #: ``au_feature_dim`` from the config.
    fixed_model_au_width: Optional[int] = 512

    def _check_model_side(self, model_cfg: Any) -> None:
        """Refuse, at dataset construction, AU settings the AU fork's own model would break on or silently
        mistrain with: another feature width (an opaque matmul error later), or a frozen projector (randomly
        initialised there, and AffectGPT's runner saves trainable weights only, so inference would use
        another projector than training)."""
        if self.fixed_model_au_width is None:
            return
        source = self.au_settings.source
        width = config_get(model_cfg, "au_feature_dim") or source.au_feature_dim
        if self._owns_au_sources() and self.au_source.computes():
            width = self.au_source.clip.dim
        if width is not None and int(width) != self.fixed_model_au_width:
            raise AUAgentError(f"this checkout's AU model takes {self.fixed_model_au_width}-d AU features "
                               f"(au_hidden_size in my_affectgpt/models/affectgpt.py) but the features are "
                               f"{int(width)}-d (au_clip_model {source.au_clip_model}): use a "
                               f"{self.fixed_model_au_width}-d CLIP such as ViT-B/32 with this checkout")
        if config_get(model_cfg, "frozen_au_proj"):
            raise AUAgentError("frozen_au_proj: true in this checkout's AU model gives inference another "
                               "projector than training (it is initialised randomly and the runner saves "
                               "trainable weights only): set model.frozen_au_proj to false")

    def _owns_au_sources(self) -> bool:
        """Whether AU features come from the feature source: in the AU fork only its agent branch does
        (``use_au_agent``); its own pre-extracted / JSON sources are its own business."""
        return bool(self.au_settings.source.use_au_agent)

    # ---- the seed guide's methods

    def _load_clip_for_au(self) -> TextEncoder:
        """The CLIP text encoder (``.encode(texts)`` → L2-normalised [N, D]); loaded once per process."""
        return self.au_source.clip.encoder()

    def _extract_au_features_realtime(self, video_name: str) -> Optional[VideoFeatures]:
        """``VideoFeatures`` (``.features`` [T, D], ``.mask`` [T]) of one video, or None without a source."""
        return self.au_source.get(video_name)

    def _extract_au_with_agent(self, video_name: str) -> Optional[VideoFeatures]:
        """Precomputed features if present, else OpenFace CSV → AU Agent → CLIP (as ``au-agent precompute``)."""
        return self.au_source.from_agent(video_name)

    def _extract_au_from_json(self, video_name: str) -> Optional[VideoFeatures]:
        """MER-Factory's per-frame descriptions → CLIP, with the same frame selection and T as the agent path."""
        return self.au_source.from_json(video_name)

    # ---- one sample's tensors

    def au_feature(self, video_name: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(feature float32 [T, D], mask bool [T])``; zeros and an all-False mask when there is no source."""
        import torch

        feature, mask = self.au_source.arrays(video_name)
        return torch.from_numpy(feature), torch.from_numpy(mask)

    def au_feature_for_sample(self, sample_name: Optional[str] = None, video_path: Any = None,
                              audio_path: Any = None, face_npy: Any = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`au_feature` of a sample given by name or, failing that, by its paths."""
        return self.au_feature(sample_name or name_from_paths(video_path, audio_path, face_npy))


class UpstreamAUDatasetMixin(AUForkSourceMixin):
    """The whole AU modality for an upstream ``BaseDataset`` (see the module docstring), by the route
    ``au_route`` names (:mod:`affectgpt_patch.captions.text_route`): AU tokens, the AU caption as text, or both."""

    fixed_model_au_width = None  # the installed AU branch takes au_feature_dim, and seeds a frozen projector
    au_sample: Optional[AUSample] = None  # the sample read last (see AUSample)
    _au_text_mode = False  # configure_au dropped 'au' from needed_data for the text route: AU is still wanted

    def _owns_au_sources(self) -> bool:
        return True

    @property
    def au_route_checked(self) -> str:
        return check_route(self.au_settings.text.au_route)

    @property
    def caption_source(self) -> CaptionSource:
        """The AU captions of this dataset, built once from :attr:`au_settings`."""
        return self._au().caption_source

    def _settings_read(self) -> None:
        """At inference ``needed_data`` was set before the AU settings were read (with the default route):
        the text route drops its ``'au'``, since no AU feature is read for it."""
        needed = getattr(self, "needed_data", None)
        if isinstance(needed, list) and "au" in needed and not uses_features(self.au_route_checked):
            self.needed_data = [d for d in needed if d != "au"]
            self._au_text_mode = True

    def _check_au_settings(self) -> None:
        route = self.au_route_checked
        if uses_features(route):
            super()._check_au_settings()
        if uses_text(route):
            self.caption_source.check(_sample_names(self))

    def _au_wanted(self) -> bool:
        return super()._au_wanted() or (uses_text(self.au_route_checked) and (
            self._au_text_mode or is_au_mode(getattr(self, "face_or_frame", None))))

    def _reads_au_features(self) -> bool:
        return "au" in (getattr(self, "needed_data", None) or ())

    def au_caption(self, name: Optional[str]) -> Optional[str]:
        """The sample's AU caption (what ``au_route: text`` puts in the prompt), or None."""
        return self.caption_source.caption(name)

    def get_needed_data(self, face_or_frame: str) -> List[str]:
        if not is_au_mode(face_or_frame):
            return super().get_needed_data(face_or_frame)
        base = mode_without_au(face_or_frame)
        try:
            needed = super().get_needed_data(base)
        except UnboundLocalError:  # AffectGPT's if/elif chain has no else
            raise AUAgentError(f"face_or_frame {face_or_frame!r}: AffectGPT has no mode {base!r} to add AU to"
                               ) from None
        return [*needed, "au"] if uses_features(self.au_route_checked) else list(needed)

    def get_prompt_for_multimodal(self, face_or_frame: str, subtitle: Any, user_message: Any, *args: Any,
                                  **kwargs: Any) -> str:
        if not is_au_mode(face_or_frame):
            return super().get_prompt_for_multimodal(face_or_frame, subtitle, user_message, *args, **kwargs)
        prompt = super().get_prompt_for_multimodal(mode_without_au(face_or_frame), subtitle, user_message,
                                                   *args, **kwargs)
        route = self.au_route_checked
        name = self.au_sample.name if self.au_sample is not None else None
        segment = caption_sentence(self.au_caption(name)) if uses_text(route) else ""
        return insert_au_segment(prompt, segment + (AU_PROMPT if uses_features(route) else ""))

    def replace_token_for_multimodal(self, prompt: str) -> str:
        prompt = super().replace_token_for_multimodal(prompt)
        return prompt.replace(AU_PATCH_TOKEN, AU_PATCH_TOKEN * int(self.au_settings.num_au_query_token))

    def read_frame_face_audio_text(self, video_path: Any = None, face_npy: Any = None, audio_path: Any = None,
                                   image_path: Any = None, sample_name: Optional[str] = None,
                                   **kwargs: Any) -> Dict[str, Any]:
        sample_data = super().read_frame_face_audio_text(video_path, face_npy, audio_path, image_path, **kwargs)
        name = sample_name or name_from_paths(video_path, audio_path, face_npy)
        self.au_sample = AUSample(name)  # named before its feature is read, as a prompt built next expects
        if self._reads_au_features():
            feature, mask = self.au_feature(name)
            sample_data["au"], sample_data["au_mask"] = feature, mask
            self.au_sample = AUSample(name, feature, mask)
        return sample_data

    def __getitem__(self, index: int) -> Dict[str, Any]:
        before = self.au_sample
        item = super().__getitem__(index)
        if self._reads_au_features() and "au" not in item:
            read = self.au_sample  # a new AUSample when this call read a sample (the last one read is returned)
            if read is not None and read is not before and read.feature is not None:
                item["au"], item["au_mask"] = read.feature, read.mask
            else:
                item["au"], item["au_mask"] = self.au_feature(None)
        return item

    def collater(self, instances: List[Dict[str, Any]]) -> Dict[str, Any]:
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


#: The names ``au-agent patch-affectgpt`` writes into checkouts (see the module docstring).
AUDatasetMixin = UpstreamAUDatasetMixin
AUSourceMixin = AUForkSourceMixin

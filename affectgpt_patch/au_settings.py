"""The AU settings of one AffectGPT dataset: one typed object (:class:`AUSettings`), read once from its configs.

AffectGPT hands a dataset its ``dataset_cfg`` and ``model_cfg`` (at inference it builds the dataset with neither, and
the patched scripts call ``configure_au`` with the inference, dataset and model configs). Each AU key is read from
the first of them that has it (:func:`read_config_values`, as the seed guide's ``dataset_cfg.get(...)``), and the
keys found become one frozen object, one dataclass per concern:

* where features come from: :class:`~affectgpt_patch.features.source.SourceSettings` (``use_au_agent``, the folders,
  ``au_clip_model``, ``au_feature_dim``, ``au_max_missing`` …);
* the frames: :class:`~affectgpt_patch.features.store.FeatureSettings` (``au_frames``, ``au_sampling``,
  ``au_min_confidence``; without ``au_frames``, T is AffectGPT's ``n_frms``);
* the agent: the ``au_agent_*`` keys given (:data:`~affectgpt_patch.agent.config.CONFIG_KEYS`, checked by
  ``AgentConfig`` when the agent is first needed);
* the text route: :class:`~affectgpt_patch.captions.text_route.TextRouteSettings` (``au_route``,
  ``au_text_max_tokens``);
* ``num_au_query_token``, the AU branch's number of tokens.

Values are kept as the configs give them and checked where they are used (``FeatureSource.check``, ``AgentConfig``,
``check_route``), so a dataset whose mode has no AU never fails on an AU key. :class:`AUState` holds what a
dataset read its settings from and builds its feature and caption sources once, on first use;
:class:`AUSettingsHolder` is the mixins' part that holds it.

Imports nothing heavy: the dataset mixin runs it inside AffectGPT's data-loading code.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

from au_core.argtypes import default_of

from .agent.config import CONFIG_KEYS as AGENT_KEYS
from .agent.config import AgentConfig
from .branch_template import branch_constants
from .captions.text_route import CaptionSource, TextRouteSettings
from .config_access import config_get
from .features.source import FeatureSource, SourceSettings
from .features.store import FEATURE_CONFIG_KEYS, FeatureSettings

SEED_AGENT_KEYS = ("au_agent_base_model", "au_agent_lora_weights", "au_agent_use_lora")
DEFAULT_FRAMES = FeatureSettings.frames  # AffectGPT's n_frms, and precompute's T

#: The AU keys and their defaults: what a dataset built with no configs has. The feature source's and the text
#: route's keys, the frame keys (``au_frames`` None: AffectGPT's ``n_frms``), the seed's agent keys with
#: AgentConfig's defaults, and the AU branch's number of tokens. The other ``au_agent_*`` keys have no default
#: here: a dataset passes on only those given.
DEFAULTS: Dict[str, Any] = {
    **{f.name: f.default for f in fields(SourceSettings)},
    "au_frames": None,  # T: AffectGPT's n_frms
    **{key: default_of(FeatureSettings, name) for key, name in FEATURE_CONFIG_KEYS.items() if name != "frames"},
    **{f.name: f.default for f in fields(TextRouteSettings)},
    **{key: default_of(AgentConfig, AGENT_KEYS[key]) for key in SEED_AGENT_KEYS},
    "num_au_query_token": branch_constants()["DEFAULTS"]["num_au_query_token"],
}
#: Every AU config key a dataset reads.
AU_KEYS = frozenset([*DEFAULTS, *AGENT_KEYS])
_DEFAULT_AGENT = tuple(sorted((key, DEFAULTS[key]) for key in SEED_AGENT_KEYS if DEFAULTS[key] is not None))


def read_config_values(sources: Sequence[Any]) -> Dict[str, Any]:
    """The AU keys the configs set: for each, the value of the first source that has it (not None)."""
    found: Dict[str, Any] = {}
    for key in sorted(AU_KEYS):
        for source in sources:
            value = config_get(source, key)
            if value is not None:
                found[key] = value
                break
    return found


@dataclass(frozen=True)
class AUSettings:
    """Every AU setting of a dataset (see the module docstring): :meth:`from_values` builds it."""

    source: SourceSettings = SourceSettings()
    features: FeatureSettings = FeatureSettings()  # T: au_frames, else AffectGPT's n_frms, else 8
    agent: Tuple[Tuple[str, Any], ...] = _DEFAULT_AGENT  # the au_agent_* keys set (not None), sorted
    text: TextRouteSettings = TextRouteSettings()
    num_au_query_token: int = DEFAULTS["num_au_query_token"]

    @classmethod
    def from_values(cls, values: Mapping[str, Any], n_frms: Any = None) -> AUSettings:
        """The settings of AU keys ``values`` (the others at their defaults) and AffectGPT's ``n_frms``."""

        def value(key: str) -> Any:
            return values.get(key, DEFAULTS.get(key))

        frames = {name: value(key) for key, name in FEATURE_CONFIG_KEYS.items()}
        frames["frames"] = frames["frames"] or n_frms or DEFAULT_FRAMES
        agent = ((key, value(key)) for key in AGENT_KEYS)
        return cls(source=SourceSettings(**{f.name: value(f.name) for f in fields(SourceSettings)}),
                   features=FeatureSettings(**frames),
                   agent=tuple(sorted((key, v) for key, v in agent if v is not None)),
                   text=TextRouteSettings(**{f.name: value(f.name) for f in fields(TextRouteSettings)}),
                   num_au_query_token=value("num_au_query_token"))


class AUState:
    """What a dataset read its AU settings from, the settings, and the sources built from them on first use.

    The dataset mixin replaces it as a whole when an input changes (:meth:`changed`); the sources are then built
    again, except a caption source whose own inputs are unchanged (it keeps the captions it has read).
    """

    def __init__(self, values: Mapping[str, Any], n_frms: Any, dataset: Any,
                 previous: Optional[AUState] = None) -> None:
        self.values: Dict[str, Any] = dict(values)  # the AU keys given: configs, attributes assigned by hand
        self.n_frms, self.dataset = n_frms, dataset
        self.settings = AUSettings.from_values(self.values, n_frms)
        self._features: Optional[FeatureSource] = None
        self._captions: Optional[CaptionSource] = None
        if previous is not None and previous._captions is not None \
                and previous._caption_inputs() == self._caption_inputs():
            self._captions = previous._captions

    def changed(self, values: Mapping[str, Any], n_frms: Any, dataset: Any) -> bool:
        return (dict(values), n_frms, dataset) != (self.values, self.n_frms, self.dataset)

    def attribute(self, key: str) -> Any:
        """The value ``dataset.<key>`` shows: as given, else its default (AttributeError for an agent key that
        has none, as for any attribute never set)."""
        if key in self.values:
            return self.values[key]
        if key in DEFAULTS:
            return DEFAULTS[key]
        raise AttributeError(key)

    @property
    def feature_source(self) -> FeatureSource:
        if self._features is None:
            s = self.settings
            dataset = self.dataset if isinstance(self.dataset, str) else None
            self._features = FeatureSource(s.source, s.features, dict(s.agent), dataset)
        return self._features

    def _caption_inputs(self) -> Tuple[Any, ...]:
        source, s = self.feature_source, self.settings
        return (source.dataset_folder(s.source.au_precomputed_dir), source.features, s.text.au_text_max_tokens,
                s.source.au_max_missing)

    @property
    def caption_source(self) -> CaptionSource:
        """Captions from ``au_precomputed_dir`` (``root/{dataset}`` when it exists), whatever ``use_au_agent``."""
        if self._captions is None:
            folder, features, max_tokens, max_missing = self._caption_inputs()
            self._captions = CaptionSource(folder, features, int(max_tokens), float(max_missing))
        return self._captions


#: AffectGPT's dataset attributes that the built sources depend on, besides the AU keys.
SOURCE_INPUTS = ("n_frms", "dataset")


class AUSettingsHolder:
    """The settings part of the dataset mixins: one :class:`AUSettings` per dataset, and the one step that
    changes it, :meth:`_set_au_inputs` (the only place the feature and caption sources are rebuilt).

    The step runs on ``configure_au``; when an AU key is assigned by hand on the dataset (the seed guide's
    ``dataset_cls.use_au_agent = True``: :meth:`__setattr__` sends it there, not to the instance); and when
    AffectGPT assigns ``n_frms`` or ``dataset`` another value. AU keys assigned on the dataset's class count from
    the dataset's first reading of its settings (its construction). The AU keys still read as attributes
    (``dataset.use_au_agent``: the AU fork's own code reads it), through ``__getattr__``; the mixins' own code
    reads :attr:`au_settings`.
    """

    @property
    def au_settings(self) -> AUSettings:
        return self._au().settings

    def _au(self) -> AUState:
        state: Optional[AUState] = self.__dict__.get("_au_state")
        return state if state is not None else self._set_au_inputs(self._class_au_values())

    def _set_au_inputs(self, values: Optional[Mapping[str, Any]] = None) -> AUState:
        """Read the AU settings again from ``values`` (the AU keys given; None: those of now) and AffectGPT's
        ``n_frms`` and ``dataset`` of now. Unchanged inputs keep the settings and the sources built from them;
        changed ones replace both."""
        old: Optional[AUState] = self.__dict__.get("_au_state")
        values = values if values is not None else (old.values if old is not None else self._class_au_values())
        n_frms, dataset = getattr(self, "n_frms", None), getattr(self, "dataset", None)
        if old is None or old.changed(values, n_frms, dataset):
            self.__dict__["_au_state"] = old = AUState(values, n_frms, dataset, old)
        return old

    def _class_au_values(self) -> Dict[str, Any]:
        """AU keys assigned by hand on the dataset's classes (those before this one in the MRO, the nearest
        winning); the mixins define none."""
        mro = type(self).__mro__
        values: Dict[str, Any] = {}
        for cls in reversed(mro[:mro.index(AUSettingsHolder)]):
            values.update({k: v for k, v in vars(cls).items() if k in AU_KEYS})
        return values

    def __setattr__(self, name: str, value: Any) -> None:
        if name in AU_KEYS:
            self._set_au_inputs({**self._au().values, name: value})
            return
        super().__setattr__(name, value)
        if name in SOURCE_INPUTS and "_au_state" in self.__dict__:
            self._set_au_inputs()

    if not TYPE_CHECKING:  # the AU keys as attributes, for AffectGPT's code and scripts; ours reads au_settings

        def __getattr__(self, name: str) -> Any:  # only for what normal lookup does not find
            if name in AU_KEYS:
                try:
                    return self._au().attribute(name)
                except AttributeError:
                    pass
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)

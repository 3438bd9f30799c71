"""What the feature pipeline needs from a text encoder and from an agent, as :class:`typing.Protocol`\\ s.

Several classes meet each need: CLIP as :class:`~.clip_encoder.ClipTextEncoder`, the cache-first
:class:`~.clip_encoder.DeferredClipEncoder`, the dataset's :class:`~.source.LazyClip`, the Ray engine's and the
benchmarks' encoders; the agent as :class:`~affectgpt_patch.agent.AUAgent`, the dataset's
:class:`~.source.LazyAgent` or the Ray engine's agent. A function names the smallest protocol it uses.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np


class TextEncoder(Protocol):
    """Texts → L2-normalised features ``[N, dim]`` (float32), identified by the weights' fingerprint."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class CorpusEncoder(TextEncoder, Protocol):
    """An encoder that runs over a whole corpus (``precompute``): a progress bar, and a count of the texts its
    model encoded in this process (the run's summary reports it)."""

    @property
    def encoded(self) -> int: ...

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray: ...


class Describer(Protocol):
    """Contract input strings → one description each, in order; the fingerprint keys what it writes."""

    @property
    def fingerprint(self) -> str: ...

    def describe_inputs(self, inputs: Sequence[str], *, batch_size: Optional[int] = None,
                        progress: bool = False) -> List[str]: ...


class CorpusDescriber(Describer, Protocol):
    """A describer that runs over a whole corpus: the run's summary reports its cache counts."""

    def cache_stats(self) -> Dict[str, int]: ...

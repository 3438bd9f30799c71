"""The text route into AffectGPT: each sample's AU caption as one sentence of its prompt.

``au_route`` (a dataset key, default ``features``) picks how an AU ``face_or_frame`` mode reaches the LLM:

* ``features`` — the AU branch's tokens ``<AU><AUHere></AU>`` (CLIP features, new weights to train);
* ``text``     — ``The facial action units of the person over time are: <AUText>{caption}</AUText>. ``
  before the subtitle, in the sentence style of AffectGPT's own prompt; no ``'au'`` in ``needed_data``, no AU
  branch used, so a released checkpoint can read it;
* ``both``     — the caption sentence, then the AU tokens.

The caption is the one ``au-agent precompute`` wrote into ``{au_precomputed_dir}/{name}.json`` (same frames,
descriptions and fingerprints as the features), so training and inference read the same bytes. A sample
without a caption gets no sentence; more than ``au_max_missing`` of them, or records made with another
``au_text_max_tokens`` or frame settings, fail the dataset's construction.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from au_core.errors import AUAgentError

from ..features.store import FeatureSettings, meta_mismatches, precomputed_meta
from .caption import DEFAULT_MAX_TOKENS

log = logging.getLogger(__name__)

AU_ROUTES = ("features", "text", "both")
CAPTION_OPEN, CAPTION_CLOSE = "<AUText>", "</AUText>"
CAPTION_SENTENCE = "The facial action units of the person over time are: " + CAPTION_OPEN + "{caption}" \
    + CAPTION_CLOSE + ". "


@dataclass(frozen=True)
class TextRouteSettings:
    """The text route's AffectGPT config keys (dataset keys), one field each, with their defaults."""

    au_route: str = "features"  # features | text | both: AU tokens, the AU caption in the prompt, or both
    au_text_max_tokens: int = DEFAULT_MAX_TOKENS  # the caption budget the precomputed captions must have


def check_route(route: Any) -> str:
    if route not in AU_ROUTES:
        raise AUAgentError(f"au_route {route!r}: choose one of {', '.join(AU_ROUTES)}")
    return str(route)


def uses_text(route: str) -> bool:
    return route in ("text", "both")


def uses_features(route: str) -> bool:
    return route in ("features", "both")


def caption_sentence(caption: Optional[str]) -> str:
    """The sentence placed before the subtitle; empty without a caption (as the AU fork's Nonverbal text)."""
    return CAPTION_SENTENCE.format(caption=caption) if caption else ""


def caption_of(meta: Any) -> Optional[str]:
    cap = meta.get("caption") if isinstance(meta, dict) else None
    text = cap.get("text") if isinstance(cap, dict) else None
    return text if isinstance(text, str) and text else None


class CaptionSource:
    """Captions of one dataset, read from a ``precompute`` folder (``root/{dataset}`` when that exists)."""

    def __init__(self, precomputed_dir: Optional[str], features: FeatureSettings, max_tokens: int,
                 max_missing: float, dataset: Optional[str] = None) -> None:
        root = os.fspath(precomputed_dir) if precomputed_dir else None
        sub = os.path.join(root, dataset) if root and isinstance(dataset, str) else None
        self.folder = sub if sub and os.path.isdir(sub) else root
        self.features, self.max_tokens, self.max_missing = features, int(max_tokens), float(max_missing)
        self._captions: Dict[str, Optional[str]] = {}
        self._warned = False

    def _record(self, name: str) -> Optional[Dict[str, Any]]:
        folder = self.folder
        if not folder:
            return None
        meta = precomputed_meta(folder, name)
        if meta is None:
            return None
        problems = meta_mismatches(meta, self.features)
        cap = meta.get("caption")
        if isinstance(cap, dict) and cap.get("max_tokens") != self.max_tokens:
            problems.append(f"au_text_max_tokens {cap.get('max_tokens')!r} (config: {self.max_tokens})")
        if problems:
            raise AUAgentError(f"AU caption made with other settings: {'; '.join(problems)}; rerun `au-agent "
                               f"precompute` with these settings", Path(folder) / f"{name}.json")
        return meta

    def caption(self, name: Optional[str]) -> Optional[str]:
        """The sample's caption, or None (warned once) when it has none."""
        if not name:
            return None
        if name not in self._captions:
            self._captions[name] = caption_of(self._record(name))
            if self._captions[name] is None and not self._warned:
                self._warned = True
                log.warning("%s: no AU caption in %s; the prompt gets no AU sentence (further cases at debug "
                            "level)", name, self.folder)
        return self._captions[name]

    def check(self, names: Sequence[str]) -> None:
        """Refuse a missing folder, records made another way, or too many samples without a caption."""
        if not self.folder:
            raise AUAgentError("au_route text/both needs au_precomputed_dir (an `au-agent precompute` output, "
                               "whose records hold the AU captions)")
        if not os.path.isdir(self.folder):
            raise AUAgentError("au_precomputed_dir: folder not found", self.folder)
        names = [n for n in names if n]
        missing: List[str] = [n for n in names if self.caption(n) is None]
        if len(missing) > self.max_missing * len(names):
            raise AUAgentError(f"{len(missing)} of {len(names)} samples ({len(missing) / len(names):.1%}) have no "
                               f"AU caption (au_max_missing: {self.max_missing:g}), e.g. {', '.join(missing[:3])}; "
                               f"`au-agent precompute` writes them unless --no-au-caption", self.folder)

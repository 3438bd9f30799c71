"""One AU caption per video: the agent's descriptions of the chosen frames as one text for AffectGPT's prompt.

The second route into AffectGPT (beside the CLIP features of the AU branch) needs no new weights: the caption is
placed in the prompt as text, so it works with a released checkpoint. It is built from exactly the frames and
descriptions the features use (uniform or peak frames, :func:`affectgpt_patch.features.compute.plan_video`):

    0.0 s: The face shows raised inner brows and parted lips. 0.5–1.5 s: Lip corners pulled up, cheeks raised.
    2.0 s, 3.0 s: A neutral face: no facial action unit is clearly active.

* frame times in seconds (OpenFace's ``timestamp``; without it the frame number at :data:`FALLBACK_FPS`);
* consecutive frames with the same description merged into one time range;
* neutral frames said once: every neutral time is listed where the first neutral frame stands;
* a budget in tokens of AffectGPT's LLM tokenizer (``au_text_max_tokens``), cut only between descriptions,
  dropping the latest ones, with the number of cut descriptions recorded.

The builder is a pure function of its inputs (no model, no randomness): precompute writes its result into each
video's ``{name}.json`` and training, inference and ``au-agent captions`` read that text, byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from au_core import contract
from au_core.errors import AUAgentError

from .. import per_process

log = logging.getLogger(__name__)

#: Frame rate assumed for a CSV without OpenFace's ``timestamp`` column (MER videos are 25 fps).
FALLBACK_FPS = 25.0

#: The default budget, measured with the Qwen2.5 tokenizer's BPE (AffectGPT's LLM is Qwen2.5-7B-Instruct) on 300
#: synthetic MER-like clips (60-200 frames, 8 uniform frames, faithful teacher descriptions): a description
#: takes 11-55 tokens (neutral 12), a whole caption 90 / 159 / 247 / 303 tokens (p5 / median / p95 / max).
#: With 256, 10 of 300 clips lose a description (12 of 1627 descriptions); with 192, 87 clips; with 128, 225.
#: The released configs cut prompt + answer at ``max_length: 1024`` and their query tokens are 1 each, so
#: 256 tokens of AU text still leave the subtitle and the longest answers their room.
DEFAULT_MAX_TOKENS = 256

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class CaptionSettings:
    """How captions are built: the budget and the tokenizer that counts it (a folder or hub id of AffectGPT's
    LLM; None: the AU Agent's base model, a Qwen2.5 with the same tokenizer as AffectGPT's Qwen2.5 LLM)."""

    au_text_max_tokens: int = DEFAULT_MAX_TOKENS
    au_text_tokenizer: Optional[str] = None


@dataclass
class Caption:
    text: str
    tokens: int  # of ``text``, counted with the settings' tokenizer
    max_tokens: int
    descriptions: int  # descriptions kept (a merged time range or the neutral group counts once)
    cut: int  # descriptions dropped to fit the budget
    tokenizer: Optional[str] = None  # the tokenizer's fingerprint
    segments: List[str] = field(default_factory=list)

    def record(self) -> Dict[str, Any]:
        """What ``{name}.json`` stores under ``"caption"``."""
        return {k: v for k, v in asdict(self).items() if k != "segments"}


def frame_seconds(frames: Sequence[Optional[int]], timestamps: Optional[Mapping[int, float]] = None,
                  fps: float = FALLBACK_FPS) -> List[Optional[float]]:
    """The time of each chosen frame: OpenFace's timestamp when known, else ``(frame - 1) / fps``."""
    times: List[Optional[float]] = []
    for f in frames:
        if f is None:
            times.append(None)
        elif timestamps and int(f) in timestamps:
            times.append(float(timestamps[int(f)]))
        else:
            times.append((int(f) - 1) / fps)
    return times


def _seconds(t: float) -> str:
    return f"{t:.1f}"


def _span(ts: Sequence[float]) -> str:
    lo, hi = _seconds(min(ts)), _seconds(max(ts))
    return f"{lo} s" if lo == hi else f"{lo}–{hi} s"


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def caption_segments(times: Sequence[Optional[float]], descriptions: Sequence[Optional[str]]) -> List[str]:
    """The caption's descriptions in time order, one string each (``"0.5–1.5 s: …"``), before any budget.

    Masked slots (``None``) are skipped; runs of one description over consecutive slots become one range
    (a repeated frame, as short clips have, merges too); every neutral slot joins one segment, where its runs
    are ranges too (``sampling: all`` has long neutral stretches).
    """
    if len(times) != len(descriptions):
        raise AUAgentError("a caption needs one time per description")
    segments: List[Tuple[str, List[float]]] = []  # (description, times), in time order
    neutral: List[List[float]] = []  # the neutral runs, said once where the first neutral slot stands
    previous: Optional[str] = None
    for t, d in zip(times, descriptions):
        if d is None or t is None or not d.strip():
            continue
        if d == contract.NEUTRAL_DESCRIPTION:
            if not neutral:
                segments.append((d, []))
            if previous == d:
                neutral[-1].append(t)
            else:
                neutral.append([t])
        elif previous == d:
            segments[-1][1].append(t)
        else:
            segments.append((d, [t]))
        previous = d
    out = []
    for d, ts in segments:
        when = ", ".join(dict.fromkeys(_span(run) for run in neutral)) if d == contract.NEUTRAL_DESCRIPTION \
            else _span(ts)
        out.append(f"{when}: {_sentence(d)}")
    return out


def build_caption(times: Sequence[Optional[float]], descriptions: Sequence[Optional[str]], max_tokens: int,
                  count: TokenCounter, tokenizer: Optional[str] = None) -> Caption:
    """The caption of one video within ``max_tokens`` (cut between descriptions, the latest first).

    A budget smaller than the first description is an error naming ``au_text_max_tokens``: the caption would
    be empty for a clip that has AU information.
    """
    segments = caption_segments(times, descriptions)
    kept: List[str] = []
    tokens = 0
    for seg in segments:
        n = count(" ".join(kept + [seg]))
        if n > max_tokens:
            if not kept:
                raise AUAgentError(f"au_text_max_tokens {max_tokens} is smaller than one description ({n} "
                                   f"tokens: {seg[:60]!r}…); raise it (default {DEFAULT_MAX_TOKENS})")
            break
        kept.append(seg)
        tokens = n
    return Caption(" ".join(kept), tokens, int(max_tokens), len(kept), len(segments) - len(kept), tokenizer, kept)


def check_budget(max_tokens: Any) -> int:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise AUAgentError(f"au_text_max_tokens must be a positive whole number of tokens, got {max_tokens!r}")
    return max_tokens


# ----------------------------------------------------------------------------------- the tokenizer, counted


class TokenizerCounter:
    """Token counts of AffectGPT's LLM tokenizer (no special tokens added), loaded once per process."""

    def __init__(self, name_or_path: str) -> None:
        self.name = name_or_path
        self._tok: Any = None
        self._fingerprint: Optional[str] = None

    def _tokenizer(self) -> Any:
        if self._tok is None:
            from transformers import AutoTokenizer

            try:
                self._tok = AutoTokenizer.from_pretrained(self.name, trust_remote_code=False)
            except (OSError, ValueError) as e:
                raise AUAgentError(f"au_text_tokenizer: cannot load a tokenizer ({str(e).splitlines()[0]})",
                                   self.name) from None
        return self._tok

    def __call__(self, text: str) -> int:
        return len(self._tokenizer()(text, add_special_tokens=False)["input_ids"])

    @property
    def fingerprint(self) -> str:
        """See :func:`tokenizer_fingerprint`."""
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self.name, self._tokenizer)
        return self._fingerprint


#: The files a Hugging Face tokenizer folder counts with: two folders with the same bytes count alike.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "special_tokens_map.json", "vocab.txt", "tokenizer.model", "spiece.model")


def tokenizer_fingerprint(name_or_path: str, load: Optional[Callable[[], Any]] = None) -> str:
    """The hash of a tokenizer folder's files, read without loading the tokenizer (so a finished rerun that
    compares its records' captions imports no transformers); a hub id is loaded and its vocabulary hashed."""
    folder = os.fspath(name_or_path)
    digest = hashlib.sha256()
    found = False
    for file in TOKENIZER_FILES:
        path = os.path.join(folder, file)
        if os.path.isfile(path):
            found = True
            with open(path, "rb") as f:
                digest.update(file.encode("utf-8") + b"\0" + hashlib.sha256(f.read()).digest())
    if not found:
        tok = (load or token_counter(folder)._tokenizer)()
        digest.update(json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode("utf-8"))
    return "tok-" + digest.hexdigest()[:16]


def token_counter(name_or_path: str) -> TokenizerCounter:
    """One counter per process and tokenizer (:mod:`affectgpt_patch.per_process`)."""
    name = os.fspath(name_or_path)
    return per_process.once(("caption tokenizer", name), lambda: TokenizerCounter(name))


def resolve_tokenizer(settings: CaptionSettings, agent_base_model: Optional[str]) -> str:
    """The tokenizer captions are counted with: ``au_text_tokenizer``, else the AU Agent's base model."""
    name = settings.au_text_tokenizer or agent_base_model
    if not name:
        raise AUAgentError("au_text_tokenizer: name AffectGPT's LLM folder (its tokenizer counts the caption "
                           "budget); the AU Agent has no base model to take it from")
    return os.fspath(name)


def video_caption(times: Sequence[Optional[float]], descriptions: Sequence[Optional[str]],
                  settings: CaptionSettings) -> Caption:
    """:func:`build_caption` with the settings' tokenizer (``au_text_tokenizer`` must be resolved)."""
    count = token_counter(resolve_tokenizer(settings, None))
    return build_caption(times, descriptions, check_budget(settings.au_text_max_tokens), count, count.fingerprint)


def with_tokenizer(settings: Optional[CaptionSettings], agent_base_model: Optional[str]) -> Optional[CaptionSettings]:
    """The settings with their tokenizer resolved (the AU Agent's base model by default), nothing loaded; None,
    logged, when captions cannot be counted (no tokenizer named and an agent without a base model, e.g. the rules
    or openai backend)."""
    if settings is None:
        return None
    check_budget(settings.au_text_max_tokens)
    name = settings.au_text_tokenizer or agent_base_model
    if not name:
        # info, not a warning: the text route refuses a folder without captions, naming this option
        log.info("no AU captions are written: name AffectGPT's LLM folder with --au-text-tokenizer (the AU Agent "
                 "has no base model whose tokenizer counts the caption budget)")
        return None
    return replace(settings, au_text_tokenizer=os.fspath(name))


def check_caption_budget(settings: Optional[CaptionSettings]) -> None:
    """Refuse a budget below the neutral description alone. Callers run it once some video is to be done and
    before any output exists: it loads the tokenizer, which a finished rerun never needs."""
    if settings is None or not settings.au_text_tokenizer:
        return
    shortest = token_counter(settings.au_text_tokenizer)(caption_segments([0.0], [contract.NEUTRAL_DESCRIPTION])[0])
    if shortest > settings.au_text_max_tokens:
        raise AUAgentError(f"au_text_max_tokens {settings.au_text_max_tokens} is smaller than one description "
                           f"(the neutral one alone takes {shortest} tokens); raise it (default "
                           f"{DEFAULT_MAX_TOKENS})")


def _fingerprint_of(name_or_path: str) -> str:
    """:func:`tokenizer_fingerprint`, once per process and tokenizer (every record of a corpus compares it)."""
    name = os.fspath(name_or_path)
    return per_process.once(("caption tokenizer fingerprint", name), lambda: tokenizer_fingerprint(name))


def caption_mismatch(meta: Mapping[str, Any], settings: Optional[CaptionSettings],
                     tokenizer_fp: Optional[str] = None) -> List[str]:
    """How a record's caption differs from the one these settings make (empty: it matches; no settings: no
    caption wanted). The tokenizer is compared by fingerprint (loaded from the settings when not given)."""
    if settings is None:
        return []
    if tokenizer_fp is None and settings.au_text_tokenizer:
        tokenizer_fp = _fingerprint_of(settings.au_text_tokenizer)
    cap = meta.get("caption")
    if not isinstance(cap, dict) or not isinstance(cap.get("text"), str):
        return ["no AU caption"]
    problems = []
    if cap.get("max_tokens") != settings.au_text_max_tokens:
        problems.append(f"au_text_max_tokens {cap.get('max_tokens')!r} (now {settings.au_text_max_tokens})")
    if tokenizer_fp is not None and cap.get("tokenizer") != tokenizer_fp:
        problems.append(f"caption tokenizer {cap.get('tokenizer')!r} (now {tokenizer_fp!r})")
    return problems

"""FACS vocabulary: the Action Units OpenFace 2.x reports and the names MER-Factory gives them.

The names are exactly MER-Factory's ``AU_TO_TEXT_MAP`` so that its template strings
(``"Lip corner puller (smile) (intensity: 1.74)"``) can be mapped back to codes.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Dict, Iterable, List, Optional

from .errors import AUAgentError

#: The 17 intensity (``_r``) Action Units of OpenFace 2.x, in its column order (ascending AU number).
INTENSITY_AUS: List[str] = [
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
]
#: The 18 presence (``_c``) Action Units: the same plus AU28 (lip suck), which has no intensity model.
PRESENCE_AUS: List[str] = INTENSITY_AUS[:-1] + ["AU28", "AU45"]

#: FACS names exactly as MER-Factory writes them.
AU_NAMES: Dict[str, str] = {
    "AU01": "Inner brow raiser",
    "AU02": "Outer brow raiser",
    "AU04": "Brow lowerer",
    "AU05": "Upper lid raiser",
    "AU06": "Cheek raiser",
    "AU07": "Lid tightener",
    "AU09": "Nose wrinkler",
    "AU10": "Upper lip raiser",
    "AU12": "Lip corner puller (smile)",
    "AU14": "Dimpler",
    "AU15": "Lip corner depressor",
    "AU17": "Chin raiser",
    "AU20": "Lip stretcher",
    "AU23": "Lip tightener",
    "AU25": "Lips part",
    "AU26": "Jaw drop",
    "AU28": "Lip suck",
    "AU45": "Blink",
}
NAME_TO_CODE: Dict[str, str] = {name.lower(): code for code, name in AU_NAMES.items()}

_CODE_RE = re.compile(r"^\s*AU\s*0*(\d{1,2})\s*(?:_[rc])?\s*$", re.IGNORECASE)
#: One ``"<name> (intensity: v)"`` item of MER-Factory's template; the name may carry its own "(smile)".
TEMPLATE_ITEM_RE = re.compile(r"(?P<name>[A-Za-z][A-Za-z ]*?(?: \(smile\))?) \(intensity: (?P<val>-?\d+(?:\.\d+)?)\)")


def normalize_code(key: str) -> Optional[str]:
    """``" AU01_r"``, ``"au1"``, ``"AU01"`` → ``"AU01"``; ``None`` when ``key`` is not an AU name."""
    return _normalize(str(key))


@functools.lru_cache(maxsize=4096)
def _normalize(key: str) -> Optional[str]:
    # Called for every AU key of every record (about a million times for 100K records) with a few dozen
    # distinct keys: the regex runs once per distinct key.
    m = _CODE_RE.match(key)
    return f"AU{int(m.group(1)):02d}" if m else None


def code_for_name(name: str) -> str:
    """Reverse lookup of a MER-Factory FACS name (case-insensitive): ``"Lip corner puller (smile)"`` → ``AU12``."""
    try:
        return NAME_TO_CODE[name.strip().lower()]
    except KeyError:
        raise AUAgentError(f"unknown FACS name {name!r}") from None


def parse_au_template(text: str) -> Dict[str, float]:
    """Map MER-Factory's ``"Name (intensity: v), ..."`` text back to ``{"AU01": v, ...}``.

    Raises when any part of the text is not a recognised item, so a changed template is noticed, not half-read.
    """
    values: Dict[str, float] = {}
    rest = text
    for m in TEMPLATE_ITEM_RE.finditer(text):
        values[code_for_name(m.group("name"))] = float(m.group("val"))
        rest = rest.replace(m.group(0), "", 1)
    if rest.replace(",", "").strip():
        raise AUAgentError(f"cannot read AU template text {text!r}")
    return values


#: How each AU reads in plain words (a noun phrase of the visible change); used by rule-based descriptions.
AU_PHRASES: Dict[str, str] = {
    "AU01": "raised inner brows",
    "AU02": "raised outer brows",
    "AU04": "lowered, drawn-together brows",
    "AU05": "raised upper eyelids",
    "AU06": "raised cheeks",
    "AU07": "tightened eyelids",
    "AU09": "a wrinkled nose",
    "AU10": "a raised upper lip",
    "AU12": "lip corners pulled up into a smile",
    "AU14": "dimpled mouth corners",
    "AU15": "lip corners pulled down",
    "AU17": "a raised chin",
    "AU20": "lips stretched sideways",
    "AU23": "tightened lips",
    "AU25": "parted lips",
    "AU26": "a dropped jaw",
    "AU28": "lips sucked in",
    "AU45": "closed eyes (blink)",
}


#: OpenFace clamps its AU intensity predictions to [0, 5]. A value outside that range is not an OpenFace
#: intensity (a wrong column, a unit mix-up, a corrupt file) and is refused rather than clipped: clipping would
#: train on, or describe, a number that was never measured.
MAX_INTENSITY = 5.0


def intensity_value(name: str, raw: Any) -> float:
    """A finite AU intensity from a CSV cell or a dict value; ``name`` (the AU or column) is used in the error."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise AUAgentError(f"{name} has a non-numeric intensity {raw!r}") from None
    if not math.isfinite(value):
        raise AUAgentError(f"{name} has a non-finite intensity {raw!r}")
    if not 0.0 <= value <= MAX_INTENSITY:
        raise AUAgentError(f"{name} has the intensity {raw!r}, outside OpenFace's range 0-{MAX_INTENSITY:g}")
    return value


def intensity_word(value: float) -> str:
    """The word used for an OpenFace intensity (0–5) in rule-based descriptions and in the README."""
    if value <= 1.5:
        return "slight"
    if value <= 2.5:
        return "moderate"
    if value <= 3.5:
        return "pronounced"
    return "strong"


def sort_codes(codes: Iterable[str]) -> List[str]:
    """AU codes in ascending AU number."""
    return sorted(codes, key=_au_number)


@functools.lru_cache(maxsize=256)
def _au_number(code: str) -> int:
    return int(code[2:])

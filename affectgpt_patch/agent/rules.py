"""The ``rules`` backend: a deterministic FACS description built from the AU names, no model.

The fallback when no GPU or weights are available, and the baseline the evaluation compares against.
It mentions exactly the active AUs, each with its plain-words phrase and intensity word::

    "AU01: 0.98, AU07: 2.85, AU25: 1.76" →
    "The face shows raised inner brows (slight), tightened eyelids (pronounced) and parted lips (moderate)."
"""
from __future__ import annotations

from typing import List, Sequence

from au_core import contract
from au_core.facs import AU_PHRASES, intensity_word

RULES_VERSION = "rules-1"


def rules_description(input_str: str) -> str:
    values = contract.parse_input(input_str)
    if not values:
        return contract.NEUTRAL_DESCRIPTION
    parts = [f"{AU_PHRASES[code]} ({intensity_word(v)})" for code, v in values.items()]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"The face shows {body}."


class RulesBackend:
    name = "rules"

    def generate(self, inputs: Sequence[str], batch_size: int = 0) -> List[str]:
        return [rules_description(s) for s in inputs]

    def close(self) -> None:
        pass

"""The prompt contract: the single definition of what the AU Agent sees, in training and at inference.

One AU frame becomes one prompt:

    {"AU01_r": 0.98, "AU02_r": 0.31, "AU25_r": 1.764}
        → active AUs (value > 0.8 after rounding to 2 decimals, ascending AU number)
        → input string  "AU01: 0.98, AU25: 1.76"
        → user turn     INSTRUCTION + "\\n" + input string      (LLaMA-Factory's alpaca "prompt\\nquery")
        → chat          system = SYSTEM_PROMPT, rendered with LLaMA-Factory's ``qwen`` template

A frame with no active AU is *neutral*: it is never sent to a model and always described by
``NEUTRAL_DESCRIPTION``, so neutral records are not trained on. Change anything here and bump
``CONTRACT_VERSION``: datasets and agents record it, and mixing versions is refused.
"""
from __future__ import annotations

from typing import Dict, List, Mapping

from .errors import AUAgentError
from .facs import AU_NAMES, intensity_value, normalize_code, sort_codes

CONTRACT_VERSION = "au-contract-1"

SYSTEM_PROMPT = (
    "You are an expert in the Facial Action Coding System (FACS). Given the Action Units that OpenFace "
    "detected in one video frame, with intensities from 0 to 5, describe the visible facial expression "
    "in one or two sentences."
)
INSTRUCTION = "Based on the following Action Unit detections, describe the facial expression:"

#: OpenFace's face-detection confidence below which a frame is not described (masked).
DEFAULT_MIN_CONFIDENCE = 0.8
#: MER-Factory's definition of an active AU: intensity strictly above this value.
ACTIVE_THRESHOLD = 0.8
#: The input string of a frame with no active AU, and the description it always gets.
NEUTRAL_INPUT = "none"
NEUTRAL_DESCRIPTION = "A neutral face: no facial action unit is clearly active."

#: The LLaMA-Factory template the recipes train with, and its turn delimiters.
TEMPLATE = "qwen"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
#: Generation stops at the end of the assistant turn (and at the tokenizer's own eos token), as LLaMA-Factory's
#: ``qwen`` template stops it.
STOP_TOKENS = (IM_END,)


def active_aus(au_values: Mapping[str, float]) -> Dict[str, float]:
    """The active AUs of one frame, rounded to 2 decimals, in ascending AU number.

    ``au_values`` maps ``"AU01"`` or ``"AU01_r"`` (any case, surrounding spaces allowed) to an intensity.
    Presence (``_c``) keys, unknown AUs and non-finite values are refused: they mean the caller passed
    the wrong thing, and silently dropping them would change what the model sees.
    """
    rounded: Dict[str, float] = {}
    for key, value in au_values.items():
        code = normalize_code(key)
        if code is None or str(key).strip().lower().endswith("_c"):
            raise AUAgentError(f"{key!r} is not an AU intensity key (expected e.g. 'AU01' or 'AU01_r')")
        if code not in AU_NAMES:
            raise AUAgentError(f"unknown AU {code!r}: OpenFace 2.x reports {', '.join(AU_NAMES)}")
        v = float(f"{intensity_value(code, value):.2f}")
        if v > ACTIVE_THRESHOLD:
            rounded[code] = v
    return {code: rounded[code] for code in sort_codes(rounded)}


def format_input(au_values: Mapping[str, float]) -> str:
    """``{"AU01_r": 0.98, "AU25_r": 1.764}`` → ``"AU01: 0.98, AU25: 1.76"``; ``NEUTRAL_INPUT`` if none is active."""
    active = active_aus(au_values)
    if not active:
        return NEUTRAL_INPUT
    return ", ".join(f"{code}: {value:.2f}" for code, value in active.items())


def parse_input(input_str: str) -> Dict[str, float]:
    """Inverse of :func:`format_input` (used by evaluation to know which AUs a prompt made active)."""
    if input_str == NEUTRAL_INPUT:
        return {}
    values: Dict[str, float] = {}
    for item in input_str.split(", "):
        code, _, value = item.partition(": ")
        if normalize_code(code) != code or not value:
            raise AUAgentError(f"not a contract input string: {input_str!r}")
        values[code] = float(value)
    return values


def is_neutral(input_str: str) -> bool:
    return input_str == NEUTRAL_INPUT


def user_message(input_str: str, instruction: str = INSTRUCTION) -> str:
    """The user turn, joined exactly as LLaMA-Factory joins an alpaca record's instruction and input."""
    return f"{instruction}\n{input_str}"


def chat_messages(input_str: str) -> List[Dict[str, str]]:
    """The OpenAI-style messages of one prompt (for chat servers and ``apply_chat_template``)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(input_str)},
    ]


def prompt_segments(input_str: str) -> List[str]:
    """The prompt as the ``qwen`` template renders it, one string per segment it tokenizes separately.

    LLaMA-Factory encodes the system block and the user block (which ends with the assistant header) one
    after the other; encoding the same two strings the same way gives the training-time token ids.
    """
    return [
        f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n",
        f"{IM_START}user\n{user_message(input_str)}{IM_END}\n{IM_START}assistant\n",
    ]


def prompt_text(input_str: str) -> str:
    """The whole rendered prompt as one string (what a raw-completion server such as vLLM receives)."""
    return "".join(prompt_segments(input_str))


def alpaca_record(input_str: str, output: str, video: str, frame: int) -> Dict[str, object]:
    """One training record; ``video`` and ``frame`` trace it to its source (LLaMA-Factory ignores them)."""
    return {
        "instruction": INSTRUCTION,
        "input": input_str,
        "output": output,
        "system": SYSTEM_PROMPT,
        "video": video,
        "frame": int(frame),
    }


def describe() -> Dict[str, object]:
    """The contract as data, written beside every dataset and into every agent card."""
    return {
        "contract_version": CONTRACT_VERSION,
        "system_prompt": SYSTEM_PROMPT,
        "instruction": INSTRUCTION,
        "active_threshold": ACTIVE_THRESHOLD,
        "neutral_input": NEUTRAL_INPUT,
        "neutral_description": NEUTRAL_DESCRIPTION,
        "template": TEMPLATE,
    }

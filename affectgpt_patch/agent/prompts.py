"""Token ids of a prompt, encoded exactly the way LLaMA-Factory encodes it for training.

LLaMA-Factory's ``qwen`` template tokenizes the system block and the user block separately and concatenates
the ids; encoding :func:`au_core.contract.prompt_segments` the same way makes inference see, token for
token, what training saw (checked against LLaMA-Factory's template code by the tests).
"""
from __future__ import annotations

from typing import Any, List

from au_core import contract


def encode_prompt(tokenizer: Any, input_str: str) -> List[int]:
    ids: List[int] = []
    for segment in contract.prompt_segments(input_str):
        ids += tokenizer.encode(segment, add_special_tokens=False)
    return ids


def stop_token_ids(tokenizer: Any) -> List[int]:
    """``<|im_end|>`` ends the assistant turn, plus the tokenizer's eos (the same ids LLaMA-Factory stops on)."""
    ids = []
    for token in contract.STOP_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is not None and tid != getattr(tokenizer, "unk_token_id", None) and tid not in ids:
            ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids

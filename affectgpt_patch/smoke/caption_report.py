"""The smoke table's rows for the text route: the AU caption in the LLM's input, read back from the input ids
the training and inference processes recorded (decoded, the caption taken between its markers)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from .report import Row

Markers = Tuple[str, str]


def between(text: str, markers: Markers) -> Optional[str]:
    """The text between the first pair of markers, or None."""
    start = text.find(markers[0])
    end = text.find(markers[1], start + len(markers[0])) if start >= 0 else -1
    return text[start + len(markers[0]):end] if start >= 0 and end >= 0 else None


def caption_rows(train_texts: Sequence[str], infer_texts: Sequence[str], captions: Mapping[str, str],
                 infer_sample: Optional[str], budget: int, count: Callable[[str], int], markers: Markers) -> List[Row]:
    """Rows: the caption reached the LLM verbatim, within the budget, the same for training and inference."""
    known = set(captions.values())
    trained = [between(t, markers) for t in train_texts]
    inferred = [between(t, markers) for t in infer_texts]
    where = f"between {markers[0]} and {markers[1]} of the decoded input ids"
    missing = sum(c is None for c in trained + inferred)
    foreign = sum(c is not None and c not in known for c in trained + inferred)
    rows = [Row("AU caption reached the LLM input verbatim", bool(trained) and bool(inferred) and not missing
                and not foreign, f"{len(trained)} training + {len(inferred)} inference prompts, {where}"
                + (f"; {missing} without a caption" if missing else "")
                + (f"; {foreign} unlike every precomputed caption" if foreign else ""))]
    seen = [c for c in trained + inferred if c is not None]
    longest = max((count(c) for c in seen), default=0)
    rows.append(Row(f"caption within au_text_max_tokens ({budget})", bool(seen) and longest <= budget,
                    f"longest {longest} tokens of the LLM tokenizer" if seen else "no caption seen"))
    expected = captions.get(infer_sample or "")
    same = bool(inferred) and expected is not None and all(c == expected for c in inferred)
    rows.append(Row("training and inference saw the same caption", same and not foreign,
                    f"inference's caption of {infer_sample} is its precomputed record's, which training reads"
                    if same else f"inference's caption of {infer_sample} differs from its record"))
    return rows


def no_branch_row(train: Mapping[str, Any], infer: Mapping[str, Any]) -> Row:
    """The text route needs no AU branch: no ``aus`` in any batch and no ``<AUHere>`` in any prompt."""
    batches = list(train.get("batches", [])) + list(infer.get("batches", []))
    with_aus = sum(b.get("aus") is not None for b in batches)
    tokens = sum(c for s in list(train.get("splices", [])) + list(infer.get("splices", [])) for c in s["counts"])
    return Row("no AU branch needed", bool(batches) and not with_aus and not tokens,
               f"aus in {with_aus}/{len(batches)} batches; {tokens} <AUHere> tokens in the prompts")


def captions_in_llm_input(features: Path, llm: Path, nonverbal: bool, train: Mapping[str, Any],
                          infer: Mapping[str, Any]) -> List[Row]:
    """:func:`caption_rows` against the captions precompute wrote into ``features`` (the records training and
    inference read), counted with the LLM's tokenizer; the AU fork's Nonverbal markers when ``nonverbal``."""
    from ..captions.caption import DEFAULT_MAX_TOKENS, token_counter
    from ..captions.text_route import CAPTION_CLOSE, CAPTION_OPEN, caption_of

    captions = {}
    for path in sorted(Path(features).glob("*.json")):
        text = caption_of(json.loads(path.read_text(encoding="utf-8")))
        if text:
            captions[path.stem] = text
    markers = ("<Nonverbal>", "</Nonverbal>") if nonverbal else (CAPTION_OPEN, CAPTION_CLOSE)
    return caption_rows(train.get("texts", []), infer.get("texts", []), captions, infer.get("sample"),
                        DEFAULT_MAX_TOKENS, token_counter(str(llm)), markers)

"""``smoke-affectgpt --compare``: one sample answered three ways by the checkout's own inference (the same
checkpoint, the same media): without AU, with the AU caption as text, and with the AU features when the
checkpoint has an AU branch; the answers and the caption printed side by side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

#: (label, how the inference config is changed): ``None`` drops the AU part of face_or_frame.
WAYS: Tuple[Tuple[str, Optional[str]], ...] = (("no AU", None), ("AU caption (text)", "text"),
                                               ("AU features", "features"))
#: What each way's LLM input must carry: (the caption, AU tokens).
EXPECTED_INPUT = {None: (False, False), "text": (True, False), "features": (False, True)}
CAPTION_MARKERS = (("<AUText>", "</AUText>"), ("<Nonverbal>", "</Nonverbal>"))  # au-agent's, the AU fork's


NO_BRANCH = "checkpoint has no AU branch"


def way_config(cfg: Any, route: Optional[str]) -> Any:
    """A copy of the smoke config answering without AU (``None``: no AU part in face_or_frame, no Nonverbal
    caption) or by ``au_route`` ``route``."""
    from omegaconf import OmegaConf

    from ..mixin import mode_without_au

    out = OmegaConf.create(OmegaConf.to_container(cfg))
    for name in out.datasets:
        if route is None:
            out.datasets[name].face_or_frame = mode_without_au(str(out.datasets[name].face_or_frame))
        else:
            out.datasets[name].au_route = route
    if route is None and out.get("inference") is not None and out.inference.get("use_nonverbal_text"):
        out.inference.use_nonverbal_text = False  # the AU fork's Nonverbal mode: its caption is AU too
    return out


def compare(cfg: Any, code_root: Path, probes: Path, has_features: bool,
            infer: Callable[[str, Path], Dict[str, Any]]) -> List[Tuple[str, Dict[str, Any]]]:
    """Run ``infer(config path relative to code_root, out folder)`` once per way; returns (label, record)."""
    from omegaconf import OmegaConf

    results = []
    for i, (label, route) in enumerate(WAYS):
        if route == "features" and not has_features:
            results.append((label, {"na": NO_BRANCH}))
            continue
        rel = f"train_configs/au_agent_compare_{i}.yaml"
        (code_root / rel).write_text(OmegaConf.to_yaml(way_config(cfg, route)), encoding="utf-8")
        results.append((label, infer(rel, probes / f"compare_{i}")))
    return results


def llm_input(record: Dict[str, Any]) -> Tuple[bool, int]:
    """What the LLM's input ids held (decoded by the inference process): a caption between its markers, and how
    many ``<AUHere>`` tokens were spliced."""
    from .caption_report import between

    texts = record.get("texts", [])
    caption = bool(texts) and all(any(between(t, m) is not None for m in CAPTION_MARKERS) for t in texts)
    return caption, sum(c for splice in record.get("splices", []) for c in splice.get("counts", []))


def as_expected(route: Optional[str], record: Dict[str, Any]) -> bool:
    """The way answered (or is n/a) and its LLM input carried exactly what the way promises."""
    if record.get("na"):
        return True
    caption, tokens = llm_input(record)
    return isinstance(record.get("answer"), str) and (caption, tokens > 0) == EXPECTED_INPUT[route]


def _input_text(record: Dict[str, Any]) -> str:
    if record.get("na") or not record.get("texts"):
        return ""
    caption, tokens = llm_input(record)
    return f"[LLM input: caption {'yes' if caption else 'no'}, <AUHere> x{tokens}]"


def format_comparison(results: List[Tuple[str, Dict[str, Any]]], features: Path) -> str:
    """The answers side by side, then the sample's caption (as its precomputed record holds it)."""
    sample = next((r.get("sample") for _, r in results if r.get("sample")), None)
    caption = None
    if sample and (features / f"{sample}.json").is_file():
        record = json.loads((features / f"{sample}.json").read_text(encoding="utf-8"))
        caption = (record.get("caption") or {}).get("text")
    width = max(len(label) for label, _ in results)
    inputs = [_input_text(r) for _, r in results]
    in_width = max(len(t) for t in inputs)
    lines = [f"Side by side: sample {sample}, one checkpoint, the checkout's own inference", ""]
    for (label, r), seen in zip(results, inputs):
        answer = r.get("answer")
        shown = f"{answer!a}" if isinstance(answer, str) else f"n/a: {r['na']}" if r.get("na") else \
            f"(no answer: {r.get('error', 'not run')})"
        lines.append("  " + "  ".join([f"{label:<{width}}", *([f"{seen:<{in_width}}"] if in_width else []), shown]))
    lines += ["", f"  AU caption: {caption}" if caption else "  AU caption: (none)"]
    return "\n".join(lines)

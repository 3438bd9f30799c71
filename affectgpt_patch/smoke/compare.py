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


def way_config(cfg: Any, route: Optional[str]) -> Any:
    """A copy of the smoke config answering without AU (``None``) or by ``au_route`` ``route``."""
    from omegaconf import OmegaConf

    from ..mixin import mode_without_au

    out = OmegaConf.create(OmegaConf.to_container(cfg))
    for name in out.datasets:
        if route is None:
            out.datasets[name].face_or_frame = mode_without_au(str(out.datasets[name].face_or_frame))
        else:
            out.datasets[name].au_route = route
    return out


def compare(cfg: Any, code_root: Path, probes: Path, has_features: bool,
            infer: Callable[[str, Path], Dict[str, Any]]) -> List[Tuple[str, Dict[str, Any]]]:
    """Run ``infer(config path relative to code_root, out folder)`` once per way; returns (label, record)."""
    from omegaconf import OmegaConf

    results = []
    for i, (label, route) in enumerate(WAYS):
        if route == "features" and not has_features:
            results.append((label, {"error": "the checkpoint has no AU branch"}))
            continue
        rel = f"train_configs/au_agent_compare_{i}.yaml"
        (code_root / rel).write_text(OmegaConf.to_yaml(way_config(cfg, route)), encoding="utf-8")
        results.append((label, infer(rel, probes / f"compare_{i}")))
    return results


def format_comparison(results: List[Tuple[str, Dict[str, Any]]], features: Path) -> str:
    """The answers side by side, then the sample's caption (as its precomputed record holds it)."""
    sample = next((r.get("sample") for _, r in results if r.get("sample")), None)
    caption = None
    if sample and (features / f"{sample}.json").is_file():
        record = json.loads((features / f"{sample}.json").read_text(encoding="utf-8"))
        caption = (record.get("caption") or {}).get("text")
    width = max(len(label) for label, _ in results)
    lines = [f"Side by side: sample {sample}, one checkpoint, the checkout's own inference", ""]
    for label, r in results:
        answer = r.get("answer")
        shown = f"{answer!a}" if isinstance(answer, str) else f"(no answer: {r.get('error', 'not run')})"
        lines.append(f"  {label:<{width}}  {shown}")
    lines += ["", f"  AU caption: {caption}" if caption else "  AU caption: (none)"]
    return "\n".join(lines)

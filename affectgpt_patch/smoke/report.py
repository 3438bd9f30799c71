"""The smoke table: one row per promise a user relies on, computed from what the AffectGPT processes
recorded (:mod:`.launch`) and from the checkpoint ``train.py`` saved."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

PASS, FAIL = "PASS", "FAIL"
#: A gradient this much smaller than the branch's largest is rounding noise of a mathematically zero one
#: (e.g. the bias of a softmax-over-time score, which the softmax cancels).
NEGLIGIBLE_GRADIENT = 1e-6


@dataclass
class Row:
    check: str
    ok: bool
    detail: str = ""


@dataclass
class SmokeReport:
    title: str
    rows: List[Row]
    notes: Sequence[str] = ()
    appendix: str = ""  # printed after the table (smoke-affectgpt --compare: the answers side by side)
    compared: Sequence[Tuple[str, Dict[str, Any]]] = ()  # --compare: (way, inference record) per way

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def format(self) -> str:
        width = max(len(r.check) for r in self.rows) if self.rows else 5
        lines = [self.title, *self.notes, ""]
        lines.append(f"  {'#':>2}  {'check':<{width}}  result  detail")
        for i, r in enumerate(self.rows, 1):
            lines.append(f"  {i:>2}  {r.check:<{width}}  {PASS if r.ok else FAIL:<6}  {r.detail}")
        failed = sum(not r.ok for r in self.rows)
        lines += ["", f"{len(self.rows) - failed}/{len(self.rows)} checks passed"
                  + ("" if not failed else f"; {failed} failed")]
        return "\n".join(lines + (["", self.appendix] if self.appendix else []))


def _short(names: Sequence[str], limit: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _with_names(detail: str, *groups: Tuple[str, Sequence[str]]) -> str:
    """``detail`` followed by ``; label: names`` for each group of tensor names that is not empty."""
    return detail + "".join(f"; {label}: {_short(names)}" for label, names in groups if names)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def not_reached(check: str, why: str) -> Row:
    return Row(check, False, f"not reached: {why}")


def training_rows(train: Mapping[str, Any], steps: int, changed: Optional[Mapping[str, bool]],
                  frozen_by_config: bool = False) -> List[Row]:
    """Rows from the training process's record: it ran, loss, AU features, gradient, weights. With
    ``frozen_by_config`` (``frozen_au_proj: true``) an AU branch with nothing trainable is what was asked for."""
    rows: List[Row] = []
    losses = train.get("losses", [])
    error = train.get("error")
    rows.append(Row(f"train.py ran {steps} step{'s' * (steps != 1)}", not error and len(losses) == steps,
                    error or f"{len(losses)} forward passes"))
    rows.append(Row("loss is finite", bool(losses) and all(_finite(x) for x in losses),
                    "loss " + ", ".join(f"{x:.4f}" if _finite(x) else str(x) for x in losses) if losses
                    else "no loss recorded"))
    batches = train.get("batches", [])
    rows.append(au_features_row(batches))
    trainable, frozen = train.get("trainable", []), train.get("frozen", [])
    norms: Dict[str, List[float]] = train.get("grad_norms", {})
    all_frozen = frozen_by_config and not trainable and bool(frozen)
    if not trainable and not frozen:
        rows.append(Row("AU branch got a gradient", False, "the model has no AU parameters (au_*)"))
    elif all_frozen:
        rows.append(Row("AU branch got a gradient", True,
                        f"all {len(frozen)} AU tensors frozen by frozen_au_proj: nothing to learn"))
    else:
        bad = [n for n in trainable if any(not _finite(g) for g in norms.get(n, []))]
        top = max((g for n in trainable for g in norms.get(n, []) if _finite(g)), default=0.0)
        zero = [n for n in trainable
                if not any(_finite(g) and g > NEGLIGIBLE_GRADIENT * top and g > 0 for g in norms.get(n, []))]
        detail = _with_names(f"{len(trainable)} trainable AU tensors, max |grad| {top:.3g}",
                             (f"zero (or < {NEGLIGIBLE_GRADIENT:g} x max) gradient", zero),
                             ("non-finite gradient", bad), ("frozen", frozen))
        rows.append(Row("AU branch got a gradient", bool(trainable) and not zero and not bad, detail))
    if all_frozen:
        unchanged = [n for n in frozen if changed and changed.get(n, False)]
        rows.append(Row("AU weights changed by training", changed is not None and not unchanged,
                        "frozen AU tensors stayed as built" if changed is not None and not unchanged
                        else f"frozen AU tensors changed: {_short(unchanged)}" if unchanged
                        else "no AU weights were saved"))
    elif changed is None:
        rows.append(not_reached("AU weights changed by training", "no AU weights were saved"))
    else:
        unchanged = [n for n in trainable if not changed.get(n, False)]
        rows.append(Row("AU weights changed by training", bool(trainable) and not unchanged,
                        _with_names(f"{len(trainable) - len(unchanged)}/{len(trainable)} trainable AU tensors changed",
                                    ("unchanged", unchanged))))
    return rows


def au_features_row(batches: Sequence[Mapping[str, Any]]) -> Row:
    check = "AU features reached the model"
    if not batches:
        return Row(check, False, "no batch recorded")
    missing = sum(b.get("aus") is None for b in batches)
    zeros = sum(b.get("aus") is not None and not b.get("aus_nonzero") for b in batches)
    empty = sum(any(v == 0 for v in (b.get("valid_frames") or [])) for b in batches)
    shapes = sorted({str(b["aus"]) for b in batches if b.get("aus") is not None})
    ok = not missing and not zeros and not empty
    detail = f"aus {', '.join(shapes) or 'absent'} in {len(batches) - missing}/{len(batches)} batches"
    if zeros:
        detail += f"; {zeros} all-zero"
    if empty:
        detail += f"; {empty} with a sample without valid AU frames"
    return Row(check, ok, detail)


def checkpoint_row(ckpt_name: Optional[str], ckpt_equal: Optional[Mapping[str, Optional[bool]]],
                   frozen: Sequence[str] = ()) -> Row:
    """``ckpt_equal``: AU tensor name → True (saved, equal to the trained one), False (differs), None (absent).

    AffectGPT's runner saves trainable parameters only, so a tensor frozen by ``frozen_au_proj`` is absent by
    design: that is fine only because the branch rebuilds it from ``au_init_seed``, which the next row proves by
    comparing the tensors inference loaded with the trained ones."""
    check = "checkpoint holds the AU branch"
    if ckpt_name is None or ckpt_equal is None:
        return not_reached(check, "train.py saved no checkpoint")
    absent = [n for n, v in ckpt_equal.items() if v is None and n not in frozen]
    rebuilt = [n for n, v in ckpt_equal.items() if v is None and n in frozen]
    differ = [n for n, v in ckpt_equal.items() if v is False]
    ok = bool(ckpt_equal) and not absent and not differ
    saved = len(ckpt_equal) - len(absent) - len(rebuilt)
    return Row(check, ok, _with_names(f"{ckpt_name}: {saved}/{len(ckpt_equal)} AU tensors",
                                      ("frozen, not saved by the runner, rebuilt from au_init_seed", rebuilt),
                                      ("missing", absent), ("differ from training", differ)))


def inference_weights_row(loaded_equal: Optional[Mapping[str, bool]], error: Optional[str]) -> Row:
    check = "inference loaded the trained AU weights"
    if loaded_equal is None:
        return not_reached(check, error or "inference built no model")
    differ = [n for n, v in loaded_equal.items() if not v]
    equal = len(loaded_equal) - len(differ)
    return Row(check, bool(loaded_equal) and not differ,
               _with_names(f"{equal}/{len(loaded_equal)} AU tensors equal to the trained ones", ("different", differ)))


def splice_row(expected: int, train_splices: Sequence[Mapping[str, Any]],
               infer_splices: Sequence[Mapping[str, Any]]) -> Row:
    check = f"<AUHere> spliced as {expected} token{'s' * (expected != 1)}"
    problems = []
    for where, splices in (("training", train_splices), ("inference", infer_splices)):
        if not splices:
            problems.append(f"no {where} splice recorded")
            continue
        counts = [c for s in splices for c in s["counts"]]
        if any(c != expected for c in counts):
            problems.append(f"{where} prompts hold {sorted(set(counts))} <AUHere>")
        if not all(e for s in splices for e in s["exact"]):
            problems.append(f"{where} embeddings at <AUHere> differ from the AU branch output")
    n_train = sum(len(s["counts"]) for s in train_splices)
    n_infer = sum(len(s["counts"]) for s in infer_splices)
    detail = "; ".join(problems) if problems else \
        f"{n_train} training + {n_infer} inference prompts; the LLM input there is the AU branch output"
    return Row(check, not problems, detail)


#: What the LLM's input carried, per route (the row's name says it).
ANSWER_ROUTES = {"features": "AU features", "text": "text route", "both": "AU features and caption",
                 "nonverbal": "the fork's Nonverbal caption"}


def answer_row(infer: Mapping[str, Any], route: str = "features") -> Row:
    """The answer came out of ``Chat.answer_sample``: the LLM generated tokens from the input of ``route`` (a key
    of :data:`ANSWER_ROUTES`). Its text may be empty (random weights can stop at once on ``###`` or EOS, which
    the checkout strips)."""
    check = f"Chat answered ({ANSWER_ROUTES[route]})"
    if infer.get("error"):
        return Row(check, False, infer["error"])
    answer, generated = infer.get("answer"), int(infer.get("generated_tokens") or 0)
    ok = isinstance(answer, str) and generated > 0
    detail = f"{generated} tokens generated" + (f"; answer {answer[:40]!a}" if isinstance(answer, str) else
                                                "; no answer")
    return Row(check, ok, detail)

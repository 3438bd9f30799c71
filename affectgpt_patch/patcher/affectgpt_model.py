"""``my_affectgpt/models/affectgpt.py``: the model-side AU branch (upstream checkouts only).

The layers and ``encode_au_merge`` live in the installed ``my_affectgpt/models/au_branch.py``
(:mod:`affectgpt_patch.templates.au_branch`); this file only gets the hooks:

* ``AUBranchMixin`` first among ``AffectGPT``'s bases;
* ``from_config``: ``model.init_au_branch(**au_branch_settings(cfg))`` right after the model is built and before
  its checkpoints load (``num_au_query_token``, ``au_fusion_type``, ``frozen_au_proj`` default when absent);
* ``forward``: encode ``samples['aus']`` (+ ``au_masks``), zero the ``<AUHere>`` ids with the other patch
  tokens, and splice the AU tokens through the same hard-coded list as faces, frames and audio.
"""
from __future__ import annotations

import ast
from typing import Optional

from .edit import Edit, FilePatch, mixin_edits
from .source import (
    Change,
    Mismatch,
    Source,
    append_to_list,
    dotted,
    embed_statement,
    has_method,
    is_call_to,
    method,
    param_names,
    splice_list,
    walk_stmts,
    zeroes,
)

PATH = "my_affectgpt/models/affectgpt.py"
MODULE = "my_affectgpt.models.au_branch"
CLASS = "AffectGPT"
MIXIN = "AUBranchMixin"


def model_class(src: Source) -> ast.ClassDef:
    cls = src.module_class(CLASS, "the registered model with forward() and from_config()")
    for name in ("forward", "from_config"):
        method(cls, name)
    return cls


def has_model_au(src: Source) -> bool:
    cls = model_class(src)
    return has_method(cls, "encode_au_merge") or any(
        isinstance(n, ast.Attribute) and n.attr == "AU_PATCH_TOKEN_ID" for n in ast.walk(cls))


def _refuse_own_branch(cls: ast.ClassDef) -> None:
    if has_method(cls, "encode_au_merge"):
        raise Mismatch(f"{CLASS} already has an AU branch (encode_au_merge) of its own")


def _from_config(src: Source) -> Optional[Change]:
    func = method(model_class(src), "from_config")
    params = param_names(func)
    if len(params) < 2:
        raise Mismatch("expected from_config(cls, cfg)")
    cfg = params[1]
    built = None
    for stmt in walk_stmts(func.body):
        if isinstance(stmt, ast.Expr) and is_call_to(stmt.value, "init_au_branch"):
            return None
        if built is None and isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.Call) \
                and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == params[0]:
            built = stmt
    if built is None:
        raise Mismatch(f"expected from_config() to build the model with `model = {params[0]}(...)`")
    model = built.targets[0].id
    return src.insert_after(built, [f"{model}.init_au_branch(**au_branch_settings({cfg}))  # au-agent: AU keys "
                                    f"default when absent, before checkpoints load"])


def _forward_encode(src: Source) -> Optional[Change]:
    func = method(model_class(src), "forward")
    if zeroes(func, "self.AU_PATCH_TOKEN_ID"):
        return None
    samples = param_names(func)[1] if len(param_names(func)) > 1 else None
    if samples is None:
        raise Mismatch("expected forward(self, samples)")
    stmt, ids = embed_statement(func, f"{CLASS}.forward()")
    return src.insert_before(stmt, [
        f"au_llms = self.encode_au_merge({samples}['aus'], {samples}.get('au_masks'))[1] if 'aus' in {samples} "
        f"else None  # au-agent",
        f"{ids}[{ids} == self.AU_PATCH_TOKEN_ID] = 0  # au-agent"])


def _forward_splice(src: Source) -> Optional[Change]:
    lst = splice_list(method(model_class(src), "forward"), f"{CLASS}.forward()")
    if any(dotted(t.elts[0]) == "self.AU_PATCH_TOKEN_ID" for t in lst.elts):
        return None
    return append_to_list(src, lst, "(self.AU_PATCH_TOKEN_ID, self.num_au_query_token, au_llms)")


def patch(variant: str) -> FilePatch:
    return FilePatch(PATH, (
        *mixin_edits(MODULE, MIXIN, CLASS, model_class, also_import=("au_branch_settings",),
                     refuse=_refuse_own_branch),
        Edit("build the AU branch in from_config()", _from_config),
        Edit("encode AU features and zero <AUHere> ids in forward()", _forward_encode),
        Edit("splice AU tokens in forward()", _forward_splice),
    ))

"""``my_affectgpt/conversation/conversation_video.py``: ``Chat`` handles AU like the other modalities
(upstream checkouts only; the AU fork's ``Chat`` already does).

``AUChatMixin`` (installed in ``my_affectgpt/models/au_branch.py``) becomes ``Chat``'s first base and brings
``postprocess_au``, ``expand_au_tokens`` and ``num_au_query_token`` (read from the model); the file gets the
``<AUHere>`` expansion in ``replace_token_for_multimodal`` and the zeroing and splice entries in
``answer_sample``.
"""
from __future__ import annotations

import ast
from typing import Optional

from .affectgpt_model import MODULE
from .edit import Edit, FilePatch, mixin_edits
from .source import (
    Change,
    Mismatch,
    Source,
    append_to_list,
    calls_in,
    dotted,
    embed_statement,
    method,
    splice_list,
    zeroes,
)

PATH = "my_affectgpt/conversation/conversation_video.py"
CLASS = "Chat"
MIXIN = "AUChatMixin"


def _chat(src: Source) -> ast.ClassDef:
    return src.module_class(CLASS, "inference-time conversation with postprocess_* and answer_sample()")


def _replace_token(src: Source) -> Optional[Change]:
    func = method(_chat(src), "replace_token_for_multimodal")
    if calls_in(func.body, "expand_au_tokens"):
        return None
    last = func.body[-1]
    if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Name)):
        raise Mismatch("expected replace_token_for_multimodal() to end with `return prompt`")
    var = last.value.id
    return src.insert_before(last, [f"{var} = self.expand_au_tokens({var})  # au-agent"])


def _answer_zero(src: Source) -> Optional[Change]:
    func = method(_chat(src), "answer_sample")
    if zeroes(func, "self.au_token_id"):
        return None
    stmt, ids = embed_statement(func, f"{CLASS}.answer_sample()")
    return src.insert_before(stmt, [f"{ids}[{ids} == self.au_token_id] = 0  # au-agent"])


def _answer_splice(src: Source) -> Optional[Change]:
    lst = splice_list(method(_chat(src), "answer_sample"), f"{CLASS}.answer_sample()")
    if any(dotted(t.elts[0]) == "self.au_token_id" for t in lst.elts):
        return None
    embeds = lst.elts[-1].elts[2]
    if not (isinstance(embeds, ast.Subscript) and isinstance(embeds.value, ast.Name)):
        raise Mismatch("expected the splice list's embeds to be read from a dict, e.g. img_list['image']")
    return append_to_list(src, lst, f"(self.au_token_id, self.num_au_query_token, {embeds.value.id}.get('au'))")


def patch(variant: str) -> FilePatch:
    return FilePatch(PATH, (
        *mixin_edits(MODULE, MIXIN, CLASS, _chat),
        Edit("expand <AUHere> in Chat.replace_token_for_multimodal()", _replace_token),
        Edit("zero <AUHere> ids in Chat.answer_sample()", _answer_zero),
        Edit("splice AU tokens in Chat.answer_sample()", _answer_splice),
    ))

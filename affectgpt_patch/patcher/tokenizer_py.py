"""``my_affectgpt/models/tokenizer.py``: ``<AUHere>`` added as a special token.

``load_tokenizer_from_LLM`` is imported *by name* into ``base_dataset.py`` and ``affectgpt.py``, so patching
the module attribute at run time would not reach them; the source is edited instead. The LLM's embedding is
never resized: AffectGPT zeroes patch-token ids before embedding them and splices features in their place.
"""
from __future__ import annotations

import ast
from typing import Optional

from .edit import Edit, FilePatch
from .source import Change, Mismatch, Source, is_call_to, walk_stmts

PATH = "my_affectgpt/models/tokenizer.py"
FUNCTION = "load_tokenizer_from_LLM"


def _mentions(node: ast.AST, attr: str) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == attr for n in ast.walk(node))


def _add_token(src: Source) -> Optional[Change]:
    func = src.module_function(FUNCTION, "the tokenizer loader that adds AffectGPT's patch tokens")
    calls = [s for s in walk_stmts(func.body) if isinstance(s, ast.Expr) and is_call_to(s.value, "add_tokens")
             and isinstance(s.value.func, ast.Attribute)]
    if not calls:
        raise Mismatch(f"expected {FUNCTION}() to call tokenizer.add_tokens([config.DEFAULT_*_PATCH_TOKEN], "
                       f"special_tokens=True)")
    if any(_mentions(s, "DEFAULT_AU_PATCH_TOKEN") for s in calls):
        return None
    if not any(isinstance(n, ast.Import) and any(a.name == "config" and a.asname is None for a in n.names)
               for n in src.tree.body):
        raise Mismatch("expected `import config` at module level (the patch-token constants)")
    last = calls[-1]
    receiver = src.segment(last.value.func.value)
    return src.insert_after(last, [f"{receiver}.add_tokens([config.DEFAULT_AU_PATCH_TOKEN], special_tokens=True)"
                                   f"  # au-agent"])


def patch(variant: str) -> FilePatch:
    return FilePatch(PATH, (Edit("add <AUHere> to the tokenizer's special tokens", _add_token),))

"""``config.py``: the ``<AUHere>`` special-token constant beside AffectGPT's other patch tokens."""
from __future__ import annotations

import ast
import re
from typing import Optional

from ..mixin import AU_PATCH_TOKEN
from .edit import Edit, FilePatch
from .source import Change, Mismatch, Source

PATH = "config.py"
TOKEN_NAME = "DEFAULT_AU_PATCH_TOKEN"
_PATCH_TOKEN = re.compile(r"^DEFAULT_\w+_PATCH_TOKEN$")


def token_assignments(src: Source) -> "list[ast.Assign]":
    """Module-level ``DEFAULT_*_PATCH_TOKEN = '<…Here>'`` statements."""
    return [n for n in src.tree.body if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and _PATCH_TOKEN.match(n.targets[0].id)]


def defines_au_token(src: Source) -> bool:
    return any(a.targets[0].id == TOKEN_NAME for a in token_assignments(src))


def _add_token(src: Source) -> Optional[Change]:
    assigns = token_assignments(src)
    for a in assigns:
        if a.targets[0].id == TOKEN_NAME:
            if not (isinstance(a.value, ast.Constant) and a.value.value == AU_PATCH_TOKEN):
                raise Mismatch(f"{TOKEN_NAME} is {src.segment(a.value)}, expected {AU_PATCH_TOKEN!r}")
            return None
    if not assigns:
        raise Mismatch("expected the special-token constants (module-level DEFAULT_*_PATCH_TOKEN = '<…Here>')")
    return src.insert_after(assigns[-1], [f"{TOKEN_NAME} = {AU_PATCH_TOKEN!r}  # au-agent: the AU modality"])


def patch(variant: str) -> FilePatch:
    return FilePatch(PATH, (Edit(f"define {TOKEN_NAME} = {AU_PATCH_TOKEN!r}", _add_token),))

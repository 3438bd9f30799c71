"""The AU branch template, ``templates/au_branch.py``: the one home of the branch's constants (its
``<AUHere>`` token, config defaults and fusion types).

The template is installed byte for byte into upstream checkouts and imports torch, so its constants are read
from its source with :mod:`ast`: the patcher and the dataset mixin (which runs inside AffectGPT's data-loading
code) get them without importing torch.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def template_bytes(name: str) -> bytes:
    return (TEMPLATE_DIR / name).read_bytes()


@lru_cache(maxsize=1)
def branch_constants() -> Dict[str, Any]:
    """The AU branch's module constants (``DEFAULTS``, ``FUSION_TYPES``, ``AU_PATCH_TOKEN`` …), read from the
    template's source so that nothing here imports torch."""
    tree = ast.parse(template_bytes("au_branch.py").decode("utf-8"))
    constants: Dict[str, Any] = {}
    for node in tree.body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign):
            target = node.targets[0]
        else:
            continue
        if isinstance(target, ast.Name) and target.id.isupper() and node.value is not None:
            try:
                constants[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return constants

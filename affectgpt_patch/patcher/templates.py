"""The files the patcher installs from :mod:`affectgpt_patch.templates` (upstream checkouts only; the AU fork
has its own model-side AU code and its own ``my_affectgpt/models/au_agent.py``).

* ``my_affectgpt/models/au_branch.py`` — the model-side AU branch (``AUProjector``, ``AUBranchMixin``,
  ``AUChatMixin``), imported by the edited ``affectgpt.py`` and ``conversation_video.py``;
* ``my_affectgpt/models/au_agent.py`` — the seed guide's import path for ``create_au_agent``.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
INSTALLED = {  # checkout path (code-root relative) → template file
    "my_affectgpt/models/au_branch.py": "au_branch.py",
    "my_affectgpt/models/au_agent.py": "au_agent.py",
}


def template_bytes(name: str) -> bytes:
    return (TEMPLATE_DIR / name).read_bytes()


def installed_files(variant: str) -> Dict[str, bytes]:
    return {} if variant == "au-fork" else {path: template_bytes(name) for path, name in INSTALLED.items()}


@lru_cache(maxsize=1)
def branch_constants() -> Dict[str, Any]:
    """The AU branch's module constants (``DEFAULTS``, ``FUSION_TYPES``, ``AU_PATCH_TOKEN`` …), read from the
    template's source so the patcher never imports torch."""
    tree = ast.parse(template_bytes("au_branch.py").decode("utf-8"))
    constants: Dict[str, Any] = {}
    for node in tree.body:
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

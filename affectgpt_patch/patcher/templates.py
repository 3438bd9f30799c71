"""The files the patcher installs from :mod:`affectgpt_patch.templates` (upstream checkouts only; the AU fork
has its own model-side AU code and its own ``my_affectgpt/models/au_agent.py``).

* ``my_affectgpt/models/au_branch.py`` — the model-side AU branch (``AUProjector``, ``AUBranchMixin``,
  ``AUChatMixin``), imported by the edited ``affectgpt.py`` and ``conversation_video.py``;
* ``my_affectgpt/models/au_agent.py`` — the seed guide's import path for ``create_au_agent``.

The branch's constants are read from its template by :func:`affectgpt_patch.branch_template.branch_constants`.
"""
from __future__ import annotations

from typing import Dict

from ..branch_template import template_bytes

INSTALLED = {  # checkout path (code-root relative) → template file
    "my_affectgpt/models/au_branch.py": "au_branch.py",
    "my_affectgpt/models/au_agent.py": "au_agent.py",
}


def installed_files(variant: str) -> Dict[str, bytes]:
    return {path: template_bytes(name) for path, name in INSTALLED.items()} if variant == "upstream" else {}

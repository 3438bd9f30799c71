"""An edit: one change to one file, found through its syntax tree, that knows whether it is already there.

``Edit.plan(source)`` returns ``None`` when the change is already in the file (so applying twice changes
nothing), a :class:`~.source.Change` when it is still to be made, or raises :class:`~.source.Mismatch` naming
what it expected when the file does not have the structure the edit is anchored on.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from au_core.errors import AUAgentError

from .source import Change, Mismatch, Source, first_base_is, prepend_base

APPLIED, PENDING, CONFLICT = "applied", "pending", "conflict"


@dataclass(frozen=True)
class Edit:
    what: str  # shown by --check, e.g. "add <AUHere> to the tokenizer"
    plan: Callable[[Source], Optional[Change]]


@dataclass(frozen=True)
class FilePatch:
    path: str  # relative to the AffectGPT code root
    edits: Tuple[Edit, ...]


@dataclass(frozen=True)
class EditState:
    path: str
    what: str
    state: str  # APPLIED / PENDING / CONFLICT
    detail: str = ""


def mixin_edits(module: str, mixin: str, class_name: str, find_class: Callable[[Source], ast.ClassDef],
                also_import: Sequence[str] = (), refuse: Optional[Callable[[ast.ClassDef], None]] = None
                ) -> Tuple[Edit, Edit]:
    """The two edits that give a class of the checkout a mixin: import ``mixin`` (and ``also_import``) from
    ``module``, then put it first among the bases of ``class_name`` (found by ``find_class``), so its methods
    run before the checkout's. ``refuse`` raises :class:`~.source.Mismatch` for a class that must not get it."""

    def add_import(src: Source) -> Optional[Change]:
        return src.ensure_import(module, mixin, *also_import)

    def put_first(src: Source) -> Optional[Change]:
        cls = find_class(src)
        if first_base_is(cls, mixin):
            return None
        if refuse is not None:
            refuse(cls)
        return prepend_base(src, cls, mixin)

    return (Edit(f"import {mixin} from {module}", add_import),
            Edit(f"put {mixin} first among {class_name}'s bases", put_first))


def decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AUAgentError("not UTF-8 text: cannot patch it safely", path) from None


def apply_edits(text: str, patch: FilePatch) -> str:
    """The file's text with every pending edit made, in order; a mismatch stops everything."""
    for edit in patch.edits:
        try:
            change = edit.plan(Source(text, patch.path))
        except Mismatch as e:
            raise AUAgentError(f"cannot {edit.what}: {e}", patch.path) from None
        if change is not None:
            text = change.apply(text)
            try:
                Source(text, patch.path)
            except Mismatch as e:  # a bug in the edit, never the user's fault: refuse rather than write it
                raise AUAgentError(f"{edit.what}: the edited file would not parse ({e})", patch.path) from None
    return text


def edit_states(text: str, patch: FilePatch) -> List[EditState]:
    """What ``--check`` reports: each edit's state against the file as it is now."""
    states = []
    for edit in patch.edits:
        try:
            change = edit.plan(Source(text, patch.path))
            states.append(EditState(patch.path, edit.what, PENDING if change else APPLIED))
        except Mismatch as e:
            states.append(EditState(patch.path, edit.what, CONFLICT, str(e)))
    return states

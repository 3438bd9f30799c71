"""``au-agent patch-affectgpt``: add the AU modality to an existing AffectGPT checkout, check it, take it back.

    report = apply_patch("/path/to/AffectGPT")            # or dry_run=True for a diff
    report = check_patch("/path/to/AffectGPT")            # each edit: applied / pending / conflict
    restored = revert_patch("/path/to/AffectGPT")         # byte-identical originals

One module per AffectGPT file decides its edits (:mod:`.config_py`, :mod:`.tokenizer_py`, :mod:`.base_dataset`,
:mod:`.affectgpt_model`, :mod:`.conversation`, :mod:`.inference_scripts`); :mod:`.configs` and :mod:`.templates`
give the files it adds. Every new content is computed in memory before anything is written, so a checkout that
does not match (the refusal names the file and what was expected) is left untouched, and
:mod:`.transaction` makes the writes all-or-nothing; :mod:`.lock` lets one run at a time work on a checkout.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from au_core.errors import AUAgentError

from . import (
    affectgpt_model,
    base_dataset,
    builders,
    config_py,
    configs,
    conversation,
    inference_scripts,
    templates,
    tokenizer_py,
)
from .configs import ConfigOptions
from .detect import AU_FORK, NONVERBAL, Checkout, detect
from .edit import APPLIED, PENDING, EditState, FilePatch, apply_edits, decode, edit_states
from .lock import locked
from .source import Mismatch, Source
from .transaction import STATE_DIR, Manifest, commit, read_original, recover, revert, sha256

log = logging.getLogger(__name__)

__all__ = ["ConfigOptions", "PatchReport", "apply_patch", "check_patch", "revert_patch"]


def file_patches(variant: str) -> List[FilePatch]:
    """The edits for a variant, in the order they are applied and reported."""
    if variant == NONVERBAL:  # the fork's own Nonverbal code reads au-agent's captions: configs only
        return []
    patches = [config_py.patch(variant), tokenizer_py.patch(variant), base_dataset.patch(variant)]
    if variant != AU_FORK:  # the fork's model and Chat already handle AU
        patches += [affectgpt_model.patch(variant), conversation.patch(variant)]
    return patches + inference_scripts.patches(variant)


@dataclass
class PatchReport:
    checkout: Checkout
    states: List[EditState] = field(default_factory=list)
    added: Dict[str, str] = field(default_factory=dict)  # path → state of the files the patch adds
    changed: List[str] = field(default_factory=list)  # paths written by this run
    base_config: Optional[str] = None
    diff: str = ""

    @property
    def complete(self) -> bool:
        return all(s.state == APPLIED for s in self.states) and all(v == APPLIED for v in self.added.values())

    def format(self) -> str:
        lines = [self.checkout.describe()]
        if self.base_config:
            lines.append(f"configs built from {self.base_config}")
        width = max([len(s.path) for s in self.states] + [len(p) for p in self.added] + [10])
        for s in self.states:
            lines.append(f"  {s.state:<8} {s.path:<{width}}  {s.what}" + (f": {s.detail}" if s.detail else ""))
        for path, state in self.added.items():
            lines.append(f"  {state:<8} {path:<{width}}  (file added by the patch)")
        return "\n".join(lines)


# ---- reading the checkout


def _reader(root: Path, manifest: Optional[Manifest]):
    def read(code_root: Path, code_path: str) -> str:
        rel = (code_root / code_path).relative_to(root).as_posix()
        data = read_original(root, manifest, rel)
        if data is None:
            raise AUAgentError("missing: expected it in an AffectGPT checkout", code_root / code_path)
        return decode(data, rel)

    return read


def _open(path) -> Tuple[Checkout, Optional[Manifest]]:
    root = Path(path).absolute()
    manifest = Manifest.load(root) if root.is_dir() else None
    checkout = detect(root, _reader(root, manifest))
    if manifest is not None and manifest.variant and manifest.variant != checkout.variant:
        raise AUAgentError(f"the manifest says {manifest.variant}, the originals look like {checkout.variant}",
                           Manifest.path(root))
    return checkout, manifest


def _current_text(checkout: Checkout, code_path: str) -> str:
    path = checkout.code_root / code_path
    if not path.is_file():
        raise AUAgentError("missing: expected it in an AffectGPT checkout", path)
    return decode(path.read_bytes(), checkout.rel(code_path))


def _source(checkout: Checkout, code_path: str) -> Source:
    try:
        return Source(_current_text(checkout, code_path), code_path)
    except Mismatch as e:
        raise AUAgentError(str(e), checkout.code_root / code_path) from None


# ---- planning: every new content in memory


def _plan(checkout: Checkout, manifest: Optional[Manifest], options: ConfigOptions
          ) -> Tuple[List[Tuple[str, bytes, bool]], Optional[str]]:
    writes: List[Tuple[str, bytes, bool]] = []
    for patch in file_patches(checkout.variant):
        text = _current_text(checkout, patch.path)
        try:
            new = apply_edits(text, patch)
        except AUAgentError as e:  # name the file from the checkout root
            raise AUAgentError(e.problem, checkout.code_root / patch.path) from None
        writes.append((checkout.rel(patch.path), new.encode("utf-8"), False))

    originals = _reader(checkout.root, manifest)
    try:
        modes = base_dataset.known_modes(Source(originals(checkout.code_root, base_dataset.PATH), base_dataset.PATH))
    except Mismatch as e:
        raise AUAgentError(str(e), checkout.code_root / base_dataset.PATH) from None
    registered = builders.registered_builders(_source(checkout, builders.PATH))
    base, generated = configs.build_configs(checkout.code_root, checkout.variant, options, modes, registered)
    added = {**templates.installed_files(checkout.variant), **{p: t.encode("utf-8") for p, t in generated.items()}}
    for code_path, data in added.items():
        rel = checkout.rel(code_path)
        path = checkout.root / rel
        ours = manifest is not None and rel in manifest.files
        if path.exists() and not ours and path.read_bytes() != data:
            raise AUAgentError("exists and was not written by au-agent; move it away to let the patch add its own",
                               path)
        if ours and path.is_file() and sha256(path.read_bytes()) != manifest.files[rel].get("patched_sha256"):
            log.warning("%s: kept as you edited it (the patch would write it differently)", path)
            continue
        writes.append((rel, data, True))
    return writes, str(base.relative_to(checkout.root)) if base.is_relative_to(checkout.root) else str(base)


def _added_states(checkout: Checkout, manifest: Optional[Manifest]) -> Dict[str, str]:
    paths = list(templates.installed_files(checkout.variant)) + list(configs.generated_paths(checkout.variant))
    return {checkout.rel(p): APPLIED if (checkout.code_root / p).is_file() else PENDING for p in paths}


def _states(checkout: Checkout) -> List[EditState]:
    states = []
    for patch in file_patches(checkout.variant):
        for s in edit_states(_current_text(checkout, patch.path), patch):
            states.append(EditState(checkout.rel(s.path), s.what, s.state, s.detail))
    return states


def _diff(checkout: Checkout, writes: List[Tuple[str, bytes, bool]]) -> str:
    out: List[str] = []
    for rel, data, _ in writes:
        path = checkout.root / rel
        before = path.read_bytes().decode("utf-8") if path.is_file() else ""
        after = data.decode("utf-8")
        if before != after:
            out += difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


# ---- the three commands


@locked
def apply_patch(path, options: Optional[ConfigOptions] = None, dry_run: bool = False) -> PatchReport:
    """Patch the checkout (idempotent); with ``dry_run`` only report and diff. An interrupted patch or revert
    is finished first."""
    if not dry_run and Path(path).is_dir():
        recover(Path(path).absolute())
    checkout, manifest = _open(path)
    writes, base = _plan(checkout, manifest, options or ConfigOptions())
    report = PatchReport(checkout, base_config=base)
    if dry_run:
        report.diff = _diff(checkout, writes)
        report.states = _states(checkout)
        report.added = _added_states(checkout, manifest)
        return report
    manifest = manifest or Manifest()
    manifest.variant = checkout.variant
    manifest.code_root = checkout.code_root.relative_to(checkout.root).as_posix()
    report.changed = commit(checkout.root, writes, manifest)
    report.states = _states(checkout)
    report.added = _added_states(checkout, manifest)
    return report


@locked
def check_patch(path) -> PatchReport:
    checkout, manifest = _open(path)
    report = PatchReport(checkout, states=_states(checkout), added=_added_states(checkout, manifest))
    return report


@locked
def revert_patch(path) -> List[str]:
    root = Path(path).absolute()
    restored = revert(root)
    log.info("%s: restored %d files and removed %s/", root, len(restored), STATE_DIR)
    return restored

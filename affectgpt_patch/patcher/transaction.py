"""Writing a patch all-or-nothing, and taking it back byte for byte.

State lives in ``<checkout>/.au_agent_patch/``: ``originals/<path>`` holds every edited file as it was before
the first patch, and ``manifest.json`` records, per path, whether the patcher created it and the sha256 of
the original and patched bytes. New contents are computed in memory first (see :mod:`affectgpt_patch.patcher`);
:func:`commit` then backs up, writes, and on any error puts back every file it touched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from data_prep import atomic
from data_prep.errors import AUAgentError

log = logging.getLogger(__name__)

STATE_DIR = ".au_agent_patch"
MANIFEST = "manifest.json"
ORIGINALS = "originals"
FORMAT = 1


def sha256(data: Optional[bytes]) -> Optional[str]:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _write(path: Path, data: bytes) -> None:
    """Every write of this module goes through here (one place to fail in tests)."""
    atomic.write_bytes(path, data)


@dataclass
class Manifest:
    variant: str = ""
    code_root: str = ""
    files: Dict[str, Dict[str, object]] = field(default_factory=dict)  # path → created, original/patched sha256

    @staticmethod
    def path(root: Path) -> Path:
        return root / STATE_DIR / MANIFEST

    @classmethod
    def load(cls, root: Path) -> Optional["Manifest"]:
        path = cls.path(root)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise AUAgentError(f"unreadable patch manifest ({e})", path) from None
        if data.get("format") != FORMAT:
            raise AUAgentError(f"patch manifest format {data.get('format')!r}, expected {FORMAT}", path)
        return cls(data.get("variant", ""), data.get("code_root", ""), dict(data.get("files", {})))

    def to_bytes(self) -> bytes:
        return atomic.dumps_json({"format": FORMAT, "tool": "au-agent patch-affectgpt", "variant": self.variant,
                                  "code_root": self.code_root, "files": self.files}).encode("utf-8")


def original_path(root: Path, rel: str) -> Path:
    return root / STATE_DIR / ORIGINALS / rel


def read_original(root: Path, manifest: Optional[Manifest], rel: str) -> Optional[bytes]:
    """A file as it was before the first patch (its backup), or as it is now if it was never patched."""
    if manifest is not None and rel in manifest.files:
        entry = manifest.files[rel]
        if entry.get("created"):
            return None
        return original_path(root, rel).read_bytes()
    path = root / rel
    return path.read_bytes() if path.is_file() else None


def commit(root: Path, writes: List[Tuple[str, bytes, bool]], manifest: Manifest) -> List[str]:
    """Write ``(path, new bytes, created)`` items; returns the paths actually changed.

    Originals are backed up before a file is first changed; the manifest is written last. On any error every
    touched file (backups and manifest included) is restored and the error re-raised.
    """
    state_dir = root / STATE_DIR
    new_state_dir = not state_dir.exists()
    manifest_path = Manifest.path(root)
    old_manifest = manifest_path.read_bytes() if manifest_path.is_file() else None
    undo: List[Tuple[Path, Optional[bytes]]] = []  # (path, bytes before) in write order
    changed: List[str] = []
    try:
        for rel, data, created in writes:
            path = root / rel
            before = path.read_bytes() if path.is_file() else None
            if before == data:
                continue
            if rel not in manifest.files:
                if created:
                    manifest.files[rel] = {"created": True}
                else:
                    backup = original_path(root, rel)
                    undo.append((backup, None))
                    _write(backup, before)
                    manifest.files[rel] = {"created": False, "original_sha256": sha256(before)}
            undo.append((path, before))
            _write(path, data)
            manifest.files[rel]["patched_sha256"] = sha256(data)
            changed.append(rel)
        if changed:
            undo.append((manifest_path, old_manifest))
            _write(manifest_path, manifest.to_bytes())
    except BaseException:
        _undo(undo)
        if new_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return changed


def _undo(undo: List[Tuple[Path, Optional[bytes]]]) -> None:
    for path, before in reversed(undo):
        try:
            if before is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                atomic.write_bytes(path, before)
        except OSError as e:  # keep restoring the others; say what could not be put back
            log.error("could not restore %s: %s", path, e)


def revert(root: Path) -> List[str]:
    """Put every file back as it was before the first patch and remove the state folder."""
    manifest = Manifest.load(root)
    if manifest is None:
        raise AUAgentError(f"not patched by au-agent (no {STATE_DIR}/{MANIFEST}); nothing to revert", root)
    changed_since = []
    for rel, entry in manifest.files.items():
        path = root / rel
        current = path.read_bytes() if path.is_file() else None
        if current is None and entry.get("created"):
            continue  # already removed
        if sha256(current) != entry.get("patched_sha256"):
            changed_since.append(rel)
    if changed_since:
        raise AUAgentError(f"changed since it was patched: {', '.join(changed_since)}. Undo those changes (the "
                           f"originals are in {STATE_DIR}/{ORIGINALS}/) and revert again", root)
    undo: List[Tuple[Path, Optional[bytes]]] = []
    restored: List[str] = []
    try:
        for rel, entry in manifest.files.items():
            path = root / rel
            current = path.read_bytes() if path.is_file() else None
            undo.append((path, current))
            if entry.get("created"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                original = original_path(root, rel).read_bytes()
                if sha256(original) != entry.get("original_sha256"):
                    raise AUAgentError("backup does not match its recorded sha256", original_path(root, rel))
                _write(path, original)
            restored.append(rel)
    except BaseException:
        _undo(undo)
        raise
    shutil.rmtree(root / STATE_DIR)
    return restored

"""Writing a patch all-or-nothing, and taking it back byte for byte, even across a crash.

State lives in ``<checkout>/.au_agent_patch/``: ``originals/<path>`` holds every edited file as it was before
the first patch, and ``manifest.json`` records, per path, whether the patcher created it, the sha256 of the
original and patched bytes and the original file mode. New contents are computed in memory first (see
:mod:`affectgpt_patch.patcher`).

Every change of the checkout is journaled first: the new bytes go to ``pending/<path>`` (a revert reads
``originals/``), then ``journal.json`` names each file's bytes before and after; only then are files written.
Whatever instant a process dies at, the next ``patch-affectgpt`` or ``--revert`` finds the journal and rolls
the interrupted change forward (:func:`recover`) before doing its own work. An error inside a live process
instead puts back every file it touched, drops the journal and removes only the state it made itself (the
whole state folder only when it created it). Runs hold the checkout's lock (:mod:`.lock`) around all of this,
so no run finishes, or rolls back, a change that another live run is making.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from au_core import atomic
from au_core.errors import AUAgentError

log = logging.getLogger(__name__)

STATE_DIR = ".au_agent_patch"
MANIFEST = "manifest.json"
ORIGINALS = "originals"
PENDING = "pending"
JOURNAL = "journal.json"
REMOVED = ".au_agent_patch.removed"  # the state folder between a finished revert and its deletion
FORMAT = 1


def sha256(data: Optional[bytes]) -> Optional[str]:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _write(path: Path, data: bytes, mode: Optional[int] = None) -> None:
    """Every write of this module goes through here (one place to fail in tests); a replaced file keeps its
    mode, a restored one gets ``mode``."""
    atomic.write_bytes(path, data, mode)


def _read(path: Path) -> Optional[bytes]:
    return path.read_bytes() if path.is_file() else None


def _mode(path: Path) -> Optional[int]:
    return stat.S_IMODE(path.stat().st_mode) if path.is_file() else None


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

    Originals are backed up and the new bytes staged before the journal is written; the journal before any
    file of the checkout; the manifest after the files. On an error every touched file is restored.
    """
    state_dir = root / STATE_DIR
    new_state_dir = not state_dir.exists()  # a rollback removes only what this run made
    targets: Dict[str, Dict[str, object]] = {}
    undo: List[Tuple[Path, Optional[bytes]]] = []  # checkout files written, with their bytes before
    backups: List[Path] = []  # originals saved by this run
    try:
        for rel, data, created in writes:
            before = _read(root / rel)
            if before == data:
                continue
            if rel not in manifest.files:
                if created:
                    manifest.files[rel] = {"created": True}
                else:
                    backups.append(original_path(root, rel))
                    _write(backups[-1], before)
                    manifest.files[rel] = {"created": False, "original_sha256": sha256(before),
                                           "original_mode": _mode(root / rel)}
            manifest.files[rel]["patched_sha256"] = sha256(data)
            _write(state_dir / PENDING / rel, data)
            targets[rel] = {"before": sha256(before), "after": sha256(data), "source": f"{PENDING}/{rel}"}
        if not targets:
            return []
        journal = {"format": FORMAT, "op": "patch", "files": targets, "manifest": json.loads(manifest.to_bytes())}
        _write(state_dir / JOURNAL, atomic.dumps_json(journal).encode("utf-8"))
        for rel in targets:
            path = root / rel
            undo.append((path, _read(path)))
            _write(path, _read(state_dir / PENDING / rel))
        _finish(root, journal)
    except BaseException:
        _undo(undo)
        if new_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            _drop_journal(state_dir)
            for backup in backups:
                backup.unlink(missing_ok=True)
        raise
    return list(targets)


def _finish(root: Path, journal: Dict[str, object]) -> None:
    """The last steps of a journaled change, once every file holds its new bytes."""
    state_dir = root / STATE_DIR
    if journal["op"] == "patch":
        _write(Manifest.path(root), atomic.dumps_json(journal["manifest"]).encode("utf-8"))
        _drop_journal(state_dir)
    else:  # revert: the state folder goes, in one rename, then its removal
        removed = root / REMOVED
        os.replace(state_dir, removed)
        atomic.fault_point("rename state folder")
        shutil.rmtree(removed)


def _drop_journal(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / JOURNAL).unlink()
    atomic.fault_point("unlink journal")
    shutil.rmtree(state_dir / PENDING, ignore_errors=True)


def recover(root: Path, quiet: bool = False) -> bool:
    """Roll an interrupted patch or revert forward (see module docstring); True when there was one."""
    root = Path(root)
    found = False
    if (root / REMOVED).exists():
        shutil.rmtree(root / REMOVED)
        found = True
    state_dir = root / STATE_DIR
    for folder, _, _ in os.walk(state_dir):
        atomic.remove_stale_temps(folder)  # backups, staged bytes or a manifest a killed process was writing
    journal_path = state_dir / JOURNAL
    if not journal_path.is_file():
        if state_dir.is_dir() and not Manifest.path(root).is_file():
            shutil.rmtree(state_dir)  # killed before its journal: nothing in the checkout was touched
            return True
        if state_dir.is_dir():
            shutil.rmtree(state_dir / PENDING, ignore_errors=True)
        return found
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
        files = journal["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AUAgentError(f"unreadable patch journal ({e}); the originals are in {STATE_DIR}/{ORIGINALS}/",
                           journal_path) from None
    for folder in sorted({(root / rel).parent for rel in files}):
        atomic.remove_stale_temps(folder)  # what the killed process was writing
    modes = {rel: e.get("original_mode") for rel, e in (journal.get("manifest") or {}).get("files", {}).items()}
    for rel, entry in files.items():
        path = root / rel
        current = sha256(_read(path))
        if current == entry["after"]:
            continue
        if current != entry["before"]:
            raise AUAgentError(f"an interrupted {journal['op']} cannot finish: changed since ({rel}); restore it "
                               f"from {STATE_DIR}/{ORIGINALS}/ and run again", path)
        if entry["after"] is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            atomic.fault_point(f"unlink {rel}")
            continue
        data = (state_dir / entry["source"]).read_bytes()
        if sha256(data) != entry["after"]:
            raise AUAgentError("does not match the patch journal", state_dir / entry["source"])
        _write(path, data, modes.get(rel) if entry.get("restore_mode") else None)
    _finish(root, journal)
    if not quiet:
        log.warning("%s: finished an interrupted %s", root, journal["op"])
    return True


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
    recovered = recover(root)
    manifest = Manifest.load(root)
    if manifest is None:
        if recovered:
            return []
        raise AUAgentError(f"not patched by au-agent (no {STATE_DIR}/{MANIFEST}); nothing to revert", root)
    changed_since = []
    for rel, entry in manifest.files.items():
        current = _read(root / rel)
        if current is None and entry.get("created"):
            continue  # already removed
        if sha256(current) != entry.get("patched_sha256"):
            changed_since.append(rel)
    if changed_since:
        raise AUAgentError(f"changed since it was patched: {', '.join(changed_since)}. Undo those changes (the "
                           f"originals are in {STATE_DIR}/{ORIGINALS}/) and revert again", root)
    targets: Dict[str, Dict[str, object]] = {}
    for rel, entry in manifest.files.items():
        if entry.get("created"):
            targets[rel] = {"before": sha256(_read(root / rel)), "after": None}
            continue
        backup = original_path(root, rel)
        if sha256(_read(backup)) != entry.get("original_sha256"):
            raise AUAgentError("backup does not match its recorded sha256", backup)
        targets[rel] = {"before": entry.get("patched_sha256"), "after": entry.get("original_sha256"),
                        "source": f"{ORIGINALS}/{rel}", "restore_mode": True}
    journal = {"format": FORMAT, "op": "revert", "files": targets,
               "manifest": json.loads(manifest.to_bytes())}
    _write(root / STATE_DIR / JOURNAL, atomic.dumps_json(journal).encode("utf-8"))
    recover(root, quiet=True)
    return list(targets)

"""Temporary names that say who made them, and the removal of what killed runs left behind. Every temporary file
or staging folder of :mod:`.atomic` is named ``.{target}.{host}-{pid}-….tmp`` (or ``.partial``), so a later run
can tell a dead run's leftovers from a live one's: this host's are removed once their process is gone (or a
zombie), another host's (a shared file system) only when a day old, since that process cannot be asked.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]

#: Temporary names carry a host tag and the pid, so a run can tell a dead run's leftovers from a live one's.
_HOST = hashlib.sha1(os.uname().nodename.encode("utf-8")).hexdigest()[:8]  # the host name (POSIX)
_TEMP_RE = re.compile(r"^\..*\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]*\.(tmp|partial)$")
_STALE_OTHER_HOST_S = 24 * 3600  # another host's temporary file is only removed when this old


def remove_stale_temps(folder: PathLike) -> int:
    """Remove the temporary files and staging folders that killed runs left in ``folder``; return how many.

    A leftover of this host is removed when its process is gone; one of another host (a shared file system)
    only when it is a day old, since that process cannot be asked.
    """
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m is None:
            continue
        if m["host"] == _HOST:
            if _alive(int(m["pid"])):
                continue
        else:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.lstat().st_mtime < _STALE_OTHER_HOST_S:
                    continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but not been waited for by its parent (Linux state Z): it writes nothing more,
    and its locks are already released, so what it left is stale."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False

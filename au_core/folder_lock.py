"""An exclusive lock on a folder between processes, for steps that must not interleave.

It is a ``flock`` on the folder itself: nothing is written for it, and the kernel releases it when its process
ends, killed or not, so it never goes stale. Like SQLite's locks, ``flock`` is only reliable on a local file
system. Where the platform has no ``flock`` the block runs unlocked.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from au_core.errors import AUAgentError

log = logging.getLogger(__name__)

_POLL_S = 0.05


@contextlib.contextmanager
def folder_lock(folder: Path, wait_s: Optional[float] = None, busy: Optional[Callable[[], str]] = None
                ) -> Iterator[None]:
    """Hold ``folder``'s lock for the block. ``wait_s`` None waits as long as it takes; otherwise the wait is
    said once (``busy()``, a warning) and ends after ``wait_s`` seconds with an :class:`AUAgentError`."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if wait_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _wait(fd, folder, wait_s, busy or (lambda: "locked by another process"))
        yield
    finally:
        os.close(fd)  # releases the lock


def _wait(fd: int, folder: Path, wait_s: float, busy: Callable[[], str]) -> None:
    import fcntl

    deadline = time.monotonic() + wait_s
    for attempt in itertools.count():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AUAgentError(f"{busy()} for {wait_s:g} s; run again once it has finished", folder) from None
            if attempt == 0:
                log.warning("%s: %s; waiting up to %g s", folder, busy(), wait_s)
        time.sleep(_POLL_S)

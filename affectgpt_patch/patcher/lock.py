"""One ``patch-affectgpt`` at a time per checkout: patch, ``--check``, ``--revert`` and ``--dry-run`` alike.

The lock is an exclusive ``flock`` on the checkout folder itself (:mod:`au_core.folder_lock`): nothing
is written into the checkout for it and it never goes stale. A second run waits for it up to :data:`WAIT_S`
seconds (a patch takes about a second), saying so once, and refuses in one line naming the lock after that.
Once it holds the lock it finds the checkout as the first run left it: patched (nothing to do), reverted
(nothing to revert), or interrupted by a kill (finished first, see :func:`.transaction.recover`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, TypeVar

from au_core.folder_lock import folder_lock

WAIT_S = 60.0  # how long a second run waits for the first before it refuses
F = TypeVar("F", bound=Callable)


def _busy() -> str:
    return "locked by another au-agent patch-affectgpt (an flock on this folder)"


def locked(fn: F) -> F:
    """Run ``fn(path, ...)`` holding the lock of the checkout at ``path`` (a path that is not a folder is left
    to ``fn``'s own checks)."""
    @functools.wraps(fn)
    def run(path, *args, **kwargs):
        root = Path(path).absolute()
        if not root.is_dir():
            return fn(path, *args, **kwargs)
        with folder_lock(root, WAIT_S, _busy):
            return fn(path, *args, **kwargs)
    return run  # type: ignore[return-value]

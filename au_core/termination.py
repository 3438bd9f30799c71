"""SIGTERM, as Slurm and other schedulers send it on a timeout or a cancel, handled like Ctrl-C.

:func:`sigterm_as_interrupt` makes SIGTERM raise :class:`Terminated`, a ``KeyboardInterrupt``, in the main
thread, so every cleanup that runs on Ctrl-C runs on SIGTERM too: temporary files and staging folders are
removed (``au_core.atomic``), child processes are stopped, Ray is shut down. A second SIGTERM during that cleanup
is ignored (the scheduler's SIGKILL follows anyway). The CLI turns it into one line and exit status 143
(128 + 15, what a shell reports for a process ended by SIGTERM).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup below runs once
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler comes back afterwards (the CLI
    also runs inside test processes). Outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

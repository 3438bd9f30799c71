"""What this process has built and said once: the models (AU Agent, CLIP) and the warnings it has given.

A model is built once per process and configuration, and keyed by the process id too: a DataLoader worker
forked after the parent loaded a CUDA model builds its own (CUDA does not survive a fork) instead of reusing the
parent's. Warnings are remembered per kind, so that a corpus with many samples missing logs one warning, and
further cases at debug level.

Tests start from what a new process would have with :func:`reset` (e.g. in a fixture); nothing else touches the
memo's contents. Imports nothing heavy: the dataset mixin reaches it inside AffectGPT's data-loading code.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Dict, Hashable, Set, Tuple, TypeVar

T = TypeVar("T")

# Reentrant: a model's builder may itself ask the memo for another model (CLIP's width loads the encoder).
_LOCK = threading.RLock()
_BUILT: Dict[Tuple[Hashable, ...], Any] = {}
_WARNED: Set[str] = set()


def once(key: Tuple[Hashable, ...], build: Callable[[], T]) -> T:
    """What ``build()`` returned the first time this process asked for ``key``; built under the memo's lock."""
    full = (os.getpid(), *key)
    with _LOCK:
        if full not in _BUILT:
            _BUILT[full] = build()
        return _BUILT[full]


def warn_once(log: logging.Logger, kind: str, message: str) -> None:
    """``message`` as a warning the first time this process meets ``kind``, at debug level after that."""
    with _LOCK:
        first = kind not in _WARNED
        _WARNED.add(kind)
    if first:
        log.warning("%s (further cases are logged at debug level)", message)
    else:
        log.debug(message)


def reset() -> None:
    """Forget every model built and every warning given: the memo of a new process (for tests)."""
    with _LOCK:
        _BUILT.clear()
        _WARNED.clear()

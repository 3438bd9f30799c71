"""The one exception type of the project.

Every error a user can cause (a missing file, a malformed CSV, an adapter that does not match its base model)
is raised as :class:`AUAgentError` with a message that names the file and the problem, so the CLI can print it
as one line and exit non-zero.
"""
from __future__ import annotations

import os
from typing import Optional, Union


class AUAgentError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, problem: str, path: Optional[Union[str, os.PathLike]] = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class StorageError(AUAgentError):
    """The output's file system cannot take it (full, over quota, read-only, not writable): a run stops at once,
    since every later write would fail the same way."""

"""A file system that cannot take the output (full, over quota, read-only, not writable) as one error that
names the output the user chose, never a temporary file or staging folder inside it.

Every later write would fail the same way, so the commands stop at once on a :class:`StorageError` instead of
recording a failure per video and going on with model work.
"""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator, Sequence, Union

from .errors import StorageError

PathLike = Union[str, os.PathLike]

#: What a file system that cannot take the output says (errno → a phrase for the error line).
NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def _under(path: PathLike, roots: Sequence[PathLike]) -> bool:
    target = os.path.abspath(os.fsdecode(path))
    for root in roots:
        root = os.path.abspath(os.fspath(root))
        if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


@contextlib.contextmanager
def output_errors(user_path: PathLike, inside: Sequence[PathLike] = ()) -> Iterator[None]:
    """Turn a full / read-only / unwritable file system error into a :class:`StorageError` naming ``user_path``.

    A :class:`StorageError` about a file under ``inside`` (a temporary file, a staging folder) is renamed to
    ``user_path`` too. A permission error is the output's only when it names no file or a file under
    ``user_path`` or ``inside``: an unreadable input stays what it is.
    """
    roots = [user_path, *inside]
    try:
        yield
    except StorageError as e:
        if e.path is None or not _under(e.path, roots) or e.path == os.fspath(user_path):
            raise
        raise StorageError(e.problem, user_path) from None
    except OSError as e:
        if e.errno not in NO_ROOM or (e.errno == errno.EACCES and e.filename is not None
                                      and not _under(e.filename, roots)):
            raise
        raise StorageError(f"cannot write the output: {NO_ROOM[e.errno]}; the run stopped here (free space or "
                           f"choose another output, then rerun)", user_path) from None

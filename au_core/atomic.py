"""Atomic file and directory writes: a crash never leaves a half-written output behind.

Every file goes through a temporary file in its own folder (named after the host and process that made it, so a
later run can remove what a killed run left: :mod:`.stale_temps`), is fsynced, renamed over its target, and the
folder is fsynced.
A folder is built in a staging folder beside it and swapped in with one ``renameat2(RENAME_EXCHANGE)`` on Linux
(or two renames that the next run completes or rolls back), so the output path holds the old or the new folder
at every instant. New files follow the umask; a replaced file keeps its mode.

``AU_AGENT_FAULT_AT=N`` (tests only) kills the process with SIGKILL at the N-th write or rename point (with
``AU_AGENT_FAULT_PAUSE=1`` it waits there instead, for a test to signal it), and ``AU_AGENT_FAULT_LOG=FILE``
appends the name of every point reached; unset, each point costs one comparison.

A full, over-quota or read-only file system (or an unwritable output) raises :class:`StorageError` naming the
output the user chose, never a temporary name: every later write would fail the same way, so runs stop at once.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from .errors import AUAgentError
from .stale_temps import _HOST, _TEMP_RE, remove_stale_temps
from .storage import output_errors

PathLike = Union[str, os.PathLike]

# ------------------------------------------------------------------------------------------ fault points

FAULT_AT_ENV = "AU_AGENT_FAULT_AT"
FAULT_LOG_ENV = "AU_AGENT_FAULT_LOG"
FAULT_PAUSE_ENV = "AU_AGENT_FAULT_PAUSE"
_FAULT_AT = int(os.environ.get(FAULT_AT_ENV) or 0)
_FAULT_PAUSE = os.environ.get(FAULT_PAUSE_ENV) == "1"
_FAULT_LOG = os.environ.get(FAULT_LOG_ENV) or None
_fault_count = 0


def fault_point(what: str) -> None:
    """A place where a crash must be survivable; the fault tests kill the process here (see module docstring)."""
    if not (_FAULT_AT or _FAULT_LOG):
        return
    global _fault_count
    _fault_count += 1
    if _FAULT_LOG:
        with open(_FAULT_LOG, "a", encoding="utf-8") as f:
            f.write(f"{_fault_count} {what}\n")
    if _fault_count == _FAULT_AT:
        if _FAULT_PAUSE:
            time.sleep(120)
            return
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ files

_NAME_KEEP = 60  # characters of the target name kept in a temporary name (a long name must still fit)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_prefix(name: str) -> str:
    return f".{name[:_NAME_KEEP]}.{_HOST}-{os.getpid()}-"


def _fsync_dir(path: PathLike) -> None:
    """Make a rename or creation inside ``path`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mkdirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise AUAgentError("a parent of the output is a file, not a folder", path) from None


def write_bytes(path: PathLike, data: bytes, mode: Optional[int] = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    A symlink is written through (its target is replaced, the link stays); a device or pipe (``/dev/stdout``)
    is written to directly. ``mode`` defaults to the replaced file's mode, else what the umask gives a new file.
    """
    path = Path(path)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        st = path.stat()  # through symlinks, /dev/stdout and /proc/self/fd/N included
        if stat.S_ISDIR(st.st_mode):
            raise AUAgentError("is a folder; expected a file path", path)
        fd = _fd_alias(path)
        if fd is not None:  # /dev/stdout, /dev/fd/N: written through the process's own descriptor
            _write_fd(fd, data)
            return
        if not stat.S_ISREG(st.st_mode):  # a device, pipe or socket: written in place, nothing is replaced
            with open(path, "wb") as f:
                f.write(data)
            return
        if mode is None:
            mode = stat.S_IMODE(st.st_mode)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if mode is None:
        mode = 0o666 & ~current_umask()
    with output_errors(path, [path.parent]):
        _mkdirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            fault_point(f"write {path}")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    fault_point(f"rename {path}")
    _fsync_dir(path.parent)


_FD_ALIAS_RE = re.compile(r"/dev/(?:fd|std(?:in|out|err))(?:/(\d+))?|/proc/self/fd/(\d+)")
_STD_FDS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _fd_alias(path: Path) -> Optional[int]:
    text = os.fspath(path.absolute())
    if text in _STD_FDS:
        return _STD_FDS[text]
    m = _FD_ALIAS_RE.fullmatch(text)
    return int(m.group(1) or m.group(2)) if m and (m.group(1) or m.group(2)) else None


def _write_fd(fd: int, data: bytes) -> None:
    """Write to an open descriptor after what Python has buffered for it (stdout and stderr keep their order)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream.fileno() == fd:
                stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of all the bytes of a file, read in 1 MiB blocks (multi-GB weights fit in no memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_text_if_changed(path: PathLike, text: str) -> bool:
    """:func:`write_text` unless ``path`` already holds exactly ``text``: a rerun with nothing new replaces and
    syncs nothing (an fsync can cost more than the whole rerun). True when it wrote."""
    data = text.encode("utf-8")
    with contextlib.suppress(OSError):
        if Path(path).read_bytes() == data:
            return False
    write_text(path, text)
    return True


def dumps_json(obj: Any, indent: Union[int, None] = 2) -> str:
    """The project's canonical JSON text: stable key order as given, UTF-8, trailing newline."""
    return json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"


def write_json(path: PathLike, obj: Any, indent: Union[int, None] = 2) -> None:
    write_text(path, dumps_json(obj, indent))


# ---------------------------------------------------------------------------------------------- folders

#: Written into every output folder: a later run replaces or resumes only a folder that it finds here.
MARKER = ".au_agent_output.json"
_OLD_SUFFIX = ".au_agent_old"  # the previous folder during a two-rename swap (where RENAME_EXCHANGE is missing)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
EXCHANGE_ENV = "AU_AGENT_RENAME_EXCHANGE"  # "0" forces the two-rename swap (tests of its recovery)
_exchange_supported = os.environ.get(EXCHANGE_ENV, "1") != "0"  # cleared when the system refuses RENAME_EXCHANGE


def output_marker(folder: PathLike) -> Optional[str]:
    """The command that wrote ``folder`` (from its marker file), or None."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) else None


def _marker_bytes(command: str) -> bytes:
    return dumps_json({"command": command, "tool": "au-agent"}).encode("utf-8")


def _resolve_out(out_dir: PathLike) -> Path:
    """Absolute path of an output folder, through a symlink; refuse what is not (or cannot be) a folder."""
    out_dir = Path(os.path.realpath(Path(out_dir).absolute()))
    if out_dir.exists() and not out_dir.is_dir():
        raise AUAgentError("exists and is not a folder; choose a folder path for --out", out_dir)
    return out_dir


def _check_ownership(out_dir: Path, command: str, legacy: Sequence[str] = ()) -> None:
    """Refuse a non-empty folder that is not an earlier output of ``command`` (``legacy``: the files that
    together mark this command's output written before the marker existed)."""
    if not out_dir.is_dir():
        return
    try:
        entries = [e for e in os.listdir(out_dir) if not _TEMP_RE.match(e)]
    except OSError as e:
        raise AUAgentError(f"cannot list the output folder ({e.strerror})", out_dir) from None
    if not entries:
        return
    owner = output_marker(out_dir)
    if owner == command or (owner is None and legacy and set(legacy) <= set(entries)):
        return
    what = f"an output of au-agent {owner}" if owner else "not an output of au-agent " + command
    raise AUAgentError(f"not empty and {what}; choose a new or empty folder (nothing was changed)", out_dir)


def check_output_dir(out_dir: PathLike, command: str, legacy: Sequence[str] = ()) -> Path:
    """Refuse, before any work, an output folder that ``command`` must not write into (see
    :func:`staged_dir`); returns the resolved path."""
    out_dir = _resolve_out(out_dir)
    _check_ownership(out_dir, command, legacy)
    return out_dir


def check_output_file(path: PathLike, command: str, marks: Sequence[bytes]) -> None:
    """The folders' rule for a one-file output: refuse, before any work, to replace a non-empty file whose
    first 4 KiB hold none of ``marks`` (the signs, in that file's format, that ``command`` wrote it)."""
    path = Path(path)
    if not path.is_file():
        return  # missing, or a folder or device that the write reports or writes through
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return  # not readable: the write reports it
    if head and not any(mark in head for mark in marks):
        raise AUAgentError(f"exists and was not written by au-agent {command}; choose another --out, or move it "
                           "away (nothing was changed)", path)


def claim_output_dir(out_dir: PathLike, command: str, legacy: Sequence[str] = ()) -> Path:
    """Prepare a folder that ``command`` writes file by file (and resumes): create it or accept an earlier
    output of the same command, write the marker, remove stale temporary files. Returns the resolved path."""
    out_dir = check_output_dir(out_dir, command, legacy)
    _mkdirs(out_dir)
    if output_marker(out_dir) != command:
        write_bytes(out_dir / MARKER, _marker_bytes(command))
    remove_stale_temps(out_dir)
    return out_dir


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(folder)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where the platform cannot."""
    global _exchange_supported
    if not _exchange_supported:
        return False
    import ctypes  # only where a folder is swapped: not for every command that starts

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        _exchange_supported = False
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        _exchange_supported = False
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def recover_swap(out_dir: PathLike) -> None:
    """Finish or roll back a two-rename swap that a crash interrupted, and remove dead runs' staging folders."""
    out_dir = Path(out_dir)
    old = out_dir.parent / f".{out_dir.name}{_OLD_SUFFIX}"
    if old.is_dir():
        if out_dir.exists():
            shutil.rmtree(old)  # the new folder was already in place
        else:
            os.rename(old, out_dir)  # killed between the two renames: the old folder comes back
            _fsync_dir(out_dir.parent)
    remove_stale_temps(out_dir.parent)


def _swap_in(stage: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(stage, out_dir)
        fault_point(f"rename {out_dir.name}")
    elif _exchange(stage, out_dir):  # out_dir now holds the new folder, stage the old one
        fault_point(f"exchange {out_dir.name}")
        shutil.rmtree(stage)
    else:
        old = out_dir.parent / f".{out_dir.name}{_OLD_SUFFIX}"
        os.rename(out_dir, old)
        fault_point(f"rename aside {out_dir.name}")
        os.rename(stage, out_dir)
        fault_point(f"rename {out_dir.name}")
        shutil.rmtree(old)
    _fsync_dir(out_dir.parent)
    fault_point(f"swapped {out_dir.name}")


@contextlib.contextmanager
def staged_dir(out_dir: PathLike, command: Optional[str] = None, legacy: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``out_dir`` only when the block succeeds.

    With ``command``, ``out_dir`` must be missing, empty, or an earlier output of that command (its marker):
    anything else is refused before work starts, and the marker is written into the new folder. The staging
    folder sits beside ``out_dir`` (same file system); its files are fsynced, then it is swapped in so that
    ``out_dir`` holds the old or the new folder at every instant. On any error ``out_dir`` is left as it was.
    """
    out_dir = _resolve_out(out_dir)
    with output_errors(out_dir, [out_dir.parent]):
        _mkdirs(out_dir.parent)
        recover_swap(out_dir)
        if command is not None:
            _check_ownership(out_dir, command, legacy)
        mode = stat.S_IMODE(out_dir.stat().st_mode) if out_dir.is_dir() else 0o777 & ~current_umask()
        stage = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir.name), suffix=".partial", dir=out_dir.parent))
    try:
        with output_errors(out_dir, [stage]):
            yield stage
            if command is not None:
                (stage / MARKER).write_bytes(_marker_bytes(command))
            os.chmod(stage, mode)
            _fsync_tree(stage)
            fault_point(f"staged {out_dir.name}")
            if command is not None:
                _check_ownership(out_dir, command, legacy)  # nothing else moved in meanwhile
            _swap_in(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise

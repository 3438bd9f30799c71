"""A small persistent key → value store on SQLite (WAL), shared by processes, threads and DataLoader workers.

Three caches use it: descriptions (namespace = agent fingerprint, key = contract input string), CLIP text
features (namespace = CLIP weights fingerprint, key = description), and the sha256 of model files (key = real
path, size and mtime: :func:`file_sha256`), so that a fingerprint does not re-read gigabytes in every process.
Values are written once and never change for a key, so readers never see a stale value: a different agent or
CLIP model is a different namespace.
When two processes compute the same key, the first write wins and :meth:`SQLiteCache.put_many` hands both of
them the stored value, so every shard writes the same features for one input.

The cache is per node: SQLite's locking is only safe on a local file system, not over NFS or other network
file systems. Give each node its own ``--cache-dir`` on a local disk.

The file is checked before anything is written to it: one that SQLite cannot read (not a database, or cut
short: its header counts more pages than the file holds) or one of another schema (a ``PRAGMA user_version``
other than :data:`SCHEMA_VERSION`, or tables other than ``kv``) is refused in one line that names it and says
what to do; so is any SQLite error met later. A cache made before the version was stored (version 0 with
exactly today's table) is read and stamped.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from au_core import atomic
from au_core.errors import AUAgentError

from ..config_access import PathArg

DEFAULT_DIR_ENV = "AU_AGENT_CACHE_DIR"
SCHEMA_VERSION = 1  # PRAGMA user_version of the layout below; another value is another version's cache
_TABLE = ("CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
          " PRIMARY KEY (ns, key)) WITHOUT ROWID")
_COLUMNS = ["ns", "key", "value"]
_ADVICE = "run with --no-cache, or move the file aside (a new cache is then built)"
_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 on old builds)
DIGEST_MEMO = "file_digests.sqlite"
_DIGEST_NS = "sha256"
#: (real path, size, mtime_ns) → sha256 of a model file, so multi-GB weights are hashed once per process.
_DIGESTS: Dict[Tuple[str, int, int], str] = {}
_MEMOS: Dict[Path, Optional["SQLiteCache"]] = {}


def default_cache_dir() -> Path:
    """``$AU_AGENT_CACHE_DIR``, else ``~/.cache/au-agent``."""
    return Path(os.environ.get(DEFAULT_DIR_ENV) or Path.home() / ".cache" / "au-agent")


@contextlib.contextmanager
def _write_transaction(con: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error (so that a retry starts afresh)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise


class SQLiteCache:
    """``get_many`` / ``put_many`` over one table; one connection per (process, thread)."""

    def __init__(self, path: Union[str, os.PathLike], timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        with self._guard():
            con = self._connect()
            self._retry_locked(lambda: self._create(con))

    @staticmethod
    def _create(con: sqlite3.Connection) -> None:
        """The table and the version stamp, where missing: a new file, or one made before versions."""
        if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with _write_transaction(con):
            con.execute(_TABLE)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _error(self, problem: str) -> AUAgentError:
        return AUAgentError(f"{problem}; {_ADVICE}", self.path)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Any SQLite error (a file damaged while in use, a lock held past the timeout) as one line."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise self._error(f"unusable cache ({e})") from None

    def _check_schema(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        tables = sorted(name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if version not in (0, SCHEMA_VERSION):
            raise self._error(f"a cache of schema version {version} (this au-agent reads version {SCHEMA_VERSION})")
        if not tables:
            return  # new
        columns = [row[1] for row in con.execute("PRAGMA table_info(kv)")]
        if tables != ["kv"] or columns != _COLUMNS:
            raise self._error(f"not an au-agent cache of schema version {SCHEMA_VERSION} (tables "
                              f"{', '.join(tables)}, kv columns {', '.join(columns) or 'none'})")

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork (DataLoader workers) or a thread boundary.
        con: Optional[sqlite3.Connection] = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                self._retry_locked(lambda: self._check_schema(con))  # read only: a refused file is left as it was
            except BaseException:
                con.close()
                raise
            self._retry_locked(lambda: con.execute("PRAGMA journal_mode=WAL"))
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con, self._local.pid = con, os.getpid()
        return con

    @staticmethod
    def _select(con: sqlite3.Connection, ns: str, keys: List[str]) -> Dict[str, bytes]:
        found: Dict[str, bytes] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in con.execute(f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({marks})", [ns, *chunk]):
                found[key] = value
        return found

    def _retry_locked(self, step) -> None:
        """Run ``step`` until SQLite stops answering "locked": switching a new file to WAL while another
        process creates it fails at once, without waiting for the busy timeout."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def get_many(self, ns: str, keys: Iterable[str]) -> Dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        with self._guard():
            found = self._select(self._connect(), ns, keys)
        with self._lock:
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def put_many(self, ns: str, items: Mapping[str, bytes]) -> Dict[str, bytes]:
        """Store values for keys not stored yet; return what is stored for every key of ``items``: another
        process's value where it was first, so that all callers use one value per key."""
        if not items:
            return {}
        with self._guard():
            con = self._connect()
            with _write_transaction(con):
                con.executemany("INSERT OR IGNORE INTO kv (ns, key, value) VALUES (?, ?, ?)",
                                [(ns, k, v) for k, v in items.items()])
                stored = self._select(con, ns, list(items))
        return stored

    def count(self, ns: Optional[str] = None) -> int:
        with self._guard():
            con = self._connect()
            if ns is None:
                return con.execute("SELECT COUNT(*) FROM kv").fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM kv WHERE ns = ?", (ns,)).fetchone()[0]

    def stats(self) -> Dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


# ------------------------------------------------------------------------------------------- file digests


def digest_memo(cache_dir: Optional[PathArg] = None) -> Optional[SQLiteCache]:
    """The memo of model-file digests in ``cache_dir`` (default: :func:`default_cache_dir`), opened once per
    process (the agent and CLIP share it), or None when it cannot be opened: the memo only saves time."""
    path = Path(cache_dir or default_cache_dir()) / DIGEST_MEMO
    if path not in _MEMOS:
        try:
            _MEMOS[path] = SQLiteCache(path)
        except (OSError, sqlite3.Error, AUAgentError):
            _MEMOS[path] = None
    return _MEMOS[path]


def file_sha256(path: PathArg, memo: Optional[SQLiteCache] = None) -> str:
    """The full sha256 (hex) of a file, remembered by (real path, size, mtime_ns) in this process and, with
    ``memo`` (:func:`digest_memo`), across processes: a model file that changes gets a new key."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    memo_key = "\0".join(str(k) for k in key)
    stored = memo.get_many(_DIGEST_NS, [memo_key]).get(memo_key) if memo is not None else None
    _DIGESTS[key] = stored.decode("ascii") if stored is not None else atomic.file_digest(path)
    if memo is not None and stored is None:
        memo.put_many(_DIGEST_NS, {memo_key: _DIGESTS[key].encode("ascii")})
    return _DIGESTS[key]

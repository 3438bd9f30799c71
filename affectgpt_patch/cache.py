"""A small persistent key → value store on SQLite (WAL), shared by processes, threads and DataLoader workers.

Two caches use it: descriptions (namespace = agent fingerprint, key = contract input string) and CLIP text
features (namespace = CLIP weights fingerprint, key = description). Values are written once and never change
for a key, so readers never see a stale value: a different agent or CLIP model is a different namespace.
When two processes compute the same key, the first write wins and :meth:`SQLiteCache.put_many` hands both of
them the stored value, so every shard writes the same features for one input.

The cache is per node: SQLite's locking is only safe on a local file system, not over NFS or other network
file systems. Give each node its own ``--cache-dir`` on a local disk.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Union

DEFAULT_DIR_ENV = "AU_AGENT_CACHE_DIR"
_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 on old builds)


def default_cache_dir() -> Path:
    """``$AU_AGENT_CACHE_DIR``, else ``~/.cache/au-agent``."""
    return Path(os.environ.get(DEFAULT_DIR_ENV) or Path.home() / ".cache" / "au-agent")


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
        con = self._connect()
        self._retry_locked(lambda: con.execute(
            "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
            " PRIMARY KEY (ns, key)) WITHOUT ROWID"))

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork (DataLoader workers) or a thread boundary.
        con: Optional[sqlite3.Connection] = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
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
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT OR IGNORE INTO kv (ns, key, value) VALUES (?, ?, ?)",
                            [(ns, k, v) for k, v in items.items()])
            stored = self._select(con, ns, list(items))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return stored

    def count(self, ns: Optional[str] = None) -> int:
        con = self._connect()
        if ns is None:
            return con.execute("SELECT COUNT(*) FROM kv").fetchone()[0]
        return con.execute("SELECT COUNT(*) FROM kv WHERE ns = ?", (ns,)).fetchone()[0]

    def stats(self) -> Dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

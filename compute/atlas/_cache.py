"""A disk cache of query results, outside the (read-only) atlas, shared by processes.

Location: ``$SIGATLAS_CACHE_DIR`` if set, else ``~/.cache/sigatlas``; one sub-folder per atlas
content (a hash of its ``atlas.json``, which records the build), so a rebuilt atlas never sees
an older atlas's results. diskcache handles concurrent readers and writers (several dashboard
workers may share it) and evicts least-recently-used entries beyond ``size_limit``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

__all__ = ["ResultCache", "cache_root", "sqlite_guard"]

# SQLite is not fork-safe: a process forked while another of its threads is inside SQLite keeps
# SQLite's mutexes locked, and the child's first connection waits forever (the dashboard forks a
# process per query job, beside request threads that read the caches). Every SQLite call of the
# disk caches holds this lock; a process that forks holds it too (sqlite_guard), and a forked
# child starts with a fresh one.
_SQLITE_LOCK = threading.RLock()


def _fresh_lock_in_child() -> None:
    global _SQLITE_LOCK
    _SQLITE_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


@contextlib.contextmanager
def sqlite_guard():
    """Held, no thread of this process is inside a disk cache's SQLite call: fork under it."""
    with _SQLITE_LOCK:
        yield

DEFAULT_SIZE_LIMIT = 2**30  # 1 GiB per atlas


def cache_root() -> Path:
    env = os.environ.get("SIGATLAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sigatlas"


class ResultCache:
    """``get(key)`` / ``set(key, value)`` with JSON-able keys; a no-op when disabled."""

    def __init__(self, fingerprint: str, directory: str | Path | None = None, *, enabled: bool = True, size_limit: int = DEFAULT_SIZE_LIMIT):
        self.enabled = enabled
        self.directory = Path(directory) if directory is not None else cache_root() / fingerprint
        self._cache = None
        self._size_limit = size_limit

    def _open(self):
        if self._cache is None:
            import diskcache

            self.directory.mkdir(parents=True, exist_ok=True)
            with _SQLITE_LOCK:
                self._cache = diskcache.Cache(str(self.directory), size_limit=self._size_limit)
        return self._cache

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str):
        if not self.enabled:
            return None
        cache = self._open()
        with _SQLITE_LOCK:
            return cache.get(key)

    def set(self, key: str, value) -> None:
        if self.enabled:
            cache = self._open()
            with _SQLITE_LOCK:
                cache.set(key, value)

    def clear(self) -> None:
        if self.enabled:
            cache = self._open()
            with _SQLITE_LOCK:
                cache.clear()

    def close(self) -> None:
        if self._cache is not None:
            with _SQLITE_LOCK:
                self._cache.close()
            self._cache = None

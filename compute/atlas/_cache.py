"""A disk cache of query results, outside the (read-only) atlas, shared by processes.

Location: ``$SIGATLAS_CACHE_DIR`` if set, else ``~/.cache/sigatlas``; one sub-folder per atlas
content (a hash of its ``atlas.json``, which records the build), so a rebuilt atlas never sees
an older atlas's results. diskcache handles concurrent readers and writers (several dashboard
workers may share it) and evicts least-recently-used entries beyond ``size_limit``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["ResultCache", "cache_root"]

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
            self._cache = diskcache.Cache(str(self.directory), size_limit=self._size_limit)
        return self._cache

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str):
        if not self.enabled:
            return None
        return self._open().get(key)

    def set(self, key: str, value) -> None:
        if self.enabled:
            self._open().set(key, value)

    def clear(self) -> None:
        if self.enabled:
            self._open().clear()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

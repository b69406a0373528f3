"""A disk cache of query results, outside the (read-only) atlas, shared by processes.

Location: ``$SIGATLAS_CACHE_DIR`` if set, else ``~/.cache/sigatlas``; one sub-folder per atlas
content (a hash of its ``atlas.json``, which records the build), so a rebuilt atlas never sees
an older atlas's results. diskcache handles concurrent readers and writers (several dashboard
workers may share it) and evicts least-recently-used entries beyond ``size_limit``.

Nothing read from the cache is trusted: every value is stored with the sha256 of its bytes and
checked when read (a mismatch is logged, dropped and computed again); a database file SQLite
finds damaged is discarded and made again (logged), the answers computed anew. The folders are the
server's user's alone (0700: the job store beside the results holds the secret that signs job
handles). A folder removed while serving is made again; a full, read-only or uncreatable one
raises CacheError, which names the folder and the fix.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import hashlib
import json
import logging
import os
import pickle
import sqlite3
import sys
import threading
from pathlib import Path

from compute.errors import CacheError

__all__ = ["CacheError", "ResultCache", "cache_error", "cache_root", "private_folder", "fork_safe_cache", "probe_writable", "sqlite_guard"]

_log = logging.getLogger("sigatlas.cache")

# SQLite is not fork-safe: a process forked while another of its threads is inside SQLite keeps
# SQLite's mutexes locked, and the child's first connection waits forever (the dashboard forks a
# process per query job, beside request threads that read the caches). Every SQLite call of the
# disk caches holds this lock; a process that forks holds it too (sqlite_guard), and a forked
# child starts with a fresh one.
_SQLITE_LOCK = threading.RLock()
_CLOSE_WAIT_S = 10.0  # how long a thread's connection waits for the guard to close under it


def _fresh_lock_in_child() -> None:
    global _SQLITE_LOCK
    _SQLITE_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


@contextlib.contextmanager
def sqlite_guard():
    """Held, no thread of this process is inside a disk cache's SQLite call: fork under it."""
    with _SQLITE_LOCK:
        yield


class _ClosedUnderGuard:
    """Holds one thread's SQLite connection and closes it under the guard when that thread's
    storage is dropped. diskcache keeps a connection per thread in a threading.local; when a
    thread ends (a server that runs each request in a new thread ends one per request), Python
    frees that connection in the ending thread, and SQLite's close takes its global mutexes
    outside the guard: a job forked at that moment inherited them locked and waited forever in
    its first connect. Holding a reference here, the connection is closed by this finaliser,
    under the guard, before it is freed."""

    __slots__ = ("con", "owner")

    def __init__(self, con):
        self.con = con
        self.owner = threading.get_ident()

    def __del__(self):
        if self.owner != threading.get_ident():
            # dropped with the whole cache object by another thread (a cache closed or reopened):
            # its owner may be inside a call on it, so it is left to be freed, never closed under it
            return
        if sys.is_finalizing():
            # the process is ending (no fork follows), and a daemon thread frozen mid-call may
            # hold the guard for good: waiting for it hung the exit
            return
        # a thread inside a cache call holds the guard for milliseconds: a guard held longer is
        # no fork's, and the connection is closed without it rather than the thread waiting forever
        held = _SQLITE_LOCK.acquire(timeout=_CLOSE_WAIT_S)
        try:
            with contextlib.suppress(Exception):
                self.con.close()
        finally:
            if held:
                _SQLITE_LOCK.release()


@functools.cache
def _fork_safe_class():
    import diskcache

    class ForkSafeCache(diskcache.Cache):
        """diskcache.Cache whose per-thread connections are closed under the guard
        (_ClosedUnderGuard), never by a thread's end."""

        @property
        def _con(self):
            con = super()._con
            holder = getattr(self._local, "holder", None)
            if holder is None or holder.con is not con:
                self._local.holder = _ClosedUnderGuard(con)
            return con

    return ForkSafeCache


def fork_safe_cache(directory: str | Path, **kwargs):
    """A diskcache.Cache over ``directory`` that is safe in a process that forks while other
    threads start and end: each call still needs :func:`sqlite_guard` (or ResultCache's own
    guard) around it; a thread's connection is then also closed under it."""
    return _fork_safe_class()(str(directory), **kwargs)

DEFAULT_SIZE_LIMIT = 2**30  # 1 GiB per atlas
_ENVELOPE = b"SIGATLAS-SHA256-1\n"  # then the 32-byte sha256 of the pickled value, then the value
_ROOM = "free space there and retry (no restart needed), or restart the server with $SIGATLAS_CACHE_DIR set to a folder with room"
_WRITABLE = "point $SIGATLAS_CACHE_DIR at a folder this user can write (or fix this one's permissions), then start the server again"
_WHY = {errno.ENOSPC: ("no space left on the device", _ROOM), errno.EDQUOT: ("the disk quota is exhausted", _ROOM),
        errno.EROFS: ("the file system is read-only", _WRITABLE), errno.EACCES: ("no permission to write there", _WRITABLE),
        errno.EPERM: ("no permission to write there", _WRITABLE), errno.ENOENT: ("it is missing and cannot be made", _WRITABLE),
        errno.ENOTDIR: ("a file stands where a folder is needed", _WRITABLE)}


def cache_root() -> Path:
    env = os.environ.get("SIGATLAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sigatlas"


def cache_error(directory: str | Path, exc: BaseException) -> CacheError:
    """``exc`` (an OSError, or SQLite's "database or disk is full" and kin) met writing the cache
    folder ``directory``, as a one-line CacheError naming the folder, why and the fix."""
    if isinstance(exc, CacheError):  # a copy: raised ``from exc``, exc itself would be its own cause
        return copy.copy(exc)
    why, fix = _WHY.get(getattr(exc, "errno", None), (None, None))
    if why is None:  # SQLite's own words: "database or disk is full", "attempt to write a readonly database", ...
        text = str(exc)
        why, fix = ("no space left on the device", _ROOM) if "full" in text else (text, _WRITABLE)
    return CacheError(f"the cache folder {directory} cannot be written ({why}): {fix}", directory)


def private_folder(directory: str | Path) -> bool:
    """Make ``directory`` (and any missing folder above it) readable by this user only (0700),
    tightening it when it already exists. Returns whether it was open to others before (what it
    holds may have been read). Raises CacheError when it cannot be made or written."""
    d = Path(directory)
    missing = []
    p = d
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        for m in reversed(missing):
            os.mkdir(m, 0o700)
        mode = d.stat().st_mode & 0o777
        was_open = bool(mode & 0o077) and not missing
        if mode != 0o700:
            os.chmod(d, 0o700)
        if not os.access(d, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, "not writable", str(d))
    except FileExistsError as exc:  # created meanwhile by another worker
        if d.is_dir():
            return private_folder(d)
        raise cache_error(d, OSError(errno.ENOTDIR, str(exc))) from exc
    except OSError as exc:
        raise cache_error(d, exc) from exc
    return was_open


def probe_writable(directory: str | Path) -> None:
    """Create and remove a file in ``directory`` (made private first); raises CacheError when
    that fails: a read-only file system, no permission, a full device."""
    d = Path(directory)
    private_folder(d)
    probe = d / f".probe.{os.getpid()}.{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as exc:
        raise cache_error(d, exc) from exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def _private_files(directory: Path) -> None:
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        with contextlib.suppress(OSError):
            os.chmod(directory / name, 0o600)


def _is_corrupt(exc: BaseException) -> bool:
    """SQLite's words for a damaged database file (not a full or read-only disk)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)


def _discard_if_damaged(directory: Path) -> bool:
    """Remove the result cache's database under ``directory`` (and diskcache's value files) when
    SQLite's own check finds it damaged; True when removed. Under a lock every process of the
    server shares, and only after the check: another worker that already replaced a damaged file
    keeps its fresh one."""
    import fcntl
    import shutil

    db = directory / "cache.db"
    with open(directory / ".repair.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                healthy = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                con.close()
        except sqlite3.DatabaseError:
            healthy = False
        if healthy:
            return False
        _log.error("the cache database %s is damaged (SQLite's check fails): discarded; answers are computed again", db)
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            (directory / name).unlink(missing_ok=True)
        for sub in directory.iterdir():  # diskcache's large values: two-hex-digit folders
            if sub.is_dir() and len(sub.name) == 2 and all(c in "0123456789abcdef" for c in sub.name):
                shutil.rmtree(sub, ignore_errors=True)
        return True


def _is_cache_failure(exc: BaseException) -> bool:
    """A failure of the cache's storage (not of the value): a full, read-only or vanished disk."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return True
    return isinstance(exc, OSError) and exc.errno in _WHY


class ResultCache:
    """``get(key)`` / ``set(key, value)`` with JSON-able keys; a no-op when disabled. Values are
    checked against the sha256 stored with them; see the module's docstring for failures."""

    def __init__(self, fingerprint: str, directory: str | Path | None = None, *, enabled: bool = True, size_limit: int = DEFAULT_SIZE_LIMIT):
        self.enabled = enabled
        self.directory = Path(directory) if directory is not None else cache_root() / fingerprint
        self._cache = None
        self._size_limit = size_limit

    def prepare_directory(self) -> None:
        """Make the folder (0700); raises CacheError when it cannot be made or written."""
        private_folder(self.directory)

    def check_writable(self) -> None:
        """Raises CacheError unless a file can be written in the folder (a server checks at start)."""
        probe_writable(self.directory)

    def _open(self):
        if self._cache is not None and not (self.directory / "cache.db").exists():
            # the folder was removed while serving: made again, not failed on until a restart
            _log.warning("cache folder %s was removed; making it again", self.directory)
            self.close()
        if self._cache is None:
            private_folder(self.directory)
            with _SQLITE_LOCK:
                for attempt in (0, 1):
                    try:
                        self._cache = fork_safe_cache(self.directory, size_limit=self._size_limit)
                        break
                    except Exception as exc:
                        if attempt == 0 and _is_corrupt(exc) and _discard_if_damaged(self.directory):
                            continue  # a damaged database is discarded and made again, never served from
                        if _is_cache_failure(exc):
                            raise cache_error(self.directory, exc) from exc
                        raise
            _private_files(self.directory)
        return self._cache

    def _call(self, what: str, *args):
        """diskcache's ``what(*args)``, once more on a fresh handle if the folder vanished under
        it; storage failures raised as CacheError."""
        for attempt in (0, 1):
            cache = self._open()
            try:
                with _SQLITE_LOCK:
                    return getattr(cache, what)(*args)
            except Exception as exc:
                if not _is_cache_failure(exc):
                    raise
                if attempt == 0 and not (self.directory / "cache.db").exists():
                    continue  # removed meanwhile: _open makes it again
                if attempt == 0 and _is_corrupt(exc):
                    self.close()
                    with _SQLITE_LOCK:  # its check opens SQLite too: never beside a fork
                        _discard_if_damaged(self.directory)  # (or another worker already did)
                    continue
                raise cache_error(self.directory, exc) from exc
        return None

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str):
        """The value stored under ``key``, or None: also when its bytes do not match the checksum
        stored with them (logged and dropped, so the caller computes it again)."""
        if not self.enabled:
            return None
        raw = self._call("get", key)
        if raw is None:
            return None
        n = len(_ENVELOPE)
        if isinstance(raw, bytes) and raw[:n] == _ENVELOPE and hashlib.sha256(memoryview(raw)[n + 32:]).digest() == raw[n:n + 32]:
            try:
                return pickle.loads(memoryview(raw)[n + 32:])
            except Exception as exc:  # noqa: BLE001 - a value this code can no longer read: computed again
                _log.warning("cache %s: entry %s cannot be read (%s); dropped, computed again", self.directory, key, exc)
        else:
            _log.warning("cache %s: entry %s does not match its checksum (or predates checksums); dropped, computed again",
                         self.directory, key)
        with contextlib.suppress(CacheError):
            self._call("delete", key)
        return None

    def set(self, key: str, value) -> None:
        if self.enabled:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            self._call("set", key, b"".join((_ENVELOPE, hashlib.sha256(payload).digest(), payload)))

    def clear(self) -> None:
        if self.enabled:
            self._call("clear")

    def close(self) -> None:
        if self._cache is not None:
            with _SQLITE_LOCK, contextlib.suppress(Exception):
                self._cache.close()
            self._cache = None

"""The one way SigAtlas writes a file: to a temporary name beside it, then renamed into place
(a crash leaves the old file or the new one, never half of one; the temporary file is removed
when the write fails), and the one checksum."""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compute.errors import StorageError

__all__ = ["PositionedNpy", "allocate", "estimated_h5ad_bytes", "reserved_space", "storage_error", "atomic_write", "copy_tree_atomic", "file_record",
           "file_sha256", "save_npy_atomic", "write_json_atomic", "write_text_atomic"]


_NEEDS = {
    errno.ENOSPC: "no space left on the device: free some space (or write elsewhere) and re-run; finished work is kept",
    errno.EDQUOT: "the disk quota is exhausted: free some space (or write elsewhere) and re-run; finished work is kept",
    errno.EROFS: "the file system is read-only: write the atlas (atlas.out / --out) to a writable folder",
    errno.EACCES: "no permission to write there: fix the folder's permissions or write elsewhere",
    errno.EPERM: "no permission to write there: fix the folder's permissions or write elsewhere",
}


class PositionedNpy:
    """A 1-d .npy file read by ranges with positioned reads (os.pread), never memory-mapped: pages
    of a mapped file that a process touched count in its resident set until the kernel reclaims
    them, so random reads over a large mapped file show a resident set the size of the file. Here
    each range is read into a fresh array and dropped with it. The header is read at once (shape
    ``length``, ``dtype``); the file descriptor is opened on the first read (or ``open()``) and
    closed by ``close()``, so an owner of thousands of files can bound how many are open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(fh)
            self.offset, self.dtype = fh.tell(), np.dtype(dtype)
        if fortran or len(shape) != 1:
            raise ValueError(f"{self.path}: expected a 1-d array, got shape {shape}; re-run the build, which writes it again")
        self.length = int(shape[0])
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, start: int, count: int) -> np.ndarray:
        """Values ``start`` to ``start + count`` (a read-only array over the bytes read); ValueError
        naming the file when it holds fewer."""
        self.open()
        size = count * self.dtype.itemsize
        raw = os.pread(self._fd, size, self.offset + start * self.dtype.itemsize)
        if len(raw) != size:
            raise ValueError(f"{self.path}: shorter than expected ({len(raw)} of {size} bytes at value {start:,})")
        return np.frombuffer(raw, dtype=self.dtype, count=count)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def storage_error(path: str | Path, exc: OSError) -> OSError:
    """``exc`` as a one-line StorageError naming ``path`` and what is needed, when it is a
    disk-full, read-only or permission error; a copy of ``exc`` when it is a StorageError already
    (raised ``from exc``, the same object would be its own cause, and Dask's workers walk causes
    until None: a full disk hung the build); ``exc`` itself otherwise."""
    if isinstance(exc, StorageError):
        return copy.copy(exc)
    need = _NEEDS.get(exc.errno)
    if need is None:
        return exc
    return StorageError(f"cannot write {path}: {need}")


_RESERVATIONS = ".sigatlas-writes"  # in a folder being written: one file per write in progress, holding its size


def _alive(pid: int) -> bool:
    if pid <= 0:  # not a writer's entry (os.kill(-1, 0) would ask about every process)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def reserved_space(path: str | Path, nbytes: int):
    """Hold ``nbytes`` of the free space of ``path``'s device for a write of ``path`` (the body of
    the ``with``), or raise StorageError naming the folder, before anything is written, when the
    device's free space less the writes in progress in the same folder (other processes of a
    build: Dask workers) cannot take it.

    Why: HDF5 that meets a full disk halfway through a file cannot close it, and its clean-up
    then crashes the process (a segmentation fault, exit 139) instead of raising. The writes in
    progress are counted at their full size (conservative: some of it is already written); a
    crashed writer's entry is ignored and removed."""
    import fcntl
    import uuid

    path = Path(path)
    folder = path.parent
    ledger = folder / _RESERVATIONS
    mine = ledger / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        ledger.mkdir(exist_ok=True)
        with open(folder / f"{_RESERVATIONS}.lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            held = 0
            for entry in ledger.iterdir():
                pid = int(entry.name.split("-", 1)[0]) if entry.name.split("-", 1)[0].isdigit() else -1
                if not _alive(pid):
                    entry.unlink(missing_ok=True)
                    continue
                try:
                    held += int(entry.read_text() or 0)
                except (OSError, ValueError):
                    continue
            free = shutil.disk_usage(folder).free
            if free - held < nbytes:
                raise StorageError(
                    f"cannot write {path}: it needs about {nbytes / 2**20:,.1f} MB and {folder} has {free / 2**20:,.1f} MB free on "
                    f"its device" + (f", {held / 2**20:,.1f} MB of it held for writes in progress" if held else "")
                    + ": free some space (or write elsewhere) and re-run; finished work is kept")
            mine.write_text(str(int(nbytes)))
    except OSError as exc:
        raise storage_error(folder, exc) from exc
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


def estimated_h5ad_bytes(n_obs: int, nnz: int, n_vars: int) -> int:
    """An upper estimate of an h5ad's size: a CSR X of ``nnz`` float32 values and int32 indices,
    its row pointers, and a cells table and a gene list with room to spare."""
    return int(1.05 * (8 * nnz + 8 * (n_obs + 1)) + 160 * n_obs + 64 * n_vars + 2**18)


def allocate(path: str | Path) -> None:
    """Give the file at ``path`` real disk blocks for its whole size (posix_fallocate). A file
    sized by truncation and then written through a memory map has none: on a full disk the
    write to the map kills the process (SIGBUS) instead of raising. Raises StorageError naming
    the path when the device has no room; does nothing where the file system cannot allocate."""
    path = Path(path)
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fh.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return  # no allocation on this file system: the map is written as before
        raise storage_error(path, exc) from exc


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name beside ``path`` (same suffix, so writers that add
    one, like np.save, keep it), then rename into place; the temporary file never outlives
    the call. Disk-full, read-only and permission errors raise StorageError naming the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise storage_error(path, exc) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only file system cannot have the file either
            pass


def write_json_atomic(path: str | Path, obj) -> None:
    """``obj`` as indented JSON (``default=str``), atomically."""
    atomic_write(path, lambda t: t.write_text(json.dumps(obj, indent=1, default=str)))


def write_text_atomic(path: str | Path, text: str) -> None:
    atomic_write(path, lambda t: t.write_text(text))


def save_npy_atomic(path: str | Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda t: np.save(t, arr))


def copy_tree_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy folder ``src`` to ``dst``: into a temporary folder first, then swapped in by renames
    (the temporary and the replaced folder are removed, also when the copy fails)."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    old = dst.with_name(f".{dst.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
    except shutil.Error as exc:  # copytree gathers the per-file errors
        first = next((e for e in exc.args[0] if isinstance(e, tuple) and len(e) == 3), None) if exc.args else None
        raise StorageError(f"cannot copy {src} to {dst}: {first[2] if first else exc}") from exc
    except OSError as exc:
        raise storage_error(dst, exc) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path) -> dict:
    """{"sha256", "bytes"}: what atlas.json records of each file (``python -m compute verify``)."""
    return {"sha256": file_sha256(path), "bytes": Path(path).stat().st_size}

"""The one way SigAtlas writes a file: to a temporary name beside it, then renamed into place
(a crash leaves the old file or the new one, never half of one; the temporary file is removed
when the write fails), and the one checksum."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "copy_tree_atomic", "file_record", "file_sha256", "save_npy_atomic", "write_json_atomic",
           "write_text_atomic"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name beside ``path`` (same suffix, so writers that add
    one, like np.save, keep it), then rename into place; the temporary file never outlives
    the call."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

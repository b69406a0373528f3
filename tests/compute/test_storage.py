"""Disk full, read-only and permission errors (issue 16): one line naming the path and what is
needed, no traceback, no temporary file left behind."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from compute.errors import StorageError
from compute.files import atomic_write, save_npy_atomic, storage_error
from tests.conftest import REPO


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "x.npy"

    def half_then_full(tmp: Path):
        tmp.write_bytes(b"partial")  # the device fills up halfway through
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(StorageError, match=r"cannot write .*x\.npy: no space left on the device"):
        atomic_write(target, half_then_full)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file
    save_npy_atomic(target, np.arange(3))  # a retry succeeds
    assert np.load(target).tolist() == [0, 1, 2]


@pytest.mark.parametrize(("code", "words"), [(errno.EROFS, "read-only"), (errno.EACCES, "no permission"),
                                             (errno.EDQUOT, "quota")])
def test_storage_errors_say_what_is_needed(code, words):
    err = storage_error("/data/atlas/genes.tsv", OSError(code, "x"))
    assert isinstance(err, StorageError) and "/data/atlas/genes.tsv" in str(err) and words in str(err)
    other = OSError(errno.ENOENT, "missing")
    assert storage_error("p", other) is other  # not a storage problem: left as it is


def test_a_build_into_a_folder_it_cannot_write_prints_one_line(tmp_path):
    doc = {"version": 1, "atlas": {"name": "x", "out": "/sys/sigatlas-test/atlas"},
           "studies": [{"id": "S1", "source": {"kind": "scanpy-pbmc68k"}, "disease": "healthy", "tissue": "blood",
                        "columns": {"cell_type": "bulk_labels"}}]}
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([sys.executable, "-m", "compute", "build", str(manifest), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in lines[0] and "/sys/sigatlas-test" in lines[0] and "permission" in lines[0]


def test_the_builds_dask_status_page_listens_on_loopback_only():
    import psutil

    from compute.build import dask_client

    with dask_client(None, 1) as client:
        port = client.scheduler_info()["services"]["dashboard"]
        listening = [c.laddr.ip for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "LISTEN"]
    assert listening and set(listening) <= {"127.0.0.1"}, listening


def _causes_end(exc: BaseException) -> bool:
    """Whether walking ``exc.__cause__`` (as Dask's collect_causes does) ends within 50 steps."""
    for _ in range(50):
        if exc.__cause__ is None:
            return True
        exc = exc.__cause__
    return False


def test_a_storage_error_met_inside_another_write_is_not_its_own_cause(tmp_path, monkeypatch):
    """A full disk under the Dask build hung it for good (issue 33): reserved_space raised its
    StorageError inside its own ``except OSError``, which raised it again ``from`` itself, and
    Dask's worker walked that cause chain forever before reporting the task's failure."""
    import shutil

    from compute.atlas import cache_error
    from compute.errors import CacheError
    from compute.files import reserved_space

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(StorageError) as info:
        with reserved_space(tmp_path / "big.h5ad", 10**6):
            pass
    assert _causes_end(info.value)
    nested = tmp_path / "nested.npy"
    with pytest.raises(StorageError) as info:  # a write whose own writer met a StorageError
        atomic_write(nested, lambda tmp: save_npy_atomic(tmp, np.zeros(1)) or (_ for _ in ()).throw(StorageError("full")))
    assert _causes_end(info.value)
    assert isinstance(cache_error(tmp_path, CacheError("x", tmp_path)), CacheError)


def test_a_full_disk_in_a_dask_task_is_reported_not_hung(tmp_path, monkeypatch):
    """The same through a Dask worker (threads here, as the build's workers run its tasks): the
    task's StorageError comes back to the client in seconds."""
    import shutil

    from distributed import Client

    from compute.files import reserved_space

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))

    def write():
        with reserved_space(tmp_path / "study.h5ad", 10**6):
            pass

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        future = client.submit(write, pure=False)
        with pytest.raises(StorageError, match="it needs about 1.0 MB"):
            future.result(timeout=60)

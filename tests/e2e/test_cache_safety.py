"""Issue 33: nothing derived from the atlas is served wrong, and no cache fault crashes the server.

The warm-up race (a query while the server consolidates the studies' stores), damaged derived
files (the consolidated store, cached answers, short links), the cache folder's permissions and
the job-cancel rule, a full / removed / read-only cache folder, and a refused atlas under gunicorn."""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, free_port, running_server

QUERY = "/api/v1/query?genes=CD14,LYZ,S100A8,S100A9,FCN1,VCAN"


def _env(**kw) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGATLAS_")}
    return env | {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"} | {k: str(v) for k, v in kw.items()}


def _get(url: str, timeout: float = 120) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:  # the connection dropped: the server died under the request
        return 0, repr(exc)


def _answers(url: str) -> bool:
    status, _ = _get(url + "/api/v1/atlas", timeout=10)
    return status == 200


# -- 1. the warm-up race ---------------------------------------------------------------------------
@pytest.mark.slow
def test_queries_during_the_warm_up_never_kill_the_server(tiny_build, tmp_path):
    """A server started on an empty cache, sent concurrent queries the moment its API answers
    (while its warm-up thread consolidates the stores), 10 times: every query answered, the
    server alive. Before issue 33 the warm-up and a request thread wrote the same temporary file
    and the server died of SIGBUS."""
    failures = []
    for attempt in range(10):
        cache = tmp_path / f"cache-{attempt}"
        port = free_port()
        cmd = [sys.executable, "-m", "dashboard", "--atlas", str(tiny_build[1]), "--port", str(port)]
        with running_server(cmd, url=f"http://127.0.0.1:{port}", ready=_answers, log_name="cache-race.log",
                            env=_env(SIGATLAS_CACHE_DIR=cache)) as url:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda i: _get(f"{url}{QUERY}&cut={85 + i}"), range(4)))
            alive = _answers(url)
        bad = [(status, text[:200]) for status, text in answers if status != 200]
        if bad or not alive:
            failures.append((attempt, bad, alive, (REPO / "test-artifacts" / "cache-race.log").read_text()[-2000:]))
    assert not failures, failures


_RACE_SCRIPT = r"""
import sys, threading
import numpy as np
from compute.atlas import Atlas

atlas_path, cache = sys.argv[1], sys.argv[2]
errors = []

def work():
    try:
        atlas = Atlas.open(atlas_path, cache=cache)  # an atlas of its own: its own consolidation
        whole = atlas.consolidated_store()
        float(np.asarray(whole.data, dtype=np.float64).sum())  # every mapped page read
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
sys.exit(1 if errors else 0)
"""


def test_threads_and_processes_consolidating_one_store_at_once_never_crash(tiny_build, tmp_path):
    """Three threads in each of two processes make the consolidated store of one empty cache at
    once, 5 times: no process dies (SIGBUS), every one reads a whole store, and one record of
    checksums describes the files left."""
    env = _env(PYTHONPATH=REPO)
    for attempt in range(5):
        cache = tmp_path / f"cache-{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", _RACE_SCRIPT, str(tiny_build[1]), str(cache)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outs = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
        assert all(rc == 0 for rc, _ in outs), outs
        folder = cache / "consolidated"
        assert json.loads((folder / "attr.record.json").read_text())["files"].keys() == {
            "attr.indptr.npy", "attr.indices.npy", "attr.data.npy"}
        assert not [f.name for f in folder.iterdir() if ".tmp" in f.name]


# -- 2. damaged derived files are verified, never served ------------------------------------------------
def _damage_one_value_in_five(path: Path) -> None:
    """Change every fifth stored value (a new file renamed into place, as another program would
    leave it; a server's own mapping of the old file is not touched)."""
    values = np.load(path)
    values[::5] = values[::5] * 3 + 1
    tmp = path.with_name("damaged.npy")
    np.save(tmp, values)
    os.replace(tmp, path)


def test_a_damaged_consolidated_store_is_rebuilt_not_served(tiny_build, tmp_path, caplog):
    from compute.atlas import Atlas

    genes = ["CD14", "LYZ", "S100A8", "S100A9", "FCN1"]
    cache = tmp_path / "cache"
    first = Atlas.open(tiny_build[1], cache=cache)
    truth = np.asarray(first.consolidated_store().data).copy()
    expected = first.score(genes)
    _damage_one_value_in_five(cache / "consolidated" / "attr.data.npy")
    restarted = Atlas.open(tiny_build[1], cache=cache)  # a restarted server
    with caplog.at_level("WARNING", logger="sigatlas.cache"):
        whole = restarted.consolidated_store()
    assert np.array_equal(np.asarray(whole.data), truth)
    np.testing.assert_array_equal(restarted.score(genes), expected)
    assert any("attr.data.npy does not match its recorded checksum" in r.getMessage() and "rebuilt" in r.getMessage()
               for r in caplog.records), caplog.text
    # the rebuilt files match a fresh record: the next process maps them without rebuilding
    caplog.clear()
    with caplog.at_level("WARNING", logger="sigatlas.cache"):
        Atlas.open(tiny_build[1], cache=cache).consolidated_store()
    assert not caplog.records


def _stored_bytes(cache, key: str) -> bytes:
    import diskcache

    with diskcache.Cache(str(cache.directory)) as raw:
        return raw.get(key)


def _store_bytes(cache, key: str, value: bytes) -> None:
    import diskcache

    with diskcache.Cache(str(cache.directory)) as raw:
        raw.set(key, value)


def _tampered(stored: bytes, change) -> bytes:
    """``stored`` (envelope, sha256, pickled value) with its value changed by ``change`` and the
    old checksum kept: a value that unpickles fine but is not what was written."""
    import pickle

    head = stored.index(b"\n") + 1 + 32
    return stored[:head] + pickle.dumps(change(pickle.loads(stored[head:])))


def test_damaged_cached_answers_and_links_are_recomputed_not_served(tiny_build, tmp_path, monkeypatch, caplog):
    from compute.query import QueryParams
    from dashboard.data import DashboardData

    monkeypatch.setenv("SIGATLAS_CACHE_DIR", str(tmp_path / "cache"))
    data = DashboardData(tiny_build[1])
    params = QueryParams(genes=tuple((g, None) for g in ("CD14", "LYZ", "S100A8", "S100A9", "FCN1")))
    answer = data.query(params)
    key = data.result_key(params)
    link = data.store_link("genes=CD14&cut=90")
    results = data._results()

    def skew(result):
        result.diseases["mean_hit_pct"] = result.diseases["mean_hit_pct"][::-1].to_numpy()  # another ranking
        return result

    _store_bytes(results, key, _tampered(_stored_bytes(results, key), skew))
    _store_bytes(results, f"link-{link}", _tampered(_stored_bytes(results, f"link-{link}"), lambda s: "genes=EVIL"))
    restarted = DashboardData(tiny_build[1])  # a restarted server: nothing in memory
    with caplog.at_level("WARNING", logger="sigatlas.cache"):
        assert restarted.stored_result(key) is None
        assert restarted.stored_link(link) is None
        again = restarted.query(params)
    assert again.diseases["mean_hit_pct"].tolist() == answer.diseases["mean_hit_pct"].tolist()
    assert again.diseases["group"].tolist() == answer.diseases["group"].tolist()
    assert sum("does not match its checksum" in r.getMessage() for r in caplog.records) == 2, caplog.text
    assert restarted.stored_result(key) is not None  # stored again, whole


# -- 6. the job store's secret, and what a cancel may stop -----------------------------------------------
def test_cache_folders_are_private_and_a_leaked_secret_is_replaced(tiny_build, tmp_path, monkeypatch):
    import diskcache

    from dashboard.app import create_app

    root = tmp_path / "cache"
    monkeypatch.setenv("SIGATLAS_CACHE_DIR", str(root))
    app = create_app(tiny_build[1])
    jobs = next(root.glob("*/dash-jobs"))
    assert stat.S_IMODE(jobs.parent.stat().st_mode) == 0o700 and stat.S_IMODE(jobs.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700  # made by the server: its own
    assert stat.S_IMODE((jobs / "cache.db").stat().st_mode) == 0o600
    secret = app._get_signing_secret()
    # a folder left open to others (an older server): made private, and its secret no longer signs
    os.chmod(jobs.parent, 0o755)
    os.chmod(jobs, 0o755)
    again = create_app(tiny_build[1])
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o700 and stat.S_IMODE(jobs.parent.stat().st_mode) == 0o700
    assert again._get_signing_secret() != secret
    with diskcache.Cache(str(jobs)) as raw:
        assert raw.get("__dash_background_signing_secret__") == again._get_signing_secret()


def test_a_cancel_stops_only_a_job_this_server_started(tiny_build, tmp_path, monkeypatch):
    from dashboard.app import create_app

    monkeypatch.setenv("SIGATLAS_CACHE_DIR", str(tmp_path / "cache"))
    manager = create_app(tiny_build[1])._background_manager
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # any process of the server's user
    try:
        manager.terminate_job(str(bystander.pid))
        assert bystander.poll() is None, "a cancel stopped a process that is no job of this server"
        job = manager.call_job_fn("k", _sleep_job, (), {})  # a job it starts itself is stopped
        manager.terminate_job(str(job))
        deadline = __import__("time").time() + 10
        while manager.job_running(job) and __import__("time").time() < deadline:
            __import__("time").sleep(0.1)
        assert not manager.job_running(job)
    finally:
        bystander.kill()
        bystander.wait()


def _sleep_job(*args, **kwargs):
    import time

    time.sleep(60)


# -- 8. a full, removed or read-only cache folder ---------------------------------------------------------
def _api(client, cut: int):
    resp = client.get(f"{QUERY}&cut={cut}")
    return resp.status_code, resp.get_json()


@pytest.mark.parametrize("fault", ["sqlite", "enospc"])
def test_a_full_cache_disk_answers_503_naming_the_folder_then_recovers(tiny_build, tmp_path, monkeypatch, fault):
    """Disk full, simulated where the cache writes: SQLite's own "database or disk is full", or
    ENOSPC from the file a large value goes to (diskcache.Disk.store)."""
    import errno
    import sqlite3

    import diskcache

    from dashboard.app import create_app

    monkeypatch.setenv("SIGATLAS_CACHE_DIR", str(tmp_path / "cache"))
    client = create_app(tiny_build[1]).server.test_client()
    assert _api(client, 90)[0] == 200
    real_set, real_store = diskcache.Cache.set, diskcache.Disk.store

    def full_set(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    def full_store(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fault == "sqlite":
        monkeypatch.setattr(diskcache.Cache, "set", full_set)
    else:
        monkeypatch.setattr(diskcache.Disk, "store", full_store)
    status, body = _api(client, 91)
    assert status == 503, body
    folder = next((tmp_path / "cache").iterdir())
    assert str(folder) in body["error"] and "no space left" in body["error"] and "free space" in body["error"]
    monkeypatch.setattr(diskcache.Cache, "set", real_set)
    monkeypatch.setattr(diskcache.Disk, "store", real_store)
    assert _api(client, 91)[0] == 200  # space freed: answered, no restart


def test_a_cache_folder_removed_while_serving_is_made_again(tiny_build, tmp_path, monkeypatch):
    import shutil

    from dashboard.app import create_app

    monkeypatch.setenv("SIGATLAS_CACHE_DIR", str(tmp_path / "cache"))
    app = create_app(tiny_build[1])
    client = app.server.test_client()
    assert _api(client, 90)[0] == 200
    folder = next((tmp_path / "cache").iterdir())
    shutil.rmtree(folder)
    status, body = _api(client, 92)
    assert status == 200, body
    assert (folder / "dashboard-results" / "cache.db").is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    handle = app._background_manager.handle  # the job store, also removed: made again, its secret kept
    secret = app._get_signing_secret()
    handle.set("probe", 1)
    assert handle.get("probe") == 1 and (folder / "dash-jobs" / "cache.db").is_file()
    assert handle.get("__dash_background_signing_secret__") == secret


def test_an_unwritable_cache_folder_is_refused_in_one_line(tmp_path, monkeypatch):
    """Read-only, simulated at the write (EROFS from os.open: the tests may run as root, whom
    permissions do not stop); the real servers are refused for an uncreatable folder below."""
    import errno

    from compute.atlas import CacheError, ResultCache

    cache = ResultCache("fp", tmp_path / "ro")
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(CacheError, match=r"cache folder .*/ro cannot be written \(the file system is read-only\).*SIGATLAS_CACHE_DIR"):
        cache.check_writable()


@pytest.mark.parametrize("server", ["dashboard", "gunicorn"])
def test_servers_refuse_an_uncreatable_cache_folder_with_status_2_and_one_line(tiny_build, server):
    where = "/sys/sigatlas-test-cache"  # /sys refuses new folders, to root as well
    if server == "dashboard":
        cmd = [sys.executable, "-m", "dashboard", "--atlas", str(tiny_build[1]), "--port", str(free_port())]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-b", f"127.0.0.1:{free_port()}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=_env(SIGATLAS_CACHE_DIR=where, SIGATLAS_ATLAS=tiny_build[1]))
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and where in errors[0] and "SIGATLAS_CACHE_DIR" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "Booting worker" not in proc.stderr


def test_gunicorn_refuses_a_damaged_atlas_with_status_2_every_time(tiny_build, tmp_path):
    """Issue 33: 1 of 5 such starts ended by SIGABRT instead of status 2."""
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(tiny_build[1], copy)
    target = sorted((copy / "studies").iterdir())[1] / "attr.data.npy"
    raw = bytearray(target.read_bytes())
    raw[-3] ^= 0x01
    target.write_bytes(bytes(raw))
    outcomes = []
    for _ in range(5):
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-b", f"127.0.0.1:{free_port()}"]
        proc = subprocess.run(gunicorn, cwd=REPO, capture_output=True, text=True, timeout=120,
                              env=_env(SIGATLAS_ATLAS=copy, SIGATLAS_CACHE_DIR=tmp_path / "cache"))
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        outcomes.append((proc.returncode, len(errors)))
    assert outcomes == [(2, 1)] * 5, outcomes


def test_a_damaged_cache_database_is_discarded_and_made_again(tmp_path, caplog):
    """Issue 33, item 2, one layer down: the result cache's SQLite file itself damaged (pages
    overwritten) answered 503 for good. It is now checked by SQLite, discarded (logged) and made
    again; the values it held are computed anew, never read from the damaged file."""
    import logging

    from compute.atlas import ResultCache

    cache = ResultCache("fp", tmp_path / "results")
    for i in range(200):
        cache.set(f"k{i}", {"value": i, "pad": "x" * 500})
    assert cache.get("k7") == {"value": 7, "pad": "x" * 500}
    cache.close()
    db = tmp_path / "results" / "cache.db"
    raw = bytearray(db.read_bytes())
    raw[100:] = b"\\xff" * (len(raw) - 100)  # every page after the header's first bytes
    db.write_bytes(bytes(raw))
    again = ResultCache("fp", tmp_path / "results")
    with caplog.at_level(logging.ERROR, logger="sigatlas.cache"):
        assert again.get("k7") is None  # not served, not a 503
    assert any("damaged" in r.getMessage() for r in caplog.records)
    again.set("k7", {"value": 70})
    assert again.get("k7") == {"value": 70}
    # a healthy database is never discarded by the check (another worker may have made it anew)
    from compute.atlas._cache import _discard_if_damaged

    assert _discard_if_damaged(tmp_path / "results") is False and again.get("k7") == {"value": 70}


def test_a_thread_s_cache_connection_is_closed_under_the_fork_guard_when_the_thread_ends(tmp_path):
    # SQLite's close takes its global mutexes: done by a thread that ends while another forks, the
    # job inherited them locked and hung in its first connect (seen under the threaded dev server)
    import threading

    from compute.atlas import ResultCache, sqlite_guard

    cache = ResultCache("x", tmp_path / "c")
    cache.set("k", 1)
    worker = threading.Thread(target=lambda: cache.get("k"))
    with sqlite_guard():  # as a fork does
        worker.start()
        worker.join(1.0)
        # the thread's own call waits for the guard, and so does its connection's close at its end
        assert worker.is_alive()
    worker.join(10)
    assert not worker.is_alive()


_FORK_CHURN = r"""
import os, sys, threading, time
from compute.atlas import ResultCache, sqlite_guard

cache = ResultCache("x", sys.argv[1])
cache.set("k", 1)
stop = False

def churn():  # request threads that read the cache and end, as a thread-per-request server's do
    while not stop:
        threads = [threading.Thread(target=lambda: cache.get("k")) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

for _ in range(2):
    threading.Thread(target=churn, daemon=True).start()
hung = 0
for _ in range(int(sys.argv[2])):
    with sqlite_guard():  # how the job manager forks
        pid = os.fork()
    if pid == 0:
        cache.get("k")
        os._exit(0)
    deadline = time.monotonic() + 10
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            hung += 1
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            break
        time.sleep(0.002)
stop = True
print(hung)
"""


@pytest.mark.slow
def test_jobs_forked_while_request_threads_end_never_hang_in_the_cache(tmp_path):
    # before the fix about 1 fork in 70 hung here (3 of 208 on an idle machine): 150 forks meet it with
    # ~88% chance (the test above checks the mechanism itself, every time); ~15 s on an idle machine
    out = subprocess.run([sys.executable, "-c", _FORK_CHURN, str(tmp_path / "c"), "150"], capture_output=True, text=True,
                         timeout=1200, env=_env(), cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", f"{out.stdout.strip()} of 150 forked jobs hung in the cache"

"""At most N dashboard jobs compute at once (issue 16, failure 3): the rest wait in line, told their
place."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import pytest

from dashboard.jobs import JOBS_ENV, JobSlots, default_job_limit


def _job(directory: str, log: str, hold_s: float) -> None:
    slots = JobSlots(directory, 2, poll_s=0.02)
    waits = []
    with slots.slot(lambda pos, n: waits.append([pos, n])):
        start = time.time()
        time.sleep(hold_s)
        end = time.time()
    with open(log, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "start": start, "end": end, "waits": waits}) + "\n")


def test_at_most_the_limit_run_at_once_and_the_rest_are_told_their_place(tmp_path):
    ctx = mp.get_context("fork")
    log = tmp_path / "log.jsonl"
    procs = [ctx.Process(target=_job, args=(str(tmp_path / "slots"), str(log), 0.4)) for _ in range(6)]
    for p in procs:
        p.start()
        time.sleep(0.03)  # arrival order
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 6
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2
    waited = [r for r in runs if r["waits"]]
    assert len(waited) >= 3  # six jobs, two slots: at least four queued (timing may let one through)
    assert all(1 <= pos <= n for r in waited for pos, n in r["waits"])
    assert any(pos >= 2 for r in waited for pos, _ in r["waits"])  # someone was told it was not next


def _hold_forever(directory: str) -> None:
    with JobSlots(directory, 1).slot():
        time.sleep(600)


def test_a_killed_job_frees_its_slot_and_its_place(tmp_path):
    ctx = mp.get_context("fork")
    holder = ctx.Process(target=_hold_forever, args=(str(tmp_path),))
    holder.start()
    slots = JobSlots(tmp_path, 1, poll_s=0.02)
    deadline = time.time() + 30
    while slots.busy() == 0 and time.time() < deadline:
        time.sleep(0.02)
    assert slots.busy() == 1
    os.kill(holder.pid, signal.SIGKILL)  # a cancelled job is killed
    holder.join(30)
    t0 = time.time()
    with slots.slot():
        assert slots.busy() == 1
    assert time.time() - t0 < 5 and slots.busy() == 0
    assert list((tmp_path / "queue").iterdir()) == []


def test_the_limit_comes_from_the_environment_or_the_cpu_count():
    assert default_job_limit({JOBS_ENV: "3"}) == 3
    assert default_job_limit({}) == max(1, os.cpu_count() or 1)
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=JOBS_ENV):
            default_job_limit({JOBS_ENV: bad})


def test_a_query_being_computed_is_waited_for_not_computed_again(tmp_path):
    """JobSlots.computing: a second asker of the same key (another thread here; another worker's
    job in a server) waits until the first is done, told so once; another key does not wait."""
    import threading

    slots = JobSlots(tmp_path, 2, poll_s=0.02)
    inside, events, told = threading.Event(), [], []

    def first():
        with slots.computing("key-a"):
            inside.set()
            time.sleep(0.4)
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    t0 = time.monotonic()
    with slots.computing("key-a", lambda: told.append(time.monotonic())):
        events.append("second in")
    assert events == ["first done", "second in"] and len(told) == 1
    assert time.monotonic() - t0 > 0.2
    thread.join(10)
    # a key on another lock file is not held up by one being computed
    other = next(k for k in (f"key-{i}" for i in range(1000)) if _stripe(k) != _stripe("key-a"))
    with slots.computing("key-a"):
        t0 = time.monotonic()
        with slots.computing(other, lambda: told.append("waited")):
            pass
    assert len(told) == 1 and time.monotonic() - t0 < 1


def _stripe(key: str) -> int:
    import hashlib

    from dashboard.jobs import KEY_STRIPES

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % KEY_STRIPES

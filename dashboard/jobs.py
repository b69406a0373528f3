"""At most N dashboard jobs compute at once, across every server process of the machine.

Each query the page starts runs as a background job (a forked process: progress, cancel). Left
alone, a room opening links at once forks one computing process per query (13 at once, 4 GB in
one load test). A job first takes one of N slots, lock files in the atlas's cache folder that
every gunicorn worker shares (``fcntl.flock``: the operating system frees a slot when its process
ends, however it ends); the others wait in arrival order, each told its place in the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from compute.atlas import cache_error, private_folder

__all__ = ["JOBS_ENV", "KEY_STRIPES", "JobSlots", "default_job_limit"]

JOBS_ENV = "SIGATLAS_MAX_JOBS"
KEY_STRIPES = 256  # lock files for "this query is being computed" (JobSlots.computing): a bounded set


def _release(fh) -> None:
    """Unlocks and closes a held lock file. The unlock is explicit: a job forked while this
    process held it has a copy of the open file, and only an unlock frees the lock for it."""
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()


def default_job_limit(environ=None) -> int:
    """$SIGATLAS_MAX_JOBS when set (a whole number >= 1), else the machine's CPU count."""
    environ = os.environ if environ is None else environ
    text = environ.get(JOBS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"${JOBS_ENV}={text!r}: must be a whole number of at least 1")
        return int(text)
    return max(1, os.cpu_count() or 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobSlots:
    """``limit`` slots under ``directory`` (created). ``with slots.slot(on_wait): ...`` runs the
    block holding one; ``on_wait(position, waiting)`` is called while queued (position 1: next)."""

    def __init__(self, directory: str | Path, limit: int, poll_s: float = 0.2):
        self.directory = Path(directory)
        self.limit = int(limit)
        self.poll_s = poll_s
        self._ensure()

    def _ensure(self) -> None:
        """The folders, made again (private) when removed while serving; CacheError when that fails."""
        if not (self.directory / "queue").is_dir():
            private_folder(self.directory)
            private_folder(self.directory / "queue")

    def _queue(self) -> list[Path]:
        """The waiting tickets in arrival order; tickets of processes that ended are removed."""
        tickets = []
        self._ensure()
        for p in self.directory.joinpath("queue").iterdir():
            stamp, _, pid = p.name.partition("-")
            if not (stamp.isdigit() and pid.isdigit()) or not _alive(int(pid)):
                p.unlink(missing_ok=True)
                continue
            tickets.append((int(stamp), p))
        return [p for _, p in sorted(tickets)]

    def _try_take(self):
        for i in range(self.limit):
            fh = open(self.directory / f"slot-{i}.lock", "a+")  # noqa: SIM115 - held open while the slot is
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                fh.close()
        return None

    def busy(self) -> int:
        """How many slots are held now."""
        self._ensure()
        held = 0
        for i in range(self.limit):
            with open(self.directory / f"slot-{i}.lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fh, fcntl.LOCK_UN)
                except BlockingIOError:
                    held += 1
        return held

    @contextlib.contextmanager
    def slot(self, on_wait: Callable[[int, int], None] | None = None) -> Iterator[None]:
        self._ensure()
        ticket = self.directory / "queue" / f"{time.time_ns()}-{os.getpid()}"
        try:
            ticket.touch()
        except OSError as exc:
            raise cache_error(self.directory, exc) from exc
        held = None
        try:
            last = None
            while True:
                queue = self._queue()
                position = queue.index(ticket) if ticket in queue else 0
                # only the first ``limit`` in line may take a slot: arrival order is kept
                if position < self.limit and (held := self._try_take()) is not None:
                    break
                if on_wait is not None and (position, len(queue)) != last:
                    on_wait(position + 1, len(queue))
                    last = (position, len(queue))
                time.sleep(self.poll_s)
            ticket.unlink(missing_ok=True)
            yield
        finally:
            ticket.unlink(missing_ok=True)
            if held is not None:
                _release(held)

    @contextlib.contextmanager
    def computing(self, key: str, on_busy: Callable[[], None] | None = None) -> Iterator[None]:
        """Runs the block as the one process (or thread) of the machine computing ``key``: one that
        asks for the same key meanwhile waits here until the block ends (and then finds its result
        stored), instead of computing it a second time beside it. ``on_busy()`` is called once
        when it has to wait. Keys share KEY_STRIPES lock files: two queries whose keys fall on
        the same file run one after the other."""
        self._ensure()
        stripe = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % KEY_STRIPES
        folder = self.directory / "computing"
        if not folder.is_dir():
            private_folder(folder)
        fh = open(folder / f"{stripe:03d}.lock", "a+")  # noqa: SIM115 - held open while computing
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_busy is not None:
                    on_busy()
                fcntl.flock(fh, fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            raise
        try:
            yield
        finally:
            _release(fh)

"""``create_app(atlas_path)``: the SigAtlas dashboard (Plotly Dash + Mantine). Reads the atlas only.

The app mounts the parts that live in their own modules: the page (``dashboard.layout``), the
callbacks (``dashboard.callbacks``), the JSON API (``dashboard.api``) and the request rules
(``dashboard.serving``) and the check of every callback request's values (``dashboard.payloads``).
Flow: the URL's query string is the whole state (``dashboard.state``);
opening a link fills the controls and runs the query; the query runs as a background job
(progress, cancel) whose result is stored in the disk cache under a key, from which the views are
rendered, so switching a grouping, colour or ordering never recomputes the query. Here: the job
manager those background jobs share, and the warm-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
from importlib import resources
from pathlib import Path

import dash

from compute.atlas import cache_error, fork_safe_cache, private_folder, sqlite_guard
from compute.query import prepare_atlas
from dashboard import api, callbacks, forksafe, payloads, serving
from dashboard.callbacks import answer_query, link
from dashboard.data import FORK_GUARD, DashboardData
from dashboard.layout import build_layout

# answer_query: the browser's query path without a browser (tests and scripts call it from here)
__all__ = ["answer_query", "create_app"]

_log = logging.getLogger("sigatlas.jobs")


class _SharedJobManager(dash.DiskcacheManager):
    """Dash's DiskcacheManager for jobs shared by many users and by several server processes
    (gunicorn workers of one machine polling each other's jobs through the same diskcache).

    Each started job gets its own result key: Dash derives it from the callback's inputs alone,
    so two users starting the same query at once (a link opened by a room) shared one key, the
    first poll took the result away and the other page never updated. A finished job that
    another worker forked stays a zombie until that worker reaps it: it is not waited for
    (psutil waited 1 s for it, holding the cache's write lock). A cancel stops only a process
    that a worker of this server started as a job (recorded in the job store, which only the
    server's user can read): a job handle names a process id, and a forged one must not make the
    server kill any process of its user (issue 33)."""

    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        return f"{super().build_cache_key(fn, args, cache_args_to_ignore, triggered)}-{secrets.token_hex(8)}"

    def call_job_fn(self, key, job_fn, args, context):
        # never forked while another thread of this process holds a lock the job needs (FORK_GUARD)
        # or is inside SQLite (sqlite_guard: the caches, this manager's included, take it per call)
        with FORK_GUARD, sqlite_guard():
            pid = super().call_job_fn(key, job_fn, args, context)
        handle = getattr(self, "handle", None)  # (a manager built without a store, in tests, records nothing)
        if handle is not None:
            _record_job(handle, pid)  # the one kind of process a cancel may stop (terminate_job)
        return pid

    def job_running(self, job):
        # Dash's own check reads the process twice (it exists, then its status): a job that ends
        # between the two raised NoSuchProcess, and the page's poll got HTTP 500 (the mixed-load
        # test saw it once). An ended job is not running.
        import psutil

        try:
            return super().job_running(job)
        except psutil.NoSuchProcess:
            return False

    def terminate_job(self, job):
        import psutil

        if job is None:
            return
        try:
            pid = int(job)
            process = psutil.Process(pid)
            record = self.handle.get(f"{_JOB_RECORD}{pid}")
            # only a process this server forked as a job (recorded when it started, the same
            # process: same parent, same start time); a pid from a request alone stops nothing
            if not (isinstance(record, dict) and record.get("parent") == process.ppid() and record.get("started") == process.create_time()):
                _log.warning("refused to stop process %s: not a query job this server started", pid)
                return
            if process.status() == psutil.STATUS_ZOMBIE:
                return  # finished; its parent reaps it when it next starts a job
        except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return
        super().terminate_job(job)
        self.handle.delete(f"{_JOB_RECORD}{pid}")


_JOB_RECORD = "sigatlas-job-"
_SIGNING_SECRET_KEY = dash.DiskcacheManager.SIGNING_SECRET_KEY
_JOB_RECORD_S = 7 * 24 * 3600  # a job's record outlives any job


def _record_job(handle, pid) -> None:
    import psutil

    try:
        handle.set(f"{_JOB_RECORD}{int(pid)}", {"parent": os.getpid(), "started": psutil.Process(int(pid)).create_time()},
                   expire=_JOB_RECORD_S)
    except (ValueError, TypeError, psutil.NoSuchProcess):
        pass  # ended already: nothing to cancel


def _background_manager(data: DashboardData):
    directory = data.atlas.cache.directory / "dash-jobs"
    was_open = private_folder(directory)  # 0700: the store holds the secret that signs job handles
    # its per-thread connections close under the guard too, never at a request thread's end
    guarded = _GuardedCache(directory, lambda: fork_safe_cache(directory))
    manager = _SharedJobManager(guarded.cache)
    manager.handle = guarded  # Dash reads and writes the store through it
    if was_open:  # the folder was readable by others: its secret may be known, so a new one is made
        _log.warning("job store %s was readable by other users; made private, its signing secret replaced", directory)
        manager.handle.delete(manager.SIGNING_SECRET_KEY)
    return manager


class _GuardedCache:
    """The job store: a diskcache.Cache whose every call (and every transaction, whole) holds
    sqlite_guard, so that a job is never forked while a poll of another job is inside SQLite;
    made again (private) when its folder was removed while serving; a full or unwritable folder
    raised as CacheError (503, naming the folder and the fix)."""

    def __init__(self, directory, make):
        self._directory, self._make = directory, make
        self._cache = None
        self._open()

    def _open(self):
        if self._cache is not None and (self._directory / "cache.db").exists():
            return self._cache
        secret = None
        if self._cache is not None:  # removed while serving: keep the signing secret the pages' handles carry
            _log.warning("job store %s was removed; making it again", self._directory)
            with contextlib.suppress(Exception):
                secret = self._cache.get(_SIGNING_SECRET_KEY)
        private_folder(self._directory)
        try:
            with sqlite_guard():
                self._cache = self._make()
                if secret is not None:
                    self._cache.set(_SIGNING_SECRET_KEY, secret)
        except (OSError, sqlite3.Error) as exc:
            raise cache_error(self._directory, exc) from exc
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            with contextlib.suppress(OSError):
                os.chmod(self._directory / name, 0o600)
        return self._cache

    @property
    def cache(self):
        return self._open()

    def transact(self, *args, **kwargs):
        @contextlib.contextmanager
        def guarded():
            try:
                with sqlite_guard(), self._open().transact(*args, **kwargs) as tx:
                    yield tx
            except (OSError, sqlite3.Error) as exc:
                raise cache_error(self._directory, exc) from exc

        return guarded()

    def __getattr__(self, name):
        attr = getattr(self._open(), name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                with sqlite_guard():
                    return getattr(self._open(), name)(*args, **kwargs)
            except (OSError, sqlite3.Error) as exc:
                raise cache_error(self._directory, exc) from exc

        return call


def _warm_up(data: DashboardData) -> None:
    """Do in the background what the first query would otherwise wait for (``prepare_atlas``: the
    cells table, every study's store and the consolidated one, the compiled query loops, the gene
    symbol table; about 3 s on the demo), so that background jobs forked later inherit it."""
    import threading

    def work():
        try:
            with FORK_GUARD:  # a job forked meanwhile would inherit the locks prepare holds
                prepare_atlas(data.atlas)
        except Exception:  # noqa: BLE001 - the first query will load (and report) what failed itself
            pass

    threading.Thread(target=work, name="sigatlas-warm-up", daemon=True).start()


def _page_server(data: DashboardData):
    """The layout function: the page built once, or, for a page opened from a link (its Referer,
    callbacks.link.link_search), a page built with the link applied (callbacks.link.opened_page).
    A link that cannot be applied there is left to the restore callback, which reports its errors."""
    page = build_layout(data)

    def serve():
        search = link.link_search()
        if not search:
            return page
        try:
            return link.opened_page(data, build_layout(data), search)
        except Exception:  # noqa: BLE001 - the page opens as without a link; restore applies it and says what is wrong
            logging.getLogger(__name__).exception("the link %s could not be applied as the page was built", search[:200])
            return page

    return serve


def _preloading_index(app: dash.Dash) -> str:
    """Dash's page, with its layout and callback list asked for as the page's HTML arrives
    (preloads, whose answers Dash's renderer then uses): the renderer asked for them only after its
    scripts had run, and a link's layout (its ranking, callbacks.link.opened_page) is built on the
    server meanwhile. The preload carries the page's address as its Referer, as the renderer's own
    request did. Paths are relative to the app's prefix (a proxy's path, dashboard.proxy)."""
    preloads = "".join(f'<link rel="preload" href="{app.get_relative_path(path)}" as="fetch" crossorigin="anonymous">'
                       for path in ("/_dash-layout", "/_dash-dependencies"))
    if "{%css%}" not in app.index_string:
        raise RuntimeError("Dash's page template has no {%css%} slot: the preloads have no place")
    return app.index_string.replace("{%css%}", "{%css%}\n        " + preloads, 1)


def create_app(atlas_path: str | Path, *, credentials: tuple[str, str] | None = None) -> dash.Dash:
    """Build the Dash app for the atlas at ``atlas_path`` (opened and validated once), with the
    JSON API (``dashboard.api``), a request size limit and, given ``credentials`` (user,
    password), basic auth on every route. The Flask server is ``app.server``. Raises CacheError
when the atlas's cache folder cannot be made or written (AtlasFormatError for the atlas)."""
    data = DashboardData(atlas_path)
    # a cache folder this server cannot write is refused now, in one line, not by each request
    data.atlas.cache.check_writable()
    app = dash.Dash(
        __name__,
        title=f"SigAtlas · {data.atlas.name}",
        assets_folder=str(resources.files("dashboard") / "assets"),
        background_callback_manager=_background_manager(data),
        suppress_callback_exceptions=False,
    )
    app.layout = _page_server(data)
    # Dash keeps the page a layout function first built as the page's "validation layout" and writes
    # it into every page's HTML (160 KB), where the browser parses it and walks it once more before
    # checking the callbacks; the page itself holds every id (each tab's panel is in it, mounted or
    # not), so the callbacks are checked against the page
    app.validation_layout = None
    app.index_string = _preloading_index(app)
    serving.protect(app.server, credentials)
    api.register(app.server, data)
    callbacks.register(app, data)
    payloads.install(app)  # after the callbacks: requests are checked against them
    forksafe.preload()  # no job may fork while a thread imports what the job needs (dashboard.forksafe)
    _warm_up(data)
    return app

"""``create_app(atlas_path)``: the SigAtlas dashboard (Plotly Dash + Mantine). Reads the atlas only.

The app mounts the parts that live in their own modules: the page (``dashboard.layout``), the
callbacks (``dashboard.callbacks``), the JSON API (``dashboard.api``) and the request rules
(``dashboard.serving``) and the check of every callback request's values (``dashboard.payloads``). Flow: the URL's query string is the whole state (``dashboard.state``);
opening a link fills the controls and runs the query; the query runs as a background job
(progress, cancel) whose result is stored in the disk cache under a key, from which the views are
rendered, so switching a grouping, colour or ordering never recomputes the query. Here: the job
manager those background jobs share, and the warm-up.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

import dash

from compute.atlas import sqlite_guard
from compute.reference import assets_dir
from dashboard import api, callbacks, payloads, serving
from dashboard.callbacks import answer_query
from dashboard.data import FORK_GUARD, DashboardData
from dashboard.layout import build_layout

# answer_query: the browser's query path without a browser (tests and scripts call it from here)
__all__ = ["answer_query", "create_app"]


class _SharedJobManager(dash.DiskcacheManager):
    """Dash's DiskcacheManager for jobs shared by many users and by several server processes
    (gunicorn workers of one machine polling each other's jobs through the same diskcache).

    Each started job gets its own result key: Dash derives it from the callback's inputs alone,
    so two users starting the same query at once (a link opened by a room) shared one key, the
    first poll took the result away and the other page never updated. A finished job that
    another worker forked stays a zombie until that worker reaps it: it is not waited for
    (psutil waited 1 s for it, holding the cache's write lock)."""

    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        return f"{super().build_cache_key(fn, args, cache_args_to_ignore, triggered)}-{secrets.token_hex(8)}"

    def call_job_fn(self, key, job_fn, args, context):
        # never forked while another thread of this process holds a lock the job needs (FORK_GUARD)
        # or is inside SQLite (sqlite_guard: the caches, this manager's included, take it per call)
        with FORK_GUARD, sqlite_guard():
            return super().call_job_fn(key, job_fn, args, context)

    def terminate_job(self, job):
        import psutil

        if job is None:
            return
        try:
            if psutil.Process(int(job)).status() == psutil.STATUS_ZOMBIE:
                return  # finished; its parent reaps it when it next starts a job
        except psutil.NoSuchProcess:
            return
        super().terminate_job(job)


def _background_manager(data: DashboardData):
    import diskcache

    directory = data.atlas.cache.directory / "dash-jobs"
    directory.mkdir(parents=True, exist_ok=True)
    manager = _SharedJobManager(diskcache.Cache(str(directory)))
    manager.handle = _GuardedCache(manager.handle)
    return manager


class _GuardedCache:
    """A diskcache.Cache whose every call (and every transaction, whole) holds sqlite_guard, so
    that a job is never forked while a poll of another job is inside SQLite."""

    def __init__(self, cache):
        self._cache = cache

    def transact(self, *args, **kwargs):
        @contextlib.contextmanager
        def guarded():
            with sqlite_guard(), self._cache.transact(*args, **kwargs) as tx:
                yield tx

        return guarded()

    def __getattr__(self, name):
        attr = getattr(self._cache, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with sqlite_guard():
                return attr(*args, **kwargs)

        return call


def _warm_up(data: DashboardData) -> None:
    """Do in the background what the first query would otherwise wait for (``Atlas.prepare``: the
    cells table, every study's store and the consolidated one, the compiled query loops, the gene
    symbol table; about 3 s on the demo), so that background jobs forked later inherit it."""
    import threading

    def work():
        try:
            with FORK_GUARD:  # a job forked meanwhile would inherit the locks prepare holds
                data.atlas.prepare()
        except Exception:  # noqa: BLE001 - the first query will load (and report) what failed itself
            pass

    threading.Thread(target=work, name="sigatlas-warm-up", daemon=True).start()


def create_app(atlas_path: str | Path, *, credentials: tuple[str, str] | None = None) -> dash.Dash:
    """Build the Dash app for the atlas at ``atlas_path`` (opened and validated once), with the
    JSON API (``dashboard.api``), a request size limit and, given ``credentials`` (user,
    password), basic auth on every route. The Flask server is ``app.server``."""
    data = DashboardData(atlas_path)
    app = dash.Dash(
        __name__,
        title=f"SigAtlas · {data.atlas.name}",
        assets_folder=str(assets_dir() / "dashboard"),
        background_callback_manager=_background_manager(data),
        suppress_callback_exceptions=False,
    )
    app.layout = build_layout(data)
    serving.protect(app.server, credentials)
    api.register(app.server, data)
    callbacks.register(app, data)
    payloads.install(app)  # after the callbacks: requests are checked against them
    _warm_up(data)
    return app

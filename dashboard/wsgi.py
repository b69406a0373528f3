"""Production serving with gunicorn: several worker processes sharing one disk cache.

    SIGATLAS_ATLAS=atlas/demo gunicorn -c python:dashboard.wsgi

This module is both the WSGI application, ``dashboard.wsgi:server`` (the Flask server of
``create_app($SIGATLAS_ATLAS)``, built on first access, so in each worker and never in gunicorn's
master), and a gunicorn configuration: the lower-case settings below (command-line flags such
as ``-w 8`` or ``-b HOST:PORT`` override them) and an ``on_starting`` hook that checks the
atlas and the credentials once, before any worker starts, and prints a banner when binding
beyond loopback. Basic auth: ``SIGATLAS_AUTH=user:password`` or ``SIGATLAS_AUTH_FILE=FILE``.

Query results, the symbol tables' derived files and Dash's background jobs live in the atlas's
cache folder ($SIGATLAS_CACHE_DIR or ~/.cache/sigatlas/<atlas>/), which diskcache lets the
workers of one machine share: a query started through one worker is polled through any other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from compute.errors import SigAtlasError
from dashboard.serving import (
    ServingError,
    is_loopback,
    load_credentials,
    private_files,
    remote_warning,
)

if TYPE_CHECKING:
    from flask import Flask

# ServingError, is_loopback, load_credentials and remote_warning live in dashboard.serving (imported
# here for the hooks below and for scripts that import them from this module)
__all__ = ["ATLAS_ENV", "ServingError", "atlas_path_from_env", "is_loopback", "load_credentials", "refuse", "remote_warning", "server"]

ATLAS_ENV = "SIGATLAS_ATLAS"

# -- gunicorn settings (read by ``gunicorn -c python:dashboard.wsgi``) ----------------------------
wsgi_app = "dashboard.wsgi:server"
bind = ["127.0.0.1:8050"]  # this machine only; another address is an explicit -b, announced loudly
workers = 4
# threaded workers: a connection whose request has not fully arrived (a slow or stalled client)
# holds one thread, not a whole worker; the worker's main loop keeps answering gunicorn's
# heartbeat, so such a client never gets a worker killed for a timeout. For more hostile
# networks, put a buffering proxy in front (README, "Serving").
worker_class = "gthread"
threads = 8
# an idle keep-alive connection is closed after this many seconds
keepalive = 5
# a request computes at most one query (an API query with up to 1,000 null draws, or a figure
# render); the dashboard's long queries run as background jobs outside the request
timeout = 120
# gunicorn's largest finite request line: a shared link carries the gene list, so links stay
# openable up to about 1,000 genes (longer lists: paste them, or POST them to the API)
limit_request_line = 8190
proc_name = "sigatlas"
# gunicorn's control socket has one default path per user: a second server (or a test run beside
# a demo) would take it over; nothing here uses it
control_socket_disable = True

server: Flask  # the WSGI application, built on first access (``__getattr__`` below)


def atlas_path_from_env(environ=None) -> Path:
    """The atlas folder named by $SIGATLAS_ATLAS. Raises ServingError when unset or not a folder."""
    environ = os.environ if environ is None else environ
    value = environ.get(ATLAS_ENV, "").strip()
    if not value:
        raise ServingError(f"${ATLAS_ENV} is not set: name the atlas folder to serve, e.g. "
                           f"{ATLAS_ENV}=atlas/demo gunicorn -c python:dashboard.wsgi")
    path = Path(value)
    if not path.is_dir():
        raise ServingError(f"${ATLAS_ENV}={value}: no such folder (from {Path.cwd()}); build one with "
                           f"`python -m compute build data_manifest.yaml`")
    return path


def _bind_host(address: str) -> str | None:
    """The host of a gunicorn bind address ("HOST:PORT", "[::1]:PORT"); None for a unix socket or fd."""
    if address.startswith(("unix:", "fd://")):
        return None
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host or "0.0.0.0"


def on_starting(arbiter) -> None:
    """gunicorn hook (master, once): refuse a missing or unreadable atlas or malformed credentials
    before forking workers, and print a banner for an address beyond loopback."""
    private_files()  # before the cache folder is made: the workers inherit it
    try:
        path = atlas_path_from_env()
        from compute.atlas import Atlas

        # sizes and structure at open, then every study's checksums (reading its cells table checks
        # them): a damaged atlas is refused here, in one line, not by every worker failing to boot
        atlas = Atlas.open(path)
        _ = atlas.cells
        atlas.cache.check_writable()  # a read-only or uncreatable cache folder: refused here too
        credentials = load_credentials()
    except SigAtlasError as exc:
        refuse(str(exc))
    remote = [a for a in arbiter.cfg.bind if (h := _bind_host(a)) is not None and not is_loopback(h)]
    if remote:
        print(remote_warning(", ".join(remote), authenticated=credentials is not None), file=sys.stderr, flush=True)
    auth = " (basic auth on)" if credentials else ""
    print(f"SigAtlas: serving atlas {path} on {', '.join(arbiter.cfg.bind)} with {arbiter.cfg.workers} workers{auth}", flush=True)


def refuse(message: str) -> None:
    """Print ``error: message`` and end gunicorn's master with status 2, at once: ``os._exit``, not
    ``sys.exit``, because the atlas check has started threads (pyarrow's pool, read the cells
    table) that an interpreter shutting down inside gunicorn's arbiter sometimes aborted on
    (SIGABRT in 1 of 5 starts on a damaged atlas, where status 2 was promised)."""
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    os._exit(2)


def create_server():
    """The Flask server of the dashboard for $SIGATLAS_ATLAS, with basic auth when credentials are set."""
    from dashboard.app import create_app

    return create_app(atlas_path_from_env(), credentials=load_credentials()).server


def __getattr__(name: str):
    # ``server`` is built on first access: importing this module as gunicorn's configuration (in
    # the master) must not open the atlas or the caches that each worker opens for itself
    if name == "server":
        app_server = create_server()
        globals()["server"] = app_server
        return app_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

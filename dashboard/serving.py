"""Serving rules, for Flask's own server (``python -m dashboard``) and gunicorn (``dashboard.wsgi``)
alike: request limits, HTTP basic auth, where credentials come from, and what binding beyond
loopback needs (and prints)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from pathlib import Path

from compute.errors import CacheError, SigAtlasError

_log = logging.getLogger("sigatlas.serving")

__all__ = ["AUTH_ENV", "AUTH_FILE_ENV", "MAX_REQUEST_BYTES", "ServingError", "cache_unavailable", "is_loopback", "private_files", "load_credentials", "protect",
           "remote_warning", "require_basic_auth"]

AUTH_ENV = "SIGATLAS_AUTH"  # "user:password"
AUTH_FILE_ENV = "SIGATLAS_AUTH_FILE"  # a file whose first line is "user:password"
# every request body (Flask refuses larger ones with 413 before reading them); a gene file of
# upload.MAX_BYTES arrives inside a callback request as base64, 4/3 of its size, plus the state
MAX_REQUEST_BYTES = 8 * 2**20


class ServingError(SigAtlasError, ValueError):
    """The server cannot start as configured: no atlas given, malformed credentials."""


def _parse_credentials(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ServingError(f"{where} must hold 'user:password' (both non-empty, separated by the first ':')")
    return user, password


def load_credentials(auth_file: str | Path | None = None, environ=None) -> tuple[str, str] | None:
    """(user, password) for basic auth, or None for none: from ``auth_file`` (its first line
    "user:password"), else the file named by $SIGATLAS_AUTH_FILE, else $SIGATLAS_AUTH. Never from
    a command-line value, which every user of the machine can read in ``ps``. Raises ServingError."""
    environ = os.environ if environ is None else environ
    auth_file = auth_file or environ.get(AUTH_FILE_ENV) or None
    if auth_file is not None:
        try:
            lines = Path(auth_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ServingError(f"cannot read the credentials file {auth_file}: {exc}") from exc
        return _parse_credentials(lines[0] if lines else "", f"the first line of {auth_file}")
    text = environ.get(AUTH_ENV, "")
    return _parse_credentials(text, f"${AUTH_ENV}") if text else None


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_warning(where: str, *, authenticated: bool) -> str:
    """The banner printed when the dashboard listens beyond this machine."""
    lines = [f"WARNING: serving on {where}: anyone who can reach this machine can use the dashboard."]
    if authenticated:
        lines.append("Basic auth is on; without a TLS proxy in front the password crosses the network in clear text.")
    else:
        lines.append(f"NO PASSWORD IS SET: set {AUTH_ENV}=user:password (or {AUTH_FILE_ENV}=FILE) for a shared demo.")
    width = max(map(len, lines))
    bar = "!" * (width + 4)
    return "\n".join([bar, *(f"! {ln.ljust(width)} !" for ln in lines), bar])


def require_basic_auth(server, credentials: tuple[str, str]) -> None:
    """Answer every request to ``server`` (pages, assets, Dash's callbacks, the API) with 401
    unless it carries HTTP basic auth with ``credentials``."""
    import flask

    user, password = (c.encode("utf-8") for c in credentials)

    def check():
        auth = flask.request.authorization
        basic = auth is not None and auth.type == "basic"
        given_user = (auth.username or "").encode("utf-8") if basic else b""
        given_password = (auth.password or "").encode("utf-8") if basic else b""
        # both compared in constant time, always: the answer's timing tells nothing about either
        ok = hmac.compare_digest(given_user, user) & hmac.compare_digest(given_password, password)
        if not ok:
            return flask.Response("SigAtlas: authentication required\n", 401,
                                  {"WWW-Authenticate": 'Basic realm="SigAtlas", charset="UTF-8"', "Content-Type": "text/plain"})
        return None

    # first, before Dash's own hooks
    server.before_request_funcs.setdefault(None, []).insert(0, check)


def private_files() -> None:
    """From now on this process (and the workers it forks) creates files 0600 and folders 0700:
    the cache folder's results and the job store's signing secret are the server user's alone."""
    os.umask(0o077)


def cache_unavailable(exc: CacheError):
    """503 for a request that needed the cache folder when it could not be written (full, removed
    and not re-creatable): the message names the folder and the fix; JSON on the API. Logged once
    per request, without a traceback: the operator's problem is the folder, not the code."""
    import flask

    _log.error("503 for %s: %s", flask.request.path, exc)
    if flask.request.path.startswith("/api/"):
        return flask.jsonify({"error": str(exc)}), 503
    return f"SigAtlas cannot answer now: {exc}\n", 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "60"}


def protect(server, credentials: tuple[str, str] | None) -> None:
    """The request rules of a SigAtlas server: bodies up to MAX_REQUEST_BYTES, a script path
    outside Dash's allow-list answered 404 (not 500), a cache folder that cannot be written
    answered 503 naming it (:func:`cache_unavailable`), and basic auth when ``credentials`` are given."""
    import dash

    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    server.register_error_handler(CacheError, cache_unavailable)
    # "/_dash-component-suites/dash/../x" is not found, not a server error
    server.register_error_handler(dash.exceptions.DependencyException, lambda exc: ("not found\n", 404, {"Content-Type": "text/plain"}))
    if credentials is not None:
        require_basic_auth(server, credentials)

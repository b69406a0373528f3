"""``python -m dashboard.proxy``: nginx in front of gunicorn, from the project's own configuration.

    python -m dashboard.proxy --listen 127.0.0.1:8080 --upstream 127.0.0.1:8050 --run-dir /var/lib/sigatlas/nginx

fills in ``deploy/nginx.conf`` (the listening address, gunicorn's address, and the folder for
nginx's pid, logs and temporary files), writes it to ``RUN_DIR/nginx.conf`` and runs nginx in
the foreground as the calling user until it is stopped (SIGTERM or SIGQUIT: nginx finishes the
requests in flight). ``--render-only`` only writes the file, for a supervisor to start nginx.

Why a proxy: gunicorn's threaded workers read a request's header in a worker thread; a client
that sends half a header and waits holds that thread, and 2 workers x 8 threads are held by 16
such clients (issue 33). nginx reads headers and bodies on its event loop and passes gunicorn
only whole requests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from dashboard.serving import ServingError

__all__ = ["NGINX_ENV", "NGINX_TEMPLATE", "find_nginx", "main", "nginx_command", "render_nginx_conf", "write_nginx_conf"]

NGINX_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"
NGINX_ENV = "SIGATLAS_NGINX"  # the nginx binary to run, when not on PATH


def _address(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServingError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:8080), got {value!r}")
    return value


def render_nginx_conf(listen: str, upstream: str, run_dir: str | Path, template: str | Path = NGINX_TEMPLATE) -> str:
    """The text of ``template`` with its @LISTEN@, @UPSTREAM@ and @RUN_DIR@ filled in. Run as
    root, nginx's workers run as the owner of ``run_dir`` (nginx's default, nobody, could not
    write its temporary files there). Raises ServingError for a malformed address or template."""
    run_dir = Path(run_dir).resolve()
    try:
        text = Path(template).read_text(encoding="utf-8")
    except OSError as exc:
        raise ServingError(f"cannot read the nginx template {template}: {exc}") from exc
    missing = [k for k in ("@LISTEN@", "@UPSTREAM@", "@RUN_DIR@", "@USER@", "@MAX_BODY@", "@MAX_API_BODY@") if k not in text]
    if missing:
        raise ServingError(f"{template} is not SigAtlas's nginx template: it lacks {', '.join(missing)}")
    user = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import grp
        import pwd

        st = run_dir.stat()
        user = f"user {pwd.getpwuid(st.st_uid).pw_name} {grp.getgrgid(st.st_gid).gr_name};"
    from dashboard.api import MAX_BODY_BYTES
    from dashboard.serving import MAX_REQUEST_BYTES

    values = {"@LISTEN@": _address(listen, "--listen"), "@UPSTREAM@": _address(upstream, "--upstream"), "@RUN_DIR@": str(run_dir),
              "@USER@": user, "@MAX_BODY@": str(MAX_REQUEST_BYTES), "@MAX_API_BODY@": str(MAX_BODY_BYTES),
              "@MAX_BODY_TEXT@": f"{MAX_REQUEST_BYTES:,}", "@MAX_API_BODY_TEXT@": f"{MAX_BODY_BYTES:,}"}
    for key in sorted(values, key=len, reverse=True):  # @MAX_BODY_TEXT@ before @MAX_BODY@
        text = text.replace(key, values[key])
    return text


def write_nginx_conf(listen: str, upstream: str, run_dir: str | Path, template: str | Path = NGINX_TEMPLATE) -> Path:
    """Create ``run_dir`` (and nginx's temporary folders in it), write ``run_dir/nginx.conf``
    (:func:`render_nginx_conf`) and return its path."""
    run_dir = Path(run_dir).resolve()
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(render_nginx_conf(listen, upstream, run_dir, template), encoding="utf-8")
    return conf


def find_nginx() -> str | None:
    """The nginx to run: $SIGATLAS_NGINX, else nginx on PATH or in /usr/sbin, else the one
    ``make proxy-deps`` unpacked into .cache/nginx; None when there is none."""
    candidates = [os.environ.get(NGINX_ENV), shutil.which("nginx"), "/usr/sbin/nginx",
                  str(Path(__file__).resolve().parents[1] / ".cache" / "nginx" / "usr" / "sbin" / "nginx")]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def nginx_command(conf: str | Path, nginx: str | None = None) -> list[str]:
    """The command that runs nginx in the foreground on ``conf`` (its folder as nginx's prefix;
    the error log there from the first line on). Raises ServingError when nginx is not installed."""
    binary = nginx or find_nginx()
    if binary is None:
        raise ServingError("nginx is not installed: `apt-get install nginx` (Debian/Ubuntu), `make proxy-deps` (unpacks Debian's "
                           f"into .cache/nginx), or name it with ${NGINX_ENV}")
    run_dir = Path(conf).resolve().parent
    return [binary, "-e", str(run_dir / "error.log"), "-p", str(run_dir), "-c", str(Path(conf).resolve()), "-g", "daemon off;"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard.proxy", description="Run nginx in front of SigAtlas's gunicorn")
    p.add_argument("--listen", default="127.0.0.1:8080", help="address nginx listens on (default 127.0.0.1:8080)")
    p.add_argument("--upstream", default="127.0.0.1:8050", help="gunicorn's address (default 127.0.0.1:8050)")
    p.add_argument("--run-dir", required=True, help="folder for nginx.conf, the pid, the logs and temporary files")
    p.add_argument("--template", default=str(NGINX_TEMPLATE), help="nginx configuration template (default deploy/nginx.conf)")
    p.add_argument("--render-only", action="store_true", help="write RUN_DIR/nginx.conf, print the command that runs it, and exit")
    args = p.parse_args(argv)
    try:
        conf = write_nginx_conf(args.listen, args.upstream, args.run_dir, args.template)
        command = nginx_command(conf)
    except (ServingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.render_only:
        print(" ".join(c if " " not in c else repr(c) for c in command))
        return 0
    print(f"SigAtlas proxy: nginx on {args.listen} -> gunicorn on {args.upstream} (config {conf})", flush=True)
    os.execv(command[0], command)  # nginx replaces this process: a supervisor's signals reach it
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

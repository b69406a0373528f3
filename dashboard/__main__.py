"""``python -m dashboard --atlas atlas/demo``: serve the dashboard for one user (127.0.0.1:8050 by
default) on Flask's own server. Several users: gunicorn with ``dashboard.wsgi`` (README, Serving)."""

from __future__ import annotations

import argparse
import sys

from compute.errors import SigAtlasError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard", description="Serve the SigAtlas dashboard for an atlas")
    p.add_argument("--atlas", default="atlas/demo", help="atlas folder (default atlas/demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--allow-remote", action="store_true", help="required to bind an address other than loopback")
    p.add_argument("--auth-file", metavar="FILE",
                   help="require HTTP basic auth with the 'user:password' on the first line of FILE "
                        "(or set SIGATLAS_AUTH=user:password; a password is never taken on the command line)")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, error pages)")
    args = p.parse_args(argv)
    from dashboard.serving import is_loopback, load_credentials, private_files, remote_warning

    if not is_loopback(args.host) and not args.allow_remote:
        print(f"error: binding {args.host} exposes the dashboard to the network; add --allow-remote to do so", file=sys.stderr)
        return 2
    from dashboard.app import create_app

    private_files()
    try:
        credentials = load_credentials(args.auth_file)
        app = create_app(args.atlas, credentials=credentials)
    except SigAtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(remote_warning(f"{args.host}:{args.port}", authenticated=credentials is not None), file=sys.stderr, flush=True)
    auth = " (basic auth on)" if credentials else ""
    print(f"SigAtlas dashboard: http://{'127.0.0.1' if args.host == 'localhost' else args.host}:{args.port}{auth}", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m dashboard --atlas atlas/demo``: serve the dashboard (127.0.0.1:8050 by default)."""

from __future__ import annotations

import argparse
import sys

from compute.errors import SigAtlasError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard", description="Serve the SigAtlas dashboard for an atlas")
    p.add_argument("--atlas", default="atlas/demo", help="atlas folder (default atlas/demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--allow-remote", action="store_true", help="required to bind an address other than loopback")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, error pages)")
    args = p.parse_args(argv)
    if args.host not in _LOOPBACK and not args.allow_remote:
        print(f"error: binding {args.host} exposes the dashboard to the network; add --allow-remote to do so", file=sys.stderr)
        return 2
    from dashboard.app import create_app

    try:
        app = create_app(args.atlas)
    except SigAtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.host not in _LOOPBACK:
        print(f"WARNING: serving on {args.host}: anyone who can reach this machine can use the dashboard", flush=True)
    print(f"SigAtlas dashboard: http://{'127.0.0.1' if args.host == 'localhost' else args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())

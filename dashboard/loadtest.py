"""``python -m dashboard.loadtest``: a bounded load test of a running SigAtlas server, loopback only.

    python -m dashboard.loadtest --url http://127.0.0.1:8050 --clients 20 --seconds 60 [--json FILE]

Each client (a thread) loops until the time is up: mostly signature queries through the JSON
API (random subsets of the shipped presets, 5-100 genes, sometimes restricted to random cell
types, sometimes in mixed case or with unknown tokens, 0 or 100 null draws, min_coverage 0), a few deliberately
bad queries (which must get HTTP 400), and some page loads (``/`` and ``/_dash-layout``). It
prints the requests per second, the latency percentiles overall and per kind, and every error:
a request that failed, timed out, or got another answer than its kind expects. Exit status 1
when any error happened, 2 when the test could not start. Credentials, when the server wants
them, come from $SIGATLAS_AUTH or $SIGATLAS_AUTH_FILE, as the server's do.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass

__all__ = ["KINDS", "Record", "main", "make_request", "percentile", "summarise"]

# kind -> share of the requests
KINDS = {"query": 0.78, "bad_query": 0.05, "page": 0.07, "layout": 0.10}
_SEPARATORS = (", ", "\n", " ", ";", "\t", " | ")
# the bad queries and the word their 400 answer must contain
_BAD = (({"genes": "CD14 LYZ", "null_draws": "many"}, "null_draws"), ({"genes": "CD14", "cell_types": ["no such cell"]}, "cell type"),
        ({"genes": ""}, "genes"), ({"genes": "CD14", "cutoff": 150}, "cutoff"), ({"genes": "CD14", "atlas": "/etc"}, "parameter"),
        ({"genes": "CD14", "min_coverage": 2}, "min_coverage"))
# a random signature may hold few of the genes some studies measured: queries keep every study that
# measured any of its genes (min_coverage 0), so the load is the full selection; the answer to a
# selection in which no study measured any (HTTP 400 saying so) is an answer, not an error
_UNMEASURED = "of the signature"


@dataclass(frozen=True)
class Record:
    kind: str
    seconds: float
    error: str | None = None  # None: the answer was what the kind expects
    cached: bool | None = None  # queries: answered from the result cache


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _latency(values: list[float]) -> dict:
    return {"n": len(values), **{f"p{q}_ms": None if (v := percentile(values, q)) is None else round(1000 * v, 1) for q in (50, 95, 99)}}


def summarise(records: list[Record], elapsed: float) -> dict:
    """Totals, requests per second, latency percentiles (overall and per kind) and errors."""
    errors = [r for r in records if r.error]
    queries = [r for r in records if r.kind == "query" and r.error is None]
    return {
        "requests": len(records),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(records) / elapsed, 2) if elapsed > 0 else None,
        "latency": _latency([r.seconds for r in records]),
        "by_kind": {k: _latency([r.seconds for r in records if r.kind == k]) for k in KINDS},
        "queries_from_cache": sum(1 for r in queries if r.cached),
        "errors": len(errors),
        "error_kinds": dict(Counter(r.error for r in errors).most_common()),
    }


def format_report(summary: dict, settings: dict) -> str:
    def line(name: str, lat: dict) -> str:
        def ms(v):
            return "-" if v is None else f"{v:,.0f} ms"

        return f"  {name:<9} {lat['n']:>7,}   p50 {ms(lat['p50_ms']):>10}   p95 {ms(lat['p95_ms']):>10}   p99 {ms(lat['p99_ms']):>10}"

    out = [f"SigAtlas load test: {settings['url']}, {settings['clients']} clients, {settings['seconds']:g} s",
           f"requests: {summary['requests']:,} in {summary['seconds']:.1f} s = {summary['requests_per_second'] or 0:.2f} requests/s",
           "latency   requests",
           line("all", summary["latency"]),
           *(line(k, v) for k, v in summary["by_kind"].items()),
           f"queries answered from the cache: {summary['queries_from_cache']:,} of {summary['by_kind']['query']['n']:,}",
           f"errors: {summary['errors']}"]
    out += [f"  {n:>5} x {kind}" for kind, n in summary["error_kinds"].items()]
    return "\n".join(out)


class _Signatures:
    """Random signatures from the shipped presets, with at least three genes the atlas knows."""

    def __init__(self, atlas: dict):
        from dashboard.presets import PRESETS

        known = {g.upper() for g in atlas["genes"]}
        self.pools = [(list(p.genes), [g for g in p.genes if g.upper() in known]) for p in PRESETS.values()]
        self.pools = [(genes, hits) for genes, hits in self.pools if len(hits) >= 3]
        self.cell_types = atlas["cell_types"]
        if not self.pools:
            raise ValueError("no preset shares three genes with this atlas: nothing to query")

    def draw(self, rng: random.Random) -> dict:
        picked = rng.sample(self.pools, k=min(len(self.pools), rng.choice((1, 1, 2, 3))))
        genes = list(dict.fromkeys(g for pool, _ in picked for g in pool))
        hits = list(dict.fromkeys(g for _, pool in picked for g in pool))
        size = min(len(genes), rng.randint(5, 100))
        chosen = rng.sample(hits, 3) + rng.sample(genes, size)  # a few sure hits, then any preset genes
        chosen = list(dict.fromkeys(chosen))[: max(size, 3)]
        if rng.random() < 0.25:
            chosen = [g.lower() if rng.random() < 0.5 else g.capitalize() for g in chosen]
        if rng.random() < 0.2:
            chosen += [f"NOTAGENE{rng.randint(1, 10**6)}" for _ in range(rng.randint(1, 3))]
        rng.shuffle(chosen)
        query: dict = {"genes": rng.choice(_SEPARATORS).join(chosen), "null_draws": 100 if rng.random() < 0.3 else 0, "min_coverage": 0}
        if rng.random() < 0.3 and self.cell_types:
            query["cell_types"] = rng.sample(self.cell_types, k=min(len(self.cell_types), rng.randint(1, 3)))
        return query


def make_request(base: str, kind: str, rng: random.Random, signatures: _Signatures, headers: dict) -> tuple[urllib.request.Request, object]:
    """(request, what the answer must show) for one request of ``kind``."""
    if kind == "page":
        return urllib.request.Request(f"{base}/", headers=headers), "_dash-config"
    if kind == "layout":
        return urllib.request.Request(f"{base}/_dash-layout", headers=headers), "props"
    if kind == "bad_query":
        body, word = rng.choice(_BAD)
        expect = ("400", word)
    else:
        body, expect = signatures.draw(rng), "diseases"
    if kind == "query" and rng.random() < 0.3 and len(body["genes"]) < 1500:  # some as GET, as a script would
        args = {k: "|".join(v) if isinstance(v, list) else v for k, v in body.items()}
        return urllib.request.Request(f"{base}/api/v1/query?{urllib.parse.urlencode(args)}", headers=headers), expect
    return urllib.request.Request(f"{base}/api/v1/query", data=json.dumps(body).encode(), method="POST",
                                  headers=headers | {"Content-Type": "application/json"}), expect


def _check(kind: str, status: int, text: str, expect) -> tuple[str | None, bool | None]:
    """(error or None, cached) for an answer."""
    if isinstance(expect, tuple):  # a bad query: 400 naming the problem
        if status != 400:
            return f"{kind}: HTTP {status} instead of 400", None
        message = json.loads(text).get("error", "")
        return (None if expect[1] in message else f"{kind}: 400 without '{expect[1]}' in its message"), None
    if kind == "query" and status == 400 and "lower min_coverage" in json.loads(text).get("error", ""):
        return None, False  # no selected study measured the signature: said, as it should be
    if status != 200:
        return f"{kind}: HTTP {status}", None
    if kind == "query":
        answer = json.loads(text)
        return (None if isinstance(answer.get("diseases"), list) else f"{kind}: answer without a disease ranking"), bool(answer.get("cached"))
    return (None if expect in text else f"{kind}: answer without '{expect}'"), None


def _one(base: str, kind: str, rng: random.Random, signatures: _Signatures, headers: dict, timeout: float) -> Record:
    request, expect = make_request(base, kind, rng, signatures, headers)
    start = time.perf_counter()
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, text = resp.status, resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode("utf-8", "replace")
        seconds = time.perf_counter() - start
        error, cached = _check(kind, status, text, expect)
    except (OSError, http.client.HTTPException) as exc:  # URLError, resets, timeouts; a cut-off answer
        reason = getattr(exc, "reason", exc)
        return Record(kind, time.perf_counter() - start, f"{kind}: {type(reason).__name__}: {str(reason)[:80]}")
    except (ValueError, UnicodeDecodeError) as exc:  # not JSON, not text
        return Record(kind, time.perf_counter() - start, f"{kind}: malformed answer ({type(exc).__name__})")
    return Record(kind, seconds, error, cached)


def _fetch_atlas(base: str, headers: dict, timeout: float) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/atlas", headers=headers), timeout=timeout) as resp:
        return json.loads(resp.read())


def run(base: str, clients: int, seconds: float, *, seed: int = 0, timeout: float = 120.0, headers: dict | None = None) -> tuple[list[Record], float]:
    """(records, elapsed seconds) of ``clients`` threads sending requests for ``seconds``."""
    headers = headers or {}
    signatures = _Signatures(_fetch_atlas(base, headers, timeout))
    records: list[Record] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    kinds, weights = list(KINDS), list(KINDS.values())

    def client(i: int):
        rng = random.Random(seed * 1000 + i)
        while time.perf_counter() < deadline:
            record = _one(base, rng.choices(kinds, weights)[0], rng, signatures, headers, timeout)
            with lock:
                records.append(record)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard.loadtest", description="Load-test a SigAtlas server on this machine")
    p.add_argument("--url", default="http://127.0.0.1:8050", help="the server (loopback only; default http://127.0.0.1:8050)")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to send requests (default 60)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before one request counts as failed (default 120)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = p.parse_args(argv)
    from compute.errors import SigAtlasError
    from dashboard.serving import is_loopback, load_credentials

    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not is_loopback(url.hostname):
        print(f"error: {args.url} is not on this machine: the load test only targets loopback (127.0.0.1, localhost, ::1)", file=sys.stderr)
        return 2
    if not 1 <= args.clients <= 1000 or not 0 < args.seconds <= 3600:
        print("error: --clients must be 1-1000 and --seconds 0-3600", file=sys.stderr)
        return 2
    try:
        credentials = load_credentials()
    except SigAtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(credentials).encode()).decode()} if credentials else {}
    base = args.url.rstrip("/")
    try:
        records, elapsed = run(base, args.clients, args.seconds, seed=args.seed, timeout=args.timeout, headers=headers)
    except (OSError, ValueError) as exc:
        print(f"error: cannot start: {base}/api/v1/atlas did not answer as a SigAtlas server does ({exc})", file=sys.stderr)
        return 2
    settings = {"url": base, "clients": args.clients, "seconds": args.seconds, "seed": args.seed}
    summary = summarise(records, elapsed)
    print(format_report(summary, settings), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"settings": settings, **summary}, fh, indent=2)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

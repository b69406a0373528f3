"""``python -m dashboard.devtools.loadtest``: a bounded load test of a running SigAtlas server, loopback only.

    python -m dashboard.devtools.loadtest --url http://127.0.0.1:8050 --clients 20 --seconds 60 [--mixed] [--stalled N] [--server-pid PID] [--json FILE]

Each client (a thread) loops until the time is up: mostly signature queries through the JSON
API (random subsets of the shipped presets, 5-100 genes, sometimes restricted to random cell
types, sometimes in mixed case or with unknown tokens, 0 or 100 null draws, min_coverage 0), a few deliberately
bad queries (which must get HTTP 400), and some page loads (``/`` and ``/_dash-layout``). It
prints the requests per second, the latency percentiles overall and per kind, and every error:
a request that failed, timed out, or got another answer than its kind expects. Exit status 1
when any error happened, 2 when the test could not start. Credentials, when the server wants
them, come from $SIGATLAS_AUTH or $SIGATLAS_AUTH_FILE, as the server's do.

``--mixed`` adds what a served dashboard meets besides API calls (MIXED_KINDS): queries through
the page's own background job (start, then poll until the result key comes back), the Modules
tab, a client asking for 10,000 null draws (which must get a 400 at once), and one slow client
that holds a connection open with half a request header for the whole test. ``--stalled N``
holds N more such connections open for the whole test (each sends half a header, then a byte a
second; one the server closes is opened again): gunicorn alone is blocked by 16 of them, nginx
in front (``python -m dashboard.proxy``) is not. ``--server-pid``
(gunicorn's master) adds the workers' memory before and after, and how many were replaced
(a worker killed for a timeout or for memory shows as a new process).
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

__all__ = ["KINDS", "MIXED_KINDS", "Record", "main", "make_request", "percentile", "summarise"]

# kind -> share of the requests
KINDS = {"query": 0.78, "bad_query": 0.05, "page": 0.07, "layout": 0.10}
MIXED_KINDS = {"query": 0.45, "dash_query": 0.2, "modules": 0.1, "big_null": 0.05, "bad_query": 0.05, "page": 0.05, "layout": 0.10}
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


def summarise(records: list[Record], elapsed: float, kinds=None) -> dict:
    """Totals, requests per second, latency percentiles (overall and per kind) and errors."""
    kinds = kinds or KINDS
    errors = [r for r in records if r.error]
    queries = [r for r in records if r.kind == "query" and r.error is None]
    return {
        "requests": len(records),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(records) / elapsed, 2) if elapsed > 0 else None,
        "latency": _latency([r.seconds for r in records]),
        "by_kind": {k: _latency([r.seconds for r in records if r.kind == k]) for k in kinds},
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
    if "workers" in summary:
        w = summary["workers"]
        out.insert(-1, f"workers: {w['before']['n']} before ({w['before']['rss_mb']} MB RSS), {w['after']['n']} after "
                       f"({w['after']['rss_mb']} MB RSS); replaced during the test: {w['replaced']}; job processes at the end: {w['jobs_after']}")
    if "slow_client" in summary:
        out.insert(-1, f"slow client: held {summary['slow_client']['connections']} connection(s) with half a header")
    if "stalled" in summary:
        st = summary["stalled"]
        out.insert(-1, f"stalled connections: {st['held']} of {st['asked']} held open with half a header at once; "
                       f"{st['reopened']} reopened after the server closed them")
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
    if kind == "big_null":  # the API's cap: answered 400 at once, never computed
        body = dict(signatures.draw(rng), null_draws=10_000)
        return urllib.request.Request(f"{base}/api/v1/query", data=json.dumps(body).encode(), method="POST",
                                      headers=headers | {"Content-Type": "application/json"}), ("400", "null_draws")
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


class _Page:
    """What a Dash client needs to call the page's callbacks: the end id and the dependencies."""

    def __init__(self, base: str, headers: dict, timeout: float):
        import re

        with urllib.request.urlopen(urllib.request.Request(f"{base}/", headers=headers), timeout=timeout) as resp:
            page = resp.read().decode()
        config = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', page, re.S)
        self.end_id = json.loads(config.group(1)).get("end_id", "") if config else ""
        with urllib.request.urlopen(urllib.request.Request(f"{base}/_dash-dependencies", headers=headers), timeout=timeout) as resp:
            deps = json.loads(resp.read())
        self.query = next(d for d in deps if d["output"].startswith("..result-key.data") and d.get("background"))
        self.modules = next(d for d in deps if d["output"].startswith("..modules-summary.children"))


def _outputs(output: str) -> list[dict]:
    """Dash's outputs list for a callback's output spec ("..id.prop...id.prop@hash.." or "id.prop")."""
    specs = output[2:-2].split("...") if output.startswith("..") else [output]
    return [dict(zip(("id", "property"), spec.partition("@")[0].rsplit(".", 1), strict=True)) for spec in specs]


def _post(url: str, body: dict, headers: dict, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers | {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _dash_query(base: str, page: _Page, query: dict, request_id: int, headers: dict, timeout: float) -> tuple[str | None, bool | None]:
    """A query as the page runs it: start the background job, poll until the result key comes back.
    Returns (error or None, None)."""
    dep = page.query
    values = {"genes": query["genes"], "cell-types": query.get("cell_types", []), "data-kind": "all", "rule": "percentile", "cut": 90,
              "cell-min": 25, "samp-min": 3, "min-coverage": 0, "null-draws": 0 if query["null_draws"] == 0 else 1000}
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "changedPropIds": ["query-request.data"],
            # the query request is the one set; Run and the job request (a linked page's) stay as the page holds them
            "inputs": [dict(i, value=request_id if i["id"] == "query-request" else None) for i in dep["inputs"]],
            "state": [dict(s, value=values.get(s["id"], [] if s["id"] in ("diseases", "tissues", "studies", "disease-groups") else None))
                      for s in dep["state"]]}
    url = f"{base}/_dash-update-component?endId={page.end_id}"
    status, text = _post(url, body, headers, timeout)
    if status != 200:
        return f"dash_query: start HTTP {status}", None
    start = json.loads(text)
    if "cacheKey" not in start:
        return "dash_query: no job started", None
    poll = dict(body, inputs=[dict(i, value=None) for i in body["inputs"]], state=[dict(s, value=None) for s in body["state"]])
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        time.sleep(0.25)
        status, text = _post(f"{url}&cacheKey={start['cacheKey']}&job={start['job']}", poll, headers, timeout)
        if status == 204:
            continue
        if status != 200:
            return f"dash_query: poll HTTP {status}", None
        answer = json.loads(text)
        if "response" in answer:
            out = answer["response"]
            ok = (out.get("result-key") or {}).get("data") or (out.get("query-error") or {}).get("data") or "status" in str(out)
            return (None if ok else "dash_query: answer without a result key"), None
    return "dash_query: timed out", None


def _modules_tab(base: str, page: _Page, headers: dict, timeout: float) -> tuple[str | None, bool | None]:
    """The Modules tab opened with no query yet: the module browser (read from the atlas)."""
    dep = page.modules
    values = {("tabs", "value"): "modules"}
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "changedPropIds": ["tabs.value"],
            "inputs": [dict(i, value=values.get((i["id"], i["property"]))) for i in dep["inputs"]],
            "state": [dict(s, value=None) for s in dep["state"]]}
    status, text = _post(f"{base}/_dash-update-component?endId={page.end_id}", body, headers, timeout)
    if status != 200:
        return f"modules: HTTP {status}", None
    return (None if "modules-summary" in text else "modules: answer without the modules summary"), None


def _slow_client(base: str, stop: threading.Event, held: list) -> None:
    """One client that opens a connection, sends half a request header and holds it, again and
    again until ``stop`` (a server that serves one connection per worker is blocked by it)."""
    import socket

    host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port or 80
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                held.append(1)
                while not stop.wait(1.0):
                    sock.sendall(b"a")  # a byte a second: never a whole header
        except OSError:
            stop.wait(0.5)


def _stalled_clients(base: str, n: int, stop: threading.Event, counts: dict) -> None:
    """Hold ``n`` connections open with half a request header each until ``stop``: a byte a
    second on each, and a connection the server closed opened again (``counts``: "open", the
    most held at once, and "reopened")."""
    import socket

    host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port or 80
    socks: list = [None] * n
    while not stop.is_set():
        for i in range(n):
            if socks[i] is None:
                try:
                    socks[i] = socket.create_connection((host, port), timeout=5)
                    socks[i].sendall(b"GET /_dash-layout HTTP/1.1\r\nHost: x\r\nX-Stalled: ")
                    if counts.get("_started"):  # after the first round: one the server closed
                        counts["reopened"] += 1
                except OSError:
                    socks[i] = None
                    continue
            else:
                try:
                    socks[i].sendall(b"a")  # never a whole header
                except OSError:
                    socks[i].close()
                    socks[i] = None
        counts["_started"] = True
        counts["open"] = max(counts["open"], sum(s is not None for s in socks))
        stop.wait(1.0)
    for sock in socks:
        if sock is not None:
            sock.close()


def _workers(master_pid: int) -> dict:
    import psutil

    master = psutil.Process(master_pid)
    workers = master.children()
    jobs = [c for w in workers for c in w.children(recursive=True)]
    rss = sum(w.memory_info().rss for w in workers)
    return {"pids": sorted(w.pid for w in workers), "n": len(workers), "rss_mb": round(rss / 2**20, 1), "jobs": len(jobs)}


def _fetch_atlas(base: str, headers: dict, timeout: float) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/atlas", headers=headers), timeout=timeout) as resp:
        return json.loads(resp.read())


def run(base: str, clients: int, seconds: float, *, seed: int = 0, timeout: float = 120.0, headers: dict | None = None,
        mixed: bool = False, stalled: int = 0) -> tuple[list[Record], float]:
    """(records, elapsed seconds) of ``clients`` threads sending requests for ``seconds``; with
    ``mixed``, the MIXED_KINDS and one slow client besides (its connections in ``run.slow_held``);
    with ``stalled``, that many connections held open with half a header from before the first
    request to the end (the most held at once and the reopened ones in ``run.stalled``)."""
    headers = headers or {}
    run.stalled = {"open": 0, "reopened": 0}
    stop_stalled = threading.Event()
    if stalled:
        threading.Thread(target=_stalled_clients, args=(base, stalled, stop_stalled, run.stalled), name="stalled", daemon=True).start()
        for _ in range(100):  # every connection open before the load starts
            if run.stalled["open"] >= stalled:
                break
            time.sleep(0.1)
    try:
        return _run(base, clients, seconds, seed=seed, timeout=timeout, headers=headers, mixed=mixed)
    finally:
        stop_stalled.set()
        run.stalled.pop("_started", None)


def _run(base: str, clients: int, seconds: float, *, seed: int, timeout: float, headers: dict, mixed: bool) -> tuple[list[Record], float]:
    signatures = _Signatures(_fetch_atlas(base, headers, timeout))
    page = _Page(base, headers, timeout) if mixed else None
    records: list[Record] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    table = MIXED_KINDS if mixed else KINDS
    kinds, weights = list(table), list(table.values())
    stop, held = threading.Event(), []
    slow = threading.Thread(target=_slow_client, args=(base, stop, held), name="slow-client", daemon=True) if mixed else None
    if slow is not None:
        slow.start()

    def one(kind: str, rng: random.Random, i: int) -> Record:
        if kind not in ("dash_query", "modules"):
            return _one(base, kind, rng, signatures, headers, timeout)
        t0 = time.perf_counter()
        try:
            if kind == "dash_query":
                error, cached = _dash_query(base, page, signatures.draw(rng), rng.randint(1, 10**9), headers, timeout)
            else:
                error, cached = _modules_tab(base, page, headers, timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error, cached = f"{kind}: {type(exc).__name__}: {str(exc)[:80]}", None
        return Record(kind, time.perf_counter() - t0, error, cached)

    def client(i: int):
        rng = random.Random(seed * 1000 + i)
        while time.perf_counter() < deadline:
            record = one(rng.choices(kinds, weights)[0], rng, i)
            with lock:
                records.append(record)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    run.slow_held = len(held)
    return records, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard.devtools.loadtest", description="Load-test a SigAtlas server on this machine")
    p.add_argument("--url", default="http://127.0.0.1:8050", help="the server (loopback only; default http://127.0.0.1:8050)")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to send requests (default 60)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before one request counts as failed (default 120)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--mixed", action="store_true", help="add page queries, the Modules tab, 10,000 null draws and a slow client")
    p.add_argument("--server-pid", type=int, metavar="PID", help="gunicorn's master: report its workers' memory and replacements")
    p.add_argument("--stalled", type=int, default=0, metavar="N",
                   help="hold N connections open with half a request header for the whole test (default 0)")
    args = p.parse_args(argv)
    from compute.errors import SigAtlasError
    from dashboard.serving import is_loopback, load_credentials

    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not is_loopback(url.hostname):
        print(f"error: {args.url} is not on this machine: the load test only targets loopback (127.0.0.1, localhost, ::1)", file=sys.stderr)
        return 2
    if not 1 <= args.clients <= 1000 or not 0 < args.seconds <= 3600 or not 0 <= args.stalled <= 1000:
        print("error: --clients must be 1-1000, --seconds 0-3600 and --stalled 0-1000", file=sys.stderr)
        return 2
    try:
        credentials = load_credentials()
    except SigAtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(credentials).encode()).decode()} if credentials else {}
    base = args.url.rstrip("/")
    before = _workers(args.server_pid) if args.server_pid else None
    try:
        records, elapsed = run(base, args.clients, args.seconds, seed=args.seed, timeout=args.timeout, headers=headers, mixed=args.mixed,
                               stalled=args.stalled)
    except (OSError, ValueError, StopIteration) as exc:
        print(f"error: cannot start: {base} did not answer as a SigAtlas server does ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    settings = {"url": base, "clients": args.clients, "seconds": args.seconds, "seed": args.seed, "mixed": args.mixed,
                "stalled": args.stalled}
    summary = summarise(records, elapsed, MIXED_KINDS if args.mixed else KINDS)
    if args.mixed:
        summary["slow_client"] = {"connections": run.slow_held}
    if args.stalled:
        summary["stalled"] = {"asked": args.stalled, "held": run.stalled["open"], "reopened": run.stalled["reopened"]}
    if before is not None:
        after = _workers(args.server_pid)
        replaced = len(set(before["pids"]) - set(after["pids"]))
        summary["workers"] = {"before": before, "after": after, "replaced": replaced, "jobs_after": after["jobs"]}
        if replaced:
            summary["errors"] += replaced
            summary["error_kinds"]["a worker was replaced (killed or crashed)"] = replaced
    print(format_report(summary, settings), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"settings": settings, **summary}, fh, indent=2)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

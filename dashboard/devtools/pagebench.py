"""``python -m dashboard.devtools.pagebench``: how long a user waits on the page for a new query, measured
in a real (headless Chromium) browser against a running SigAtlas server, loopback only.

    python -m dashboard.devtools.pagebench --url http://127.0.0.1:8050 [--cell-type "classical monocyte"]
                                  [--draws 1000] [--repeats 5] [--json FILE]

Each repeat pastes the MS1 preset less two genes at random (a list never asked before, so nothing comes from
the cache), presses Run and records, in the page's own clock (``performance.now()``, read by a
MutationObserver, so the figures do not depend on how often this script looks), from the click
event on Run:

- ``ranking``: the disease ranking of this query is on screen (its table rows drawn);
- ``everything``: its p-values are on screen too (the table's "specificity p (vs random gene
  sets)" column, "p (null)" on older servers, filled) and the
  progress bar says done.

Needs Chromium and chromedriver (``CHROME_BIN``/``CHROMEDRIVER``, or on the PATH) and selenium
(the ``test`` extra). Prints each repeat and the medians; exit status 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

from compute.reference import assets_dir

__all__ = ["find_program", "main", "measure", "measure_api", "measure_bare", "measure_paths"]

# installed before Run is pressed: records when the ranking and the p-values first show
_OBSERVE_JS = """
window.__bench = {start: performance.now(), ranking: null, everything: null};
// the clock starts at the click itself, as a user's does (not when this script asked for it)
document.getElementById('run').addEventListener('click', () => { window.__bench.start = performance.now(); },
                                                {capture: true, once: true});
const before = arguments[0];
function look() {
    const b = window.__bench;
    const rows = document.querySelectorAll('#disease-table tbody tr');
    const table = document.getElementById('disease-table');
    const fresh = table && rows.length > 0 && table.textContent !== before;
    if (!fresh) { return; }
    const now = performance.now() - b.start;
    if (b.ranking === null) { b.ranking = now; }
    const heads = [...document.querySelectorAll('#disease-table th')].map(e => e.textContent.trim());
    // the gene-set null's p: 'specificity p (vs random gene sets)' beside the within-study evidence, 'p (null)' before it
    const pcol = Math.max(heads.indexOf('p (null)'), heads.indexOf('specificity p (vs random gene sets)'));
    const said = (document.getElementById('progress-text') || {}).textContent;
    const done = said === 'done' || said === 'answered from the cache';
    if (b.everything === null && pcol >= 0 && done && !document.getElementById('partial-note')) {
        const cells = [...rows].map(r => (r.children[pcol] || {}).textContent || '');
        if (cells.some(t => t.trim() !== '' && t.trim() !== '–')) { b.everything = now; }
    }
}
if (!window.__benchFetch) {  // each callback request: what it asked for, when it started and ended
    window.__benchFetch = window.fetch;
    window.fetch = async function(url, opts) {
        const t0 = performance.now();
        let what = String(url).includes('job=') ? 'poll ' : '';
        try { what += JSON.parse(opts.body).output.slice(0, 60); } catch (e) { what += String(url).slice(0, 60); }
        const res = await window.__benchFetch(url, opts);
        const t1 = performance.now();
        (window.__bench.requests = window.__bench.requests || []).push([what, t0 - window.__bench.start, t1 - window.__bench.start, res.status]);
        return res;
    };
}
if (window.__benchObserver) { window.__benchObserver.disconnect(); }
window.__benchObserver = new MutationObserver(look);
window.__benchObserver.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
"""

# the table's text before Run: only a table drawn for the new query counts
_TABLE_TEXT_JS = "const t = document.getElementById('disease-table'); return t ? t.textContent : '';"

_SET_GENES_JS = """
const el = document.getElementById('genes');
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(el, arguments[0]);
el.dispatchEvent(new Event('input', {bubbles: true}));
"""


def find_program(env: str, *names: str) -> str | None:
    """The program named by $``env``, else the first of ``names`` on the PATH (None: none)."""
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        if path := shutil.which(name):
            return path
    return None


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome = find_program("CHROME_BIN", "chromium", "chromium-browser", "google-chrome")
    chromedriver = find_program("CHROMEDRIVER", "chromedriver")
    if not chrome or not chromedriver:
        raise RuntimeError("Chromium and chromedriver are needed (set CHROME_BIN and CHROMEDRIVER, or put them on the PATH)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1440,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def _wait(fn, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = fn()
        except Exception:  # the page re-rendered the element mid-read: look again
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


_STATE_JS = """
const text = id => { const e = document.getElementById(id); return e ? e.textContent.trim().slice(0, 160) : null; };
return {progress: text('progress-text'), partial_note: !!document.getElementById('partial-note'),
        heads: [...document.querySelectorAll('#disease-table th')].map(e => e.textContent.trim()),
        first_row: text('disease-table') && [...document.querySelectorAll('#disease-table tbody tr')].slice(0, 1)
                   .map(r => r.textContent.trim().slice(0, 160)),
        status: text('status'), requests: (window.__bench || {}).requests || null};
"""


def _page_state(drv) -> str:
    """What the page shows when a wait timed out (the progress text, the ranking table's header and
    first row, the callback requests of the repeat), so that a stalled run says where it stalled."""
    try:
        return json.dumps(drv.execute_script(_STATE_JS))[:4000]
    except Exception as exc:  # noqa: BLE001 - the page itself is gone: say so
        return f"(the page could not be read: {exc})"


def _finished(bench: dict | None) -> dict | None:
    """The page's record once its p-values are on screen, else None."""
    return bench if bench and bench.get("everything") is not None else None


def measure(url: str, genes: list[str], *, cell_type: str | None, draws: int, repeats: int, timeout: float = 120.0) -> list[dict]:
    """One record per repeat: {"left_out", "ranking_s", "everything_s"} (seconds from Run)."""
    from selenium.webdriver.common.by import By

    query = {"preset": "ms1", "null": str(draws)}
    if cell_type:
        query["cell_types"] = cell_type
    drv = _driver()
    records = []
    rng = random.Random(time.time_ns())
    try:
        drv.get(url.rstrip("/") + "/?" + urllib.parse.urlencode(query))
        # the preset's own query first: the page, its scripts and the server's kernels are warm
        _wait(lambda: drv.find_elements(By.CSS_SELECTOR, "#disease-table tbody tr"), timeout, "the first ranking")
        _wait(lambda: drv.find_element(By.ID, "progress-text").text == "done"
              or drv.find_element(By.ID, "progress-text").text == "answered from the cache", timeout, "the first query to end")
        for i in range(repeats):
            left_out = tuple(rng.sample(genes, 2))  # 4,851 pairs: a list this server has not met
            drv.execute_script(_SET_GENES_JS, "\n".join(g for g in genes if g not in left_out))
            time.sleep(0.5)  # the gene box's own callbacks settle before Run
            drv.execute_script(_OBSERVE_JS, drv.execute_script(_TABLE_TEXT_JS))
            drv.find_element(By.ID, "run").click()
            try:
                bench = _wait(lambda: _finished(drv.execute_script("return window.__bench;")), timeout, f"repeat {i + 1}'s p-values")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; the page then: {_page_state(drv)}") from None
            records.append({"left_out": left_out, "ranking_s": bench["ranking"] / 1000, "everything_s": bench["everything"] / 1000,
                            "requests": [[what, round(a / 1000, 3), round(b / 1000, 3), status]
                                         for what, a, b, status in bench.get("requests") or [] if a >= 0]})
            time.sleep(1.0)
    finally:
        drv.quit()
    return records


# installed before each page opens (paths): when the ranking, the p-values, the Genes tab's
# heatmap and the Cells tab's UMAP first show, in the page's clock (ms since the navigation)
_PATHS_JS = """
window.__paths = {ranking: null, everything: null, genes: null, cells: null, cellsStart: null};
function drawn(id) {
    const p = document.querySelector('#' + id + ' .js-plotly-plot');
    return !!(p && p.data && p.data.length && !((p.layout || {}).meta || {}).empty);
}
function lookPaths() {
    const b = window.__paths, now = performance.now();
    if (b.ranking === null && document.querySelectorAll('#disease-table tbody tr').length) { b.ranking = now; }
    const said = (document.getElementById('progress-text') || {}).textContent;
    // the ranking is on screen, or its tab is not (only the tab that shows is mounted: a Genes link has no ranking table)
    const ranked = b.ranking !== null || !document.getElementById('disease-table-wrap');
    if (b.everything === null && ranked && (said === 'done' || said === 'answered from the cache')
        && !document.getElementById('partial-note')) { b.everything = now; }
    if (b.genes === null && drawn('heatmap-fig')) { b.genes = now; }
    if (b.cellsStart !== null && b.cells === null && drawn('umap-fig')) { b.cells = now; }
}
document.addEventListener('DOMContentLoaded', () => {
    new MutationObserver(lookPaths).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    document.addEventListener('click', (e) => {
        const tab = e.target.closest && e.target.closest('button[role=tab]');
        if (tab && tab.textContent.includes('Cells')) { window.__paths.cellsStart = performance.now(); window.__paths.cells = null; }
    }, {capture: true});
});
"""


def measure_paths(url: str, genes: list[str], *, cell_type: str | None, draws: int, repeats: int, timeout: float = 120.0) -> list[dict]:
    """The slow paths of issue 36 (item 12), one record per repeat, each on a gene list never asked
    before (MS1 less two random genes), in seconds: ``link_ranking_s`` / ``link_everything_s``,
    from opening a link to its ranking and to its p-values; ``genes_tab_s``, from opening a link to
    the Genes tab (``tab=genes``) to its heatmap; ``cells_tab_s``, from a click on the Cells tab
    (after a link's query is done) to its UMAP."""
    from selenium.webdriver.common.by import By

    drv = _driver()
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _PATHS_JS})
    rng = random.Random(time.time_ns())
    records = []

    def open_link(tab: str) -> dict:
        left_out = set(rng.sample(genes, 2))
        query = {"genes": ",".join(g for g in genes if g not in left_out), "null_draws": str(draws), "tab": tab}
        if cell_type:
            query["cell_types"] = cell_type
        drv.get("about:blank")
        drv.get(url.rstrip("/") + "/?" + urllib.parse.urlencode(query))
        return _wait(lambda: (lambda b: b if b and b.get("everything") is not None else None)(drv.execute_script("return window.__paths;")),
                     timeout, "the link's p-values")

    try:
        open_link("diseases")  # warm: the page's scripts and the server's kernels
        for i in range(repeats):
            link = open_link("diseases")
            drv.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Cells')]").click()
            cells = _wait(lambda: (lambda b: b if b and b.get("cells") is not None else None)(drv.execute_script("return window.__paths;")),
                          timeout, f"repeat {i + 1}'s UMAP")
            genes_tab = open_link("genes")
            genes_at = _wait(lambda: (lambda b: b if b and b.get("genes") is not None else None)(drv.execute_script("return window.__paths;")),
                             timeout, f"repeat {i + 1}'s heatmap")
            records.append({"link_ranking_s": link["ranking"] / 1000, "link_everything_s": link["everything"] / 1000,
                            "cells_tab_s": (cells["cells"] - cells["cellsStart"]) / 1000, "genes_tab_s": genes_at["genes"] / 1000,
                            "genes_tab_everything_s": genes_tab["everything"] / 1000})
    finally:
        drv.quit()
    return records


# installed before a bare page opens: when its first and last callback requests start and end (ms since the navigation)
_BARE_JS = """
window.__bare = {first: null, last: null, open: 0};
const bareFetch = window.fetch;
window.fetch = async function(url, opts) {
    const b = window.__bare, callback = String(url).includes('_dash-update-component');
    if (callback) { b.open += 1; if (b.first === null) { b.first = performance.now(); } }
    try { return await bareFetch(url, opts); }
    finally { if (callback) { b.open -= 1; b.last = performance.now(); } }
};
"""


def measure_bare(url: str, *, repeats: int, quiet_s: float = 1.0, timeout: float = 60.0) -> list[dict]:
    """The floor under a link: the page opened with no query, one record per repeat, in seconds
    from the navigation: ``callbacks_s``, when the page sends its first callback request (its
    scripts loaded and run, the layout fetched and built: nothing of a query can start earlier);
    ``settled_s``, when its page-load callbacks have all answered (none sent for ``quiet_s``)."""
    drv = _driver()
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _BARE_JS})
    records = []

    def settled():
        b = drv.execute_script("return window.__bare;")
        if not b or b["first"] is None or b["open"] or b["last"] is None:
            return None
        return b if drv.execute_script("return performance.now();") - b["last"] >= quiet_s * 1000 else None

    try:
        for i in range(repeats + 1):  # the first warms the browser's cache and the server
            drv.get("about:blank")
            drv.get(url.rstrip("/") + "/")
            b = _wait(settled, timeout, "the bare page's callbacks")
            if i:
                records.append({"callbacks_s": b["first"] / 1000, "settled_s": b["last"] / 1000})
    finally:
        drv.quit()
    return records


def measure_api(url: str, genes: list[str], *, cell_type: str | None, draws: int, repeats: int, timeout: float = 120.0) -> list[dict]:
    """The JSON API's answer to the same kind of new query: one record per repeat with the wall
    seconds of the ranking alone (``null_draws=0``) and of the whole answer (``draws``)."""
    import urllib.request

    rng = random.Random(time.time_ns())
    records = []
    for _ in range(repeats):
        left_out = tuple(rng.sample(genes, 2))
        record = {"left_out": left_out}
        for name, n in (("ranking_s", 0), ("everything_s", draws)):
            query = {"genes": " ".join(g for g in genes if g not in left_out), "null_draws": str(n)}
            if cell_type:
                query["cell_types"] = cell_type
            start = time.perf_counter()
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(query)}", timeout=timeout) as r:
                body = json.loads(r.read())
            record[name] = time.perf_counter() - start
            if not body.get("diseases"):
                raise RuntimeError(f"the API answered without a ranking: {str(body)[:200]}")
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.devtools.pagebench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--cell-type", default="classical monocyte", help="restrict the query to this cell type ('' for all cells)")
    parser.add_argument("--draws", type=int, default=1000, help="null draws (default 1000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the records here")
    parser.add_argument("--api", action="store_true", help="also time the JSON API's answers to new queries")
    parser.add_argument("--paths", action="store_true", help="also time opening a link, the Genes tab from a link and the Cells "
                        "tab (seconds from the navigation or the click)")
    parser.add_argument("--bare", action="store_true", help="also time the page opened with no query (the floor under a link)")
    parser.add_argument("--trace", action="store_true", help="also print each repeat's callback requests (start, end, what)")
    args = parser.parse_args(argv)
    host = urllib.parse.urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: --url {args.url}: loopback only (this drives a browser against the server)", file=sys.stderr)
        return 2
    preset = assets_dir() / "presets" / "ms1.txt"
    genes = [line.split("#")[0].strip() for line in preset.read_text(encoding="utf-8").splitlines()]
    genes = [g for g in genes if g]
    try:
        records = measure(args.url, genes, cell_type=args.cell_type or None, draws=args.draws, repeats=args.repeats)
    except (RuntimeError, TimeoutError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = args.cell_type or "all cells"
    print(f"page: MS1 less two random genes each time (never asked before), {where}, {args.draws} null draws; seconds from Run")
    for r in records:
        print(f"  without {' '.join(r['left_out']):<16} ranking {r['ranking_s']:6.3f} s   everything {r['everything_s']:6.3f} s")
        for what, start, end, status in r["requests"] if args.trace else ():
            print(f"      {start:6.3f}-{end:6.3f} s  HTTP {status}  {what}")
    rank = statistics.median(r["ranking_s"] for r in records)
    every = statistics.median(r["everything_s"] for r in records)
    print(f"median of {len(records)}: ranking {rank:.3f} s, everything {every:.3f} s")
    api = []
    if args.api:
        api = measure_api(args.url, genes, cell_type=args.cell_type or None, draws=args.draws, repeats=args.repeats)
        print(f"JSON API (GET /api/v1/query, the same kind of new query): null_draws=0, then {args.draws}; seconds")
        for r in api:
            print(f"  without {' '.join(r['left_out']):<16} ranking {r['ranking_s']:6.3f} s   everything {r['everything_s']:6.3f} s")
        print(f"median of {len(api)}: ranking {statistics.median(r['ranking_s'] for r in api):.3f} s, "
              f"everything {statistics.median(r['everything_s'] for r in api):.3f} s")
    paths = []
    if args.paths:
        paths = measure_paths(args.url, genes, cell_type=args.cell_type or None, draws=args.draws, repeats=args.repeats)
        print("paths: a link never opened before (MS1 less two random genes); seconds from opening it, or from the click")
        for r in paths:
            print(f"  link: ranking {r['link_ranking_s']:6.3f} s, everything {r['link_everything_s']:6.3f} s   "
                  f"Genes tab from a link {r['genes_tab_s']:6.3f} s   Cells tab {r['cells_tab_s']:6.3f} s")
        print(f"median of {len(paths)}: " + ", ".join(f"{key} {statistics.median(r[key] for r in paths):.3f} s"
                                                     for key in ("link_ranking_s", "link_everything_s", "genes_tab_s", "cells_tab_s")))
    bare = []
    if args.bare:
        bare = measure_bare(args.url, repeats=args.repeats)
        print("bare page (no query): seconds from opening it to its first callback request, and to its last answer")
        for r in bare:
            print(f"  first callback {r['callbacks_s']:6.3f} s   settled {r['settled_s']:6.3f} s")
        print(f"median of {len(bare)}: first callback {statistics.median(r['callbacks_s'] for r in bare):.3f} s, "
              f"settled {statistics.median(r['settled_s'] for r in bare):.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"records": records, "api": api, "paths": paths, "bare": bare, "median_ranking_s": rank, "median_everything_s": every,
                                         "cell_type": args.cell_type, "draws": args.draws}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

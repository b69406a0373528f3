"""``python -m dashboard.devtools.pagebench_cells``: how long a user waits on the Cells tab's explorer, a
comparison of two groups of cells and a versus ranking, measured in a real (headless Chromium)
browser against a running SigAtlas server, loopback only (issue 36; the query page's figures are
``python -m dashboard.pagebench``'s).

    python -m dashboard.devtools.pagebench_cells --url http://127.0.0.1:18771 [--repeats 3] [--json FILE]

Each figure is the page's own clock (``performance.now()``) from the click a user makes to the
moment a MutationObserver sees the answer drawn:

- ``cells_tab``: a click on the Cells (UMAP) tab of a freshly opened page, to the explorer's UMAP
  of every cell drawn (its Plotly graph holds the cells);
- ``lasso_compare``: a click on "Compare A vs B" for group A = the cells of one cell type and
  group B = the rest (a new pair each repeat, so nothing comes from the cache), to the ranking
  of the comparison drawn in Genes in a cell type;
- ``versus_ranking``: a click on "normal" in the Versus filter, with a cell type chosen (a new
  cell type each repeat), to the versus ranking's notes drawn.

Needs Chromium, chromedriver and selenium, as pagebench. Exit status 2 when it could not run."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.parse
from pathlib import Path

from dashboard.devtools.pagebench import _driver, _wait

__all__ = ["main", "measure_views"]

# the clock starts at the user's next click (capture phase, before any handler), and stops when
# ``done`` (a JS expression) first holds after it
_CLOCK_JS = """
const done = new Function(arguments[0]);
window.__cb = {start: null, end: null};
document.addEventListener('click', () => { if (window.__cb.start === null) { window.__cb.start = performance.now(); } },
                          {capture: true, once: true});
if (window.__cbObserver) { window.__cbObserver.disconnect(); }
function look() {
    const b = window.__cb;
    if (b.start === null || b.end !== null) { return; }
    let ok = false;
    try { ok = done(); } catch (e) { ok = false; }
    if (ok) { b.end = performance.now(); }
}
window.__cbObserver = new MutationObserver(look);
window.__cbObserver.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
"""
_EXPLORER_DRAWN = ("const p = document.querySelector('#cells-fig .js-plotly-plot');"
                   "return !!(p && p._fullLayout && p.data && p.data.length && (p.layout.meta || {}).n_cells > 0 "
                   "&& p.querySelector('.gl-container, canvas'));")
_COMPARED = ("const p = document.querySelector('#rank-fig .js-plotly-plot');"
             "const n = document.getElementById('rank-notes');"
             "return !!(p && p.layout && String((p.layout.title || {}).text || '').includes('picked on the UMAP') && n "
             "&& n.textContent.includes(arguments_label));")
_VERSUS = ("const n = document.getElementById('rank-notes');"
           "return !!(n && n.textContent.includes('reference:') && n.textContent.includes(arguments_label));")
_SELECT_JS = """
const gd = document.querySelector('#cells-fig .js-plotly-plot');
const want = arguments[0], inside = arguments[1];
const points = [];
gd._fullData.forEach((t, c) => {
    if ((String(t.name) === want) !== inside) { return; }
    (t.customdata || []).forEach((cell, i) => points.push({curveNumber: c, pointNumber: i, pointIndex: i, x: t.x[i], y: t.y[i],
                                                           customdata: cell}));
});
gd.emit('plotly_selected', {points: points});
return points.length;
"""


def _elapsed(drv, timeout: float, what: str) -> float:
    bench = _wait(lambda: (lambda b: b if b and b.get("end") is not None else None)(drv.execute_script("return window.__cb;")),
                  timeout, what)
    return (bench["end"] - bench["start"]) / 1000


def _clock(drv, done: str, label: str = "") -> None:
    drv.execute_script(_CLOCK_JS, done.replace("arguments_label", json.dumps(label)))


def _click_option(drv, control_id: str, label: str, timeout: float) -> None:
    """Open a Mantine (Multi)Select, type ``label`` and click its option (the click the clock sees)."""
    from selenium.webdriver.common.by import By

    box = _wait(lambda: (lambda b: b if b.is_displayed() else None)(drv.find_element(By.ID, control_id)), timeout, control_id)
    box.click()
    box.send_keys(label)
    _wait(lambda: drv.execute_script(
        "const box = arguments[0], want = arguments[1];"
        "const list = document.getElementById(box.getAttribute('aria-controls')) || document;"
        "return Array.from(list.querySelectorAll('[role=option]')).some(o => o.offsetParent !== null &&"
        " o.textContent.replace(/\\u00a0/g, ' ').trim().replace(/ \\([\\d,]+\\)$/, '') === want);", box, label), timeout, f"{label}")
    return box


def _pick(drv, box, label: str) -> None:
    drv.execute_script(
        "const box = arguments[0], want = arguments[1];"
        "const list = document.getElementById(box.getAttribute('aria-controls')) || document;"
        "Array.from(list.querySelectorAll('[role=option]')).find(o => o.offsetParent !== null &&"
        " o.textContent.replace(/\\u00a0/g, ' ').trim().replace(/ \\([\\d,]+\\)$/, '') === want).click();", box, label)


def measure_views(url: str, *, repeats: int, timeout: float = 120.0) -> dict[str, list[dict]]:
    """{"cells_tab", "lasso_compare", "versus_ranking"}: one record per repeat, {"what", "seconds"}."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = url.rstrip("/")
    out = {"cells_tab": [], "lasso_compare": [], "versus_ranking": []}
    drv = _driver()
    try:
        for i in range(repeats + 1):  # the first: the page, its scripts and the server warm, not counted
            drv.get(base + "/")
            _wait(lambda: drv.find_elements(By.XPATH, "//button[@role='tab'][contains(., 'Cells (UMAP)')]"), timeout, "the page")
            _clock(drv, _EXPLORER_DRAWN)
            drv.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Cells (UMAP)')]").click()
            seconds = _elapsed(drv, timeout, "the explorer")
            if i:
                out["cells_tab"].append({"what": "open the Cells tab", "seconds": seconds})
        cell_types = drv.execute_script(
            "const p = document.querySelector('#cells-fig .js-plotly-plot');"
            "return p._fullData.map(t => [String(t.name), (t.customdata || []).length]);")
        cell_types = [name for name, n in sorted(cell_types, key=lambda x: -x[1]) if n >= 30]
        for i, name in enumerate(cell_types[: repeats + 1]):
            drv.execute_script(_SELECT_JS, name, True)
            drv.find_element(By.ID, "cells-set-a").click()
            _wait(lambda: "group A" in drv.find_element(By.ID, "cells-groups-note").text, timeout, "group A")
            n_b = drv.execute_script(_SELECT_JS, name, False)
            drv.find_element(By.ID, "cells-set-b").click()
            _wait(lambda n_b=n_b: f"group B: {n_b:,} cells" in drv.find_element(By.ID, "cells-groups-note").text, timeout, "group B")
            _wait(lambda: not drv.find_element(By.ID, "cells-compare").get_attribute("disabled"), timeout, "compare enabled")
            n_a = drv.execute_script(_SELECT_JS, name, True)
            _clock(drv, _COMPARED, f"group A ({n_a:,} cells)")
            drv.find_element(By.ID, "cells-compare").click()
            seconds = _elapsed(drv, timeout, f"the comparison of {name}")
            if i:
                out["lasso_compare"].append({"what": f"{name} ({n_a:,} cells) vs the rest", "seconds": seconds})
            drv.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Cells (UMAP)')]").click()
        for i, name in enumerate(cell_types[: repeats + 1]):
            drv.get(base + "/?tab=cell_genes")
            box = _click_option(drv, "rank-cell-types", name, timeout)
            _pick(drv, box, name)
            box.send_keys(Keys.ESCAPE)
            _wait(lambda: "samples of" in drv.find_element(By.ID, "rank-notes").text, timeout, f"{name} ranked")
            box = _click_option(drv, "rank-versus", "normal", timeout)
            _clock(drv, _VERSUS, name)
            _pick(drv, box, "normal")
            seconds = _elapsed(drv, timeout, f"{name} versus normal")
            if i:
                out["versus_ranking"].append({"what": f"{name} vs normal", "seconds": seconds})
    finally:
        drv.quit()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.devtools.pagebench_cells", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    if urllib.parse.urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: --url {args.url}: loopback only (this drives a browser against the server)", file=sys.stderr)
        return 2
    try:
        records = measure_views(args.url, repeats=args.repeats)
    except (RuntimeError, TimeoutError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, rows in records.items():
        print(f"{name}: seconds from the click")
        for r in rows:
            print(f"  {r['what']:<60} {r['seconds']:6.3f} s")
        if rows:
            print(f"  median of {len(rows)}: {statistics.median(r['seconds'] for r in rows):.3f} s")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

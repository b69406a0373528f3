"""``python -m dashboard.devtools.screenshots``: a screenshot of every results tab at 1280x800, 1440x900 and
in presenter mode at 1920x1080 (issue 36), taken in headless Chromium against a running SigAtlas
server (loopback only), for the docs:

    python -m dashboard.devtools.screenshots --url http://127.0.0.1:8050 [--out docs/screenshots]

Each tab shows the MS1 preset's result with the default 1,000 null draws (the "Genes in a cell type"
tab: classical monocytes);
what is on the screen is saved as ``<tab>-<width>x<height>[-presenter].png``, reduced to 256
colours when Pillow is installed (the files stay small). Needs Chromium, chromedriver and selenium
(the ``test`` extra), as ``dashboard.devtools.pagebench`` does. Exit status 2 when it could not run."""

from __future__ import annotations

import argparse
import io
import sys
import time
import urllib.parse
from pathlib import Path

from dashboard.devtools.pagebench import _driver, _wait

__all__ = ["SIZES", "TAB_VIEWS", "main", "take"]

SIZES = ((1280, 800, False), (1440, 900, False), (1920, 1080, True))
# tab -> (its label on the page, the extra settings of its view, the figure that shows it is drawn)
TAB_VIEWS = {
    "diseases": ("Diseases", {}, "disease-fig"),
    "studies": ("Studies", {}, None),
    "cells": ("Cells", {}, "umap-fig"),
    "genes": ("Genes", {}, "heatmap-fig"),
    "cell_genes": ("Genes in a cell type", {"rank_cell_types": "classical monocyte"}, "rank-fig"),
    "modules": ("Modules", {}, "modules-fig"),
}
_DRAWN_JS = ("const p = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
             "return !!(p && p.data && p.data.length && !((p.layout || {}).meta || {}).empty);")


def _small_png(png: bytes) -> bytes:
    """``png`` reduced to 256 colours (a third of the size or less), or as it is without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return png
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def take(url: str, out: Path, *, timeout: float = 120.0) -> list[Path]:
    """Every tab at every size of SIZES, saved under ``out``; returns the files written."""
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    drv = _driver()
    written = []
    try:
        for width, height, presenter in SIZES:
            drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                                       "mobile": False})
            for tab, (_label, extra, graph) in TAB_VIEWS.items():
                query = {"preset": "ms1", "tab": tab, **extra}  # the default 1,000 draws, as a user runs it
                drv.get(url.rstrip("/") + "/?" + urllib.parse.urlencode(query))
                _wait(lambda: drv.find_element(By.ID, "progress-text").text in ("done", "answered from the cache"), timeout,
                      f"{tab}: the query to end")
                if presenter:
                    drv.find_element(By.XPATH, "//label[contains(., 'Presenter')]").click()
                    _wait(lambda: "presenter" in drv.find_element(By.ID, "root").get_attribute("class"), timeout, "presenter mode")
                if graph:
                    _wait(lambda g=graph: drv.execute_script(_DRAWN_JS, g), timeout, f"{tab}: {graph} drawn")
                time.sleep(1.5)  # the figures settle at the tab's width
                drv.execute_script("window.scrollTo(0, 0);")
                path = out / f"{tab}-{width}x{height}{'-presenter' if presenter else ''}.png"
                path.write_bytes(_small_png(drv.get_screenshot_as_png()))
                written.append(path)
    finally:
        drv.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.devtools.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    if urllib.parse.urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: --url {args.url}: loopback only (this drives a browser against the server)", file=sys.stderr)
        return 2
    try:
        written = take(args.url, args.out)
    except (RuntimeError, TimeoutError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile labels in the real ranking table, drawn as HTML by the page (views.components.HtmlBlock) in headless Chromium
(issue 33, failure 5; tests/dashboard/test_markup.py checks the same with a CommonMark parser, no browser).
Chromium, the fixtures and helpers of test_browser."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from tests.conftest import free_port, running_server
from tests.dashboard.test_markup import HOSTILE_LABELS, _shown

from .test_browser import _wait, downloads, driver  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

# a page holding only the disease ranking table, as results.render_views draws it, of hostile labels
_APP = """
import json, sys
from importlib import resources
import dash, pandas as pd
from dash import html
from dashboard.views.results import _ranking_table
labels = json.loads(sys.argv[2])
n = len(labels)
ranking = pd.DataFrame({"rank": range(1, n + 1), "group": labels, "mean_hit_pct": [10.0] * n, "median_hit_pct": [9.0] * n,
                        "n_samples": [3] * n, "n_studies": [1] * n, "n_cells": [100] * n})
# the dashboard's assets: html_block.js defines the component that draws the table
app = dash.Dash(__name__, assets_folder=str(resources.files("dashboard") / "assets"))
app.layout = html.Div([html.H1("table", id="ready"), _ranking_table(ranking, None, {}, True)])
app.run(host="127.0.0.1", port=int(sys.argv[1]), debug=False)
"""


@pytest.fixture(scope="module")
def table_page():
    port = free_port()
    cmd = [sys.executable, "-c", _APP, str(port), json.dumps(HOSTILE_LABELS)]
    with running_server(cmd, url=f"http://127.0.0.1:{port}", ready=lambda u: bool(urllib.request.urlopen(u, timeout=2)),
                        log_name="markup-page.log", timeout=60, stop_timeout=10) as url:
        yield url


def test_hostile_labels_show_as_text_in_the_browser(driver, table_page):  # noqa: F811
    from selenium.webdriver.common.by import By

    driver.get(table_page)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#disease-table table td.grp"), what="the ranking table")
    table = driver.find_element(By.ID, "disease-table")
    injected = [(e.tag_name, e.get_attribute("src") or e.get_attribute("href")) for e in
                table.find_elements(By.CSS_SELECTOR, "img, a, script, code, em, strong, h1, ul, ol, blockquote, hr, p, del")]
    assert not injected, f"markup from the labels was rendered: {injected}"
    assert len(table.find_elements(By.CSS_SELECTOR, "table")) == 1
    assert len(table.find_elements(By.CSS_SELECTOR, "thead th")) == 9
    cells = [_shown(td.get_attribute("textContent")) for td in table.find_elements(By.CSS_SELECTOR, "td.grp")]
    assert cells == [_shown(label) for label in HOSTILE_LABELS]

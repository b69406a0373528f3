"""Real-browser tests: headless Debian Chromium driving the dashboard served on loopback.

Screenshots of the main views land in test-artifacts/ (not committed)."""

from __future__ import annotations

import os
import re
import sys
import urllib.request

import pytest

from dashboard.devtools.pagebench import find_program
from tests.conftest import ARTIFACTS, free_port, running_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(downloads):
    chrome = find_program("CHROME_BIN", "chromium", "chromium-browser", "google-chrome")
    chromedriver = find_program("CHROMEDRIVER", "chromedriver")
    if not chrome or not chromedriver:
        msg = "Chromium/chromedriver not found (make test installs Debian's on Linux; or set CHROME_BIN and CHROMEDRIVER)"
        if os.environ.get("SIGATLAS_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def server(tiny_build):
    port = free_port()
    with running_server([sys.executable, "-m", "dashboard", "--atlas", str(tiny_build[1]), "--port", str(port)],
                        url=f"http://127.0.0.1:{port}", ready=lambda u: bool(urllib.request.urlopen(u, timeout=2)),
                        log_name="dashboard-server.log", timeout=60, stop_timeout=10) as url:
        yield url


def _wait(driver, fn, timeout=90, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d):
        try:
            return fn(d)
        except Exception:  # elements re-rendered mid-read: try again
            return False

    from selenium.common.exceptions import TimeoutException

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(safe, message=f"timed out waiting for {what}")
    except TimeoutException:
        name = "failed-" + "".join(c if c.isalnum() else "_" for c in what)[:60]
        _shot(driver, name)
        page = driver.execute_script(
            "const q = s => Array.from(document.querySelectorAll(s));"
            "return {search: window.location.search,"
            " checked: q('input[type=radio]:checked').map(i => (i.closest('[id]') || {}).id + '=' + i.value),"
            " titles: q('.js-plotly-plot').map(p => (p.closest('[id]') || {}).id + ': ' + ((p.layout || {}).title || {}).text),"
            " status: (document.getElementById('progress-text') || {}).textContent};")
        raise TimeoutException(f"timed out waiting for {what}; page: {page}; screenshot test-artifacts/{name}.png") from None


def _ranking(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#disease-table tbody td.grp")]


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//button[@role='tab'][contains(., '{label}')]").click()


def _segment(driver, control_id: str, value: str) -> None:
    """Pick ``value`` in a segmented control through its radio input (a click on the label can
    land while the tab panel is still moving)."""
    _wait(driver, lambda d: d.execute_script(
        f"const i = document.querySelector('#{control_id} input[value=\"{value}\"]');"
        "if (!i) { return false; } i.click(); return i.checked;"), what=f"{control_id} = {value}")


def _plot(driver, graph_id: str, expr: str):
    return driver.execute_script(f"const p = document.querySelector('#{graph_id} .js-plotly-plot'); return p ? {expr} : null;")


def _filter_pills(driver, control_id: str) -> list[str]:
    """The values a MultiSelect shows as pills (their labels without the cell counts)."""
    labels = driver.execute_script(
        f"const i = document.getElementById('{control_id}');"
        "const root = i && (i.closest('.mantine-MultiSelect-root') || i.closest('.mantine-InputWrapper-root'));"
        "return root ? Array.from(root.querySelectorAll('.mantine-Pill-label')).map(p => p.textContent) : null;")
    return [label.replace("\u00a0", " ").strip().rsplit(" (", 1)[0] for label in labels or []]


def _planted(tiny_build) -> list[str]:
    ms1 = next(p for p in tiny_build[2]["programs"] if p["name"] == "MS1")
    return sorted(ms1["strength"], key=lambda d: -ms1["strength"][d])


def test_ms1_preset_with_background_progress(driver, server, tiny_build):
    from selenium.webdriver.common.by import By

    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "button.preset"), what="preset buttons")
    assert "SIMULATED" in driver.find_element(By.ID, "sim-badge").text
    driver.find_element(By.XPATH, "//button[contains(., 'MS1')]").click()
    # the query runs in a background process and reports the null's progress
    _wait(driver, lambda d: "null" in d.find_element(By.ID, "progress-text").text
          or "done" in d.find_element(By.ID, "progress-text").text, what="progress text")
    # read inside the wait: the table can be re-rendered between two reads (a stale element)
    ranking = _wait(driver, lambda d: (lambda r: r if len(r) >= 3 else False)(_ranking(d)), what="disease ranking")
    assert ranking[:3] == _planted(tiny_build)
    # the ranking may show before the p-values (issue 17): then the full result follows
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text in ("done", "answered from the cache"), what="query done")
    _wait(driver, lambda d: "null: 1,000 matched gene sets" in d.find_element(By.ID, "status").text, what="full result")
    # the preset picked one Cell Ontology term, shown with its cells, and the link names it
    assert _filter_pills(driver, "cell-types") == ["monocyte"]
    _wait(driver, lambda d: re.search(r"[?&]cell_types=monocyte(&|$)", d.find_element(By.ID, "share-link").get_attribute("value")),
          what="term in the link")
    status = driver.find_element(By.ID, "status").text
    assert "null: 1,000 matched gene sets" in status
    # the ranking figure: one point per sample, the null band, p-values, simulated labelled
    assert "SIMULATED" in _plot(driver, "disease-fig", "p.layout.title.text")
    # the planted disease beats random gene sets: its specificity p near the floor (1,000 draws; the
    # tiny atlas's studies share few genes, so a random set may hold an MS1 gene: a few draws can reach it)
    heads = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, "#disease-table thead th")]
    column = heads.index("specificity p (vs random gene sets)")
    first = driver.find_elements(By.CSS_SELECTOR, "#disease-table tbody tr")[0].find_elements(By.TAG_NAME, "td")
    said = first[column].text.strip()
    assert said == "≤ 0.001" or float(said) < 0.01, (heads, said)
    _shot(driver, "diseases")
    _tab(driver, "Studies")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#study-grid .ag-row"), what="study grid rows")
    assert "SIMULATED" in driver.find_element(By.ID, "study-grid").text
    _shot(driver, "studies")
    _tab(driver, "Cells")
    _wait(driver, lambda d: "cells shown" in d.find_element(By.ID, "umap-badge").text.lower(), what="UMAP badge")
    _shot(driver, "umap")


def test_diseases_grouped_by_a_parent_term_from_a_link(driver, server, tiny_atlas):
    from selenium.webdriver.common.by import By

    pooled = tiny_atlas.disease_grouping(["infectious disease"])
    driver.get(server + "/?preset=ms1&null=100&disease_groups=MONDO:0005550")  # the term's id reads as its label
    ranking = _wait(driver, lambda d: (lambda r: r if len(r) >= 3 else False)(_ranking(d)), what="grouped ranking")
    assert ranking[0] == "infectious disease" and not set(pooled) & set(ranking)
    assert _filter_pills(driver, "disease-groups") == ["infectious disease"]
    assert _filter_pills(driver, "cell-types") == ["monocyte"]
    note = driver.find_element(By.ID, "disease-groups-note").text
    assert note.startswith("Ranked as one: infectious disease: ") and all(d in note for d in pooled)
    assert "diseases grouped by infectious disease" in _plot(driver, "disease-fig", "p.layout.title.text")
    _wait(driver, lambda d: "disease_groups=infectious+disease" in d.find_element(By.ID, "share-link").get_attribute("value"),
          what="the group in the link")
    _shot(driver, "disease_groups")


def test_a_link_s_page_asks_for_its_layout_once_as_its_html_arrives(driver, server):
    """The layout (with the link's ranking) and the callback list are preloaded by the page's HTML
    (app._preloading_index) and Dash's renderer uses those answers: one request each, made by the
    page's link elements, not a second one by the renderer."""
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    driver.get(server + "/?preset=ms1&null=100")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#disease-table tbody tr"), what="the link's ranking")
    asked = driver.execute_script("return performance.getEntriesByType('resource').map(e => [e.name, e.initiatorType]);")
    for path in ("/_dash-layout", "/_dash-dependencies"):
        assert [how for name, how in asked if name.endswith(path)] == ["link"], (path, asked)


def test_umap_colour_switch(driver, server):
    from selenium.webdriver.common.by import By

    driver.get(server + "/?preset=ms1&null=100&tab=cells")
    _wait(driver, lambda d: "cells shown" in d.find_element(By.ID, "umap-badge").text.lower(), what="UMAP badge")
    _segment(driver, "umap-color", "disease")
    _wait(driver, lambda d: "disease" in (_plot(d, "umap-fig", "p.layout.title.text") or ""), what="UMAP coloured by disease")
    # the label transfer's prediction, said in the title, the legend and the note above the figure
    _segment(driver, "umap-color", "cell_type_predicted")
    _wait(driver, lambda d: "predicted by label transfer" in (_plot(d, "umap-fig", "p.layout.title.text") or ""), what="UMAP by prediction")
    assert _plot(driver, "umap-fig", "p.layout.legend.title.text") == "cell type (predicted)"
    assert "got their own term" in driver.find_element(By.ID, "umap-labels").text


def test_two_quick_view_switches_both_apply(driver, server):
    """Regression: the second of two quick clicks used to be held behind the URL round trip and
    both were lost (the figure kept its first grouping and kind)."""
    driver.get(server + "/?preset=ms1&null=100&tab=genes")
    _wait(driver, lambda d: _plot(d, "heatmap-fig", "p.data.length"), what="heatmap")
    driver.execute_script(
        "for (const [c, v] of [['group-by', 'study'], ['heat-mode', 'dotplot']]) {"
        " document.querySelector(`#${c} input[value=\"${v}\"]`).click(); }")
    _wait(driver, lambda d: "study" in _plot(d, "heatmap-fig", "p.layout.title.text") and _plot(d, "heatmap-fig", "p.data[0].type") == "scatter",
          what="dot plot by study after two quick clicks")
    _wait(driver, lambda d: "group_by=study" in d.current_url and "heat=dotplot" in d.current_url, what="both switches in the address bar")


def test_a_repeated_query_answers_from_the_cache(driver, server):
    from selenium.webdriver.common.by import By

    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "button.preset"), what="preset buttons")
    driver.find_element(By.XPATH, "//button[contains(., 'MS1')]").click()
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text == "answered from the cache", what="cached answer")
    _wait(driver, lambda d: len(_ranking(d)) >= 3, what="disease ranking")


# the moment the full views replace the ranking (the partial-ranking note goes): once the
# response that drew them is wholly applied (the task after it), whether the page says "done",
# whether Run can be clicked then, and a click on it
_CLICK_AT_DONE_JS = """
window.__atDone = [];
let partial = false, seen = false;
new MutationObserver(() => {
    const now = !!document.getElementById('partial-note');
    if (partial && !now && !seen) {
        seen = true;
        setTimeout(() => {
            const run = document.getElementById('run');
            window.__atDone.push([document.getElementById('progress-text').textContent, run.disabled]);
            run.click();
        }, 0);
    }
    partial = now;
}).observe(document.body, {childList: true, subtree: true});
"""


def test_run_can_be_clicked_as_soon_as_the_page_says_done(driver, server):
    """The page said "done" (the views drawn as the job stored its result) up to one job poll
    before the job's end re-enabled Run: a click on Run then was lost (issue 36)."""
    from selenium.webdriver.common.by import By

    from dashboard.devtools.pagebench import _SET_GENES_JS

    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "button.preset"), what="preset buttons")
    driver.find_element(By.XPATH, "//button[contains(., 'MS1')]").click()
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text in ("done", "answered from the cache"), what="the preset's query")
    genes = driver.find_element(By.ID, "genes").get_attribute("value").split()
    assert len(genes) > 6
    for left_out in range(3):  # lists this server has not met: each is ranked, then drawn whole by finish_now
        driver.execute_script(_SET_GENES_JS, "\n".join(genes[:left_out] + genes[left_out + 1:]))
        _wait(driver, lambda d: not d.find_element(By.ID, "run").get_attribute("disabled"), what="Run enabled")
        driver.execute_script(_CLICK_AT_DONE_JS)
        driver.find_element(By.ID, "run").click()
        _wait(driver, lambda d: d.execute_script("return window.__atDone.length") >= 1, what="the full views")
        assert driver.execute_script("return window.__atDone[0]") == ["done", False], "Run was disabled when the page said done"
        # the click made then runs the same list again: answered from the cache
        _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text == "answered from the cache",
              timeout=30, what="the click made at done to run the query again")


# the number of Dash components the page's renderer keeps under an element (its layout in the store)
_COMPONENTS_UNDER_JS = """
const state = window.store.getState(), path = state.paths.strs[arguments[0]];
if (!path) { return null; }
let node = state.layout;
for (const key of path) { node = node[key]; }
const count = n => Array.isArray(n) ? n.reduce((a, c) => a + count(c), 0)
    : (n && typeof n === 'object' && n.type && n.namespace) ? 1 + Object.values(n.props || {}).reduce((a, v) => a + count(v), 0) : 0;
return count(node);
"""


def test_a_link_to_the_studies_tab_shows_the_result_and_how_each_study_was_read(driver, server, tiny_atlas):
    """The reports of how each study was read, as thousands of components, held the page's script
    for 10 s on the demo when a link opened on the Studies tab, before it drew the result: they are
    one element for the page, whatever the number of studies."""
    from selenium.webdriver.common.by import By

    driver.get(server + "/?preset=ms1&null=100&tab=studies")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#study-grid .ag-center-cols-container .ag-row"), what="study rows")
    reports = _wait(driver, lambda d: d.find_element(By.ID, "study-reports").text, what="the study reports")
    for study in tiny_atlas.studies:
        assert study.id in reports
    assert "How each study was read" in reports and "Labels: one vocabulary" in reports
    folds = driver.find_elements(By.CSS_SELECTOR, "#study-reports details.study-report")
    assert len(folds) == len(tiny_atlas.studies)
    folds[0].find_element(By.TAG_NAME, "summary").click()
    assert "Values:" in folds[0].text
    assert driver.execute_script(_COMPONENTS_UNDER_JS, "study-reports-slot") <= 2


def test_pasted_aliases_and_unknown_genes_show_every_decision(driver, server):
    from selenium.webdriver.common.by import By

    driver.get(server + "/?tab=diseases")
    box = _wait(driver, lambda d: d.find_element(By.ID, "genes"), what="gene box")
    box.send_keys("s100a8; FAM65B, NOT_A_GENE\nENSG00000170458 VCAN VCAN")  # a tab would move focus
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: "of 4 genes" in d.find_element(By.ID, "resolution").text, what="gene resolution")
    # Run's own request draws the decisions with the ranking, the full result draws them again: read them after it
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text in ("done", "answered from the cache"), what="the query's end")
    _wait(driver, lambda d: not d.find_elements(By.ID, "partial-note"), what="the full result drawn")
    text = driver.find_element(By.ID, "resolution").text
    assert "4 of 4 genes matched" in text
    # no gene has the name: not a gene, apart from genes the model lacks (issue 36)
    assert "NOT_A_GENE" in driver.find_element(By.ID, "res-not-genes").text
    renamed = driver.find_element(By.ID, "res-renamed").text
    assert "s100a8 → S100A8" in renamed and "FAM65B → RIPOR2" in renamed and "ENSG00000170458 → CD14" in renamed
    assert "VCAN" in driver.find_element(By.ID, "res-duplicates").text
    _wait(driver, lambda d: len(_ranking(d)) >= 1, what="ranking for a pasted list")
    _shot(driver, "pasted_genes")


def test_grouping_switch_export_and_copied_link(driver, server, downloads, tiny_build, tiny_atlas):
    from selenium.webdriver.common.by import By

    driver.get(server + "/?preset=ms1&null=100")
    _wait(driver, lambda d: len(_ranking(d)) >= 3, what="ranking from a link")
    _tab(driver, "Genes")
    _wait(driver, lambda d: _plot(d, "heatmap-fig", "p.data.length"), what="heatmap")
    _segment(driver, "group-by", "study")
    _wait(driver, lambda d: "study" in (_plot(d, "heatmap-fig", "p.layout.title.text") or ""), what="heatmap grouped by study")
    xs = set(_plot(driver, "heatmap-fig", "p.data[0].x") or [])
    assert xs and xs <= {s.id for s in tiny_atlas.studies}, xs
    _segment(driver, "heat-mode", "dotplot")
    _wait(driver, lambda d: _plot(d, "heatmap-fig", "p.data[0].type") == "scatter", what="dot plot")
    _shot(driver, "genes_dotplot")
    # exports: the CSV of the data and the SVG of the figure
    driver.find_element(By.ID, "csv-genes").click()
    _wait(driver, lambda d: (downloads / "sigatlas-genes.csv").is_file(), what="CSV download")
    head = (downloads / "sigatlas-genes.csv").read_text().splitlines()[0]
    assert head.startswith("gene,")
    driver.find_element(By.ID, "img-genes-svg").click()
    _wait(driver, lambda d: (downloads / "sigatlas-genes.svg").is_file() and (downloads / "sigatlas-genes.svg").stat().st_size > 1000,
          what="SVG download")
    assert "<svg" in (downloads / "sigatlas-genes.svg").read_text()[:400]
    # the copied link restores the whole view in a fresh page
    link = _wait(driver, lambda d: d.find_element(By.ID, "share-link").get_attribute("value"), what="share link")
    assert "group_by=study" in link and "heat=dotplot" in link and "tab=genes" in link
    genes_before = driver.find_element(By.ID, "genes").get_attribute("value")
    driver.get("about:blank")
    driver.get(link)
    _wait(driver, lambda d: _plot(d, "heatmap-fig", "p.data[0].type") == "scatter", what="restored dot plot")
    assert "study" in _plot(driver, "heatmap-fig", "p.layout.title.text")
    assert [g.strip() for g in driver.find_element(By.ID, "genes").get_attribute("value").replace("\n", ",").split(",") if g.strip()] == \
        [g.strip() for g in genes_before.replace("\n", ",").split(",") if g.strip()]
    _shot(driver, "restored_link")


def test_presenter_mode_steps_through_saved_views(driver, server):
    from selenium.webdriver.common.by import By

    driver.get(server)  # the page's own storage (a fresh browser's first page, data:, has none)
    driver.execute_script("window.localStorage.clear();")
    driver.get(server + "/?preset=ms1&null=100")
    _wait(driver, lambda d: len(_ranking(d)) >= 3, what="first view")
    # save until the saved views say so: on a busy machine a click before the view's link is known saves nothing
    _wait(driver, lambda d: (d.find_element(By.ID, "save-view").click() or True)
          and "of 1" in d.find_element(By.ID, "view-pos").get_attribute("textContent"), timeout=60, what="first view saved")
    driver.get(server + "/?preset=h-interferon-alpha-response&null=100")
    _wait(driver, lambda d: "Interferon" in d.find_element(By.ID, "genes").get_attribute("value")
          or "ISG15" in d.find_element(By.ID, "genes").get_attribute("value"), what="second view genes")
    _wait(driver, lambda d: len(_ranking(d)) >= 1, what="second view")
    _wait(driver, lambda d: (d.find_element(By.ID, "save-view").click() or True)
          and "of 2" in d.find_element(By.ID, "view-pos").get_attribute("textContent"), timeout=60, what="second view saved")
    driver.find_element(By.XPATH, "//*[@id='presenter']/ancestor::label | //label[contains(., 'Presenter')]").click()
    _wait(driver, lambda d: "presenter" in d.find_element(By.ID, "root").get_attribute("class"), what="presenter mode")
    driver.find_element(By.ID, "next-view").click()
    _wait(driver, lambda d: "view 1 of 2" in d.find_element(By.ID, "view-pos").text, what="first saved view")
    _wait(driver, lambda d: "S100A8" in d.find_element(By.ID, "genes").get_attribute("value"), what="MS1 genes restored")
    _shot(driver, "presenter")


def _matched(driver) -> tuple[int, int]:
    """(matched, requested) from the gene resolution's head line ("12 of 14 genes matched")."""
    from selenium.webdriver.common.by import By

    words = driver.find_element(By.ID, "res-head").text.split()
    return int(words[0]), int(words[2])


def test_modules_tab_adds_the_top_co_attributing_genes(driver, server, downloads):
    from selenium.webdriver.common.by import By

    driver.get(server + "/?preset=ms1&null=100")
    _wait(driver, lambda d: len(_ranking(d)) >= 3, what="ranking from a link")
    matched, requested = _matched(driver)
    _tab(driver, "Modules")  # the modules are computed now, not before
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#modules-overlap-grid .ag-row"), what="module overlap rows")
    head = driver.find_element(By.ID, "modules-summary-head").text
    # the same count as the gene box (issue 18, point 8), then the share the modules cover
    assert head.startswith(f"{matched} of {requested} signature genes matched the atlas;") and "coherence r̄" in head, head
    assert "SIMULATED" in driver.find_element(By.ID, "modules-sim").text
    assert _plot(driver, "modules-fig", "p.layout.meta.n_signature") > 0
    # the grid's first page: the ten strongest co-attributing genes missing from the signature
    top = _wait(driver, lambda d: (lambda g: g if len(g) == 10 else False)(
        [c.text for c in d.find_elements(By.CSS_SELECTOR, "#modules-missing-grid .ag-center-cols-container [col-id='gene']")]),
        what="ten missing genes")
    _shot(driver, "modules")
    # the overlap table exports every row, not just the first page
    driver.find_element(By.ID, "modules-overlap-csv").click()
    csv = downloads / "sigatlas-module-overlaps.csv"
    _wait(driver, lambda d: csv.is_file() and csv.stat().st_size > 0, what="overlap CSV download")
    n_rows = int(driver.find_element(By.CSS_SELECTOR, "#modules-overlap-grid .ag-paging-row-summary-panel").text.split()[-1])
    assert len(csv.read_text().strip().splitlines()) == 1 + n_rows
    before = driver.find_element(By.ID, "genes").get_attribute("value")
    driver.find_element(By.ID, "add-missing").click()
    _wait(driver, lambda d: d.find_element(By.ID, "genes").get_attribute("value") != before, what="genes added")
    added = driver.find_element(By.ID, "genes").get_attribute("value").removeprefix(before).split()
    assert sorted(added) == sorted(top)
    # the query reruns with them and every view follows: the resolution and the Modules tab
    _wait(driver, lambda d: _matched(d) == (matched + 10, requested + 10), what="resolution of the longer signature")
    _wait(driver, lambda d: f"of {requested + 10} signature genes" in d.find_element(By.ID, "modules-summary-head").text,
          what="modules of the longer signature")
    assert "tab=modules" in driver.current_url
    _shot(driver, "modules_added")


def test_a_disease_name_in_the_table_opens_its_forest_plot(driver, server):
    """Issue 32: a click on a disease's name in the ranking table draws its per-study effects
    (the forest plot) and brings them into view; the order switch orders the table by the
    pooled effect, and the link carries it."""
    from selenium.webdriver.common.by import By

    driver.get(server + "/?preset=ms1&null=0&disease_order=effect")
    ranking = _wait(driver, lambda d: (lambda r: r if len(r) >= 3 else False)(_ranking(d)), what="disease ranking")
    heads = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#disease-table th")]
    assert heads[2:4] == ["evidence", "g vs reference [95% CI]"], heads
    # a disease's forest plot, or the message that no study gave it an effect: either names it
    shown = "((p.layout.meta || {}).disease || (p.layout.meta || {}).empty || '')"
    _wait(driver, lambda d: (_plot(d, "forest-fig", shown) or "").startswith(ranking[0]), what="forest plot of the first disease")
    target = ranking[-1]
    cell = [c for c in driver.find_elements(By.CSS_SELECTOR, "#disease-table tbody td.grp") if c.text == target][0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
    cell.click()
    _wait(driver, lambda d: (_plot(d, "forest-fig", shown) or "").startswith(target), what=f"forest plot of {target}")
    assert "disease_order=effect" in driver.find_element(By.ID, "share-link").get_attribute("value")
    _shot(driver, "forest")

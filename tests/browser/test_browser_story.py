"""Real-browser tests of issue 36: the page reads a paper's gene list right (and asks before
running mostly words), states the chance level and q where it shows significance, one status at
a time while a query runs, and one colour per disease across queries (headless Debian Chromium,
the fixtures and helpers of test_browser)."""

from __future__ import annotations

import pytest

from . import test_browser
from .test_browser import _plot, _ranking, _wait

# the real-browser fixtures of test_browser (a module-scoped Chromium and dashboard server)
driver, server, downloads = test_browser.driver, test_browser.server, test_browser.downloads

pytestmark = pytest.mark.browser


def _type_genes(driver, text: str) -> None:
    driver.execute_script(
        "const el = document.getElementById('genes');"
        "Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(el, arguments[0]);"
        "el.dispatchEvent(new Event('input', {bubbles: true}));", text)


def test_a_paper_sentence_asks_before_running_then_runs_its_genes(driver, server, tiny_atlas):  # noqa: F811
    from selenium.webdriver.common.by import By

    genes = list(tiny_atlas.genes[:3])
    driver.get(server + "/?null=0")
    _wait(driver, lambda d: d.find_element(By.ID, "genes").is_displayed(), what="the gene box")
    _type_genes(driver, f"Monocytes of these patients expressed ({genes[0]}, {genes[1]} and {genes[2]}), as was shown in "
                        "the cohort of the study.")
    driver.find_element(By.ID, "run").click()
    ask = _wait(driver, lambda d: (lambda e: e if e.is_displayed() else False)(d.find_element(By.ID, "low-genes")),
                what="the question before running")
    assert "Only 3 of the " in ask.text and "Run anyway" in ask.text
    resolution = driver.find_element(By.ID, "resolution").text
    assert "3 of 3 genes matched" in resolution and "Not genes, not used" in resolution
    # the brackets and the full stop are not part of the genes, "and", "in", "was" are no genes
    not_genes = driver.find_element(By.ID, "res-not-genes").text.split(", ")
    assert {"and", "was", "in", "the"} <= set(not_genes) and not set(genes) & set(not_genes)
    assert not _ranking(driver)  # nothing ran
    driver.find_element(By.ID, "run-anyway").click()
    _wait(driver, lambda d: len(_ranking(d)) >= 1, what="the ranking of the three genes")
    assert not driver.find_element(By.ID, "low-genes").is_displayed()
    # the chance level is the dashed line, named as such
    notes = _plot(driver, "disease-fig", "p.layout.annotations.map(a => a.text)")
    assert any(t.startswith("chance level ") for t in notes)


def test_one_status_q_beside_p_and_one_colour_per_disease(driver, server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(server + "/?preset=ms1&null=200")
    _wait(driver, lambda d: len(_ranking(d)) >= 3, what="MS1 ranking")
    _wait(driver, lambda d: "q = " in " ".join(_plot(d, "disease-fig", "p.layout.xaxis.ticktext") or [])
          or "q ≤ " in " ".join(_plot(d, "disease-fig", "p.layout.xaxis.ticktext") or []), what="q beside p in the figure")
    first = _plot(driver, "disease-fig", "p.layout.meta.colours")
    # a second query: a few of the genes, fewer null draws; while it runs the page tells one story
    _type_genes(driver, "\n".join(driver.find_element(By.ID, "genes").get_attribute("value").split("\n")[:12]))
    _wait(driver, lambda d: "Out of date" in d.find_element(By.ID, "stale").text, what="out-of-date marker")
    draws = driver.find_element(By.ID, "null-draws")
    draws.send_keys(Keys.CONTROL, "a")
    draws.send_keys("3000", Keys.TAB)
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "partial-note") or "done" in d.find_element(By.ID, "progress-text").text,
          what="the new ranking")
    if driver.find_elements(By.ID, "partial-note"):
        # the ranking drawn, its p-values computing: no "Out of date", no "no null was drawn"
        assert not driver.find_elements(By.ID, "stale-alert")
        reading = driver.find_element(By.ID, "reading").text
        assert "no random gene sets were drawn" not in reading
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text == "done", timeout=180, what="the query done")
    _wait(driver, lambda d: not d.find_elements(By.ID, "stale-alert"), what="no out-of-date marker on the new result")
    second = _plot(driver, "disease-fig", "p.layout.meta.colours")
    shared = set(first) & set(second)
    assert shared and all(first[d] == second[d] for d in shared)
    assert len(set(second.values())) == len(second)  # no two diseases of the figure share a colour


def test_image_exports_on_the_landing_page_download_nothing(driver, server, downloads):  # noqa: F811
    """Issue 36, item 9: before a query the figures say "Appears after a query"; their CSV/SVG/PNG
    buttons are disabled, say why, and a click downloads nothing; after a query they export."""
    import time

    from selenium.webdriver.common.by import By

    from dashboard.views.components import EXPORT_WAITS

    driver.get(server + "/?tab=diseases")
    _wait(driver, lambda d: _plot(d, "disease-fig", "(p.layout.meta || {}).empty"), what="the landing page's empty ranking")
    button = driver.find_element(By.ID, "img-diseases-svg")
    assert button.get_attribute("disabled") is not None
    assert button.get_attribute("title") == EXPORT_WAITS
    driver.execute_script("arguments[0].click();", button)
    time.sleep(1.5)  # a download would have landed by now
    assert not list(downloads.glob("sigatlas-diseases*"))
    # a result enables them
    driver.get(server + "/?preset=ms1&null=100&tab=diseases")
    _wait(driver, lambda d: d.find_element(By.ID, "img-diseases-svg").get_attribute("disabled") is None, what="the export enabled by a result")

"""Real-browser test of the "Genes in a cell type" tab: choose a cell type, see both rankings,
export every row, send the top 10 genes to the signature box and run them (headless Debian
Chromium, the fixtures and helpers of test_browser)."""

from __future__ import annotations

import pytest

from compute.query import gene_ranking

from .test_browser import _plot, _shot, _tab, _wait, downloads, driver, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

MONO = "classical monocyte"


def _choose(browser, control_id: str, label: str) -> None:
    """Pick the option ``label`` (shown with its cell count, maybe indented) in a MultiSelect."""
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, control_id)
    box.click()
    box.send_keys(label)
    # the options of this control's open dropdown (its listbox), visible ones only: closed dropdowns
    # of other controls list the same labels
    _wait(browser, lambda d: d.execute_script(
        "const box = arguments[0], want = arguments[1];"
        "const list = document.getElementById(box.getAttribute('aria-controls')) || document;"
        "const opt = Array.from(list.querySelectorAll('[role=option]')).find(o => o.offsetParent !== null &&"
        " o.textContent.replace(/\\u00a0/g, ' ').trim().replace(/ \\([\\d,]+\\)$/, '') === want);"
        "if (!opt) { return false; } opt.click(); return true;", box, label), what=f"option {label}")
    _wait(browser, lambda d: label in (p.strip().rsplit(" (", 1)[0] for p in d.execute_script(
        "const root = arguments[0].closest('.mantine-MultiSelect-root') || arguments[0].closest('.mantine-InputWrapper-root');"
        "return Array.from(root.querySelectorAll('.mantine-Pill-label')).map(p => p.textContent.replace(/\\u00a0/g, ' '));", box)),
        what=f"{label} chosen")


def _column(browser, col: str) -> list[str]:
    """The texts of one column of the ranking table's shown page, in row order (the gene column is
    pinned, so it lives in another container than the rest)."""
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#rank-grid .ag-row[row-index]')).map(r => {"
        " const c = r.querySelector(`.ag-cell[col-id='${arguments[0]}']`);"
        " return c ? [Number(r.getAttribute('row-index')), c.textContent.trim()] : null; }).filter(x => x);", col)
    return [text for _, text in sorted(cells)]


def test_rank_a_cell_type_and_run_its_top_genes(driver, server, downloads, tiny_atlas):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(server + "/?tab=cell_genes")
    _wait(driver, lambda d: d.find_element(By.ID, "rank-cell-types").is_displayed(), what="the tab's cell-type filter")
    _choose(driver, "rank-cell-types", MONO)
    driver.find_element(By.ID, "rank-cell-types").send_keys(Keys.ESCAPE)  # close the dropdown over the page
    # both rankings: the rank-rank plot holds the top 50 by attribution and the top 50 by expression
    _wait(driver, lambda d: (_plot(d, "rank-fig", "(p.layout.meta || {}).genes") or []) != [], what="rank-rank plot")
    meta = _plot(driver, "rank-fig", "p.layout.meta")
    assert len(meta["both"]) + len(meta["attribution_only"]) == 50 and len(meta["both"]) + len(meta["expression_only"]) == 50
    ranking = gene_ranking(tiny_atlas, cell_types=MONO)
    assert set(ranking.top(50)) == set(meta["both"]) | set(meta["attribution_only"])
    assert "SIMULATED" in _plot(driver, "rank-fig", "p.layout.title.text")
    assert "SIMULATED" in driver.find_element(By.ID, "rank-sim").text
    # the table: the first page, in attribution order, with each gene's expression rank
    first = _wait(driver, lambda d: (lambda g: g if len(g) >= 10 else False)(_column(d, "gene")), what="ranked genes in the table")
    assert first[:10] == ranking.top(10)
    assert all(_column(driver, "expr_rank")[:10])
    # the spread of the top gene, one point per sample
    _wait(driver, lambda d: _plot(d, "rank-spread-fig", "(p.layout.meta || {}).gene") == ranking.top(1)[0], what="spread of the top gene")
    _shot(driver, "genes_in_cell_type")
    # the CSV holds every ranked gene, not the first page
    driver.find_element(By.ID, "rank-csv").click()
    csv = downloads / "sigatlas-genes-in-cell-type.csv"
    _wait(driver, lambda d: csv.is_file() and csv.stat().st_size > 0, what="ranking CSV download")
    assert len(csv.read_text().strip().splitlines()) == 1 + len(ranking.table)
    # send the top 10 to the signature box, then run it
    driver.find_element(By.ID, "send-top").click()
    _wait(driver, lambda d: d.find_element(By.ID, "genes").get_attribute("value").split() == ranking.top(10), what="ten genes sent")
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: "10 of 10 genes matched" in d.find_element(By.ID, "resolution").text, what="the signature's resolution")
    _tab(driver, "Diseases")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#disease-table tbody td.grp"), what="disease ranking of the ten genes")
    # once the query ran, the link carries the tab's population
    _wait(driver, lambda d: "rank_cell_types=classical+monocyte" in d.find_element(By.ID, "share-link").get_attribute("value"),
          what="the population in the link")
    _shot(driver, "genes_in_cell_type_run")

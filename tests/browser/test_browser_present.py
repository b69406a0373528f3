"""Real-browser tests of issue 36, items 7, 8 and 11: presenter mode on a 1920x1080 screen (every
figure whole on the screen once scrolled to, its texts apart and at 20 px or more, tabs at 20 px,
saved views named); the Data switch on an atlas whose only real study holds no disease (one
message, nothing computed, no error text inside the figures); the filters' term trees (a plain
"T cell", a disease under every parent, wrapped entries indented)."""

from __future__ import annotations

import pytest

from . import test_browser
from .test_browser import _plot, _segment, _wait
from .test_browser_layout import _assert_fits, _ms1, _settled, _viewport

driver, server, downloads = test_browser.driver, test_browser.server, test_browser.downloads

pytestmark = pytest.mark.browser

# the figures of each tab that presenter mode shows, by the tab's label
PRESENTER_FIGURES = {
    "Diseases": ("disease-fig", "forest-fig", "robust-fig", "driver-fig", "compare-fig", "scatter-fig"),
    "Genes": ("heatmap-fig",),
    "Cells": ("umap-fig",),
}
LEAST_PX = 20

# a figure scrolled to: where it sits on the screen, and its tick labels and axis titles under LEAST_PX
_ON_SCREEN_JS = """
const graph = document.getElementById(arguments[0]);
const root = graph && graph.querySelector('.js-plotly-plot');
if (!root || !root._fullLayout) { return null; }
const r = graph.getBoundingClientRect();
const small = [];
for (const el of root.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .annotation-text, .legendtext')) {
    const size = parseFloat(el.style.fontSize || window.getComputedStyle(el).fontSize);
    if ((el.textContent || '').trim() && size < arguments[1]) { small.push([el.textContent.slice(0, 40), size]); }
}
return {top: r.top, bottom: r.bottom, screen: window.innerHeight, small: small};
"""


def _presenter_on(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//*[@id='presenter']/ancestor::label | //label[contains(., 'Presenter')]").click()
    _wait(driver, lambda d: "presenter" in d.find_element(By.ID, "root").get_attribute("class"), what="presenter mode")


def test_presenter_mode_fits_a_1920x1080_screen_and_names_saved_views(driver, server):
    from selenium.webdriver.common.by import By

    _viewport(driver, 1920, 1080)
    driver.get(server)
    driver.execute_script("window.localStorage.clear();")
    _ms1(driver, server)
    # a view saved under a name is listed and reopened by that name
    name = driver.find_element(By.ID, "view-name")
    name.send_keys("Sepsis monocytes, MS1")
    _wait(driver, lambda d: (d.find_element(By.ID, "save-view").click() or True)
          and "Sepsis monocytes, MS1" in d.find_element(By.ID, "view-pos").get_attribute("textContent"), timeout=60,
          what="the view saved under its name")
    _presenter_on(driver)
    listed = driver.execute_script(
        "const i = document.getElementById('saved-view-pick'); return i ? i.value : null;")
    assert listed == "1. Sepsis monocytes, MS1"
    # at the page's top the ranking shows whole under the tabs: the disease names and p-values above the fold
    driver.execute_script("window.scrollTo(0, 0);")
    _settled(driver, "disease-fig")
    top = driver.execute_script("const r = document.getElementById('disease-fig').getBoundingClientRect();"
                                "return [r.top, r.bottom, window.innerHeight];")
    assert 0 <= top[0] and top[1] <= top[2], f"the ranking runs below the screen at the page's top: {top}"
    tabs = driver.execute_script("return Array.from(document.querySelectorAll('button[role=tab]'))"
                                 ".map(b => [b.textContent, parseFloat(getComputedStyle(b).fontSize)]);")
    assert tabs and all(size >= LEAST_PX for _, size in tabs), tabs
    for tab, graphs in PRESENTER_FIGURES.items():
        driver.execute_script("window.scrollTo(0, 0);")
        driver.execute_script("arguments[0].click();", driver.find_element(By.XPATH, f"//button[@role='tab'][contains(., '{tab}')]"))
        for graph_id in graphs:
            _wait(driver, lambda d, g=graph_id: _plot(d, g, "p.data.length"), what=f"{graph_id} drawn")
            _settled(driver, graph_id)
            found = _assert_fits(driver, graph_id, f"presenter 1920x1080, {tab}")
            # scrolled to, the whole figure is on the screen: the disease names and p-values under the ranking too
            place = driver.execute_script(_ON_SCREEN_JS, graph_id, LEAST_PX)
            assert place["top"] >= -2 and place["bottom"] <= place["screen"] + 2, f"{graph_id} runs past the screen: {place}"
            assert not place["small"], f"{graph_id}: texts under {LEAST_PX} px in presenter mode: {place['small'][:6]}"
            assert found["width"] > 1500  # the controls give the figures the screen's width


def test_the_real_data_switch_on_an_atlas_without_a_real_disease_says_so_once(driver, server):
    from selenium.webdriver.common.by import By

    _viewport(driver, 1280, 800)
    _ms1(driver, server)
    _segment(driver, "data-kind", "real")
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: "Nothing to rank" in d.find_element(By.ID, "status").text, what="the nothing-to-rank message")
    status = driver.find_element(By.ID, "status").text
    # what the real studies hold, that nothing was computed, and what to do
    assert "PBMC68K" in status and "no null was drawn" in status and "Set Data to 'all' or 'simulated'" in status
    assert "1 samples" not in status
    body = driver.find_element(By.TAG_NAME, "body").text
    assert body.count("Nothing to rank") == 1, "the message shows once, above the tabs"
    assert "not run: nothing to rank" in driver.find_element(By.ID, "progress-text").text
    # the figures say no more than where the message is (no error text drawn, cut, inside five figures)
    for graph_id in ("disease-fig", "robust-fig", "driver-fig", "compare-fig", "scatter-fig"):
        notes = _plot(driver, graph_id, "(p.layout.annotations || []).map(a => a.text)")
        assert notes == ["No result: the message above the tabs says why"], (graph_id, notes)


def _options(driver, control_id: str) -> list[dict]:
    """The open dropdown's options of a MultiSelect: text, depth (the tree's padding) and line boxes."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, control_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.click()
    return _wait(driver, lambda d: d.execute_script(
        "const list = document.getElementById(arguments[0].getAttribute('aria-controls'));"
        "if (!list) { return false; }"
        "const out = Array.from(list.querySelectorAll('[role=option]')).filter(o => o.offsetParent !== null).map(o => {"
        " const div = o.querySelector('.tree-option');"
        " const range = document.createRange(); range.selectNodeContents(div || o);"
        " const lines = Array.from(range.getClientRects()).map(r => Math.round(r.left));"
        " return {text: (div || o).textContent.replace(/\\u00a0/g, ' ').trim(), depth: div ? Number(div.dataset.depth) : -1,"
        "         lines: lines, optionLeft: Math.round(o.getBoundingClientRect().left)}; });"
        "return out.length ? out : false;", box), what=f"{control_id} options")


def test_the_filters_show_t_cell_every_parent_and_indented_wrapped_entries(driver, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _viewport(driver, 1280, 800)
    driver.get(server)
    _wait(driver, lambda d: d.find_element(By.ID, "cell-types").is_displayed(), what="the cell type filter")
    # narrow the dropdowns so that long entries wrap
    driver.execute_script("const s = document.createElement('style'); s.textContent = "
                          "'.mantine-MultiSelect-dropdown { width: 190px !important; }'; document.head.appendChild(s);")
    cells = _options(driver, "cell-types")
    names = [o["text"].rsplit(" (", 1)[0] for o in cells]
    assert "T cell" in names and "mature T cell" not in names, names
    wrapped = [o for o in cells if len(set(o["lines"])) == 1 and len(o["lines"]) > 1]
    assert wrapped, f"no entry wraps at this width to judge: {cells[:5]}"
    for o in cells:
        assert o["depth"] >= 0, f"{o['text']}: not drawn as a tree entry"
        # every line of an entry starts at its depth's indentation, the wrapped ones too
        assert len(set(o["lines"])) == 1, f"{o['text']}: its lines start at {o['lines']}"
    deep = [o for o in cells if o["depth"] >= 2]
    assert deep and all(o["lines"][0] > o["optionLeft"] + 20 for o in deep)
    driver.find_element(By.ID, "cell-types").send_keys(Keys.ESCAPE)
    diseases = _options(driver, "diseases")
    lines = [(o["depth"], o["text"].rsplit(" (", 1)[0]) for o in diseases]
    at = [i for i, (_, text) in enumerate(lines) if text == "autoimmune disease"]
    assert at, lines
    depth = lines[at[0]][0]
    under = []
    for d, text in lines[at[0] + 1:]:
        if d <= depth:
            break
        under.append(text)
    # autoimmune disease lists every disease it pools, RA and SLE with MS
    assert {"multiple sclerosis", "rheumatoid arthritis", "systemic lupus erythematosus"} <= set(under), under
    driver.find_element(By.ID, "diseases").send_keys(Keys.ESCAPE)


# the tabs whose figures are drawn by their own callbacks: in large type once presenter mode is on
# (they kept the ranked genes' labels at 11 px, the spread's ticks at 12 px and the modules' gene
# labels at 9 px until stop 44)
@pytest.mark.parametrize(("query", "graph_id"), [("tab=cell_genes&rank_cell_types=classical%20monocyte", "rank-fig"),
                                                 ("tab=cell_genes&rank_cell_types=classical%20monocyte", "rank-spread-fig"),
                                                 ("tab=modules", "modules-fig")])
def test_presenter_mode_scales_the_cell_type_and_modules_figures(driver, server, query, graph_id):
    from selenium.webdriver.common.by import By

    _viewport(driver, 1920, 1080)
    driver.get(server + f"/?preset=ms1&null=100&{query}")
    _wait(driver, lambda d: d.find_element(By.ID, "progress-text").text in ("done", "answered from the cache"), what="MS1 done")
    _wait(driver, lambda d: _plot(d, graph_id, "p.data.length && !(p.layout.meta || {}).empty"), what=f"{graph_id} drawn")
    _presenter_on(driver)
    # drawn again for presenter mode (its callback answers the switch)
    _wait(driver, lambda d: (_plot(d, graph_id, "p.layout.font && p.layout.font.size") or 0) >= LEAST_PX, what=f"{graph_id} redrawn")
    _settled(driver, graph_id)
    driver.execute_script(f"document.getElementById('{graph_id}').scrollIntoView({{block: 'start'}});")
    small = driver.execute_script(_ON_SCREEN_JS.replace(".legendtext'", ".legendtext, .textpoint text'"), graph_id, LEAST_PX)["small"]
    assert not small, f"{graph_id}: texts under {LEAST_PX} px in presenter mode: {small[:6]}"
    # and the larger names still apart and inside the figure (fewer are named where all would collide)
    _assert_fits(driver, graph_id, f"presenter 1920x1080, {graph_id}")

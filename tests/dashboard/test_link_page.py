"""A link's page is built with the link applied (callbacks.link.opened_page): its controls and its
ranking arrive with the page, its job starts as the page opens, and the restore callback does not
apply it a second time. Issue 36, item 12: opening a link waited for a round trip to restore the
controls before its query could even start."""

from __future__ import annotations

import logging
from urllib.parse import quote

import dash
import pytest

from dashboard import ids, payloads
from dashboard.app import create_app
from dashboard.callbacks import link
from dashboard.callbacks.wiring import CONTROLS
from dashboard.payloads import walk


@pytest.fixture(scope="module")
def app(tiny_build):
    return create_app(tiny_build[1])


def _page(app, referer: str | None):
    headers = {"Referer": referer} if referer is not None else {}
    with app.server.test_request_context("/_dash-layout", headers=headers):
        page = app.get_layout()
    return {comp.id: comp for comp in walk(page) if isinstance(getattr(comp, "id", None), str)}


def _value(comps, key):
    cid, prop = CONTROLS[key]
    return getattr(comps[cid], prop, None)


def _data_of(comps, cid):
    return getattr(comps[cid], "data", None)  # a store given no data has no attribute


def test_a_link_s_page_comes_with_its_controls_and_its_ranking(app, tiny_build):
    from dashboard.data import DashboardData

    data = DashboardData(tiny_build[1])
    search = f"?genes={quote('CD14,VCAN,S100A8,FCN1')}&cell_types=monocyte&null_draws=37&tab=genes&top_n=7"
    comps = _page(app, f"http://localhost/{search}")
    restored = link.restore(data, search, 0)
    for key in CONTROLS:  # every control as the restore callback sets it
        assert _value(comps, key) == restored[key], key
    assert comps[ids.TABS].value == "genes" and comps[ids.LINK_APPLIED].data == search
    # the ranking came with the page: its key (the request that draws the rest starts from it), its
    # views, and the Genes tab's heatmap, since that tab shows
    assert comps[ids.LINK_RUN].data == "job"
    ranked = comps[ids.RANKED].data
    payloads.STORE_SHAPES[ids.RANKED](ranked, "ranked")
    partial = ranked.rpartition("_")[0]
    assert data.stored_result(partial) is not None and data.stored_result(data.final_key(partial)) is None
    assert comps[ids.DISEASE_TABLE_WRAP].children is not None and comps[ids.HEATMAP_FIG].figure.data
    assert comps[ids.LANDING].style == {"display": "none"}
    # the restore callback, called as the page opens, runs nothing a second time: it sets the controls
    # again, unchanged (for the callbacks that follow them), and nothing else
    again = link.restore(data, search, 0, applied=search)
    assert again.pop("applied") is None and again["request"] is dash.no_update and again["notes"] is dash.no_update
    assert {key: again.pop(key) for key in CONTROLS} == {key: restored[key] for key in CONTROLS}
    assert all(v is dash.no_update for v in again.values())
    # any later change of the address (back, a presenter step) is restored as before
    later = link.restore(data, "?genes=CD14", 0, applied=None)
    assert later["genes"] == "CD14" and later["request"] == 1 and later["applied"] is dash.no_update
    other = link.restore(data, "?genes=CD14", 0, applied=search)
    assert other["genes"] == "CD14" and other["request"] == 1 and other["applied"] is None


def test_a_page_without_a_link_of_its_own_is_the_plain_page(app):
    plain = _page(app, None)
    assert _data_of(plain, ids.LINK_APPLIED) is None and _data_of(plain, ids.LINK_RUN) is None and _data_of(plain, ids.RANKED) is None
    assert _value(plain, "genes") in (None, "")
    # another site's page (its Referer) never sets this page's controls
    foreign = _page(app, "http://elsewhere.example/?genes=CD14")
    assert _data_of(foreign, ids.LINK_APPLIED) is None and _value(foreign, "genes") in (None, "")
    assert _data_of(_page(app, "http://localhost/"), ids.LINK_APPLIED) is None  # no query string
    # another page of the same host (a page embedding this one, a proxy's own page) is not this page's link
    assert _data_of(_page(app, "http://localhost/elsewhere/?genes=CD14"), ids.LINK_APPLIED) is None
    assert link.link_search() is None  # outside a request: the page Dash checks its callbacks against


def test_a_link_the_server_cannot_rank_now_starts_its_query_as_the_page_opens(app, tiny_build, monkeypatch):
    from dashboard.data import DashboardData

    monkeypatch.setattr(DashboardData, "ranks_in_request", lambda self: False)  # every job slot busy
    comps = _page(app, "http://localhost/?genes=CD14,LYZ&null_draws=41")
    assert comps[ids.LINK_RUN].data == "query" and _data_of(comps, ids.RANKED) is None
    assert _value(comps, "genes") == "CD14\nLYZ"


def test_a_link_that_does_not_run_says_why_with_the_page(app):
    comps = _page(app, "http://localhost/?genes=CD14&diseases=Martian%20flu")
    assert _data_of(comps, ids.LINK_RUN) is None and _data_of(comps, ids.RANKED) is None
    assert "none of the link's values is in this atlas" in str(comps[ids.STATE_NOTES].children)


def test_a_link_that_fails_where_the_page_is_built_leaves_it_to_restore(app, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("applying failed")

    monkeypatch.setattr(link, "opened_page", broken)
    with caplog.at_level(logging.ERROR):
        comps = _page(app, "http://localhost/?genes=CD14")
    assert _data_of(comps, ids.LINK_APPLIED) is None and _value(comps, "genes") in (None, "")
    assert "could not be applied" in caplog.text

"""A link's page is built with the link applied (callbacks.link.opened_page): its controls and its
ranking arrive with the page, its job starts as the page opens, and the restore callback does not
apply it a second time. Issue 36, item 12: opening a link waited for a round trip to restore the
controls before its query could even start."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from urllib.parse import quote

import dash
import flask
import pytest

from dashboard import ids, payloads
from dashboard.app import create_app
from dashboard.callbacks import link
from dashboard.callbacks.wiring import CONTROLS, QUERY_CONTROLS, read_query
from dashboard.payloads import walk


@pytest.fixture(scope="module")
def app(tiny_build):
    return create_app(tiny_build[1])


def _page(app, referer: str | None):
    headers = {"Referer": referer} if referer is not None else {}
    with app.server.test_request_context("/_dash-layout", headers=headers):
        page = app.get_layout()
        app.server.process_response(flask.Response()).close()  # the page sent: what waits for it runs
    return {comp.id: comp for comp in walk(page) if isinstance(getattr(comp, "id", None), str)}


def _join_evidence() -> list[threading.Thread]:
    threads = [t for t in threading.enumerate() if t.name == "sigatlas-link-evidence"]
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    return threads


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
    assert data.stored_result(partial) is not None
    _join_evidence()  # the server computes the rest as the page goes out (test below)
    assert data.stored_result(data.final_key(partial)) is not None
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


def test_a_link_s_evidence_is_computed_while_the_browser_loads_the_page_and_only_once(app, tiny_build, monkeypatch, tmp_path):
    """The page's job can start only once the browser has loaded and mounted the page; the server
    starts the p-values and the evidence as it sends the page (query.start_evidence), and the
    job, started meanwhile, waits for them and computes nothing again."""
    import dashboard.data as data_module
    from dashboard.callbacks import query
    from dashboard.data import FORK_GUARD, DashboardData

    _join_evidence()
    log = tmp_path / "evidence.log"  # written by whichever process computes (the server's fork, or this one)
    computed = data_module.add_evidence

    def calls() -> list[str]:
        return log.read_text().split() if log.exists() else []

    def slow_evidence(*args, **kwargs):
        with log.open("a") as fh:
            fh.write(multiprocessing.current_process().name + "\n")
        time.sleep(0.5)  # long enough for the job below to arrive while it runs
        return computed(*args, **kwargs)

    monkeypatch.setattr(data_module, "add_evidence", slow_evidence)
    comps = _page(app, "http://localhost/?genes=CD14,LYZ,S100A9,FCN1&null_draws=153")
    assert comps[ids.LINK_RUN].data == "job"
    data = DashboardData(tiny_build[1])
    key = data.final_key(comps[ids.RANKED].data.rpartition("_")[0])
    deadline = time.monotonic() + 30
    while not calls() and time.monotonic() < deadline:
        time.sleep(0.02)
    # while it computes, the page's job can fork at once (a thread of the server held FORK_GUARD
    # throughout: the job forked after it, and Run stayed disabled after the page said "done")
    assert calls() and FORK_GUARD.acquire(timeout=0.3)
    FORK_GUARD.release()
    progress = []
    answer = query.run_query(data, progress.append, None, None, job_request=1,
                             **{name: _value(comps, name) for name in QUERY_CONTROLS})
    assert answer["result_key"] == key and data.stored_result(key) is not None
    _join_evidence()
    assert calls() == ["sigatlas-link-evidence"]  # computed once, by the process the server forked
    assert any("being computed for another page" in msg for _, msg in progress)
    # opened again, the link's result is stored: nothing is started
    again = _page(app, "http://localhost/?genes=CD14,LYZ,S100A9,FCN1&null_draws=153")
    _join_evidence()
    assert calls() == ["sigatlas-link-evidence"] and again[ids.LINK_RUN].data == "query"


def test_a_link_s_evidence_is_left_to_its_job_when_the_server_is_busy_or_it_forms_no_query(tiny_build, monkeypatch):
    from dashboard.callbacks import query
    from dashboard.data import DashboardData

    data = DashboardData(tiny_build[1])
    settings = {name: link.restore(data, "?genes=CD14,LYZ,FCN1&null_draws=159", 0)[name] for name in QUERY_CONTROLS}
    assert query.start_evidence(data, **{**settings, "genes": ""}) is None  # no genes: no query
    assert query.start_evidence(data, **{**settings, "null_draws": -3}) is None  # an invalid setting: the job says why
    monkeypatch.setattr(DashboardData, "ranks_in_request", lambda self: False)  # every job slot busy
    assert query.start_evidence(data, **settings) is None
    monkeypatch.undo()
    thread = query.start_evidence(data, **settings)
    assert thread is not None
    thread.join(60)
    assert data.stored_result(data.result_key(read_query(data, settings)[1])) is not None


def test_a_link_s_evidence_starts_once_its_page_is_sent(app, tiny_build):
    """Started before, the computation held the GIL against the page's own answer."""
    from dashboard.data import DashboardData

    data = DashboardData(tiny_build[1])
    _join_evidence()
    with app.server.test_request_context("/_dash-layout", headers={"Referer": "http://localhost/?genes=CD14,LYZ,FCN1&null_draws=161"}):
        page = {comp.id: comp for comp in walk(app.get_layout()) if isinstance(getattr(comp, "id", None), str)}
        assert page[ids.LINK_RUN].data == "job", (page[ids.LINK_RUN].data, str(page[ids.STATE_NOTES].children)[:300])
        key = data.final_key(page[ids.RANKED].data.rpartition("_")[0])
        response = app.server.process_response(flask.Response())
        time.sleep(0.3)
        assert data.stored_result(key) is None  # built and answered, not yet sent: nothing computes
        response.close()
    _join_evidence()
    assert data.stored_result(key) is not None

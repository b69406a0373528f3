"""The ranking first, the evidence after (issue 17): a query the page runs stores its ranking alone
as soon as the cells are scored, tells the page its key (dash.set_props on ids.PARTIAL_KEY), and
the page shows it while the p-values are computed."""

from __future__ import annotations

import threading
import time

import dash
import numpy as np
import pandas as pd
import pytest

from dashboard import ids, payloads
from dashboard.callbacks import query, render
from dashboard.callbacks.wiring import QUERY_CONTROLS
from dashboard.data import DashboardData
from dashboard.state import DEFAULTS
from dashboard.views.results import PRESENTER_FONT


@pytest.fixture(scope="module")
def ran(tiny_build, tmp_path_factory):
    from compute.atlas import Atlas

    data = DashboardData(tiny_build[1])
    data.atlas = Atlas.open(tiny_build[1], cache=tmp_path_factory.mktemp("cache"))  # never asked before
    genes = "\n".join(next(p for p in tiny_build[2]["programs"] if p["name"] == "interferon alpha response")["genes"])
    settings = {key: DEFAULTS[key] for key in QUERY_CONTROLS} | {"genes": genes, "null_draws": 200}
    updates: list = []
    out = query.run_query(data, updates.append, run_clicks=1, request=None, **settings)
    return data, out, updates


def test_the_ranking_alone_is_stored_before_the_p_values(ran):
    data, out, updates = ran
    final_key = out["result_key"]
    assert isinstance(final_key, str) and all(len(u) == 2 for u in updates)
    messages = [str(m) for _, m in updates]
    shown = next(i for i, m in enumerate(messages) if m.startswith("ranking shown"))
    assert any("null" in m for m in messages[shown:])  # the null ran after the ranking was shown
    partial_key = data.partial_key(final_key)
    partial, final = data.stored_result(partial_key), data.stored_result(final_key)
    assert not partial.null and final.null and partial.evidence is None
    cols = ["group", "n_cells", "mean_hit_pct"]
    pd.testing.assert_frame_equal(partial.diseases[cols].reset_index(drop=True), final.diseases[cols].reset_index(drop=True))
    np.testing.assert_array_equal(partial.scores, final.scores)


def test_render_shows_the_ranking_alone_and_says_what_is_coming(ran, monkeypatch):
    data, out, updates = ran
    partial_key = data.partial_key(out["result_key"])
    settings = {key: DEFAULTS[key] for key in render.RENDER_SETTINGS}
    # once the full result is stored, a late ranking update never replaces it on the page
    with pytest.raises(dash.exceptions.PreventUpdate):
        render.render(data, None, None, False, partial_key=partial_key, trigger=ids.PARTIAL_KEY, **settings)
    # while the null runs (no full result yet), the ranking alone is drawn
    monkeypatch.setattr(data, "final_key", lambda key: "not-stored-yet")
    views = render.render(data, None, None, False, partial_key=partial_key, trigger=ids.PARTIAL_KEY, **settings)
    assert views["status"].id == ids.PARTIAL_NOTE and "being computed" in views["status"].children
    shown = [t for trace in views["disease_fig"].to_dict()["data"] for t in (trace.get("y") or trace.get("x") or [])]
    assert len(shown) > 0
    # the job's end resets the progress (partial key None): nothing to draw from it
    with pytest.raises(dash.exceptions.PreventUpdate):
        render.render(data, None, None, False, partial_key=None, trigger=ids.PARTIAL_KEY, **settings)


def test_a_forked_job_never_waits_on_a_lock_another_thread_held(ran, monkeypatch):
    """Run's own ranking runs in a request thread while the job is forked: a lock held by that
    thread at the fork is fresh in the child (it would otherwise wait forever), and the job
    manager forks only while no such work runs (FORK_GUARD)."""
    import os
    import threading

    from dashboard.app import _SharedJobManager
    from dashboard.data import FORK_GUARD

    data, out, _ = ran
    held, release = threading.Event(), threading.Event()

    def hold():
        with data._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: store a result under the lock the parent's thread holds
        code = 1
        try:
            data.store_result("fork-test", data.stored_result(out["result_key"]))
            code = 0
        finally:
            os._exit(code)
    release.set()
    t.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child waited on the lock its parent's thread held")
    assert os.waitstatus_to_exitcode(status) == 0
    # the job manager's fork waits until FORK_GUARD is free
    forked = threading.Event()
    monkeypatch.setattr(dash.DiskcacheManager, "call_job_fn", lambda self, *args: forked.set())
    manager = _SharedJobManager.__new__(_SharedJobManager)
    with FORK_GUARD:
        starter = threading.Thread(target=manager.call_job_fn, args=("key", None, (), None))
        starter.start()
        assert not forked.wait(0.5)
    assert forked.wait(10)
    starter.join()


def test_no_forked_job_waits_on_sqlite(ran, tmp_path):
    """SQLite is not fork-safe: a child forked while another thread was inside SQLite hung on its
    first connection (19 of 40 forks in a trial beside three threads reading and writing a cache).
    Forking under sqlite_guard, which every cache call takes, no child hangs; the job manager's
    cache takes it too, transactions whole."""
    import os
    import threading

    from compute.atlas import ResultCache, sqlite_guard
    from dashboard.app import _background_manager, _GuardedCache

    cache = ResultCache("fork-test", tmp_path / "cache")
    cache.set("k", list(range(1000)))
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            cache.get("k")
            cache.set("t", time.time())

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    hung = 0
    try:
        for _ in range(20):
            with sqlite_guard():
                pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = 0 if cache.get("k") == list(range(1000)) else 1
                    cache.set("child", 1)
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0
                    break
                time.sleep(0.01)
            else:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert hung == 0
    data, _, _ = ran
    handle = _background_manager(data).handle
    assert isinstance(handle, _GuardedCache)
    with handle.transact():
        handle.set("guarded", 1)
    assert handle.get("guarded") == 1


def test_the_request_after_the_ranking_draws_the_result_once_the_job_stores_it(ran):
    data, out, _ = ran
    key = out["result_key"]
    view = {key_: DEFAULTS[key_] for key_ in render.RENDER_SETTINGS}
    ranked = data.partial_key(key)
    # stored already: drawn at once, with its key, the query error cleared and what the views show
    done = query.finish_now(data, ranked, False, None, **view)
    drawn = render.render(data, key, None, False, None, **view)
    assert set(done) == {*render.RENDER_OUTPUTS, "drawn", "result_key", "query_error", "progress", "progress_text", "stale",
                         "run_loading", "cancel_style"}
    # Run is ready as "done" shows: the job's end reaches the page one poll later (a click then was lost)
    assert (done["run_loading"], done["cancel_style"]) == (False, {"display": "none"})
    assert done["stale"] is None  # the views drawn are the query's: no out-of-date marker (issue 36)
    assert done["result_key"] == key and done["query_error"] is None and (done["progress"], done["progress_text"]) == (100, "done")
    assert done["drawn"] == drawn["drawn"] == render.views_signature(key, False, None, view)
    assert done["disease_fig"].to_json() == drawn["disease_fig"].to_json() and str(done["disease_table"]) == str(drawn["disease_table"])
    # the render that the new result key triggers sends nothing; a view changed meanwhile is drawn
    with pytest.raises(dash.exceptions.PreventUpdate):
        render.render(data, key, None, False, None, drawn=done["drawn"], **view)
    assert render.render(data, key, None, False, None, drawn=done["drawn"], **(view | {"top_n": 1}))["drawn"] != done["drawn"]
    # stored while it waits (the job ending): drawn then; never stored: no update after wait_s
    result = data.stored_result(key)
    later = "0" * len(key)
    timer = threading.Timer(0.3, data.store_result, (later, result))
    timer.start()
    t0 = time.monotonic()
    try:
        assert query.finish_now(data, data.partial_key(later), False, None, wait_s=5, **view)["result_key"] == later
    finally:
        timer.cancel()
    assert 0.25 < time.monotonic() - t0 < 3
    # while it draws, the render that the job's last poll triggers leaves the views to it
    with pytest.raises(dash.exceptions.PreventUpdate):
        render.render(data, key, None, False, None, drawn=render.pending_signature(key), **view)
    assert render.render(data, key, None, False, None, drawn=render.pending_signature("other"), **view)["drawn"] == done["drawn"]
    # never stored within wait_s: it clears that mark and draws nothing, so render draws the key when it comes
    t0 = time.monotonic()
    gave_up = query.finish_now(data, data.partial_key("1" * len(key)), False, None, wait_s=0.2, **view)
    assert time.monotonic() - t0 >= 0.2
    assert gave_up["drawn"] is None and all(gave_up[name] is dash.no_update for name in (*render.RENDER_OUTPUTS, "result_key", "query_error", "progress",
                                                                                  "progress_text", "run_loading", "cancel_style"))
    with pytest.raises(dash.exceptions.PreventUpdate):
        query.finish_now(data, None, False, None, **view)


def test_when_drawing_fails_the_request_hands_the_result_to_render(ran, monkeypatch):
    data, out, _ = ran
    key = out["result_key"]
    view = {key_: DEFAULTS[key_] for key_ in render.RENDER_SETTINGS}

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(query, "render", broken)
    handed = query.finish_now(data, data.partial_key(key), False, None, **view)
    assert handed["drawn"] is None and handed["result_key"] == key and handed["disease_fig"] is dash.no_update


def test_run_s_ranking_names_itself_for_the_request_that_follows(ran):
    data, out, _ = ran
    genes = "\n".join(g for g, _ in data.stored_result(out["result_key"]).params.genes)
    settings = {key_: DEFAULTS[key_] for key_ in QUERY_CONTROLS} | {"genes": genes, "null_draws": 123}  # never run
    view = {key_: DEFAULTS[key_] for key_ in render.RENDER_SETTINGS}
    drawn = query.rank_now(data, 1, None, False, None, **settings, **view)
    partial, _, suffix = drawn["ranked"].rpartition("_")
    assert partial.endswith(data.partial_key("")) and data.stored_result(partial) is not None and suffix
    final = data.final_key(partial)
    assert final != out["result_key"] and drawn["drawn"] == render.pending_signature(final)
    # the new ranking is drawn: the out-of-date marker goes with the old one, and the reading says
    # the random gene sets are being drawn, not that none were (issue 36, item 3)
    assert drawn["stale"] is None
    assert "being computed (123 random gene sets)" in drawn["reading"] and "no random gene sets were drawn" not in drawn["reading"]
    # the same query again (after a Cancel, say): a new value, so the request that follows starts again
    again = query.rank_now(data, 2, None, False, None, **settings, **view)
    assert again["ranked"] != drawn["ranked"] and again["ranked"].rpartition("_")[0] == partial
    payloads.STORE_SHAPES[ids.RANKED](again["ranked"], "ranked")  # a store value the server accepts back


def test_run_s_ranking_fills_the_studies_grids_only_when_that_tab_shows(ran, monkeypatch):
    # hidden grids filled with the ranking held it back on the page; they come with the p-values
    data, out, _ = ran
    monkeypatch.setattr(data, "ranks_in_request", lambda: True)  # the job slots are machine-wide: others' queries may hold them
    genes = "\n".join(g for g, _ in data.stored_result(out["result_key"]).params.genes)
    settings = {key_: DEFAULTS[key_] for key_ in QUERY_CONTROLS} | {"genes": genes, "null_draws": 177}  # never run
    view = {key_: DEFAULTS[key_] for key_ in render.RENDER_SETTINGS}
    hidden = query.rank_now(data, 1, None, False, None, tab="diseases", **settings, **view)
    shown = query.rank_now(data, 2, None, False, None, tab="studies", **settings, **view)
    for name in query.STUDY_GRIDS:
        assert hidden[name] is dash.no_update
        assert isinstance(shown[name], list)
    assert shown["study_rows"] and hidden["disease_table"] is not dash.no_update


def test_run_s_ranking_brings_the_genes_heatmap_when_that_tab_shows(ran, monkeypatch):
    # a link to the Genes tab waited for the whole query (p-values, evidence) before its heatmap showed,
    # although the heatmap needs the hits only
    data, out, _ = ran
    monkeypatch.setattr(data, "ranks_in_request", lambda: True)
    genes = "\n".join(g for g, _ in data.stored_result(out["result_key"]).params.genes)
    settings = {key_: DEFAULTS[key_] for key_ in QUERY_CONTROLS} | {"genes": genes, "null_draws": 181}  # never run
    view = {key_: DEFAULTS[key_] for key_ in render.RENDER_SETTINGS}
    elsewhere = query.rank_now(data, 1, None, False, None, tab="diseases", **settings, **view)
    assert elsewhere["heatmap_fig"] is dash.no_update and elsewhere["genes_note"] is dash.no_update
    genes_tab = query.rank_now(data, 2, None, False, None, tab="genes", **settings, **view)
    result = data.stored_result(genes_tab["ranked"].rpartition("_")[0])
    assert result is not None and not result.null  # drawn before the p-values exist
    heat = genes_tab["heatmap_fig"]
    full = render.render(data, out["result_key"], None, False, None, **view)
    # the same view the full result's Genes tab shows: its title, its note and one row per shown gene
    assert heat.layout.title.text == full["heatmap_fig"].layout.title.text
    assert genes_tab["genes_note"] == full["genes_note"] and "matched genes" in genes_tab["genes_note"]
    assert len(heat.data[0].y) == len(full["heatmap_fig"].data[0].y) > 0
    # presenter mode: the heatmap fitted to the screen, as the full drawing fits it
    presenter = query.rank_now(data, 3, None, True, None, tab="genes", **settings, **view)
    assert presenter["heatmap_fig"].layout.font.size == PRESENTER_FONT["size"] > (heat.layout.font.size or 0)


def test_a_job_that_ends_while_its_poll_looks_at_it_is_not_running(monkeypatch):
    """Dash's job check reads the process twice (it exists, then its status); a job that ended in
    between raised NoSuchProcess and the page's poll got HTTP 500 (seen once under mixed load)."""
    import psutil

    from dashboard.app import _SharedJobManager

    class Ended:
        def __init__(self, pid):
            raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(psutil, "pid_exists", lambda pid: True)  # it existed a moment ago ...
    monkeypatch.setattr(psutil, "Process", Ended)  # ... and has ended since
    manager = _SharedJobManager.__new__(_SharedJobManager)
    assert manager.job_running("4242") is False

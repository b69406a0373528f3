"""Running a query: Run's own request ranks it and draws the ranking (``rank_now``); a background
callback (progress, cancel) stores the full result in the disk cache under a key; a request that
follows the ranking draws every view as soon as the job has stored it (``finish_now``), else
the job's key reaches the page with its last poll and ``render`` draws it. Later view changes
are drawn from that key by ``render``, so switching a grouping, colour or ordering never
recomputes the query. Also what the
page says when the settings no longer match the result shown (``stale_note``) and after Cancel
(``on_cancel``)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import secrets
import threading
import time

import dash
import dash_mantine_components as dmc
import flask
from dash import Input, Output, State, html

from compute.atlas import sqlite_guard
from compute.errors import QueryError
from compute.query import null_thread_limit, selection_mask
from dashboard import ids
from dashboard.callbacks.render import (
    RENDER_OUTPUTS,
    RENDER_SETTINGS,
    pending_signature,
    render,
    render_partial,
)
from dashboard.callbacks.wiring import QUERY_CONTROLS, bind, controls, read_query
from dashboard.data import FORK_GUARD
from dashboard.state import normalise_genes
from dashboard.views.nothing_to_rank import nothing_to_rank
from dashboard.views.results import empty_views, resolution_panel

__all__ = ["CANCELLED", "FINISH_WAIT_S", "NO_GENES", "NOT_RUN_FEW_GENES", "RUN_READY", "STUDY_GRIDS", "asks_first", "finish_now", "on_cancel", "rank_now",
           "register", "run_anyway", "run_query", "stale_note", "start_evidence"]

NO_GENES = "Paste genes (any separators) or pick a preset, then Run"
JOB_POLL_MS = 250  # how often the page polls a running query's job
CANCELLED = "Query cancelled. The views below still show the previous result, for its own settings."
NOT_RUN_FEW_GENES = "Not run: few of the pasted entries are genes of this atlas. See the question under Run query."


def _no_cells_message(data, params, error: str) -> str:
    """``error`` (no cells match), told plainly when the real/simulated switch caused it: the
    filters alone do select cells, only not in studies of the kind chosen."""
    if params.data == "all" or not error.startswith("no cells match"):
        return error
    try:
        others = bool(selection_mask(data.atlas, dataclasses.replace(params, data="all")).any())
    except QueryError:
        return error
    if not others:
        return error
    other = "simulated" if params.data == "real" else "real"
    return (f"No cells match: the filters select cells only in {other} studies, and the Data switch keeps {params.data} "
            f"studies only. Set Data to 'all' (or '{other}'), or widen the filters.")


HIDDEN = {"display": "none"}


def asks_first(data, params, genes: str, accepted: str | None):
    """(the gene decisions, what the page asks) when fewer than GeneResolution.min_recognised of the entries of
    ``params``'s gene text (``genes``, as the state holds it) are genes of the atlas and that text
    is not the one run anyway (``accepted``); else None."""
    if accepted is not None and accepted == genes:
        return None
    res = data.atlas.resolve(list(params.genes))
    if not res.few_genes or not res.matched:  # none matched: compute says so
        return None
    n = len(res.matched) + len(res.missing) + len(res.ambiguous) + len(res.not_genes)
    parts = [f"{len(res.not_genes)} {'is' if len(res.not_genes) == 1 else 'are'} no gene (words, numbers)"] if res.not_genes else []
    if res.missing or res.ambiguous:
        parts.append(f"{len(res.missing) + len(res.ambiguous)} {'is a gene' if len(res.missing) + len(res.ambiguous) == 1 else 'are genes'}"
                     " the atlas lacks or cannot tell apart")
    text = (f"Only {len(res.matched)} of the {n} entries read are genes of this atlas ({res.recognised:.0%}; the page asks below "
            f"{res.min_recognised:.0%}){': ' + ', '.join(parts) if parts else ''}. Check the decisions below, correct the list, or run "
            f"it anyway on the {len(res.matched)} {'gene' if len(res.matched) == 1 else 'genes'} read.")
    return res, text


def run_anyway(data, clicks: int | None, genes: str | None, request: int | None) -> dict:
    """After 'Run anyway': the gene text accepted as it is (so the query runs although few of its
    entries are genes), a new query request, and the question hidden."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    return {"accepted": normalise_genes(genes or ""), "request": (request or 0) + 1, "ask": HIDDEN}


def run_query(data, set_progress, run_clicks: int | None, request: int | None, accepted: str | None = None,
              job_request: int | None = None, **settings) -> dict:
    """Run the query the query controls' ``settings`` ask for (checked by dashboard.state), or
    find it in the cache. Returns {"result_key": the stored result's key, None when the query
    failed, no update when the settings form no query (the views keep the last result, which
    ``stale_note`` marks as out of date, and the render is not triggered: it would rewrite the
    status and the gene decisions);
    "query_error": {"error", "genes"} when the query could not be answered, else None;
    "status": a message for settings that form no query, else no update; "resolution": emptied
    when the gene box is empty, else no update; "ask", "ask_text": the question shown, and the
    gene decisions, instead of running when few of the entries are genes (``asks_first``;
    ``accepted``: the gene text run anyway), else the question hidden}. Started by Run, the query
    request, or ``job_request`` (a linked page that came with its ranking). ``set_progress`` takes (percent, message); it
    ends at 100 "done", or at 0 with what went wrong (never left on a step). A query that runs
    shows its ranking first: ``rank_now``, Run's own request, ranks and draws it; when every job
    slot is busy (rank_now leaves it to the job), the ranking's key goes to the page's
    ``ids.PARTIAL_KEY`` store once stored (``dash.set_props``: not an output of this callback, so
    render runs at once instead of after this callback ends) and render shows it while the
    p-values are computed."""

    # rank_now (Run's own request) ranks and draws it, unless the server is busy, as seen now
    drawn_by_request = data.ranks_in_request()

    def ranked(key: str) -> None:
        if not drawn_by_request:
            try:
                dash.set_props(ids.PARTIAL_KEY, {"data": key})
            except dash.exceptions.MissingCallbackContextException:
                pass  # called as a plain function (tests, scripts): DashboardData.partial_key names it
        set_progress((15, "ranking shown; computing the p-values and the evidence"))

    try:
        state, params = read_query(data, settings)
    except QueryError as exc:  # a setting out of its range, an emptied number
        set_progress((0, "not run: a setting is invalid (see above)"))
        return {"result_key": dash.no_update, "query_error": dash.no_update, "status": html.Div(str(exc), className="error"),
                "resolution": dash.no_update, "ask": HIDDEN, "ask_text": dash.no_update}
    if params is None:
        set_progress((0, ""))
        # the old gene decisions belong to genes no longer in the box
        return {"result_key": dash.no_update, "query_error": dash.no_update, "status": NO_GENES, "resolution": [], "ask": HIDDEN, "ask_text": dash.no_update}
    nothing = nothing_to_rank(data.atlas, params)
    if nothing is not None:  # the Data switch keeps no disease to rank: said once, nothing computed (issue 36, item 8)
        set_progress((0, "not run: nothing to rank (see the message above the tabs)"))
        return {"result_key": None, "query_error": {"error": nothing, "genes": state["genes"]}, "status": dash.no_update,
                "resolution": dash.no_update, "ask": HIDDEN, "ask_text": dash.no_update}
    asked = asks_first(data, params, state["genes"], accepted)
    if asked is not None:
        set_progress((0, "not run: few of the entries are genes (see above)"))
        return {"result_key": dash.no_update, "query_error": dash.no_update, "status": html.Div(NOT_RUN_FEW_GENES, className="note"),
                "resolution": resolution_panel(asked[0]), "ask": {}, "ask_text": asked[1]}
    key = data.result_key(params)
    if data.stored_result(key) is not None:
        set_progress((100, "answered from the cache"))
        return {"result_key": key, "query_error": None, "status": dash.no_update, "resolution": dash.no_update, "ask": HIDDEN, "ask_text": dash.no_update}
    set_progress((2, "starting"))
    try:
        # at most N queries compute at once on this machine (dashboard.jobs); the others wait in line
        data.query(params, progress=lambda f, msg: set_progress((round(100 * f), msg)), on_ranking=ranked,
                   on_wait=lambda pos, n: set_progress((1, f"waiting for a free slot: {pos} of {n} in line")))
    except QueryError as exc:
        set_progress((0, "failed: see the message above the tabs"))
        message = _no_cells_message(data, params, str(exc))
        return {"result_key": None, "query_error": {"error": message, "genes": state["genes"]}, "status": dash.no_update,
                "resolution": dash.no_update, "ask": HIDDEN, "ask_text": dash.no_update}
    set_progress((100, "done"))
    return {"result_key": key, "query_error": None, "status": dash.no_update, "resolution": dash.no_update, "ask": HIDDEN, "ask_text": dash.no_update}


FINISH_WAIT_S = 3.0  # how long Run's follow-up request waits for the job's result (finish_now)
FINISH_LOOK_S = 0.02  # how often it looks for it


def finish_now(data, ranked: str | None, presenter: bool | None = None, driver_group: str | None = None, *,
               wait_s: float = FINISH_WAIT_S, **settings) -> dict:
    """Every view of the query whose ranking Run's own request has just drawn (``ranked``: that
    ranking's key with a per-Run suffix, ids.RANKED, written by ``rank_now``), drawn in this request as soon as the
    query's job stores the full result: the server looks for it every 20 ms, up to ``wait_s``,
    so it reaches the page without waiting for the page's next poll of the job, and it is drawn
    by this server process, never in the forked job. Triggered by ``ranked``, it starts only
    once the ranking is on the page, so the ranking never overwrites the full views.

    The views come with their result key, the query error cleared, the progress at "done", Run
    ready and Cancel hidden (RUN_READY: with "done", not one job poll after it) and what
    they show (``"drawn"``, ids.VIEWS_DRAWN). Until then ids.VIEWS_DRAWN says they are being drawn here
    (render.pending_signature, set by ``rank_now``), so the render that the job's last poll
    triggers leaves them to this request. When the result is not stored within ``wait_s`` (a
    long query, a cancelled one), or drawing it fails, this clears that mark and nothing else:
    the job's poll then brings the key and render draws it (or shows the error), as for every
    query Run's request did not rank."""
    if not ranked:
        raise dash.exceptions.PreventUpdate
    key = data.final_key(ranked.rsplit("_", 1)[0])  # less rank_now's per-Run suffix
    deadline = time.monotonic() + wait_s
    while data.stored_result(key) is None:
        if time.monotonic() >= deadline:
            return _gave_up()
        time.sleep(FINISH_LOOK_S)
    try:
        views = render(data, key, None, presenter, driver_group, **settings)
    except Exception:  # noqa: BLE001 - render, triggered by the key, draws it or shows what went wrong
        return _gave_up(key)
    # the job stored its result and then said so: the progress the page shows catches up now, and
    # Run is ready with it. The job's own end reaches the page only at its next poll (up to
    # JOB_POLL_MS later): until then Run stayed disabled under "done", and a click then was lost.
    # A click now starts a new job; Dash marks the old one outdated and stops it (it has stored
    # its result: nothing is lost), and its end no longer touches Run.
    return views | {"result_key": key, "query_error": None, "progress": 100, "progress_text": "done", "stale": None} | RUN_READY


# Run enabled and Cancel hidden: what the query job's end sets (its ``running`` states, in register)
RUN_READY = {"run_loading": False, "cancel_style": {"display": "none"}}


def _gave_up(key: str | None = None) -> dict:
    """finish_now's answer when it does not draw: the pending mark cleared (and, when the result
    is stored, its key, so that render draws it now); Run left to the job."""
    out = {name: dash.no_update for name in (*RENDER_OUTPUTS, "query_error", "progress", "progress_text", "stale", *RUN_READY)}
    out |= {"drawn": None}
    return out | {"result_key": key if key is not None else dash.no_update}


# the Studies tab's grids: drawn with the p-values (finish_now) unless that tab shows when Run is pressed
STUDY_GRIDS = ("study_rows", "study_effect_rows")


def rank_now(data, run_clicks: int | None, request: int | None, presenter: bool | None = None, driver_group: str | None = None,
             accepted: str | None = None, tab: str | None = None, **settings) -> dict:
    """The ranking views of the query the query controls' ``settings`` ask for, computed and
    drawn in this request (DashboardData.rank, then render.render_partial under the view
    settings in ``settings``), while ``run_query``'s background job computes the p-values and
    the evidence: one round trip from Run to the ranking on screen. No update when the settings
    form no query or an invalid one (``run_query`` says why), when the result is stored already
    (the job answers from the cache at once), or when every job slot is busy (the job ranks it
    in its turn and shows it through ``ids.PARTIAL_KEY``), or when few of the entries are genes
    and the text was not run anyway (``accepted``; ``run_query`` asks). With the ranking, its key
    goes to ``ids.RANKED``, which starts ``finish_now``. The Studies tab's grids (STUDY_GRIDS) come
    with the ranking only when that tab shows (``tab``): filling hidden grids held the ranking back
    on the page, and finish_now fills them with their p-values a moment later. The Genes tab's
    heatmap comes with the ranking when that tab shows: it needs the hits, not the p-values (a link
    to the Genes tab waited for the whole query)."""
    query_settings = {key: settings.pop(key) for key in list(settings) if key in QUERY_CONTROLS}
    try:
        state, params = read_query(data, query_settings)
        if params is not None and (nothing_to_rank(data.atlas, params) is not None
                                   or asks_first(data, params, state["genes"], accepted) is not None):
            params = None  # run_query says there is nothing to rank, or asks first
        partial = data.rank(params) if params is not None else None
    except QueryError:  # the job reports it, with the gene decisions
        partial = None
    if partial is None:
        raise dash.exceptions.PreventUpdate
    # ``ranked`` (ids.RANKED) starts finish_now once these views are on the page; until it has drawn
    # the rest, a render triggered by the result's key leaves them to it
    # the same query run again (after a Cancel) gives the same ranking key: a fresh suffix each
    # Run makes it a new value, so finish_now starts every time
    # the views now show the query the controls ask for: the out-of-date marker goes with the old ranking
    views = render_partial(data, partial, presenter, driver_group, genes_tab=tab == "genes", **settings)
    if tab != "studies":
        views |= {name: dash.no_update for name in STUDY_GRIDS}
    return views | {"ranked": f"{partial}_{secrets.token_hex(4)}", "drawn": pending_signature(data.final_key(partial)), "stale": None}


_log = logging.getLogger("sigatlas.serving")


def start_evidence(data, **settings) -> threading.Thread | None:
    """Start computing the p-values and the evidence of the query the query controls' ``settings``
    ask for, in a process forked from this server (as a job is), and return the thread that forks
    it and waits for it: for a linked page built with its ranking (link.opened_page), whose job
    the browser can start only once it has loaded and mounted the page (0.5-1 s later). In a
    request, it starts once the response is sent. The page's job (or another worker's) then waits
    for this process on the query's lock and reads its result (DashboardData.query), and
    finish_now draws it as soon as it is stored. A process, not a thread of the server: a thread
    held FORK_GUARD while it computed, so the page's job forked only after it, and the page said
    "done" while Run still waited for that job. None, and nothing started, when the settings
    form no query that runs, the result is stored, or no job slot is free now (a loaded server
    computes queries in its jobs, in their turn)."""
    try:
        _state, params = read_query(data, {key: settings[key] for key in QUERY_CONTROLS})
    except QueryError:
        return None
    if params is None or data.stored_result(data.result_key(params)) is not None or not data.ranks_in_request():
        return None

    def compute() -> None:  # in the forked process
        try:
            # one thread for its null: the browser, on the same machine for a local server, is
            # mounting the page meanwhile (with two, the link's ranking showed 0.1 s later)
            with null_thread_limit(1):
                data.query(params)
        except QueryError:
            pass  # the page's job reports it
        except Exception:  # noqa: BLE001 - the page's job computes it again and reports what fails
            _log.exception("computing a linked page's evidence ahead of its job failed")

    def fork_and_wait() -> None:
        # forked as the job manager forks (dashboard.app): not while another thread holds a lock the
        # child needs, nor while one is inside SQLite
        with FORK_GUARD, sqlite_guard():
            process = multiprocessing.get_context("fork").Process(target=compute, name="sigatlas-link-evidence", daemon=True)
            process.start()
        process.join()  # (reaped: no zombie)

    thread = threading.Thread(target=fork_and_wait, name="sigatlas-link-evidence", daemon=True)
    if flask.has_request_context():
        # once the page has gone out: started before, it slowed the page's own answer

        def when_sent(response: flask.Response) -> flask.Response:
            response.call_on_close(thread.start)
            return response

        flask.after_this_request(when_sent)
    else:
        thread.start()
    return thread


def on_cancel(data, clicks: int | None, result_key: str | None, presenter: bool | None = None, driver_group: str | None = None,
              **settings) -> dict:
    """After Cancel: the progress reset, the views of the previous result drawn again (the
    cancelled query's ranking may have been drawn already, by its Run request), a status that
    says the views show the previous result (or none), and the out-of-date marker again when
    the query controls (among ``settings``) no longer ask for that result."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    query_settings = {key: settings.pop(key) for key in list(settings) if key in QUERY_CONTROLS}
    text = CANCELLED if result_key else "Query cancelled. Nothing was run: press Run query to start again."
    try:
        views = render(data, result_key, None, presenter, driver_group, **settings) if result_key else empty_views()
    except dash.exceptions.PreventUpdate:  # the previous result is no longer stored: the page's views stay
        views = {}
    views = {name: views.get(name, dash.no_update) for name in RENDER_OUTPUTS}
    # render draws the page's views again for the next result key whatever they were
    stale = stale_note(data, result_key, None, **query_settings)["note"] if result_key else None
    return views | {"status": html.Div(text, id="cancelled", className="cancelled"), "progress": 0, "progress_text": "cancelled",
                    "drawn": None, "stale": stale}


def stale_note(data, result_key: str | None, query_error: dict | None, **settings):
    """{"note": a warning when the query controls' ``settings`` no longer ask for the result shown
    (``result_key``): the views are for the settings the query ran with; None when they match or
    no result shows}."""
    if result_key is None or query_error is not None:
        return {"note": None}
    try:
        state, params = read_query(data, settings)
    except QueryError as exc:
        why = f"a setting is invalid ({exc})"
    else:
        if params is not None and data.result_key(params) == result_key:
            return {"note": None}
        why = "the gene box is empty" if params is None else "the genes, filters or hit settings changed"
    return {"note": dmc.Alert(f"Settings changed since this result ({why}): the views below are for the previous settings. "
                              "Press Run query to update them.", title="Out of date: run again", color="yellow", p="xs",
                              id="stale-alert", className="stale-alert")}


def register(app: dash.Dash, data) -> None:
    app.callback(
        # the result key first: scripts that start a job read the dependency named after it
        output={"result_key": Output(ids.RESULT_KEY, "data"), "query_error": Output(ids.QUERY_ERROR, "data"),
                "status": Output(ids.STATUS, "children", allow_duplicate=True),
                "resolution": Output(ids.RESOLUTION, "children", allow_duplicate=True),
                "ask": Output(ids.LOW_GENES, "style"), "ask_text": Output(ids.LOW_GENES_TEXT, "children")},
        inputs={"run_clicks": Input(ids.RUN, "n_clicks"), "request": Input(ids.QUERY_REQUEST, "data"),
                "job_request": Input(ids.JOB_REQUEST, "data")},
        # the job does not draw views: drawing in a forked child can wait forever on a lock another
        # thread held at the fork (a browser test's job never ended once); finish_now draws them here
        state={"accepted": State(ids.GENES_ACCEPTED, "data"), **controls(State, QUERY_CONTROLS)},
        background=True,
        # the page asks for the job's progress and result this often (Dash's default: 1 s, which
        # made a 0.5 s query show its p-values after 1-2 s)
        interval=JOB_POLL_MS,
        progress=[Output(ids.PROGRESS, "value"), Output(ids.PROGRESS_TEXT, "children")],
        running=[(Output(ids.RUN, "loading"), True, RUN_READY["run_loading"]), (Output(ids.CANCEL, "style"), {}, RUN_READY["cancel_style"])],
        cancel=[Input(ids.CANCEL, "n_clicks")],
        prevent_initial_call=True,
    )(bind(run_query, data))
    # the ranking in the Run request itself, drawn before the job has started
    app.callback(
        output={**{name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in RENDER_OUTPUTS.items()},
                "ranked": Output(ids.RANKED, "data"), "drawn": Output(ids.VIEWS_DRAWN, "data", allow_duplicate=True),
                "stale": Output(ids.STALE, "children", allow_duplicate=True)},
        inputs={"run_clicks": Input(ids.RUN, "n_clicks"), "request": Input(ids.QUERY_REQUEST, "data")},
        state={"presenter": State(ids.PRESENTER, "checked"), "driver_group": State(ids.DRIVER_GROUP, "value"),
               "accepted": State(ids.GENES_ACCEPTED, "data"), "tab": State(ids.TABS, "value"),
               **controls(State, QUERY_CONTROLS), **controls(State, RENDER_SETTINGS)},
        prevent_initial_call=True,
    )(bind(rank_now, data))
    app.callback(
        output={"accepted": Output(ids.GENES_ACCEPTED, "data"), "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
                "ask": Output(ids.LOW_GENES, "style", allow_duplicate=True)},
        inputs={"clicks": Input(ids.RUN_ANYWAY, "n_clicks")},
        state={"genes": State(ids.GENES, "value"), "request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call=True,
    )(bind(run_anyway, data))
    # every view, as soon as the job has stored the result, in a request that follows the ranking
    app.callback(
        output={**{name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in RENDER_OUTPUTS.items()},
                "drawn": Output(ids.VIEWS_DRAWN, "data", allow_duplicate=True),
                "result_key": Output(ids.RESULT_KEY, "data", allow_duplicate=True),
                "query_error": Output(ids.QUERY_ERROR, "data", allow_duplicate=True),
                "progress": Output(ids.PROGRESS, "value", allow_duplicate=True),
                "progress_text": Output(ids.PROGRESS_TEXT, "children", allow_duplicate=True),
                "stale": Output(ids.STALE, "children", allow_duplicate=True),
                "run_loading": Output(ids.RUN, "loading", allow_duplicate=True),
                "cancel_style": Output(ids.CANCEL, "style", allow_duplicate=True)},
        inputs={"ranked": Input(ids.RANKED, "data")},
        state={"presenter": State(ids.PRESENTER, "checked"), "driver_group": State(ids.DRIVER_GROUP, "value"),
               **controls(State, RENDER_SETTINGS)},
        # as the page opens too: a linked page comes with its ranking drawn (callbacks.link.opened_page)
        prevent_initial_call="initial_duplicate",
    )(bind(finish_now, data))
    app.callback(
        output={**{name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in RENDER_OUTPUTS.items()},
                "progress": Output(ids.PROGRESS, "value", allow_duplicate=True),
                "progress_text": Output(ids.PROGRESS_TEXT, "children", allow_duplicate=True),
                "drawn": Output(ids.VIEWS_DRAWN, "data", allow_duplicate=True),
                "stale": Output(ids.STALE, "children", allow_duplicate=True)},
        inputs={"clicks": Input(ids.CANCEL, "n_clicks")},
        state={"result_key": State(ids.RESULT_KEY, "data"), "presenter": State(ids.PRESENTER, "checked"),
               "driver_group": State(ids.DRIVER_GROUP, "value"), **controls(State, RENDER_SETTINGS), **controls(State, QUERY_CONTROLS)},
        prevent_initial_call=True,
    )(bind(on_cancel, data))
    app.callback(
        output={"note": Output(ids.STALE, "children", allow_duplicate=True)},
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                **controls(Input, QUERY_CONTROLS)},
        prevent_initial_call=True,
    )(bind(stale_note, data))

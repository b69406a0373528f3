"""Running a query: a background callback (progress, cancel) that stores its result in the disk
cache under a key; the views are rendered from that key by ``render``, so switching a grouping,
colour or ordering never recomputes the query."""

from __future__ import annotations

import dash
from dash import Input, Output, State, html

from compute.errors import QueryError
from dashboard import ids
from dashboard.callbacks.wiring import QUERY_CONTROLS, bind, control_pairs, controls
from dashboard.state import query_params, read_state

__all__ = ["NO_GENES", "register", "run_query"]

NO_GENES = "Paste genes (any separators) or pick a preset, then Run"


def run_query(data, set_progress, run_clicks: int | None, request: int | None, **settings) -> dict:
    """Run the query the query controls' ``settings`` ask for (checked by dashboard.state), or
    find it in the cache. Returns {"result_key": the stored result's key, or None;
    "query_error": {"error", "genes"} when the query could not be answered, else None;
    "status": a message for settings that form no query, else no update}. ``set_progress``
    takes (percent, message)."""
    try:
        state, _ = read_state(control_pairs(settings), data.known_values, strict=True)
        params = query_params(state, expression=data.atlas.has_expression)
    except QueryError as exc:  # a setting out of its range, an emptied number
        return {"result_key": None, "query_error": None, "status": html.Div(str(exc), className="error")}
    if params is None:
        return {"result_key": None, "query_error": None, "status": NO_GENES}
    key = data.result_key(params)
    if data.stored_result(key) is not None:
        set_progress((100, "answered from the cache"))
        return {"result_key": key, "query_error": None, "status": dash.no_update}
    set_progress((2, "starting"))
    try:
        data.query(params, progress=lambda f, msg: set_progress((round(100 * f), msg)))
    except QueryError as exc:
        return {"result_key": None, "query_error": {"error": str(exc), "genes": state["genes"]}, "status": dash.no_update}
    set_progress((100, "done"))
    return {"result_key": key, "query_error": None, "status": dash.no_update}


def register(app: dash.Dash, data) -> None:
    app.callback(
        # the result key first: scripts that start a job read the dependency named after it
        output={"result_key": Output(ids.RESULT_KEY, "data"), "query_error": Output(ids.QUERY_ERROR, "data"),
                "status": Output(ids.STATUS, "children", allow_duplicate=True)},
        inputs={"run_clicks": Input(ids.RUN, "n_clicks"), "request": Input(ids.QUERY_REQUEST, "data")},
        state=controls(State, QUERY_CONTROLS),
        background=True,
        progress=[Output(ids.PROGRESS, "value"), Output(ids.PROGRESS_TEXT, "children")],
        running=[(Output(ids.RUN, "loading"), True, False), (Output(ids.CANCEL, "style"), {}, {"display": "none"})],
        cancel=[Input(ids.CANCEL, "n_clicks")],
        prevent_initial_call=True,
    )(bind(run_query, data))

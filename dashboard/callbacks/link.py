"""The link: opening one fills the controls (and runs its query); later changes are written to the
address bar in the browser (``history.replaceState``), never fed back through the Location, so a
quick second click is not held behind a round trip that could reset the controls."""

from __future__ import annotations

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, clientside_callback, html

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.callbacks.wiring import CONTROLS, QUERY_CONTROLS, VIEW_CONTROLS, bind, controls
from dashboard.presets import PRESETS, apply_preset
from dashboard.state import DEFAULTS, decode_state, encode_state

__all__ = ["register", "restore", "write_link"]

# the filters whose options a link can extend (a study's own label from an older link)
_FILTER_OPTIONS = {"cell_types": ids.CELL_TYPES, "diseases": ids.DISEASES, "tissues": ids.TISSUES}


def restore(data, search: str | None, request: int | None) -> dict:
    """Every control as the link's query string ``search`` sets it (dashboard.state.decode_state:
    invalid values take their default, said in ``notes``), a preset's genes and cell types when
    the link names one, the filters' options (with a study's own label from an older link), and
    the query request counter advanced when there are genes to run."""
    # the Location's search changes only when a page opens (a link), on back/forward and on a
    # presenter step: our own state changes go to the address bar without it (write_link)
    state, notes = decode_state(search or "", data.known_values)
    if state["preset"] in PRESETS and not state["genes"]:
        state["genes"], cell_types = apply_preset(data, state["preset"])
        state["cell_types"] = state["cell_types"] or cell_types
    note = dmc.Alert([html.Div(n) for n in notes], title="Some link values were not understood", color="orange",
                     id="state-alert") if notes else None
    run = bool(parse_gene_list(state["genes"]))
    # a study's own label from an older link is kept (it selects exactly its cells) and shown
    options = {f"{key}_options": data.filter_choices(key).with_extra(state[key]) for key in _FILTER_OPTIONS}
    return {**{key: state[key] for key in CONTROLS}, **options, "notes": note,
            "request": (request or 0) + 1 if run else dash.no_update}


def write_link(data, result_key: str | None, query_error: dict | None, **settings) -> dict:
    """The link (``search``: "?key=value...") for the controls' ``settings``, once a query has run."""
    if result_key is None and query_error is None:
        raise dash.exceptions.PreventUpdate
    state = dict(DEFAULTS) | {key: value for key, value in settings.items() if value is not None}
    return {"search": encode_state(state)}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={**controls(Output), **{f"{key}_options": Output(cid, "data") for key, cid in _FILTER_OPTIONS.items()},
                "notes": Output(ids.STATE_NOTES, "children"), "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True)},
        inputs={"search": Input(ids.URL, "search")},
        state={"request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call="initial_duplicate",
    )(bind(restore, data))
    app.callback(
        output={"search": Output(ids.STATE_SEARCH, "data")},
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                **controls(Input, VIEW_CONTROLS)},
        state=controls(State, QUERY_CONTROLS),
        prevent_initial_call=True,
    )(bind(write_link, data))
    # the state goes to the address bar in the browser: writing the Location's search instead
    # would trigger restore, whose outputs are every control, and Dash holds a view switch made
    # meanwhile behind that chain (two quick clicks were both lost)
    clientside_callback(
        """function(search) {
            if (typeof search !== 'string') { return window.dash_clientside.no_update; }
            window.history.replaceState(window.history.state, '', window.location.pathname + search);
            return window.location.origin + window.location.pathname + search;
        }""",
        Output(ids.SHARE_LINK, "value"),
        Input(ids.STATE_SEARCH, "data"),
    )

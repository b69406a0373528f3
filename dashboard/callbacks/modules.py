"""The Modules tab: the signature among the atlas's gene modules (stored by the build; placed only
while the tab shows, once per result), the module browser, and the two ways to rewrite the signature from there."""

from __future__ import annotations

import logging

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, clientside_callback, html

from dashboard import figures, ids
from dashboard.callbacks.wiring import bind
from dashboard.data import ModulesPending
from dashboard.state import append_genes
from dashboard.views.modules import module_detail, modules_view
from dashboard.views.results import presenter_figure

__all__ = ["MODULES_OUTPUTS", "add_missing", "register", "render_modules", "show_module", "use_module"]

log = logging.getLogger(__name__)

MODULES_OUTPUTS = {
    "summary": Output(ids.MODULES_SUMMARY, "children"),
    "overlap_rows": Output(ids.MODULES_OVERLAP_GRID, "rowData"),
    "missing_rows": Output(ids.MODULES_MISSING_GRID, "rowData"),
    "add_disabled": Output(ids.ADD_MISSING, "disabled"),
    "figure": Output(ids.MODULES_FIG, "figure"),
    "module_options": Output(ids.MODULE_SELECT, "data"),
    "module_value": Output(ids.MODULE_SELECT, "value"),
    "method": Output(ids.MODULES_METHOD, "children"),
    "store": Output(ids.MODULES_STORE, "data"),
    "poll_disabled": Output(ids.MODULES_POLL, "disabled"),
}


def _failed(message: str) -> dict:
    empty = figures.empty_figure("Gene modules could not be shown: see the message above")
    return {"summary": dmc.Alert(message, color="red", p="xs", id=ids.MODULES_ERROR), "overlap_rows": [], "missing_rows": [],
            "add_disabled": True, "figure": empty, "module_options": [], "module_value": None, "method": "", "store": None,
            "poll_disabled": True}


def _pending(message: str) -> dict:
    # an old atlas's modules are being computed in the background: say so, and ask again soon
    return _failed(message) | {"summary": dmc.Alert(message, color="blue", p="xs", id=ids.MODULES_PENDING),
                               "figure": figures.empty_figure("Gene modules are being computed"), "poll_disabled": False}


def render_modules(data, result_key: str | None, query_error: dict | None, tab: str | None, shown: dict | None,
                   presenter: bool | None, poll: int | None = None) -> dict:
    """The Modules tab (MODULES_OUTPUTS, by name) for the stored result ``result_key`` (None: no
    query yet) or the failed query ``query_error``, while ``tab`` is "modules" and ``shown`` (the
    modules store) is of another result or of the other type (``presenter``: large type for a
    projector). A failure is shown in the tab (the traceback goes to the
    server log); the other tabs keep working. ``store``: {"key", "error", "top_missing",
    "modules", "n_perm"} for the module browser and "Add the top 10". ``poll``: the poll's ticks
    while an old atlas's modules are computed in the background (ModulesPending)."""
    # placing a signature takes a moment: only for the tab that shows it, and once per result
    if tab != "modules" or (shown is not None and shown.get("key") == result_key and shown.get("error") == query_error
                            and shown.get("presenter", False) == bool(presenter)):
        raise dash.exceptions.PreventUpdate
    result = data.stored_result(result_key) if result_key is not None else None
    try:
        gm = data.gene_modules()
    except ModulesPending as exc:
        return _pending(str(exc))
    except Exception as exc:  # noqa: BLE001
        log.exception("gene modules failed")
        return _failed(f"Gene modules could not be computed for this atlas: {type(exc).__name__}: {exc}")
    try:
        out = modules_view(data, result, gm, presenter=bool(presenter))
    except Exception as exc:  # noqa: BLE001
        log.exception("placing a signature among the gene modules failed")
        return _failed(f"This signature could not be placed among the gene modules: {type(exc).__name__}: {exc}")
    if query_error is not None:  # the query failed: say so; the module browser still works
        out["summary"] = [html.Div(f"The query failed: {query_error['error']}", className="error", id=ids.MODULES_READING)]
    if presenter:
        presenter_figure(out["figure"], keep_height=True)
    store = {"key": result_key, "error": query_error, "top_missing": out["top_missing"], "modules": out["modules"],
             "n_perm": int(gm.params.get("n_perm", 0)), "presenter": bool(presenter)}
    return {"summary": out["summary"], "overlap_rows": out["overlap_rows"], "missing_rows": out["missing_rows"],
            "add_disabled": not out["top_missing"], "figure": out["figure"], "module_options": out["module_options"],
            "module_value": out["module_value"], "method": out["method"], "store": store, "poll_disabled": True}


def show_module(data, module: str | None, store: dict | None) -> dict:
    """The browser's text for the chosen module, and whether "Use this module" is disabled."""
    if not store or not store.get("modules"):
        return {"detail": [], "use_disabled": True}
    info = store["modules"].get(str(module)) if module is not None else None
    return {"detail": module_detail(info, store.get("n_perm", 0)), "use_disabled": info is None}


def add_missing(data, clicks: int | None, text: str | None, store: dict | None, request: int | None) -> dict:
    """The gene box with the top co-attributing genes missing from the signature added, and the
    query request advanced (the query reruns)."""
    top = (store or {}).get("top_missing") or []
    if not clicks or not top:
        raise dash.exceptions.PreventUpdate
    return {"genes": append_genes(text, top), "request": (request or 0) + 1}


def use_module(data, clicks: int | None, module: str | None, store: dict | None, request: int | None) -> dict:
    """The chosen module's genes as the signature, and the query request advanced."""
    info = ((store or {}).get("modules") or {}).get(str(module))
    if not clicks or info is None:
        raise dash.exceptions.PreventUpdate
    return {"genes": "\n".join(info["genes"]), "request": (request or 0) + 1}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output=MODULES_OUTPUTS,
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                "tab": Input(ids.TABS, "value"), "poll": Input(ids.MODULES_POLL, "n_intervals"),
                "presenter": Input(ids.PRESENTER, "checked")},
        state={"shown": State(ids.MODULES_STORE, "data")},
        prevent_initial_call=True,
    )(bind(render_modules, data))
    app.callback(
        output={"detail": Output(ids.MODULE_DETAIL, "children"), "use_disabled": Output(ids.USE_MODULE, "disabled")},
        inputs={"module": Input(ids.MODULE_SELECT, "value")},
        state={"store": State(ids.MODULES_STORE, "data")},
    )(bind(show_module, data))

    def rewrite():
        return {"genes": Output(ids.GENES, "value", allow_duplicate=True), "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True)}

    app.callback(
        output=rewrite(),
        inputs={"clicks": Input(ids.ADD_MISSING, "n_clicks")},
        state={"text": State(ids.GENES, "value"), "store": State(ids.MODULES_STORE, "data"), "request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call=True,
    )(bind(add_missing, data))
    app.callback(
        output=rewrite(),
        inputs={"clicks": Input(ids.USE_MODULE, "n_clicks")},
        state={"module": State(ids.MODULE_SELECT, "value"), "store": State(ids.MODULES_STORE, "data"),
               "request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call=True,
    )(bind(use_module, data))
    # the module tables export every row (all pages, as sorted and filtered) from the browser
    for grid_id, button_id in ((ids.MODULES_OVERLAP_GRID, ids.MODULES_OVERLAP_CSV), (ids.MODULES_MISSING_GRID, ids.MODULES_MISSING_CSV)):
        clientside_callback("function(n) { return Boolean(n); }", Output(grid_id, "exportDataAsCsv"), Input(button_id, "n_clicks"),
                            prevent_initial_call=True)

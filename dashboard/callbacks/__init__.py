"""The dashboard's callbacks. A tab's own callbacks live in the module named by its value
(``diseases``, ``studies``, ``cells``, ``cell_genes``, ``modules``; the Genes tab has none of its
own: ``render`` draws it with the result). Shared: ``link`` (the URL state), ``controls``
(presets, uploads, the disease-groups note), ``query`` (the background query), ``render`` (every
view of a result at once), ``export`` (CSV, snapshot, images) and ``presenter``.

Each callback is a top-level function that takes the DashboardData first and returns its outputs
by name (a dict mapped to Dash Outputs); the module's ``register(app, data)`` wires it to the page,
so a test calls the same function the browser reaches.
"""

from __future__ import annotations

import dash

from dashboard.callbacks import (
    cell_genes,
    cells,
    controls,
    diseases,
    export,
    link,
    modules,
    presenter,
    query,
    render,
    studies,
)
from dashboard.callbacks.wiring import QUERY_CONTROLS
from dashboard.views.results import UMAP_VIEWS, empty_views, view_tables

__all__ = ["answer_query", "register"]


def register(app: dash.Dash, data) -> None:
    """Every callback of the dashboard on ``app``, answering from ``data``."""
    for module in (link, studies, controls, query, render, cells, diseases, modules, cell_genes, export, presenter):
        module.register(app, data)


def answer_query(data, state: dict, progress=None) -> dict:
    """What the page shows for ``state`` (every key of dashboard.state.DEFAULTS) after Run, through
    the browser's own callbacks (``query.run_query``, then ``render.render``): the render outputs by
    name, plus "result" (the QueryResult) and "tables" (the CSV exports' data) when the query was
    answered. ``progress``: optional (fraction, message) callback. Bad input comes back as a message
    in "status", never as an exception."""

    def set_progress(update):
        if progress is not None:
            progress(update[0] / 100, update[1])

    ran = query.run_query(data, set_progress, run_clicks=1, request=None, **{key: state[key] for key in QUERY_CONTROLS})
    if ran["result_key"] is dash.no_update:  # settings that form no query: no result (the page keeps its last one)
        ran["result_key"], ran["query_error"] = None, None
    try:
        out = render.render(data, ran["result_key"], ran["query_error"], presenter=False, driver_group=state.get("driver_group"),
                            **{key: state[key] for key in render.RENDER_SETTINGS})
        out.pop("drawn", None)  # what the page's store records, not a view
        # the Cells tab's views, as the page draws them when that tab shows
        umap = cells.render_umap(data, ran["result_key"], ran["query_error"], tab=cells.UMAP_TAB, color=state.get("color"),
                                  presenter=False, drawn=None)
        out |= {name: umap[name] for name in UMAP_VIEWS}
    except dash.exceptions.PreventUpdate:  # no query ran: the page keeps its views, the status says why
        out = empty_views() | {"status": ran["status"]}
    if ran["result_key"] is None:
        return out | {"tables": {}}
    result = data.stored_result(ran["result_key"])
    return out | {"result": result, "tables": view_tables(data, result, state)}

"""Rendering a stored query result: every view of the Diseases, Studies, Cells and Genes tabs, and
the driver genes of a chosen disease."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard import ids
from dashboard.callbacks.wiring import VIEW_CONTROLS, bind, control_pairs, controls
from dashboard.state import read_state
from dashboard.views.results import (
    FIGURE_VIEWS,
    PRESENTER_FONT,
    driver_figure,
    error_views,
    render_views,
)

__all__ = ["RENDER_OUTPUTS", "RENDER_SETTINGS", "register", "render", "render_drivers"]

# the views do not depend on which tab shows: a tab switch only rewrites the URL
RENDER_SETTINGS = tuple(key for key in VIEW_CONTROLS if key != "tab")
RENDER_OUTPUTS = {
    "resolution": Output(ids.RESOLUTION, "children"),
    "status": Output(ids.STATUS, "children"),
    "disease_fig": Output(ids.DISEASE_FIG, "figure"),
    "disease_table": Output(ids.DISEASE_TABLE_WRAP, "children"),
    "study_rows": Output(ids.STUDY_GRID, "rowData"),
    "excluded_diseases": Output(ids.EXCLUDED_DISEASES, "children"),
    "excluded_studies": Output(ids.EXCLUDED_STUDIES, "children"),
    "robust_fig": Output(ids.ROBUST_FIG, "figure"),
    "driver_fig": Output(ids.DRIVER_FIG, "figure"),
    "driver_groups": Output(ids.DRIVER_GROUP, "data"),
    "compare_fig": Output(ids.COMPARE_FIG, "figure"),
    "scatter_fig": Output(ids.SCATTER_FIG, "figure"),
    "umap_fig": Output(ids.UMAP_FIG, "figure"),
    "umap_badge": Output(ids.UMAP_BADGE, "children"),
    "umap_labels": Output(ids.UMAP_LABELS, "children"),
    "heatmap_fig": Output(ids.HEATMAP_FIG, "figure"),
}


def render(data, result_key: str | None, query_error: dict | None, presenter: bool | None, driver_group: str | None = None,
           **settings) -> dict:
    """Every view (RENDER_OUTPUTS, by name) of the stored result ``result_key`` under the view
    ``settings`` (top_n, group_by, heat, order, color; invalid ones take their default), or of the
    failed query ``query_error``; large type when ``presenter``."""
    if query_error is not None:  # the query failed: show why, with the gene decisions
        return error_views(data, query_error["error"], query_error.get("genes") or "")
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs(settings), strict=False)
    views = render_views(data, result, state | {"driver_group": driver_group})
    if presenter:  # large type for a projector
        for name in FIGURE_VIEWS:
            views[name].update_layout(font=PRESENTER_FONT)
    return views


def render_drivers(data, group: str | None, result_key: str | None, presenter: bool | None) -> dict:
    """The driver genes of disease ``group`` (None: the top disease) in the stored result."""
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    fig = driver_figure(data, result, group)
    return {"driver_fig": fig.update_layout(font=PRESENTER_FONT) if presenter else fig}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output=RENDER_OUTPUTS,
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                "presenter": Input(ids.PRESENTER, "checked"), **controls(Input, RENDER_SETTINGS)},
        # a State: the Select sets its own value whenever its options change, and as an Input
        # that re-ran this whole render, losing a view switch made meanwhile
        state={"driver_group": State(ids.DRIVER_GROUP, "value")},
        prevent_initial_call=True,
    )(bind(render, data))
    app.callback(
        output={"driver_fig": Output(ids.DRIVER_FIG, "figure", allow_duplicate=True)},
        inputs={"group": Input(ids.DRIVER_GROUP, "value")},
        state={"result_key": State(ids.RESULT_KEY, "data"), "presenter": State(ids.PRESENTER, "checked")},
        prevent_initial_call=True,
    )(bind(render_drivers, data))

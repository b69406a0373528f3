"""The Cells tab's callback: the UMAP of a stored result, drawn only while the tab shows (its
figure is most of a result's bytes, so another tab never waits for it)."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard import ids
from dashboard.callbacks.wiring import bind, control_pairs
from dashboard.state import read_state
from dashboard.views.results import UMAP_VIEWS, error_views, presenter_figure, umap_views

__all__ = ["UMAP_OUTPUTS", "UMAP_TAB", "register", "render_umap"]

# the Cells tab's views: their own callback, run while that tab shows (render_umap)
UMAP_OUTPUTS = {
    "umap_fig": Output(ids.UMAP_FIG, "figure"),
    "umap_badge": Output(ids.UMAP_BADGE, "children"),
    "umap_labels": Output(ids.UMAP_LABELS, "children"),
    "drawn": Output(ids.UMAP_DRAWN, "data"),
}
UMAP_TAB = "cells"


def render_umap(data, result_key: str | None, query_error: dict | None, tab: str | None, color: str | None, presenter: bool | None,
                drawn: str | None) -> dict:
    """The Cells tab's views (UMAP_OUTPUTS) of the stored result ``result_key`` coloured by
    ``color``, when that tab shows (``tab``) and they do not show it already (``drawn``: what
    was drawn last). Its figure is most of a result's bytes, so another tab never waits for it."""
    if tab != UMAP_TAB:
        raise dash.exceptions.PreventUpdate
    want = f"{result_key}|{color}|{bool(presenter)}|{query_error is not None}"
    if want == drawn:
        raise dash.exceptions.PreventUpdate
    if query_error is not None:
        views = error_views(data, query_error["error"], "")
        return {name: views[name] for name in UMAP_VIEWS} | {"drawn": want}
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs({"color": color}), strict=False)
    views = umap_views(data, result, state)
    if presenter:
        presenter_figure(views["umap_fig"])
    return views | {"drawn": want}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output=UMAP_OUTPUTS,
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                "tab": Input(ids.TABS, "value"), "color": Input(ids.UMAP_COLOR, "value"), "presenter": Input(ids.PRESENTER, "checked")},
        state={"drawn": State(ids.UMAP_DRAWN, "data")},
        prevent_initial_call=True,
    )(bind(render_umap, data))

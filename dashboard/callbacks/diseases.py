"""The Diseases tab's own callbacks: the driver genes and the per-study forest plot of the disease
a reader picks (in a menu, or by clicking it in the ranking). The ranking and the rest of the tab
are drawn with the result by ``callbacks.render``."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard import ids
from dashboard.callbacks.wiring import bind, control_pairs
from dashboard.state import read_state
from dashboard.views.results import driver_figure, forest_views, presenter_figure

__all__ = ["pick_forest_disease", "register", "render_drivers", "render_forest"]


def render_drivers(data, group: str | None, result_key: str | None, presenter: bool | None) -> dict:
    """The driver genes of disease ``group`` (None: the top disease) in the stored result."""
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    fig = driver_figure(data, result, group)
    return {"driver_fig": presenter_figure(fig) if presenter else fig}


def render_forest(data, group: str | None, result_key: str | None, presenter: bool | None, disease_order: str | None = None) -> dict:
    """The forest plot of disease ``group`` (None: the first shown under ``disease_order``) in the
    stored result, and the studies of it that gave no effect."""
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs({"disease_order": disease_order}), strict=False)
    views = forest_views(data, result, group, state)
    if presenter:
        presenter_figure(views["forest_fig"])
    return views


def pick_forest_disease(data, click: dict | None, groups: list | None) -> dict:
    """{"group": the disease clicked in the ranking figure} for the forest plot's picker: a
    click on a disease's box, points or band opens its per-study effects."""
    try:
        x = str(click["points"][0]["x"])
    except (TypeError, KeyError, IndexError):
        raise dash.exceptions.PreventUpdate from None
    group = x.split("<br>", 1)[0]  # the ranking's categories are "<disease><br><counts>..."
    if group not in (groups or []):
        raise dash.exceptions.PreventUpdate
    return {"group": group}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={"driver_fig": Output(ids.DRIVER_FIG, "figure", allow_duplicate=True)},
        inputs={"group": Input(ids.DRIVER_GROUP, "value")},
        state={"result_key": State(ids.RESULT_KEY, "data"), "presenter": State(ids.PRESENTER, "checked")},
        prevent_initial_call=True,
    )(bind(render_drivers, data))
    app.callback(
        output={"forest_fig": Output(ids.FOREST_FIG, "figure", allow_duplicate=True),
                "forest_note": Output(ids.FOREST_NOTE, "children", allow_duplicate=True)},
        inputs={"group": Input(ids.FOREST_GROUP, "value")},
        state={"result_key": State(ids.RESULT_KEY, "data"), "presenter": State(ids.PRESENTER, "checked"),
               "disease_order": State(ids.DISEASE_ORDER, "value")},
        prevent_initial_call=True,
    )(bind(render_forest, data))
    app.callback(
        output={"group": Output(ids.FOREST_GROUP, "value")},
        inputs={"click": Input(ids.DISEASE_FIG, "clickData")},
        state={"groups": State(ids.FOREST_GROUP, "data")},
        prevent_initial_call=True,
    )(bind(pick_forest_disease, data))

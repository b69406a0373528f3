"""Rendering a stored query result: every view of the Diseases, Studies and Genes tabs at once (one
callback, one request), and the running query's ranking before its p-values. The Cells tab's UMAP
(``callbacks.cells``) and a chosen disease's drivers and forest plot (``callbacks.diseases``) have
callbacks of their own."""

from __future__ import annotations

import dash
from dash import Input, Output, State, html

from dashboard import ids
from dashboard.callbacks.wiring import VIEW_CONTROLS, bind, control_pairs, controls
from dashboard.state import RANKING_KEYS, read_state
from dashboard.views.results import FIGURE_VIEWS, PRESENTER_GENE_ROWS, error_views, gene_views, presenter_figure, render_views

__all__ = ["RENDER_OUTPUTS", "RENDER_SETTINGS", "pending_signature", "register", "render", "render_partial", "views_signature"]

# the views do not depend on which tab shows (a tab switch only rewrites the URL), nor on the
# "Genes in a cell type" tab's settings (its own callbacks answer them), nor on the UMAP's colour
# (cells.render_umap draws the Cells tab)
RENDER_SETTINGS = tuple(key for key in VIEW_CONTROLS if key not in ("tab", "color") and key not in RANKING_KEYS)
RENDER_OUTPUTS = {
    "resolution": Output(ids.RESOLUTION, "children"),
    "status": Output(ids.STATUS, "children"),
    "reading": Output(ids.READING, "children"),
    "disease_fig": Output(ids.DISEASE_FIG, "figure"),
    "disease_table": Output(ids.DISEASE_TABLE_WRAP, "children"),
    "study_rows": Output(ids.STUDY_GRID, "rowData"),
    "excluded_diseases": Output(ids.EXCLUDED_DISEASES, "children"),
    "excluded_studies": Output(ids.EXCLUDED_STUDIES, "children"),
    "study_effect_rows": Output(ids.STUDY_EFFECTS_GRID, "rowData"),
    "forest_fig": Output(ids.FOREST_FIG, "figure"),
    "forest_note": Output(ids.FOREST_NOTE, "children"),
    "forest_groups": Output(ids.FOREST_GROUP, "data"),
    "robust_fig": Output(ids.ROBUST_FIG, "figure"),
    "driver_fig": Output(ids.DRIVER_FIG, "figure"),
    "driver_groups": Output(ids.DRIVER_GROUP, "data"),
    "compare_fig": Output(ids.COMPARE_FIG, "figure"),
    "scatter_fig": Output(ids.SCATTER_FIG, "figure"),
    "heatmap_fig": Output(ids.HEATMAP_FIG, "figure"),
    "genes_note": Output(ids.GENES_NOTE, "children"),
    "landing_style": Output(ids.LANDING, "style"),
}


def views_signature(result_key: str | None, presenter: bool | None, driver_group: str | None, settings: dict) -> str:
    """What a drawing of the views shows (ids.VIEWS_DRAWN): the result and every setting that
    changes how it is drawn. The request that follows Run's ranking (query.finish_now) draws the
    result's views and stores this beside them, so that render, triggered by the new result key,
    does not draw them a second time."""
    import json

    shown = {key: settings.get(key) for key in RENDER_SETTINGS}
    return json.dumps([result_key, bool(presenter), driver_group, shown], sort_keys=True, default=str)


def pending_signature(result_key: str | None) -> str:
    """ids.VIEWS_DRAWN while the request that follows Run's ranking (query.finish_now) draws the
    views of ``result_key``: render, triggered by that key, leaves them to it."""
    return f"pending:{result_key}"


def render(data, result_key: str | None, query_error: dict | None, presenter: bool | None, driver_group: str | None = None,
           partial_key: str | None = None, trigger=None, drawn: str | None = None, forest_group: str | None = None,
           genes_tab: bool = False, **settings) -> dict:
    """Every view (RENDER_OUTPUTS, by name) of the stored result ``result_key`` under the view
    ``settings`` (top_n, group_by, heat, order, color; invalid ones take their default), or of the
    failed query ``query_error``; large type when ``presenter``. When ``trigger`` (default: Dash's
    triggered id) is the running query's ``partial_key``: its ranking alone, shown before the
    p-values are in (with the Genes tab's views when ``genes_tab``: that tab shows). A drawing of a result also says what it shows (``"drawn"``, for
    ids.VIEWS_DRAWN); no update when ``drawn`` says the page shows these views already, or
    that query.finish_now is drawing them (:func:`pending_signature`)."""
    if partial_key is not None and trigger is None:
        trigger = dash.ctx.triggered_id
    if partial_key is not None and trigger == ids.PARTIAL_KEY:
        result = data.stored_result(partial_key) if partial_key else None
        # the job started, or ended (its full result renders through result_key, whichever of the
        # two updates reaches the page first): nothing to draw from the ranking alone
        if result is None or data.stored_result(data.final_key(partial_key)) is not None:
            raise dash.exceptions.PreventUpdate
        state, _ = read_state(control_pairs(settings), strict=False)
        views = render_views(data, result, state | {"driver_group": driver_group, "forest_group": forest_group}, ranking_only=True)
        if genes_tab:  # the Genes tab shows: its heatmap needs the hits only, so it comes with the ranking
            views |= gene_views(data, result, state | {"gene_rows": PRESENTER_GENE_ROWS if presenter else None})
            if presenter:
                presenter_figure(views["heatmap_fig"])
        views["status"] = html.Div("Ranking shown; p-values, null band and evidence are being computed…", id=ids.PARTIAL_NOTE)
        # the other views keep what they show until the full result renders
        return {name: views.get(name, dash.no_update) for name in RENDER_OUTPUTS}
    if query_error is not None:  # the query failed: show why, with the gene decisions
        views = error_views(data, query_error["error"], query_error.get("genes") or "")
        return {name: views[name] for name in RENDER_OUTPUTS} | {"drawn": None}
    signature = views_signature(result_key, presenter, driver_group, settings)
    if drawn is not None and drawn in (signature, pending_signature(result_key)):
        # finish_now drew these views already, or is drawing them (Run's request ranked the query:
        # the job's last poll brings the key while finish_now draws; it clears this when it gives up)
        raise dash.exceptions.PreventUpdate
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs(settings), strict=False)
    views = render_views(data, result, state | {"driver_group": driver_group, "forest_group": forest_group,
                                                "gene_rows": PRESENTER_GENE_ROWS if presenter else None}, umap=False)
    if presenter:  # large type for a projector, each figure fitted to the screen
        for name in FIGURE_VIEWS:
            if name in views:
                presenter_figure(views[name])
    return views | {"drawn": signature}


def render_partial(data, partial_key: str | None, presenter: bool | None, driver_group: str | None = None, *,
                   genes_tab: bool = False, **settings) -> dict:
    """:func:`render` of the running query's ranking alone (``partial_key``), before its p-values
    (and the Genes tab's heatmap when ``genes_tab``)."""
    return render(data, None, None, presenter, driver_group, partial_key=partial_key, trigger=ids.PARTIAL_KEY, genes_tab=genes_tab,
                  **settings)


def register(app: dash.Dash, data) -> None:
    app.callback(
        output=RENDER_OUTPUTS | {"drawn": Output(ids.VIEWS_DRAWN, "data")},
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                "presenter": Input(ids.PRESENTER, "checked"), **controls(Input, RENDER_SETTINGS)},
        # a State: the Select sets its own value whenever its options change, and as an Input
        # that re-ran this whole render, losing a view switch made meanwhile
        state={"driver_group": State(ids.DRIVER_GROUP, "value"), "drawn": State(ids.VIEWS_DRAWN, "data"),
               "forest_group": State(ids.FOREST_GROUP, "value")},
        prevent_initial_call=True,
    )(bind(render, data))
    # the running query's ranking: its own callback, because the page holds back any callback whose
    # inputs are outputs of a callback still running (the query's result key), as render's are
    app.callback(
        output={name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in RENDER_OUTPUTS.items()},
        inputs={"partial_key": Input(ids.PARTIAL_KEY, "data")},
        state={"presenter": State(ids.PRESENTER, "checked"), "driver_group": State(ids.DRIVER_GROUP, "value"),
               **controls(State, RENDER_SETTINGS)},
        prevent_initial_call=True,
    )(bind(render_partial, data))

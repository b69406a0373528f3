"""Exports: each view's data as CSV and the snapshot zip (server side), figures as SVG and PNG
(drawn in the browser by Plotly, at the size they have on screen; the snapshot's images too)."""

from __future__ import annotations

import json

import dash
from dash import Input, Output, State, clientside_callback, dcc

from dashboard import export, ids
from dashboard.callbacks.cells import UMAP_OUTPUTS, UMAP_TAB, render_umap
from dashboard.callbacks.wiring import VIEW_CONTROLS, bind, control_pairs, controls
from dashboard.data import ModulesPending
from dashboard.state import read_state
from dashboard.views.components import CSV_ONLY_VIEWS, FIGURE_GRAPHS
from dashboard.views.modules import modules_table
from dashboard.views.results import render_views, view_tables

__all__ = ["CSV_BUTTONS", "EXPORT_BUTTONS", "NOTHING_TO_EXPORT", "UMAP_NOT_DRAWN", "download", "export_ready", "register",
           "snapshot_umap"]

UMAP_NOT_DRAWN = ("not drawn: the UMAP of this result could not be drawn in the browser before the snapshot "
                  "(umap.json holds the figure)")
# an image button's tooltip after a press on a figure that shows no result yet
NOTHING_TO_EXPORT = "Nothing to export yet: this figure appears after a query"
CSV_BUTTONS = {f"{ids.CSV_PREFIX}{view}": view for view in (*FIGURE_GRAPHS, *CSV_ONLY_VIEWS)}  # button id -> view
# the figures of the snapshot: file name -> view
_SNAPSHOT_FIGURES = {"diseases": "disease_fig", "forest": "forest_fig", "robustness": "robust_fig", "drivers": "driver_fig", "comparison": "compare_fig",
                     "scatter": "scatter_fig", "umap": "umap_fig", "genes": "heatmap_fig"}
_CSV_TABLES = {"forest": "study_effects"}  # a view whose CSV is another view's table
# the width a figure in a hidden tab is drawn at for the snapshot: the visible results column's
_JS_SIZE = """
    function sigatlasSize(el) {
        const full = el._fullLayout || {};
        const shown = el.offsetWidth > 0;
        const column = document.querySelector('.results');
        const width = shown ? full.width : Math.max(600, (column ? column.clientWidth : 1000) - 24);
        return {width: Math.round(width || 1000), height: Math.round(full.height || (el.layout || {}).height || 600)};
    }
"""


def download(data, snapshot: dict | None, csv: list, result_key: str | None, link: str | None, trigger=None, **settings):
    """{"file": a dcc.Download payload}: the snapshot zip (every table and figure as Plotly JSON,
    SVG and PNG, the methods and the link) when ``trigger`` is the snapshot's image store
    (``snapshot``: {"images": {view: {"svg", "png", "width", "height"} or {"error"}}}, drawn in
    the browser), else the CSV of the view whose button it is, under the view ``settings``.
    ``csv``: the CSV buttons' clicks (in CSV_BUTTONS' order); ``trigger``: default, Dash's
    triggered id."""
    trigger = dash.ctx.triggered_id if trigger is None else trigger
    clicks = snapshot if trigger == ids.SNAPSHOT_IMAGES else dict(zip(CSV_BUTTONS, csv, strict=True)).get(trigger)
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None or not clicks:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs(settings), strict=False)
    if trigger == ids.SNAPSHOT_IMAGES:
        views = render_views(data, result, state)
        figs = {name: views[view].to_plotly_json() for name, view in _SNAPSHOT_FIGURES.items()}
        images = export.decode_images((snapshot or {}).get("images") or {})
        blob = export.snapshot_zip(data.atlas, result, view_tables(data, result, state), url=link, figures=figs, images=images)
        return {"file": dcc.send_bytes(blob, f"sigatlas-snapshot-{data.atlas.name}.zip")}
    view = CSV_BUTTONS[trigger]
    try:
        # the forest plot's data: every disease's per-study effects (the Studies tab's table)
        table = (modules_table(data, result, data.gene_modules()) if view == "modules"
                 else view_tables(data, result, state).get(_CSV_TABLES.get(view, view)))
    except ModulesPending:  # an old atlas's modules are still being computed: the tab says so
        raise dash.exceptions.PreventUpdate from None
    if table is None:
        raise dash.exceptions.PreventUpdate
    return {"file": {"content": export.safe_csv(table), "filename": f"sigatlas-{view}.csv", "type": "text/csv"}}


EXPORT_BUTTONS = (*CSV_BUTTONS, *(f"{ids.IMG_PREFIX}{view}-{fmt}" for view in FIGURE_GRAPHS for fmt in ("svg", "png")), ids.SNAPSHOT)


def export_ready(data, result_key: str | None) -> dict:
    """{"disabled": one flag per EXPORT_BUTTONS}: every export button waits for a result (the
    landing page's "Appears after a query" placeholders are no figure to download)."""
    return {"disabled": [result_key is None] * len(EXPORT_BUTTONS)}


def snapshot_umap(data, clicks: int | None, result_key: str | None, query_error: dict | None, color: str | None,
                  presenter: bool | None, drawn: str | None) -> dict:
    """Before the snapshot's images are drawn: the Cells tab's UMAP of this result drawn even if that
    tab never showed (render_umap, as if it did), then ``ready`` (the click) starts the images."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    try:
        views = render_umap(data, result_key, query_error, UMAP_TAB, color, presenter, drawn)
    except dash.exceptions.PreventUpdate:  # drawn already (or no result): the images go ahead
        views = {name: dash.no_update for name in UMAP_OUTPUTS} | {"drawn": dash.no_update}
    return views | {"ready": clicks}


def register(app: dash.Dash, data) -> None:
    app.callback(output={"disabled": [Output(button, "disabled") for button in EXPORT_BUTTONS]},
                 inputs={"result_key": Input(ids.RESULT_KEY, "data")})(bind(export_ready, data))
    app.callback(
        output={**{name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in UMAP_OUTPUTS.items()},
                "drawn": Output(ids.UMAP_DRAWN, "data", allow_duplicate=True), "ready": Output(ids.SNAPSHOT_READY, "data")},
        inputs={"clicks": Input(ids.SNAPSHOT, "n_clicks")},
        state={"result_key": State(ids.RESULT_KEY, "data"), "query_error": State(ids.QUERY_ERROR, "data"),
               "color": State(ids.UMAP_COLOR, "value"), "presenter": State(ids.PRESENTER, "checked"),
               "drawn": State(ids.UMAP_DRAWN, "data")},
        prevent_initial_call=True,
    )(bind(snapshot_umap, data))
    app.callback(
        output={"file": Output(ids.DOWNLOAD, "data")},
        inputs={"snapshot": Input(ids.SNAPSHOT_IMAGES, "data"), "csv": [Input(button, "n_clicks") for button in CSV_BUTTONS]},
        state={"result_key": State(ids.RESULT_KEY, "data"), "link": State(ids.SHARE_LINK, "value"), **controls(State, VIEW_CONTROLS)},
        prevent_initial_call=True,
    )(bind(download, data))
    # the snapshot's images: every drawn figure as SVG and PNG at its on-screen size, drawn here
    # (the browser has the fonts and WebGL the server lacks); then the download above zips them
    # the figures come from the page's store, not from the drawn graphs: only the tab that shows is
    # mounted (dashboard.layout), so the figures of every other tab, and the UMAP that snapshot_umap
    # has just sent (its outputs reach the store with the click that starts this), have no graph on
    # the page; one that shows gives its on-screen size
    clientside_callback(
        f"""async function(n, resultKey, umapDrawn, ...figures) {{
            if (!n) {{ return window.dash_clientside.no_update; }}
            {_JS_SIZE}
            const graphs = {json.dumps(FIGURE_GRAPHS)};
            const images = {{}};
            const names = Object.keys(graphs);
            for (let i = 0; i < names.length; i++) {{
                const name = names[i], id = graphs[name], fig = figures[i];
                // an older result's UMAP is not this one's
                if (id === {json.dumps(ids.UMAP_FIG)} && !String(umapDrawn || '').startsWith(String(resultKey) + '|')) {{
                    images[name] = {{error: {json.dumps(UMAP_NOT_DRAWN)}}};
                    continue;
                }}
                if (!fig || !fig.data || ((fig.layout || {{}}).meta || {{}}).empty) {{ continue; }}
                const el = document.querySelector('#' + id + ' .js-plotly-plot');
                const size = sigatlasSize(el && el.offsetWidth > 0 && el._fullLayout ? el : {{layout: fig.layout}});
                try {{
                    const figure = {{data: fig.data, layout: fig.layout}};
                    const svg = await Plotly.toImage(figure, {{format: 'svg', width: size.width, height: size.height}});
                    const png = await Plotly.toImage(figure, {{format: 'png', width: size.width, height: size.height}});
                    images[name] = {{svg: svg, png: png, width: size.width, height: size.height}};
                }} catch (e) {{
                    images[name] = {{error: String(e)}};
                }}
            }}
            return {{clicks: n, images: images}};
        }}""",
        Output(ids.SNAPSHOT_IMAGES, "data"),
        Input(ids.SNAPSHOT_READY, "data"),
        State(ids.RESULT_KEY, "data"),
        State(ids.UMAP_DRAWN, "data"),
        *[State(graph_id, "figure") for graph_id in FIGURE_GRAPHS.values()],
        prevent_initial_call=True,
    )
    for view, graph_id in FIGURE_GRAPHS.items():
        for fmt in ("svg", "png"):
            # the figure as it shows: its on-screen width and height, every label where it is
            clientside_callback(
                f"""function(n) {{
                    if (!n) {{ return window.dash_clientside.no_update; }}
                    {_JS_SIZE}
                    const el = document.querySelector('#{graph_id} .js-plotly-plot');
                    // an empty figure ("Appears after a query") is no image of a result: nothing is downloaded
                    if (!el || !el.data || ((el.layout || {{}}).meta || {{}}).empty) {{ return {json.dumps(NOTHING_TO_EXPORT)}; }}
                    const size = sigatlasSize(el);
                    Plotly.downloadImage(el, {{format: '{fmt}', filename: 'sigatlas-{view}', width: size.width, height: size.height}});
                    return '';
                }}""",
                Output(f"{ids.IMG_PREFIX}{view}-{fmt}", "title"),
                Input(f"{ids.IMG_PREFIX}{view}-{fmt}", "n_clicks"),
                prevent_initial_call=True,
            )

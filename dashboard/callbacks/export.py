"""Exports: each view's data as CSV and the snapshot zip (server side), figures as SVG and PNG
(in the browser, by Plotly)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, clientside_callback, dcc

from dashboard import export, ids
from dashboard.callbacks.wiring import VIEW_CONTROLS, bind, control_pairs, controls
from dashboard.layout import CSV_ONLY_VIEWS, FIGURE_GRAPHS
from dashboard.state import read_state
from dashboard.views.modules import modules_table
from dashboard.views.results import render_views, view_tables

__all__ = ["CSV_BUTTONS", "download", "register"]

CSV_BUTTONS = {f"{ids.CSV_PREFIX}{view}": view for view in (*FIGURE_GRAPHS, *CSV_ONLY_VIEWS)}  # button id -> view
# the figures of the snapshot: file name -> view
_SNAPSHOT_FIGURES = {"diseases": "disease_fig", "robustness": "robust_fig", "drivers": "driver_fig", "comparison": "compare_fig",
                     "umap": "umap_fig", "genes": "heatmap_fig"}


def download(data, snapshot: int | None, csv: list, result_key: str | None, link: str | None, trigger=None, **settings):
    """{"file": a dcc.Download payload}: the snapshot zip (every table and figure, the methods and
    the link) when ``trigger`` is the snapshot button, else the CSV of the view whose button it
    is, under the view ``settings``. ``csv``: the CSV buttons' clicks (in CSV_BUTTONS' order);
    ``trigger``: default, Dash's triggered id."""
    trigger = dash.ctx.triggered_id if trigger is None else trigger
    clicks = snapshot if trigger == ids.SNAPSHOT else dict(zip(CSV_BUTTONS, csv, strict=True)).get(trigger)
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None or not clicks:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs(settings), strict=False)
    if trigger == ids.SNAPSHOT:
        views = render_views(data, result, state)
        figs = {name: views[view].to_plotly_json() for name, view in _SNAPSHOT_FIGURES.items()}
        blob = export.snapshot_zip(data.atlas, result, view_tables(data, result, state), url=link, figures=figs)
        return {"file": dcc.send_bytes(blob, f"sigatlas-snapshot-{data.atlas.name}.zip")}
    view = CSV_BUTTONS[trigger]
    table = modules_table(data, result, data.gene_modules()) if view == "modules" else view_tables(data, result, state).get(view)
    if table is None:
        raise dash.exceptions.PreventUpdate
    return {"file": {"content": export.safe_csv(table), "filename": f"sigatlas-{view}.csv", "type": "text/csv"}}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={"file": Output(ids.DOWNLOAD, "data")},
        inputs={"snapshot": Input(ids.SNAPSHOT, "n_clicks"), "csv": [Input(button, "n_clicks") for button in CSV_BUTTONS]},
        state={"result_key": State(ids.RESULT_KEY, "data"), "link": State(ids.SHARE_LINK, "value"), **controls(State, VIEW_CONTROLS)},
        prevent_initial_call=True,
    )(bind(download, data))
    for view, graph_id in FIGURE_GRAPHS.items():
        for fmt in ("svg", "png"):
            clientside_callback(
                f"""function(n) {{
                    if (!n) {{ return window.dash_clientside.no_update; }}
                    const el = document.querySelector('#{graph_id} .js-plotly-plot');
                    if (el) {{ Plotly.downloadImage(el, {{format: '{fmt}', filename: 'sigatlas-{view}', width: 1200, height: 700}}); }}
                    return '';
                }}""",
                Output(f"{ids.IMG_PREFIX}{view}-{fmt}", "title"),
                Input(f"{ids.IMG_PREFIX}{view}-{fmt}", "n_clicks"),
                prevent_initial_call=True,
            )

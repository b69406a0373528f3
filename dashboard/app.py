"""``create_app(atlas_path)``: the SigAtlas dashboard (Plotly Dash). Reads the atlas only."""

from __future__ import annotations

from pathlib import Path

import dash
import dash_ag_grid as dag
from dash import ALL, Input, Output, State, ctx, dcc, html

from compute.errors import QueryError
from compute.query import HitRule, QueryParams
from compute.query._genes import parse_gene_list
from compute.reference import assets_dir
from dashboard import figures, ids
from dashboard.data import DashboardData
from dashboard.presets import PRESETS

__all__ = ["answer_query", "apply_preset", "create_app", "resolution_panel"]

_GROUP_LABELS = {"disease": "disease", "cell_type": "cell type", "study": "study"}


def _num(value, default, lo, hi):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return min(max(v, lo), hi)


def resolution_panel(res, coverage_warn: float = 0.7) -> list:
    """What happened to every pasted gene: matched, case-fixed, not in the model, duplicate."""
    n_req = len(res.matched) + len(res.missing)
    cov = res.coverage
    items = [
        html.Div([html.B(f"{len(res.matched)} of {n_req} genes matched"), f" ({cov:.0%} coverage)"],
                 className="res-head" + (" warn" if cov < coverage_warn else "")),
    ]
    if cov < coverage_warn:
        items.append(html.Div("Low coverage: the score rests on fewer genes than you pasted.", className="warn-text"))
    if res.renamed:
        items.append(html.Div([html.Span("Case fixed: ", className="lbl"), ", ".join(f"{a} → {b}" for a, b in res.renamed)],
                              id="res-renamed"))
    if res.missing:
        items.append(html.Div([html.Span(f"Not in the model ({len(res.missing)}): ", className="lbl"),
                               html.Span(", ".join(res.missing), id="res-missing")], className="missing"))
    if res.duplicates:
        items.append(html.Div([html.Span(f"Duplicates ignored ({len(res.duplicates)}): ", className="lbl"),
                               ", ".join(res.duplicates)]))
    if res.weighted:
        items.append(html.Div("Weighted score: sum w·a / sum w.", className="note"))
    return items


def _ranking_table(ranking) -> html.Table:
    head = html.Tr([html.Th(c) for c in ("#", "disease", "mean hit %", "median hit %", "samples", "studies", "cells")])
    rows = [
        html.Tr([html.Td(int(r.rank)), html.Td(r.group, className="grp"), html.Td(f"{r.mean_hit_pct:.1f}"),
                 html.Td(f"{r.median_hit_pct:.1f}"), html.Td(int(r.n_samples)), html.Td(int(r.n_studies)),
                 html.Td(f"{int(r.n_cells):,}")])
        for r in ranking.itertuples()
    ]
    return html.Table([html.Thead(head), html.Tbody(rows)], id=ids.DISEASE_TABLE, className="rank-table")


def answer_query(data: DashboardData, text, cell_types, percentile, cell_min, samp_min, group_by) -> dict:
    """Everything the page shows for one query; plain function (unit-tested without a browser)."""
    genes = parse_gene_list(text or "")
    empty = {
        "resolution": [],
        "status": "",
        "disease_fig": figures.empty_figure("Paste genes (any separators) or pick a preset, then Run"),
        "disease_table": html.Div(),
        "study_rows": [],
        "umap_fig": figures.empty_figure("UMAP appears after a query"),
        "heatmap_fig": figures.empty_figure("Genes x groups heatmap appears after a query"),
    }
    if not genes:
        return empty
    pct = _num(percentile, 90.0, 0.0, 100.0)
    params = QueryParams(
        genes=tuple(genes),
        cell_types=tuple(sorted(cell_types or ())),
        rule=HitRule("percentile", pct),
        cell_min=int(_num(cell_min, 25, 1, 1e6)),
        samp_min=int(_num(samp_min, 3, 1, 1e6)),
    )
    try:
        result = data.query(params)
    except QueryError as exc:
        res = data.atlas.resolve(list(genes))
        return empty | {"resolution": resolution_panel(res) if res.requested else [], "status": html.Div(str(exc), className="error")}
    sim_note = " · includes SIMULATED studies (open circles)" if data.atlas.has_simulated else ""
    base_rate = 100.0 - pct
    where = ", ".join(params.cell_types) if params.cell_types else "all cell types"
    title = f"Diseases ranked by per-sample hit %<br><sub>{where} · hit = {params.rule.describe()}{sim_note}</sub>"
    by = group_by if group_by in _GROUP_LABELS else "disease"
    status = (f"{result.n_selected:,} cells selected · threshold {result.threshold:.3f} · "
              f"{len(result.samples)} samples, {len(result.diseases)} diseases pass cell_min={params.cell_min}, "
              f"samp_min={params.samp_min}")
    return {
        "resolution": resolution_panel(result.resolution),
        "status": status,
        "disease_fig": figures.disease_ranking_figure(result.samples, result.diseases, base_rate=base_rate, title=title),
        "disease_table": _ranking_table(result.diseases),
        "study_rows": data.study_rows(result),
        "umap_fig": (figures.umap_figure(data.umap, result.scores, data.atlas.cells, result.selection,
                                         title="UMAP coloured by signature score" + (" (includes SIMULATED data)" if sim_note else ""))
                     if data.umap is not None else
                     figures.empty_figure("This atlas has no UMAP (imported attributions carry no embedding)")),
        "heatmap_fig": figures.heatmap_figure(data.heatmap(result, by), group_label=_GROUP_LABELS[by],
                                              title=f"Mean attribution: genes x {_GROUP_LABELS[by]}"),
    }


def apply_preset(data: DashboardData, key: str) -> tuple[str, list[str]]:
    """(gene text, cell types to select) for preset ``key``."""
    p = PRESETS[key]
    return "\n".join(p.genes), data.cell_types_matching(p.cell_type_hint)


def _layout(data: DashboardData):
    s = data.summary
    sim_badge = (html.Span(f"Includes SIMULATED data: {s['n_simulated']} of {s['n_studies']} studies", id=ids.SIM_BADGE,
                           className="badge sim") if s["n_simulated"] else html.Span("real data", id=ids.SIM_BADGE, className="badge"))
    header = html.Header([
        html.Div([html.Span("SigAtlas", className="brand"),
                  html.Span(f"atlas '{s['name']}' · {s['n_studies']} studies · {s['n_cells']:,} cells · {s['n_genes']:,} genes",
                            className="meta")]),
        sim_badge,
    ], className="topbar")
    controls = html.Div([
        html.H3("Signature"),
        dcc.Textarea(id=ids.GENES, placeholder="Paste genes: any separators, any case. Optional weights: GENE:2 or GENE 2.0",
                     className="genes", spellCheck="false"),
        html.Div([html.Button(p.label, id={"type": "preset", "key": p.key}, className="btn preset", title=p.source)
                  for p in PRESETS.values()], className="presets"),
        html.Button("Run query", id=ids.RUN, className="btn primary"),
        html.Label("Cell types (empty = all)"),
        dcc.Dropdown(id=ids.CELL_TYPES, options=data.cell_types, multi=True, placeholder="all cell types"),
        html.Div([
            html.Div([html.Label("Hit percentile"), dcc.Input(id=ids.PERCENTILE, type="number", value=90, min=0, max=100, step=1, debounce=True)]),
            html.Div([html.Label("cell_min"), dcc.Input(id=ids.CELL_MIN, type="number", value=25, min=1, step=1, debounce=True)]),
            html.Div([html.Label("samp_min"), dcc.Input(id=ids.SAMP_MIN, type="number", value=3, min=1, step=1, debounce=True)]),
        ], className="row3"),
        html.Label("Heatmap groups"),
        dcc.RadioItems(id=ids.GROUP_BY, options=[{"label": v, "value": k} for k, v in _GROUP_LABELS.items()], value="disease",
                       inline=True, className="radio"),
        html.Div(id=ids.RESOLUTION, className="resolution"),
        dcc.Store(id=ids.QUERY_REQUEST, data=0),
    ], className="controls")
    grid = dag.AgGrid(
        id=ids.STUDY_GRID,
        columnDefs=[
            {"field": "rank", "width": 80}, {"field": "study", "width": 110}, {"field": "title", "flex": 2},
            {"field": "data", "width": 120, "cellClassRules": {"sim-cell": "params.value == 'SIMULATED'"}},
            {"field": "diseases", "flex": 1}, {"field": "samples", "width": 100}, {"field": "cells", "width": 100},
            {"field": "mean_hit_pct", "headerName": "mean hit %", "width": 120, "sort": "desc"},
        ],
        rowData=[], defaultColDef={"sortable": True, "filter": True, "resizable": True},
        dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": 15, "paginationPageSizeSelector": False}, className="ag-theme-alpine",
    )
    results = html.Div([
        dcc.Loading(html.Div(id=ids.STATUS, className="status"), type="dot"),
        dcc.Graph(id=ids.DISEASE_FIG, config={"displaylogo": False, "toImageButtonOptions": {"format": "svg"}}),
        html.Details([html.Summary("Ranking as a table"), html.Div(id="disease-table-wrap")], open=True),
        html.Div([
            html.Div(dcc.Graph(id=ids.UMAP_FIG, config={"displaylogo": False}), className="half"),
            html.Div(dcc.Graph(id=ids.HEATMAP_FIG, config={"displaylogo": False}), className="half"),
        ], className="pair"),
        html.H3("Studies"),
        grid,
        html.Footer("Scores are mean Integrated-Gradients attributions of the signature genes (Gold et al., SIGnature). "
                    "Simulated studies carry planted programs and are labelled SIMULATED wherever they appear."),
    ], className="results")
    return html.Div([header, html.Div([controls, results], className="main")])


def create_app(atlas_path: str | Path) -> dash.Dash:
    """Build the Dash app for the atlas at ``atlas_path`` (opened and validated once)."""
    data = DashboardData(atlas_path)
    app = dash.Dash(
        __name__,
        title=f"SigAtlas · {data.atlas.name}",
        assets_folder=str(assets_dir() / "dashboard"),
        suppress_callback_exceptions=False,
    )
    app.layout = _layout(data)

    @app.callback(
        Output(ids.GENES, "value"),
        Output(ids.CELL_TYPES, "value"),
        Output(ids.QUERY_REQUEST, "data"),
        Input({"type": "preset", "key": ALL}, "n_clicks"),
        State(ids.QUERY_REQUEST, "data"),
        prevent_initial_call=True,
    )
    def _on_preset(_clicks, request):
        key = ctx.triggered_id["key"] if isinstance(ctx.triggered_id, dict) else None
        if key not in PRESETS or not any(c for c in _clicks if c):
            raise dash.exceptions.PreventUpdate
        text, cell_types = apply_preset(data, key)
        return text, cell_types, (request or 0) + 1

    @app.callback(
        Output(ids.RESOLUTION, "children"),
        Output(ids.STATUS, "children"),
        Output(ids.DISEASE_FIG, "figure"),
        Output("disease-table-wrap", "children"),
        Output(ids.STUDY_GRID, "rowData"),
        Output(ids.UMAP_FIG, "figure"),
        Output(ids.HEATMAP_FIG, "figure"),
        Input(ids.RUN, "n_clicks"),
        Input(ids.QUERY_REQUEST, "data"),
        Input(ids.CELL_TYPES, "value"),
        Input(ids.PERCENTILE, "value"),
        Input(ids.CELL_MIN, "value"),
        Input(ids.SAMP_MIN, "value"),
        Input(ids.GROUP_BY, "value"),
        State(ids.GENES, "value"),
    )
    def _on_query(_run, _request, cell_types, percentile, cell_min, samp_min, group_by, text):
        out = answer_query(data, text, cell_types, percentile, cell_min, samp_min, group_by)
        return (out["resolution"], out["status"], out["disease_fig"], out["disease_table"], out["study_rows"],
                out["umap_fig"], out["heatmap_fig"])

    return app

"""The "Genes in a cell type" tab: which genes matter in a chosen cell population, ranked by mean
attribution beside mean expression (compute's gene ranking, the sample as the unit), each gene's
spread over the samples, and the controls that send the top genes to the signature box.

Pure: rankings in, components, rows and ``go.Figure`` out (tested on ``fig.to_dict()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_ag_grid as dag
import dash_mantine_components as dmc
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html
from plotly.subplots import make_subplots

from dashboard import figures, ids
from dashboard.views.filters import filter_choices, study_options

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["FIGURE_TOP", "GENE_OPTIONS", "MAX_SEND", "SEND_DEFAULT", "cell_genes_tab", "population_label", "rank_rank_figure",
           "ranking_rows", "sim_note", "spread_figure"]

FIGURE_TOP = 50  # the rank-rank plot shows the genes in either ranking's top 50 (SIGnature's cut)
GENE_OPTIONS = 500  # the gene picker offers the top genes by attribution (the table holds them all)
SEND_DEFAULT = 10
MAX_SEND = 500  # far above a signature's size; a box of thousands of genes helps no one
_LABELLED = 12  # genes named on the rank-rank plot: the top of each ranking
_LABEL_PX = 11  # their names' type
PRESENTER_LABEL_PX = figures.PRESENTER_PX  # in presenter mode
PRESENTER_BARS = 25  # genes drawn as bars (an atlas without expression) in presenter mode
# the rank-rank plot's area in presenter mode at 1920 x 1080 (7 of the tab's 12 columns, the graph
# fitted to the screen), a little under what it measures, so kept names never meet
_PRESENTER_PLOT = {"width_px": 900, "height_px": 520}
_SIM = "includes SIMULATED data"
_ATTR = "mean attribution per sample"
_EXPR = "mean log expression per sample"
# the spread's panel titles: two lines, so the two stay apart in a narrow figure
_PANEL_TITLES = {_ATTR: "attribution<br>(mean per sample)", _EXPR: "log expression<br>(mean per sample)"}


# -- texts ------------------------------------------------------------------------------------
def population_label(cell_types, diseases=(), studies=(), versus=()) -> str:
    """"classical monocyte (sepsis) vs normal" for the chosen filters."""
    text = " + ".join(cell_types) or "all cell types"
    if diseases:
        text += f" ({', '.join(diseases)})"
    if studies:
        text += f" in {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
    if versus:
        if not diseases:  # the reference is taken out of the population (compute's gene_ranking)
            text += f" (every disease but {', '.join(versus)})"
        text += f" vs {', '.join(versus)}"
    return text


def sim_note(ranking) -> str | None:
    """"Includes SIMULATED data: k of n studies" when the ranked samples (or the reference's)
    include simulated studies, else None."""
    frames = [f for f in (ranking.samples, ranking.ref_samples) if f is not None and len(f)]
    if not frames:
        return None
    both = pd.concat(frames)[["study", "simulated"]].drop_duplicates("study")
    n_sim = int(both["simulated"].astype(bool).sum())
    return f"Includes SIMULATED data: {n_sim} of {len(both)} studies ranked" if n_sim else None


# -- the table ----------------------------------------------------------------------------------
def _num(v, digits: int = 4):
    """A float rounded to ``digits`` significant digits for the table (None for NaN: an empty cell)."""
    if v is None or not np.isfinite(v):
        return None
    return float(f"{float(v):.{digits}g}")


def ranking_rows(attr, expr=None) -> list[dict]:
    """One row per gene of the attribution ranking ``attr`` (a GeneRanking), in its order:
    ``gene``, ``rank`` (by attribution), ``expr_rank`` (by expression; None when ``expr`` is None
    or the gene was not measured), ``mean_attr``, ``mean_expr``, ``top_share``, ``n_samples`` and,
    with a reference, ``ref_mean``, ``diff``, ``log2fc``, ``p`` and ``q`` (of the attributions)."""
    # column by column (an iterrows over 5,000 genes took 0.7 s of the tab's answer)
    t = attr.table
    e = expr.table.reindex(t.index) if expr is not None else None
    n = len(t)
    none = [None] * n
    columns = {"gene": [str(g) for g in t.index], "rank": [int(v) for v in t["rank"]],
               "expr_rank": none if e is None else _ints(e["rank"]), "mean_attr": _nums(t["mean"]),
               "mean_expr": none if e is None else _nums(e["mean"]), "top_share": _nums(t["top_share"], 3),
               "n_samples": [int(v) for v in t["n_samples"]]}
    if "q" in t.columns:
        columns |= {"ref_mean": _nums(t["ref_mean"]), "diff": _nums(t["diff"]), "log2fc": _nums(t["log2fc"], 3),
                    "p": _nums(t["p"], 3), "q": _nums(t["q"], 3)}
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _nums(values, digits: int = 4) -> list:
    """:func:`_num` of each value, rounded all at once (a string per value took seconds for 5,000 genes)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & (v != 0)
    scale = np.ones_like(v)
    scale[ok] = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(v[ok]))))
    rounded = np.where(ok, np.round(v * scale) / scale, v)
    return [x if x == x and abs(x) != float("inf") else None for x in rounded.tolist()]


def _ints(values) -> list:
    """Whole numbers, None for NaN (a gene the other ranking does not hold)."""
    return [int(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def grid_columns(has_ref: bool) -> list[dict]:
    """The table's columns (the reference's only with a reference)."""
    num = {"filter": "agNumberColumnFilter", "width": 120}
    cols = [
        {"field": "gene", "pinned": "left", "width": 130},
        {"field": "rank", "headerName": "rank (attribution)", "sort": "asc", **num, "width": 150},
        {"field": "expr_rank", "headerName": "rank (expression)", **num, "width": 150},
        {"field": "mean_attr", "headerName": "mean attribution", **num, "width": 150,
         "headerTooltip": "mean over samples of each sample's mean attribution over its cells"},
        {"field": "mean_expr", "headerName": "mean expression", **num, "width": 150},
        {"field": "top_share", "headerName": "in top 50 of", **num,
         "valueFormatter": {"function": "params.value == null ? '' : d3.format('.0%')(params.value) + ' of samples'"},
         "headerTooltip": "the share of samples (that measured the gene) in which it is among the sample's top 50"},
        {"field": "n_samples", "headerName": "samples", **num, "width": 105},
    ]
    if has_ref:
        cols += [{"field": "ref_mean", "headerName": "reference mean", **num, "width": 145},
                 {"field": "diff", **num, "width": 110}, {"field": "log2fc", "headerName": "log2 FC", **num, "width": 110},
                 {"field": "p", "headerName": "p (Welch)", **num, "width": 115},
                 {"field": "q", "headerName": "q (BH)", **num, "width": 110}]
    return cols


# -- figures -----------------------------------------------------------------------------------
def rank_rank_figure(attr: pd.DataFrame, expr: pd.DataFrame | None, *, top: int = FIGURE_TOP, title: str = "",
                     simulated: bool = False, presenter: bool = False) -> go.Figure:
    """Rank by attribution (y) against rank by expression (x), log axes, rank 1 top left, for the
    genes in the top ``top`` of either ranking (``attr``/``expr``: gene-indexed tables with
    ``rank`` and ``mean``). Colours: in both top ``top``, attribution's only, expression's only;
    the top genes of each are named. Without ``expr`` (an atlas that stores no expression): the
    top ``top`` genes by mean attribution as bars (PRESENTER_BARS in presenter mode). ``simulated``
    adds the SIMULATED note. ``presenter``: the names in presenter mode's type (PRESENTER_LABEL_PX), those that would run into
    each other on its larger plot left out (:func:`_labels_apart`); the rest of the figure is
    enlarged by ``results.presenter_figure``.
    ``layout.meta``: {"genes", "top", "both", "attribution_only", "expression_only"}."""
    if attr is None or len(attr) == 0:
        return figures.empty_figure("No gene to rank in this population")
    top_a = list(attr.index[:top])
    if expr is None:
        # in presenter mode the bars' names are 20 px on a plot fitted to the screen: 25 of them fit
        head = attr.iloc[:min(top, PRESENTER_BARS) if presenter else top]
        fig = go.Figure(go.Bar(x=head["mean"], y=[str(g) for g in head.index], orientation="h", marker_color=figures.PALETTE[0],
                               hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
        fig.update_layout(
            title=dict(text=(title or "Top genes by attribution") + " · this atlas stores no expression", x=0, font_size=16),
            height=max(420, 16 * len(head) + 120), yaxis_autorange="reversed",
            xaxis_title=_ATTR, meta={"genes": top_a, "top": top, "both": [], "attribution_only": top_a, "expression_only": []})
        if simulated:
            _sim_annotation(fig)
        return fig
    top_e = list(expr.index[:top])
    genes = list(dict.fromkeys(top_a + top_e))
    a_rank = attr["rank"].reindex(genes)
    e_rank = expr["rank"].reindex(genes)
    # a gene one ranking does not hold (not measured there) sits past the last rank, on the axis edge
    far = float(max(len(attr), len(expr)) + 1)
    x, y = e_rank.fillna(far).to_numpy(float), a_rank.fillna(far).to_numpy(float)
    in_a, in_e = set(top_a), set(top_e)
    groups = {"both": [g for g in genes if g in in_a and g in in_e],
              "attribution_only": [g for g in genes if g in in_a and g not in in_e],
              "expression_only": [g for g in genes if g not in in_a and g in in_e]}
    names = {"both": f"top {top} by both", "attribution_only": f"top {top} by attribution only",
             "expression_only": f"top {top} by expression only"}
    colours = {"both": figures.PALETTE[2], "attribution_only": figures.PALETTE[0], "expression_only": figures.PALETTE[1]}
    pos = {g: i for i, g in enumerate(genes)}
    label_px = PRESENTER_LABEL_PX if presenter else _LABEL_PX
    labelled = _labels_apart([g for pair in zip(top_a[:_LABELLED], top_e[:_LABELLED], strict=False) for g in pair],
                             {g: (x[pos[g]], y[pos[g]]) for g in genes}, far, font_px=label_px,
                             **(_PRESENTER_PLOT if presenter else {}))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[1, far], y=[1, far], mode="lines", line=dict(color="#bbbbbb", dash="dot", width=1),
                             hoverinfo="skip", showlegend=False))
    for key, gs in groups.items():
        if not gs:
            continue
        idx = [pos[g] for g in gs]
        a_mean = attr["mean"].reindex(gs).to_numpy(float)
        e_mean = expr["mean"].reindex(gs).to_numpy(float)
        fig.add_trace(go.Scatter(
            x=x[idx], y=y[idx], mode="markers+text", name=names[key], marker=dict(size=9, color=colours[key], line=dict(width=0)),
            text=[g if g in labelled else "" for g in gs], textposition="top center", textfont=dict(size=label_px), cliponaxis=False,
            customdata=np.column_stack([gs, [_rank_text(a_rank[g]) for g in gs], [_rank_text(e_rank[g]) for g in gs],
                                        [f"{v:.4g}" for v in a_mean], [f"{v:.4g}" for v in e_mean]]),
            hovertemplate="<b>%{customdata[0]}</b><br>attribution rank %{customdata[1]} (mean %{customdata[3]})"
                          "<br>expression rank %{customdata[2]} (mean %{customdata[4]})<extra></extra>"))
    fig.update_layout(
        title=dict(text=title or f"Top {top} genes: rank by attribution vs rank by expression", x=0, font_size=16),
        height=560, legend=dict(orientation="h", y=-0.15),
        # a margin around rank 1 so the top genes' names stay inside the plot
        xaxis=dict(type="log", title="rank by expression (1 = highest mean)", range=[-0.15, np.log10(far) + 0.05]),
        yaxis=dict(type="log", title="rank by attribution (1 = highest mean)", range=[np.log10(far) + 0.05, -0.15]),
        meta={"genes": genes, "top": top, **groups}, clickmode="event")
    if simulated:
        _sim_annotation(fig)
    return fig


def _labels_apart(candidates: list[str], at: dict, far: float, *, width_px: float = 460, height_px: float = 380,
                  font_px: float = 11) -> set[str]:
    """The genes of ``candidates`` (in priority order) whose names, drawn above their points on the
    log-log rank plot (``at``: gene -> (x rank, y rank)) in ``font_px`` type, do not run into a name
    already kept: the plot's pixels estimated from the narrowest screen's plot area (``width_px`` x
    ``height_px``), a character about 0.64 of the type's size wide and a line 1.4 of it high (at 11
    px: 7 px and 15 px; issue 36: neighbouring top genes' names overlapped)."""
    span = np.log10(far) + 0.2
    kept, boxes = set(), []
    scale = font_px / 11
    for g in dict.fromkeys(candidates):
        if g not in at:
            continue
        cx = np.log10(max(at[g][0], 1.0)) / span * width_px
        cy = np.log10(max(at[g][1], 1.0)) / span * height_px - 12 * scale  # the name sits above the point
        half = (4.2 * len(g) + 4) * scale
        box = (cx - half, cx + half, cy - 10 * scale, cy + 10 * scale)
        if all(box[1] < b[0] or box[0] > b[1] or box[3] < b[2] or box[2] > b[3] for b in boxes):
            kept.add(g)
            boxes.append(box)
    return kept


def _rank_text(v) -> str:
    return "not measured" if v is None or not np.isfinite(v) else f"{int(v):,}"


def _sim_annotation(fig: go.Figure) -> None:
    fig.add_annotation(text=f"<b>{_SIM}</b>", xref="paper", yref="paper", x=1, y=1.01, xanchor="right", yanchor="bottom",
                       showarrow=False, font=dict(size=13, color="#D55E00"))


def _spread_points(ranking, gene: str, reference: bool) -> pd.DataFrame:
    """The samples (or the reference's) with the gene's per-sample mean (NaN: not measured)."""
    samples = ranking.ref_samples if reference else ranking.samples
    per = ranking.ref_per_sample if reference else ranking.per_sample
    if samples is None or per is None or gene not in per.index:
        return pd.DataFrame(columns=["study", "sample", "disease", "n_cells", "simulated", "value"])
    out = samples.copy()
    out["value"] = per.loc[gene].reindex(samples.index).to_numpy(float)
    return out


def spread_figure(gene: str, attr, expr=None, *, title: str = "") -> go.Figure:
    """One gene's per-sample means in the population (and in the reference, when the ranking has
    one): a box and one point per sample, by attribution (left) and expression (right, when
    ``expr`` is given); filled: real studies, open circles: SIMULATED studies. Samples whose study
    did not measure the gene are left out and counted in the title.
    ``layout.meta``: {"gene", "panels": {store: {group: [values]}}, "not_measured": {store: n}}."""
    if attr is None or gene not in attr.per_sample.index:
        return figures.empty_figure(f"{gene or 'No gene'} is not ranked in this population: pick a gene from the table or the plot")
    stores = [("attribution", attr, _ATTR)] + ([("expression", expr, _EXPR)] if expr is not None else [])
    # each panel's unit in its own title: two y-axis titles side by side ran into each other
    fig = make_subplots(rows=1, cols=len(stores), subplot_titles=[_PANEL_TITLES[s[2]] for s in stores],
                        horizontal_spacing=0.12)
    panels, missing, any_sim = {}, {}, False
    for col, (store, ranking, _) in enumerate(stores, start=1):
        panels[store], missing[store] = {}, 0
        parts = [("population", _spread_points(ranking, gene, False))]
        if ranking.ref_samples is not None:
            parts.append(("reference", _spread_points(ranking, gene, True)))
        for i, (group, pts) in enumerate(parts):
            missing[store] += int(pts["value"].isna().sum())
            pts = pts[pts["value"].notna()]
            if pts.empty:
                continue
            label = group if ranking.ref_samples is not None else "samples"
            panels[store][label] = [float(v) for v in pts["value"]]
            colour = figures.PALETTE[i]
            fig.add_trace(go.Box(y=pts["value"], x=[label] * len(pts), name=label, marker_color=colour, boxpoints=False,
                                 showlegend=False, hoverinfo="skip"), row=1, col=col)
            for flag, symbol, suffix in ((False, "circle", "real"), (True, "circle-open", "SIMULATED")):
                sub = pts[pts["simulated"].astype(bool) == flag]
                if sub.empty:
                    continue
                any_sim |= flag
                fig.add_trace(go.Scatter(
                    x=[label] * len(sub), y=sub["value"], mode="markers", showlegend=False,
                    marker=dict(symbol=symbol, size=8, color=colour, line=dict(width=1.5, color=colour)),
                    customdata=np.column_stack([sub["study"], sub["sample"], sub["disease"], sub["n_cells"], [suffix] * len(sub)]),
                    hovertemplate="%{customdata[0]} / %{customdata[1]} (%{customdata[2]}, %{customdata[3]} cells, "
                                  "%{customdata[4]})<br>%{y:.4g}<extra></extra>"), row=1, col=col)
    n_missing = max(missing.values()) if missing else 0
    sub_line = "one point per sample" + (f" · {n_missing} sample{'s' if n_missing > 1 else ''} did not measure it" if n_missing else "")
    text = f"{title or gene}<br><sup>{sub_line}</sup>"
    # room above the plots for the title's lines and the panels' titles (the title was cut): 110 px
    # holds four lines, each further line takes 18 px more
    lines = text.count("<br>") + 1
    # anchored at the very top with room above: at y=0.98 its first line stood 4 px above the figure
    fig.update_layout(title=dict(text=text, x=0, y=1, yanchor="top", pad=dict(t=18), font_size=14), height=440 + 18 * max(0, lines - 4),
                      margin=dict(t=110 + 18 * max(0, lines - 4), l=60, r=20),
                      meta={"gene": gene, "panels": panels, "not_measured": missing})
    fig.update_annotations(font_size=12)
    if any_sim:
        # below the group names, in a margin of its own
        fig.add_annotation(text="open circles: samples of SIMULATED studies", xref="paper", yref="paper", x=1, y=0,
                           yshift=-44, yanchor="top", xanchor="right", showarrow=False, font=dict(size=12, color="#D55E00"))
        fig.update_layout(margin_b=80)
    return fig


# -- the layout --------------------------------------------------------------------------------
def _multi(data: DashboardData, id_: str, options: list, label: str, placeholder: str, description: str) -> dmc.MultiSelect:
    return dmc.MultiSelect(id=id_, data=options, value=[], searchable=True, clearable=True, size="xs", label=label,
                           placeholder=placeholder, description=description, maxDropdownHeight=360, w=280)


def cell_genes_tab(data: DashboardData) -> dmc.Stack:
    """The tab's components, empty: the callbacks (``callbacks.cell_genes``) fill them."""
    cell_types = filter_choices(data, "cell_types").options
    diseases = filter_choices(data, "diseases").options
    population = dmc.Group([
        _multi(data, ids.RANK_CELL_TYPES, cell_types, "Cell type", "choose a cell type", "a term includes its subtypes"),
        _multi(data, ids.RANK_DISEASES, diseases, "Diseases", "all diseases", "the population's diseases"),
        _multi(data, ids.RANK_STUDIES, study_options(data), "Studies", "all studies", "the population's studies"),
        _multi(data, ids.RANK_VERSUS, diseases, "Versus (reference)", "no reference",
               "the same cell types in these diseases (e.g. normal): a per-gene test over samples"),
    ], gap="sm", align="flex-start")
    send = dmc.Group([
        dmc.NumberInput(id=ids.RANK_TOP_N, value=SEND_DEFAULT, min=1, max=MAX_SEND, step=1, size="xs", w=90, label="top N"),
        dmc.Button("Send the top N to the signature", id=ids.SEND_TOP, size="compact-sm", variant="light", disabled=True),
        dmc.Button("Send the selected rows", id=ids.SEND_SELECTED, size="compact-sm", variant="light", disabled=True),
        dmc.Text(id=ids.RANK_SENT, size="xs", c="dimmed"),
    ], gap="xs", align="flex-end")
    grid = dag.AgGrid(id=ids.RANK_GRID, columnDefs=grid_columns(False), rowData=[],
                      defaultColDef={"sortable": True, "filter": True, "resizable": True},
                      dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": 15,
                                       "paginationPageSizeSelector": False,
                                       "rowSelection": {"mode": "multiRow", "checkboxes": True, "headerCheckbox": False}},
                      csvExportParams={"fileName": "sigatlas-genes-in-cell-type.csv"}, getRowId="params.data.gene",
                      className="ag-theme-alpine")
    sim = dmc.Badge("", id=ids.RANK_SIM, color="orange", variant="outline", size="lg", style={"display": "none"})
    graph_config = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": "sigatlas-genes-in-cell-type"}}
    return dmc.Stack([
        dmc.Text("Which genes matter in a cell type: every gene ranked by its mean attribution over the population's samples "
                 "(each sample counts once), beside its rank by mean expression.", size="sm"),
        population,
        sim,
        html.Div(id=ids.RANK_NOTE, className="note"),
        dcc.Store(id=ids.RANK_STORE),
        dmc.Grid([
            dmc.GridCol(html.Div(dcc.Graph(id=ids.RANK_FIG, config=graph_config, figure=figures.empty_figure(
                "Choose a cell type to rank its genes")), className="panel"), span={"base": 12, "lg": 7}),
            dmc.GridCol(html.Div([
                dmc.Select(id=ids.RANK_GENE, data=[], value=None, placeholder="a gene (or click one in the plot or the table)",
                           searchable=True, clearable=True, size="xs", w=300, label="Per-sample spread of"),
                dcc.Graph(id=ids.SPREAD_FIG, config=graph_config, figure=figures.empty_figure("Pick a gene to see its spread")),
            ], className="panel"), span={"base": 12, "lg": 5}),
        ]),
        html.Div([
            dmc.Group([dmc.Text("Every gene, ranked", fw=700, size="sm"),
                       dmc.Button("CSV (all rows)", id=ids.RANK_CSV, size="compact-xs", variant="default", className="export")],
                      justify="space-between", className="grid-title"),
            send,
            grid,
        ], className="panel"),
    ], gap="sm")

"""The "Genes in a cell type" tab: rank every gene of a chosen population (through the data
layer's cached gene ranking), show one gene's per-sample spread, and send the top genes (or the
table's selected rows) to the signature box.

The browser holds only the checked population (``ids.RANK_STORE``), never a gene list the server
trusts: every callback re-checks the settings with the one state validator and takes genes from
the ranking the server computed."""

from __future__ import annotations

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, clientside_callback, html

from compute.errors import QueryError
from dashboard import figures, ids
from dashboard.callbacks.wiring import bind, control_pairs
from dashboard.state import RANKING_KEYS, StateError, read_state
from dashboard.views.cell_genes import (
    FIGURE_TOP,
    GENE_OPTIONS,
    MAX_SEND,
    grid_columns,
    population_label,
    rank_rank_figure,
    ranking_rows,
    sim_note,
    spread_figure,
)
from dashboard.views.filters import known_values
from dashboard.views.results import presenter_figure, resolution_panel

__all__ = ["LASSO_PREFIX", "RANK_OUTPUTS", "lasso_rankings", "pick_gene", "present_ranking", "rank_genes", "ranked_views", "register",
           "send_selected", "send_top", "show_spread"]

RANK_OUTPUTS = {
    "figure": Output(ids.RANK_FIG, "figure"),
    "rows": Output(ids.RANK_GRID, "rowData"),
    "columns": Output(ids.RANK_GRID, "columnDefs"),
    "note": Output(ids.RANK_NOTE, "children"),
    "sim": Output(ids.RANK_SIM, "children"),
    "sim_style": Output(ids.RANK_SIM, "style"),
    "gene_options": Output(ids.RANK_GENE, "data"),
    # the link's restore sets it too (every control of the state)
    "gene": Output(ids.RANK_GENE, "value", allow_duplicate=True),
    "store": Output(ids.RANK_STORE, "data"),
    "send_disabled": Output(ids.SEND_TOP, "disabled"),
    "select_disabled": Output(ids.SEND_SELECTED, "disabled"),
    "send_label": Output(ids.SEND_TOP, "children"),
}
_HIDDEN = {"display": "none"}
SEND_TOP_LABEL = "Send the top N to the signature"
SEND_VERSUS_LABEL = "Send the top N versus the reference to the signature"


def _lines(label: str) -> str:
    """The population's label a line per part (cells, "(every disease but ...)", "vs ..."): on
    one line it ran past the spread plot's edge at 1280 px."""
    return label.replace(" (every disease but", "<br>(every disease but").replace(" vs ", "<br>vs ")


def _population(data, settings: dict) -> dict:
    """The ranking settings (rank_cell_types, rank_diseases, rank_studies, rank_versus, rank_gene)
    checked by the state's one validator, canonical (a term id read as its label). Raises
    StateError naming the first invalid filter; a gene the atlas does not have reads as none
    (it only chooses which spread shows)."""
    if settings.get("lasso"):  # two groups of cells picked on the UMAP (callbacks.cells)
        gene, _ = read_state(control_pairs({"rank_gene": settings.get("rank_gene")}), known_values(data), strict=False)
        return {key: [] for key in RANKING_KEYS} | {"rank_gene": gene["rank_gene"], "lasso": str(settings["lasso"]),
                                                     "label": str(settings.get("label") or "group A vs group B")}
    filters = {k: v for k, v in settings.items() if k in RANKING_KEYS and k != "rank_gene"}
    state, _ = read_state(control_pairs(filters), known_values(data), strict=True)
    gene, _ = read_state(control_pairs({"rank_gene": settings.get("rank_gene")}), known_values(data), strict=False)
    return {key: state[key] for key in RANKING_KEYS} | {"rank_gene": gene["rank_gene"]}


def _rankings(data, pop: dict):
    """(attribution ranking, expression ranking or None) of the checked population ``pop``."""
    if pop.get("lasso"):
        return lasso_rankings(data, pop["lasso"])
    args = {"cell_types": tuple(pop["rank_cell_types"]), "diseases": tuple(pop["rank_diseases"]),
            "studies": tuple(pop["rank_studies"]), "versus": tuple(pop["rank_versus"])}
    attr = data.gene_ranking(**args, store="attr")
    expr = data.gene_ranking(**args, store="expr") if data.atlas.has_expression else None
    return attr, expr


def _nothing(message: str, *, error: bool = False) -> dict:
    note = dmc.Alert(message, color="red", p="xs", id="rank-error") if error else message
    return {"figure": figures.empty_figure(message), "rows": [], "columns": grid_columns(False), "note": note, "sim": "",
            "sim_style": _HIDDEN, "gene_options": [], "gene": None, "store": None, "send_disabled": True, "select_disabled": True,
            "send_label": SEND_TOP_LABEL}


def rank_genes(data, presenter: bool | None = False, **settings) -> dict:
    """The tab (RANK_OUTPUTS, by name) for the ranking ``settings`` (the RANKING_KEYS of the
    state): the rank-rank figure (in large type when ``presenter``), every gene's row, what was
    ranked, the SIMULATED badge, the gene picker (keeping the chosen gene when it is ranked; else
    the top gene) and the checked population for the other callbacks. Bad settings and empty
    populations are shown, not raised."""
    try:
        pop = _population(data, settings)
    except StateError as exc:
        return _nothing(f"This population cannot be ranked: {exc}", error=True)
    if not pop["rank_cell_types"]:
        return _nothing("Choose a cell type to rank its genes.")
    try:
        attr, expr = _rankings(data, pop)
    except QueryError as exc:
        return _nothing(f"This population cannot be ranked: {exc}", error=True)
    return ranked_views(data, pop, attr, expr, _label(pop), presenter=bool(presenter))


LASSO_PREFIX = "cell-groups"


def lasso_rankings(data, key: str):
    """The (attribution, expression or None) rankings of two groups of cells stored under ``key``
    by the comparison (callbacks.cells.compare_groups). Raises QueryError when the key is
    not one, or its rankings left the cache."""
    from compute.query import GeneRanking

    if not isinstance(key, str) or not key.startswith(LASSO_PREFIX):
        raise QueryError("not a comparison of two groups of cells")
    attr = data.stored_result(f"{key}|attr", GeneRanking)
    expr = data.stored_result(f"{key}|expr", GeneRanking) if data.atlas.has_expression else None
    if attr is None or (data.atlas.has_expression and expr is None):
        raise QueryError("this comparison of two groups of cells is no longer held: press Compare A vs B again")
    return attr, expr


def _label(pop: dict) -> str:
    """The title of the checked population ``pop``: two groups' own, else its filters'."""
    return pop.get("label") or population_label(pop["rank_cell_types"], pop["rank_diseases"], pop["rank_studies"], pop["rank_versus"])


def _rank_figure(attr, expr, label: str, presenter: bool, badge: str | None):
    """The rank-rank figure of the rankings ``attr``/``expr`` titled ``label`` (``badge``: their
    SIMULATED note, :func:`sim_note`); for a projector when ``presenter``."""
    # the population on one line, what is drawn below it: a long population must not push the rest off
    title = (f"{label}<br><sup>top {FIGURE_TOP} genes: rank by attribution vs rank by expression"
             + (" · SIMULATED data included" if badge else "") + "</sup>")
    fig = rank_rank_figure(attr.table, None if expr is None else expr.table, top=FIGURE_TOP, title=title, simulated=bool(badge),
                           presenter=presenter)
    return presenter_figure(fig) if presenter else fig


def ranked_views(data, pop: dict, attr, expr, label: str, *, presenter: bool = False) -> dict:
    """RANK_OUTPUTS (by name) for the rankings ``attr``/``expr`` of the checked population ``pop``
    (filters, or two groups of cells), titled ``label``; its figure for a projector when ``presenter``."""
    badge = sim_note(attr)
    fig = _rank_figure(attr, expr, label, presenter, badge)
    genes = list(attr.table.index)
    gene = pop["rank_gene"] if pop["rank_gene"] in attr.table.index else genes[0]
    offered = list(dict.fromkeys([*genes[:GENE_OPTIONS], gene]))
    note = html.Div([html.Div(f"{label}: {n}") for n in attr.notes]
                    + ([] if expr is not None else [html.Div("This atlas stores no expression: attribution only.")]), id="rank-notes")
    return {"figure": fig, "rows": ranking_rows(attr, expr), "columns": grid_columns("q" in attr.table.columns), "note": note,
            "sim": badge or "", "sim_style": None if badge else _HIDDEN, "gene_options": offered, "gene": gene,
            "store": ({"lasso": pop["lasso"], "label": pop["label"]} if pop.get("lasso") else
                      {key: pop[key] for key in RANKING_KEYS if key != "rank_gene"}),
            "send_disabled": False, "select_disabled": False,
            "send_label": SEND_VERSUS_LABEL if "p" in attr.table.columns else SEND_TOP_LABEL}


def present_ranking(data, presenter: bool | None, store: dict | None) -> dict:
    """The rank-rank figure of the stored population (filters, or two groups of cells) drawn again
    when presenter mode is switched on or off; no update while no population is ranked."""
    if not store:
        raise dash.exceptions.PreventUpdate
    try:
        pop = _population(data, {**store, "rank_gene": None})
        attr, expr = _rankings(data, pop)
    except QueryError as exc:  # StateError is one
        raise dash.exceptions.PreventUpdate from exc
    return {"figure": _rank_figure(attr, expr, _label(pop), bool(presenter), sim_note(attr))}


def show_spread(data, gene: str | None, store: dict | None, presenter: bool | None = False) -> dict:
    """The per-sample spread of ``gene`` in the stored population (re-checked; the rankings come
    from the data layer's cache), for a projector when ``presenter``."""
    if not store:
        return {"spread": figures.empty_figure("Choose a cell type to rank its genes")}
    if not gene:
        return {"spread": figures.empty_figure("Pick a gene (in the plot, the table or the list) to see its spread")}
    try:
        pop = _population(data, {**store, "rank_gene": gene})
        attr, expr = _rankings(data, pop)
    except QueryError as exc:  # StateError is one
        return {"spread": figures.empty_figure(f"No spread to show: {exc}")}
    # the gene, then the population on a line of its own: one long line ran out of the figure
    fig = spread_figure(pop["rank_gene"], attr, expr, title=f"<b>{pop['rank_gene']}</b> in<br>{_lines(_label(pop))}")
    return {"spread": presenter_figure(fig) if presenter else fig}


def pick_gene(data, click: dict | None, cell: dict | None, trigger: str | None = None) -> dict:
    """The gene clicked in the rank-rank plot or in the table's gene column (``trigger``: the id
    clicked; default: the callback's trigger), when it is one of the atlas's genes."""
    trigger = trigger or dash.ctx.triggered_id
    gene = None
    if trigger == ids.RANK_FIG and click and click.get("points"):
        point = click["points"][0]
        gene = (point.get("customdata") or [None])[0]
    elif trigger == ids.RANK_GRID and cell and cell.get("colId") == "gene":
        gene = cell.get("value")
    if not isinstance(gene, str) or gene not in known_values(data)["rank_gene"]:
        raise dash.exceptions.PreventUpdate
    return {"gene": gene}


def _send(data, genes: list[str], what: str) -> dict:
    """The signature box's new text, what was sent, and the gene box's resolution panel for the
    sent genes (the last query's decisions belong to genes no longer in the box)."""
    sent = f"{len(genes)} genes {what} are in the signature box: press Run query."
    res = data.atlas.resolve(list(genes))
    return {"genes": "\n".join(genes), "sent": sent,
            "resolution": html.Div([dmc.Text("Sent from Genes in a cell type, not run yet:", size="xs", c="dimmed"),
                                    *resolution_panel(res)], id="res-sent")}


def send_top(data, clicks: int | None, n, store: dict | None) -> dict:
    """The signature box replaced by the top ``n`` genes by attribution of the stored population
    (``n``: 1-MAX_SEND, else the reason in ``sent``)."""
    if not clicks or not store:
        raise dash.exceptions.PreventUpdate
    try:
        n = int(n)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= MAX_SEND:
        return {"genes": dash.no_update, "sent": f"top N must be a whole number within 1-{MAX_SEND}",
                "resolution": dash.no_update}
    try:
        attr, _ = _rankings(data, _population(data, store))
    except QueryError as exc:
        return {"genes": dash.no_update, "sent": f"Nothing sent: {exc}", "resolution": dash.no_update}
    if "p" in attr.table.columns:  # a versus is shown: its ranking, not the population's own
        genes = attr.versus_order()[:n]
        what = f"(the top {len(genes)} higher than the reference {', '.join(attr.params.versus)}, by the versus test's p)"
        return _send(data, genes, what) if genes else {"genes": dash.no_update, "sent": "No gene is higher than the reference here: "
                                                        "nothing sent.", "resolution": dash.no_update}
    return _send(data, attr.top(n), f"(the top {n} by attribution)")


def send_selected(data, clicks: int | None, selected: list | None, store: dict | None) -> dict:
    """The signature box replaced by the table's selected genes, in the ranking's order; genes
    the server's ranking does not hold are ignored (the browser's rows are not trusted)."""
    if not clicks or not store:
        raise dash.exceptions.PreventUpdate
    asked = {r.get("gene") for r in (selected or []) if isinstance(r, dict)}
    try:
        attr, _ = _rankings(data, _population(data, store))
    except QueryError as exc:
        return {"genes": dash.no_update, "sent": f"Nothing sent: {exc}", "resolution": dash.no_update}
    genes = [g for g in attr.table.index if g in asked][:MAX_SEND]
    if not genes:
        return {"genes": dash.no_update, "sent": "Select rows in the table (the boxes on the left) first.", "resolution": dash.no_update}
    return _send(data, genes, "(the selected rows)")


def register(app: dash.Dash, data) -> None:
    settings = {"rank_cell_types": Input(ids.RANK_CELL_TYPES, "value"), "rank_diseases": Input(ids.RANK_DISEASES, "value"),
                "rank_studies": Input(ids.RANK_STUDIES, "value"), "rank_versus": Input(ids.RANK_VERSUS, "value")}
    # no initial call: the link's restore sets the filters when the page opens, which calls it
    app.callback(output=RANK_OUTPUTS, inputs=settings,
                 state={"rank_gene": State(ids.RANK_GENE, "value"), "presenter": State(ids.PRESENTER, "checked")},
                 prevent_initial_call=True)(bind(rank_genes, data))
    # presenter mode switched: the shown population's figure again (the filters may not be what
    # it shows: two groups of cells compared on the UMAP), in the new type
    app.callback(output={"figure": Output(ids.RANK_FIG, "figure", allow_duplicate=True)},
                 inputs={"presenter": Input(ids.PRESENTER, "checked")}, state={"store": State(ids.RANK_STORE, "data")},
                 prevent_initial_call=True)(bind(present_ranking, data))
    app.callback(output={"spread": Output(ids.SPREAD_FIG, "figure")},
                 inputs={"gene": Input(ids.RANK_GENE, "value"), "store": Input(ids.RANK_STORE, "data"),
                         "presenter": Input(ids.PRESENTER, "checked")})(bind(show_spread, data))
    app.callback(output={"gene": Output(ids.RANK_GENE, "value", allow_duplicate=True)},
                 inputs={"click": Input(ids.RANK_FIG, "clickData"), "cell": Input(ids.RANK_GRID, "cellClicked")},
                 prevent_initial_call=True)(bind(pick_gene, data))
    sent = {"genes": Output(ids.GENES, "value", allow_duplicate=True), "sent": Output(ids.RANK_SENT, "children"),
            "resolution": Output(ids.RESOLUTION, "children", allow_duplicate=True)}
    app.callback(output=sent, inputs={"clicks": Input(ids.SEND_TOP, "n_clicks")},
                 state={"n": State(ids.RANK_TOP_N, "value"), "store": State(ids.RANK_STORE, "data")},
                 prevent_initial_call=True)(bind(send_top, data))
    app.callback(output={**sent, "sent": Output(ids.RANK_SENT, "children", allow_duplicate=True)},
                 inputs={"clicks": Input(ids.SEND_SELECTED, "n_clicks")},
                 state={"selected": State(ids.RANK_GRID, "selectedRows"), "store": State(ids.RANK_STORE, "data")},
                 prevent_initial_call=True)(bind(send_selected, data))
    # the CSV holds every row (all pages, as sorted and filtered), exported by the browser
    clientside_callback("function(n) { return Boolean(n); }", Output(ids.RANK_GRID, "exportDataAsCsv"), Input(ids.RANK_CSV, "n_clicks"),
                        prevent_initial_call=True)

"""The page layout: the header, the controls (sidebar), the results tabs, and the grid, graph and
export-bar helpers they are built from. Component ids come from ``dashboard.ids``; the callbacks
(``dashboard.callbacks``) fill what is empty here."""

from __future__ import annotations

import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import dcc, html

from dashboard import figures, ids
from dashboard.data import DashboardData
from dashboard.presets import PRESETS, QUICK_PRESETS, preset_options
from dashboard.state import CHOICES, DEFAULTS, FRACTION_RANGES, INT_RANGES, NULL_RANGE
from dashboard.views.cell_genes import cell_genes_tab
from dashboard.views.diseases import DISEASE_ORDERS, EFFECT_HELP
from dashboard.views.modules import TOP_MISSING
from dashboard.views.results import (
    GENE_VIEW_CAP,
    GENE_VIEW_TOP,
    GROUP_LABELS,
    STAT_HELP,
    stat_help_panel,
)
from dashboard.views.studies import COVERAGE_HELP

__all__ = ["CSV_ONLY_VIEWS", "FIGURE_GRAPHS", "LANDING_EXAMPLES", "build_layout"]

FIGURE_GRAPHS = {  # view name -> graph id (each has CSV, SVG and PNG export)
    "diseases": ids.DISEASE_FIG, "forest": ids.FOREST_FIG, "robustness": ids.ROBUST_FIG, "drivers": ids.DRIVER_FIG,
    "comparison": ids.COMPARE_FIG, "scatter": ids.SCATTER_FIG, "umap": ids.UMAP_FIG, "genes": ids.HEATMAP_FIG,
    "modules": ids.MODULES_FIG,
}
CSV_ONLY_VIEWS = ("studies", "study_effects")  # views with a CSV export and no figure
_HIT_RULE_LABELS = {"percentile": "percentile", "quantile": "quantile", "value": "score value"}


def _export_bar(view: str) -> dmc.Group:
    buttons = [dmc.Button("CSV", id=f"{ids.CSV_PREFIX}{view}", size="compact-xs", variant="default", className="export")]
    if view not in CSV_ONLY_VIEWS:
        buttons += [dmc.Button("SVG", id=f"{ids.IMG_PREFIX}{view}-svg", size="compact-xs", variant="default", className="export"),
                    dmc.Button("PNG", id=f"{ids.IMG_PREFIX}{view}-png", size="compact-xs", variant="default", className="export")]
    return dmc.Group(buttons, gap=4, justify="flex-end", className="export-bar")


def _graph(view: str, height: int | None = None) -> html.Div:
    # the figure sets its own height (long gene lists make tall heatmaps); ``height`` is the floor
    style = {"minHeight": f"{height}px"} if height else None
    # an empty figure that says when it fills: a graph without one draws bare axes
    return html.Div([_export_bar(view), dcc.Graph(id=FIGURE_GRAPHS[view], style=style, figure=figures.empty_figure("Appears after a query"),
                                                  config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": f"sigatlas-{view}"}})],
                    className="panel")


def _segmented(id_, options: dict, value) -> dmc.SegmentedControl:
    return dmc.SegmentedControl(id=id_, data=[{"value": k, "label": v} for k, v in options.items()], value=value, size="xs")


def _sim_badge(summary: dict, id_: str, note: str = "") -> dmc.Badge:
    """The orange badge that labels views of an atlas holding simulated studies."""
    return dmc.Badge(f"Includes SIMULATED data: {summary['n_simulated']} of {summary['n_studies']} studies{note}", id=id_, color="orange",
                     variant="outline", size="lg")


def _grid(id_: str, columns: list[dict], page_size: int = 10, csv_name: str | None = None) -> dag.AgGrid:
    """A sortable, filterable, paged table; ``csv_name``: the file its CSV export (all rows) is saved as."""
    extra = {"csvExportParams": {"fileName": csv_name}} if csv_name else {}
    # headers wrap instead of shrinking to "Ra...": a column's name must stay readable at 1280 px
    return dag.AgGrid(id=id_, columnDefs=columns, rowData=[], defaultColDef={"sortable": True, "filter": True, "resizable": True,
                                                                            "wrapHeaderText": True, "autoHeaderHeight": True},
                      dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": page_size,
                                       "paginationPageSizeSelector": False},
                      className="ag-theme-alpine", **extra)


def _grid_title(text: str, *buttons) -> dmc.Group:
    return dmc.Group([dmc.Text(text, fw=700, size="sm"), dmc.Group(list(buttons), gap=6)], justify="space-between", className="grid-title")


def _csv_button(id_: str) -> dmc.Button:
    return dmc.Button("CSV", id=id_, size="compact-xs", variant="default", className="export")


def _modules_tab(data: DashboardData) -> dmc.Stack:
    """The Modules tab: the signature among the atlas's gene modules, then the module browser.
    Filled by ``callbacks.modules.render_modules`` only while the tab shows (the build stores the modules)."""
    s = data.summary
    overlap_grid = _grid(ids.MODULES_OVERLAP_GRID, [
        {"field": "module", "width": 105}, {"field": "size", "width": 90}, {"field": "overlap", "width": 105},
        {"field": "overlap_genes", "headerName": "overlapping genes", "flex": 1, "minWidth": 240, "wrapText": True, "autoHeight": True,
         "cellStyle": {"wordBreak": "normal", "lineHeight": "unset", "paddingTop": "10px", "paddingBottom": "10px"}},
        {"field": "jaccard", "headerName": "Jaccard", "width": 110},
        {"field": "p_value", "headerName": "p (overlap)", "width": 145, "sort": "asc",
         "headerTooltip": "hypergeometric: the chance of sharing this many genes or more"},
        {"field": "module_z", "headerName": "module z", "width": 125, "headerTooltip": "the module's own coherence z-score"},
    ], csv_name="sigatlas-module-overlaps.csv")
    missing_grid = _grid(ids.MODULES_MISSING_GRID, [
        {"field": "gene", "flex": 1, "minWidth": 100},
        {"field": "mean_r", "headerName": "mean r", "width": 130, "sort": "desc",
         "headerTooltip": "mean correlation with the signature's genes"},
        {"field": "z", "width": 85, "headerTooltip": "against all other genes: (x - median) / (1.4826 MAD)"},
        {"field": "module", "width": 105},
    ], csv_name="sigatlas-missing-genes.csv")
    spinner = dmc.Group([dmc.Loader(size="sm"), dmc.Text("Reading the atlas's gene modules…", size="sm")],
                        gap="xs", className="modules-spinner")
    missing = html.Div([
        _grid_title("Co-attributing genes missing from the signature", _csv_button(ids.MODULES_MISSING_CSV)),
        dmc.Button(f"Add the top {TOP_MISSING} to the signature", id=ids.ADD_MISSING, size="compact-sm", variant="light", disabled=True,
                   className="grid-title"),
        missing_grid], className="panel")
    browser = html.Div([
        dmc.Text("Browse the atlas's gene modules", fw=700, size="sm", className="grid-title"),
        dmc.Group([dmc.Select(id=ids.MODULE_SELECT, data=[], placeholder="a module (name · size · z)", searchable=True, size="xs", w=260,
                              allowDeselect=False),
                   dmc.Button("Use this module as the signature", id=ids.USE_MODULE, size="compact-sm", variant="light", disabled=True)],
                  gap="xs"),
        html.Div(id=ids.MODULE_DETAIL, className="module-detail"),
    ], className="panel modules-browser")
    content = html.Div([
        dcc.Interval(id=ids.MODULES_POLL, interval=4000, disabled=True),
        html.Div(id=ids.MODULES_SUMMARY, className="modules-summary"),
        html.Div([_grid_title("Modules the signature overlaps", _csv_button(ids.MODULES_OVERLAP_CSV)), overlap_grid], className="panel"),
        # the two ways to rewrite the signature from here, side by side
        dmc.Grid([dmc.GridCol(missing, span={"base": 12, "lg": 6}), dmc.GridCol(browser, span={"base": 12, "lg": 6})]),
        _graph("modules", 420),
    ])
    sim = [_sim_badge(s, ids.MODULES_SIM, " · modules are computed over every study")] if s["n_simulated"] else []
    return dmc.Stack([
        *sim,
        dcc.Loading(content, id=ids.MODULES_LOADING, delay_show=300, custom_spinner=spinner, overlay_style={"visibility": "visible", "opacity": 0.4}),
        html.Div(id=ids.MODULES_METHOD, className="note"),
    ], gap="sm")


_FILTER_HELP = {
    "cell_types": "Cell Ontology terms with their cells; a term includes its subtypes",
    "diseases": "MONDO terms (healthy: normal) with their cells; a term includes its subtypes",
    "tissues": "UBERON terms with their cells; a term includes its parts",
}


def _term_filter(data: DashboardData, id_: str, key: str, label: str, placeholder: str) -> dmc.MultiSelect:
    """A filter over one annotation: the atlas's ontology terms as a tree with cell counts, and
    the labels that matched no term; the values are term labels (or those labels)."""
    help_text = _FILTER_HELP[key] if data.has_vocabulary else "the studies' own labels (this atlas records no ontology terms)"
    return dmc.MultiSelect(id=id_, data=data.filter_choices(key).options, value=[], searchable=True, clearable=True, size="xs",
                           label=label, placeholder=placeholder, description=help_text, maxDropdownHeight=360)


def _controls(data: DashboardData):
    d = DEFAULTS
    return dmc.Stack([
        dmc.Text("Signature", fw=700),
        dmc.Textarea(id=ids.GENES, placeholder="Paste genes: any separators, any case, symbols, aliases or Ensembl ids. "
                     "Optional weights: GENE:2 or GENE 2.0", autosize=True, minRows=5, maxRows=10, value="",
                     className="genes", spellCheck=False),
        dmc.Group([dmc.Tooltip(dmc.Button(PRESETS[k].label.split(" (")[0], id={"type": "preset", "key": k}, size="compact-sm",
                                          variant="light", className="preset"), label=PRESETS[k].source, multiline=True, w=320)
                   for k in QUICK_PRESETS], gap=6),
        # selectFirstOptionOnChange: Enter picks the match when the search leaves one
        dmc.Select(id=ids.PRESET_SELECT, data=preset_options(), searchable=True, clearable=True, size="xs", selectFirstOptionOnChange=True,
                   placeholder="More presets: Hallmarks, immune markers…"),
        dcc.Upload(html.Div(["Drop or ", html.A("choose"), " a GMT / CSV / TSV gene list"]), id=ids.UPLOAD, className="upload",
                   multiple=False),
        dmc.Select(id=ids.UPLOAD_SETS, data=[], placeholder="gene sets in the uploaded file", size="xs", searchable=True,
                   style={"display": "none"}),
        html.Div(id=ids.UPLOAD_NOTE, className="note"),
        dcc.Store(id=ids.UPLOAD_STORE),
        dmc.Group([dmc.Button("Run query", id=ids.RUN, className="primary", fullWidth=True, style={"flex": 1}),
                   dmc.Button("Cancel", id=ids.CANCEL, variant="outline", color="red", style={"display": "none"})], gap=6),
        html.Div([dmc.Progress(id=ids.PROGRESS, value=0, size="sm"), dmc.Text(id=ids.PROGRESS_TEXT, size="xs", c="dimmed")],
                 className="progress-wrap"),
        html.Div(dmc.Alert([html.Div(id=ids.LOW_GENES_TEXT),
                            dmc.Button("Run anyway", id=ids.RUN_ANYWAY, size="xs", variant="outline", color="orange", mt=6)],
                           title="Few of these entries are genes", color="orange", p="xs"),
                 id=ids.LOW_GENES, style={"display": "none"}),
        html.Div(id=ids.RESOLUTION, className="resolution"),
        dmc.Divider(label="Cells", labelPosition="left"),
        _term_filter(data, ids.CELL_TYPES, "cell_types", "Cell types", "all cell types"),
        _term_filter(data, ids.DISEASES, "diseases", "Diseases", "all diseases"),
        _term_filter(data, ids.TISSUES, "tissues", "Tissues", "all tissues"),
        dmc.MultiSelect(id=ids.STUDIES, data=data.study_options, value=[], searchable=True, clearable=True, size="xs",
                        label="Studies", placeholder="all studies"),
        html.Div([dmc.Text("Data", size="xs", c="dimmed"),
                  _segmented(ids.DATA_KIND, {k: k for k in CHOICES["data_kind"]}, d["data_kind"])]),
        dmc.Divider(label="Hits and ranking", labelPosition="left"),
        dmc.Group([
            dmc.Select(id=ids.RULE, data=[{"value": k, "label": _HIT_RULE_LABELS.get(k, k)} for k in CHOICES["rule"]],
                       value=d["rule"], size="xs", label="Hit rule",
                       allowDeselect=False, w=120),
            dmc.NumberInput(id=ids.CUT, value=d["cutoff"], size="xs", label="cut-off", step=1, w=90, debounce=True),
        ], gap=6, grow=True),
        dmc.Group([
            dmc.NumberInput(id=ids.CELL_MIN, value=d["cell_min"], min=INT_RANGES["cell_min"][0], step=1, size="xs", label="cell_min", debounce=True),
            dmc.NumberInput(id=ids.SAMP_MIN, value=d["samp_min"], min=INT_RANGES["samp_min"][0], step=1, size="xs", label="samp_min", debounce=True),
            dmc.NumberInput(id=ids.TOP_N, value=d["top_n"], min=INT_RANGES["top_n"][0], step=1, size="xs", label="top N (0 = all)", debounce=True),
        ], gap=6, grow=True),
        dmc.MultiSelect(id=ids.DISEASE_GROUPS, data=data.disease_group_choices.options, value=[], searchable=True, clearable=True,
                        size="xs", label="Group diseases by", placeholder="each disease on its own" if data.has_vocabulary else
                        "this atlas records no disease terms", disabled=not data.disease_group_choices.options,
                        description="MONDO parent terms: each disease under one counts as it (the first chosen that applies)",
                        maxDropdownHeight=320),
        html.Div(id=ids.DISEASE_GROUPS_NOTE, className="note"),
        dmc.NumberInput(id=ids.MIN_COVERAGE, value=d["min_coverage"], min=FRACTION_RANGES["min_coverage"][0],
                        max=FRACTION_RANGES["min_coverage"][1], step=0.05, decimalScale=2, size="xs", debounce=True,
                        label="Min. study coverage (0-1)",
                        description="min_coverage: studies that measured less of the signature's weight are left out, with the reason"),
        dmc.NumberInput(id=ids.NULL_DRAWS, value=d["null_draws"], min=0, max=NULL_RANGE[1], step=100, size="xs", debounce=True,
                        label="Specificity vs random gene sets: draws (0 = off; 1,000 gives p ≥ 0.001)"),
        dmc.Select(id=ids.REFERENCE, data=data.filter_choices("diseases").options, value=d["reference"], searchable=True, size="xs",
                   allowDeselect=False, label="Reference donors", maxDropdownHeight=320,
                   description="each disease is compared with these donors within its own studies (a term includes its subtypes)"),
    ], gap=8, className="controls")


# the landing page's examples: a cell-type program and a pathway (preset keys)
LANDING_EXAMPLES = {"ms1": "Example: MS1 monocytes (sepsis program)", "h-interferon-alpha-response": "Example: Hallmark interferon alpha"}


def _landing() -> html.Div:
    """What to do before the first query, with two example buttons (hidden once a result shows)."""
    return html.Div([
        dmc.Text("Where is a gene signature active?", fw=700, size="lg"),
        dmc.Text("1. Paste a gene signature in the box on the left (symbols, aliases or Ensembl ids; any separators; optional "
                 "weights such as CD14:2), drop a GMT / CSV file, or pick a preset. 2. Optionally narrow the cells (cell types, "
                 "diseases, studies). 3. Press Run query. The Diseases tab then ranks diseases by the share of their samples' cells "
                 "in which the signature is active, against random gene sets, with a sentence that reads the result.", size="sm"),
        dmc.Group([dmc.Button(label, id={"type": ids.EXAMPLE_TYPE, "key": key}, variant="filled", size="sm", className="example")
                   for key, label in LANDING_EXAMPLES.items()], gap="sm"),
    ], id=ids.LANDING, className="landing panel")


def build_layout(data: DashboardData):
    """The page: the header, the presenter bar, the controls and the results tabs, with the stores
    the callbacks share (the state, the query request, the result key or the query's error)."""
    s = data.summary
    sim_badge = _sim_badge(s, ids.SIM_BADGE) if s["n_simulated"] else dmc.Badge("real data", id=ids.SIM_BADGE, variant="light")
    header = html.Header([
        dmc.Group([html.Span("SigAtlas", className="brand"),
                   dmc.Text(f"atlas '{s['name']}' · {s['n_studies']} studies · {s['n_cells']:,} cells · {s['n_genes']:,} genes"
                            + (" · imported SIGnature attributions" if s["imported"] else ""), c="dimmed", size="sm")], gap="sm"),
        dmc.Group([
            sim_badge,
            dmc.TextInput(id=ids.SHARE_LINK, value="", readOnly=True, size="xs", w=260, className="share-link"),
            dcc.Clipboard(target_id=ids.SHARE_LINK, id=ids.COPY_LINK, title="copy link to this view", className="copy-link"),
            dmc.Button("Snapshot (zip)", id=ids.SNAPSHOT, size="compact-sm", variant="default"),
            dmc.Button("Save view", id=ids.SAVE_VIEW, size="compact-sm", variant="default"),
            dmc.Switch(id=ids.PRESENTER, label="Presenter", size="sm"),
        ], gap="xs"),
    ], className="topbar")
    presenter_bar = dmc.Group([
        dmc.Button("◀ previous view", id=ids.PREV_VIEW, size="compact-md", variant="light"),
        dmc.Text(id=ids.VIEW_POS, size="lg"),
        dmc.Button("next view ▶", id=ids.NEXT_VIEW, size="compact-md", variant="light"),
    ], justify="center", className="presenter-bar")
    d = DEFAULTS
    diseases_tab = dmc.Stack([
        html.Div(id=ids.READING, className="reading"),
        stat_help_panel(),
        _graph("diseases", 480),
        html.Div([dmc.Text("Order diseases by", size="xs", c="dimmed"), _segmented(ids.DISEASE_ORDER, DISEASE_ORDERS, d["disease_order"])]),
        html.Details([html.Summary("Ranking as a table (click a disease for its studies)"), html.Div(id=ids.DISEASE_TABLE_WRAP)], open=True),
        # the evidence within studies: one disease's effect in each study against its own reference donors
        html.Div([
            dmc.Select(id=ids.FOREST_GROUP, data=[], placeholder="per-study effects of… (default: the first disease shown)", size="xs",
                       clearable=True, searchable=True, w=320),
            _graph("forest", 320),
            html.Div(id=ids.FOREST_NOTE),
        ], id="forest-section"),
        html.Div(id=ids.EXCLUDED_DISEASES),
        # one figure a row: side by side, each got about 430 px at 1280 px and squeezed its labels
        dmc.Grid([dmc.GridCol(_graph("robustness", 380), span=12),
                  dmc.GridCol(html.Div([
                      dmc.Select(id=ids.DRIVER_GROUP, data=[], placeholder="driver genes of… (default: the top disease)", size="xs",
                                 clearable=True, w=300),
                      _graph("drivers", 380)]), span=12)]),
        dmc.Grid([dmc.GridCol(_graph("comparison", 380), span=12),
                  dmc.GridCol(_graph("scatter", 380), span=12)]),
    ], gap="sm")
    fmt = figures.GRID_FORMATS

    def shown(kind: str) -> dict:  # numbers as the rest of the dashboard writes them (figures.format_value)
        return {"function": f"params.value == null ? '–' : {fmt[kind]}(params.value)"}

    grid = _grid(ids.STUDY_GRID, [
        # the study stays in view while the coverage columns scroll in; the numbers a reader
        # compares come first, the long texts last (they wrap)
        {"field": "rank", "headerName": "#", "width": 64, "pinned": "left"}, {"field": "study", "width": 104, "pinned": "left"},
        {"field": "mean_hit_pct", "headerName": "mean hit %", "width": 112, "sort": "desc", "valueFormatter": shown("pct"),
         "filter": "agNumberColumnFilter", "headerTooltip": STAT_HELP["hit %"]},
        # p at the floor the draws allow reads "≤ floor", as in the disease table
        {"field": "p_value", "headerName": "p (null)", "width": 104, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": f"params.value == null ? '–' : (params.data.p_floor != null && params.value <= "
                                       f"params.data.p_floor * (1 + 1e-9) ? '≤ ' + {fmt['p']}(params.data.p_floor) : {fmt['p']}(params.value))"},
         "headerTooltip": STAT_HELP["p"]},
        # a q made from a p at the floor is an upper bound too (figures.format_q)
        {"field": "q_value", "headerName": "q (BH)", "width": 96, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": f"params.value == null ? '–' : (params.data.p_floor != null && params.data.p_value != null && "
                                       f"params.data.p_value <= params.data.p_floor * (1 + 1e-9) ? '≤ ' : '') + {fmt['q']}(params.value)"},
         "headerTooltip": STAT_HELP["q (BH)"]},
        {"field": "data", "width": 128, "cellClassRules": {"sim-cell": "params.value == 'SIMULATED'"}},
        {"field": "samples", "width": 116, "filter": "agNumberColumnFilter"},
        {"field": "cells", "width": 96, "valueFormatter": shown("count"), "filter": "agNumberColumnFilter"},
        {"field": "diseases", "flex": 1, "minWidth": 180, "wrapText": True, "autoHeight": True,
         "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
        {"field": "title", "flex": 2, "minWidth": 240, "wrapText": True, "autoHeight": True, "tooltipField": "title",
         "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
        {"field": "measured", "headerName": "Genes measured", "width": 150, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? '' : params.value + ' / ' + params.data.requested"},
         "headerTooltip": "signature genes this study measured, of those matched in the model"},
        {"field": "coverage", "headerName": "Coverage", "width": 120, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? '' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the share of the signature's weight carried by the genes this study measured"},
        {"field": "measured_share", "headerName": "Measured share", "width": 150, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? 'not recorded' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the share of a cell's attribution this study's gene panel is estimated to carry; its values are "
                          "multiplied by it to put every panel on one scale"},
        {"field": "notes", "headerName": "Notes", "flex": 2, "minWidth": 220, "wrapText": True, "autoHeight": True,
         "tooltipField": "notes", "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
    ], page_size=20)
    effects_grid = _grid(ids.STUDY_EFFECTS_GRID, [
        {"field": "disease", "width": 150, "pinned": "left"}, {"field": "study", "width": 104, "pinned": "left"},
        {"field": "g", "headerName": "g vs reference", "width": 120,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.2f')(params.value)"},
         "filter": "agNumberColumnFilter", "headerTooltip": EFFECT_HELP["g"]},
        {"field": "g_lo", "headerName": "95% CI", "width": 130,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.2f')(params.value) + ' to ' + d3.format('.2f')(params.data.g_hi)"}},
        {"field": "weight", "width": 96, "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the study's share of the pooled effect (random effects)"},
        {"field": "n_donors", "headerName": "donors", "width": 96}, {"field": "n_reference_donors", "headerName": "reference donors", "width": 120},
        {"field": "mean_hit_pct", "headerName": "donors' hit %", "width": 112, "valueFormatter": shown("pct")},
        {"field": "reference_hit_pct", "headerName": "reference hit %", "width": 120, "valueFormatter": shown("pct")},
        {"field": "evidence", "flex": 2, "minWidth": 240, "wrapText": True, "autoHeight": True, "headerTooltip": EFFECT_HELP["evidence"],
         "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
        {"field": "reason", "headerName": "why no effect", "flex": 2, "minWidth": 220, "wrapText": True, "autoHeight": True,
         "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
    ], page_size=20)
    tabs = dmc.Tabs([
        dmc.TabsList([dmc.TabsTab("Diseases", value="diseases"), dmc.TabsTab("Studies", value="studies"),
                      dmc.TabsTab("Cells (UMAP)", value="cells"), dmc.TabsTab("Genes", value="genes"),
                      dmc.TabsTab("Genes in a cell type", value="cell_genes"), dmc.TabsTab("Modules", value="modules")]),
        dmc.TabsPanel(diseases_tab, value="diseases", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            html.Div(id=ids.EXCLUDED_STUDIES),
            html.Div([_export_bar("studies"), grid, dmc.Text(COVERAGE_HELP, size="xs", c="dimmed", id=ids.COVERAGE_HELP)],
                     className="panel"),
            html.Div([_grid_title("Each disease within each study, against the study's own reference donors"), _export_bar("study_effects"),
                      effects_grid, dmc.Text(EFFECT_HELP["evidence"] + " " + EFFECT_HELP["g"], size="xs", c="dimmed", id=ids.EVIDENCE_HELP)],
                     className="panel"),
            # filled while the tab shows (controls.show_study_reports): a component per report
            # line and label made 2,500 of the page's 2,700 components, and the page's script
            # walks every component on each update (1-3 s per query result on a busy machine)
            html.Div(id=ids.STUDY_REPORTS_SLOT),
        ], gap="sm"), value="studies", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            dmc.Group([html.Div([dmc.Text("Colour by", size="xs", c="dimmed"),
                                 _segmented(ids.UMAP_COLOR, {"score": "score", "cell_type": "cell type (annotated)",
                                                             "cell_type_predicted": "cell type (predicted)", "disease": "disease",
                                                             "study": "study"}, DEFAULTS["color"])]),
                       dmc.Badge(id=ids.UMAP_BADGE, variant="light", size="lg")]),
            dmc.Text(id=ids.UMAP_LABELS, size="xs", c="dimmed"),
            _graph("umap", 620)]), value="cells", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            dmc.Group([
                html.Div([dmc.Text("Groups", size="xs", c="dimmed"), _segmented(ids.GROUP_BY, GROUP_LABELS, DEFAULTS["group_by"])]),
                html.Div([dmc.Text("View", size="xs", c="dimmed"), _segmented(ids.HEAT_MODE, {"heatmap": "heatmap", "dotplot": "dot plot"}, DEFAULTS["heat"])]),
                html.Div([dmc.Text("Order", size="xs", c="dimmed"),
                          _segmented(ids.HEAT_ORDER, {"cluster": "clustered", "score": "by score"}, DEFAULTS["order"])]),
                html.Div([dmc.Text("Genes", size="xs", c="dimmed"),
                          _segmented(ids.GENES_SHOWN, {"top": f"top {GENE_VIEW_TOP}", "all": f"all (up to {GENE_VIEW_CAP})"},
                                     DEFAULTS["genes_shown"])]),
            ]),
            dmc.Text(id=ids.GENES_NOTE, size="sm", className="genes-note"),
            _graph("genes", 640)]), value="genes", pt="sm"),
        dmc.TabsPanel(cell_genes_tab(data), value="cell_genes", pt="sm"),
        dmc.TabsPanel(_modules_tab(data), value="modules", pt="sm"),
    ], id=ids.TABS, value=DEFAULTS["tab"])
    results = html.Div([
        html.Div(id=ids.STATE_NOTES),
        html.Div(id=ids.STATUS, className="status"),
        html.Div(id=ids.STALE),
        _landing(),
        tabs,
        html.Footer("Scores are mean Integrated-Gradients attributions of the signature genes (Gold et al., SIGnature); p-values "
                    "come from random gene sets matched on mean attribution and detection. Simulated studies carry planted programs "
                    "and are labelled SIMULATED wherever they appear."),
    ], className="results")
    return dmc.MantineProvider(html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.STATE_SEARCH),
        dcc.Store(id=ids.QUERY_REQUEST, data=0),
        dcc.Store(id=ids.GENES_ACCEPTED),  # the gene text run anyway although few of its entries are genes
        dcc.Store(id=ids.RESULT_KEY),  # the key of the stored result of the last query that ran
        dcc.Store(id=ids.PARTIAL_KEY),  # while a query runs: its ranking, shown before the p-values are in
        dcc.Store(id=ids.UMAP_DRAWN),  # the result and colour the UMAP shows (drawn only while its tab shows)
        dcc.Store(id=ids.RANKED),  # the ranking Run's request drew: the request that draws the rest follows it
        dcc.Store(id=ids.VIEWS_DRAWN),  # the result and view settings the views show (so a render does not draw them twice)
        dcc.Store(id=ids.QUERY_ERROR),  # why the last query failed ({"error", "genes"}), or None
        dcc.Store(id=ids.MODULES_STORE),
        dcc.Store(id=ids.SAVED_VIEWS, storage_type="local", data=[]),
        dcc.Store(id=ids.SNAPSHOT_IMAGES),
        dcc.Download(id=ids.DOWNLOAD),
        header, presenter_bar,
        html.Div([_controls(data), results], className="main"),
    ], id=ids.ROOT, className="app"))


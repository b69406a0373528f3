"""The page shell: the header, the presenter bar, the controls beside the results tabs, and the
stores the callbacks share. Each tab's components come from its view module
(``dashboard.views.<tab>``: diseases, studies, cells, genes, cell_genes, modules), the sidebar from
``dashboard.views.controls``; component ids from ``dashboard.ids``; the callbacks
(``dashboard.callbacks``) fill what is empty here."""

from __future__ import annotations

import dash_mantine_components as dmc
from dash import dcc, html

from dashboard import ids
from dashboard.data import DashboardData
from dashboard.state import DEFAULTS
from dashboard.views import components as ui
from dashboard.views.cell_genes import cell_genes_tab
from dashboard.views.cells import cells_tab
from dashboard.views.components import CSV_ONLY_VIEWS, FIGURE_GRAPHS
from dashboard.views.controls import controls_panel
from dashboard.views.diseases import diseases_tab
from dashboard.views.genes import genes_tab
from dashboard.views.modules import modules_tab
from dashboard.views.studies import studies_tab

__all__ = ["CSV_ONLY_VIEWS", "FIGURE_GRAPHS", "LANDING_EXAMPLES", "TABS", "build_layout"]

# the results tabs in page order: value -> label (each value names its view module, and its
# callbacks module where it has callbacks of its own)
TABS = {"diseases": "Diseases", "studies": "Studies", "cells": "Cells (UMAP)", "genes": "Genes",
        "cell_genes": "Genes in a cell type", "modules": "Modules"}


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
    sim_badge = ui.sim_badge(s, ids.SIM_BADGE) if s["n_simulated"] else dmc.Badge("real data", id=ids.SIM_BADGE, variant="light")
    header = html.Header([
        dmc.Group([html.Span("SigAtlas", className="brand"),
                   dmc.Text(f"atlas '{s['name']}' · {s['n_studies']} studies · {s['n_cells']:,} cells · {s['n_genes']:,} genes"
                            + (" · imported SIGnature attributions" if s["imported"] else ""), c="dimmed", size="sm")], gap="sm"),
        dmc.Group([
            sim_badge,
            dmc.TextInput(id=ids.SHARE_LINK, value="", readOnly=True, size="xs", w=260, className="share-link"),
            dcc.Clipboard(target_id=ids.SHARE_LINK, id=ids.COPY_LINK, title="copy link to this view", className="copy-link"),
            dmc.Button("Snapshot (zip)", id=ids.SNAPSHOT, size="compact-sm", variant="default", disabled=True,
                       attributes={"title": ui.EXPORT_WAITS}),
            dmc.TextInput(id=ids.VIEW_NAME, placeholder="name this view", size="xs", w=150,
                          **{"aria-label": "name of the view to save"}),
            dmc.Button("Save view", id=ids.SAVE_VIEW, size="compact-sm", variant="default"),
            dmc.Switch(id=ids.PRESENTER, label="Presenter", size="sm"),
        ], gap="xs"),
    ], className="topbar")
    presenter_bar = dmc.Group([
        dmc.Button("◀ previous view", id=ids.PREV_VIEW, size="compact-md", variant="light"),
        dmc.Text(id=ids.VIEW_POS, size="lg"),
        dmc.Select(id=ids.SAVED_VIEW_PICK, data=[], placeholder="open a saved view", size="md", w=320, clearable=False,
                   **{"aria-label": "saved views, by name"}),
        dmc.Button("next view ▶", id=ids.NEXT_VIEW, size="compact-md", variant="light"),
    ], justify="center", className="presenter-bar")
    panels = {"diseases": diseases_tab(), "studies": studies_tab(), "cells": cells_tab(data), "genes": genes_tab(),
              "cell_genes": cell_genes_tab(data), "modules": modules_tab(data)}
    # only the tab that shows is mounted (keepMounted=False): the browser built and drew every tab's figures and grids on
    # each result, ~25% of a link's time; the panel callback in callbacks.link.register makes a panel mounted later show the store's props
    tabs = dmc.Tabs([
        dmc.TabsList([dmc.TabsTab(label, value=value) for value, label in TABS.items()]),
        *[dmc.TabsPanel(panels[value], value=value, pt="sm", id=f"{ids.TAB_PANEL_PREFIX}{value}") for value in TABS],
    ], id=ids.TABS, value=DEFAULTS["tab"], keepMounted=False)
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
        dcc.Store(id=ids.LINK_APPLIED),  # the link this page was built with (callbacks.link.opened_page), until restore sees it
        dcc.Store(id=ids.LINK_RUN),  # what that link starts as the page opens: "query", "job" or nothing
        dcc.Store(id=ids.JOB_REQUEST, data=0),  # the query's job alone (a linked page came with its ranking)
        dcc.Store(id=ids.RESULT_KEY),  # the key of the stored result of the last query that ran
        dcc.Store(id=ids.PARTIAL_KEY),  # while a query runs: its ranking, shown before the p-values are in
        dcc.Store(id=ids.SNAPSHOT_READY),  # the snapshot's click, once this result's UMAP is drawn (callbacks.export.snapshot_umap)
        dcc.Store(id=ids.UMAP_DRAWN),  # the result and colour the UMAP shows (drawn only while its tab shows)
        dcc.Store(id=ids.RANKED),  # the ranking Run's request drew: the request that draws the rest follows it
        dcc.Store(id=ids.VIEWS_DRAWN),  # the result and view settings the views show (so a render does not draw them twice)
        dcc.Store(id=ids.QUERY_ERROR),  # why the last query failed ({"error", "genes"}), or None
        dcc.Store(id=ids.MODULES_STORE),
        dcc.Store(id=ids.SAVED_VIEWS, storage_type="local", data=[]),
        dcc.Store(id=ids.SNAPSHOT_IMAGES),
        dcc.Download(id=ids.DOWNLOAD),
        header, presenter_bar,
        html.Div([controls_panel(data), results], className="main"),
    ], id=ids.ROOT, className="app"))


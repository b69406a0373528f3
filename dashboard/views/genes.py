"""The Genes tab: the signature's genes by group (disease, cell type or study) as a heatmap or a
dot plot, drawn with the result's other views by ``callbacks.render`` (``views.results.render_views``)."""

from __future__ import annotations

import dash_mantine_components as dmc
from dash import html

from dashboard import ids
from dashboard.state import DEFAULTS
from dashboard.views import components as ui
from dashboard.views.results import GENE_VIEW_CAP, GENE_VIEW_TOP, GROUP_LABELS

__all__ = ["genes_tab"]


def genes_tab() -> dmc.Stack:
    """The Genes tab's components, empty."""
    return dmc.Stack([
        dmc.Group([
            html.Div([dmc.Text("Groups", size="xs", c="dimmed"), ui.segmented(ids.GROUP_BY, GROUP_LABELS, DEFAULTS["group_by"])]),
            html.Div([dmc.Text("View", size="xs", c="dimmed"), ui.segmented(ids.HEAT_MODE, {"heatmap": "heatmap", "dotplot": "dot plot"}, DEFAULTS["heat"])]),
            html.Div([dmc.Text("Order", size="xs", c="dimmed"),
                      ui.segmented(ids.HEAT_ORDER, {"cluster": "clustered", "score": "by score"}, DEFAULTS["order"])]),
            html.Div([dmc.Text("Genes", size="xs", c="dimmed"),
                      ui.segmented(ids.GENES_SHOWN, {"top": f"top {GENE_VIEW_TOP}", "all": f"all (up to {GENE_VIEW_CAP})"},
                                   DEFAULTS["genes_shown"])]),
        ]),
        dmc.Text(id=ids.GENES_NOTE, size="sm", className="genes-note"),
        ui.graph("genes", 640)])

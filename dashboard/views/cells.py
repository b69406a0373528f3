"""The Cells tab: every selected cell on the atlas's UMAP, coloured by its score or a label. Its
views are drawn by ``callbacks.cells`` only while the tab shows (``views.results.umap_views``)."""

from __future__ import annotations

import dash_mantine_components as dmc
from dash import html

from dashboard import ids
from dashboard.state import DEFAULTS
from dashboard.views import components as ui

__all__ = ["UMAP_COLOURS", "cells_tab"]

# what the UMAP can be coloured by (the state's "color" values), with their labels
UMAP_COLOURS = {"score": "score", "cell_type": "cell type (annotated)", "cell_type_predicted": "cell type (predicted)",
                "disease": "disease", "study": "study"}


def cells_tab() -> dmc.Stack:
    """The Cells tab's components, empty."""
    return dmc.Stack([
        dmc.Group([html.Div([dmc.Text("Colour by", size="xs", c="dimmed"), ui.segmented(ids.UMAP_COLOR, UMAP_COLOURS, DEFAULTS["color"])]),
                   dmc.Badge(id=ids.UMAP_BADGE, variant="light", size="lg")]),
        dmc.Text(id=ids.UMAP_LABELS, size="xs", c="dimmed"),
        ui.graph("umap", 620)])

"""The Cells tab: every selected cell on the atlas's UMAP, coloured by its score or a label. Its
views (:func:`umap_views`) are drawn by ``callbacks.cells`` only while the tab shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_mantine_components as dmc
from dash import html

from dashboard import figures, ids
from dashboard.state import DEFAULTS
from dashboard.views import components as ui
from dashboard.views.components import label_colours

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["UMAP_COLOURS", "UMAP_VIEWS", "cells_tab", "umap_labels_note", "umap_views"]

# what the UMAP can be coloured by (the state's "color" values), with their labels
UMAP_COLOURS = {"score": "score", "cell_type": "cell type (annotated)", "cell_type_predicted": "cell type (predicted)",
                "disease": "disease", "study": "study"}


UMAP_VIEWS = ("umap_fig", "umap_badge", "umap_labels")


def umap_views(data: DashboardData, result, state: dict) -> dict:
    """The Cells tab's views of ``result`` (UMAP_VIEWS) under the colour in ``state``: drawn
    apart from the others because its figure is most of a result's bytes (1.5 MB of 1.9 MB for
    MS1 on the demo's monocytes), so the page asks for it only while that tab shows."""
    out = {}
    params = result.params
    sim_note = " · includes SIMULATED studies (open circles)" if data.atlas.has_simulated else ""
    cells = data.query_cells(params)
    if data.umap is not None:
        color = state.get("color") or "score"
        if color not in cells.columns and color != "score":
            out["umap_fig"] = figures.empty_figure(
                "This atlas has no predicted cell types (built before label transfer): rebuild it with "
                "python -m compute build, or colour by the annotated cell type" if color == "cell_type_predicted"
                else f"The atlas's cells have no '{color}' column")
        else:
            out["umap_fig"] = figures.umap_figure(data.umap, result.scores, cells, result.selection, color_by=color,
                                                  title=f"UMAP coloured by {_UMAP_COLOURS.get(color, color)}",
                                                  simulated=bool(sim_note),
                                                  # the atlas's colour per label: a predicted cell type as its annotated namesake
                                                  colours=None if color == "score" else
                                                  label_colours(data, "cell_type" if color == "cell_type_predicted" else color))
        meta = out["umap_fig"].layout.meta or {}
        out["umap_badge"] = f"{meta.get('shown', data.atlas.n_cells):,} of {meta.get('total', data.atlas.n_cells):,} cells shown"
    else:
        out["umap_fig"] = figures.empty_figure("This atlas has no UMAP (imported attributions carry no embedding)")
        out["umap_badge"] = "no UMAP"
    out["umap_labels"] = umap_labels_note(data, state.get("color") or "score")
    return out


# what the UMAP is coloured by, in words (its title says which cell-type labels it shows)
_UMAP_COLOURS = {
    "score": "signature score",
    "cell_type": "cell type (annotated, harmonised to the Cell Ontology)",
    "cell_type_predicted": "cell type (predicted by label transfer)",
    "disease": "disease", "study": "study",
}


def umap_labels_note(data, color: str) -> str:
    """Which cell-type labels the UMAP shows, and how far the prediction can be trusted."""
    if color == "cell_type_predicted":
        acc = ((data.atlas.meta.get("vocabulary") or {}).get("label_transfer") or {}).get("accuracy") or {}
        held_out = (f" On {int(acc['n_evaluated']):,} labelled cells held out, {100 * acc['exact']:.1f}% got their own term."
                    if "exact" in acc and acc.get("n_evaluated") else "")
        return ("Shown: the cell type predicted by label transfer (the majority term among each cell's nearest labelled cells "
                "of other studies in the encoder's embedding); the hover gives the confidence (the winning term's share of the "
                f"votes) and the annotated label.{held_out} Filters and rankings use the annotated labels, never the prediction.")
    if color == "cell_type":
        return ("Shown: the annotated cell type, the studies' own labels harmonised to the Cell Ontology (the study's label "
                "where no term matched); the hover gives the study's label and the predicted cell type. Filters and rankings "
                "use these labels.")
    return ("Cell types: the studies' annotations harmonised to the Cell Ontology (filters and rankings use them); "
            "colour by 'cell type (predicted)' for the label transfer's prediction.")


def cells_tab() -> dmc.Stack:
    """The Cells tab's components, empty."""
    return dmc.Stack([
        dmc.Group([html.Div([dmc.Text("Colour by", size="xs", c="dimmed"), ui.segmented(ids.UMAP_COLOR, UMAP_COLOURS, DEFAULTS["color"])]),
                   dmc.Badge(id=ids.UMAP_BADGE, variant="light", size="lg")]),
        dmc.Text(id=ids.UMAP_LABELS, size="xs", c="dimmed"),
        ui.graph("umap", 620)])

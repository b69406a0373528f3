"""The Cells tab: every selected cell on the atlas's UMAP, coloured by its score or a label. Its
views (:func:`umap_views`) are drawn by ``callbacks.cells`` only while the tab shows.

The Cells tab's explorer (what CELLxGENE Explorer users look for): the whole atlas's UMAP
coloured by any cell-type, sample or donor column the atlas's cells carry, or by one gene's
attribution or expression; split into one panel per value of a column; and two groups of cells
picked with the lasso or the box, compared gene by gene (donors as the unit) in the "Genes in a
cell type" view.

Pure: the cells table and coordinates in, ``go.Figure`` and components out (tested on
``fig.to_dict()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import dash_mantine_components as dmc
import numpy as np
import pandas as pd
import plotly.colors as plotly_colors
import plotly.graph_objects as go
from dash import dcc, html
from plotly.subplots import make_subplots

from compute.atlas import MISSING_METADATA
from dashboard import figures, ids
from dashboard.figures.cells import umap_figure
from dashboard.state import DEFAULTS
from dashboard.views import components as ui
from dashboard.views.components import label_colours

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["CELL_COLUMNS", "ColumnValues", "GENE_STORES", "MAX_PANELS", "UMAP_COLOURS", "UMAP_VIEWS", "cells_explorer",
           "cells_tab", "column_label", "column_values", "explore_figure", "groups_note", "offered_columns", "sample_columns",
           "selected_cells", "umap_labels_note", "umap_views"]

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
            out["umap_fig"] = umap_figure(data.umap, result.scores, cells, result.selection, color_by=color,
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


def cells_tab(data: DashboardData) -> dmc.Stack:
    """The Cells tab's components, empty: the result's UMAP, then the atlas's explorer (cells_explorer)."""
    return dmc.Stack([
        dmc.Group([html.Div([dmc.Text("Colour by", size="xs", c="dimmed"), ui.segmented(ids.UMAP_COLOR, UMAP_COLOURS, DEFAULTS["color"])]),
                   dmc.Badge(id=ids.UMAP_BADGE, variant="light", size="lg")]),
        dmc.Text(id=ids.UMAP_LABELS, size="xs", c="dimmed"),
        ui.graph("umap", 620),
        cells_explorer(data)])


# -- the explorer ----------------------------------------------------------------------
# per-cell labels (not constant within a sample) that are worth a colour
CELL_COLUMNS = ("cell_type", "cell_type_predicted")
# never a colour: identifiers, ontology ids and per-cell numbers
_SKIP = ("cell_id", "n_counts", "n_genes", "cell_type_prediction_confidence")
GENE_STORES = {"attr": "attribution", "expr": "expression"}
MAX_PANELS = 30  # a split into more panels than this is refused (each panel would be a few pixels)
_MAX_CATEGORIES = 200  # a column with more values than this is an identifier, not a colour
_NAMES = {"cell_type": "cell type (annotated)", "cell_type_predicted": "cell type (predicted)", "study": "study", "sample": "sample",
          "donor": "donor", "disease": "disease", "tissue": "tissue", "organism": "organism", "simulated": "SIMULATED or real",
          "sex": "sex", "age": "age", "development_stage": "age (development stage)",
          "self_reported_ethnicity": "ethnicity (self-reported)", "suspension_type": "suspension (cell or nucleus)"}


def sample_columns(cells: pd.DataFrame, metadata=()) -> list[str]:
    """The per-cell labels of CELL_COLUMNS the table has, then the columns of ``cells`` that hold
    one value per sample (study, donor, disease, sex, age... whatever the atlas's studies carry),
    in the table's order. ``metadata``: the atlas's donor or sample metadata columns
    (Atlas.metadata_columns), offered even where a manifest carried one per cell. Identifiers,
    ontology ids and per-cell numbers are left out, and so is a column of more than 200 values
    (an age counts its bins: :func:`column_values`)."""
    keys = cells["study"].astype(str) + "\x00" + cells["sample"].astype(str)
    out = []
    for col in cells.columns:
        if col in _SKIP or col.endswith("_ontology_term_id") or col in CELL_COLUMNS:
            continue
        values = cells[col]
        n = len(column_values(cells, col).order) if col in metadata else values.nunique(dropna=True)
        if n < 1 or n > _MAX_CATEGORIES:
            continue
        if col in ("study", "sample") or col in metadata or values.astype(str).groupby(keys.to_numpy()).nunique().max() == 1:
            out.append(col)
    return [c for c in CELL_COLUMNS if c in cells.columns] + out


def offered_columns(data: DashboardData) -> list[str]:
    """The columns the explorer offers for colour and split on ``data``'s atlas (:func:`sample_columns`
    with its metadata columns), found once per opened atlas: one pass over every cell."""
    return data.memo("cells:columns", lambda: sample_columns(data.atlas.cells, data.atlas.metadata_columns))


def column_label(col: str) -> str:
    return _NAMES.get(col, col.replace("_", " "))


class ColumnValues(NamedTuple):
    """A column as the explorer colours it: ``labels`` (one per cell), ``order`` (the legend's and
    the panels' order), ``colours`` ({label: colour} for an ordered quantity, else None: the
    atlas's colours or distinct ones) and ``what`` (the legend's title)."""

    labels: np.ndarray
    order: list[str]
    colours: dict[str, str] | None
    what: str


# an age is a quantity: its values (or its bins) in order, on a sequential scale, so that young and
# old read apart at a glance (distinct hues would make 47 and 48 as unlike as 5 and 80). Shown as
# they are up to this many values, else in bins of a round width (1, 2, 5, 10, 20... years) that
# leaves at most this many: a biologist reads "40-49" rather than a colour bar over a handful of
# donors, and a split needs groups. The exact age of every cell stays in the CSV export.
_MAX_AGE_BINS = 10
_UNKNOWN_COLOUR = "#bdbdbd"  # a donor whose study did not record the column: grey, last


def _age_like(col: str) -> bool:
    return col == "age" or col.startswith("age_") or col.endswith("_age")


def _age_bins(numbers: np.ndarray) -> tuple[np.ndarray, list[str], str]:
    """(a label per finite number, the labels in order, the legend's note) of an age column."""
    distinct = np.unique(numbers)
    if len(distinct) <= _MAX_AGE_BINS:
        labels = [f"{v:g}" for v in distinct]
        return np.array([f"{v:g}" for v in numbers], dtype=object), labels, ""
    lo, hi = float(distinct[0]), float(distinct[-1])
    step = next(m * 10.0 ** e for e in range(-2, 6) for m in (1, 2, 5)
                if np.floor(hi / (m * 10.0 ** e)) - np.floor(lo / (m * 10.0 ** e)) + 1 <= _MAX_AGE_BINS)
    starts = np.floor(numbers / step) * step
    whole = bool(np.all(numbers == np.round(numbers))) and step >= 1

    def label(start: float) -> str:
        return f"{start:g}-{start + step - 1:g}" if whole else f"{start:g} to <{start + step:g}"

    order = [label(v) for v in np.unique(starts)]
    return np.array([label(v) for v in starts], dtype=object), order, f"bins of {step:g}"


def column_values(cells: pd.DataFrame, col: str) -> ColumnValues:
    """How the explorer colours and splits by ``col`` (ColumnValues): the SIMULATED flag in words;
    an age (a column named age, age_* or *_age whose values are numbers) by value or in round
    bins, in order, on a sequential scale; any other column by its labels, the most frequent
    first. MISSING_METADATA ("unknown": the cell's study did not record it) is grey and last."""
    values = cells[col]
    name = column_label(col)
    if col == "simulated":
        labels = np.where(values.astype(bool).to_numpy(), "SIMULATED", "real")
    else:
        labels = values.astype(str).to_numpy()
    if _age_like(col):
        codes, distinct = pd.factorize(labels)  # each distinct value once: an atlas has a few hundred ages, not a million
        distinct = np.asarray(distinct, dtype=object)
        missing = distinct == MISSING_METADATA
        numbers = pd.to_numeric(pd.Series(distinct[~missing]), errors="coerce").to_numpy(dtype=float)
        if numbers.size and np.isfinite(numbers).all():
            binned, order, note = _age_bins(numbers)
            distinct[~missing] = binned
            ramp = plotly_colors.sample_colorscale("Viridis", np.linspace(0.0, 0.9, len(order)).tolist()) if len(order) > 1 else ["#31688e"]
            colours = dict(zip(order, ramp, strict=True))
            if missing.any():
                order, colours[MISSING_METADATA] = [*order, MISSING_METADATA], _UNKNOWN_COLOUR
            return ColumnValues(distinct[codes].astype(str), order, colours, f"{name} ({note})" if note else name)
    counts = pd.Series(labels).value_counts()
    order = sorted(counts.index, key=lambda c: (c == MISSING_METADATA, -counts[c], str(c)))
    return ColumnValues(labels, [str(c) for c in order], None, name)


def explore_figure(coords: np.ndarray, cells: pd.DataFrame, *, color: str = "cell_type", gene: str | None = None,
                   gene_values: np.ndarray | None = None, store: str = "attr", split: str | None = None,
                   colours: dict | None = None, groups: dict | None = None) -> go.Figure:
    """The atlas's UMAP (``coords``: n_cells x 2; ``cells``: the atlas's cells table, same order),
    one ``scattergl`` trace per category of ``color`` (``colours``: its atlas-wide colours; else
    figures.distinct_colours: every category its own), or, given ``gene`` and ``gene_values``
    (one per cell; NaN where the cell's study did not measure it), the gene's ``store`` value
    (viridis, highest on top; unmeasured cells a faint grey trace). ``split``: one panel per value
    of that column (at most MAX_PANELS). Every point's ``customdata`` is its cell position (a plain
    list: Dash reads a selection's customdata from the trace by index, which a typed array does
    not allow), so a lasso or box selection names cells. ``groups`` ({"a": positions, "b": positions}) outlines
    the chosen groups. ``layout.meta``: {"color", "gene", "store", "split", "panels", "n_cells"}."""
    n = len(cells)
    if coords is None or len(coords) != n or n == 0:
        return figures.empty_figure("This atlas has no UMAP (imported attributions carry no embedding)")
    coords = np.asarray(coords, dtype=np.float32)  # half the bytes of float64: the figure is most of the tab's wait
    split_values = column_values(cells, split) if split else None
    # an ordered quantity (an age) keeps its order; other panels go by name
    panels = [None] if not split else split_values.order if split_values.colours else sorted(split_values.order, key=str)
    if len(panels) > MAX_PANELS:
        return figures.empty_figure(f"{column_label(split)} has {len(panels)} values: split by a column of at most {MAX_PANELS}")
    n_cols = 1 if len(panels) == 1 else min(5, int(np.ceil(np.sqrt(len(panels)))))
    n_rows = int(np.ceil(len(panels) / n_cols))
    titles = [f"{p}" for p in panels] if split else None
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.06 if n_rows > 1 else 0.02) if split else go.Figure()
    split_labels = split_values.labels if split else None
    painted = gene is not None and gene_values is not None
    if painted:
        values = np.asarray(gene_values, dtype=float)
        finite = values[np.isfinite(values)]
        cmax = float(np.nanpercentile(finite, 99.5)) if finite.size else 1.0
        cmax = cmax if cmax > 0 else (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    else:
        shown = column_values(cells, color)
        labels, cats = shown.labels, shown.order
        palette = figures.distinct_colours(len(cats))
        colour_of = {c: (shown.colours or colours or {}).get(c) or (_UNKNOWN_COLOUR if c == MISSING_METADATA else palette[i])
                     for i, c in enumerate(cats)}
    in_legend = set()
    for k, panel in enumerate(panels):
        row, col = k // n_cols + 1, k % n_cols + 1
        in_panel = np.ones(n, dtype=bool) if panel is None else split_labels == panel
        where = {"row": row, "col": col} if split else {}
        if painted:
            idx = np.flatnonzero(in_panel)
            missing = idx[~np.isfinite(values[idx])]
            if missing.size:
                fig.add_trace(go.Scattergl(x=coords[missing, 0], y=coords[missing, 1], mode="markers", name="not measured",
                                           marker=dict(size=3, color="#e4e4e4"), customdata=missing.tolist(), showlegend=k == 0,
                                           legendgroup="nm", hovertemplate="not measured in this cell's study<extra></extra>"), **where)
            have = idx[np.isfinite(values[idx])]
            have = have[np.argsort(values[have], kind="stable")]
            fig.add_trace(go.Scattergl(
                x=coords[have, 0], y=coords[have, 1], mode="markers", name=gene, showlegend=False, customdata=have.tolist(),
                marker=dict(size=3 if split else 4, color=values[have].astype(np.float32), colorscale="Viridis", cmin=0, cmax=cmax, showscale=k == 0,
                            colorbar=dict(title=dict(text=f"{gene}<br>{GENE_STORES[store]}"))),
                # the value from the marker's colour: a text per cell doubled the figure's bytes
                hovertemplate=f"{gene} {GENE_STORES[store]} %{{marker.color:.3g}}<extra></extra>"), **where)
        else:
            for c in cats:
                idx = np.flatnonzero(in_panel & (labels == c))
                if idx.size == 0:
                    continue
                # one legend entry per category, whichever panel draws it first
                fig.add_trace(go.Scattergl(x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=str(c), legendgroup=str(c),
                                           showlegend=c not in in_legend, marker=dict(size=3 if split else 4, color=colour_of[c]),
                                           customdata=idx.tolist(), hovertemplate=f"{column_label(color)}: {c}<extra></extra>"), **where)
                in_legend.add(c)
    if groups:
        for key, colour in (("a", "#D55E00"), ("b", "#0072B2")):
            pos = np.asarray(groups.get(key) or [], dtype=np.int64)
            pos = pos[(pos >= 0) & (pos < n)]
            if pos.size and not split:
                fig.add_trace(go.Scattergl(x=coords[pos, 0], y=coords[pos, 1], mode="markers", name=f"group {key.upper()}",
                                           marker=dict(size=7, color="rgba(0,0,0,0)", line=dict(width=1.2, color=colour)),
                                           hoverinfo="skip", customdata=pos.tolist()))
    what = f"{gene} ({GENE_STORES[store]})" if painted else shown.what
    title = f"UMAP of all {n:,} cells coloured by {what}" + (f", split by {split_values.what}" if split else "")
    height = 560 if not split else max(420, 230 * n_rows + 90)
    fig.update_layout(title=dict(text=title, x=0, font_size=15), height=height, dragmode="lasso", template="plotly_white",
                      legend=dict(itemsizing="constant", title=dict(text=what), y=1, yanchor="top"),
                      margin=dict(l=10, r=10, t=60 if not split else 80, b=10),
                      meta={"color": None if painted else color, "gene": gene if painted else None, "store": store,
                            "split": split, "panels": [str(p) for p in panels] if split else [], "n_cells": n})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    if split:
        fig.update_annotations(font_size=12)
    else:
        fig.update_yaxes(scaleanchor="x")
    return fig


def selected_cells(selection: dict | None, n_cells: int) -> list[int]:
    """The cell positions of a lasso or box selection (``selectedData``: each point's customdata
    is its cell position), sorted, unique, within the atlas; [] when nothing was selected."""
    out = set()
    for point in (selection or {}).get("points") or []:
        value = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= int(value) < n_cells:
            out.add(int(value))
    return sorted(out)


def groups_note(groups: dict | None) -> str:
    """"group A: n cells · group B: m cells" and what to do next."""
    a, b = len((groups or {}).get("a") or []), len((groups or {}).get("b") or [])
    if not a and not b:
        return "Draw a lasso or a box around cells on the UMAP, then make them group A or group B."
    text = f"group A: {a:,} cells · group B: {b:,} cells"
    return text + (" · compare them: their genes, donors as the unit, in Genes in a cell type" if a and b else
                   " · now select the other group")


def cells_explorer(data: DashboardData) -> html.Div:
    """The explorer's components (filled by ``callbacks.cells``)."""
    columns = offered_columns(data)
    colour_options = [{"value": c, "label": column_label(c)} for c in columns]
    controls = dmc.Group([
        dmc.Select(id=ids.CELLS_COLOR, data=colour_options, value="cell_type" if "cell_type" in columns else columns[0],
                   label="Colour by", size="xs", w=210, allowDeselect=False,
                   description="a cell type, sample or donor column"),
        dmc.Select(id=ids.CELLS_GENE, data=[str(g) for g in data.atlas.genes], value=None, searchable=True, clearable=True, size="xs",
                   w=190, label="or paint a gene",
                   placeholder="type a gene", description="its value in every cell", limit=50),
        dmc.SegmentedControl(id=ids.CELLS_GENE_STORE, data=[{"value": k, "label": v} for k, v in GENE_STORES.items()
                                                            if k == "attr" or data.atlas.has_expression],
                             value="attr", size="xs"),
        dmc.Select(id=ids.CELLS_SPLIT, data=[{"value": c, "label": column_label(c)} for c in columns], value=None, clearable=True,
                   label="Split by", size="xs", w=190, placeholder="no split", description=f"a panel per value (≤ {MAX_PANELS})"),
    ], gap="sm", align="flex-end")
    compare = dmc.Group([
        dmc.Button("Selected cells → group A", id=ids.CELLS_SET_A, size="compact-sm", variant="light", color="orange"),
        dmc.Button("Selected cells → group B", id=ids.CELLS_SET_B, size="compact-sm", variant="light"),
        dmc.Button("Compare A vs B", id=ids.CELLS_COMPARE, size="compact-sm", disabled=True),
        dmc.Text(groups_note(None), id=ids.CELLS_GROUPS_NOTE, size="xs", c="dimmed"),
    ], gap="xs")
    graph = dcc.Graph(id=ids.CELLS_FIG, figure=figures.empty_figure("Choose a colour to draw every cell"),
                      config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": "sigatlas-cells"}},
                      style={"minHeight": "560px"})
    return html.Div([
        dmc.Text("Every cell of the atlas", fw=700, size="sm"),
        dmc.Text("Colour or split the cells by any column the studies carry, paint a gene, or pick two groups of cells with "
                 "the lasso or the box and compare their genes (each donor's sample counts once).", size="xs", c="dimmed"),
        *([dmc.Text("Includes SIMULATED studies: everything about their donors (disease, sex, age) is simulated too; colour "
                    "by 'SIMULATED or real' to tell them apart.", size="xs", c="orange", id=ids.CELLS_SIMULATED_NOTE)]
          if data.atlas.has_simulated else []),
        controls, compare, html.Div(id=ids.CELLS_NOTE, className="note"), dcc.Store(id=ids.CELLS_GROUPS, data={"a": "", "b": ""}),
        dcc.Store(id=ids.CELLS_PICKED, data=""),
        graph,
    ], className="panel", id="cells-explorer")

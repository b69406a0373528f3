"""The Genes tab's figures: the signature's genes by group (disease, cell type or study) as a
heatmap or a dot plot, rows and columns clustered or by score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import _figure, _is_empty, empty_figure

__all__ = ["NOT_MEASURED_NOTE", "dotplot_figure", "heatmap_figure"]

_ORDERS = ("cluster", "score")


# -- genes x groups ----------------------------------------------------------------------------

def _score_order(table: pd.DataFrame, axis: int) -> list:
    means = table.mean(axis=axis, skipna=True).fillna(-np.inf)
    return list(means.sort_values(ascending=False, kind="stable").index)


def _cluster_order(table: pd.DataFrame) -> list:
    """Row labels in hierarchical-clustering leaf order (average linkage, Euclidean, optimal leaf
    ordering); fewer than 3 rows cannot be clustered meaningfully and keep their score order."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    if len(table) < 3:
        return _score_order(table, axis=1)
    x = np.nan_to_num(table.to_numpy(dtype=float))
    d = pdist(x)
    leaves = leaves_list(optimal_leaf_ordering(linkage(d, method="average"), d))
    rows = list(table.index[leaves])
    # the tree's left-right orientation is arbitrary: put the stronger end first
    if np.nanmean(x[leaves[0]]) < np.nanmean(x[leaves[-1]]):
        rows.reverse()
    return rows


def _order_table(table: pd.DataFrame, order: str) -> pd.DataFrame:
    """``table`` with rows and columns reordered: "cluster" (hierarchical clustering of both) or
    "score" (rows by overall mean, columns by column mean, highest first)."""
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {', '.join(_ORDERS)}, got '{order}'")
    if order == "score":
        return table.loc[_score_order(table, axis=1), _score_order(table, axis=0)]
    return table.loc[_cluster_order(table), _cluster_order(table.T)]


_GROUP_AXIS_PX = 620  # the narrowest plot width the group names must share (a 1280 px screen's figure)


def _group_angle(groups: list) -> int:
    """The group names' angle: upright when each fits its column (about 7.5 px per character),
    else -35 degrees, else (columns too narrow even for angled names) -90. Many short names
    (25 study ids) ran together upright, where only long names were angled before."""
    longest = max((len(str(g)) for g in groups), default=0)
    column = _GROUP_AXIS_PX / max(len(groups), 1)
    if len(groups) <= 4 and longest <= 10 or column >= 7.5 * longest + 10:
        return 0
    # angled names of neighbouring columns stand column * sin(35) apart: at least a line of text
    return -35 if column * 0.57 >= 16 else -90


def _top_axis_room(groups: list) -> int:
    """Pixels the group names and the axis title need above the plot (angled names: their
    height at their angle at about 8 px per character)."""
    longest = max((len(str(g)) for g in groups), default=0)
    angle = _group_angle(groups)
    return 46 + (0 if angle == 0 else int((0.58 if angle == -35 else 1.0) * 8 * longest))


def _group_axis(groups: list, group_label: str) -> dict:
    # on top: a long gene list scrolls, and the groups must stay named where the reading starts
    return dict(title=dict(text=group_label, standoff=6), side="top", tickangle=_group_angle(groups), automargin=True)


# white cells of a genes x groups view: no value, not a low one (issue 36 item 6: it had no legend)
NOT_MEASURED_NOTE = "white: the gene was not measured in this group (no study of it measured the gene)"


def _not_measured_key(values: np.ndarray) -> list[dict]:
    """The note under a heatmap saying what white means, when any cell is empty."""
    if not np.isnan(np.asarray(values, dtype=float)).any():
        return []
    return [dict(text=NOT_MEASURED_NOTE, xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="top", yshift=-8,
                 showarrow=False, font=dict(size=12, color="#555"))]


def heatmap_figure(table: pd.DataFrame, *, group_label: str = "disease", title: str = "", order: str = "cluster",
                   simulated: bool = False) -> go.Figure:
    """Genes (rows, top to bottom) x groups (columns) mean attribution, one ``heatmap`` trace
    (viridis). ``order``: "cluster" or "score" (see ``_order_table``). ``simulated`` adds an
    "includes SIMULATED data" note. ``layout.meta``: {"order", "genes", "groups"}."""
    if _is_empty(table):
        return empty_figure("No genes to show: none of the signature genes carries attribution in the selection")
    t = _order_table(table, order)
    heat = dict(
        type="heatmap", z=t.to_numpy(dtype=float), x=[str(c) for c in t.columns], y=[str(g) for g in t.index], colorscale="Viridis",
        colorbar=dict(title=dict(text="mean |IG x input|<br>attribution")),
        hovertemplate="%{y} in %{x}<br>mean attribution %{z:.3g}<extra></extra>",
    )
    key = _not_measured_key(t.to_numpy(dtype=float))
    return _figure([heat], title, max(380, 18 * len(t.index) + 220 + (30 if key else 0)), simulated=simulated, annotations=key,
                   xaxis=_group_axis(list(t.columns), group_label),
                   yaxis=dict(title="gene", autorange="reversed", tickfont=dict(size=12), automargin=True),
                   margin=dict(l=90, r=20, b=44 if key else 20, t_extra=_top_axis_room(list(t.columns))),
                   meta={"order": order, "genes": [str(g) for g in t.index], "groups": [str(c) for c in t.columns]})


def _size_key(max_size: float, percents=(25, 50, 100)) -> tuple[list[dict], list[dict]]:
    """A dot-size key above the plot, drawn as pixel-sized circles: legend-only traces would need
    fake data points on the category axes. Its (annotations, shapes)."""
    mid = -22  # px below the plot's bottom edge (the group names sit on top)
    annotations = [dict(text="dot size: gene non-zero in", xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="middle",
                        yshift=mid, showarrow=False, font=dict(size=13, color="#555"))]
    shapes = []
    offset = 200
    for p in percents:
        d = max_size * np.sqrt(p / 100)
        shapes.append(dict(type="circle", xref="paper", yref="paper", xsizemode="pixel", ysizemode="pixel", xanchor=0, yanchor=0,
                           x0=offset - d / 2, x1=offset + d / 2, y0=mid - d / 2, y1=mid + d / 2,
                           fillcolor="#777", line=dict(width=0), name=f"{p}%"))
        annotations.append(dict(text=f"{p}% of hit cells", xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="middle",
                                xshift=offset + max_size / 2 + 4, yshift=mid, showarrow=False, font=dict(size=13, color="#555")))
        offset += 150
    return annotations, shapes


def dotplot_figure(mean_table: pd.DataFrame, pct_table: pd.DataFrame, *, group_label: str, title: str = "",
                   order: str = "cluster", simulated: bool = False) -> go.Figure:
    """Genes x groups dot plot: one ``scatter`` trace whose marker colour is the mean attribution
    (viridis) and whose marker size (diameter, area proportional) is the % of the group's hit cells
    in which the gene is non-zero (no dot: the group has no hit cells); a size key of three circle
    shapes (25/50/100 %) above the plot. Rows and columns ordered as in ``heatmap_figure`` from
    ``mean_table``. ``layout.meta``: {"order", "genes", "groups", "max_size"} (``max_size``:
    diameter in px of a 100 % dot)."""
    if _is_empty(mean_table):
        return empty_figure("No genes to show: none of the signature genes carries attribution in the selection")
    t = _order_table(mean_table, order)
    genes, groups = [str(g) for g in t.index], [str(c) for c in t.columns]
    pct = (pct_table if pct_table is not None else pd.DataFrame()).reindex(index=t.index, columns=t.columns)
    max_size = 18.0
    mean = t.to_numpy(dtype=float).ravel()
    frac = pct.to_numpy(dtype=float).ravel()
    # area, not diameter, proportional to the percentage: the eye compares areas
    size = max_size * np.sqrt(np.clip(np.nan_to_num(frac), 0, 100) / 100)
    detail = ["no hit cells in this group" if np.isnan(f) else f"non-zero in {f:.0f}% of hit cells" for f in frac]
    dots = dict(
        type="scatter", x=[g for _ in genes for g in groups], y=[g for g in genes for _ in groups], mode="markers", name="genes",
        showlegend=False, cliponaxis=False,
        marker=dict(size=size, sizemode="diameter", color=mean, colorscale="Viridis", line=dict(width=0.5, color="#666"),
                    colorbar=dict(title=dict(text="mean |IG x input|<br>attribution"))),
        customdata=detail, hovertemplate="%{y} in %{x}<br>mean attribution %{marker.color:.3g}<br>%{customdata}<extra></extra>",
    )
    annotations, shapes = _size_key(max_size)
    return _figure([dots], title, max(400, 22 * len(genes) + 200), simulated=simulated, annotations=annotations, shapes=shapes,
                   # explicit ranges: autorange pads category axes for the marker sizes, leaving empty rows
                   xaxis=_group_axis(groups, group_label) | dict(categoryorder="array", categoryarray=groups,
                                                                 range=[-0.5, len(groups) - 0.5]),
                   yaxis=dict(title="gene", categoryorder="array", categoryarray=genes, range=[len(genes) - 0.5, -0.5],
                              tickfont=dict(size=12), automargin=True),
                   margin=dict(l=90, r=20, b=50, t_extra=_top_axis_room(groups)),
                   meta={"order": order, "genes": genes, "groups": groups, "max_size": max_size})

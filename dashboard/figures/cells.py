"""The Cells tab's figure: the UMAP of the atlas's cells, coloured by score or by a label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import _OTHER, _category_colours, _figure, empty_figure, subsample_indices

__all__ = ["umap_figure"]

_UNSELECTED = "#e4e4e4"  # cells outside the selection: faint context only


# -- UMAP --------------------------------------------------------------------------------------

_LEGEND_TITLES = {"cell_type": "cell type (annotated)", "cell_type_predicted": "cell type (predicted)"}


def _label_lines(hover: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Per cell, the hover lines that say which cell-type labels it carries: the study's own label
    where the annotated term differs from it, and the predicted cell type with its confidence."""
    out = np.full(rows.size, "", dtype=object)
    if "cell_type_original" in hover.columns and "cell_type" in hover.columns:
        own = np.asarray(hover["cell_type_original"])[rows].astype(str)
        annotated = np.asarray(hover["cell_type"])[rows].astype(str)
        out = np.where(own != annotated, "<br>study's label: " + pd.Series(own).to_numpy(dtype=object), out)
    if "cell_type_predicted" in hover.columns:
        predicted = pd.Series(np.asarray(hover["cell_type_predicted"])[rows].astype(str))
        line = "<br>predicted: " + predicted.where(predicted != "", "none")
        if "cell_type_prediction_confidence" in hover.columns:
            conf = pd.Series(np.asarray(hover["cell_type_prediction_confidence"], dtype=float)[rows])
            line = line + conf.map(lambda c: f" (confidence {c:.2f})" if np.isfinite(c) else "")
        out = out + line.to_numpy(dtype=object)
    return out


def umap_figure(coords: np.ndarray, values: np.ndarray, hover: pd.DataFrame, selection: np.ndarray, *, color_by: str = "score",
                max_points: int = 100_000, seed: int = 0, title: str = "", simulated: bool = False,
                colours: dict | None = None) -> go.Figure:
    """WebGL (``scattergl``) UMAP; cells outside ``selection`` are one grey trace drawn first.

    ``color_by="score"``: selected cells in one trace coloured by ``values`` (viridis, highest on
    top). Otherwise a categorical column of ``hover`` ("cell_type", "cell_type_predicted",
    "disease", "study"): one trace per category of selected cells, the largest first; categories
    beyond the palette share a grey "other" trace. Above ``max_points`` cells a seeded random
    subsample is drawn. Hover: study, sample, cell type (annotated), disease, score, "SIMULATED" for
    simulated cells and, where ``hover`` has them, the study's own cell-type label
    (``cell_type_original``, when it differs) and the predicted cell type with its confidence
    (``cell_type_predicted``, ``cell_type_prediction_confidence``). ``layout.meta``: {"shown": n,
    "total": N, "color_by": color_by, "simulated": any simulated cell shown}. ``simulated``: the
    title says the atlas includes SIMULATED data.
    """
    n = 0 if coords is None else len(coords)
    if n == 0:
        return empty_figure("No cells to draw: the atlas has no UMAP coordinates")
    if color_by != "score" and color_by not in hover.columns:
        raise ValueError(f"color_by must be 'score' or a column of hover ({', '.join(map(str, hover.columns))}), got '{color_by}'")
    coords = np.asarray(coords)
    values = np.asarray(values, dtype=float)
    idx = subsample_indices(n, max_points, seed)
    sel = np.asarray(selection, dtype=bool)[idx] & np.isfinite(values[idx])
    traces = []
    other = idx[~sel]
    if other.size:
        traces.append(dict(type="scattergl", x=coords[other, 0], y=coords[other, 1], mode="markers", name="not selected",
                           marker=dict(size=3, color=_UNSELECTED), hoverinfo="skip", showlegend=color_by != "score"))
    chosen = idx[sel]
    has_sim = simulated
    simulated = np.asarray(hover["simulated"], dtype=bool)[chosen] if "simulated" in hover.columns else np.zeros(chosen.size, bool)

    def column(name: str) -> np.ndarray:
        return np.asarray(hover[name])[chosen].astype(str) if name in hover.columns else np.full(chosen.size, "")

    custom = np.empty((chosen.size, 7), dtype=object)
    for j, name in enumerate(("study", "sample", "cell_type", "disease")):
        custom[:, j] = column(name)
    custom[:, 4] = values[chosen]
    custom[:, 5] = np.where(simulated, "<br><b>SIMULATED</b>", "")
    custom[:, 6] = _label_lines(hover, chosen)
    template = ("<b>%{customdata[2]}</b> · %{customdata[3]}%{customdata[6]}<br>study %{customdata[0]} · sample %{customdata[1]}<br>"
                "score %{customdata[4]:.3f}%{customdata[5]}<extra></extra>")
    if color_by == "score":
        # draw high scores last so they sit on top
        o = np.argsort(values[chosen], kind="stable")
        traces.append(dict(
            type="scattergl", x=coords[chosen[o], 0], y=coords[chosen[o], 1], mode="markers", name="selected cells",
            customdata=custom[o],
            marker=dict(size=4, color=values[chosen[o]], colorscale="Viridis", showscale=True,
                        colorbar=dict(title=dict(text="signature<br>score"))),
            hovertemplate=template, showlegend=False,
        ))
    else:
        labels = column(color_by)
        cats, by_cat = _category_colours(labels, colours)
        named = [c for c in cats if by_cat[c] != _OTHER]
        rest = [c for c in cats if by_cat[c] == _OTHER]
        groups = [(c, labels == c, by_cat[c]) for c in named]
        if rest:
            groups.append((f"other ({len(rest)} smaller group{'s' if len(rest) > 1 else ''})", np.isin(labels, rest), _OTHER))
        # largest first: small categories are drawn last and stay visible
        for name, mask, colour in groups:
            traces.append(dict(type="scattergl", x=coords[chosen[mask], 0], y=coords[chosen[mask], 1], mode="markers", name=name,
                               marker=dict(size=4, color=colour), customdata=custom[mask], hovertemplate=template))
    shown = f"{idx.size:,} of {n:,} cells shown" + (" (random subsample)" if idx.size < n else "")
    annotations = [dict(text=shown, xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="bottom", showarrow=False,
                        font=dict(size=13, color="#555"), bgcolor="rgba(255,255,255,0.7)")]
    if simulated.any():
        annotations.append(dict(text="hover marks SIMULATED cells", xref="paper", yref="paper", x=1, y=0, xanchor="right",
                                yanchor="bottom", showarrow=False, font=dict(size=13, color="#D55E00"),
                                bgcolor="rgba(255,255,255,0.7)"))
    return _figure(traces, title, 540, simulated=has_sim, annotations=annotations, showlegend=color_by != "score",
                 legend=dict(itemsizing="constant", title=dict(text=_LEGEND_TITLES.get(color_by, color_by.replace("_", " "))), y=1,
                             yanchor="top"),
                 xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"), margin=dict(l=10, r=10, b=10),
                   meta={"shown": int(idx.size), "total": int(n), "color_by": color_by, "simulated": bool(simulated.any())})

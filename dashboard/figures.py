"""Pure figure functions: data in, ``go.Figure`` out. Tested on ``fig.to_dict()``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["PALETTE", "disease_ranking_figure", "empty_figure", "heatmap_figure", "umap_figure"]

# Okabe-Ito: colour-blind-safe categorical palette
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
_FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#555"), xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, template="plotly_white", height=320, font=_FONT,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def _wrap(text: str, width: int = 14) -> str:
    """Break a long axis label at spaces so neighbouring labels do not overlap."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def disease_ranking_figure(samples: pd.DataFrame, ranking: pd.DataFrame, *, base_rate: float | None, title: str) -> go.Figure:
    """Box + one point per sample of per-sample hit %, diseases in ranking order.

    Points of simulated studies are open circles; the x labels carry sample and study counts;
    a dashed line marks the base rate (100 - percentile)."""
    if ranking.empty:
        return empty_figure("No disease passes cell_min / samp_min: lower them or widen the cell types")
    order = list(ranking["group"])
    labels = {
        r.group: f"{_wrap(r.group)}<br><sub>{r.n_samples} samples · {r.n_studies} studies</sub>" for r in ranking.itertuples()
    }
    fig = go.Figure()
    for i, group in enumerate(order):
        s = samples[samples["disease"] == group]
        x = [labels[group]] * len(s)
        fig.add_trace(
            go.Box(
                x=x, y=s["hit_pct"], name=group, boxpoints=False, marker_color=PALETTE[i % len(PALETTE)],
                line_width=1.5, fillcolor="rgba(0,0,0,0)", showlegend=False, hoverinfo="skip",
            )
        )
        for simulated, symbol in ((False, "circle"), (True, "circle-open")):
            part = s[s["simulated"] == simulated]
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[labels[group]] * len(part), y=part["hit_pct"], mode="markers", showlegend=False,
                    marker=dict(color=PALETTE[i % len(PALETTE)], symbol=symbol, size=8, line_width=1.5),
                    customdata=np.stack([part["study"], part["sample"], part["n_cells"], part["n_hits"],
                                         np.where(part["simulated"], "SIMULATED", "real")], axis=1),
                    hovertemplate="%{customdata[1]} (%{customdata[0]}, %{customdata[4]})<br>"
                    "%{y:.1f}% hits: %{customdata[3]} of %{customdata[2]} cells<extra></extra>",
                    name=f"{group} samples",
                )
            )
    if base_rate is not None:
        fig.add_hline(y=base_rate, line_dash="dash", line_color="#777", annotation_text=f"base rate {base_rate:g}%",
                      annotation_position="top right")
    fig.update_layout(
        title=dict(text=title, x=0, font_size=15), template="plotly_white", font=_FONT, height=420,
        yaxis_title="hit % per sample", xaxis=dict(categoryorder="array", categoryarray=[labels[g] for g in order], tickangle=0),
        margin=dict(l=60, r=20, t=70, b=110), boxgap=0.5,
    )
    return fig


def umap_figure(coords: np.ndarray, values: np.ndarray, hover: pd.DataFrame, selection: np.ndarray, *, max_points: int = 60_000,
                title: str = "", seed: int = 0) -> go.Figure:
    """WebGL UMAP coloured by ``values`` for selected cells, grey for the rest.

    Above ``max_points`` cells a fixed random subsample is drawn; the title says n of N."""
    n = len(coords)
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    sel = selection[idx]
    fig = go.Figure()
    other = idx[~sel]
    if other.size:
        fig.add_trace(go.Scattergl(x=coords[other, 0], y=coords[other, 1], mode="markers", name="not selected",
                                   marker=dict(size=3, color="#d9d9d9"), hoverinfo="skip"))
    chosen = idx[sel]
    # draw high scores last so they sit on top
    chosen = chosen[np.argsort(values[chosen], kind="stable")]
    text = (hover["study"].astype(str).to_numpy()[chosen] + " · " + hover["sample"].astype(str).to_numpy()[chosen] + "<br>"
            + hover["cell_type"].astype(str).to_numpy()[chosen] + " · " + hover["disease"].astype(str).to_numpy()[chosen]
            + np.where(hover["simulated"].to_numpy()[chosen], " · SIMULATED", ""))
    fig.add_trace(go.Scattergl(
        x=coords[chosen, 0], y=coords[chosen, 1], mode="markers", name="selected cells", text=text,
        marker=dict(size=4, color=values[chosen], colorscale="Viridis", showscale=True, colorbar=dict(title="score")),
        hovertemplate="%{text}<br>score %{marker.color:.3f}<extra></extra>",
    ))
    shown = f"{len(idx):,} of {n:,} cells" if len(idx) < n else f"{n:,} cells"
    fig.update_layout(title=dict(text=f"{title} <sub>({shown})</sub>", x=0, font_size=15), template="plotly_white", font=_FONT,
                      height=460, showlegend=False, xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def heatmap_figure(table: pd.DataFrame, *, group_label: str = "disease", title: str = "") -> go.Figure:
    """Genes (rows) x groups (columns) mean attribution; groups ordered by their column mean."""
    if table.empty or table.shape[1] == 0:
        return empty_figure("No genes to show")
    cols = table.mean(axis=0).sort_values(ascending=False).index
    t = table[cols]
    fig = go.Figure(go.Heatmap(
        z=t.to_numpy(), x=list(t.columns), y=list(t.index), colorscale="Viridis", colorbar=dict(title="mean<br>attribution"),
        hovertemplate="%{y} in %{x}: %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title, x=0, font_size=15), template="plotly_white", font=_FONT,
                      height=max(360, 16 * len(t.index) + 160), xaxis_title=group_label,
                      yaxis=dict(autorange="reversed", tickfont_size=11), margin=dict(l=90, r=20, t=50, b=120))
    return fig

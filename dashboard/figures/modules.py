"""The Modules tab's figure: the co-attribution heatmap of the signature's genes, with their
gene modules marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import _MODEBAR_PX, PRESENTER_PX, _figure, empty_figure

__all__ = ["NARROW_BLOCK", "PRESENTER_LABEL_PX", "coattribution_heatmap"]

NARROW_BLOCK = 0.35  # the modules heatmap: a block narrower than this share of the genes has its name on a line of its own
PRESENTER_LABEL_PX = PRESENTER_PX  # presenter mode: the gene names' and block names' type
_PRESENTER_LINE_PX = 26  # ... and the least room between two names drawn one above the other
_PRESENTER_PLOT_PX = 640  # ... and the tallest the heatmap's plot grows, so it stays whole on a 1920 x 1080 screen


# -- gene modules ------------------------------------------------------------------------------

def _module_block_order(modules: list[str]) -> list[int]:
    """Positions of one block's genes: the modules holding most of them first (ties by first
    appearance), genes in no module ("") last; the given order is kept within a module."""
    counts = pd.Series([m for m in modules if m]).value_counts(sort=False)
    first = {m: modules.index(m) for m in counts.index}
    rank = {m: r for r, m in enumerate(sorted(counts.index, key=lambda m: (-counts[m], first[m])))}
    return sorted(range(len(modules)), key=lambda i: (rank.get(modules[i], len(rank)), i))


def coattribution_heatmap(corr: np.ndarray, genes: list[str], n_signature: int, *, modules: list[str] | None = None,
                          title: str = "", simulated: bool = False, presenter: bool = False) -> go.Figure:
    """Gene x gene co-attribution correlation: one ``heatmap`` trace of ``corr`` (rows and
    columns aligned with ``genes``), whose first ``n_signature`` genes are the signature's and
    the rest co-attributing genes missing from it. Each block is ordered by module (``modules``:
    module name per gene, "" for none; see ``_module_block_order``); the signature block comes
    first (top, left). Diverging colours centred on r = 0, symmetric at the largest off-diagonal
    |r|; the diagonal (r = 1 by definition) is left blank. Dashed lines split the two blocks, whose
    names stand above the plot; tick labels read "GENE · M3". ``presenter``: names in
    PRESENTER_LABEL_PX type, the rows named (every k-th row when they would run into each other on
    a plot of at most _PRESENTER_PLOT_PX; the title says so), the columns by hover only.
    ``layout.meta``: {"genes" (drawn order), "modules" (drawn order), "n_signature", "split" (axis
    position of the split lines, or None when one block is empty), "named" (the rows named)}."""
    corr = np.asarray(corr, dtype=float)
    genes = [str(g) for g in genes]
    n = len(genes)
    if corr.shape != (n, n):
        raise ValueError(f"corr must be {n} x {n} (one row and column per gene), got {' x '.join(map(str, corr.shape))}")
    if not 0 <= n_signature <= n:
        raise ValueError(f"n_signature must be between 0 and the {n} genes, got {n_signature}")
    modules = [str(m or "") for m in modules] if modules is not None else [""] * n
    if len(modules) != n:
        raise ValueError(f"modules must name one module per gene ({n}), got {len(modules)}")
    if n == 0:
        return empty_figure("No signature gene is among the module genes: nothing to correlate")
    sig = _module_block_order(modules[:n_signature])
    rest = [n_signature + i for i in _module_block_order(modules[n_signature:])]
    order = sig + rest
    z = corr[np.ix_(order, order)]
    np.fill_diagonal(z, np.nan)
    off = np.abs(z[np.isfinite(z)])
    zmax = float(off.max()) if off.size and off.max() > 0 else 1.0
    names = [genes[i] for i in order]
    mods = [modules[i] for i in order]
    ticks = [f"{g} · {m}" if m else g for g, m in zip(names, mods, strict=True)]
    small = n > 60
    heat = dict(
        type="heatmap", z=z, x=names, y=names, colorscale="RdBu_r", zmid=0, zmin=-zmax, zmax=zmax, hoverongaps=False,
        colorbar=dict(title=dict(text="co-attribution<br>r")),
        customdata=[[m] * n for m in mods],
        hovertemplate="%{y} (%{customdata}) x %{x}<br>r = %{z:.3f}<extra></extra>",
    )
    split = None
    shapes, annotations = [], []
    if 0 < n_signature < n:
        split = n_signature - 0.5
        line = dict(color="#000", width=2, dash="dash")
        shapes = [dict(type="line", x0=split, x1=split, y0=-0.5, y1=n - 0.5, xref="x", yref="y", line=line, name="split"),
                  dict(type="line", x0=-0.5, x1=n - 0.5, y0=split, y1=split, xref="x", yref="y", line=line, name="split")]
    # the block names meet at the split, each reading away from it, so a narrow block's name
    # never runs over the other's
    names_at = [(f"signature ({n_signature}) ◂", "right", -4, n_signature > 0, n_signature, (-0.5, "left")),
                (f"▸ missing from the signature ({n - n_signature})", "left", 4, n_signature < n, n - n_signature, (n - 0.5, "right"))]
    raised = 0
    block_px = PRESENTER_LABEL_PX if presenter else 13
    for label, anchor, shift, present, width, (end, end_anchor) in names_at:
        if not present:
            continue
        x = split if split is not None else (n - 1) / 2
        note = dict(text=f"<b>{label}</b>", x=x, xref="x", xanchor=anchor if split is not None else "center",
                    xshift=shift if split is not None else 0, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                    font=dict(size=block_px, color="#333"))
        if split is not None and width < NARROW_BLOCK * n:
            # a narrow block's name would run past the figure's edge from the split: a line above
            # the other name, held at the plot's own end
            raised = round(block_px * 1.5)
            note |= dict(x=end, xanchor=end_anchor, xshift=0, yshift=raised)
        annotations.append(note)
    axis = dict(categoryorder="array", categoryarray=names, tickmode="array", tickvals=names, ticktext=ticks,
                tickfont=dict(size=9 if small else 11), automargin=True, showgrid=False)
    # beyond 60 genes the column labels overlap: the rows carry the names (and hover)
    xaxis = axis | dict(tickangle=-90, showticklabels=not small)
    yaxis, named, height = axis, names, max(420, (10 if small else 15) * n + 220)
    if presenter:  # the rows named in large type, as many as have room; the columns by hover
        plot = min(max(_PRESENTER_LINE_PX * n, 300), _PRESENTER_PLOT_PX)
        step = -(-_PRESENTER_LINE_PX * n // plot)  # ceil: rows between two names
        named = names[::step]
        yaxis = axis | dict(tickvals=named, ticktext=ticks[::step], tickfont=dict(size=PRESENTER_LABEL_PX))
        xaxis = axis | dict(showticklabels=False)
        # the plot and its margins (_figure's top margin for a title's first line and the block names)
        height = plot + 90 + _MODEBAR_PX + 30 + 34 + raised
        if step > 1:
            title = f"{title}<br>every {_ordinal(step)} gene named (hover names each)" if title else f"every {_ordinal(step)} gene named"
    # explicit ranges: annotations placed on the x axis would otherwise widen its autorange
    return _figure([heat], title, height, simulated=simulated, annotations=annotations, shapes=shapes,
                   xaxis=xaxis | dict(range=[-0.5, n - 0.5]), yaxis=yaxis | dict(range=[n - 0.5, -0.5]),
                   margin=dict(l=90, r=20, b=90, t_extra=(34 if presenter else 26) + raised),  # the block names
                   meta={"genes": names, "modules": mods, "n_signature": int(n_signature), "split": split, "named": list(named)})


def _ordinal(k: int) -> str:
    """2 -> "2nd", 3 -> "3rd", 4 -> "4th", 11 -> "11th"."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"

"""The Diseases tab's figures: the disease ranking, the forest plot of one disease's per-study
effects, the robustness of the ranking over thresholds, a disease's driver genes, and the
attribution score against the expression score (per disease and per cell)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import (
    _ON_WHITE,
    _OTHER,
    PALETTE,
    _category_colours,
    _figure,
    _is_empty,
    _wrap,
    empty_figure,
    format_pq,
    format_value,
    subsample_indices,
)

__all__ = ["disease_ranking_figure", "driver_genes_figure", "forest_figure", "robustness_figure", "score_comparison_figure",
           "score_scatter_figure"]

_UPRIGHT_MAX = 12  # diseases whose names (with counts and p) stand upright, wrapped, under the ranking


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _colour_of(label: str, colours: dict | None, i: int) -> str:
    """``label``'s colour in ``colours`` (label_colours), else the ``i``-th of the palette."""
    if colours and str(label) in colours:
        return colours[str(label)]
    return _ON_WHITE[i % len(_ON_WHITE)]


# -- disease ranking ---------------------------------------------------------------------------

def disease_ranking_figure(samples: pd.DataFrame, ranking: pd.DataFrame, *, base_rate: float | None, title: str,
                           null: pd.DataFrame | None = None, p_floor: float | None = None, q_values: dict | None = None,
                           colours: dict | None = None,
                           band: tuple[float, float] = (2.5, 97.5)) -> go.Figure:
    """Box + one point per sample of per-sample hit %, diseases in ranking order.

    A disease whose ``evidence`` (compute's within-study level, when ``ranking`` has it) is
    no_within_study_reference gets a "⚠ no within-study reference" line under its name.

    Returns a figure with, per disease: a ``bar`` trace entry (the null band null_lo..null_hi of
    the mean sample hit %, when ``null`` is given), a ``box`` (its mean dashed), and ``scatter``
    points (filled: real studies, open circles: SIMULATED studies); a ``scatter`` of null medians.
    The x categories are "<disease><br><n> samples · <m> studies[<br>p = ...]"; the shown tick text
    wraps the name. A dashed line marks ``base_rate``, the hit % expected by chance (the share of
    all selected cells that are hits: QueryResult.chance_pct), named "chance level". ``layout.meta``:
    {"order": diseases, "p_values": {disease: p}, "colours": {disease: colour}}. ``q_values``: BH q per
    disease, printed beside its p (format_pq) so a label never calls significant what q does not.
    ``colours``: the atlas's colour per disease (label_colours), else by rank.
    """
    if _is_empty(ranking):
        return empty_figure("No disease passes cell_min / samp_min: lower them or widen the cell types")
    order = [str(g) for g in ranking["group"]]
    nulls = None
    if null is not None and len(null):
        nulls = null.assign(group=null["group"].astype(str)).drop_duplicates("group").set_index("group")
    # labels get narrower as diseases get more numerous, so they never run into each other: a
    # category gets about 780 px / n of the narrowest plot (1280 px screen), 6.8 px a character
    # at 12 px; beyond _UPRIGHT_MAX diseases the names stand at an angle, alone
    upright = len(order) <= _UPRIGHT_MAX
    width = int(np.clip(780 / max(len(order), 1) / 6.8 - 1, 7, 24))
    keys, ticks, p_values = {}, {}, {}
    for r, group in zip(ranking.itertuples(), order, strict=True):
        n_samples, n_studies = _plural(int(r.n_samples), "sample", "samples"), _plural(int(r.n_studies), "study", "studies")
        counts = f"{n_samples} · {n_studies}"
        p_line = ""
        if nulls is not None and group in nulls.index:
            p = float(nulls.at[group, "p_value"])
            p_values[group] = p
            q = (q_values or {}).get(group, (q_values or {}).get(r.group))
            p_line = format_pq(p, q, p_floor)
            # under the name, p and q a line each: side by side they ran into the neighbours' at 1280 px
            p_tick = "<br>".join(f"<b>{part}</b>" for part in format_pq(p, q, p_floor, sep="\n").split("\n"))
        keys[group] = f"{group}<br>{counts}" + (f"<br>{p_line}" if p_line else "")
        ticks[group] = (f"{_wrap(group, width)}<br>{n_samples}<br>{n_studies}" + (f"<br>{p_tick}" if p_line else "")
                        if upright else group)
        if getattr(r, "evidence", None) == "no_within_study_reference":
            # seen only in studies without reference donors: its hit % cannot be told apart from its study's batch
            # wrapped to the column's width, as the name is: a long line runs into the neighbours' labels
            mark = "<br>".join(f"<span style='color:#D55E00'>{line}</span>"
                               for line in _wrap("⚠ no within-study reference", width).split("<br>"))
            ticks[group] += f"<br>{mark}" if upright else " ⚠"
    traces = []
    if nulls is not None:
        banded = [g for g in order if g in nulls.index]
        lo = nulls.loc[banded, "null_lo"].to_numpy(dtype=float)
        hi = nulls.loc[banded, "null_hi"].to_numpy(dtype=float)
        med = nulls.loc[banded, "null_median"].to_numpy(dtype=float)
        p_text = [format_pq(p_values[g], (q_values or {}).get(g), p_floor) for g in banded]
        share = band[1] - band[0]
        # a bar trace sits in plotly's bar layer, under boxes and points: the band stays behind
        traces.append(dict(
            type="bar", x=[keys[g] for g in banded], y=hi - lo, base=lo.tolist(), width=0.8,
            name=f"null band: central {share:g}% of random gene sets",
            marker=dict(color="rgba(110,110,110,0.22)", line=dict(width=0)), showlegend=True,
            # a list of rows keeps numbers numeric next to the text (np.stack would make all strings)
            customdata=[[float(a), float(b), float(c), t] for a, b, c, t in zip(lo, hi, med, p_text, strict=True)],
            hovertemplate=(f"null {band[0]:g}-{band[1]:g} percentile: %{{customdata[0]:.1f}}-%{{customdata[1]:.1f}}%<br>"
                           "null median %{customdata[2]:.1f}% · %{customdata[3]}<extra>matched random gene sets</extra>"),
        ))
        traces.append(dict(
            type="scatter", x=[keys[g] for g in banded], y=med, mode="markers", name="null median",
            marker=dict(symbol="line-ew", size=34, color="#444", line=dict(width=2, color="#444")),
            hovertemplate="null median %{y:.1f}%<extra></extra>",
        ))
    shown_colours = {}
    for i, group in enumerate(order):
        colour = shown_colours[group] = _colour_of(group, colours, i)
        s = samples[samples["disease"].astype(str) == group]
        traces.append(dict(
            type="box", x=[keys[group]] * len(s), y=s["hit_pct"], name=group, boxpoints=False, boxmean=True,
            marker=dict(color=colour), line=dict(width=1.5), fillcolor="rgba(0,0,0,0)", showlegend=False, hoverinfo="skip",
        ))
        for simulated, symbol in ((False, "circle"), (True, "circle-open")):
            part = s[s["simulated"].astype(bool) == simulated]
            if part.empty:
                continue
            traces.append(dict(
                type="scatter", x=[keys[group]] * len(part), y=part["hit_pct"], mode="markers", showlegend=False,
                marker=dict(color=colour, symbol=symbol, size=9, line=dict(width=1.8)),
                customdata=np.stack([part["study"], part["sample"], part["n_cells"], part["n_hits"],
                                     np.where(part["simulated"].astype(bool), "SIMULATED", "real")], axis=1),
                hovertemplate="%{customdata[1]} (%{customdata[0]}, %{customdata[4]})<br>"
                "%{y:.1f}% hits: %{customdata[3]} of %{customdata[2]} cells<extra></extra>",
                name=f"{group} samples",
            ))
    # legend-only entries: the per-disease traces are coloured by disease, the key must not be
    has_sim = bool(samples["simulated"].astype(bool).any()) if len(samples) else False
    has_real = bool((~samples["simulated"].astype(bool)).any()) if len(samples) else False
    for present, symbol, name in ((has_real, "circle", "sample (real study)"),
                                  (has_sim, "circle-open", "sample (SIMULATED study)")):
        if present:
            traces.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=name, showlegend=True, hoverinfo="skip",
                               marker=dict(symbol=symbol, color="#555", size=9, line=dict(width=1.8))))
    shapes, annotations = [], []
    if base_rate is not None:  # a dashed line across the plot, named at its right end
        shapes.append(dict(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=base_rate, y1=base_rate,
                           line=dict(dash="dash", color="#777")))
        annotations.append(dict(text=f"chance level {base_rate:.3g}%", showarrow=False, xref="x domain", x=1, xanchor="right",
                                yref="y", y=base_rate, yanchor="bottom"))
    if upright:
        n_lines = max(t.count("<br>") for t in ticks.values()) + 1
        labels_px = 16 * n_lines
    else:  # names at -45 degrees: their height is about 0.7 of their length
        labels_px = int(0.7 * 7.5 * max(len(g) for g in order)) + 16
    bottom = 20 + labels_px + 50  # tick labels, then the legend row under them
    return _figure(
        traces, title, 380 + bottom, shapes=shapes, annotations=annotations,
        yaxis=dict(title="hit % per sample", rangemode="tozero"),
        xaxis=dict(categoryorder="array", categoryarray=[keys[g] for g in order], tickmode="array", tickfont=dict(size=12),
                   tickvals=[keys[g] for g in order], ticktext=[ticks[g] for g in order], tickangle=0 if upright else -45),
        legend=dict(orientation="h", yref="container", y=0.01, yanchor="bottom", x=0, xanchor="left"),
        margin=dict(l=70, r=20, b=bottom), boxgap=0.5, boxmode="overlay", barmode="overlay",
        meta={"order": order, "p_values": p_values, "colours": shown_colours},
    )


# -- evidence ----------------------------------------------------------------------------------

def driver_genes_figure(gene_shares: pd.DataFrame, group: str, *, top: int = 15, title: str = "",
                        simulated: bool = False) -> go.Figure:
    """Horizontal ``bar`` trace of the ``top`` genes' share (%) of ``group``'s summed score, the
    largest at the top, each bar labelled with its %. ``layout.meta``: {"group", "genes",
    "rest_pct"} (``rest_pct``: the share carried by the genes not shown)."""
    if _is_empty(gene_shares) or group not in gene_shares.columns:
        return empty_figure(f"No driver genes for '{group}': it is not among the ranked groups")
    s = gene_shares[group].astype(float).dropna()
    if s.empty or s.sum() <= 0:
        return empty_figure(f"No signature gene carries attribution in the cells of '{group}'")
    s = s.sort_values(ascending=False, kind="stable")
    shown = s.iloc[: max(int(top), 1)]
    rest = float(max(s.sum() - shown.sum(), 0.0))
    bars = dict(
        type="bar", x=shown.to_numpy(), y=[str(g) for g in shown.index], orientation="h", marker=dict(color=PALETTE[0]),
        text=[f"{v:.1f}%" for v in shown], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.1f}% of the summed score<extra></extra>",
    )
    note = f"top {len(shown)} of {len(s)} genes · the other genes carry {format_value(rest, 'pct')}%"
    return _figure([bars], f"{title}<br><sub>{note}</sub>", max(320, 26 * len(shown) + 160), simulated=simulated,
                   xaxis=dict(title="share of the summed score (%)", rangemode="tozero", range=[0, float(shown.max()) * 1.18]),
                   yaxis=dict(autorange="reversed", automargin=True), margin=dict(l=90, r=30, b=60),
                   meta={"group": group, "genes": [str(g) for g in shown.index], "rest_pct": rest})


def _spread(y: np.ndarray, gap: float, floor: float = 0.0) -> np.ndarray:
    """Label positions at least ``gap`` apart and not below ``floor``, each as close to its line's
    end as allowed (crowded labels stack upwards: below the floor they would stretch the axis)."""
    o = np.argsort(y, kind="stable")
    out = np.maximum(y[o].astype(float), floor)
    for i in range(1, out.size):
        out[i] = max(out[i], out[i - 1] + gap)
    res = np.empty_like(out)
    res[o] = out
    return res


def robustness_figure(thresholds: pd.DataFrame, *, highlight: str | None = None, title: str = "",
                      simulated: bool = False, chance: pd.Series | None = None, colours: dict | None = None) -> go.Figure:
    """Mean sample hit % per disease across hit thresholds (``Evidence.thresholds``: group x
    percentile). One ``scatter`` line per disease (highest first), a dashed grey line at the
    chance level, named "chance" at its right end (``chance``: percentile -> the share of all
    selected cells that are hits there, ``Evidence.chance``; without it 100 - percentile, which
    ties at the cut-off make too high), and each disease's name at its line's right end;
    ``highlight`` is drawn bold and the others faded; ``colours``: the atlas's colour per disease
    (label_colours). Disease lines are solid; a disease that shares its colour with one drawn
    before it is dotted, and says so in its hover. ``layout.meta``: {"order", "percentiles",
    "highlight", "chance", "colours"}."""
    if _is_empty(thresholds) or not np.isfinite(thresholds.to_numpy(dtype=float)).any():
        return empty_figure("No disease is ranked at any hit threshold: lower cell_min / samp_min")
    t = thresholds[sorted(thresholds.columns, key=float)]
    t = t.loc[[g for g in t.mean(axis=1, skipna=True).sort_values(ascending=False, kind="stable").index
               if t.loc[g].notna().any()]]
    pcts = np.array([float(c) for c in t.columns])
    base = 100 - pcts
    if chance is not None:
        by_pct = {float(k): float(v) for k, v in chance.items()}
        base = np.array([by_pct.get(p, 100 - p) for p in pcts])
    traces = [dict(type="scatter", x=pcts, y=base, mode="lines", name="chance level (share of all selected cells that are hits)",
                   line=dict(color="#999", dash="dash", width=1.5),
                   hovertemplate="chance level %{y:.1f}%: the share of all selected cells above this cut-off<extra></extra>")]
    hl = str(highlight) if highlight is not None and str(highlight) in map(str, t.index) else None
    ends, names, line_colours = [], [], []
    used: set[str] = set()
    for i, (group, row) in enumerate(t.iterrows()):
        y = row.to_numpy(dtype=float)
        colour = _colour_of(str(group), colours, i)
        # a colour already drawn (beyond the palette's colours) is dotted; the dashed line is the chance level alone
        dash = "dot" if colour in used else "solid"
        used.add(colour)
        bold = hl is not None and str(group) == hl
        faded = hl is not None and not bold
        traces.append(dict(
            type="scatter", x=pcts, y=y, mode="lines+markers", name=str(group), opacity=0.55 if faded else 1.0,
            line=dict(color=colour, dash=dash, width=5 if bold else 2), marker=dict(size=9 if bold else 6),
            hovertemplate=(f"{group}{' (dotted: its colour is also another disease’s)' if dash == 'dot' else ''}<br>"
                           "%{x:g}th percentile: %{y:.1f}% mean sample hits<extra></extra>"),
        ))
        last = np.flatnonzero(np.isfinite(y))[-1]
        ends.append(y[last])
        names.append(f"<b>{group}</b>" if bold else str(group))
        line_colours.append(colour)
    ends.append(float(base[-1]))
    names.append("chance (dashed)")
    line_colours.append("#777")
    ymax = float(np.nanmax(np.r_[t.to_numpy(dtype=float).ravel(), base]))
    height = max(460, 19 * len(names) + 200)
    plot_px = height - 160  # the plot's height once the title and the axis title have their margins
    # the names must sit a line apart in pixels: the axis reaches as high as the stacked names do
    top = ymax * 1.08
    for _ in range(3):
        placed = _spread(np.array(ends), 18 / plot_px * top)
        top = max(ymax, float(placed.max())) * 1.08
    annotations = [dict(text=name, x=1.01, xref="paper", y=y, yref="y", xanchor="left", showarrow=False, font=dict(size=13, color=colour))
                   for name, y, colour in zip(names, placed, line_colours, strict=True)]
    return _figure(traces, title, height, simulated=simulated, annotations=annotations, showlegend=False,
                   xaxis=dict(title="hit threshold (percentile of the selected cells' scores)", tickvals=pcts,
                              ticktext=[f"{p:g}th" for p in pcts]),
                   yaxis=dict(title="mean sample hit %", range=[0, top]), margin=dict(l=70, r=240, b=60),
                   meta={"order": [str(g) for g in t.index], "percentiles": pcts.tolist(), "highlight": hl,
                         "chance": base.tolist(), "colours": dict(zip(map(str, t.index), line_colours, strict=False))})


def score_comparison_figure(attr_ranking: pd.DataFrame, expr_ranking: pd.DataFrame | None, *, title: str = "") -> go.Figure:
    """Dumbbell per disease: mean sample hit % under attribution scores (circles) and expression
    scores (diamonds), joined by a grey line; diseases in attribution-rank order, expression-only
    ones after. Y labels carry "#attribution rank / #expression rank" ("–": not ranked). Markers
    are open for diseases whose samples are all SIMULATED. When the rankings carry the disease
    evidence (``effect``, ``effect_lo``, ``effect_hi``: compute.query._meta), a second panel on
    the right shows each score's pooled within-study effect (Hedges' g, 95% CI) on the same rows,
    so a disease where the two scores' effects disagree is seen beside its hit %. ``layout.meta``:
    {"order", "ranks": {disease: [attr_rank, expr_rank]} (None: not ranked), "effects": {disease:
    [attr g, expr g]} (None: no within-study effect)}."""
    if expr_ranking is None:
        return empty_figure("No expression ranking: the atlas stores no expression or the query did not ask for it")
    if _is_empty(attr_ranking) and _is_empty(expr_ranking):
        return empty_figure("No disease passes cell_min / samp_min under either score")
    tables = [x if not _is_empty(x) else None for x in (attr_ranking, expr_ranking)]
    indexed = [x.assign(group=x["group"].astype(str)).set_index("group") if x is not None else pd.DataFrame() for x in tables]
    a, e = indexed
    order = list(a.index) + [g for g in e.index if g not in a.index]

    def get(df, g, col):
        return df.at[g, col] if g in df.index else None

    ranks = {g: [None if get(a, g, "rank") is None else int(get(a, g, "rank")),
                 None if get(e, g, "rank") is None else int(get(e, g, "rank"))] for g in order}

    def all_simulated(g: str) -> bool:
        for df in (a, e):
            if g in df.index and "n_simulated_samples" in df.columns:
                return bool(df.at[g, "n_simulated_samples"] >= df.at[g, "n_samples"])
        return False

    sim = {g: all_simulated(g) for g in order}
    labels = {g: f"{g}  #{ranks[g][0] or '–'} / #{ranks[g][1] or '–'}" for g in order}
    xa = np.array([np.nan if get(a, g, "mean_hit_pct") is None else float(get(a, g, "mean_hit_pct")) for g in order])
    xe = np.array([np.nan if get(e, g, "mean_hit_pct") is None else float(get(e, g, "mean_hit_pct")) for g in order])
    lx, ly = [], []
    for g, va, ve in zip(order, xa, xe, strict=True):
        lx += [va, ve, None]
        ly += [labels[g], labels[g], None]
    traces = [dict(type="scatter", x=lx, y=ly, mode="lines", line=dict(color="#bbb", width=3), hoverinfo="skip", showlegend=False,
                   name="difference")]
    for name, xs, symbol, colour, which in (("attribution score", xa, "circle", PALETTE[0], 0),
                                            ("expression score (score_genes)", xe, "diamond", PALETTE[5], 1)):
        keep = ~np.isnan(xs)
        gs = [g for g, k in zip(order, keep, strict=True) if k]
        traces.append(dict(
            type="scatter", x=xs[keep], y=[labels[g] for g in gs], mode="markers", name=name,
            marker=dict(symbol=[f"{symbol}-open" if sim[g] else symbol for g in gs], size=13, color=colour, line=dict(width=2)),
            customdata=[[g, ranks[g][which], "all samples SIMULATED" if sim[g] else "real samples"] for g in gs],
            hovertemplate=f"<b>%{{customdata[0]}}</b><br>{name}: %{{x:.1f}}% (rank %{{customdata[1]}})<br>"
                          "%{customdata[2]}<extra></extra>",
        ))
    key = dict(text="rank: attribution / expression", xref="paper", yref="paper", x=0, y=1.0, xanchor="right",
               yanchor="bottom", showarrow=False, font=dict(size=12, color="#555"))
    sim_line = ("<br><span style='font-size:13px;color:#D55E00'><b>open markers: all samples SIMULATED</b></span>"
                if any(sim.values()) else "")
    effects = {g: [None if get(df, g, "effect") is None or not np.isfinite(float(get(df, g, "effect"))) else float(get(df, g, "effect"))
                   for df in (a, e)] for g in order} if "effect" in a.columns or "effect" in e.columns else {}
    panels = {}
    if any(v is not None for pair in effects.values() for v in pair):
        traces += _effect_traces(order, labels, (a, e), get)
        panels = dict(xaxis=dict(title="mean sample hit %", rangemode="tozero", domain=[0, 0.52]),
                      xaxis2=dict(title="pooled g (95% CI)", domain=[0.6, 1], zeroline=True,
                                  zerolinecolor="#999", anchor="y"))
    return _figure(traces, f"{title}{sim_line}", max(340, 32 * len(order) + 170), annotations=[key],
                   **(panels or dict(xaxis=dict(title="mean sample hit %", rangemode="tozero"))),
                   yaxis=dict(categoryorder="array", categoryarray=[labels[g] for g in order], autorange="reversed", automargin=True),
                   legend=dict(orientation="h", yref="container", y=0.01, yanchor="bottom", x=0),
                   margin=dict(l=40, r=20, b=100, t_extra=22), meta={"order": order, "ranks": ranks, "effects": effects})


def _effect_traces(order: list[str], labels: dict, tables: tuple[pd.DataFrame, pd.DataFrame], get) -> list[dict]:
    """The comparison figure's right panel: per score, each disease's pooled g with its 95% CI
    (x2), the attribution's a little above its row and the expression's a little below."""
    out = []
    for name, df, symbol, colour in (("attribution score", tables[0], "circle", PALETTE[0]),
                                     ("expression score (score_genes)", tables[1], "diamond", PALETTE[5])):
        rows = [g for g in order if get(df, g, "effect") is not None and np.isfinite(float(get(df, g, "effect")))]
        if not rows:
            continue
        g_ = np.array([float(get(df, g, "effect")) for g in rows])
        lo = np.array([float(get(df, g, "effect_lo")) if get(df, g, "effect_lo") is not None else np.nan for g in rows])
        hi = np.array([float(get(df, g, "effect_hi")) if get(df, g, "effect_hi") is not None else np.nan for g in rows])
        out.append(dict(
            type="scatter", x=g_, y=[labels[g] for g in rows], xaxis="x2", yaxis="y", mode="markers", name=f"{name}: effect",
            showlegend=False, marker=dict(symbol=symbol, size=11, color=colour),
            error_x=dict(type="data", symmetric=False, array=np.nan_to_num(hi - g_), arrayminus=np.nan_to_num(g_ - lo), color=colour,
                         thickness=1.5, width=4),
            customdata=[[g, lo_, hi_] for g, lo_, hi_ in zip(rows, lo, hi, strict=True)],
            hovertemplate=f"<b>%{{customdata[0]}}</b><br>{name}: g %{{x:.2f}} [%{{customdata[1]:.2f}}, %{{customdata[2]:.2f}}]"
                          "<extra></extra>",
        ))
    return out


def score_scatter_figure(attr_scores: np.ndarray, expr_scores: np.ndarray, labels: np.ndarray, *, max_points: int = 5_000,
                         seed: int = 0, title: str = "", simulated: np.ndarray | None = None,
                         colours: dict | None = None) -> go.Figure:
    """Per selected cell: attribution score (x) vs expression score (y), one ``scattergl`` trace
    per label (disease), the largest first; labels beyond the palette share a grey "other" trace.
    Cells with a non-finite score are dropped; above ``max_points`` a seeded random subsample is
    drawn (5,000 points show the relation; 20,000 made this figure most of a result's bytes).
    ``simulated`` (bool per cell) draws those cells as open circles marked SIMULATED in hover.
    A trace of one label names it in hover by the trace's name; only the grey "other" trace
    carries each point's label. ``layout.meta``: {"shown", "total", "spearman"} (Spearman rho
    over all finite cells)."""
    from scipy.stats import spearmanr

    x = np.asarray(attr_scores, dtype=float) if attr_scores is not None else np.zeros(0)
    y = np.asarray(expr_scores, dtype=float) if expr_scores is not None else np.zeros(0)
    if x.size == 0 or x.size != y.size:
        return empty_figure("No per-cell expression scores to compare (the atlas stores no expression)")
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if finite.size == 0:
        return empty_figure("No selected cell has both an attribution and an expression score")
    lab = np.asarray(labels).astype(str)
    sim = np.asarray(simulated, dtype=bool) if simulated is not None else np.zeros(x.size, dtype=bool)
    rho = float("nan")
    if finite.size >= 3 and np.ptp(x[finite]) > 0 and np.ptp(y[finite]) > 0:
        rho = float(spearmanr(x[finite], y[finite]).statistic)
    idx = finite[subsample_indices(finite.size, max_points, seed)]
    cats, by_cat = _category_colours(lab[idx], colours)
    named = [c for c in cats if by_cat[c] != _OTHER]
    rest = [c for c in cats if by_cat[c] == _OTHER]
    groups = [(c, lab[idx] == c, by_cat[c]) for c in named]
    if rest:
        groups.append((f"other ({len(rest)})", np.isin(lab[idx], rest), _OTHER))
    traces = []
    for name, mask, colour in groups:
        # scattergl draws no open symbol given per point, so real and simulated cells are two
        # traces under one legend entry
        first = True
        for flag, symbol, suffix in ((False, "circle", ""), (True, "circle-open", " · SIMULATED")):
            pts = idx[mask & (sim[idx] == flag)]
            if pts.size == 0:
                continue
            other = colour == _OTHER
            traces.append(dict(
                type="scattergl", x=x[pts], y=y[pts], mode="markers", name=name, legendgroup=name, showlegend=first,
                marker=dict(size=5, color=colour, opacity=0.8, symbol=symbol),
                customdata=lab[pts].tolist() if other else None,
                hovertemplate=(f"{'%{customdata}' if other else '%{fullData.name}'}{suffix}<br>"
                               "attribution %{x:.3f} · expression %{y:.3f}<extra></extra>"),
            ))
            first = False
    shown = f"{idx.size:,} of {finite.size:,} cells shown" + (" (random subsample)" if idx.size < finite.size else "")
    stat = f"Spearman ρ = {rho:.2f} over {finite.size:,} cells · " if np.isfinite(rho) else ""
    sim_line = ("<br><span style='font-size:13px;color:#D55E00'><b>open circles: SIMULATED cells</b></span>"
                if sim[idx].any() else "")
    n_rows = int(np.ceil(len(groups) / 4))  # a horizontal legend below: about four entries a row
    return _figure(traces, f"{title}<br><sub>{stat}{shown}</sub>{sim_line}", 520 + 22 * n_rows,
                   xaxis=dict(title="attribution score (mean |IG x input| of the signature genes)"),
                   yaxis=dict(title="expression score (score_genes)"),
                   legend=dict(itemsizing="constant", title=dict(text="disease"), orientation="h", yref="container", y=0.01,
                               yanchor="bottom", x=0),
                   margin=dict(l=70, r=20, b=70 + 22 * n_rows),
                   meta={"shown": int(idx.size), "total": int(finite.size), "spearman": rho if np.isfinite(rho) else None})


# -- within-study evidence ---------------------------------------------------------------------

def _label(text) -> str:
    """A data label (a disease, a study) for Plotly's text: its HTML-like tags escaped, so a
    label reads as written (Plotly turns the entities back into characters)."""
    import html

    return html.escape(str(text), quote=False)


def _num_text(v, digits: int = 2) -> str:
    return "–" if v is None or not np.isfinite(float(v)) else f"{float(v):.{digits}f}"


def _forest_rows(studies: pd.DataFrame) -> pd.DataFrame:
    """The included studies of one disease and measure, the heaviest first (ties by name)."""
    if _is_empty(studies):
        return pd.DataFrame(columns=["study", "g", "g_lo", "g_hi", "weight", "n_donors", "n_reference_donors"])
    rows = studies[studies["included"].astype(bool)].copy()
    rows["study"] = rows["study"].astype(str)
    return rows.sort_values(["weight", "study"], ascending=[False, True], kind="stable")


def forest_figure(studies: pd.DataFrame, pooled, *, disease: str, evidence: str, reference: str, measure: str = "hit %",
                  second: tuple[pd.DataFrame, object, str] | None = None, simulated: bool = False) -> go.Figure:
    """Forest plot of one disease's within-study effects (Hedges' g of its donors against the
    study's own ``reference`` donors). ``studies``: its rows of ``QueryResult.study_effects`` for
    one measure (g, g_lo, g_hi, weight, n_donors, n_reference_donors, included); ``pooled``: its
    row of ``QueryResult.diseases`` (effect, effect_lo, effect_hi, effect_p, tau2, i2, loo_lo,
    loo_hi, n_studies_with_reference). ``second``: (studies, pooled, name) of a second score
    (expression), drawn beside each row in another colour.

    Returns: one ``scatter`` of the studies (error bars: the 95% CI; marker size grows with the
    random-effects weight), a filled ``scatter`` diamond for the pooled estimate and its 95% CI
    (y = 0), the same for ``second``; a line at g = 0. The title carries ``evidence`` (in words),
    the pooled g and CI, and, with two or more studies, I^2, tau^2 and the leave-one-study-out
    range. ``layout.meta``: {"disease", "studies" (top to bottom), "weights", "pooled": [g, lo,
    hi], "i2", "tau2", "loo": [lo, hi]}."""
    rows = _forest_rows(studies)
    if rows.empty:
        return empty_figure(f"{disease}: {evidence}. No study gave a within-study effect to draw (each study's reason is "
                            "listed below the plot)")
    order = rows["study"].tolist()
    k = len(order)
    y_of = {sid: float(k - i) for i, sid in enumerate(order)}  # top to bottom; the pooled diamond at 0
    sets = [(rows, pooled, measure, PALETTE[0], "circle")]
    if second is not None:
        sets.append((_forest_rows(second[0]), second[1], second[2], PALETTE[5], "diamond"))
    shift = 0.14 if len(sets) > 1 else 0.0
    traces = []
    for j, (part, pool, name, colour, symbol) in enumerate(sets):
        off = shift if j == 0 else -shift
        part = part[part["study"].isin(y_of)]
        g = part["g"].to_numpy(dtype=float)
        w = part["weight"].to_numpy(dtype=float)
        w_max = np.nanmax(w) if np.isfinite(w).any() else 1.0
        sizes = 7 + 17 * np.sqrt(np.clip(np.nan_to_num(w / w_max), 0, 1))
        traces.append(dict(
            type="scatter", mode="markers", name=f"{name}: a study's g (95% CI; size: weight)",
            x=g.tolist(), y=[y_of[s] + off for s in part["study"]],
            error_x=dict(type="data", symmetric=False, array=(part["g_hi"].to_numpy(dtype=float) - g).tolist(),
                         arrayminus=(g - part["g_lo"].to_numpy(dtype=float)).tolist(), color=colour, thickness=1.8, width=4),
            marker=dict(color=colour, symbol=symbol, size=sizes.tolist(), line=dict(width=1, color="#333")),
            customdata=[[_label(s), float(a), float(b), float(c), int(d), int(e)] for s, a, b, c, d, e in zip(
                part["study"], part["g_lo"], part["g_hi"], np.nan_to_num(w), part["n_donors"], part["n_reference_donors"], strict=True)],
            hovertemplate=(f"<b>%{{customdata[0]}}</b> ({_label(name)})<br>g = %{{x:.2f}} [%{{customdata[1]:.2f}}, "
                           "%{customdata[2]:.2f}]<br>weight %{customdata[3]:.0%} · %{customdata[4]} disease / "
                           "%{customdata[5]} reference donors<extra></extra>"),
        ))
        m, lo, hi = (float(pool[c]) if pool is not None and c in pool else np.nan for c in ("effect", "effect_lo", "effect_hi"))
        if np.isfinite(m):
            h = 0.28 if len(sets) == 1 else 0.12
            traces.append(dict(
                type="scatter", mode="lines", fill="toself", name=f"{name}: pooled g (95% CI)",
                x=[lo, m, hi, m, lo], y=[off, off + h, off, off - h, off], line=dict(color=colour if j else "#222", width=1.5),
                fillcolor=colour, hoverinfo="text",
                text=f"pooled g = {m:.2f} [{lo:.2f}, {hi:.2f}] ({_label(name)})",
            ))
    p = pooled if pooled is not None else {}

    def val(col):
        return float(p[col]) if col in p and p[col] is not None else np.nan

    lines = [f"{_label(disease)}: {_label(evidence)}"]
    pooled_line = f"pooled g = {_num_text(val('effect'))} [{_num_text(val('effect_lo'))}, {_num_text(val('effect_hi'))}]"
    if np.isfinite(val("effect_p")):
        pooled_line += f" · p = {format_value(val('effect_p'), 'p')} (labels permuted within studies)"
    lines.append(f"<sub>{pooled_line}</sub>")
    if k >= 2:  # one study: no heterogeneity to judge
        lines.append(f"<sub>I² = {_num_text(100 * val('i2'), 0)}% · τ² = {_num_text(val('tau2'))} · leave one study out: "
                     f"{_num_text(val('loo_lo'))} to {_num_text(val('loo_hi'))}</sub>")
    lines.append(f"<sub>Hedges' g of per-donor {_label(measure)} against {_label(reference)} donors of the same study</sub>")
    title = "<br>".join(lines)
    ticks = [f"{_label(s)} ({int(r.n_donors)} vs {int(r.n_reference_donors)})" for s, r in zip(order, rows.itertuples(), strict=True)]
    xs = [v for t in traces for v in t["x"]]
    xs += [float(v) for v in rows["g_lo"]] + [float(v) for v in rows["g_hi"]]
    finite = [v for v in xs if v is not None and np.isfinite(v)] + [0.0]
    pad = 0.08 * (max(finite) - min(finite) or 1.0)
    return _figure(
        traces, title, max(300, 46 * (k + 1) + 150), simulated=simulated,
        shapes=[dict(type="line", xref="x", x0=0, x1=0, yref="paper", y0=0, y1=1, line=dict(color="#888", dash="dash"))],
        xaxis=dict(title=f"Hedges' g ({_label(disease)} − {_label(reference)} donors, in SDs)", zeroline=False,
                   range=[min(finite) - pad, max(finite) + pad]),
        yaxis=dict(tickmode="array", tickvals=[y_of[s] for s in order] + [0.0], ticktext=[*ticks, "<b>pooled</b>"],
                   range=[-0.7, k + 0.7], automargin=True, title="study (disease vs reference donors)"),
        legend=dict(orientation="h", yref="container", y=0.01, yanchor="bottom", x=0),
        margin=dict(l=60, r=20, b=80), showlegend=True,
        meta={"disease": str(disease), "studies": order, "weights": rows["weight"].astype(float).tolist(),
              "pooled": [val("effect"), val("effect_lo"), val("effect_hi")], "i2": val("i2"), "tau2": val("tau2"),
              "loo": [val("loo_lo"), val("loo_hi")]},
    )

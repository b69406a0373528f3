"""Pure figure functions: data in, ``go.Figure`` out. Tested on ``fig.to_dict()``.

Each figure is written as plain dicts (its traces, annotations, shapes and layout) and made a
``go.Figure`` once, by :func:`_figure`, which Plotly checks whole: building it trace by trace
(``add_trace``, ``update_layout``) checked and copied every property again at each step, most of
the time a result's views took to draw.

Conventions shared by every figure: Okabe-Ito ``PALETTE`` for categories, viridis for continuous
values, open markers or an explicit "SIMULATED" label wherever simulated data appears, and an
``empty_figure`` that says why whenever there is nothing to draw.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "GRID_FORMATS",
    "TEMPLATE",
    "PALETTE",
    "bh_q_values",
    "coattribution_heatmap",
    "disease_ranking_figure",
    "dotplot_figure",
    "driver_genes_figure",
    "empty_figure",
    "format_p",
    "format_q",
    "label_colours",
    "forest_figure",
    "format_value",
    "heatmap_figure",
    "robustness_figure",
    "score_comparison_figure",
    "score_scatter_figure",
    "subsample_indices",
    "umap_figure",
]

# Okabe-Ito: colour-blind-safe categorical palette
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# 14 px: still legible on a projector and at 1280x800 with the sidebar open
_FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=14)
# yellow vanishes as thin lines or small points on white: marks drawn on white use the rest
_ON_WHITE = [c for c in PALETTE if c != "#F0E442"]
# one colour per label for the whole atlas (label_colours): Okabe-Ito on white, then Paul Tol's
# muted and light schemes, 22 colours that stay apart on white
LABEL_PALETTE = [*_ON_WHITE, "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#117733", "#88CCEE", "#CC6677",
                 "#DDCC77", "#99DDFF", "#EE8866", "#BBCC33", "#994455", "#6699CC", "#997700"]
_UNSELECTED = "#e4e4e4"  # cells outside the selection: faint context only
# categories beyond the palette share one dark grey, far from the faint "not selected" cells
_OTHER = "#5a5a5a"
_ATTR_UNIT = "mean |IG x input| attribution"
_SIM_NOTE = "includes SIMULATED data"
_ORDERS = ("cluster", "score")
_UPRIGHT_MAX = 12  # diseases whose names (with counts and p) stand upright, wrapped, under the ranking


def _light_template() -> go.layout.Template:
    """Plotly's "plotly_white" as it applies to what these figures draw: its page layout and axes,
    and its defaults for bar, scatter, scattergl and heatmap traces; the 3D, polar, ternary, map
    and table parts left out. A template is copied into every figure and applied by the browser
    to each: the whole one made about 60% of the time to build a result's figures and half of an
    empty figure's bytes. The look is the same."""
    white = pio.templates["plotly_white"]
    layout = {key: value for key, value in white.layout.to_plotly_json().items()
              if key not in ("polar", "ternary", "scene", "geo", "mapbox")}
    return go.layout.Template(layout=layout, data={kind: white.data[kind] for kind in ("bar", "scatter", "scattergl", "heatmap")})


TEMPLATE = _light_template()
# Every figure of the dashboard uses TEMPLATE: as Plotly's default template it is applied to each new
# figure as it is (Plotly checks and copies a template passed to update_layout again, 4 ms a figure)
pio.templates.default = TEMPLATE


def empty_figure(message: str) -> go.Figure:
    """A blank figure whose only content is ``message`` (why there is nothing to draw)."""
    note = dict(text=message, showarrow=False, font=dict(size=15, color="#555"), xref="paper", yref="paper", x=0.5, y=0.5)
    return go.Figure({"data": [], "layout": dict(annotations=[note], xaxis=dict(visible=False), yaxis=dict(visible=False), height=320,
                                                 font=_FONT, margin=dict(l=10, r=10, t=30, b=10), meta={"empty": message})})


def _is_empty(table) -> bool:
    return table is None or len(table) == 0 or (isinstance(table, pd.DataFrame) and table.shape[1] == 0)


NARROW_BLOCK = 0.35  # the modules heatmap: a block narrower than this share of the genes has its name on a line of its own
_TITLE_CHARS = 78  # a title line's length that fits the narrowest figure (1280 px screen, sidebar open) at 16 px
_MODEBAR_PX = 34  # Plotly's toolbar sits in the top band of this height: titles start below it


def _title_text(title: str, simulated: bool = False) -> str:
    """``title`` broken into lines that fit (its <br> breaks kept), the "includes SIMULATED data"
    note as its last line when ``simulated``: a note in the title cannot sit on a subtitle,
    a legend or the plot."""
    lines = []
    for part in (title or "").split("<br>"):
        small = re.fullmatch(r"<(sub|sup)>(.*)</\1>", part)
        if small:  # smaller type: a line fits more characters
            tag = small.group(1)
            lines += [f"<{tag}>{line}</{tag}>" for line in _wrap(small.group(2), int(_TITLE_CHARS * 1.3)).split("<br>")]
        elif part.startswith("<"):
            lines.append(part)
        elif part:
            lines += _wrap(part, _TITLE_CHARS).split("<br>")
    if simulated:
        lines.append(f"<span style='font-size:13px;color:#D55E00'><b>{_SIM_NOTE}</b></span>")
    return "<br>".join(line for line in lines if line is not None)


def _figure(traces: list[dict], title: str, height: int, *, simulated: bool = False, annotations: list[dict] | None = None,
            shapes: list[dict] | None = None, **layout) -> go.Figure:
    """The figure of ``traces`` (dicts, each with its ``type``), ``annotations``, ``shapes`` and
    the ``layout`` properties, in the shared look: the title (wrapped, with the SIMULATED note
    when ``simulated``) sits in the top margin, which grows with its lines and leaves the toolbar
    its own band above it. Plotly checks it once, whole."""
    text = _title_text(title, simulated)
    n_lines = text.count("<br>") + 1 if text else 0
    margin = dict(layout.pop("margin", None) or {})
    top_extra = int(margin.pop("t_extra", 0))  # room the figure needs between the title and the plot (a key, top tick labels)
    margin["t"] = _MODEBAR_PX + 22 * n_lines + 8 + top_extra
    layout |= dict(title=dict(text=text, x=0, xref="container", xanchor="left", y=1, yref="container", yanchor="top",
                              pad=dict(t=_MODEBAR_PX, l=8), font=dict(size=16)),
                   font=_FONT, height=height + 22 * max(n_lines - 1, 0), margin=margin)
    if annotations:
        layout["annotations"] = annotations
    if shapes:
        layout["shapes"] = shapes
    return go.Figure({"data": traces, "layout": layout})


def _wrap_word(word: str, width: int) -> list[str]:
    """A word longer than ``width`` cut into hyphenated pieces, so a label never runs into its neighbour."""
    if len(word) <= width or width < 4:
        return [word]
    pieces = []
    while len(word) > width:
        pieces.append(word[: width - 1] + "-")
        word = word[width - 1:]
    return [*pieces, word]


def _wrap(text: str, width: int = 14) -> str:
    """Break a long axis label at spaces so neighbouring labels do not overlap."""
    lines, line = [], ""
    for word in (piece for w in text.split() for piece in _wrap_word(w, width)):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# how every number is shown, in one place: hit % with one decimal, p and q with two significant
# digits, counts with thousands separators; GRID_FORMATS says the same to AG Grid (d3-format)
_FORMATS = {"pct": "{:.1f}", "p": "{:.2g}", "q": "{:.2g}", "count": "{:,.0f}", "share": "{:.0%}"}
GRID_FORMATS = {"pct": "d3.format('.1f')", "p": "d3.format('.2~g')", "q": "d3.format('.2~g')", "count": "d3.format(',d')",
                "share": "d3.format('.0%')"}


def format_value(value, kind: str, floor: float | None = None) -> str:
    """``value`` as the dashboard shows numbers of ``kind``: "pct" (hit %: "38.5"), "p" and "q"
    (two significant digits: "0.044"; "≤ 0.001" at ``floor``, the smallest p the draws allow),
    "count" ("8,709") or "share" ("89%"); "–" for a missing value."""
    if kind not in _FORMATS:
        raise ValueError(f"kind must be one of {', '.join(_FORMATS)}, got '{kind}'")
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "–"
    if kind in ("p", "q") and floor is not None and value <= floor * (1 + 1e-9):
        return f"≤ {_FORMATS[kind].format(floor)}"
    return _FORMATS[kind].format(value)


def format_p(p: float, floor: float | None = None) -> str:
    """"p = 0.012", or "p ≤ 0.001" when ``p`` is the smallest value the number of draws allows."""
    if p is None or not np.isfinite(p):
        return "p n/a"
    text = format_value(p, "p", floor)
    return f"p {text}" if text.startswith("≤") else f"p = {text}"


def format_q(q: float | None, p: float | None = None, floor: float | None = None) -> str:
    """A q-value as format_value shows it ("0.044"), "≤ 0.0033" when its p is at the floor
    (an upper bound: no random set reached it, so the q made from it is one too)."""
    text = format_value(q, "q")
    at_floor = p is not None and floor is not None and np.isfinite(p) and p <= floor * (1 + 1e-9)
    return f"≤ {text}" if at_floor and text != "–" else text


def format_pq(p: float | None, q: float | None, floor: float | None = None, sep: str = " · ") -> str:
    """"p = 0.023 · q = 0.07": a p-value beside its BH q (joined by ``sep``), wherever
    significance is shown, so a label never calls significant what q does not ("p ≤ 0.001 ·
    q ≤ 0.0033" at the floor)."""
    text = format_p(p, floor)
    if q is None or not np.isfinite(q):
        return text
    qt = format_q(q, p, floor)
    return f"{text}{sep}q {qt}" if qt.startswith("≤") else f"{text}{sep}q = {qt}"


def bh_q_values(p_values) -> dict:
    """Benjamini-Hochberg q-values (the false discovery rate at which each group would be called)
    for ``p_values`` ({group: p}); groups with a missing p are left out. scipy's procedure, as
    compute's gene ranking uses."""
    from scipy.stats import false_discovery_control

    keys = [k for k, v in p_values.items() if v is not None and np.isfinite(v)]
    if not keys:
        return {}
    q = false_discovery_control(np.array([float(p_values[k]) for k in keys]), method="bh")
    return {k: float(v) for k, v in zip(keys, q, strict=True)}


def subsample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_points`` of ``n`` items: all of them, or a seeded random
    subsample (the same seed gives the same points, so redraws do not flicker)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def label_colours(vocabulary, extra=()) -> dict[str, str]:
    """One colour per label of ``vocabulary`` (an atlas's diseases, studies or cell types): the
    labels sorted, each given the next colour of LABEL_PALETTE, then those of ``extra`` (labels
    some queries use, such as disease groups) not among them, sorted, so a disease has the same
    colour in every figure of every query on that atlas. Beyond the palette's 22 colours they repeat."""
    labels = sorted(set(map(str, vocabulary)))
    labels += sorted(set(map(str, extra)) - set(labels))
    return {label: LABEL_PALETTE[i % len(LABEL_PALETTE)] for i, label in enumerate(labels)}


def _colour_of(label: str, colours: dict | None, i: int) -> str:
    """``label``'s colour in ``colours`` (label_colours), else the ``i``-th of the palette."""
    if colours and str(label) in colours:
        return colours[str(label)]
    return _ON_WHITE[i % len(_ON_WHITE)]


def _category_colours(labels: np.ndarray, fixed: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """(categories largest first, colour per category). With ``fixed`` (label_colours), each
    category has its atlas-wide colour; without, only as many categories as the palette has
    colours get one and the rest share a neutral grey so no two categories look alike."""
    counts = pd.Series(labels).value_counts(sort=False)
    # largest first, ties by name, so the colour assignment is stable across redraws
    cats = sorted(counts.index, key=lambda c: (-counts[c], str(c)))
    if fixed:
        return cats, {c: fixed.get(str(c), _OTHER) for c in cats}
    colours = {c: (_ON_WHITE[i] if i < len(_ON_WHITE) else _OTHER) for i, c in enumerate(cats)}
    return cats, colours


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
            groups.append((f"other ({len(rest)} smaller groups)", np.isin(labels, rest), _OTHER))
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


def _top_axis_room(groups: list) -> int:
    """Pixels the group names and the axis title need above the plot (angled names: their
    height at -35 degrees at about 8 px per character)."""
    longest = max((len(str(g)) for g in groups), default=0)
    crowded = len(groups) > 4 and longest > 10
    return 46 + (int(0.58 * 8 * longest) if crowded else 0)


def _group_axis(groups: list, group_label: str) -> dict:
    # angled labels only when they would otherwise collide
    crowded = len(groups) > 4 and max(len(str(g)) for g in groups) > 10
    # on top: a long gene list scrolls, and the groups must stay named where the reading starts
    return dict(title=dict(text=group_label, standoff=6), side="top", tickangle=-35 if crowded else 0, automargin=True)


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
    return _figure([heat], title, max(380, 18 * len(t.index) + 220), simulated=simulated,
                   xaxis=_group_axis(list(t.columns), group_label),
                   yaxis=dict(title="gene", autorange="reversed", tickfont=dict(size=12), automargin=True),
                   margin=dict(l=90, r=20, b=20, t_extra=_top_axis_room(list(t.columns))),
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


# -- gene modules ------------------------------------------------------------------------------

def _module_block_order(modules: list[str]) -> list[int]:
    """Positions of one block's genes: the modules holding most of them first (ties by first
    appearance), genes in no module ("") last; the given order is kept within a module."""
    counts = pd.Series([m for m in modules if m]).value_counts(sort=False)
    first = {m: modules.index(m) for m in counts.index}
    rank = {m: r for r, m in enumerate(sorted(counts.index, key=lambda m: (-counts[m], first[m])))}
    return sorted(range(len(modules)), key=lambda i: (rank.get(modules[i], len(rank)), i))


def coattribution_heatmap(corr: np.ndarray, genes: list[str], n_signature: int, *, modules: list[str] | None = None,
                          title: str = "", simulated: bool = False) -> go.Figure:
    """Gene x gene co-attribution correlation: one ``heatmap`` trace of ``corr`` (rows and
    columns aligned with ``genes``), whose first ``n_signature`` genes are the signature's and
    the rest co-attributing genes missing from it. Each block is ordered by module (``modules``:
    module name per gene, "" for none; see ``_module_block_order``); the signature block comes
    first (top, left). Diverging colours centred on r = 0, symmetric at the largest off-diagonal
    |r|; the diagonal (r = 1 by definition) is left blank. Dashed lines split the two blocks, whose
    names stand above the plot; tick labels read "GENE · M3". ``layout.meta``: {"genes" (drawn
    order), "modules" (drawn order), "n_signature", "split" (axis position of the split lines, or
    None when one block is empty)}."""
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
    for label, anchor, shift, present, width, (end, end_anchor) in names_at:
        if not present:
            continue
        x = split if split is not None else (n - 1) / 2
        note = dict(text=f"<b>{label}</b>", x=x, xref="x", xanchor=anchor if split is not None else "center",
                    xshift=shift if split is not None else 0, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                    font=dict(size=13, color="#333"))
        if split is not None and width < NARROW_BLOCK * n:
            # a narrow block's name would run past the figure's edge from the split: a line above
            # the other name, held at the plot's own end
            note |= dict(x=end, xanchor=end_anchor, xshift=0, yshift=20)
            raised = 20
        annotations.append(note)
    axis = dict(categoryorder="array", categoryarray=names, tickmode="array", tickvals=names, ticktext=ticks,
                tickfont=dict(size=9 if small else 11), automargin=True, showgrid=False)
    return _figure([heat], title, max(420, (10 if small else 15) * n + 220), simulated=simulated, annotations=annotations, shapes=shapes,
                   # beyond 60 genes the column labels overlap: the rows carry the names (and hover)
                   # explicit ranges: annotations placed on the x axis would otherwise widen its autorange
                   xaxis=axis | dict(tickangle=-90, showticklabels=not small, range=[-0.5, n - 0.5]),
                   yaxis=axis | dict(range=[n - 0.5, -0.5]),
                   margin=dict(l=90, r=20, b=90, t_extra=26 + raised),  # the block names
                   meta={"genes": names, "modules": mods, "n_signature": int(n_signature), "split": split})

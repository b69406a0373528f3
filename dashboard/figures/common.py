"""What the figures of several tabs share: the Okabe-Ito ``PALETTE`` and the atlas-wide label
colours, the light ``TEMPLATE`` (Plotly's default from this module's import on), ``empty_figure``,
``_figure`` (a figure from plain dicts, its title wrapped) and the number formats (``format_value``,
``format_p``, ``format_q``, ``format_pq``, ``GRID_FORMATS``), ``bh_q_values`` and ``subsample_indices``.
Each tab's own figures are in the module named like the tab (``dashboard.figures.<tab>``)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["GRID_FORMATS", "LABEL_PALETTE", "PALETTE", "PRESENTER_PX", "TEMPLATE", "bh_q_values", "distinct_colours", "empty_figure", "format_p",
           "format_pq", "format_q", "format_value", "label_colours", "subsample_indices"]

# Okabe-Ito: colour-blind-safe categorical palette
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# presenter mode (issue 36, item 7): no text of a figure smaller than this on a 1920x1080 projector
PRESENTER_PX = 20
# 14 px: still legible on a projector and at 1280x800 with the sidebar open
_FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=14)
# yellow vanishes as thin lines or small points on white: marks drawn on white use the rest
_ON_WHITE = [c for c in PALETTE if c != "#F0E442"]
# one colour per label for the whole atlas (label_colours): Okabe-Ito on white, then Paul Tol's
# muted and light schemes, 22 colours that stay apart on white
LABEL_PALETTE = [*_ON_WHITE, "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#117733", "#88CCEE", "#CC6677",
                 "#DDCC77", "#99DDFF", "#EE8866", "#BBCC33", "#994455", "#6699CC", "#997700"]
# categories beyond the palette share one dark grey, far from the faint "not selected" cells
_OTHER = "#5a5a5a"
_ATTR_UNIT = "mean |IG x input| attribution"
_SIM_NOTE = "includes SIMULATED data"


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
                                                 font=_FONT, margin=dict(l=10, r=10, t=30, b=10), meta={"empty": message},
                                                 # no camera on a placeholder: its image is no result (issue 36 item 9)
                                                 modebar=dict(remove=["toImage"]))})


def _is_empty(table) -> bool:
    return table is None or len(table) == 0 or (isinstance(table, pd.DataFrame) and table.shape[1] == 0)


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
    palette = distinct_colours(len(labels))
    return {label: palette[i] for i, label in enumerate(labels)}


def distinct_colours(n: int) -> list[str]:
    """``n`` different colours: LABEL_PALETTE, then (beyond its 22) colours spread around the hue
    circle by the golden angle at three lightness levels, so that 25 studies never share one
    (issue 36 item 6: a UMAP by study with repeated or grey colours cannot show mixing)."""
    import colorsys

    out = list(LABEL_PALETTE[:n])
    taken = {c.lower() for c in out}
    i = 0
    while len(out) < n:
        hue = (0.11 + i * 0.381966) % 1.0
        light, sat = (0.42, 0.55, 0.32)[i % 3], (0.75, 0.6, 0.7)[(i // 3) % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, sat)
        colour = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
        if colour not in taken:
            out.append(colour)
            taken.add(colour)
        i += 1
    return out


def _category_colours(labels: np.ndarray, fixed: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """(categories largest first, colour per category). With ``fixed`` (label_colours), each
    category has its atlas-wide colour; without, only as many categories as the palette has
    colours get one and the rest share a neutral grey so no two categories look alike."""
    counts = pd.Series(labels).value_counts(sort=False)
    # largest first, ties by name, so the colour assignment is stable across redraws
    cats = sorted(counts.index, key=lambda c: (-counts[c], str(c)))
    if fixed:
        return cats, {c: fixed.get(str(c), _OTHER) for c in cats}
    palette = [*_ON_WHITE, *distinct_colours(len(LABEL_PALETTE) + max(len(cats) - len(_ON_WHITE), 0))[len(_ON_WHITE):]]
    return cats, {c: palette[i] for i, c in enumerate(cats)}

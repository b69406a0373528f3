"""The views of one query result (the Diseases, Studies, Cells and Genes tabs): figures, tables
and texts, and the data behind them for CSV export and the snapshot. Data in, views out; reads
nothing but the gene columns the gene views summarise (through DashboardData)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import dash_mantine_components as dmc
import numpy as np
import pandas as pd
from dash import html

from compute.query import parse_gene_list
from dashboard import export, figures, ids
from dashboard.figures.diseases import disease_ranking_figure, driver_genes_figure, robustness_figure, score_comparison_figure, score_scatter_figure
from dashboard.figures.genes import dotplot_figure, heatmap_figure
from dashboard.markup import html_text
from dashboard.views import diseases as within
from dashboard.views.cells import UMAP_VIEWS, umap_labels_note, umap_views
from dashboard.views.components import HtmlBlock, label_colours
from dashboard.views.diseases import Q_SIGNIFICANT, STAT_HELP, stat_help_panel
from dashboard.views.nothing_to_rank import plural
from dashboard.views.studies import excluded_rows, study_rows

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["FIGURE_VIEWS", "GENE_VIEW_CAP", "GENE_VIEW_TOP", "GROUP_LABELS", "NO_RESULT_NOTE", "PRESENTER_FONT", "PRESENTER_GENE_ROWS",
           "PRESENTER_TITLE", "Q_SIGNIFICANT",
           "RESULT_VIEWS", "SPECIFICITY_P", "SPECIFICITY_Q", "STAT_HELP", "UMAP_VIEWS", "driver_figure", "empty_views", "error_views", "excluded_panel",
           "forest_views", "gene_views", "genes_note", "presenter_figure",
           "reading_sentence", "render_views", "resolution_panel", "stat_help_panel", "umap_labels_note", "umap_views", "view_tables"]

GROUP_LABELS = {"disease": "disease", "cell_type": "cell type", "study": "study"}
COVERAGE_WARN = 0.7
NO_RESULT_NOTE = "No result: the message above the tabs says why"
PRESENTER_FONT = {"size": figures.PRESENTER_PX}  # large type for a projector
PRESENTER_TITLE = 30  # px: a figure's title in presenter mode
# the gene views in presenter mode: as many gene rows as a 1080 px screen holds at 20 px type
PRESENTER_GENE_ROWS = 25
# the gene views show the top GENE_VIEW_TOP genes by mean attribution, or on request all of them up
# to GENE_VIEW_CAP (a heatmap row each: beyond it the page grows past what a browser draws
# smoothly); the CSV export and the snapshot always hold every matched gene
GENE_VIEW_TOP = 60
GENE_VIEW_CAP = 200
# every view of a result, by name: the render callback's outputs
RESULT_VIEWS = ("resolution", "status", "reading", "disease_fig", "disease_table", "study_rows", "excluded_diseases", "excluded_studies",
                "study_effect_rows", "forest_fig", "forest_note", "forest_groups", "robust_fig", "driver_fig", "driver_groups", "compare_fig", "scatter_fig",
                "umap_fig", "umap_badge", "umap_labels",
                "heatmap_fig", "genes_note", "landing_style")
FIGURE_VIEWS = ("disease_fig", "forest_fig", "robust_fig", "driver_fig", "compare_fig", "scatter_fig", "umap_fig", "heatmap_fig")


# -- panels ---------------------------------------------------------------------------------
def resolution_panel(res) -> list:
    """Every pasted gene's fate: matched, renamed (case, previous symbol, alias, Ensembl id),
    ambiguous, not in the model, duplicate, and the entries that are no gene (words, numbers);
    coverage (of the genes) with a warning when low."""
    ambiguous = res.ambiguous
    n_req = len(res.matched) + len(res.missing) + len(ambiguous)
    cov = res.coverage
    low = cov < COVERAGE_WARN
    items = [dmc.Group([
        dmc.Text(f"{len(res.matched)} of {n_req} genes matched", fw=700, id="res-head"),
        dmc.Badge(f"{cov:.0%} coverage", color="orange" if low else "teal", variant="light"),
    ], gap="xs")]
    if low:
        items.append(dmc.Alert("Low coverage: the score rests on fewer genes than you pasted.", color="orange", p="xs", id="res-low"))
    notes = {d.token: d.note for d in res.decisions}
    if res.renamed:
        items.append(html.Div([html.Span("Renamed: ", className="lbl"), html.Span(
            "; ".join(f"{a} → {b}" + (f" ({notes[a]})" if notes.get(a) else "") for a, b in res.renamed), id="res-renamed")]))
    if ambiguous:
        items.append(html.Div([html.Span(f"Ambiguous, not used ({len(ambiguous)}): ", className="lbl"),
                               html.Span("; ".join(notes.get(a) and f"{a} ({notes[a]})" or a for a in ambiguous), id="res-ambiguous")],
                              className="missing"))
    if res.missing:
        items.append(html.Div([html.Span(f"Genes not in the model ({len(res.missing)}): ", className="lbl"),
                               html.Span(", ".join(res.missing), id="res-missing")], className="missing"))
    if res.not_genes:
        # words, numbers and names no gene has: told apart from genes the model lacks
        items.append(html.Div([html.Span(f"Not genes, not used ({len(res.not_genes)}): ", className="lbl"),
                               html.Span(", ".join(res.not_genes), id="res-not-genes",
                                         title="; ".join(dict.fromkeys(f"{t}: {notes[t]}" for t in res.not_genes[:20] if notes.get(t))))],
                              className="missing"))
    if res.duplicates:
        items.append(html.Div([html.Span(f"Duplicates ignored ({len(res.duplicates)}): ", className="lbl"),
                               html.Span(", ".join(res.duplicates), id="res-duplicates")]))
    if res.weighted:
        items.append(html.Div("Weighted score: Σ w·a / Σ w.", className="note"))
    return items





def _disease_q(result) -> dict:
    """Benjamini-Hochberg q per ranked disease (over every ranked disease, not only those shown)."""
    null = result.null.get("disease")
    return figures.bh_q_values(null.p_values()) if null is not None else {}


# the ranking table's columns of the within-study evidence (shown when the result has them), and
# of the second question, the gene-set null
SPECIFICITY_P = "specificity p (vs random gene sets)"
SPECIFICITY_Q = "specificity q (BH)"


def ranking_table_rows(ranking, null, q: dict, terms: bool = False, grouped: bool = False, *,
                       expression=None) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The disease ranking table's header cells (text, tooltip) and its rows of cell texts, as
    shown; q: BH q per disease. Its disease column says which labels it ranks (``terms``: MONDO
    terms; ``grouped``: diseases pooled under the chosen parent terms). A ranking with the
    within-study evidence (compute's ``evidence`` column) gets the evidence level in words, the
    pooled g [95% CI] against the reference donors, its p and q, I², the donors on each side,
    and, given the ``expression`` ranking, the expression score's g and whether the two agree;
    the gene-set null's p and q are the specificity against random gene sets."""
    p = null.p_values() if null is not None else {}
    floor = null.p_floor if null is not None else None
    disease = "disease" + (" (MONDO term or group)" if terms and grouped else " (MONDO term)" if terms else "")
    effects = "evidence" in ranking.columns
    specificity_help = STAT_HELP["p"] + " " + STAT_HELP["p floor"]
    helps = {"mean hit %": STAT_HELP["hit %"], "median hit %": STAT_HELP["hit %"], "p (null)": specificity_help,
             "q (BH)": STAT_HELP["q (BH)"], SPECIFICITY_P: specificity_help, SPECIFICITY_Q: STAT_HELP["q (BH)"],
             "evidence": within.EFFECT_HELP["evidence"], "g vs reference [95% CI]": within.EFFECT_HELP["g"],
             "p (vs reference)": within.EFFECT_HELP["p (vs reference)"], "q (vs reference)": within.EFFECT_HELP["q (vs reference)"],
             "I² · τ²": within.EFFECT_HELP["I²"], "donors (disease / reference)": "donors with a sample of at least cell_min cells",
             "expression g [95% CI]": "the same within-study effect on expression scores (scanpy.tl.score_genes), same rule",
             "attribution vs expression": "whether the two scores' pooled effects agree in sign and in whether their 95% CI excludes 0"}
    names = ["#", disease]
    if effects:
        names += ["evidence", "g vs reference [95% CI]", "p (vs reference)", "q (vs reference)", "I² · τ²", "donors (disease / reference)"]
        if expression is not None:
            names += ["expression g [95% CI]", "attribution vs expression"]
    names += ["mean hit %", "median hit %", "samples", "studies", "cells"]
    names += [SPECIFICITY_P, SPECIFICITY_Q] if effects else ["p (null)", "q (BH)"]
    head = [(c, helps.get(c, "")) for c in names]
    fmt = figures.format_value
    expr = ({str(g): r for g, r in zip(expression["group"], expression.to_dict("records"), strict=True)}
            if expression is not None and effects else {})
    rows = []
    for i, r in enumerate(ranking.to_dict("records"), start=1):
        group = str(r["group"])
        row = [str(i) if effects else str(int(r["rank"])), group]
        if effects:
            pooled = r.get("evidence") in ("pooled", "one_study")
            i2 = (f"{100 * float(r['i2']):.0f}% · {float(r['tau2']):.2f}" if r.get("evidence") == "pooled" and np.isfinite(float(r["i2"]))
                  else "–")
            row += [within.level_words(r), within.effect_text(r),
                    fmt(r.get("effect_p"), "p") if pooled else "none: no within-study reference",
                    fmt(r.get("effect_q"), "q") if pooled else "–", i2,
                    f"{int(r['n_donors'])} / {int(r['n_reference_donors'])}" if pooled else f"{int(r['n_donors'])} / 0"]
            if expression is not None:
                row += [within.effect_text(expr[group]) if group in expr else "–", within.agreement(r, expr.get(group))]
        row += [fmt(r["mean_hit_pct"], "pct"), fmt(r["median_hit_pct"], "pct"), str(int(r["n_samples"])), str(int(r["n_studies"])),
                fmt(r["n_cells"], "count"), fmt(p.get(r["group"]), "p", floor), figures.format_q(q.get(r["group"]), p.get(r["group"]), floor)]
        rows.append(row)
    return head, rows


def _ranking_table(ranking, null, q: dict, terms: bool = False, grouped: bool = False, expression=None) -> HtmlBlock:
    """The disease ranking as a table (:func:`ranking_table_rows`), written as HTML in one
    component (:class:`HtmlBlock`, drawn in the page's first render): as a hundred html.Td
    components it was a quarter of the page's components, and Dash's renderer checks every
    component of the page on each update of its store (the ranking took 0.3-0.8 s to draw). Every
    text goes through markup.html_text: a label is shown as written, never read as Markdown or
    HTML (issue 33)."""
    escape = html_text
    head, rows = ranking_table_rows(ranking, null, q, terms, grouped, expression=expression)
    th = "".join(f'<th title="{escape(tip)}">{escape(text)}</th>' if tip else f"<th>{escape(text)}</th>" for text, tip in head)
    # a disease without a within-study reference is marked (class no-ref): its place rests on hit % alone
    marks = ['<tr class="no-ref">' if level == "no_within_study_reference" else "<tr>"
             for level in (ranking["evidence"] if "evidence" in ranking.columns else [None] * len(rows))]
    body = "".join(mark + "".join(f'<td class="grp">{escape(c)}</td>' if j == 1 else f"<td>{escape(c)}</td>" for j, c in enumerate(row))
                   + "</tr>" for mark, row in zip(marks, rows, strict=True))
    return HtmlBlock(f'<table class="rank-table"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>',
                     id=ids.DISEASE_TABLE, className="rank-table-wrap")


def _where(params) -> str:
    """The cells a query scored, in words ("monocyte", "all cell types", with the other filters)."""
    parts = [", ".join(params.cell_types) if params.cell_types else "all cell types"]
    for label, values in (("diseases", params.diseases), ("tissues", params.tissues), ("studies", params.studies)):
        if values:
            parts.append(f"{label} {', '.join(values)}")
    if params.data != "all":
        parts.append(f"{params.data} studies only")
    return "; ".join(parts)


def reading_sentence(result, *, simulated_share: float = 0.0, ranking=None, pending: bool = False) -> str:
    """The result in plain words: first the top disease's evidence against the reference donors
    of its own studies (its level in words and, where there is one, the pooled effect), then in
    one sentence what was scored and where, the top diseases with their hit % against the base
    rate, and their specificity against random gene sets (BH q over every ranked disease, or that
    no null was drawn). ``simulated_share``: the share of the ranked samples from SIMULATED
    studies; ``ranking``: the diseases in the order shown (default: by hit %); ``pending``: the
    ranking of a query still running, whose random gene sets are being drawn."""
    params = result.params
    ranking = result.diseases if ranking is None else ranking
    lead = within.evidence_lead(ranking.iloc[0], str(getattr(params, "reference", "normal"))) if len(ranking) else ""
    text = _reading_body(result, ranking, simulated_share, pending)
    return f"Reading: {lead} {text}" if lead else f"Reading: {text}"


def _reading_body(result, ranking, simulated_share: float, pending: bool = False) -> str:
    params = result.params
    fmt = figures.format_value
    n_samples = len(result.samples)
    n_studies = result.samples["study"].nunique() if n_samples else 0
    sim = ", all SIMULATED" if simulated_share >= 1 else f", {simulated_share:.0%} SIMULATED" if simulated_share > 0 else ""
    where = (f"In {result.n_selected:,} cells ({_where(params)}; {plural(n_samples, 'sample')} from {n_studies} "
             f"{'study' if n_studies == 1 else 'studies'}{sim})")
    genes = f"the {len(result.resolution.matched)}-gene signature"
    if not len(ranking):
        return f"{where}, no disease has enough samples to rank (cell_min / samp_min): lower them or widen the cell types."
    chance = fmt(result.chance_pct, "pct").removesuffix(".0")
    if params.rule.kind == "percentile" and abs(result.chance_pct - (100 - params.rule.value)) < 0.05:
        share = fmt(100 - params.rule.value, "pct").removesuffix(".0")
        rule = f"is a hit in the top {share}% of scores ({share}% of a sample's cells expected by chance)"
    elif params.rule.kind == "percentile":
        # ties at the cut-off: the chance level is the share that passes it, not 100 - percentile
        rule = (f"is a hit above the {params.rule.value:g}th percentile of scores ({result.threshold:.3g}), which only "
                f"{chance}% of the cells pass as many tie at it ({chance}% of a sample's cells expected by chance, not "
                f"{fmt(100 - params.rule.value, 'pct').removesuffix('.0')}%)")
    else:
        rule = f"is a hit when {params.rule.describe()} ({chance}% of all selected cells are: the share a sample shows by chance)"
    top = list(ranking.head(3).itertuples())
    named = [f"{r.group} ({fmt(r.mean_hit_pct, 'pct')}% of cells per sample)" for r in top]
    listing = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    null = result.null.get("disease")
    draws = int(getattr(params, "n_null", 0) or 0)
    if null is None and pending and draws:
        # one story while the query runs: its random gene sets are being drawn, not absent
        sure = f"; specificity vs random gene sets is being computed ({draws:,} random gene sets)"
    elif null is None:
        sure = ("; specificity vs random gene sets is not judged: no random gene sets were drawn (set its draws to 1,000 for p- "
                "and q-values)")
    else:
        q = _disease_q(result)
        m = len(q)
        called = [str(r.group) for r in ranking.itertuples() if q.get(r.group, 1.0) <= Q_SIGNIFICANT]
        if called:
            which = ", ".join(called[:4]) + (f" and {len(called) - 4} more" if len(called) > 4 else "")
            sure = (f"; on specificity vs random gene sets, {len(called)} of the {m} diseases tested ({which}) stand above matched random gene sets after "
                    f"correcting for testing {m} at once (q ≤ {Q_SIGNIFICANT:g})")
        else:
            sure = (f"; on specificity vs random gene sets, none of the {m} diseases tested stands above matched random gene sets "
                    f"after correcting for testing {m} at once (every q > {Q_SIGNIFICANT:g}), so this ranking is no evidence of a "
                    "disease-specific signal")
    return f"{where}, {genes} {rule} most often in {listing}{sure}."


def genes_note(n_shown: int, n_total: int, shown: str) -> str:
    """"Top 60 of 88 matched genes ..." above the gene views: how many they show, and how to see all."""
    if n_shown >= n_total:
        return f"All {n_total} matched genes shown. The CSV export holds every one."
    if shown == "all":
        return (f"{n_shown} of {n_total} matched genes shown, by mean attribution: the view's cap is {GENE_VIEW_CAP}. "
                f"The CSV export holds all {n_total}.")
    return (f"Top {n_shown} of {n_total} matched genes by mean attribution. Choose 'all' to show every gene (up to {GENE_VIEW_CAP}); "
            f"the CSV export holds all {n_total}.")


def presenter_figure(fig, *, keep_height: bool = False):
    """``fig`` for a projector: large type and title, its height left to the screen (the graph's
    CSS fits it to the window); every tick label, axis title, legend entry, note and text drawn
    on the plot at least PRESENTER_FONT's size (issue 36, item 7: names sized for the sidebar's
    narrow plot stayed 11-15 px). ``keep_height``: the plot keeps its height (a heatmap with a
    row per gene, drawn for presenter mode already); the figure grows by the larger title."""
    title = fig.layout.title
    text = (title.text or "") if title else ""
    grow = PRESENTER_TITLE - int((title.font.size if title else None) or 16)  # each of the title's lines grows so much
    extra = grow * (text.count("<br>") + 1) if text else 0  # the larger title's lines need more room
    if text and title.yanchor == "top":  # hung from the top: its first line's larger type reached above the figure
        fig.update_layout(title_pad_t=(title.pad.t or 0) + grow)
        extra += grow
    margin = fig.layout.margin
    top = (100 if margin.t is None else margin.t) + extra  # Plotly's own top margin when the figure sets none
    height = {"height": (fig.layout.height or 0) + extra} if keep_height and fig.layout.height else {"height": None, "autosize": True}
    least = PRESENTER_FONT["size"]
    if text:  # a line of the title in its own smaller type (the SIMULATED note's 13 px) at least the least size
        fig.update_layout(title_text=re.sub(r"font-size:\s*(\d+)px", lambda m: f"font-size:{max(int(m.group(1)), least)}px", text))
    fig.update_layout(font=PRESENTER_FONT, title_font_size=PRESENTER_TITLE, margin_t=top, **height)

    def at_least(font) -> int:
        return max(least, int(font.size or 0))

    def axis(ax) -> None:
        ax.update(tickfont_size=at_least(ax.tickfont), title_font_size=at_least(ax.title.font))
        if ax.type == "log" and ax.dtick is None:  # Plotly draws a log axis's 2s and 5s in 3/4 of the type: decades only
            ax.update(dtick=1)

    fig.for_each_xaxis(axis)
    fig.for_each_yaxis(axis)
    right = 0  # notes set beside the plot, right of it: the margin grows with their larger type
    bottom = 0  # notes set below the plot: the margin holds them in their larger type
    grown = 1.0  # how much the notes placed in pixels grew: their offsets and pixel-sized shapes (a key) grow alike
    for note in fig.layout.annotations or ():
        before = int(note.font.size or 0)
        note.font.size = at_least(note.font)
        if before and (note.xshift or note.yshift):
            grown = max(grown, note.font.size / before)
            note.xshift, note.yshift = (note.xshift or 0) * note.font.size / before, (note.yshift or 0) * note.font.size / before
        if note.xref == "paper" and (note.x or 0) > 1 and note.xanchor == "left":
            right = max(right, round(0.58 * note.font.size * len(re.sub(r"<[^>]+>", "", str(note.text or "")))) + 24)
        if note.yref == "paper" and (note.y or 0) <= 0 and (note.yshift or 0) < 0:
            bottom = max(bottom, round(-note.yshift + 1.5 * note.font.size + 8))
    if right > (fig.layout.margin.r or 0):
        fig.update_layout(margin_r=right)
    if bottom > (80 if margin.b is None else margin.b):
        fig.update_layout(margin_b=bottom)
    if grown > 1:
        for shape in fig.layout.shapes or ():
            if shape.xsizemode == "pixel" and shape.ysizemode == "pixel":
                shape.update(x0=shape.x0 * grown, x1=shape.x1 * grown, y0=shape.y0 * grown, y1=shape.y1 * grown)
    if fig.layout.legend is not None:
        fig.layout.legend.font.size = at_least(fig.layout.legend.font)
    for trace in fig.data:  # names drawn by the points (a scatter's text)
        if "text" in (getattr(trace, "mode", None) or "") and trace.textfont.size is not None:
            trace.textfont.size = at_least(trace.textfont)
    return fig


def _left_out_note(result) -> str:
    """" · N studies left out (signature coverage below M%)", or "" when none was."""
    n = len(result.excluded_studies)
    if not n:
        return ""
    return f" · {n} {'study' if n == 1 else 'studies'} left out (signature coverage below {result.params.min_coverage:.0%})"


def excluded_panel(result) -> dmc.Alert | None:
    """The studies with cells in the filters that were left out of the rankings and the null
    (coverage below min_coverage), each with its reason; None when no study was."""
    excluded = result.excluded_studies
    if not len(excluded):
        return None
    n = len(excluded)
    items = [html.Li(f"Left out: {study} {reason}") for study, reason in excluded["reason"].items()]
    return dmc.Alert([
        html.Ul(items, className="left-out"),
        dmc.Text("A gene a study never measured is missing, not zero: these studies measured too little of the signature to be "
                 "scored on it. Lower 'Min. study coverage' to include them, or use genes they measured.", size="xs"),
    ], title=f"{n} {'study' if n == 1 else 'studies'} left out of the ranking: signature coverage below "
             f"{result.params.min_coverage:.0%}", color="orange", p="xs", className="excluded")


# -- the views of a result --------------------------------------------------------------------
def render_views(data: DashboardData, result, state: dict, *, ranking_only: bool = False, umap: bool = True) -> dict:
    """Every view of one query ``result`` (RESULT_VIEWS: figures, table components and rows,
    texts) under the view settings in ``state`` (top_n, group_by, heat, order, color and
    driver_group). ``ranking_only``: only the views of the disease ranking and its texts (a
    running query's ranking, drawn before its p-values). ``umap``: False leaves out the Cells
    tab's views (:func:`umap_views`). Pure apart from reading gene columns for the heatmap."""
    params = result.params
    has_sim = data.atlas.has_simulated
    sim_note = " · includes SIMULATED studies (open circles)" if data.atlas.has_simulated else ""
    where = _where(params)
    grouped = f" · diseases grouped by {', '.join(params.disease_groups)}" if params.disease_groups else ""
    null = result.null.get("disease")
    ranking = _shown_ranking(result, state)
    left_out = _left_out_note(result)
    by_effect = state.get("disease_order") == "effect" and "effect" in result.diseases.columns
    ordered = (f"ordered by the pooled effect vs {params.reference} donors within studies, then hit %" if by_effect
               else "ranked by per-sample hit %")
    title = (f"Diseases {ordered}<br><sub>{where}{grouped} · hit = {params.rule.describe()}{left_out}"
             f"{sim_note}</sub>")
    cells = data.query_cells(params)  # the disease column as the ranking groups it
    base_rate = result.chance_pct if result.n_selected else None  # the actual share of hits, ties at the cut-off counted
    null_text = (f" · null: {null.n_draws:,} matched gene sets over {null.n_cells:,} cells, p floor {null.p_floor:.2g}"
                 if null is not None else f" · null: {params.n_null:,} matched gene sets being drawn" if ranking_only and params.n_null
                 else " · no null (set null draws to get p-values)")
    status = (f"{result.n_selected:,} cells selected · threshold {result.threshold:.3f} ({figures.format_value(result.chance_pct, 'pct')}% of "
              f"cells above it: the chance level) · {plural(len(result.samples), 'sample')}, "
              f"{plural(len(result.diseases), 'disease')} pass{'es' if len(result.diseases) == 1 else ''} cell_min={params.cell_min}, "
              f"samp_min={params.samp_min}{left_out}{null_text}")
    q = _disease_q(result)
    samples = result.samples
    sim_share = float(samples["simulated"].astype(bool).mean()) if len(samples) and "simulated" in samples else 0.0
    out = {
        "resolution": resolution_panel(result.resolution),
        "status": status,
        "reading": reading_sentence(result, simulated_share=sim_share, ranking=ranking, pending=ranking_only),
        "landing_style": {"display": "none"},
        "disease_fig": disease_ranking_figure(result.samples, ranking, base_rate=base_rate, title=title,
                                              null=null.groups if null is not None else None, q_values=q,
                                              colours=label_colours(data, "disease"),
                                              p_floor=null.p_floor if null is not None else None),
        "disease_table": _ranking_table(ranking, null, q, data.has_vocabulary, bool(params.disease_groups), result.expression_diseases),
        "study_rows": study_rows(data, result),
        # the same list twice: under the disease ranking and in the Studies tab
        "excluded_diseases": excluded_panel(result),
        "excluded_studies": excluded_panel(result),
    }
    out |= _evidence_views(data, result, ranking, state)
    if ranking_only:
        return out
    ev = result.evidence
    top = str(result.diseases["group"].iloc[0]) if len(result.diseases) else None
    if ev is not None and len(ev.thresholds):
        out["robust_fig"] = robustness_figure(ev.thresholds, highlight=top, simulated=has_sim, chance=ev.chance,
                                              colours=label_colours(data, "disease"),
                                              title=f"Ranking across hit thresholds · rank stability {ev.rank_stability:.2f}")
    else:
        out["robust_fig"] = figures.empty_figure("No disease passes the filters")
    out["driver_fig"] = driver_figure(data, result, state.get("driver_group"))
    out["driver_groups"] = [str(g) for g in result.diseases["group"]]
    if result.expression_diseases is not None:
        out["compare_fig"] = score_comparison_figure(result.diseases, result.expression_diseases,
                                                     title="Attribution vs expression (score_genes) rankings, same cells and rule")
        sel = result.selection
        out["scatter_fig"] = score_scatter_figure(result.scores[sel], result.expression_scores[sel],
                                                  cells["disease"].to_numpy()[sel].astype(str),
                                                  simulated=data.atlas.cells["simulated"].to_numpy()[sel],
                                                  colours=label_colours(data, "disease"),
                                                  title="Per cell: attribution score vs expression score")
    else:
        msg = "This atlas stores no expression, so expression scores cannot be compared"
        out["compare_fig"] = out["scatter_fig"] = figures.empty_figure(msg)
    if umap:
        out |= umap_views(data, result, state)
    return out | gene_views(data, result, state)


def gene_views(data: DashboardData, result, state: dict) -> dict:
    """The Genes tab's views of ``result`` (``heatmap_fig``, ``genes_note``) under ``state``'s
    genes_shown, gene_rows, group_by, order and heat. They need the ranking's hits only, not its
    p-values: Run's request draws them with the ranking when that tab shows (query.rank_now)."""
    out = {}
    has_sim = data.atlas.has_simulated
    by = _group_by(state)
    shown = state.get("genes_shown") or "top"
    rows = state.get("gene_rows")  # presenter mode: the rows that fit the screen at its large type
    mean_table, pct_table = data.gene_groups(result, by, rows or (GENE_VIEW_CAP if shown == "all" else GENE_VIEW_TOP))
    out["genes_note"] = genes_note(len(mean_table), len(result.resolution.matched), shown)
    if rows and len(mean_table) < len(result.resolution.matched):
        out["genes_note"] = (f"Top {len(mean_table)} of {len(result.resolution.matched)} matched genes by mean attribution: "
                             "presenter mode shows as many as its large type fits on one screen.")
    order = state.get("order") or "cluster"
    if state.get("heat") == "dotplot":
        out["heatmap_fig"] = dotplot_figure(mean_table, pct_table, group_label=GROUP_LABELS[by], order=order, simulated=has_sim,
                                            title=f"Genes x {GROUP_LABELS[by]}: colour = mean attribution, size = % of hit cells with the gene")
    else:
        out["heatmap_fig"] = heatmap_figure(mean_table, group_label=GROUP_LABELS[by], order=order, simulated=has_sim,
                                            title=f"Mean attribution: genes x {GROUP_LABELS[by]}")
    return out


def driver_figure(data, result, group: str | None):
    """Each gene's share of ``group``'s score (default: the top disease)."""
    ev = result.evidence
    top = str(result.diseases["group"].iloc[0]) if len(result.diseases) else None
    group = group or top
    if ev is None or group not in ev.gene_shares.columns:
        return figures.empty_figure("Driver genes appear once a disease is ranked")
    survive = ("" if ev.top_survives is None else
               f" · without {ev.top_gene}: {top} {'stays first' if ev.top_survives else 'is no longer first'}")
    return driver_genes_figure(ev.gene_shares, group, simulated=data.atlas.has_simulated, title=f"Driver genes in {group}{survive}")



def _shown_ranking(result, state: dict):
    """The diseases as shown: in the order ``state`` asks (disease_order), the first top_n."""
    top_n = int(state.get("top_n") or 0)
    ranking = within.ordered_ranking(result.diseases, state.get("disease_order") or "hit")
    return ranking.head(top_n) if top_n > 0 else ranking


def _evidence_views(data, result, ranking, state: dict) -> dict:
    """The within-study evidence's views: the Studies tab's per-study rows, and the forest plot of
    the disease ``state["forest_group"]`` (default: the first shown) with the studies that gave
    no effect, and the diseases it can show."""
    first = str(ranking["group"].iloc[0]) if len(ranking) else None
    fig, note = within.forest_view(result, state.get("forest_group") or first, simulated=data.atlas.has_simulated)
    return {"study_effect_rows": within.study_effect_rows(result), "forest_fig": fig, "forest_note": note,
            "forest_groups": [str(g) for g in ranking["group"]]}


def forest_views(data, result, group: str | None, state: dict) -> dict:
    """{"forest_fig", "forest_note"}: the forest plot of disease ``group`` (None: the first shown
    under ``state``'s order) in ``result``, for the disease picker's own callback."""
    views = _evidence_views(data, result, _shown_ranking(result, state), state | {"forest_group": group})
    return {"forest_fig": views["forest_fig"], "forest_note": views["forest_note"]}


def _group_by(state: dict) -> str:
    return state.get("group_by") if state.get("group_by") in GROUP_LABELS else "disease"


def view_tables(data: DashboardData, result, state: dict) -> dict:
    """The data behind every view, by name (diseases, samples, studies, genes, genes_pct_hit_cells,
    resolution, coverage, robustness, drivers, comparison, umap, scatter), for CSV export and the
    snapshot; ``state``: the view settings, as for render_views."""
    # every matched gene, whatever the view shows: an export is never cut short
    return _tables(data, result, _shown_ranking(result, state), study_rows(data, result),
                   *data.gene_groups(result, _group_by(state), max_genes=None))


def _tables(data, result, ranking, study_rows, mean_table, pct_table) -> dict:
    """The data behind every view, for CSV export and the snapshot."""
    # the study CSV: the ranked studies, then those left out of the ranking with the reason
    studies = pd.DataFrame([{**r, "included": True, "reason": ""} for r in study_rows] + excluded_rows(data, result))
    for col in ("rank", "samples"):  # whole numbers, empty for the studies left out
        if col in studies:
            studies[col] = studies[col].astype("Int64")
    tables = {"diseases": ranking, "samples": result.samples, "studies": studies,
              "genes": mean_table.reset_index(names="gene"), "genes_pct_hit_cells": pct_table.reset_index(names="gene"),
              "resolution": export.resolution_table(result.resolution)}
    if result.coverage is not None:  # every study: its coverage, cells in the filters, included or why not
        tables["coverage"] = result.coverage.reset_index(names="study")
    null = result.null.get("disease")
    if null is not None:
        tables["diseases"] = ranking.merge(null.groups.drop(columns=["observed"], errors="ignore"), on="group", how="left")
        q = _disease_q(result)
        tables["diseases"]["q_value"] = tables["diseases"]["group"].astype(str).map(q).astype(float)
        # p is an upper bound at the floor (no random set reached it), and so is the q made from it
        tables["diseases"]["p_floor"] = null.p_floor
        tables["diseases"]["p_at_floor"] = tables["diseases"]["p_value"] <= null.p_floor * (1 + 1e-9)
    tables["diseases"] = _with_evidence_words(tables["diseases"], result)
    effects = within.study_effects_table(result)
    if effects is not None:
        tables["study_effects"] = effects
    ev = result.evidence
    if ev is not None:
        tables["robustness"] = ev.thresholds.reset_index(names="disease")
        tables["drivers"] = ev.gene_shares.reset_index(names="gene")
    if result.expression_diseases is not None:
        cols = ["group", "mean_hit_pct", "rank", *[c for c in ("effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "evidence")
                                                   if c in result.diseases.columns and c in result.expression_diseases.columns]]
        tables["comparison"] = result.diseases[cols].merge(
            result.expression_diseases[cols], on="group", how="outer", suffixes=("_attribution", "_expression"))
        if "effect_attribution" in tables["comparison"]:
            tables["comparison"]["agreement"] = [
                within.agreement({k.removesuffix("_attribution"): v for k, v in r.items()},
                                 {k.removesuffix("_expression"): v for k, v in r.items()})
                for r in tables["comparison"].to_dict("records")]
    cells = data.atlas.cells
    sel = result.selection
    cols = [c for c in ("cell_id", "study", "sample", "cell_type", "cell_type_original", "cell_type_ontology_term_id",
                        "cell_type_predicted", "cell_type_prediction_confidence", "disease", "disease_original",
                        "disease_ontology_term_id", "tissue", "simulated", "donor", *data.atlas.metadata_columns) if c in cells]
    umap = cells.loc[sel, cols].copy()
    if result.params.disease_groups:  # the disease as the ranking counted it
        umap.insert(cols.index("disease") + 1, "disease_group", data.query_cells(result.params)["disease"][sel].astype(str))
    if data.umap is not None:  # the coordinates the Cells tab draws, so the CSV redraws its figure
        umap.insert(0, "umap_2", data.umap[sel, 1])
        umap.insert(0, "umap_1", data.umap[sel, 0])
    umap["score"] = result.scores[sel]
    umap["hit"] = umap["score"] > result.threshold
    if result.expression_scores is not None:
        umap["expression_score"] = result.expression_scores[sel]
    tables["umap"] = umap
    tables["scatter"] = umap
    return tables



def _with_evidence_words(table: pd.DataFrame, result) -> pd.DataFrame:
    """The disease table for export with ``evidence_words`` (the level in words) beside
    ``evidence``, and the reference the effects compare with; unchanged without evidence columns."""
    if "evidence" not in table.columns:
        return table
    table = table.copy()
    table.insert(table.columns.get_loc("evidence") + 1, "evidence_words", [within.level_words(r) for r in table.to_dict("records")])
    table.insert(table.columns.get_loc("evidence_words") + 1, "reference", str(result.params.reference))
    return table


def error_views(data: DashboardData, error: str, genes: str) -> dict:
    """The views (RESULT_VIEWS) of a query that failed with ``error``: the message, and the
    decisions on the genes of ``genes`` (the gene text) when any was asked for."""
    res = data.atlas.resolve(list(parse_gene_list(genes or "")))
    # the message shows once, above the tabs; each figure only points to it (issue 36, item 8: the
    # whole message drawn in every figure was cut at their edges)
    empty = figures.empty_figure(NO_RESULT_NOTE)
    return {**{name: empty for name in FIGURE_VIEWS}, "resolution": resolution_panel(res) if res.requested else [],
            "status": html.Div(error, className="error"), "disease_table": None, "study_rows": [], "excluded_diseases": None,
            "study_effect_rows": [], "forest_note": None, "forest_groups": [],
            "excluded_studies": None, "driver_groups": [], "umap_badge": "", "umap_labels": "", "reading": "", "genes_note": "",
            "landing_style": {"display": "none"}}


def empty_views() -> dict:
    """The views (RESULT_VIEWS) before any query: empty figures that say what to do, and the landing panel shown."""
    return {**{name: figures.empty_figure("Appears after a query") for name in FIGURE_VIEWS},
            "disease_fig": figures.empty_figure("Paste genes (any separators) or pick a preset, then Run"),
            "resolution": [], "status": "", "disease_table": html.Div(), "study_rows": [], "excluded_diseases": None,
            "study_effect_rows": [], "forest_note": None, "forest_groups": [],
            "excluded_studies": None, "driver_groups": [], "umap_badge": "", "umap_labels": "", "reading": "", "genes_note": "",
            "landing_style": {}}

"""The within-study evidence of a disease link, as the dashboard shows it: the evidence level in
words, the pooled effect (Hedges' g of per-donor hit % against the reference donors of the same
studies) and its p and q, where attribution and expression scores disagree, the disease order,
the forest plot of one disease with the studies that gave no effect, and the per-study rows of
the Studies tab. compute.query owns the numbers and the words of the levels
(``evidence_words``); this module only says them. Data in, texts, figures or components out."""

from __future__ import annotations

import math

import dash_mantine_components as dmc
import numpy as np
import pandas as pd
from dash import html

from compute.query import EVIDENCE_LEVELS, evidence_words
from dashboard import figures, ids
from dashboard.figures.diseases import forest_figure
from dashboard.state import DEFAULTS
from dashboard.views import components as ui

__all__ = ["DISEASE_ORDERS", "EFFECT_HELP", "Q_SIGNIFICANT", "STAT_HELP", "agreement", "diseases_tab", "effect_text", "evidence_lead",
           "excluded_studies_note", "forest_view", "level_words", "ordered_ranking", "stat_help_panel", "study_effect_rows",
           "study_effects_table"]

# the disease orders (dashboard.state's disease_order), in words for the control
DISEASE_ORDERS = {"hit": "mean hit % (SIGnature)", "effect": "pooled effect vs reference"}
# what the within-study columns mean, in plain words: the table's header tooltips and the help fold
EFFECT_HELP = {
    "evidence": "Which comparison this disease's result rests on: how many studies hold both its donors and reference "
                "donors (by default healthy, 'normal') of their own. A disease seen only in studies without reference donors "
                "cannot be told apart from its study's batch: it gets no disease-vs-reference p-value, and its hit % is "
                "descriptive only.",
    "g": "Hedges' g: how far this disease's donors' hit % lies above (g > 0) or below the reference donors' of the same study, "
         "in pooled standard deviations, with the donor (its samples averaged) as the unit; pooled across studies by "
         "random effects (DerSimonian-Laird), with its 95% confidence interval.",
    "p (vs reference)": "The chance of a pooled effect at least this large if this disease's donors did not differ from the "
                        "reference donors within their studies: every arrangement of the disease and reference labels among "
                        "each study's donors (exact). With few donors it cannot be small: one study of 3 + 2 donors allows "
                        "p ≥ 0.1.",
    "q (vs reference)": "The disease-vs-reference p adjusted for testing every disease with a within-study reference at once "
                        "(Benjamini-Hochberg).",
    "I²": "The share of the spread of the studies' effects beyond chance (heterogeneity); τ²: its variance between studies. "
          "Shown only when two or more studies compare the disease with reference donors.",
    "specificity": "A second question: would random gene sets, each gene matched on mean attribution and detection, lift "
                   "this disease as far above the reference? Its p is corrected for the correlation among the signature's "
                   "genes (CAMERA's variance inflation factor). It says the signature beats genes like it, not that patients "
                   "differ from reference donors; on planted data it calls no more no-effect links than nominal "
                   "(a few fewer for sparse gene sets: docs/validation.md).",
}
_SHORT = {"no_within_study_reference": "⚠ no within-study reference: seen only in studies without reference donors, so this "
                                       "disease cannot be told apart from its study's batch"}

Q_SIGNIFICANT = 0.05  # the false discovery rate the reading sentence calls a disease "above the null" at
# what each statistic means, in plain words: the help beside the ranking and the table's header tooltips
STAT_HELP = {
    "hit %": "A sample's hit %: the share of its selected cells whose signature score passes the hit rule. Diseases are ranked "
             "by the mean over their samples: the sample, not the cell, is the unit of evidence.",
    "base rate": "The hit % expected by chance (the dashed 'chance level' line): the share of all selected cells that are hits. "
                 "If the signature did not tell diseases apart, every sample would show about that share. With hits as the top 10% "
                 "of scores it is 10%, less where many cells tie at the cut-off (a sparse signature scores 0 in most cells, so its "
                 "90th percentile is 0 and only the cells above 0 are hits).",
    "null band": "The grey band: the central 95% of the mean hit % that random gene sets reach, each gene swapped for a gene of "
                 "similar mean attribution and detection. A disease above its band is not explained by such genes.",
    "p": "Specificity vs random gene sets, a second question: the share of random gene sets whose disease hit % stands at "
         "least as far above the reference's as the signature's does (one-sided, empirical), the random sets' spread scaled "
         "for the correlation among the signature's genes (CAMERA's variance inflation factor); the reference itself has "
         "none. It does not compare patients with reference donors: the within-study effect (g) does. On planted data it "
         "calls no more no-effect links than its nominal rate, a few fewer for sparse gene sets (docs/validation.md).",
    "p floor": "The smallest p the draws allow: 1 / (1 + draws); with 1,000 draws p ≤ 0.001 means no random set reached it.",
    "q (BH)": "p adjusted for testing every ranked disease at once (Benjamini-Hochberg false discovery rate): call diseases "
              f"with q ≤ {Q_SIGNIFICANT:g} and expect at most {Q_SIGNIFICANT:.0%} of them to be false leads.",
}


def _f(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def level_words(row) -> str:
    """The evidence level of a disease row in words (compute.query.evidence_words), a disease
    with no within-study reference flagged; "" for a row without one (an older result)."""
    level = row.get("evidence") if hasattr(row, "get") else None
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return ""
    words = evidence_words(row)
    if str(level) == "no_within_study_reference" and words != EVIDENCE_LEVELS["no_within_study_reference"]:
        return "⚠ " + words  # reference donors there, but too few or without spread: said as such
    return _SHORT.get(str(level), words)


def effect_text(row, prefix: str = "effect") -> str:
    """"1.23 [0.41, 2.05]": the pooled g and its 95% CI, or "–" when there is none."""
    g, lo, hi = (_f(row.get(f"{prefix}{s}")) for s in ("", "_lo", "_hi"))
    if not np.isfinite(g):
        return "–"
    return f"{g:.2f} [{lo:.2f}, {hi:.2f}]"


def _excludes_zero(row) -> bool | None:
    lo, hi = _f(row.get("effect_lo")), _f(row.get("effect_hi"))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return lo > 0 or hi < 0


def agreement(attribution, expression) -> str:
    """Whether the attribution and the expression scores' pooled effects of one disease agree:
    "agree", "disagree: ..." (opposite signs, or one's 95% CI excludes 0 and the other's does
    not), or "–" when either has no effect."""
    if attribution is None or expression is None:
        return "–"
    ga, ge = _f(attribution.get("effect")), _f(expression.get("effect"))
    if not (np.isfinite(ga) and np.isfinite(ge)):
        return "–"
    if np.sign(ga) != np.sign(ge):
        return f"disagree: attribution g {ga:+.2f}, expression g {ge:+.2f}"
    a, e = _excludes_zero(attribution), _excludes_zero(expression)
    if a != e:
        which = "attribution" if a else "expression"
        return f"disagree: only the {which} score's 95% CI excludes 0"
    return "agree"


def ordered_ranking(diseases: pd.DataFrame, order: str) -> pd.DataFrame:
    """``diseases`` in the order asked: "hit" as ranked (mean hit % per sample, SIGnature's rule),
    "effect" by the pooled within-study effect, largest first, the diseases without one after
    them by mean hit % (their place rests on hit % alone)."""
    if order != "effect" or "effect" not in diseases.columns or not len(diseases):
        return diseases
    effect = diseases["effect"].astype(float)
    keys = pd.DataFrame({"missing": effect.isna().to_numpy(), "effect": -effect.fillna(0).to_numpy(),
                         "hit": -diseases["mean_hit_pct"].astype(float).to_numpy()}, index=diseases.index)
    return diseases.loc[keys.sort_values(["missing", "effect", "hit"], kind="stable").index]


def _p_words(p: float, q: float) -> str:
    return f"p = {figures.format_value(p, 'p')}" + (f", q = {figures.format_value(q, 'q')}" if np.isfinite(q) else "")


def evidence_lead(row, reference: str) -> str:
    """The sentence that leads the reading of a result: the top disease's evidence level in words
    and, where its studies have reference donors, its pooled effect against them ("" for a row
    without evidence columns)."""
    level = row.get("evidence") if hasattr(row, "get") else None
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return ""
    name = str(row["group"])
    if level == "no_within_study_reference":
        with_donors = _f(row.get("n_studies_with_reference_donors"))
        where = (f"its studies' {reference} donors are too few to compare with, or show no spread"
                 if np.isfinite(with_donors) and with_donors > 0 else f"it is seen only in studies without {reference} donors")
        return (f"{name}, the top disease, has no within-study reference: {where}, so it cannot be told apart from its "
                "study's batch; its hit % is descriptive only, with no disease-vs-reference p-value.")
    if level == "no_reference":
        return (f"{name}, the top disease, has no reference to compare with (no {reference} donors in its studies, or it is "
                "the reference itself): its hit % is descriptive only.")
    g, lo, hi = _f(row.get("effect")), _f(row.get("effect_lo")), _f(row.get("effect_hi"))
    side = "above" if g >= 0 else "below"
    text = (f"{name}, the top disease, is seen in {evidence_words(row)}: its donors' hit % lies {side} the {reference} donors' of "
            f"the same studies by g = {g:.2f} (95% CI {lo:.2f} to {hi:.2f}; {_p_words(_f(row.get('effect_p')), _f(row.get('effect_q')))}")
    if level == "pooled":
        text += (f"; I² = {100 * _f(row.get('i2')):.0f}%, leave one study out {_f(row.get('loo_lo')):.2f} to "
                 f"{_f(row.get('loo_hi')):.2f}; {int(row.get('n_studies_positive') or 0)} of {int(row['n_studies_with_reference'])} "
                 "studies above 0)")
    else:
        text += "; one study, so how far studies agree cannot be judged)"
    return text + "."


def _pooled_row(table: pd.DataFrame | None, disease: str):
    if table is None or not len(table):
        return None
    hit = table[table["group"].astype(str) == disease]
    return hit.iloc[0] if len(hit) else None


def _effects_of(effects: pd.DataFrame | None, disease: str, measure: str = "hit_pct") -> pd.DataFrame:
    if effects is None or not len(effects):
        return pd.DataFrame(columns=["study", "g", "g_lo", "g_hi", "weight", "included", "reason"])
    return effects[(effects["disease"].astype(str) == disease) & (effects["measure"] == measure)]


def forest_view(result, disease: str | None, *, simulated: bool = False):
    """(figure, note) for the forest plot of ``disease`` (default: the top disease): the
    figure from figures.diseases.forest_figure, the expression score's effects beside the attribution's
    when the query ranked both; the note lists the studies that gave no effect, each with its
    reason (components: labels shown as text)."""
    if not len(result.diseases) or result.study_effects is None:
        return figures.empty_figure("The per-study effects appear once a disease is ranked"), None
    groups = [str(g) for g in result.diseases["group"]]
    disease = disease if disease in groups else groups[0]
    row = _pooled_row(result.diseases, disease)
    reference = str(result.params.reference)
    second = None
    if result.expression_diseases is not None and result.expression_study_effects is not None:
        second = (_effects_of(result.expression_study_effects, disease), _pooled_row(result.expression_diseases, disease),
                  "expression score hit %")
    fig = forest_figure(_effects_of(result.study_effects, disease), row, disease=disease, evidence=level_words(row),
                        reference=reference, measure="attribution hit %" if second else "hit %", second=second,
                        simulated=simulated)
    return fig, excluded_studies_note(result, disease)


def excluded_studies_note(result, disease: str) -> html.Div | None:
    """The studies of ``disease`` that gave no within-study effect, each with its reason, as text
    components; None when every study did."""
    rows = _effects_of(result.study_effects, disease)
    left = rows[~rows["included"].astype(bool)]
    if not len(left):
        return None
    items = [html.Li(f"{r.study}: {r.reason} ({int(r.n_donors)} {disease} donors, {int(r.n_reference_donors)} reference donors)")
             for r in left.itertuples()]
    return html.Div([html.Div(f"Studies of {disease} without an effect ({len(left)}): their donors are counted in the hit %, "
                              "not in the pooled effect", className="lbl"), html.Ul(items)], className="note forest-left-out")


def study_effect_rows(result) -> list[dict]:
    """The Studies tab's rows: per ranked disease and study, the evidence level of the disease (in
    words), the study's g and 95% CI of per-donor hit % against its own reference donors, its
    weight in the pooled effect, the donors on each side, and why a study gave none."""
    effects = result.study_effects
    if effects is None or not len(effects):
        return []
    levels = {str(r["group"]): level_words(r) for _, r in result.diseases.iterrows()}
    rows = []
    for r in effects[effects["measure"] == "hit_pct"].itertuples():
        rows.append({"disease": str(r.disease), "evidence": levels.get(str(r.disease), ""), "study": str(r.study),
                     "g": _json(r.g), "g_lo": _json(r.g_lo), "g_hi": _json(r.g_hi), "weight": _json(r.weight),
                     "n_donors": int(r.n_donors), "n_reference_donors": int(r.n_reference_donors),
                     "mean_hit_pct": _json(r.mean), "reference_hit_pct": _json(r.reference_mean),
                     "included": bool(r.included), "reason": str(r.reason)})
    return rows


def study_effects_table(result) -> pd.DataFrame | None:
    """Every per-study effect (both measures; the expression score's too), with the disease's
    evidence level in words and the score it was computed on, for the CSV export and the
    snapshot; None when the result has none."""
    parts = []
    for score, effects, diseases in (("attribution", result.study_effects, result.diseases),
                                     ("expression", getattr(result, "expression_study_effects", None),
                                      getattr(result, "expression_diseases", None))):
        if effects is None or not len(effects):
            continue
        levels = {str(r["group"]): level_words(r) for _, r in diseases.iterrows()} if diseases is not None else {}
        part = effects.copy()
        part.insert(0, "score", score)
        part.insert(2, "evidence", part["disease"].astype(str).map(levels).fillna(""))
        parts.append(part)
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    table.insert(3, "reference", str(result.params.reference))
    return table


def _json(v):
    v = _f(v)
    return v if np.isfinite(v) else None

def stat_help_panel() -> html.Div:
    """What hit %, base rate, null band, p, the p floor and q mean: each term with its help as a
    tooltip, all of them in a fold for reading (tooltips do not show on a projector or a phone)."""
    terms = [dmc.Tooltip(html.Span(term, className="help-term", title=text), label=text, multiline=True, w=340, withArrow=True)
             for term, text in STAT_HELP.items()]
    listed = html.Ul([html.Li([html.B(term), ": ", text]) for term, text in STAT_HELP.items()])
    return html.Div([html.Span("What the numbers mean: ", className="lbl"), *terms,
                     html.Details([html.Summary("read all"), listed], className="help-all")], id=ids.STAT_HELP, className="stat-help")


# -- the layout --------------------------------------------------------------------------------
def diseases_tab() -> dmc.Stack:
    """The Diseases tab's components, empty: ``callbacks.render`` (the ranking, the evidence) and
    ``callbacks.diseases`` (the driver genes, the forest plot of a chosen disease) fill them."""
    return dmc.Stack([
        html.Div(id=ids.READING, className="reading"),
        stat_help_panel(),
        ui.graph("diseases", 480),
        html.Div([dmc.Text("Order diseases by", size="xs", c="dimmed"), ui.segmented(ids.DISEASE_ORDER, DISEASE_ORDERS, DEFAULTS["disease_order"])]),
        html.Details([html.Summary("Ranking as a table (click a disease for its studies)"), html.Div(id=ids.DISEASE_TABLE_WRAP)], open=True),
        # the evidence within studies: one disease's effect in each study against its own reference donors
        html.Div([
            dmc.Select(id=ids.FOREST_GROUP, data=[], placeholder="per-study effects of… (default: the first disease shown)", size="xs",
                       clearable=True, searchable=True, w=320),
            ui.graph("forest", 320),
            html.Div(id=ids.FOREST_NOTE),
        ], id="forest-section"),
        html.Div(id=ids.EXCLUDED_DISEASES),
        # one figure a row: side by side, each got about 430 px at 1280 px and squeezed its labels
        dmc.Grid([dmc.GridCol(ui.graph("robustness", 380), span=12),
                  dmc.GridCol(html.Div([
                      dmc.Select(id=ids.DRIVER_GROUP, data=[], placeholder="driver genes of… (default: the top disease)", size="xs",
                                 clearable=True, w=300),
                      ui.graph("drivers", 380)]), span=12)]),
        dmc.Grid([dmc.GridCol(ui.graph("comparison", 380), span=12),
                  dmc.GridCol(ui.graph("scatter", 380), span=12)]),
    ], gap="sm", className="diseases-tab")

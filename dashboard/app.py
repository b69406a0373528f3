"""``create_app(atlas_path)``: the SigAtlas dashboard (Plotly Dash + Mantine). Reads the atlas only.

Flow: the URL's query string is the whole state (``dashboard.state``). Opening a link fills the
controls and runs the query; later changes are written to the address bar in the browser
(``history.replaceState``), never fed back through the Location, so a quick second click is
not held behind a round trip that could reset the controls; the query runs as a background callback (progress, cancel) that
stores its result in the disk cache under a key; the views are rendered from that key by an
ordinary callback, so switching a grouping, colour or ordering never recomputes the query.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
import numpy as np
from dash import ALL, Input, Output, State, clientside_callback, ctx, dcc, html

from compute.atlas import (
    atlas_warnings,
    label_transfer_line,
    study_report_lines,
    study_warnings,
    vocabulary_lines,
)
from compute.errors import QueryError
from compute.genemodules import GeneModules, gene_modules, signature_modules
from compute.query import HitRule, QueryParams, parse_gene_list
from compute.reference import assets_dir
from dashboard import api, export, figures, ids
from dashboard.data import DashboardData
from dashboard.presets import PRESETS, QUICK_PRESETS, preset_options
from dashboard.state import DEFAULTS, FRACTION_RANGES, TABS, decode_state, encode_state
from dashboard.upload import MAX_BYTES, GeneFileError, decode_upload, parse_gene_file

__all__ = ["MAX_REQUEST_BYTES", "answer_query", "append_genes", "apply_preset", "create_app", "disease_groups_note", "excluded_panel",
           "link_vocabulary", "module_detail", "modules_table", "modules_view", "params_from_state", "render_views",
           "require_basic_auth", "resolution_panel", "study_reports_panel", "study_vocabulary_table", "umap_labels_note",
           "view_tables", "vocabulary_note"]

log = logging.getLogger(__name__)

_GROUP_LABELS = {"disease": "disease", "cell_type": "cell type", "study": "study"}
COVERAGE_WARN = 0.7
# the controls that define a query, in the order the callbacks list them: (state key, id, property)
_QUERY_CONTROLS = (
    ("genes", ids.GENES, "value"),
    ("cell_types", ids.CELL_TYPES, "value"),
    ("diseases", ids.DISEASES, "value"),
    ("tissues", ids.TISSUES, "value"),
    ("studies", ids.STUDIES, "value"),
    ("disease_groups", ids.DISEASE_GROUPS, "value"),
    ("data", ids.DATA_KIND, "value"),
    ("rule", ids.RULE, "value"),
    ("cut", ids.CUT, "value"),
    ("cell_min", ids.CELL_MIN, "value"),
    ("samp_min", ids.SAMP_MIN, "value"),
    ("min_coverage", ids.MIN_COVERAGE, "value"),
    ("null", ids.NULL_DRAWS, "value"),
)
# view-only settings: changing them re-renders the stored result
_VIEW_CONTROLS = (
    ("top_n", ids.TOP_N, "value"),
    ("group_by", ids.GROUP_BY, "value"),
    ("heat", ids.HEAT_MODE, "value"),
    ("order", ids.HEAT_ORDER, "value"),
    ("color", ids.UMAP_COLOR, "value"),
    ("tab", ids.TABS, "value"),
)
_CONTROLS = _QUERY_CONTROLS + _VIEW_CONTROLS
_FIGURES = {  # view name -> graph id (each has CSV, SVG and PNG export)
    "diseases": ids.DISEASE_FIG, "robustness": ids.ROBUST_FIG, "drivers": ids.DRIVER_FIG,
    "comparison": ids.COMPARE_FIG, "scatter": ids.SCATTER_FIG, "umap": ids.UMAP_FIG, "genes": ids.HEATMAP_FIG,
    "modules": ids.MODULES_FIG,
}
_CSV_ONLY = ("studies",)
TOP_MISSING = 10  # co-attributing genes drawn in the modules heatmap and offered by "Add the top 10"
SIGNIFICANT = 0.05  # the p-value under which the plain-language reading calls a result more than chance


def _setting(state: dict, key: str, kind):
    """``state[key]`` as ``kind`` (int or float); QueryError naming the setting when it is not a
    number (a control emptied by the user)."""
    try:
        return kind(state[key])
    except (TypeError, ValueError):
        raise QueryError(f"{key} must be a number, got '{state[key]}'") from None


def params_from_state(state: dict, *, expression: bool = True) -> QueryParams:
    """The query a (decoded) state asks for; ``expression``: also rank by expression scores (only
    for atlases that store expression). Raises QueryError for an impossible combination."""
    rule = HitRule(state["rule"], _setting(state, "cut", float))
    return QueryParams(
        genes=tuple(parse_gene_list(state["genes"] or "")),
        cell_types=tuple(sorted(state["cell_types"] or ())),
        diseases=tuple(sorted(state["diseases"] or ())),
        tissues=tuple(sorted(state["tissues"] or ())),
        studies=tuple(sorted(state["studies"] or ())),
        # in the order chosen: a disease under two of them counts in the first
        disease_groups=tuple(dict.fromkeys(state.get("disease_groups") or ())),
        data=state["data"],
        rule=rule,
        cell_min=_setting(state, "cell_min", int),
        samp_min=_setting(state, "samp_min", int),
        min_coverage=_setting(state, "min_coverage", float),
        n_null=_setting(state, "null", int),
        evidence=True,
        expression=expression,
    )


# -- panels ---------------------------------------------------------------------------------
def resolution_panel(res) -> list:
    """Every pasted gene's fate: matched, renamed (case, previous symbol, alias, Ensembl id),
    ambiguous, not in the model, duplicate; coverage with a warning when low."""
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
        items.append(html.Div([html.Span(f"Not in the model ({len(res.missing)}): ", className="lbl"),
                               html.Span(", ".join(res.missing), id="res-missing")], className="missing"))
    if res.duplicates:
        items.append(html.Div([html.Span(f"Duplicates ignored ({len(res.duplicates)}): ", className="lbl"),
                               html.Span(", ".join(res.duplicates), id="res-duplicates")]))
    if res.weighted:
        items.append(html.Div("Weighted score: Σ w·a / Σ w.", className="note"))
    return items


COVERAGE_HELP = (
    "Genes measured: the signature genes (matched in the model) this study measured. Coverage: their share of the "
    "signature's weight. A gene a study never measured is missing, not zero: each cell is scored on the signature genes "
    "its study measured (weights renormalised over them), and a study whose coverage is below 'Min. study coverage' is left "
    "out of the rankings and the null, with the reason. Measured share: the share of a cell's attribution the study's gene "
    "panel is estimated to carry; its values are multiplied by it, so studies measured on different gene panels are put on "
    "one scale. Notes: warnings from reading the study (its ingest report, below).")


_HOW_MATCHED = {"id": "by its term id (CELLxGENE schema)", "map": "by the manifest's map", "label": "by the term's label",
                "synonym": "by a synonym of the term", "healthy": "healthy -> normal (PATO)"}
_KIND_WORDS = {"cell_type": "cell type", "disease": "disease", "tissue": "tissue"}


def vocabulary_note(data: DashboardData) -> dmc.Alert:
    """Which labels the views use: the ontologies and their versions, the rule, the label
    transfer and its held-out accuracy (or that the atlas records no vocabulary)."""
    vocab = data.atlas.meta.get("vocabulary") or {}
    if not data.has_vocabulary:
        return dmc.Alert("This atlas records no ontology terms (it was built before SigAtlas harmonised labels): filters, rankings "
                         "and colours use the studies' own labels. Rebuild it with python -m compute build for one vocabulary.",
                         title="Labels", color="gray", p="xs", id=ids.VOCABULARY_NOTE)
    versions = vocab.get("versions") or {}
    shown = ", ".join(f"{name} {versions[name]}" for name in ("CL", "MONDO", "UBERON", "PATO") if name in versions)
    lines = [html.Li("Filters, rankings and groupings use the studies' annotations harmonised to ontology terms: cell types to "
                     "the Cell Ontology, diseases to MONDO (healthy donors: PATO 'normal'), tissues to UBERON"
                     + (f" ({shown})" if shown else "") + ". A term includes its subtypes ('monocyte' selects classical and "
                     "non-classical monocytes); a label that matched no term is kept as its own group."),
             html.Li("Each study's labels and the terms they were matched to are listed below, under the study.")]
    transfer = label_transfer_line(data.atlas.meta)
    if transfer:
        lines.append(html.Li(transfer))
    return dmc.Alert(html.Ul(lines), title="Labels: one vocabulary across studies", color="blue", p="xs", id=ids.VOCABULARY_NOTE)


def study_vocabulary_table(study_id: str, entry) -> html.Table | None:
    """The study's labels as matched to ontology terms (label, term, id, how, cells) and those
    that matched none (with the reason); None when the atlas recorded none."""
    report = (entry or {}).get("report")
    vocab = report.get("vocabulary") if isinstance(report, dict) else None
    if not isinstance(vocab, dict):
        return None
    rows = []
    for kind, words in _KIND_WORDS.items():
        section = vocab.get(kind) if isinstance(vocab.get(kind), dict) else {}
        for m in section.get("mapped") or []:
            if isinstance(m, dict):
                rows.append(html.Tr([html.Td(words), html.Td(str(m.get("label", ""))), html.Td(str(m.get("term_label", ""))),
                                     html.Td(str(m.get("term_id", ""))), html.Td(_HOW_MATCHED.get(str(m.get("how")), str(m.get("how")))),
                                     html.Td(f"{int(m.get('n_cells') or 0):,}")]))
        for m in section.get("unmapped") or []:
            if isinstance(m, dict):
                rows.append(html.Tr([html.Td(words), html.Td(str(m.get("label", ""))), html.Td("no term: kept as its own group"),
                                     html.Td("–"), html.Td(str(m.get("reason", ""))), html.Td(f"{int(m.get('n_cells') or 0):,}")],
                                    className="missing"))
    if not rows:
        return None
    head = html.Tr([html.Th(c) for c in ("", "study's label", "shown as (ontology term)", "term id", "how it matched", "cells")])
    return html.Table([html.Thead(head), html.Tbody(rows)], id=f"{ids.STUDY_VOCABULARY_PREFIX}{study_id}", className="rank-table vocabulary")


def study_reports_panel(data: DashboardData) -> html.Div:
    """How each study was read, in plain words (its ingest report: values, species, symbols, QC,
    genes measured, measured share, warnings, its labels as matched to ontology terms), one fold
    per study, with which labels the views use and the atlas's build warnings above; "not
    recorded" for studies of atlases built before SigAtlas kept reports."""
    atlas = data.atlas
    parts: list = [dmc.Text("How each study was read", fw=700, size="sm", className="grid-title"), vocabulary_note(data)]
    warnings = atlas_warnings(atlas.meta)
    if warnings:
        items = html.Ul([html.Li(w) for w in warnings])
        # a long list (one line per study measured on a small panel) folds, its count in the title
        body = html.Details([html.Summary("show them"), items]) if len(warnings) > 3 else items
        parts.append(dmc.Alert(body, title=f"Atlas build warnings ({len(warnings)})", color="orange", p="xs", id=ids.ATLAS_WARNINGS))
    for s in atlas.studies:
        study_warns = study_warnings(s.meta)
        label = (f"{s.id} · {s.title} · {s.n_cells:,} cells" + (" · SIMULATED" if s.simulated else "")
                 + (f" · {len(study_warns)} warning{'s' if len(study_warns) > 1 else ''}" if study_warns else ""))
        table = study_vocabulary_table(s.id, s.meta)
        # the table says per label what the vocabulary sentences sum up
        words = set(vocabulary_lines(s.meta)) if table is not None else set()
        lines = [html.Li(line) for line in study_report_lines(s.meta) if line not in words]
        if s.simulated:
            lines.insert(0, html.Li("SIMULATED data: planted expression programs, not measurements of real samples.", className="sim"))
        lines += [html.Li(f"Warning: {w}", className="missing") for w in study_warns]
        body = [html.Summary(label), html.Ul(lines)]
        if table is not None:
            body += [dmc.Text("Labels matched to ontology terms", size="xs", fw=700), table]
        parts.append(html.Details(body, className="study-report"))
    return html.Div(parts, id=ids.STUDY_REPORTS, className="panel")


def _ranking_table(ranking, null, terms: bool = False, grouped: bool = False) -> html.Table:
    """The disease ranking as a table; its disease column says which labels it ranks (``terms``:
    MONDO terms; ``grouped``: diseases pooled under the chosen parent terms)."""
    p = null.p_values() if null is not None else {}
    floor = null.p_floor if null is not None else None
    disease = "disease" + (" (MONDO term or group)" if terms and grouped else " (MONDO term)" if terms else "")
    head = html.Tr([html.Th(c) for c in ("#", disease, "mean hit %", "median hit %", "samples", "studies", "cells", "p (null)")])

    def fmt_p(g):
        return figures.format_p(p[g], floor).removeprefix("p ").lstrip("= ") if g in p else "–"

    rows = [
        html.Tr([html.Td(int(r.rank)), html.Td(r.group, className="grp"), html.Td(f"{r.mean_hit_pct:.1f}"),
                 html.Td(f"{r.median_hit_pct:.1f}"), html.Td(int(r.n_samples)), html.Td(int(r.n_studies)),
                 html.Td(f"{int(r.n_cells):,}"), html.Td(fmt_p(r.group))])
        for r in ranking.itertuples()
    ]
    return html.Table([html.Thead(head), html.Tbody(rows)], id=ids.DISEASE_TABLE, className="rank-table")


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


# -- answering ------------------------------------------------------------------------------
def render_views(data: DashboardData, result, state: dict) -> dict:
    """Every view of one query result under the view settings in ``state`` (figures, tables,
    texts). Pure apart from reading gene columns for the heatmap."""
    params = result.params
    has_sim = data.atlas.has_simulated
    sim_note = " · includes SIMULATED studies (open circles)" if data.atlas.has_simulated else ""
    where = ", ".join(params.cell_types) if params.cell_types else "all cell types"
    grouped = f" · diseases grouped by {', '.join(params.disease_groups)}" if params.disease_groups else ""
    null = result.null.get("disease")
    ranking = _shown_ranking(result, state)
    left_out = _left_out_note(result)
    title = (f"Diseases ranked by per-sample hit %<br><sub>{where}{grouped} · hit = {params.rule.describe()}{left_out}"
             f"{sim_note}</sub>")
    cells = data.query_cells(params)  # the disease column as the ranking groups it
    base_rate = 100.0 - params.rule.value if params.rule.kind == "percentile" else None
    by = _group_by(state)
    null_text = (f" · null: {null.n_draws:,} matched gene sets over {null.n_cells:,} cells, p floor {null.p_floor:.2g}"
                 if null is not None else " · no null (set null draws to get p-values)")
    status = (f"{result.n_selected:,} cells selected · threshold {result.threshold:.3f} · {len(result.samples)} samples, "
              f"{len(result.diseases)} diseases pass cell_min={params.cell_min}, samp_min={params.samp_min}{left_out}{null_text}")
    out = {
        "resolution": resolution_panel(result.resolution),
        "status": status,
        "disease_fig": figures.disease_ranking_figure(result.samples, ranking, base_rate=base_rate, title=title,
                                                      null=null.groups if null is not None else None,
                                                      p_floor=null.p_floor if null is not None else None),
        "disease_table": _ranking_table(ranking, null, data.has_vocabulary, bool(params.disease_groups)),
        "study_rows": data.study_rows(result),
        "excluded": excluded_panel(result),
    }
    ev = result.evidence
    top = str(result.diseases["group"].iloc[0]) if len(result.diseases) else None
    if ev is not None and len(ev.thresholds):
        out["robust_fig"] = figures.robustness_figure(ev.thresholds, highlight=top, simulated=has_sim,
                                                      title=f"Ranking across hit thresholds · rank stability {ev.rank_stability:.2f}")
    else:
        out["robust_fig"] = figures.empty_figure("No disease passes the filters")
    out["driver_fig"] = driver_figure(data, result, state.get("driver_group"))
    if result.expression_diseases is not None:
        out["compare_fig"] = figures.score_comparison_figure(result.diseases, result.expression_diseases,
                                                             title="Attribution vs expression (score_genes) rankings, same cells and rule")
        sel = result.selection
        out["scatter_fig"] = figures.score_scatter_figure(result.scores[sel], result.expression_scores[sel],
                                                          cells["disease"].to_numpy()[sel].astype(str),
                                                          simulated=data.atlas.cells["simulated"].to_numpy()[sel],
                                                          title="Per cell: attribution score vs expression score")
    else:
        msg = "This atlas stores no expression, so expression scores cannot be compared"
        out["compare_fig"] = out["scatter_fig"] = figures.empty_figure(msg)
    if data.umap is not None:
        color = state.get("color") or "score"
        if color not in cells.columns and color != "score":
            out["umap_fig"] = figures.empty_figure(
                "This atlas has no predicted cell types (built before label transfer): rebuild it with "
                "python -m compute build, or colour by the annotated cell type" if color == "cell_type_predicted"
                else f"The atlas's cells have no '{color}' column")
        else:
            out["umap_fig"] = figures.umap_figure(data.umap, result.scores, cells, result.selection, color_by=color,
                                                  title=f"UMAP coloured by {_UMAP_COLOURS.get(color, color)}"
                                                  + (" (includes SIMULATED data)" if sim_note else ""))
        meta = out["umap_fig"].layout.meta or {}
        out["umap_badge"] = f"{meta.get('shown', data.atlas.n_cells):,} of {meta.get('total', data.atlas.n_cells):,} cells shown"
    else:
        out["umap_fig"] = figures.empty_figure("This atlas has no UMAP (imported attributions carry no embedding)")
        out["umap_badge"] = "no UMAP"
    mean_table, pct_table = data.gene_groups(result, by)
    order = state.get("order") or "cluster"
    if state.get("heat") == "dotplot":
        out["heatmap_fig"] = figures.dotplot_figure(mean_table, pct_table, group_label=_GROUP_LABELS[by], order=order, simulated=has_sim,
                                                    title=f"Genes x {_GROUP_LABELS[by]}: colour = mean attribution, size = % of hit cells with the gene")
    else:
        out["heatmap_fig"] = figures.heatmap_figure(mean_table, group_label=_GROUP_LABELS[by], order=order, simulated=has_sim,
                                                    title=f"Mean attribution: genes x {_GROUP_LABELS[by]}")
    out["tables"] = _tables(data, result, ranking, out["study_rows"], mean_table, pct_table)
    out["umap_labels"] = umap_labels_note(data, state.get("color") or "score")
    return out


# what the UMAP is coloured by, in words (its title says which cell-type labels it shows)
_UMAP_COLOURS = {
    "score": "signature score",
    "cell_type": "cell type (annotated, harmonised to the Cell Ontology)",
    "cell_type_predicted": "cell type (predicted by label transfer)",
    "disease": "disease", "study": "study",
}


def umap_labels_note(data: DashboardData, color: str) -> str:
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


def driver_figure(data: DashboardData, result, group: str | None):
    """Each gene's share of ``group``'s score (default: the top disease)."""
    ev = result.evidence
    top = str(result.diseases["group"].iloc[0]) if len(result.diseases) else None
    group = group or top
    if ev is None or group not in ev.gene_shares.columns:
        return figures.empty_figure("Driver genes appear once a disease is ranked")
    survive = ("" if ev.top_survives is None else
               f" · without {ev.top_gene}: {top} {'stays first' if ev.top_survives else 'is no longer first'}")
    return figures.driver_genes_figure(ev.gene_shares, group, simulated=data.atlas.has_simulated, title=f"Driver genes in {group}{survive}")


PRESENTER_FONT = {"size": 18}  # large type for a projector


def _shown_ranking(result, state: dict):
    top_n = int(state.get("top_n") or 0)
    return result.diseases.head(top_n) if top_n > 0 else result.diseases


def _group_by(state: dict) -> str:
    return state.get("group_by") if state.get("group_by") in _GROUP_LABELS else "disease"


def view_tables(data: DashboardData, result, state: dict) -> dict:
    """The data behind every view (as ``render_views(...)["tables"]``) without building figures."""
    return _tables(data, result, _shown_ranking(result, state), data.study_rows(result), *data.gene_groups(result, _group_by(state)))


def _tables(data, result, ranking, study_rows, mean_table, pct_table) -> dict:
    """The data behind every view, for CSV export and the snapshot."""
    import pandas as pd

    # the study CSV: the ranked studies, then those left out of the ranking with the reason
    studies = pd.DataFrame([{**r, "included": True, "reason": ""} for r in study_rows] + data.excluded_rows(result))
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
    ev = result.evidence
    if ev is not None:
        tables["robustness"] = ev.thresholds.reset_index(names="disease")
        tables["drivers"] = ev.gene_shares.reset_index(names="gene")
    if result.expression_diseases is not None:
        tables["comparison"] = result.diseases[["group", "mean_hit_pct", "rank"]].merge(
            result.expression_diseases[["group", "mean_hit_pct", "rank"]], on="group", how="outer", suffixes=("_attribution", "_expression"))
    cells = data.atlas.cells
    sel = result.selection
    cols = [c for c in ("cell_id", "study", "sample", "cell_type", "cell_type_original", "cell_type_ontology_term_id",
                        "cell_type_predicted", "cell_type_prediction_confidence", "disease", "disease_original",
                        "disease_ontology_term_id", "tissue", "simulated") if c in cells]
    umap = cells.loc[sel, cols].copy()
    if result.params.disease_groups:  # the disease as the ranking counted it
        umap.insert(cols.index("disease") + 1, "disease_group", data.query_cells(result.params)["disease"][sel].astype(str))
    umap["score"] = result.scores[sel]
    umap["hit"] = umap["score"] > result.threshold
    if result.expression_scores is not None:
        umap["expression_score"] = result.expression_scores[sel]
    tables["umap"] = umap
    tables["scatter"] = umap
    return tables


def answer_query(data: DashboardData, state: dict, progress=None) -> dict:
    """Run the query ``state`` asks for and render every view; plain function (tested without a
    browser). Bad input comes back as a message in "status", never as an exception."""
    empty = {
        "resolution": [], "status": "", "disease_table": html.Div(), "study_rows": [], "excluded": None, "umap_badge": "",
        "umap_labels": "", "tables": {},
        "disease_fig": figures.empty_figure("Paste genes (any separators) or pick a preset, then Run"),
        **{k: figures.empty_figure("Appears after a query") for k in
           ("robust_fig", "driver_fig", "compare_fig", "scatter_fig", "umap_fig", "heatmap_fig")},
    }
    if not parse_gene_list(state.get("genes") or ""):
        return empty
    try:
        params = params_from_state(state, expression=data.atlas.has_expression)
        result = data.query(params, progress=progress)
    except QueryError as exc:
        res = data.atlas.resolve(list(parse_gene_list(state.get("genes") or "")))
        return empty | {"resolution": resolution_panel(res) if res.requested else [], "status": html.Div(str(exc), className="error")}
    return render_views(data, result, state) | {"result": result}


def link_vocabulary(data: DashboardData) -> dict:
    """What a link may name (decode_state's ``known``): per filter the values it accepts, each
    mapped to the form its control shows (a term id to the term's label), the disease groups,
    the studies, presets and tabs."""
    return {**{key: data.filter_choices(key) for key in ("cell_types", "diseases", "tissues")},
            "disease_groups": data.disease_group_choices, "studies": [s.id for s in data.atlas.studies],
            "preset": list(PRESETS), "tab": list(TABS)}


def apply_preset(data: DashboardData, key: str) -> tuple[str, list[str]]:
    """(gene text, cell types to select) for preset ``key``: its Cell Ontology term as the filter
    shows it (["monocyte"], which selects every monocyte subtype), or [] when it names none or the
    atlas has no cells under it."""
    p = PRESETS[key]
    return "\n".join(p.genes), data.cell_types_for_term(p.cell_type_term, p.cell_type_fallback)


# -- gene modules -----------------------------------------------------------------------------
def _perm_p(p: float, n_perm: int) -> str:
    return figures.format_p(p, 1 / (1 + n_perm) if n_perm > 0 else None)


def _not_considered(res, sm, gm: GeneModules) -> list:
    """Why each signature gene is left out of the module analysis, one line per reason."""
    prm = gm.params
    sparse = f"detected in < {prm.get('min_detection', 0.01):.0%} of cells, too few to correlate"
    if prm.get("max_genes") and len(gm.genes) >= prm["max_genes"]:
        sparse += f", or not among the {prm['max_genes']:,} most often detected genes"
    groups = [(genes, why) for genes, why in ((res.missing, "absent from the gene order (not in the model)"),
                                              (res.ambiguous, "ambiguous names (several genes of the gene order), not used"),
                                              (sm.not_considered, sparse)) if genes]
    if not groups:
        return []
    n = sum(len(g) for g, _ in groups)
    return [html.Div([html.Span(f"Not considered ({n}):", className="lbl"),
                      html.Ul([html.Li([", ".join(genes), html.Span(f" – {why}", className="lbl")]) for genes, why in groups])],
                     id=ids.MODULES_NOT_CONSIDERED, className="missing")]


def _reading(sm, top) -> str:
    """One line for a clinician: do the signature's genes carry attribution together?"""
    if len(sm.considered) < 2 or not np.isfinite(sm.z):
        return "Too few of the signature's genes are detected widely enough to tell whether they carry attribution together."
    if sm.p_value <= SIGNIFICANT and sm.z > 0:
        text = ("Reading: the genes carry attribution together, in the same cells, more than random gene sets of the same "
                "size do: they behave like one program.")
        if top is not None:
            text += f" The clearest overlap is module {top['name']} ({top['overlap']} of its {top['size']} genes)."
        return text
    return ("Reading: the genes carry attribution together no more than random gene sets of the same size: the signature may "
            "mix several programs, or programs active in different cells.")


def modules_view(data: DashboardData, result, gm: GeneModules) -> dict:
    """The Modules tab: where the signature of ``result`` (None: no query yet) sits among the
    atlas's gene modules ``gm``. Returns {"summary": components, "overlap_rows", "missing_rows":
    grid rows, "top_missing": the first TOP_MISSING missing genes, "figure": the co-attribution
    heatmap, "module_options", "module_value": the module Select's data and value, "modules":
    {module number (str): name, size, coherence, z, p_value, hub_genes, genes}, "method": the
    caption}. Pure: ``signature_modules`` runs its permutations here (under a second)."""
    table = gm.table
    prm = gm.params
    n_perm = int(prm.get("n_perm", 0))
    modules = {str(int(r["module"])): {"name": str(r["name"]), "size": int(r["size"]), "coherence": float(r["coherence"]),
                                       "z": float(r["z"]), "p_value": float(r["p_value"]), "hub_genes": str(r["hub_genes"]),
                                       "genes": [str(g) for g in r["genes"]]} for _, r in table.iterrows()}
    options = [{"value": k, "label": f"{m['name']} · {m['size']} genes · z = {m['z']:.1f}"} for k, m in modules.items()]
    method = (f"Modules are atlas-wide: every cell counts, whatever the cell filters. How they are found: "
              f"{gm.method or 'not computed'}; genes detected in ≥ {prm.get('min_detection', 0.01):.0%} of "
              f"cells ({len(gm.genes):,} genes), cut where the average correlation falls below r = {prm.get('r_cut', 0):g}, "
              f"modules of ≥ {prm.get('min_size', 0)} genes. Coherence r̄ is the mean correlation over a gene set's pairs; its "
              f"z-score is a permutation z-score against {n_perm:,} bin-matched random gene sets (each gene replaced by a random "
              "gene of similar mean attribution and detection), with an empirical p-value. Overlap p-values are hypergeometric; "
              "a missing gene's z compares its mean correlation with the signature against all other genes (median, MAD).")
    out = {"summary": [], "overlap_rows": [], "missing_rows": [], "top_missing": [], "module_options": options,
           "module_value": options[0]["value"] if options else None, "modules": modules, "method": method,
           "figure": figures.empty_figure("Run a query to see how its genes co-attribute")}
    if not modules:
        n, size = len(gm.genes), prm.get("min_size", 0)
        why = (f"only {n} {'gene qualifies' if n == 1 else 'genes qualify'} (detected in ≥ {prm.get('min_detection', 0.01):.0%} "
               f"of cells), and a module needs at least {size}" if n < max(int(size), 2) else
               f"none of its {n:,} widely detected genes fall into a group of at least {size} genes that carry attribution together")
        out["summary"].append(dmc.Alert(f"This atlas has no gene modules: {why}.", color="orange", p="xs", id=ids.MODULES_NONE))
    if result is None:
        out["summary"].append(dmc.Text("The signature's place among the modules appears once a query has run (paste genes or "
                                       "pick a preset).", id=ids.MODULES_READING))
        return out
    res = result.resolution
    sm = signature_modules(gm, list(res.matched))
    n_req = len(res.matched) + len(res.missing) + len(res.ambiguous)
    n_in = len(sm.considered)
    head = f"{n_in} of {n_req} signature genes are among the {len(gm.genes):,} module genes"
    if n_in >= 2 and np.isfinite(sm.z):
        head += (f"; coherence r̄ = {sm.coherence:.3f} (random gene sets of the same size: {sm.null_mean:.3f} ± {sm.null_sd:.3f}), "
                 f"z = {sm.z:.1f}, {_perm_p(sm.p_value, sm.n_perm)}")
    overlaps = sm.overlaps
    top = overlaps.iloc[0] if len(overlaps) and overlaps["p_value"].iloc[0] <= SIGNIFICANT else None
    out["summary"] += [dmc.Text(head, fw=700, id=ids.MODULES_HEAD),
                       dmc.Text(_reading(sm, top), id=ids.MODULES_READING), *_not_considered(res, sm, gm)]
    out["overlap_rows"] = [{"module": r.name, "size": int(r.size), "overlap": int(r.overlap), "overlap_genes": r.overlap_genes,
                            "jaccard": round(float(r.jaccard), 3), "p_value": float(f"{r.p_value:.2g}"),
                            "module_z": round(float(r.module_z), 1)} for r in overlaps.itertuples()]
    missing = sm.missing
    out["missing_rows"] = [{"gene": r.gene, "mean_r": round(float(r.mean_r), 3), "z": round(float(r.z), 1) if np.isfinite(r.z) else None,
                            "module": r.module} for r in missing.itertuples()]
    out["top_missing"] = [str(g) for g in missing["gene"].head(TOP_MISSING)]
    if len(overlaps):
        out["module_value"] = str(int(overlaps["module"].iloc[0]))
    genes = [*sm.considered, *out["top_missing"]]
    if len(genes) >= 2:
        index = gm.index()
        idx = [index[g] for g in genes]
        names = {int(m): n for m, n in zip(table["module"], table["name"], strict=True)} if len(table) else {}
        out["figure"] = figures.coattribution_heatmap(
            gm.corr[np.ix_(idx, idx)], genes, n_in, modules=[names.get(int(gm.labels[i]), "") for i in idx],
            simulated=data.atlas.has_simulated,
            title=f"Co-attribution: the signature's {n_in} genes and the top {len(out['top_missing'])} genes missing from it")
    else:
        out["figure"] = figures.empty_figure("Fewer than two of the signature's genes are among the module genes: nothing to correlate")
    return out


def modules_table(data: DashboardData, result, gm: GeneModules):
    """The data behind the modules heatmap (CSV export): one row per drawn gene (gene, set:
    "signature" / "missing", module) and its correlation with every drawn gene."""
    import pandas as pd

    fig = modules_view(data, result, gm)["figure"]
    meta = fig.layout.meta or {}
    genes = meta.get("genes") or []
    if not genes:
        return pd.DataFrame(columns=["gene", "set", "module"])
    idx = [gm.index()[g] for g in genes]
    corr = pd.DataFrame(gm.corr[np.ix_(idx, idx)].astype(float).round(4), columns=genes)
    n_sig = int(meta["n_signature"])
    head = pd.DataFrame({"gene": genes, "set": ["signature" if i < n_sig else "missing" for i in range(len(genes))],
                         "module": meta["modules"]})
    return pd.concat([head, corr], axis=1)


def module_detail(module: dict | None, n_perm: int = 0) -> list:
    """The module browser's text for one module (an entry of ``modules_view(...)["modules"]``)."""
    if not module:
        return [dmc.Text("No module selected.", c="dimmed", size="sm")]
    stats = (f"{module['name']}: {module['size']} genes · coherence r̄ = {module['coherence']:.3f} · z = {module['z']:.1f} · "
             f"{_perm_p(module['p_value'], n_perm)}")
    return [dmc.Text(stats, fw=700, size="sm"),
            html.Div([html.Span("Hub genes (most correlated with the rest): ", className="lbl"),
                      html.Span(module["hub_genes"], id=ids.MODULE_HUBS)]),
            html.Div([html.Span("All genes: ", className="lbl"), html.Span(", ".join(module["genes"]), id=ids.MODULE_GENES)])]


def append_genes(text: str | None, genes: list[str]) -> str:
    """``text`` (the gene box) with ``genes`` added on new lines, leaving out those already in it."""
    have = {g.upper() for g, _ in parse_gene_list(text or "")}
    new = [g for g in dict.fromkeys(genes) if g.upper() not in have]
    text = (text or "").rstrip()
    return "\n".join([text, *new] if text else new)


# -- layout ---------------------------------------------------------------------------------
def _export_bar(view: str) -> dmc.Group:
    buttons = [dmc.Button("CSV", id=f"{ids.CSV_PREFIX}{view}", size="compact-xs", variant="default", className="export")]
    if view not in _CSV_ONLY:
        buttons += [dmc.Button("SVG", id=f"{ids.IMG_PREFIX}{view}-svg", size="compact-xs", variant="default", className="export"),
                    dmc.Button("PNG", id=f"{ids.IMG_PREFIX}{view}-png", size="compact-xs", variant="default", className="export")]
    return dmc.Group(buttons, gap=4, justify="flex-end", className="export-bar")


def _graph(view: str, height: int | None = None) -> html.Div:
    # the figure sets its own height (long gene lists make tall heatmaps); ``height`` is the floor
    style = {"minHeight": f"{height}px"} if height else None
    return html.Div([_export_bar(view), dcc.Graph(id=_FIGURES[view], style=style,
                                                  config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": f"sigatlas-{view}"}})],
                    className="panel")


def _segmented(id_, options: dict, value) -> dmc.SegmentedControl:
    return dmc.SegmentedControl(id=id_, data=[{"value": k, "label": v} for k, v in options.items()], value=value, size="xs")


def _sim_badge(summary: dict, id_: str, note: str = "") -> dmc.Badge:
    """The orange badge that labels views of an atlas holding simulated studies."""
    return dmc.Badge(f"Includes SIMULATED data: {summary['n_simulated']} of {summary['n_studies']} studies{note}", id=id_, color="orange",
                     variant="outline", size="lg")


def _grid(id_: str, columns: list[dict], page_size: int = 10, csv_name: str | None = None) -> dag.AgGrid:
    """A sortable, filterable, paged table; ``csv_name``: the file its CSV export (all rows) is saved as."""
    extra = {"csvExportParams": {"fileName": csv_name}} if csv_name else {}
    return dag.AgGrid(id=id_, columnDefs=columns, rowData=[], defaultColDef={"sortable": True, "filter": True, "resizable": True},
                      dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": page_size,
                                       "paginationPageSizeSelector": False},
                      className="ag-theme-alpine", **extra)


def _grid_title(text: str, *buttons) -> dmc.Group:
    return dmc.Group([dmc.Text(text, fw=700, size="sm"), dmc.Group(list(buttons), gap=6)], justify="space-between", className="grid-title")


def _csv_button(id_: str) -> dmc.Button:
    return dmc.Button("CSV", id=id_, size="compact-xs", variant="default", className="export")


def _modules_tab(data: DashboardData) -> dmc.Stack:
    """The Modules tab: the signature among the atlas's gene modules, then the module browser.
    Filled by ``_render_modules`` only while the tab shows (modules take seconds the first time)."""
    s = data.summary
    overlap_grid = _grid(ids.MODULES_OVERLAP_GRID, [
        {"field": "module", "width": 105}, {"field": "size", "width": 90}, {"field": "overlap", "width": 105},
        {"field": "overlap_genes", "headerName": "overlapping genes", "flex": 1, "minWidth": 240, "wrapText": True, "autoHeight": True,
         "cellStyle": {"wordBreak": "normal", "lineHeight": "unset", "paddingTop": "10px", "paddingBottom": "10px"}},
        {"field": "jaccard", "headerName": "Jaccard", "width": 110},
        {"field": "p_value", "headerName": "p (overlap)", "width": 145, "sort": "asc",
         "headerTooltip": "hypergeometric: the chance of sharing this many genes or more"},
        {"field": "module_z", "headerName": "module z", "width": 125, "headerTooltip": "the module's own coherence z-score"},
    ], csv_name="sigatlas-module-overlaps.csv")
    missing_grid = _grid(ids.MODULES_MISSING_GRID, [
        {"field": "gene", "flex": 1, "minWidth": 100},
        {"field": "mean_r", "headerName": "mean r", "width": 130, "sort": "desc",
         "headerTooltip": "mean correlation with the signature's genes"},
        {"field": "z", "width": 85, "headerTooltip": "against all other genes: (x - median) / (1.4826 MAD)"},
        {"field": "module", "width": 105},
    ], csv_name="sigatlas-missing-genes.csv")
    spinner = dmc.Group([dmc.Loader(size="sm"), dmc.Text("Computing gene modules (the first time takes a few seconds)…", size="sm")],
                        gap="xs", className="modules-spinner")
    missing = html.Div([
        _grid_title("Co-attributing genes missing from the signature", _csv_button(ids.MODULES_MISSING_CSV)),
        dmc.Button(f"Add the top {TOP_MISSING} to the signature", id=ids.ADD_MISSING, size="compact-sm", variant="light", disabled=True,
                   className="grid-title"),
        missing_grid], className="panel")
    browser = html.Div([
        dmc.Text("Browse the atlas's gene modules", fw=700, size="sm", className="grid-title"),
        dmc.Group([dmc.Select(id=ids.MODULE_SELECT, data=[], placeholder="a module (name · size · z)", searchable=True, size="xs", w=260,
                              allowDeselect=False),
                   dmc.Button("Use this module as the signature", id=ids.USE_MODULE, size="compact-sm", variant="light", disabled=True)],
                  gap="xs"),
        html.Div(id=ids.MODULE_DETAIL, className="module-detail"),
    ], className="panel modules-browser")
    content = html.Div([
        html.Div(id=ids.MODULES_SUMMARY, className="modules-summary"),
        html.Div([_grid_title("Modules the signature overlaps", _csv_button(ids.MODULES_OVERLAP_CSV)), overlap_grid], className="panel"),
        # the two ways to rewrite the signature from here, side by side
        dmc.Grid([dmc.GridCol(missing, span={"base": 12, "lg": 6}), dmc.GridCol(browser, span={"base": 12, "lg": 6})]),
        _graph("modules", 420),
    ])
    sim = [_sim_badge(s, ids.MODULES_SIM, " · modules are computed over every study")] if s["n_simulated"] else []
    return dmc.Stack([
        *sim,
        dcc.Loading(content, id=ids.MODULES_LOADING, delay_show=300, custom_spinner=spinner, overlay_style={"visibility": "visible", "opacity": 0.4}),
        html.Div(id=ids.MODULES_METHOD, className="note"),
    ], gap="sm")


_FILTER_HELP = {
    "cell_types": "Cell Ontology terms with their cells; a term includes its subtypes",
    "diseases": "MONDO terms (healthy: normal) with their cells; a term includes its subtypes",
    "tissues": "UBERON terms with their cells; a term includes its parts",
}


def _term_filter(data: DashboardData, id_: str, key: str, label: str, placeholder: str) -> dmc.MultiSelect:
    """A filter over one annotation: the atlas's ontology terms as a tree with cell counts, and
    the labels that matched no term; the values are term labels (or those labels)."""
    help_text = _FILTER_HELP[key] if data.has_vocabulary else "the studies' own labels (this atlas records no ontology terms)"
    return dmc.MultiSelect(id=id_, data=data.filter_choices(key).options, value=[], searchable=True, clearable=True, size="xs",
                           label=label, placeholder=placeholder, description=help_text, maxDropdownHeight=360)


def disease_groups_note(data: DashboardData, groups) -> str:
    """What the chosen disease groups pool, in words ("" when none is chosen)."""
    groups = list(dict.fromkeys(groups or []))
    if not groups:
        return ""
    mapping = data.disease_grouping(groups)
    parts = []
    for g in groups:
        pooled = sorted(d for d, grp in mapping.items() if grp == g)
        parts.append(f"{g}: {', '.join(pooled)}" if pooled else f"{g}: no disease left (an earlier group took them)")
    return "Ranked as one: " + "; ".join(parts) + "."


def _controls(data: DashboardData):
    d = DEFAULTS
    return dmc.Stack([
        dmc.Text("Signature", fw=700),
        dmc.Textarea(id=ids.GENES, placeholder="Paste genes: any separators, any case, symbols, aliases or Ensembl ids. "
                     "Optional weights: GENE:2 or GENE 2.0", autosize=True, minRows=5, maxRows=10, value="",
                     className="genes", spellCheck=False),
        dmc.Group([dmc.Tooltip(dmc.Button(PRESETS[k].label.split(" (")[0], id={"type": "preset", "key": k}, size="compact-sm",
                                          variant="light", className="preset"), label=PRESETS[k].source, multiline=True, w=320)
                   for k in QUICK_PRESETS], gap=6),
        dmc.Select(id=ids.PRESET_SELECT, data=preset_options(), searchable=True, clearable=True, size="xs",
                   placeholder="More presets: Hallmarks, immune markers…"),
        dcc.Upload(html.Div(["Drop or ", html.A("choose"), " a GMT / CSV / TSV gene list"]), id=ids.UPLOAD, className="upload",
                   multiple=False),
        dmc.Select(id=ids.UPLOAD_SETS, data=[], placeholder="gene sets in the uploaded file", size="xs", searchable=True,
                   style={"display": "none"}),
        html.Div(id=ids.UPLOAD_NOTE, className="note"),
        dcc.Store(id=ids.UPLOAD_STORE),
        dmc.Group([dmc.Button("Run query", id=ids.RUN, className="primary", fullWidth=True, style={"flex": 1}),
                   dmc.Button("Cancel", id=ids.CANCEL, variant="outline", color="red", style={"display": "none"})], gap=6),
        html.Div([dmc.Progress(id=ids.PROGRESS, value=0, size="sm"), dmc.Text(id=ids.PROGRESS_TEXT, size="xs", c="dimmed")],
                 className="progress-wrap"),
        html.Div(id=ids.RESOLUTION, className="resolution"),
        dmc.Divider(label="Cells", labelPosition="left"),
        _term_filter(data, ids.CELL_TYPES, "cell_types", "Cell types", "all cell types"),
        _term_filter(data, ids.DISEASES, "diseases", "Diseases", "all diseases"),
        _term_filter(data, ids.TISSUES, "tissues", "Tissues", "all tissues"),
        dmc.MultiSelect(id=ids.STUDIES, data=data.study_options, value=[], searchable=True, clearable=True, size="xs",
                        label="Studies", placeholder="all studies"),
        html.Div([dmc.Text("Data", size="xs", c="dimmed"),
                  _segmented(ids.DATA_KIND, {"all": "all", "real": "real", "simulated": "simulated"}, d["data"])]),
        dmc.Divider(label="Hits and ranking", labelPosition="left"),
        dmc.Group([
            dmc.Select(id=ids.RULE, data=[{"value": "percentile", "label": "percentile"}, {"value": "quantile", "label": "quantile"},
                                          {"value": "value", "label": "score value"}], value=d["rule"], size="xs", label="Hit rule",
                       allowDeselect=False, w=120),
            dmc.NumberInput(id=ids.CUT, value=d["cut"], size="xs", label="cut-off", step=1, w=90, debounce=True),
        ], gap=6, grow=True),
        dmc.Group([
            dmc.NumberInput(id=ids.CELL_MIN, value=d["cell_min"], min=1, step=1, size="xs", label="cell_min", debounce=True),
            dmc.NumberInput(id=ids.SAMP_MIN, value=d["samp_min"], min=1, step=1, size="xs", label="samp_min", debounce=True),
            dmc.NumberInput(id=ids.TOP_N, value=d["top_n"], min=0, step=1, size="xs", label="top N (0 = all)", debounce=True),
        ], gap=6, grow=True),
        dmc.MultiSelect(id=ids.DISEASE_GROUPS, data=data.disease_group_choices.options, value=[], searchable=True, clearable=True,
                        size="xs", label="Group diseases by", placeholder="each disease on its own" if data.has_vocabulary else
                        "this atlas records no disease terms", disabled=not data.disease_group_choices.options,
                        description="MONDO parent terms: each disease under one counts as it (the first chosen that applies)",
                        maxDropdownHeight=320),
        html.Div(id=ids.DISEASE_GROUPS_NOTE, className="note"),
        dmc.NumberInput(id=ids.MIN_COVERAGE, value=d["min_coverage"], min=FRACTION_RANGES["min_coverage"][0],
                        max=FRACTION_RANGES["min_coverage"][1], step=0.05, decimalScale=2, size="xs", debounce=True,
                        label="Min. study coverage (0-1)",
                        description="min_coverage: studies that measured less of the signature's weight are left out, with the reason"),
        dmc.NumberInput(id=ids.NULL_DRAWS, value=d["null"], min=0, max=10000, step=100, size="xs", debounce=True,
                        label="Null: matched random gene sets (0 = off; 1,000 gives p ≥ 0.001)"),
    ], gap=8, className="controls")


def _layout(data: DashboardData):
    s = data.summary
    sim_badge = _sim_badge(s, ids.SIM_BADGE) if s["n_simulated"] else dmc.Badge("real data", id=ids.SIM_BADGE, variant="light")
    header = html.Header([
        dmc.Group([html.Span("SigAtlas", className="brand"),
                   dmc.Text(f"atlas '{s['name']}' · {s['n_studies']} studies · {s['n_cells']:,} cells · {s['n_genes']:,} genes"
                            + (" · imported SIGnature attributions" if s["imported"] else ""), c="dimmed", size="sm")], gap="sm"),
        dmc.Group([
            sim_badge,
            dmc.TextInput(id=ids.SHARE_LINK, value="", readOnly=True, size="xs", w=260, className="share-link"),
            dcc.Clipboard(target_id=ids.SHARE_LINK, id=ids.COPY_LINK, title="copy link to this view", className="copy-link"),
            dmc.Button("Snapshot (zip)", id=ids.SNAPSHOT, size="compact-sm", variant="default"),
            dmc.Button("Save view", id=ids.SAVE_VIEW, size="compact-sm", variant="default"),
            dmc.Switch(id=ids.PRESENTER, label="Presenter", size="sm"),
        ], gap="xs"),
    ], className="topbar")
    presenter_bar = dmc.Group([
        dmc.Button("◀ previous view", id=ids.PREV_VIEW, size="compact-md", variant="light"),
        dmc.Text(id=ids.VIEW_POS, size="lg"),
        dmc.Button("next view ▶", id=ids.NEXT_VIEW, size="compact-md", variant="light"),
    ], justify="center", className="presenter-bar")
    diseases_tab = dmc.Stack([
        _graph("diseases", 480),
        html.Details([html.Summary("Ranking as a table"), html.Div(id="disease-table-wrap")], open=True),
        html.Div(id=ids.EXCLUDED_DISEASES),
        dmc.Grid([dmc.GridCol(_graph("robustness", 380), span={"base": 12, "lg": 6}),
                  dmc.GridCol(html.Div([
                      dmc.Select(id=ids.DRIVER_GROUP, data=[], placeholder="driver genes of… (default: the top disease)", size="xs",
                                 clearable=True, w=300),
                      _graph("drivers", 380)]), span={"base": 12, "lg": 6})]),
        dmc.Grid([dmc.GridCol(_graph("comparison", 380), span={"base": 12, "lg": 6}),
                  dmc.GridCol(_graph("scatter", 380), span={"base": 12, "lg": 6})]),
    ], gap="sm")
    grid = _grid(ids.STUDY_GRID, [
        # the study stays in view while the coverage columns scroll in
        {"field": "rank", "width": 80, "pinned": "left"}, {"field": "study", "width": 110, "pinned": "left"},
        {"field": "title", "flex": 2, "minWidth": 220},
        {"field": "data", "width": 120, "cellClassRules": {"sim-cell": "params.value == 'SIMULATED'"}},
        {"field": "diseases", "flex": 1, "minWidth": 160}, {"field": "samples", "width": 100}, {"field": "cells", "width": 100},
        {"field": "mean_hit_pct", "headerName": "mean hit %", "width": 120, "sort": "desc"},
        {"field": "p_value", "headerName": "p (null)", "width": 110},
        {"field": "measured", "headerName": "Genes measured", "width": 150, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? '' : params.value + ' / ' + params.data.requested"},
         "headerTooltip": "signature genes this study measured, of those matched in the model"},
        {"field": "coverage", "headerName": "Coverage", "width": 120, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? '' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the share of the signature's weight carried by the genes this study measured"},
        {"field": "measured_share", "headerName": "Measured share", "width": 150, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": "params.value == null ? 'not recorded' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the share of a cell's attribution this study's gene panel is estimated to carry; its values are "
                          "multiplied by it to put every panel on one scale"},
        {"field": "notes", "headerName": "Notes", "flex": 2, "minWidth": 220, "wrapText": True, "autoHeight": True,
         "tooltipField": "notes", "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
    ], page_size=20)
    tabs = dmc.Tabs([
        dmc.TabsList([dmc.TabsTab("Diseases", value="diseases"), dmc.TabsTab("Studies", value="studies"),
                      dmc.TabsTab("Cells (UMAP)", value="cells"), dmc.TabsTab("Genes", value="genes"),
                      dmc.TabsTab("Modules", value="modules")]),
        dmc.TabsPanel(diseases_tab, value="diseases", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            html.Div(id=ids.EXCLUDED_STUDIES),
            html.Div([_export_bar("studies"), grid, dmc.Text(COVERAGE_HELP, size="xs", c="dimmed", id=ids.COVERAGE_HELP)],
                     className="panel"),
            study_reports_panel(data),
        ], gap="sm"), value="studies", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            dmc.Group([html.Div([dmc.Text("Colour by", size="xs", c="dimmed"),
                                 _segmented(ids.UMAP_COLOR, {"score": "score", "cell_type": "cell type (annotated)",
                                                             "cell_type_predicted": "cell type (predicted)", "disease": "disease",
                                                             "study": "study"}, DEFAULTS["color"])]),
                       dmc.Badge(id=ids.UMAP_BADGE, variant="light", size="lg")]),
            dmc.Text(id=ids.UMAP_LABELS, size="xs", c="dimmed"),
            _graph("umap", 620)]), value="cells", pt="sm"),
        dmc.TabsPanel(dmc.Stack([
            dmc.Group([
                html.Div([dmc.Text("Groups", size="xs", c="dimmed"), _segmented(ids.GROUP_BY, _GROUP_LABELS, DEFAULTS["group_by"])]),
                html.Div([dmc.Text("View", size="xs", c="dimmed"), _segmented(ids.HEAT_MODE, {"heatmap": "heatmap", "dotplot": "dot plot"}, DEFAULTS["heat"])]),
                html.Div([dmc.Text("Order", size="xs", c="dimmed"), _segmented(ids.HEAT_ORDER, {"cluster": "clustered", "score": "by score"}, DEFAULTS["order"])]),
            ]),
            _graph("genes", 640)]), value="genes", pt="sm"),
        dmc.TabsPanel(_modules_tab(data), value="modules", pt="sm"),
    ], id=ids.TABS, value=DEFAULTS["tab"])
    results = html.Div([
        html.Div(id=ids.STATE_NOTES),
        html.Div(id=ids.STATUS, className="status"),
        tabs,
        html.Footer("Scores are mean Integrated-Gradients attributions of the signature genes (Gold et al., SIGnature); p-values "
                    "come from random gene sets matched on mean attribution and detection. Simulated studies carry planted programs "
                    "and are labelled SIMULATED wherever they appear."),
    ], className="results")
    return dmc.MantineProvider(html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.STATE_SEARCH),
        dcc.Store(id=ids.QUERY_REQUEST, data=0),
        dcc.Store(id=ids.RESULT_KEY),
        dcc.Store(id=ids.MODULES_STORE),
        dcc.Store(id=ids.SAVED_VIEWS, storage_type="local", data=[]),
        dcc.Download(id=ids.DOWNLOAD),
        header, presenter_bar,
        html.Div([_controls(data), results], className="main"),
    ], id=ids.ROOT, className="app"))


# -- the app --------------------------------------------------------------------------------
def _state(values: list, keys=_CONTROLS) -> dict:
    """Control values (in ``keys`` order) as a state dict, defaults for empty ones."""
    out = dict(DEFAULTS)
    for (key, _, _), v in zip(keys, values, strict=True):
        if v is not None:
            out[key] = v
    return out


class _SharedJobManager(dash.DiskcacheManager):
    """Dash's DiskcacheManager for jobs shared by many users and by several server processes
    (gunicorn workers of one machine polling each other's jobs through the same diskcache).

    Each started job gets its own result key: Dash derives it from the callback's inputs alone,
    so two users starting the same query at once (a link opened by a room) shared one key, the
    first poll took the result away and the other page never updated. A finished job that
    another worker forked stays a zombie until that worker reaps it: it is not waited for
    (psutil waited 1 s for it, holding the cache's write lock)."""

    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        return f"{super().build_cache_key(fn, args, cache_args_to_ignore, triggered)}-{secrets.token_hex(8)}"

    def terminate_job(self, job):
        import psutil

        if job is None:
            return
        try:
            if psutil.Process(int(job)).status() == psutil.STATUS_ZOMBIE:
                return  # finished; its parent reaps it when it next starts a job
        except psutil.NoSuchProcess:
            return
        super().terminate_job(job)


def _background_manager(data: DashboardData):
    import diskcache

    directory = data.atlas.cache.directory / "dash-jobs"
    directory.mkdir(parents=True, exist_ok=True)
    return _SharedJobManager(diskcache.Cache(str(directory)))


def _warm_up(data: DashboardData) -> None:
    """Load the cells table and the gene symbol table in the background (about 2 s together), so
    the first query does not wait for them; background jobs forked later inherit both."""
    import threading

    from compute.query import symbol_table

    def work():
        try:
            _ = data.atlas.cells
            symbol_table()
        except Exception:  # noqa: BLE001 - the first query will load (and report) them itself
            pass

    threading.Thread(target=work, name="sigatlas-warm-up", daemon=True).start()


# -- serving: request size, basic auth ------------------------------------------------------
# every request body (Flask refuses larger ones with 413 before reading them); a gene file of
# upload.MAX_BYTES arrives inside a callback request as base64, 4/3 of its size, plus the state
MAX_REQUEST_BYTES = 8 * 2**20


def require_basic_auth(server, credentials: tuple[str, str]) -> None:
    """Answer every request to ``server`` (pages, assets, Dash's callbacks, the API) with 401
    unless it carries HTTP basic auth with ``credentials``."""
    import flask

    user, password = (c.encode("utf-8") for c in credentials)

    def check():
        auth = flask.request.authorization
        basic = auth is not None and auth.type == "basic"
        given_user = (auth.username or "").encode("utf-8") if basic else b""
        given_password = (auth.password or "").encode("utf-8") if basic else b""
        # both compared in constant time, always: the answer's timing tells nothing about either
        ok = hmac.compare_digest(given_user, user) & hmac.compare_digest(given_password, password)
        if not ok:
            return flask.Response("SigAtlas: authentication required\n", 401,
                                  {"WWW-Authenticate": 'Basic realm="SigAtlas", charset="UTF-8"', "Content-Type": "text/plain"})
        return None

    # first, before Dash's own hooks
    server.before_request_funcs.setdefault(None, []).insert(0, check)


def create_app(atlas_path: str | Path, *, credentials: tuple[str, str] | None = None) -> dash.Dash:
    """Build the Dash app for the atlas at ``atlas_path`` (opened and validated once), with the
    JSON API (``dashboard.api``), a request size limit and, given ``credentials`` (user,
    password), basic auth on every route. The Flask server is ``app.server``."""
    data = DashboardData(atlas_path)
    app = dash.Dash(
        __name__,
        title=f"SigAtlas · {data.atlas.name}",
        assets_folder=str(assets_dir() / "dashboard"),
        background_callback_manager=_background_manager(data),
        suppress_callback_exceptions=False,
    )
    app.layout = _layout(data)
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    # a script path outside Dash's allow-list ("/_dash-component-suites/dash/../x") is not found, not a 500
    app.server.register_error_handler(dash.exceptions.DependencyException, lambda exc: ("not found\n", 404, {"Content-Type": "text/plain"}))
    if credentials is not None:
        require_basic_auth(app.server, credentials)
    api.register(app.server, data)
    _warm_up(data)
    control_outputs = [Output(cid, prop) for _, cid, prop in _CONTROLS]
    known = link_vocabulary(data)
    control_states = [State(cid, prop) for _, cid, prop in _CONTROLS]
    filter_ids = ((ids.CELL_TYPES, "cell_types"), (ids.DISEASES, "diseases"), (ids.TISSUES, "tissues"))

    @app.callback(
        *control_outputs,
        *[Output(cid, "data") for cid, _ in filter_ids],
        Output(ids.STATE_NOTES, "children"),
        Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
        Input(ids.URL, "search"),
        State(ids.QUERY_REQUEST, "data"),
        prevent_initial_call="initial_duplicate",
    )
    def _restore(search, request):
        # the Location's search changes only when a page opens (a link), on back/forward and on a
        # presenter step: our own state changes go to the address bar without it (_write_url)
        state, notes = decode_state(search or "", known)
        if state.get("preset") in PRESETS and not state["genes"]:
            state["genes"], cell_types = apply_preset(data, state["preset"])
            state["cell_types"] = state["cell_types"] or cell_types
        note = dmc.Alert([html.Div(n) for n in notes], title="Some link values were not understood", color="orange",
                         id="state-alert") if notes else None
        run = bool(parse_gene_list(state["genes"]))
        # a study's own label from an older link is kept (it selects exactly its cells) and shown
        options = [data.filter_choices(key).with_extra(state[key]) for _, key in filter_ids]
        return (*[state[k] for k, _, _ in _CONTROLS], *options, note, (request or 0) + 1 if run else dash.no_update)

    @app.callback(Output(ids.DISEASE_GROUPS_NOTE, "children"), Input(ids.DISEASE_GROUPS, "value"))
    def _disease_groups_note(groups):
        return disease_groups_note(data, groups)

    @app.callback(
        Output(ids.GENES, "value", allow_duplicate=True),
        Output(ids.CELL_TYPES, "value", allow_duplicate=True),
        Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
        Input({"type": "preset", "key": ALL}, "n_clicks"),
        Input(ids.PRESET_SELECT, "value"),
        State(ids.QUERY_REQUEST, "data"),
        prevent_initial_call=True,
    )
    def _on_preset(clicks, selected, request):
        key = ctx.triggered_id["key"] if isinstance(ctx.triggered_id, dict) else selected
        if key not in PRESETS or (isinstance(ctx.triggered_id, dict) and not any(c for c in clicks if c)):
            raise dash.exceptions.PreventUpdate
        text, cell_types = apply_preset(data, key)
        return text, cell_types, (request or 0) + 1

    @app.callback(
        Output(ids.GENES, "value", allow_duplicate=True),
        Output(ids.UPLOAD_SETS, "data"),
        Output(ids.UPLOAD_SETS, "value"),
        Output(ids.UPLOAD_SETS, "style"),
        Output(ids.UPLOAD_STORE, "data"),
        Output(ids.UPLOAD_NOTE, "children"),
        Input(ids.UPLOAD, "contents"),
        State(ids.UPLOAD, "filename"),
        prevent_initial_call=True,
    )
    def _on_upload(contents, filename):
        try:
            sets = parse_gene_file(filename or "upload.txt", decode_upload(contents, filename))
        except GeneFileError as exc:
            return dash.no_update, [], None, {"display": "none"}, None, html.Span(str(exc), className="error")
        first = next(iter(sets))
        many = len(sets) > 1
        note = f"{filename}: {len(sets)} gene sets; showing '{first}'" if many else f"{filename}: loaded '{first}'"
        return sets[first], list(sets), first, ({} if many else {"display": "none"}), sets, note

    # a file over the limit is named in the browser at once: its upload request may exceed
    # MAX_REQUEST_BYTES, which the server refuses (413) before _on_upload could say why
    clientside_callback(
        f"""function(contents, filename) {{
            if (typeof contents !== 'string') {{ return window.dash_clientside.no_update; }}
            const bytes = Math.floor((contents.length - contents.indexOf(',') - 1) * 3 / 4);
            if (bytes <= {MAX_BYTES}) {{ return window.dash_clientside.no_update; }}
            const msg = (filename || 'the file') + ': ' + (bytes / 1e6).toFixed(1) + ' MB is larger than the {MAX_BYTES / 1e6:.0f} MB accepted';
            return {{namespace: 'dash_html_components', type: 'Span', props: {{children: msg, className: 'error'}}}};
        }}""",
        Output(ids.UPLOAD_NOTE, "children", allow_duplicate=True),
        Input(ids.UPLOAD, "contents"),
        State(ids.UPLOAD, "filename"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.GENES, "value", allow_duplicate=True),
        Input(ids.UPLOAD_SETS, "value"),
        State(ids.UPLOAD_STORE, "data"),
        prevent_initial_call=True,
    )
    def _on_upload_set(name, sets):
        if not sets or name not in sets:
            raise dash.exceptions.PreventUpdate
        return sets[name]

    @app.callback(
        Output(ids.RESULT_KEY, "data"),
        Output(ids.STATUS, "children", allow_duplicate=True),
        Input(ids.RUN, "n_clicks"),
        Input(ids.QUERY_REQUEST, "data"),
        *[State(cid, prop) for _, cid, prop in _QUERY_CONTROLS],
        background=True,
        progress=[Output(ids.PROGRESS, "value"), Output(ids.PROGRESS_TEXT, "children")],
        running=[(Output(ids.RUN, "loading"), True, False), (Output(ids.CANCEL, "style"), {}, {"display": "none"})],
        cancel=[Input(ids.CANCEL, "n_clicks")],
        prevent_initial_call=True,
    )
    def _run_query(set_progress, _clicks, _request, *values):
        state = _state(list(values), _QUERY_CONTROLS)
        if not parse_gene_list(state["genes"] or ""):
            return None, "Paste genes (any separators) or pick a preset, then Run"
        try:
            params = params_from_state(state, expression=data.atlas.has_expression)
        except QueryError as exc:
            return None, html.Div(str(exc), className="error")
        key = data.result_key(params)
        if data.stored_result(key) is not None:
            set_progress((100, "answered from the cache"))
            return key, dash.no_update
        set_progress((2, "starting"))
        try:
            data.query(params, progress=lambda f, msg: set_progress((round(100 * f), msg)))
        except QueryError as exc:
            return {"error": str(exc), "genes": state["genes"]}, dash.no_update
        set_progress((100, "done"))
        return key, dash.no_update

    view_inputs = [Input(cid, prop) for _, cid, prop in _VIEW_CONTROLS]
    # the views do not depend on which tab shows: a tab switch only rewrites the URL
    render_controls = tuple(c for c in _VIEW_CONTROLS if c[0] != "tab")

    @app.callback(
        Output(ids.RESOLUTION, "children"),
        Output(ids.STATUS, "children"),
        Output(ids.DISEASE_FIG, "figure"),
        Output("disease-table-wrap", "children"),
        Output(ids.STUDY_GRID, "rowData"),
        Output(ids.EXCLUDED_DISEASES, "children"),
        Output(ids.EXCLUDED_STUDIES, "children"),
        Output(ids.ROBUST_FIG, "figure"),
        Output(ids.DRIVER_FIG, "figure"),
        Output(ids.DRIVER_GROUP, "data"),
        Output(ids.COMPARE_FIG, "figure"),
        Output(ids.SCATTER_FIG, "figure"),
        Output(ids.UMAP_FIG, "figure"),
        Output(ids.UMAP_BADGE, "children"),
        Output(ids.UMAP_LABELS, "children"),
        Output(ids.HEATMAP_FIG, "figure"),
        Input(ids.RESULT_KEY, "data"),
        Input(ids.PRESENTER, "checked"),
        *[Input(cid, prop) for _, cid, prop in render_controls],
        State(ids.DRIVER_GROUP, "value"),
        prevent_initial_call=True,
    )
    def _render(key, presenter, *rest):
        # the driver group is a State: the Select sets its own value whenever its options change,
        # and as an Input that re-ran this whole render, losing a view switch made meanwhile
        *view_values, driver_group = rest
        if key is None:
            raise dash.exceptions.PreventUpdate
        state = _state(list(view_values), render_controls) | {"driver_group": driver_group}
        if isinstance(key, dict):  # the query failed: show why, with the gene decisions
            res = data.atlas.resolve(list(parse_gene_list(key.get("genes") or "")))
            empty = figures.empty_figure(key["error"])
            return (resolution_panel(res) if res.requested else [], html.Div(key["error"], className="error"), empty, None, [],
                    None, None, empty, empty, [], empty, empty, empty, "", "", empty)
        result = data.stored_result(key)
        if result is None:
            raise dash.exceptions.PreventUpdate
        out = render_views(data, result, state)
        if presenter:  # large type for a projector
            for name in ("disease_fig", "robust_fig", "driver_fig", "compare_fig", "scatter_fig", "umap_fig", "heatmap_fig"):
                out[name].update_layout(font=PRESENTER_FONT)
        groups = list(result.diseases["group"].astype(str))
        return (out["resolution"], out["status"], out["disease_fig"], out["disease_table"], out["study_rows"], out["excluded"],
                excluded_panel(result), out["robust_fig"],
                out["driver_fig"], groups, out["compare_fig"], out["scatter_fig"], out["umap_fig"], out["umap_badge"], out["umap_labels"],
                out["heatmap_fig"])

    @app.callback(
        Output(ids.DRIVER_FIG, "figure", allow_duplicate=True),
        Input(ids.DRIVER_GROUP, "value"),
        State(ids.RESULT_KEY, "data"),
        State(ids.PRESENTER, "checked"),
        prevent_initial_call=True,
    )
    def _render_drivers(group, key, presenter):
        result = data.stored_result(key) if isinstance(key, str) else None
        if result is None:
            raise dash.exceptions.PreventUpdate
        fig = driver_figure(data, result, group)
        return fig.update_layout(font=PRESENTER_FONT) if presenter else fig

    @app.callback(
        Output(ids.MODULES_SUMMARY, "children"),
        Output(ids.MODULES_OVERLAP_GRID, "rowData"),
        Output(ids.MODULES_MISSING_GRID, "rowData"),
        Output(ids.ADD_MISSING, "disabled"),
        Output(ids.MODULES_FIG, "figure"),
        Output(ids.MODULE_SELECT, "data"),
        Output(ids.MODULE_SELECT, "value"),
        Output(ids.MODULES_METHOD, "children"),
        Output(ids.MODULES_STORE, "data"),
        Input(ids.RESULT_KEY, "data"),
        Input(ids.TABS, "value"),
        State(ids.MODULES_STORE, "data"),
        State(ids.PRESENTER, "checked"),
        prevent_initial_call=True,
    )
    def _render_modules(key, tab, shown, presenter):
        # modules take seconds the first time (then the atlas's cache has them): only for the tab
        # that shows them, and once per result
        if tab != "modules" or (shown is not None and shown.get("key") == key):
            raise dash.exceptions.PreventUpdate
        failed = isinstance(key, dict)
        result = data.stored_result(key) if isinstance(key, str) else None
        # failures are shown in the tab (the traceback goes to the server log); the other tabs keep working
        try:
            gm = gene_modules(data.atlas)
        except Exception as exc:  # noqa: BLE001
            log.exception("gene modules failed")
            return _modules_failed(f"Gene modules could not be computed for this atlas: {type(exc).__name__}: {exc}")
        try:
            out = modules_view(data, result, gm)
        except Exception as exc:  # noqa: BLE001
            log.exception("placing a signature among the gene modules failed")
            return _modules_failed(f"This signature could not be placed among the gene modules: {type(exc).__name__}: {exc}")
        if failed:  # the query failed: say so; the module browser still works
            out["summary"] = [html.Div(f"The query failed: {key['error']}", className="error", id=ids.MODULES_READING)]
        if presenter:
            out["figure"].update_layout(font=PRESENTER_FONT)
        store = {"key": key, "top_missing": out["top_missing"], "modules": out["modules"], "n_perm": int(gm.params.get("n_perm", 0))}
        return (out["summary"], out["overlap_rows"], out["missing_rows"], not out["top_missing"], out["figure"],
                out["module_options"], out["module_value"], out["method"], store)

    def _modules_failed(msg: str) -> tuple:
        empty = figures.empty_figure("Gene modules could not be shown: see the message above")
        return dmc.Alert(msg, color="red", p="xs", id=ids.MODULES_ERROR), [], [], True, empty, [], None, "", None

    @app.callback(
        Output(ids.MODULE_DETAIL, "children"),
        Output(ids.USE_MODULE, "disabled"),
        Input(ids.MODULE_SELECT, "value"),
        State(ids.MODULES_STORE, "data"),
    )
    def _show_module(module, store):
        if not store or not store.get("modules"):
            return [], True
        info = store["modules"].get(str(module)) if module is not None else None
        return module_detail(info, store.get("n_perm", 0)), info is None

    @app.callback(
        Output(ids.GENES, "value", allow_duplicate=True),
        Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
        Input(ids.ADD_MISSING, "n_clicks"),
        State(ids.GENES, "value"),
        State(ids.MODULES_STORE, "data"),
        State(ids.QUERY_REQUEST, "data"),
        prevent_initial_call=True,
    )
    def _add_missing(clicks, text, store, request):
        top = (store or {}).get("top_missing") or []
        if not clicks or not top:
            raise dash.exceptions.PreventUpdate
        return append_genes(text, top), (request or 0) + 1

    @app.callback(
        Output(ids.GENES, "value", allow_duplicate=True),
        Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
        Input(ids.USE_MODULE, "n_clicks"),
        State(ids.MODULE_SELECT, "value"),
        State(ids.MODULES_STORE, "data"),
        State(ids.QUERY_REQUEST, "data"),
        prevent_initial_call=True,
    )
    def _use_module(clicks, module, store, request):
        info = ((store or {}).get("modules") or {}).get(str(module))
        if not clicks or info is None:
            raise dash.exceptions.PreventUpdate
        return "\n".join(info["genes"]), (request or 0) + 1

    @app.callback(
        Output(ids.STATE_SEARCH, "data"),
        Input(ids.RESULT_KEY, "data"),
        *view_inputs,
        *control_states[: len(_QUERY_CONTROLS)],
        prevent_initial_call=True,
    )
    def _write_url(key, *values):
        if key is None:
            raise dash.exceptions.PreventUpdate
        n_view = len(_VIEW_CONTROLS)
        return encode_state(_state(list(values[n_view:]) + list(values[:n_view])))

    # the state goes to the address bar in the browser: writing the Location's search instead
    # would trigger _restore, whose outputs are every control, and Dash holds a view switch made
    # meanwhile behind that chain (two quick clicks were both lost)
    clientside_callback(
        """function(search) {
            if (typeof search !== 'string') { return window.dash_clientside.no_update; }
            window.history.replaceState(window.history.state, '', window.location.pathname + search);
            return window.location.origin + window.location.pathname + search;
        }""",
        Output(ids.SHARE_LINK, "value"),
        Input(ids.STATE_SEARCH, "data"),
    )

    @app.callback(
        Output(ids.DOWNLOAD, "data"),
        Input(ids.SNAPSHOT, "n_clicks"),
        *[Input(f"{ids.CSV_PREFIX}{v}", "n_clicks") for v in (*_FIGURES, *_CSV_ONLY)],
        State(ids.RESULT_KEY, "data"),
        State(ids.SHARE_LINK, "value"),
        *[State(cid, prop) for _, cid, prop in _VIEW_CONTROLS],
        prevent_initial_call=True,
    )
    def _download(_snap, *rest):
        n_csv = len(_FIGURES) + len(_CSV_ONLY)
        key, link, view_values = rest[n_csv], rest[n_csv + 1], rest[n_csv + 2:]
        trigger = ctx.triggered_id
        result = data.stored_result(key) if isinstance(key, str) else None
        if result is None or not ctx.triggered or not ctx.triggered[0]["value"]:
            raise dash.exceptions.PreventUpdate
        state = _state(list(view_values), _VIEW_CONTROLS)
        if trigger == ids.SNAPSHOT:
            out = render_views(data, result, state)
            figs = {name: out[f].to_plotly_json() if hasattr(out[f], "to_plotly_json") else out[f] for name, f in
                    (("diseases", "disease_fig"), ("robustness", "robust_fig"), ("drivers", "driver_fig"), ("comparison", "compare_fig"),
                     ("umap", "umap_fig"), ("genes", "heatmap_fig"))}
            blob = export.snapshot_zip(data.atlas, result, out["tables"], url=link, figures=figs)
            return dcc.send_bytes(blob, f"sigatlas-snapshot-{data.atlas.name}.zip")
        view = str(trigger).removeprefix(ids.CSV_PREFIX)
        if view == "modules":
            table = modules_table(data, result, gene_modules(data.atlas))
        else:
            table = view_tables(data, result, state).get(view)
        if table is None:
            raise dash.exceptions.PreventUpdate
        return {"content": export.safe_csv(table), "filename": f"sigatlas-{view}.csv", "type": "text/csv"}

    # the module tables export every row (all pages, as sorted and filtered) from the browser
    for grid_id, button_id in ((ids.MODULES_OVERLAP_GRID, ids.MODULES_OVERLAP_CSV), (ids.MODULES_MISSING_GRID, ids.MODULES_MISSING_CSV)):
        clientside_callback("function(n) { return Boolean(n); }", Output(grid_id, "exportDataAsCsv"), Input(button_id, "n_clicks"),
                            prevent_initial_call=True)

    for view, graph_id in _FIGURES.items():
        for fmt in ("svg", "png"):
            clientside_callback(
                f"""function(n) {{
                    if (!n) {{ return window.dash_clientside.no_update; }}
                    const el = document.querySelector('#{graph_id} .js-plotly-plot');
                    if (el) {{ Plotly.downloadImage(el, {{format: '{fmt}', filename: 'sigatlas-{view}', width: 1200, height: 700}}); }}
                    return '';
                }}""",
                Output(f"{ids.IMG_PREFIX}{view}-{fmt}", "title"),
                Input(f"{ids.IMG_PREFIX}{view}-{fmt}", "n_clicks"),
                prevent_initial_call=True,
            )

    @app.callback(Output(ids.ROOT, "className"), Input(ids.PRESENTER, "checked"))
    def _presenter(on):
        return "app presenter" if on else "app"

    @app.callback(
        Output(ids.SAVED_VIEWS, "data"),
        Input(ids.SAVE_VIEW, "n_clicks"),
        State(ids.STATE_SEARCH, "data"),
        State(ids.SAVED_VIEWS, "data"),
        State(ids.GENES, "value"),
        prevent_initial_call=True,
    )
    def _save_view(_n, search, saved, genes):
        if not search:
            raise dash.exceptions.PreventUpdate
        saved = [v for v in (saved or []) if v.get("search") != search]
        first = [g for g, _ in parse_gene_list(genes or "")][:3]
        return [*saved, {"search": search, "label": ", ".join(first) + ("…" if len(first) == 3 else "")}]

    @app.callback(
        Output(ids.URL, "search", allow_duplicate=True),
        Output(ids.VIEW_POS, "children"),
        Input(ids.PREV_VIEW, "n_clicks"),
        Input(ids.NEXT_VIEW, "n_clicks"),
        Input(ids.SAVED_VIEWS, "data"),
        State(ids.STATE_SEARCH, "data"),
        prevent_initial_call="initial_duplicate",
    )
    def _step(_prev, _next, saved, search):
        saved = saved or []
        if not saved:
            return dash.no_update, "no saved views yet: use 'Save view'"
        searches = [v["search"] for v in saved]
        pos = searches.index(search) if search in searches else -1
        if ctx.triggered_id in (ids.PREV_VIEW, ids.NEXT_VIEW):
            pos = (pos + (1 if ctx.triggered_id == ids.NEXT_VIEW else -1)) % len(saved)
            # through the Location, so that _restore applies the saved view
            return searches[pos], f"view {pos + 1} of {len(saved)}: {saved[pos]['label']}"
        where = f"view {pos + 1} of {len(saved)}" if pos >= 0 else f"{len(saved)} saved views"
        return dash.no_update, where

    return app

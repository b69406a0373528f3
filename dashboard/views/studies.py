"""The Studies tab's texts and the vocabulary notes: how each study was read, which labels the
views use, each study's labels as matched to ontology terms, what the chosen disease groups pool.
Data in, Dash components (or text) out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_mantine_components as dmc
import numpy as np
import pandas as pd
from dash import html

from compute.atlas import (
    atlas_warnings,
    label_rows,
    label_transfer_line,
    measured_share,
    study_report_lines,
    study_warnings,
    transfer_line,
    vocabulary_lines,
)
from dashboard import figures, ids
from dashboard.views import components as ui
from dashboard.views.diseases import EFFECT_HELP, STAT_HELP

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["COVERAGE_HELP", "disease_groups_note", "excluded_rows", "studies_tab", "study_reports_panel",
           "study_rows", "study_vocabulary_table", "vocabulary_note"]

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
    """The study's labels as matched to ontology terms (label, term, id, how, cells, and what the
    cells say: the label transfer's neighbours, a marker CHECK) and those that matched none (the
    reason and the proposal, never applied); None when the atlas recorded none."""
    rows = []
    for r in label_rows(entry or {}):
        words = _KIND_WORDS.get(r["kind"], r["kind"])
        said = [x for x in (r["neighbours"], r["markers"]) if x]
        if r["term_id"]:
            how = _HOW_MATCHED.get(str(r["how_key"]), r["how"])
            rows.append(html.Tr([html.Td(words), html.Td(r["label"]), html.Td(str(r["term_label"])), html.Td(str(r["term_id"])),
                                 html.Td(how), html.Td(f"{r['n_cells']:,}"), html.Td(" ".join(said) or "–")]))
        else:
            proposal = f"PROPOSED: {r['proposal']}" if r["proposal"] else "no proposal"
            rows.append(html.Tr([html.Td(words), html.Td(r["label"]), html.Td("no term: kept as its own group"), html.Td("–"),
                                 html.Td(r["how"]), html.Td(f"{r['n_cells']:,}"), html.Td(" ".join([proposal, *said]))],
                                className="missing"))
    if not rows:
        return None
    head = html.Tr([html.Th(c) for c in ("", "study's label", "shown as (ontology term)", "term id", "how it matched", "cells",
                                         "what its cells say / proposal")])
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
        words = set(vocabulary_lines(s.meta)) | {transfer_line(s.meta)} if table is not None else set()
        lines = [html.Li(line) for line in study_report_lines(s.meta) if line not in words]
        if s.simulated:
            lines.insert(0, html.Li("SIMULATED data: planted expression programs, not measurements of real samples.", className="sim"))
        lines += [html.Li(f"Warning: {w}", className="missing") for w in study_warns]
        body = [html.Summary(label), html.Ul(lines)]
        if table is not None:
            body += [dmc.Text("Labels matched to ontology terms", size="xs", fw=700), table]
        parts.append(html.Details(body, className="study-report"))
    return html.Div(parts, id=ids.STUDY_REPORTS, className="panel")



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


# -- the study table's rows -------------------------------------------------------------------
def _coverage_fields(data: DashboardData, study: str, coverage: pd.DataFrame | None) -> dict:
    """A study's signature coverage (genes measured of those requested, share of the
    signature's weight), its measured share (None: not recorded) and its ingest warnings."""
    meta = _study_meta(data).get(study, {})
    out = {"measured": None, "requested": None, "coverage": None,
           "measured_share": measured_share(meta), "notes": "; ".join(study_warnings(meta))}
    if coverage is not None and study in coverage.index:
        row = coverage.loc[study]
        m, r, c = int(row["measured"]), int(row["requested"]), float(row["coverage"])
        out |= {"measured": m, "requested": r, "coverage": round(c, 4) if np.isfinite(c) else None}
    return out


def _study_meta(data: DashboardData) -> dict[str, dict]:
    return data.memo("study_meta", lambda: {s.id: s.meta for s in data.atlas.studies})


def study_rows(data: DashboardData, result) -> list[dict]:
    """Rows for the study table: one per ranked study, with its null p-value when computed,
    its signature coverage (``measured`` of the ``requested`` signature genes, ``coverage``:
    the measured genes' share of the signature's weight, 0-1), ``measured_share`` (None: not recorded) and ``notes`` (its ingest
    warnings)."""
    titles = {s.id: s.title for s in data.atlas.studies}
    sim = {s.id: s.simulated for s in data.atlas.studies}
    diseases = result.samples.groupby("study")["disease"].agg(lambda d: ", ".join(sorted(set(d)))).to_dict()
    null = result.null.get("study")
    p = null.p_values() if null is not None else {}
    q = figures.bh_q_values(p)  # over the studies ranked: each is a test
    rows = []
    for r in result.studies.itertuples():
        rows.append({
            "rank": int(r.rank),
            "study": r.group,
            "title": titles.get(r.group, r.group),
            "data": "SIMULATED" if sim.get(r.group) else "real",
            "diseases": diseases.get(r.group, ""),
            "samples": int(r.n_samples),
            "cells": int(r.n_cells),
            "mean_hit_pct": float(r.mean_hit_pct),
            "p_value": float(p[r.group]) if r.group in p else None,
            "p_floor": null.p_floor if null is not None else None,
            "q_value": q.get(r.group),
            **_coverage_fields(data, str(r.group), result.coverage),
        })
    return rows


def excluded_rows(data: DashboardData, result) -> list[dict]:
    """One row per study with cells in the filters that was left out of the rankings and the
    null (its coverage below ``min_coverage``): the study table's columns (no rank, hit % or
    p-value; ``cells``: its cells in the filters; ``diseases``: every disease the study holds),
    ``included`` (False) and ``reason``."""
    excluded = result.excluded_studies
    titles = {s.id: s.title for s in data.atlas.studies}
    sim = {s.id: s.simulated for s in data.atlas.studies}
    rows = []
    for study, r in excluded.iterrows():
        study = str(study)
        rows.append({
            "rank": None, "study": study, "title": titles.get(study, study), "data": "SIMULATED" if sim.get(study) else "real",
            "diseases": ", ".join(sorted(map(str, _study_meta(data).get(study, {}).get("diseases") or {}))),
            "samples": None, "cells": int(r["n_selected"]), "mean_hit_pct": None, "p_value": None, "p_floor": None, "q_value": None,
            **_coverage_fields(data, study, result.coverage), "included": False, "reason": str(r["reason"]),
        })
    return rows


# -- the layout --------------------------------------------------------------------------------
def studies_tab() -> dmc.Stack:
    """The Studies tab's components, empty: ``callbacks.render`` fills the tables and
    ``callbacks.studies`` the per-study reports while the tab shows."""
    fmt = figures.GRID_FORMATS

    def shown(kind: str) -> dict:  # numbers as the rest of the dashboard writes them (figures.format_value)
        return {"function": f"params.value == null ? '–' : {fmt[kind]}(params.value)"}

    wrap = {"wrapText": True, "autoHeight": True,
            "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}}
    # 812 px (855 px beside the sidebar at 1280 x 800): the numbers a reader compares in view, the long
    # texts (title, notes) and the coverage details in column groups that open with their header's arrow
    # (issue 36 item 6: the fourteen columns were 1,880 px wide and ran out of view). Each column is as
    # wide as its header's longest word and its values ("SIMULATED", "≤ 0.0099") with compact padding,
    # with 40 px to spare: at 13 px to spare a CI run scrolled 3 px; with Alpine's padding "mean hit %"
    # broke as "me / an / hit %" and the data column read "SIMUL…"
    grid = ui.grid(ids.STUDY_GRID, [
        {"field": "rank", "headerName": "#", "width": 40, "pinned": "left"},
        {"headerName": "Study", "marryChildren": True, "children": [
            {"field": "study", "width": 96, "pinned": "left"},
            {"field": "title", "columnGroupShow": "open", "width": 260, "tooltipField": "title", **wrap},
            {"field": "notes", "headerName": "Notes", "columnGroupShow": "open", "width": 240, "tooltipField": "notes", **wrap}]},
        {"field": "mean_hit_pct", "headerName": "mean hit %", "width": 84, "sort": "desc", "valueFormatter": shown("pct"),
         "filter": "agNumberColumnFilter", "headerTooltip": STAT_HELP["hit %"]},
        # p at the floor the draws allow reads "≤ floor", as in the disease table
        {"field": "p_value", "headerName": "p (null)", "width": 80, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": f"params.value == null ? '–' : (params.data.p_floor != null && params.value <= "
                                       f"params.data.p_floor * (1 + 1e-9) ? '≤ ' + {fmt['p']}(params.data.p_floor) : {fmt['p']}(params.value))"},
         "headerTooltip": STAT_HELP["p"]},
        # a q made from a p at the floor is an upper bound too (figures.format_q)
        {"field": "q_value", "headerName": "q (BH)", "width": 72, "filter": "agNumberColumnFilter",
         "valueFormatter": {"function": f"params.value == null ? '–' : (params.data.p_floor != null && params.data.p_value != null && "
                                       f"params.data.p_value <= params.data.p_floor * (1 + 1e-9) ? '≤ ' : '') + {fmt['q']}(params.value)"},
         "headerTooltip": STAT_HELP["q (BH)"]},
        {"field": "data", "width": 100, "cellClassRules": {"sim-cell": "params.value == 'SIMULATED'"}},
        {"field": "samples", "width": 76, "filter": "agNumberColumnFilter"},
        {"field": "cells", "width": 72, "valueFormatter": shown("count"), "filter": "agNumberColumnFilter"},
        {"field": "diseases", "flex": 1, "minWidth": 108, **wrap},
        {"headerName": "Genes", "marryChildren": True, "children": [
            {"field": "coverage", "headerName": "Coverage", "width": 84, "filter": "agNumberColumnFilter",
             "valueFormatter": {"function": "params.value == null ? '' : d3.format('.0%')(params.value)"},
             "headerTooltip": "the share of the signature's weight carried by the genes this study measured"},
            {"field": "measured", "headerName": "Genes measured", "columnGroupShow": "open", "width": 110,
             "filter": "agNumberColumnFilter",
             "valueFormatter": {"function": "params.value == null ? '' : params.value + ' / ' + params.data.requested"},
             "headerTooltip": "signature genes this study measured, of those matched in the model"},
            {"field": "measured_share", "headerName": "Measured share", "columnGroupShow": "open", "width": 110,
             "filter": "agNumberColumnFilter",
             "valueFormatter": {"function": "params.value == null ? 'not recorded' : d3.format('.0%')(params.value)"},
             "headerTooltip": "the share of a cell's attribution this study's gene panel is estimated to carry; its values are "
                              "multiplied by it to put every panel on one scale"}]},
    ], page_size=20, compact_headers=True)
    effects_grid = ui.grid(ids.STUDY_EFFECTS_GRID, [
        {"field": "disease", "width": 150, "pinned": "left", **wrap}, {"field": "study", "width": 104, "pinned": "left"},
        {"field": "g", "headerName": "g vs reference", "width": 120,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.2f')(params.value)"},
         "filter": "agNumberColumnFilter", "headerTooltip": EFFECT_HELP["g"]},
        {"field": "g_lo", "headerName": "95% CI", "width": 130,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.2f')(params.value) + ' to ' + d3.format('.2f')(params.data.g_hi)"}},
        {"field": "weight", "width": 96, "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.0%')(params.value)"},
         "headerTooltip": "the study's share of the pooled effect (random effects)"},
        {"field": "n_donors", "headerName": "donors", "width": 96}, {"field": "n_reference_donors", "headerName": "reference donors", "width": 120},
        {"field": "mean_hit_pct", "headerName": "donors' hit %", "width": 112, "valueFormatter": shown("pct")},
        {"field": "reference_hit_pct", "headerName": "reference hit %", "width": 120, "valueFormatter": shown("pct")},
        {"field": "evidence", "flex": 2, "minWidth": 240, "headerTooltip": EFFECT_HELP["evidence"], **wrap},
        {"field": "reason", "headerName": "why no effect", "flex": 2, "minWidth": 220, **wrap},
    ], page_size=20, compact_headers=True)
    return dmc.Stack([
        html.Div(id=ids.EXCLUDED_STUDIES),
        html.Div([ui.export_bar("studies"), grid, dmc.Text(COVERAGE_HELP, size="xs", c="dimmed", id=ids.COVERAGE_HELP)],
                 className="panel"),
        html.Div([ui.grid_title("Each disease within each study, against the study's own reference donors"), ui.export_bar("study_effects"),
                  effects_grid, dmc.Text(EFFECT_HELP["evidence"] + " " + EFFECT_HELP["g"], size="xs", c="dimmed", id=ids.EVIDENCE_HELP)],
                 className="panel"),
        # filled while the tab shows (callbacks.studies.show_study_reports): a component per report
        # line and label made 2,500 of the page's 2,700 components, and the page's script
        # walks every component on each update (1-3 s per query result on a busy machine)
        html.Div(id=ids.STUDY_REPORTS_SLOT),
    ], gap="sm")

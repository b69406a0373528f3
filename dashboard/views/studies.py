"""The Studies tab's texts and the vocabulary notes: how each study was read, which labels the
views use, each study's labels as matched to ontology terms, what the chosen disease groups pool.
Data in, Dash components (or text) out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_mantine_components as dmc
from dash import html

from compute.atlas import (
    atlas_warnings,
    label_rows,
    label_transfer_line,
    study_report_lines,
    study_warnings,
    transfer_line,
    vocabulary_lines,
)
from dashboard import ids

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["COVERAGE_HELP", "disease_groups_note", "study_reports_panel", "study_vocabulary_table", "vocabulary_note"]

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


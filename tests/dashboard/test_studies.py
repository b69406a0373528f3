"""The Studies tab without a browser: min_coverage from the link to the query and the studies it
leaves out, the study table's columns, the per-study reports and vocabularies, atlases without
reports or panels."""

from __future__ import annotations

import pandas as pd
import pytest

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.app import answer_query, create_app
from dashboard.callbacks import link, render, studies
from dashboard.data import DashboardData
from dashboard.state import (
    DEFAULTS,
    decode_state,
    query_params,
)
from dashboard.views.filters import apply_preset
from tests.dashboard.helpers import find, left_out_query, state_with, text_of


def test_min_coverage_is_one_setting_from_the_link_to_the_query(tiny_build):
    state, notes = decode_state("?genes=CD14,LYZ&min_coverage=0.8")
    assert not notes and state["min_coverage"] == 0.8
    assert query_params(state).min_coverage == 0.8
    assert query_params(state_with(genes="CD14")).min_coverage == DEFAULTS["min_coverage"] == 0.5
    app = create_app(tiny_build[1])
    control = find(app.layout, ids.MIN_COVERAGE)
    assert control.value == 0.5 and (control.min, control.max) == (0, 1) and "Min. study coverage" in control.label
    # the link restores it, and the query reruns with it
    data = DashboardData(tiny_build[1])
    restored = link.restore(data, "?genes=CD14&min_coverage=0.9", 0)
    assert restored["min_coverage"] == 0.9 and restored["genes"] == "CD14" and restored["request"] == 1 and restored["notes"] is None
    # an emptied or out-of-range control is a message, not a crash
    assert answer_query(data, state_with(genes="CD14 LYZ", min_coverage=""))["status"].children == "min_coverage must be a number, got ''"
    assert answer_query(data, state_with(genes="CD14 LYZ", min_coverage=1.5))["status"].children == "min_coverage must be within 0-1, got 1.5"

def test_a_study_below_min_coverage_is_left_out_with_its_reason(tiny_build):
    data = DashboardData(tiny_build[1])
    state, low = left_out_query(data)
    out = answer_query(data, state)
    result = out["result"]
    assert low in result.excluded_studies.index
    n = len(result.excluded_studies)
    reason = result.excluded_studies.loc[low, "reason"]
    # under the disease ranking (and in the Studies tab): each left-out study with its reason
    shown = text_of(out["excluded_diseases"])
    assert f"Left out: {low} measured " in shown and reason in shown and "missing, not zero" in shown
    assert text_of(out["excluded_studies"]) == shown
    assert out["excluded_diseases"].title.startswith(f"{n} {'study' if n == 1 else 'studies'} left out of the ranking")
    assert f"{n} {'study' if n == 1 else 'studies'} left out (signature coverage below" in out["status"]
    assert "left out" in out["disease_fig"].to_dict()["layout"]["title"]["text"]
    # the ranked studies carry their coverage; the left-out one is not ranked
    assert low not in {r["study"] for r in out["study_rows"]}
    for r in out["study_rows"]:
        cov = result.coverage.loc[r["study"]]
        assert (r["measured"], r["requested"]) == (cov["measured"], cov["requested"]) and r["coverage"] >= state["min_coverage"]
        assert 0 < r["measured_share"] <= 1 and isinstance(r["notes"], str)
    # the studies CSV: ranked studies, then those left out, each with the reason
    table = out["tables"]["studies"]
    assert {"measured", "requested", "coverage", "measured_share", "notes", "included", "reason"} <= set(table.columns)
    row = table.set_index("study").loc[low]
    assert not row["included"] and row["reason"] == reason and pd.isna(row["rank"]) and row["cells"] > 0
    assert table["included"].tolist() == [True] * len(out["study_rows"]) + [False] * n
    assert set(out["tables"]["coverage"]["study"]) == {s.id for s in data.atlas.studies}
    # the rendering callback fills both lists
    key = data.result_key(query_params(state, expression=data.atlas.has_expression))
    views = render.render(data, key, None, False, top_n=0, group_by="disease", heat="heatmap", order="cluster", color="score")
    for name in ("excluded_diseases", "excluded_studies"):
        assert views[name].className == "excluded" and f"Left out: {low} measured" in text_of(views[name])
    assert views["study_rows"] == out["study_rows"]
    # nothing left out at min_coverage 0: no list
    none = answer_query(data, state | {"min_coverage": 0.0})
    assert none["excluded_diseases"] is None and none["excluded_studies"] is None and "left out" not in none["status"]

def test_every_study_below_min_coverage_is_a_message_not_a_crash(tiny_build):
    data = DashboardData(tiny_build[1])
    text, _ = apply_preset(data, "ms1")
    coverage = data.atlas.study_coverage(list(parse_gene_list(text)))["coverage"]
    if coverage.max() >= 1:
        pytest.skip("a study measured every MS1 gene: min_coverage cannot leave out all")
    out = answer_query(data, state_with(genes=text, min_coverage=min(1.0, round(coverage.max() + 0.01, 4))))
    assert "lower min_coverage" in str(out["status"])

def test_studies_table_columns_and_help(tiny_build):
    app = create_app(tiny_build[1])
    grid = find(app.layout, ids.STUDY_GRID)
    flat = [child for c in grid.columnDefs for child in c.get("children", [c])]  # column groups open to their children
    headers = {c.get("headerName", c["field"]): c for c in flat}
    for name in ("Genes measured", "Coverage", "Measured share", "Notes"):
        assert name in headers, name
    assert "' / ' + params.data.requested" in headers["Genes measured"]["valueFormatter"]["function"]
    assert "not recorded" in headers["Measured share"]["valueFormatter"]["function"]
    help_text = text_of(find(app.layout, ids.COVERAGE_HELP))
    assert "missing, not zero" in help_text and "one scale" in help_text and "Min. study coverage" in help_text

def test_study_reports_in_plain_words(tiny_build):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(tiny_build[1])
    panel = study_reports_panel(data)
    text = text_of(panel)
    assert text.count("Values: raw counts") == len(data.atlas.studies)
    assert "QC: " in text and " cells in, " in text and "Genes measured: " in text and "Measured share: " in text
    assert "Species: human" in text and "Gene symbols: " in text
    for s in data.atlas.studies:
        assert f"{s.id} · {s.title}" in text
    # simulated studies keep their label; the atlas's build warnings are shown
    sim = next(s for s in data.atlas.studies if s.simulated)
    assert f"{sim.id} · {sim.title} · {sim.n_cells:,} cells · SIMULATED" in text
    warnings = data.atlas.meta["report"]["warnings"]
    assert warnings and all(w in text_of(find(panel, ids.ATLAS_WARNINGS)) for w in warnings)
    # it is in the Studies tab, while that tab shows
    assert find(create_app(tiny_build[1]).layout, ids.STUDY_REPORTS_SLOT) is not None
    assert find(studies.show_study_reports(data, "studies")["reports"], ids.STUDY_REPORTS) is not None
    assert studies.show_study_reports(data, "diseases") == {"reports": []}

def _leaves(component) -> list[str]:
    """Every string a component tree shows, alert titles included."""
    if component is None or isinstance(component, bool):
        return []
    if isinstance(component, str | int | float):
        return [str(component)]
    if isinstance(component, list | tuple):
        return [leaf for c in component for leaf in _leaves(c)]
    title = getattr(component, "title", None) if type(component).__name__ == "Alert" else None
    return _leaves(title) + _leaves(getattr(component, "children", None))


def _shown_text(html: str) -> str:
    """The text a browser shows for ``html`` (character references read)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return "".join(parser.parts)


def test_the_study_reports_are_one_element_for_the_page_with_every_word_of_them(tiny_build):
    """As 2,500 components the reports held the page's script for 10 s when a link opened on the
    Studies tab (Dash's renderer works through every component at every update): they come as
    one HtmlBlock, which shows every line, title and table cell of the panel."""
    from dashboard.views.components import HtmlBlock
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(tiny_build[1])
    panel = study_reports_panel(data)
    block = studies.show_study_reports(data, "studies")["reports"]
    assert isinstance(block, HtmlBlock) and block.id == ids.STUDY_REPORTS and isinstance(block.children, str)
    shown = _shown_text(block.children)
    leaves = _leaves(panel.children)
    assert len(leaves) > 50 and all(leaf.replace("\n", " ") in shown for leaf in leaves)
    for s in data.atlas.studies:
        assert f'id="{ids.STUDY_VOCABULARY_PREFIX}{s.id}"' in block.children or "no ontology" in shown


def test_static_html_escapes_text_and_attributes_and_refuses_live_components():
    from html.parser import HTMLParser

    from dash import dcc, html

    from dashboard.views.components import static_html

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.tags = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    hostile = '<img src=x onerror="alert(1)">'
    written = static_html(html.Div([html.Span(hostile, title=hostile), "a & b"], id="x", className='c" onclick="y'))
    parser = Tags()
    parser.feed(written)
    # two elements, each with only its own attributes, holding the hostile text as text
    assert parser.tags == [("div", {"id": "x", "class": 'c" onclick="y'}), ("span", {"title": hostile})]
    assert _shown_text(written) == hostile + "a & b"
    with pytest.raises(TypeError, match="Graph"):
        static_html(html.Div(dcc.Graph(id="g")))


def test_report_lines_for_tpm_mouse_and_qc_drops():
    from compute.atlas import study_report_lines, study_warnings

    entry = {"report": {
        "values": {"kind": "tpm", "source": "X", "note": "approximation: TPM/FPKM rescaled per cell to 10,000, not counts"},
        "species": {"organism": "mouse", "detected": "mouse", "human_share": 0.01, "mouse_share": 0.93,
                    "orthologs": {"table": "Ensembl 105", "mouse_genes_in": 1200, "mapped": 1100, "n_no_human_ortholog": 80,
                                  "n_several_human_orthologs": 20, "n_summed_into_one_human_gene": 3}},
        "symbols": {"n_renamed": 4, "renamed_by": {"alias": 3, "case": 1}, "n_merged": 2, "n_duplicates_summed": 1, "unknown": 0},
        "qc": {"cells_in": 500, "cells_kept": 470, "min_genes": 40, "min_counts": None, "scaled_for_panel": False,
               "min_counts_note": "min_counts not applied: tpm values carry no library size",
               "dropped": {"min_genes": 30, "min_counts": 0, "both": 0},
               "by_cell_type": {"T": {"in": 300, "kept": 290, "dropped": 10}, "B": {"in": 200, "kept": 180, "dropped": 20}}},
        "n_genes_measured": 1097, "warnings": ["QC dropped 10% of the 'B' cells (20 of 200)."]},
        "panel": {"n_genes_measured": 1000, "attr_share": 0.61}}
    lines = study_report_lines(entry)
    text = "\n".join(lines)
    assert "Values: TPM, read from X (approximation: TPM/FPKM rescaled per cell to 10,000, not counts)." in lines
    assert "Species: mouse" in text and "1,100 of 1,200 mouse genes mapped to their one human ortholog (Ensembl 105)" in text
    assert "80 without a human ortholog" in text and "20 with several human orthologs" in text
    assert "4 names renamed to the current HGNC symbol (3 alias, 1 case fixed)" in text and "2 symbols named by several columns" in text
    assert "QC: 500 cells in, 470 kept, 30 dropped (30 too few genes)" in text and "min_counts not applied" in text
    assert "most dropped: B 20 of 200, T 10 of 300" in text
    assert "Genes measured: 1,097, 1,000 of them in the model's gene order." in lines and "Measured share: 61%" in text
    assert study_warnings(entry) == ["QC dropped 10% of the 'B' cells (20 of 200)."]
    assert not any(line.startswith("Donor or sample metadata") for line in lines)  # a report from before metadata
    entry["report"]["metadata"] = {"columns": {"sex": {"column": "sex", "from": "automatic"},
                                               "age": {"column": "Age_years", "from": "manifest"}}, "skipped": []}
    assert ("Donor or sample metadata: sex (found in the file), age (named in the manifest, obs column 'Age_years')."
            in study_report_lines(entry))
    entry["report"]["metadata"] = {"columns": {}, "skipped": []}
    assert "name other obs columns under columns.metadata" in "\n".join(study_report_lines(entry))
    # malformed or missing sections never raise
    assert study_report_lines({"report": {"values": "x", "qc": {"cells_in": "?"}, "symbols": []}}) == []
    assert study_report_lines({"report": "nonsense", "panel": {"attr_share": True}})[0].startswith("Ingest report: not recorded")

def test_an_atlas_without_reports_or_panels_still_renders(old_atlas):
    from compute.atlas import NOT_RECORDED
    from dashboard import export
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(old_atlas)
    text, cell_types = apply_preset(data, "ms1")
    out = answer_query(data, state_with(genes=text, cell_types=cell_types))
    assert out["study_rows"] and out["excluded_diseases"] is None
    for r in out["study_rows"]:
        assert r["measured"] == r["requested"] and r["coverage"] == 1.0 and r["measured_share"] is None and r["notes"] == ""
    panel = study_reports_panel(data)
    assert text_of(panel).count(NOT_RECORDED) == len(data.atlas.studies) and find(panel, ids.ATLAS_WARNINGS) is None
    assert "records no per-study gene panels" in export.methods_paragraph(data.atlas, out["result"])
    app = create_app(old_atlas)
    assert find(app.layout, ids.STUDY_REPORTS_SLOT) is not None

def test_study_reports_show_each_study_vocabulary_and_the_label_transfer(tiny_build):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(tiny_build[1])
    panel = study_reports_panel(data)
    vocab = data.atlas.meta["vocabulary"]
    note = text_of(find(panel, ids.VOCABULARY_NOTE))
    assert "Cell Ontology" in note and "MONDO" in note and "UBERON" in note and f"CL {vocab['versions']['CL']}" in note
    assert f"{100 * vocab['label_transfer']['accuracy']['exact']:.1f}% get their own term" in note
    real = next(s for s in data.atlas.studies if not s.simulated)
    table = find(panel, f"{ids.STUDY_VOCABULARY_PREFIX}{real.id}")
    text = text_of(table)
    report = real.meta["report"]["vocabulary"]
    for m in report["cell_type"]["mapped"]:
        assert m["label"] in text and m["term_label"] in text and m["term_id"] in text
    assert "by the manifest's map" in text and "healthy -> normal (PATO)" in text
    for m in report["cell_type"]["unmapped"]:
        assert m["label"] in text and m["reason"] in text and "kept as its own group" in text
    # the sentence that sums the table up is not repeated beside it; simulated studies stay labelled
    assert "labels matched to Cell Ontology terms" not in text_of(panel)
    assert text_of(panel).count("SIMULATED data: planted expression programs") == sum(s.simulated for s in data.atlas.studies)

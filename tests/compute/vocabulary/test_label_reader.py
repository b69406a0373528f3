"""Issue 34: author labels as widely used tools and atlases write them, matched to the right
Cell Ontology / MONDO term or not at all (with a proposal), never silently wrong."""

from __future__ import annotations

import csv

import pytest

from compute.vocabulary import HEALTHY, match_label, ontologies, read_cell_type, score_labels
from compute.vocabulary._reader import TABLES, load_table
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "data" / "real_cell_type_labels.tsv"
PDC, CDC2, CDC1, NK, CLASSICAL, NONCLASSICAL = "CL:0000784", "CL:0002399", "CL:0002394", "CL:0000623", "CL:0000860", "CL:0000875"


def _fixture_rows() -> list[dict]:
    lines = [ln for ln in FIXTURE.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def test_the_fixture_is_real_labels_with_live_terms_and_named_sources():
    rows = _fixture_rows()
    assert len(rows) >= 150
    onto = ontologies()
    for r in rows:
        t = onto.term(r["expected"])
        assert t is not None and not t.deprecated, r
        assert r["source"], r
    assert len({r["source"] for r in rows}) >= 8


def test_real_labels_are_matched_right_or_left_unmatched_with_a_proposal():
    """The issue's measure: >= 90% right or within two is_a steps, 0 wrong, every other label
    unmatched with a proposal; PBMC 68k's 10 labels: >= 9 right."""
    rows = _fixture_rows()
    score = score_labels([(r["label"], r["expected"]) for r in rows])
    s = score.summary()
    print(score.text())  # the figures (pytest -s)
    wrong = [r for r in score.rows if r["outcome"] == "wrong"]
    assert not wrong, wrong
    assert s["matched_right_or_close"] >= 0.90, score.text()
    assert s["bare"] == 0, [r for r in score.rows if r["outcome"] == "bare"]
    pbmc68k = [r for r, src in zip(score.rows, rows, strict=True) if src["source"] == "pbmc68k"]
    assert len(pbmc68k) == 10 and sum(r["outcome"] in ("right", "close") for r in pbmc68k) >= 9


def test_dc2_is_a_conventional_dc_never_a_plasmacytoid_one():
    for label in ("DC2", "cDC2", "cDC2_1", "DC2 cells"):
        assert match_label(label, "cell_type").term_id == CDC2, label
    assert match_label("DC1", "cell_type").term_id == CDC1
    assert match_label("pDC", "cell_type").term_id == PDC
    assert match_label("plasmacytoid dendritic cell", "cell_type").term_id == PDC


@pytest.mark.parametrize(("label", "term"), [
    ("CD56+ NK", NK),  # marker + abbreviation
    ("NK cells", NK),  # plural
    ("FCGR3A+ Mono", NONCLASSICAL),  # gene name for CD16
    ("CD14++ CD16- monocytes", "CL:0002057"),  # "CD14-positive, CD16-negative classical monocyte"
    ("CD4+/CD25 T Reg", "CL:0000792"),  # slash between markers joins them
    ("CD8 TEM_3", "CL:0000913"),  # a tool's cluster number
    ("Treg Naive", "CL:0002677"),
    ("Monocytes/Macrophages", "CL:0000113"),  # alternatives -> their nearest common term
    ("Monocytes or macrophages", "CL:0000113"),
    ("CRTAM+ gamma-delta T cells", "CL:0000798"),  # a marker no term names: the broader term
])
def test_the_reader_knows_how_cell_types_are_written(label, term):
    assert match_label(label, "cell_type").term_id == term


def test_a_marker_with_either_sign_says_nothing():
    r = read_cell_type("CD16+/- NK cells")
    assert r.term_id == NK and any("+/-" in n for n in r.notes)


@pytest.mark.parametrize("label", ["Doublet", "other", "unknown", "Low quality", "CD34+", "NK-like cells", "other T",
                                   "T cells, CD4+, Th1_17", "asdfgh"])
def test_what_the_reader_cannot_settle_is_refused_not_guessed(label):
    m = match_label(label, "cell_type")
    assert not m.mapped and m.reason


def test_refusals_carry_a_proposal_and_why():
    m = match_label("CD34+", "cell_type")
    assert m.proposal == "CL:0008001" and m.proposal_label == "hematopoietic precursor cell"
    assert any("marker alone" in n for n in m.notes)
    m = match_label("T cells, CD4+, Th1_17", "cell_type")  # Th1 or Th17: what they share is proposed
    assert m.proposal == "CL:0000492" and "ambiguous" in m.notes[0]


def test_the_curated_tables_name_a_source_and_live_terms():
    onto = ontologies()
    for kind in TABLES:
        table = load_table(kind)
        assert table.sources and all(table.sources.values())
        ids = [t for t, _ in table.phrases.values()] + [i for ids, _, _ in table.refusals.values() for i in ids]
        ids += [t for _, t in table.blocked]
        for tid in ids:
            t = onto.term(tid)
            assert t is not None and not t.deprecated and onto.kind_of(tid) == kind, (kind, tid)


def test_a_table_entry_without_a_source_is_an_error(tmp_path, monkeypatch):
    import compute.reference
    from compute.vocabulary import _reader

    (tmp_path / "vocabulary").mkdir()
    (tmp_path / "vocabulary" / "cell_type_words.tsv").write_text("text\tkind\tmeans\tsource\tnote\nmono\tword\tmonocyte\t\t\n")
    monkeypatch.setattr(compute.reference, "assets_dir", lambda: tmp_path)
    _reader.load_table.cache_clear()
    try:
        with pytest.raises(ValueError, match="'mono' .*names no source"):
            _reader.load_table("cell_type")
    finally:
        _reader.load_table.cache_clear()


@pytest.mark.parametrize(("label", "term"), [
    ("sepsis", "MONDO:1040015"),
    ("COVID19", "MONDO:0100096"),
    ("COVID-19 patients", "MONDO:0100096"),
    ("SARS-CoV-2 infection", "MONDO:0100096"),
    ("Kawasaki", "MONDO:0012727"),
    ("Kawasaki's disease", "MONDO:0012727"),
    ("HIV", "MONDO:0005109"),
    ("UC", "MONDO:0005101"),
    ("MS", "MONDO:0005301"),
    ("Crohn's disease", "MONDO:0005011"),
    ("influenza infection", "MONDO:0005812"),
    ("SLE", "MONDO:0007915"),
])
def test_diseases_as_clinicians_write_them(label, term):
    assert match_label(label, "disease").term_id == term


@pytest.mark.parametrize(("label", "candidates"), [
    ("RA", {"MONDO:0008383", "MONDO:0005272"}),
    ("lupus", {"MONDO:0007915", "MONDO:0004670"}),
])
def test_ambiguous_disease_abbreviations_are_refused_with_the_candidates(label, candidates):
    from compute.vocabulary import read_disease

    m = match_label(label, "disease")
    assert not m.mapped and m.proposal in candidates and "ambiguous" in m.notes[0]
    assert {c for c, _ in read_disease(label).candidates} == candidates


def test_a_disease_mondo_lacks_is_said_and_its_parent_offered():
    m = match_label("septic shock", "disease")
    assert not m.mapped and m.proposal == "MONDO:1040015"
    assert "MONDO has no term for septic shock" in m.notes[0]


def test_control_is_read_as_healthy_only_with_the_assumption_named():
    m = match_label("control", "disease")
    assert (m.term_id, m.how) == (HEALTHY, "assumed healthy") and "controls are patients" in m.notes[0]
    assert match_label("healthy control", "disease").how == "healthy"


def test_the_build_report_carries_the_proposals():
    from compute.vocabulary import harmonise

    rep = harmonise(["CD34+", "CD34+", "CD14 Mono", "dnT"], "cell_type").report()
    assert {p["label"]: p["proposal"] for p in rep["proposals"]} == {"CD34+": "CL:0008001", "dnT": "CL:0000084"}
    assert [u["label"] for u in rep["unmapped"]] == ["CD34+", "dnT"]
    assert {m["label"]: m["how"] for m in rep["mapped"]} == {"CD14 Mono": "phrase"}


@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title, lambda s: f"  {s.replace(' ', '  ')} ",
                                      lambda s: s.replace(" ", "_"), lambda s: s.replace(" ", "."),
                                      lambda s: s.replace(" ", "-")],
                         ids=["lower", "upper", "title", "spaces", "underscores", "dots", "hyphens"])
def test_another_spelling_of_a_real_label_is_never_matched_wrongly(spelling):
    rows = _fixture_rows()
    score = score_labels([(spelling(r["label"]), r["expected"]) for r in rows])
    assert not [r for r in score.rows if r["outcome"] == "wrong"], score.text()
    assert score.summary()["matched_right_or_close"] >= 0.85, score.text()


@pytest.mark.parametrize(("label", "term", "aside"), [
    ("severe COVID-19", "MONDO:0100096", "severe"),
    ("COVID-19 (severe)", "MONDO:0100096", "severe"),
    ("convalescent COVID-19", "MONDO:0100096", "convalescent"),
    ("active SLE", "MONDO:0007915", "active"),
    ("mild sepsis", "MONDO:1040015", "mild"),
])
def test_a_severity_or_stage_is_left_aside_and_said(label, term, aside):
    m = match_label(label, "disease")
    assert m.term_id == term and any(f"'{aside}' left aside" in n for n in m.notes)


@pytest.mark.parametrize(("label", "candidates"), [
    ("HD", {"PATO:0000461", "MONDO:0007739"}),  # healthy donor, not only Huntington disease
    ("MM", {"MONDO:0009693", "MONDO:0009685"}),  # multiple myeloma, not only Miyoshi myopathy
])
def test_abbreviations_that_mondo_gives_another_disease_are_refused(label, candidates):
    m = match_label(label, "disease")
    assert not m.mapped and m.proposal in candidates


def test_controls_described_as_patients_are_not_assumed_healthy():
    for label in ("ICU control", "Control (non-septic ICU)", "disease controls"):
        m = match_label(label, "disease")
        assert not m.mapped and "may be patients" in m.notes[0], label


def test_a_disease_abbreviation_read_through_a_synonym_says_so():
    m = match_label("AML", "disease")
    assert m.term_id == "MONDO:0018874" and "abbreviation" in m.notes[0]


@pytest.mark.parametrize(("label", "proposal"), [("T cell?", "CL:0000084"), ("NK cells ?", "CL:0000623")])
def test_a_label_its_annotator_was_unsure_of_is_proposed_not_matched(label, proposal):
    m = match_label(label, "cell_type")
    assert not m.mapped and m.proposal == proposal and "unsure" in m.notes[0]


@pytest.mark.parametrize("label", ["DN2", "DP"])
def test_thymocyte_abbreviations_that_blood_studies_use_otherwise_are_refused(label):
    m = match_label(label, "cell_type")
    assert not m.mapped and m.proposal and "ambiguous" in m.notes[0]


@pytest.mark.parametrize("label", ["T and B cells", "T & B", "T cells + B cells", "T/B cells"])
def test_two_lineages_in_one_label_meet_at_their_common_term(label):
    assert match_label(label, "cell_type").term_id == "CL:0000542"  # lymphocyte


def test_real_disease_labels_are_matched_right_or_refused_with_help():
    lines = [ln for ln in (REPO / "tests" / "data" / "real_disease_labels.tsv").read_text().splitlines()
             if ln and not ln.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    assert len(rows) >= 40
    wrong, unhelped = [], []
    for r in rows:
        m = match_label(r["label"], "disease")
        if r["expected"] == "-":
            if m.mapped:
                wrong.append((r["label"], m.term_id))
            elif not (m.proposal or m.notes):
                unhelped.append(r["label"])
        elif m.term_id != r["expected"]:
            (wrong if m.mapped else unhelped).append((r["label"], m.term_id))
    assert not wrong and not unhelped, (wrong, unhelped)

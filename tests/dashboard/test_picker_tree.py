"""The filters' term trees as a person reads them (issue 36, item 11): a disease under every parent
it has, without counting its cells twice; "T cell" where the ontology's term with the same cells
is "mature T cell", with the T cell term's own id."""

from __future__ import annotations

from compute.atlas import TermTree
from dashboard.picker_tree import picker_entries, plain_term

# a small vocabulary: RA under two parents (autoimmune, rheumatic), MS under autoimmune only;
# mature T cell and T cell hold the same cells, CD4 and CD8 T cells below them
TERMS = {
    "D:root": {"label": "disease", "ancestors": {}},
    "D:auto": {"label": "autoimmune disease", "ancestors": {"D:root": 1}},
    "D:rheum": {"label": "rheumatic disorder", "ancestors": {"D:root": 1}},
    "D:ra": {"label": "rheumatoid arthritis", "ancestors": {"D:auto": 1, "D:rheum": 1, "D:root": 2}},
    "D:ms": {"label": "multiple sclerosis", "ancestors": {"D:auto": 1, "D:root": 2}},
    "D:gout": {"label": "gout", "ancestors": {"D:rheum": 1, "D:root": 2}},
    "C:cell": {"label": "cell", "ancestors": {}},
    "C:t": {"label": "T cell", "ancestors": {"C:cell": 1}},
    "C:mt": {"label": "mature T cell", "ancestors": {"C:t": 1, "C:cell": 2}},
    "C:cd4": {"label": "CD4-positive T cell", "ancestors": {"C:mt": 1, "C:t": 2, "C:cell": 3}},
    "C:cd8": {"label": "CD8-positive T cell", "ancestors": {"C:mt": 1, "C:t": 2, "C:cell": 3}},
    "C:b": {"label": "B cell", "ancestors": {"C:cell": 1}},
}


def _covers(tree: TermTree, present: list[str]) -> dict:
    return {t: frozenset(tree.descendants_present(t, present)) for t in tree.terms if tree.descendants_present(t, present)}


def test_a_disease_shows_under_every_parent_and_its_cells_count_once():
    tree = TermTree(terms=TERMS)
    counts = {"D:ra": 30, "D:ms": 20, "D:gout": 10}
    entries = picker_entries(tree, tree.hierarchy(counts), _covers(tree, list(counts)))
    lines = [("  " * e.depth) + e.label for e in entries]
    # autoimmune disease lists RA beside MS, as it pools them; RA also stays under rheumatic disorder
    auto = lines.index("  autoimmune disease")
    assert lines[auto + 1:auto + 3] == ["    multiple sclerosis", "    rheumatoid arthritis"], lines
    rheum = lines.index("  rheumatic disorder")
    assert lines[rheum + 1:rheum + 3] == ["    gout", "    rheumatoid arthritis"], lines
    # one option per place: the second place names its parent and reads back as the term
    ra = [e for e in entries if e.term == "D:ra"]
    assert [e.value for e in ra] == ["rheumatoid arthritis", "rheumatoid arthritis (under rheumatic disorder)"]
    assert ra[1].alias_of == "rheumatoid arthritis" and ra[0].alias_of is None
    assert len({e.value for e in entries}) == len(entries)
    # every count is the cells at or below the term, each cell once: the root holds 60, not 90
    counted = {e.label: e.n_cells for e in entries}
    assert counted == {"disease": 60, "autoimmune disease": 50, "rheumatic disorder": 40, "rheumatoid arthritis": 30,
                       "multiple sclerosis": 20, "gout": 10}


def test_the_t_cell_entry_is_the_t_cell_term_not_mature_t_cell():
    tree = TermTree(terms=TERMS)
    counts = {"C:cd4": 8, "C:cd8": 4, "C:b": 5}
    covers = _covers(tree, list(counts))
    assert plain_term(tree, "C:mt", covers) == "C:t"
    entries = picker_entries(tree, tree.hierarchy(counts), covers, plain_names=True)
    t = [e for e in entries if e.n_cells == 12]
    assert [(e.label, e.term) for e in t] == [("T cell", "C:t")]
    assert "mature T cell" not in {e.label for e in entries}
    # without plain names (diseases, tissues), the ontology's own node stays
    raw = picker_entries(tree, tree.hierarchy(counts), covers)
    assert "mature T cell" in {e.label for e in raw}
    # a T cell term holding more cells than mature T cell (a gamma-delta T cell outside it) is a different choice: kept apart
    terms = TERMS | {"C:gd": {"label": "gamma-delta T cell", "ancestors": {"C:t": 1, "C:cell": 2}}}
    wider = TermTree(terms=terms)
    counts = {"C:cd4": 8, "C:cd8": 4, "C:gd": 2}
    covers = _covers(wider, list(counts))
    assert plain_term(wider, "C:mt", covers) == "C:mt"
    labels = [e.label for e in picker_entries(wider, wider.hierarchy(counts), covers, plain_names=True)]
    assert "T cell" in labels and "mature T cell" in labels

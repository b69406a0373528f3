"""The terms an atlas uses, with their ancestors (what the atlas stores so that a reader needs
no ontology), and the relation between cell-type terms that the triplet loss pairs by."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compute.vocabulary._ontology import HEALTHY, ontologies

__all__ = ["LINEAGES", "MIXTURE_TERMS", "POSITIVE_DISTANCE", "cell_lineages", "term_closure", "term_relation", "tissues_related"]

# terms at most this many is_a steps apart (one an ancestor of the other) count as the same
# cell type for the triplet loss: "CD14-positive monocyte" pairs with "classical monocyte"
POSITIVE_DISTANCE = 2

# Cell Ontology classes that head a lineage: a term at or under one of them belongs to it
# (a panel study is calibrated on reference cells of its own lineage, and a mixture term
# below is no negative of the cell types of its lineage)
LINEAGES = {
    "hematopoietic": ("CL:0000988",),
    "muscle": ("CL:0000187", "CL:0000680"),  # muscle cell; muscle precursor cell (myoblasts)
    "neural": ("CL:0002319",),
    "epithelial": ("CL:0000066",),
    "endothelial": ("CL:0000115",),
    "connective tissue": ("CL:0002320",),
    "germ line": ("CL:0000586",),
}

# terms that say where cells were taken, not what they are: a study labelled "PBMC" holds
# monocytes, lymphocytes and dendritic cells, so its cells may be any of its lineage's types
# (the ontology puts "peripheral blood mononuclear cell" beside "classical monocyte", which
# made every PBMC a triplet negative of every typed blood cell)
MIXTURE_TERMS = frozenset({
    "CL:2000001",  # peripheral blood mononuclear cell
    "CL:0000081",  # blood cell
    "CL:0000080",  # circulating cell
    "CL:0002092",  # bone marrow cell
    "CL:0000842",  # mononuclear cell
})

# a tissue is related to another when one is the other's ancestor within this many steps
# ("venous blood" and "blood"); farther ancestors are generic ("anatomical structure")
TISSUE_DISTANCE = 3


def cell_lineages(term_id) -> frozenset[str]:
    """The lineages (keys of :data:`LINEAGES`) of a cell-type term: those whose head class is the
    term or one of its ancestors; empty for an unknown term or one under none of them."""
    if not term_id:
        return frozenset()
    info = ontologies().term(str(term_id))
    if info is None:
        return frozenset()
    mine = {str(term_id), *info.ancestors}
    return frozenset(name for name, heads in LINEAGES.items() if mine.intersection(heads))


def tissues_related(a, b) -> bool:
    """Whether two tissue keys (UBERON term ids, or a study's own label where no term matched,
    compared without case) name the same tissue: equal, or one term the other's ancestor within
    TISSUE_DISTANCE steps. False when either is empty."""
    a, b = str(a or "").strip(), str(b or "").strip()
    if not a or not b:
        return False
    if a.lower() == b.lower():
        return True
    onto = ontologies()
    ta, tb = onto.term(a), onto.term(b)
    if ta is None or tb is None:
        return False
    d = ta.ancestors.get(b, tb.ancestors.get(a))
    return d is not None and d <= TISSUE_DISTANCE


def term_closure(term_ids) -> dict[str, dict]:
    """{term id: {"label", "parents", "ancestors"}} for every given term and all its ancestors
    (``ancestors``: id -> is_a distance). Unknown ids are skipped."""
    onto = ontologies()
    out: dict[str, dict] = {}
    todo = sorted({str(t) for t in term_ids if t})
    while todo:
        tid = todo.pop()
        if tid in out:
            continue
        if tid == HEALTHY:
            out[tid] = {"label": "normal", "parents": [], "ancestors": {}}
            continue
        t = onto.term(tid)
        if t is None:
            continue
        anc = {a: int(d) for a, d in t.ancestors.items() if onto.term(a) is not None}
        out[tid] = {"label": t.label, "parents": sorted(a for a, d in anc.items() if d == 1), "ancestors": anc}
        todo += [a for a in anc if a not in out]
    return dict(sorted(out.items()))


def term_relation(term_ids, max_distance: int = POSITIVE_DISTANCE) -> pd.DataFrame:
    """int8 matrix over the distinct ``term_ids`` (index and columns): 1 = the same cell type
    for the triplet loss (the same term, or one an ancestor of the other within
    ``max_distance`` steps), -1 = neither positive nor negative (a more distant ancestor: a
    "leukocyte" is not a negative of a "monocyte"), 0 = a valid negative. A mixture term
    (:data:`MIXTURE_TERMS`, "PBMC") is -1 with every other term of its lineage."""
    onto = ontologies()
    ids = sorted({str(t) for t in term_ids if t})
    anc = {}
    for t in ids:
        info = onto.term(t)
        anc[t] = dict(info.ancestors) if info is not None else {}
    lineage = {t: cell_lineages(t) for t in ids}
    rel = np.zeros((len(ids), len(ids)), dtype=np.int8)
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            d = 0 if a == b else anc[a].get(b, anc[b].get(a))
            if d is not None:
                rel[i, j] = 1 if d <= max_distance else -1
            elif (a in MIXTURE_TERMS or b in MIXTURE_TERMS) and lineage[a] & lineage[b]:
                rel[i, j] = -1
    return pd.DataFrame(rel, index=ids, columns=ids)

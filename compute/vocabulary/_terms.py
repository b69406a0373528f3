"""The terms an atlas uses, with their ancestors (what the atlas stores so that a reader needs
no ontology), and the relation between cell-type terms that the triplet loss pairs by."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compute.vocabulary._ontology import HEALTHY, ontologies

__all__ = ["POSITIVE_DISTANCE", "term_closure", "term_relation"]

# terms at most this many is_a steps apart (one an ancestor of the other) count as the same
# cell type for the triplet loss: "CD14-positive monocyte" pairs with "classical monocyte"
POSITIVE_DISTANCE = 2


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
    "leukocyte" is not a negative of a "monocyte"), 0 = a valid negative."""
    onto = ontologies()
    ids = sorted({str(t) for t in term_ids if t})
    anc = {}
    for t in ids:
        info = onto.term(t)
        anc[t] = dict(info.ancestors) if info is not None else {}
    rel = np.zeros((len(ids), len(ids)), dtype=np.int8)
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            d = 0 if a == b else anc[a].get(b, anc[b].get(a))
            if d is not None:
                rel[i, j] = 1 if d <= max_distance else -1
    return pd.DataFrame(rel, index=ids, columns=ids)

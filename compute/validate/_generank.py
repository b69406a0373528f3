"""What SIGnature claims for its gene ranking, measured (issue 21): within each cell type, do
the top genes by attribution hold more of the type's known markers, and fewer ribosomal and
mitochondrial housekeeping genes, than the top genes by expression?"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["HOUSEKEEPING", "gene_ranking_table", "markers_for"]

# ribosomal proteins (RPL*, RPS*, not the kinases RPS6KA*) and mitochondrially encoded genes
HOUSEKEEPING = {"ribosomal": re.compile(r"^RP[LS]\d+[AXYL]?\d*$"), "mitochondrial": re.compile(r"^MT-")}


def markers_for(term_id: str, tree, markers: dict[str, tuple[str, ...]], terms: dict[str, tuple[str, str]]) -> set[str]:
    """The known markers of an atlas cell type: every marker set whose Cell Ontology term is the
    type's term or one of its ancestors (the markers of "monocyte" hold for a classical one)."""
    out: set[str] = set()
    for name, (tid, _) in terms.items():
        if tid == term_id or tree.is_descendant(term_id, tid):
            out |= set(markers.get(name, ()))
    return out


def gene_ranking_table(atlas, *, studies=None, top: int = 50, cell_min: int = 10, min_cells: int = 30) -> pd.DataFrame:
    """Per cell type (ontology term, at least ``min_cells`` cells, with known markers): the
    share of its known markers (among those in the gene order) that are in the top ``top``
    genes by mean attribution and by mean expression (compute.query.gene_ranking, samples as
    the unit), and the share of ribosomal and of mitochondrial genes in each top ``top``."""
    from compute.query import RankingParams, gene_ranking
    from compute.reference import MARKER_TERMS, immune_markers

    cells = atlas.cells
    if studies:
        cells = cells[cells["study"].isin(list(studies))]
    counts = cells.groupby(["cell_type_ontology_term_id", "cell_type"], observed=True).size()
    markers = immune_markers()
    genes = set(atlas.genes)
    rows = []
    for (tid, label), n in counts.items():
        if not tid or n < min_cells:
            continue
        known = markers_for(tid, atlas.vocabulary, markers, MARKER_TERMS) & genes
        if not known:
            continue
        row = {"cell type": label, "term": tid, "cells": int(n), "known markers": len(known)}
        for store, name in (("attr", "attribution"), ("expr", "expression")):
            r = gene_ranking(atlas, RankingParams(cell_types=(tid,), studies=tuple(studies or ()), store=store, cell_min=cell_min))
            # the term's cells and its descendants' (which also have rows of their own)
            head = r.top(top)
            row[f"markers {name}"] = len(known & set(head)) / len(known)
            for kind, pattern in HOUSEKEEPING.items():
                row[f"{kind} {name}"] = float(np.mean([bool(pattern.match(g)) for g in head])) if head else float("nan")
            row["samples"] = len(r.samples)
        rows.append(row)
    return pd.DataFrame(rows)

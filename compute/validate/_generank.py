"""What SIGnature claims for its gene ranking, measured (issue 21): within each cell type, do
the top genes by attribution hold more of the type's known markers and transcription factors,
and fewer ribosomal and mitochondrial housekeeping genes, than the top genes by expression?"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from compute.validate._tfs import tf_list, tf_share, to_current_symbols

__all__ = ["HOUSEKEEPING", "evaluate_gene_ranking", "gene_ranking_table", "markers_for"]

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


def gene_ranking_table(atlas, *, studies=None, top: int = 50, cell_min: int = 10, min_cells: int = 30,
                       tfs: frozenset[str] | None = None) -> pd.DataFrame:
    """Per cell type (ontology term, at least ``min_cells`` cells, with known markers in the gene
    order), largest first: the share of its known markers (``known markers``: those in the gene
    order; ``markers measured``: those the selected studies measured) that are in the top ``top``
    genes by mean attribution and by mean expression (compute.query.gene_ranking, samples as the
    unit), the share of ribosomal and of mitochondrial genes in each top ``top``, and how many of
    each kind the population measured at all (``ribosomal measured``, ``mitochondrial measured``).
    With ``tfs`` (current HGNC symbols of transcription factors, compute.validate's tf_list) also
    the share of TFs in each top ``top`` (``TF attribution``, ``TF expression``) and how many TFs
    the population measured (``TF measured``; ``genes measured`` is how many genes it measured)."""
    from compute.query import RankingParams, gene_ranking
    from compute.reference import MARKER_TERMS, immune_markers

    cells = atlas.cells
    if studies:
        cells = cells[cells["study"].isin(list(studies))]
    counts = cells.groupby(["cell_type_ontology_term_id", "cell_type"], observed=True).size().sort_values(ascending=False, kind="stable")
    markers = immune_markers()
    genes = set(atlas.genes)
    tf_genes: set[str] = set()
    if tfs is not None:
        # the atlas's own spelling of each TF (its gene order may carry a previous symbol)
        from compute.genes import symbol_table

        current, _ = to_current_symbols(atlas.genes, symbol_table())
        tf_genes = {g for g, sym in current.items() if sym in tfs}
    rows = []
    for (tid, label), n in counts.items():
        if not tid or n < min_cells:
            continue
        known = markers_for(tid, atlas.vocabulary, markers, MARKER_TERMS) & genes
        if not known:
            continue
        # the term's cells and its descendants' (which also have rows of their own)
        ranks = {store: gene_ranking(atlas, RankingParams(cell_types=(tid,), studies=tuple(studies or ()), store=store, cell_min=cell_min))
                 for store in ("attr", "expr")}
        measured = set(ranks["attr"].table.index)
        # a marker no selected study measured cannot rank in either list: both shares are out of the
        # markers in the gene order, and "markers measured" says how many could rank at all
        row = {"cell type": label, "term": tid, "cells": int(n), "samples": len(ranks["attr"].samples), "known markers": len(known),
               "markers measured": len(known & measured), "genes measured": len(measured)}
        for kind, pattern in HOUSEKEEPING.items():
            row[f"{kind} measured"] = sum(bool(pattern.match(g)) for g in measured)
        if tfs is not None:
            row["TF measured"] = len(tf_genes & measured)
        for store, name in (("attr", "attribution"), ("expr", "expression")):
            head = ranks[store].top(top)
            row[f"markers {name}"] = len(known & set(head)) / len(known)
            for kind, pattern in HOUSEKEEPING.items():
                row[f"{kind} {name}"] = float(np.mean([bool(pattern.match(g)) for g in head])) if head else float("nan")
            if tfs is not None:
                row[f"TF {name}"] = tf_share(head, tf_genes)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_gene_ranking(atlas, *, top: int = 50, cell_min: int = 10, min_cells: int = 30) -> dict:
    """The gene-ranking section's numbers for ``atlas``: ``real`` (its real studies only, the PBMC
    68k study in a demo-style atlas) and ``all`` (every study), each {"studies": [ids], "rows":
    gene_ranking_table's records}, with ``atlas`` (its name), ``top``, ``seconds`` and ``tf_list``
    (the transcription-factor list used: release, source, count, renamed and unmapped names)."""
    import time

    tfs = tf_list()  # read before the clock starts: "seconds" is the ranking's time alone
    t0 = time.perf_counter()
    real = [s.id for s in atlas.studies if not s.simulated]
    out = {"atlas": atlas.name, "top": top, "cell_min": cell_min, "min_cells": min_cells, "tf_list": tfs.summary(),
           "n_simulated": sum(bool(s.simulated) for s in atlas.studies)}
    for part, studies in (("real", real), ("all", [s.id for s in atlas.studies])):
        table = (gene_ranking_table(atlas, studies=studies, top=top, cell_min=cell_min, min_cells=min_cells, tfs=tfs.symbols)
                 if studies else pd.DataFrame())
        out[part] = {"studies": studies, "rows": table.to_dict("records")}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out

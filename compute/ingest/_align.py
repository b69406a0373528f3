"""Align a study's genes to the model's gene order (method.md section 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from compute.errors import IngestError

__all__ = ["GeneOverlap", "align_to_genes", "gene_overlap"]


@dataclass(frozen=True)
class GeneOverlap:
    """How a study's genes meet the gene order."""

    n_study_genes: int
    n_model_genes: int
    n_shared: int

    @property
    def fraction_of_model(self) -> float:
        return self.n_shared / self.n_model_genes if self.n_model_genes else 0.0

    def as_dict(self) -> dict:
        return {
            "n_study_genes": self.n_study_genes,
            "n_model_genes": self.n_model_genes,
            "n_shared": self.n_shared,
            "fraction_of_model": round(self.fraction_of_model, 4),
        }


def gene_overlap(study_genes, gene_order, *, min_overlap: int = 0, where: str = "study") -> GeneOverlap:
    """How many of ``study_genes`` the gene order has. Raises IngestError when fewer than
    ``min_overlap`` genes are shared (before any work on the study's cells)."""
    pos = {g: i for i, g in enumerate(gene_order)}
    return _overlap(np.array([pos.get(g, -1) for g in study_genes], dtype=np.int64), len(gene_order), min_overlap, where)


def _overlap(col_map: np.ndarray, n_order: int, min_overlap: int, where: str) -> GeneOverlap:
    shared = int((col_map >= 0).sum())
    if shared < min_overlap:
        raise IngestError(
            f"{where}: only {shared} of its {col_map.size} genes are in the model's gene order of "
            f"{n_order} (minimum {min_overlap}, 'ingest.min_gene_overlap'). Check that genes are "
            "human HGNC symbols (or Ensembl ids with var['feature_name'])."
        )
    return GeneOverlap(col_map.size, n_order, shared)


def align_to_genes(
    X: sp.csr_matrix, study_genes, gene_order, *, min_overlap: int = 0, where: str = "study"
) -> tuple[sp.csr_matrix, GeneOverlap]:
    """Return X re-indexed to ``gene_order`` (absent genes are zero columns, extra genes dropped).

    Raises IngestError when fewer than ``min_overlap`` genes are shared.
    """
    pos = {g: i for i, g in enumerate(gene_order)}
    col_map = np.array([pos.get(g, -1) for g in study_genes], dtype=np.int64)
    overlap = _overlap(col_map, len(gene_order), min_overlap, where)
    X = sp.csr_matrix(X)
    new_cols = col_map[X.indices]
    keep = new_cols >= 0
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[keep]
    out = sp.csr_matrix(
        (X.data[keep].astype(np.float32), (rows, new_cols[keep])), shape=(X.shape[0], len(gene_order))
    )
    out.sort_indices()
    return out, overlap

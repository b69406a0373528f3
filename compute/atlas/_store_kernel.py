"""A gene-major store's weighted column sums, compiled (numba): no copy of the gathered columns.

Imported on the first score (numba is a dependency of umap-learn and scanpy; the compiled code
is cached on disk after the first call).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["consolidated_sums", "copy_columns", "masked_column_totals", "weighted_column_sums"]


@njit(cache=True, nogil=True)
def weighted_column_sums(indptr, indices, data, genes, weights, out):
    """``out[cell] += weights[j] * value`` for every stored value of gene column ``genes[j]``,
    column after column in the order given, in ``out``'s precision (float32: the order and
    precision of scipy's CSC matrix-vector product over the gathered columns)."""
    for j in range(genes.size):
        g = genes[j]
        w = weights[j]
        for p in range(indptr[g], indptr[g + 1]):
            out[indices[p]] += data[p] * w


@njit(cache=True, nogil=True)
def consolidated_sums(indptr, indices, data, genes, weights, bounds, study_pattern, out):
    """Weighted sums over a store that holds every study (cells in atlas order): for each gene
    column ``genes[j]``, each stored value of a cell of study s adds ``data * weights[p, j]``
    (p = ``study_pattern[s]``, the study's renormalised weights; p < 0: study not scored) to
    ``out[cell]`` (float32), column after column: per cell the same float32 operations in the
    same order as :func:`weighted_column_sums` over the study's own store."""
    n_studies = bounds.size - 1
    for j in range(genes.size):
        g = genes[j]
        s = 0
        for p in range(indptr[g], indptr[g + 1]):
            c = indices[p]
            while s < n_studies - 1 and c >= bounds[s + 1]:
                s += 1
            pat = study_pattern[s]
            if pat >= 0:
                w = weights[pat, j]
                if w != 0:
                    out[c] += data[p] * w


@njit(cache=True, nogil=True)
def copy_columns(indptr, indices, data, offset, cursor, out_indices, out_data):
    """Append one study's store, its cells shifted by ``offset``, at each gene's ``cursor``
    (advanced) in the consolidated arrays."""
    for g in range(indptr.size - 1):
        a, b = indptr[g], indptr[g + 1]
        at = cursor[g]
        for p in range(a, b):
            out_indices[at + p - a] = indices[p] + offset
            out_data[at + p - a] = data[p]
        cursor[g] = at + (b - a)


@njit(cache=True, nogil=True)
def masked_column_totals(indptr, indices, data, cell_mask, sums, counts):
    """Add to ``sums`` (float64) and ``counts`` each gene's values over the cells where
    ``cell_mask`` is true, in storage order (what a bincount over the kept values adds)."""
    for g in range(indptr.size - 1):
        for p in range(indptr[g], indptr[g + 1]):
            if cell_mask[indices[p]]:
                sums[g] += np.float64(data[p])
                counts[g] += 1

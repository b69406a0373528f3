"""The null's inner loop, compiled (numba): every draw scored, cut and counted without a
cells x draws matrix.

For a block of draws the kernel walks the selected cells once (cell-major, CSR) and adds each
stored value, times its weight, to every draw of the block that uses its gene, in float32 and
in ascending gene order: the same operations, in the same order, as scipy's sparse product
``M @ D`` did before, so each draw's scores are bit-identical to it. Each draw's row is then put
on the panel scale in float64 (the study factor), cut at the draw's own quantile (numpy's
"linear" rule, replicated exactly), and its hits counted per sample. Memory is one block of
draws x cells, whatever the number of draws.

Imported only when a null runs (numba is a dependency of umap-learn and scanpy; the compiled
code is cached on disk after the first call).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["hit_counts"]


@njit(cache=True, nogil=True)
def _select(buf, k):
    """The k-th smallest value of ``buf`` (0-based; ``buf`` is reordered in place): Hoare
    quickselect with a median-of-three pivot."""
    lo, hi = 0, buf.size - 1
    while hi > lo:
        mid = (lo + hi) // 2
        a, b, c = buf[lo], buf[mid], buf[hi]
        pivot = b if (a <= b <= c or c <= b <= a) else (a if (b <= a <= c or c <= a <= b) else c)
        i, j = lo, hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return buf[k]
    return buf[k]


@njit(cache=True, nogil=True)
def _quantile_linear(values, q, buf):
    """``np.quantile(values, q)`` with numpy's default "linear" method, the same float steps
    (virtual index (n - 1) * q, and its lerp that counts back from the upper value when the
    fraction is 0.5 or more). ``buf``: scratch of the same length."""
    n = values.size
    virtual = (n - 1) * q
    below = np.floor(virtual)
    gamma = virtual - below
    i_lo = int(below)
    if i_lo < 0:
        i_lo = 0
        gamma = 0.0
    if i_lo > n - 1:
        i_lo = n - 1
    i_hi = min(i_lo + 1, n - 1)
    buf[:] = values
    a = _select(buf, i_lo)
    # after the select every value from i_lo + 1 on is >= a: the next order statistic is their minimum
    b = a
    if i_hi > i_lo:
        b = buf[i_lo + 1]
        for t in range(i_lo + 2, n):
            if buf[t] < b:
                b = buf[t]
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1.0 - gamma)
    return a + diff * gamma


@njit(cache=True, nogil=True)
def hit_counts(indptr, indices, data, use_ptr, use_draw, use_weight, n_block, cell_study, factor, quantile, value,
               sample_codes, n_samples):
    """(n_block, n_samples) int64 hit counts of a block of draws.

    ``indptr``/``indices``/``data``: selected cells x genes as CSR (genes ascending in each
    row). ``use_ptr`` (n_genes + 1), ``use_draw``, ``use_weight``: for each gene, the draws of
    the block that use it (0..n_block-1) and its float32 weight there. ``cell_study``: each
    cell's row of ``factor`` (studies x n_block, float64), the panel scale of each draw in each
    study. ``quantile`` in [0, 1] cuts each draw at its own quantile; a negative ``quantile``
    cuts at the fixed ``value``. A hit is a score strictly above the cut.

    Cell-major: each stored value is read once per block and added to every draw of the block
    that uses its gene; a draw's row stays in cache while consecutive cells fill it."""
    n_cells = cell_study.size
    rows = np.empty((n_block, n_cells), dtype=np.float32)
    # a tile of cells x draws (about 256 KB) takes the scattered adds while it sits in cache,
    # then is copied into the draws' rows, which the cut reads one after the other
    tile_cells = max(16, 65536 // max(n_block, 1))
    tile = np.empty((tile_cells, n_block), dtype=np.float32)
    for c0 in range(0, n_cells, tile_cells):
        c1 = min(c0 + tile_cells, n_cells)
        tile[:] = 0
        for c in range(c0, c1):
            r = c - c0
            for p in range(indptr[c], indptr[c + 1]):
                g = indices[p]
                a, b = use_ptr[g], use_ptr[g + 1]
                if a == b:
                    continue
                v = data[p]
                for u in range(a, b):
                    tile[r, use_draw[u]] += use_weight[u] * v
        for d in range(n_block):
            for c in range(c0, c1):
                rows[d, c] = tile[c - c0, d]
    counts = np.zeros((n_block, n_samples), dtype=np.int64)
    if n_cells == 0:
        return counts
    scores = np.empty(n_cells, dtype=np.float64)
    buf = np.empty(n_cells, dtype=np.float64)
    for d in range(n_block):
        for c in range(n_cells):
            scores[c] = np.float64(rows[d, c]) * factor[cell_study[c], d]
        cut = _quantile_linear(scores, quantile, buf) if quantile >= 0 else value
        for c in range(n_cells):
            if scores[c] > cut:
                counts[d, sample_codes[c]] += 1
    return counts


@njit(cache=True, nogil=True)
def column_totals(indices, data, n_genes):
    """(sum as float64, number of stored values) per column of a CSR matrix's ``indices`` and
    ``data``, added in storage order (what ``np.bincount(indices, weights=data)`` computes, without
    its float64 copy of the values)."""
    sums = np.zeros(n_genes, dtype=np.float64)
    counts = np.zeros(n_genes, dtype=np.int64)
    for p in range(indices.size):
        g = indices[p]
        sums[g] += np.float64(data[p])
        counts[g] += 1
    return sums, counts

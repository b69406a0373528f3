"""Which cells of one dataset a census source keeps: seeded, stratified by cell type."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["dataset_rng", "select_cells"]


def dataset_rng(seed: int, dataset_id: str) -> np.random.Generator:
    """The generator of one dataset's draw: the manifest's seed and the dataset id, so a dataset's
    cells do not change when the filter brings other datasets in or out."""
    salt = int.from_bytes(hashlib.sha256(dataset_id.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), salt])


def _proportional(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over the strata in proportion to ``counts`` (largest remainders; ties to the
    earlier stratum), each share at most its count."""
    exact = counts * (total / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    left = total - int(quota.sum())
    if left:
        order = np.lexsort((np.arange(len(counts)), -(exact - quota)))
        quota[order[:left]] += 1
    return np.minimum(quota, counts)


def select_cells(strata, *, max_cells: int, max_per_stratum: int | None = None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of the cells kept from one dataset whose cells have labels ``strata``
    (cell type terms): at most ``max_per_stratum`` of each label, then at most ``max_cells`` in
    all, shared over the labels in proportion to what the first cap left. Within a label the
    cells are a uniform draw from ``rng``; every cell is kept when no cap binds."""
    strata = np.asarray(strata, dtype=object).astype(str)
    n = len(strata)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(n)  # one random order; each label keeps the first of its cells in it
    labels, codes = np.unique(strata[order], return_inverse=True)
    counts = np.bincount(codes, minlength=len(labels)).astype(np.int64)
    quota = counts if max_per_stratum is None else np.minimum(counts, int(max_per_stratum))
    if quota.sum() > max_cells:
        quota = _proportional(quota, int(max_cells))
    # rank of each cell among the cells of its label, in the random order
    by_label = np.argsort(codes, kind="stable")  # stable: within a label, the random order
    rank = np.empty(n, dtype=np.int64)
    rank[by_label] = np.arange(n) - (np.cumsum(counts) - counts)[codes[by_label]]
    keep = rank < quota[codes]
    return np.sort(order[keep])

"""Expression-based scores on the same cells, for comparison (method.md section 5).

scanpy's ``score_genes`` (mean expression of the set minus the mean of expression-matched
control genes) on the stored log-normalised expression of the selected cells, computed here
with the same rule, the same random control genes and the same numbers, but without building
an AnnData and pandas indexes per study: on the demo that took 1.0 s of a 1.4 s query
(issue 17); tests/compute/query/test_null.py compares every study's scores with scanpy's own function.
"""

from __future__ import annotations

import numpy as np

from compute.errors import QueryError

__all__ = ["expression_scores", "score_genes_matrix"]


def score_genes_matrix(X, gene_positions, *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0) -> np.ndarray:
    """Per cell (row of the sparse or dense ``X``: cells x genes, log-normalised), what
    ``scanpy.tl.score_genes(adata, genes, ctrl_size=, n_bins=, random_state=seed)`` gives on
    ``X`` as a CSR matrix (scanpy 1.11, ``ctrl_as_ref=True``, the gene pool being every column
    of ``X``), up to float32 rounding: the means here are summed in float64.

    ``gene_positions``: the columns of the set's genes. The rule, step by step as scanpy takes
    it: each gene's mean over the cells; genes binned by the rank of that mean (ties at their
    lowest rank) into bins of round(genes / (n_bins - 1)); for each bin holding a set gene,
    in increasing order, ``ctrl_size`` genes of the bin drawn without replacement from one
    random stream seeded with ``seed`` (the whole bin when it is smaller; no draw then); the
    control genes are the union of the drawn genes less the set's. Score: the mean of the set's
    genes minus the mean of the control genes, in float64. NaN for every cell when no control
    gene was found (scanpy raises there)."""
    import scipy.sparse as sp

    pos = np.unique(np.asarray(gene_positions, dtype=np.int64))
    n_cells, n_genes = X.shape
    if n_cells == 0:
        return np.zeros(0)
    if len(pos) == 0:
        raise ValueError("score_genes_matrix: no gene of the set is a column of X")
    # the column means exactly as scanpy takes them on a CSR matrix (scipy sums in the matrix's
    # dtype, each column over its rows in order): a mean one float32 rounding apart can move a
    # gene past a tie into the next bin. A CSC matrix with sorted rows adds in that same order
    # (the atlas's expression store is gene-major: no conversion of every selected cell)
    if not (sp.issparse(X) and X.format in ("csr", "csc")):
        X = sp.csr_matrix(X)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    sums = np.asarray(X.sum(axis=0, dtype=np.float64)).ravel()
    picked = _set_and_controls(sums / n_cells, pos, ctrl_size, n_bins, seed)
    if picked is None:
        return np.full(n_cells, np.nan)
    w_set, w_control = picked
    return np.asarray(X @ w_set).ravel() - np.asarray(X @ w_control).ravel()


def _set_and_controls(avg: np.ndarray, pos: np.ndarray, ctrl_size: int, n_bins: int, seed: int):
    """(set weights, control weights) over the columns whose means are ``avg``, as
    score_genes_matrix draws them (its docstring has the rule); None when no control gene was
    found."""
    from scipy.stats import rankdata

    n_genes = avg.size
    pool = np.flatnonzero(np.isfinite(avg))  # scanpy drops genes whose mean is not finite
    with np.errstate(divide="ignore", invalid="ignore"):
        n_items = int(np.round(len(pool) / (n_bins - 1)))
        cut = np.full(n_genes, np.nan)
        cut[pool] = rankdata(avg[pool], method="min") // n_items
    rng = np.random.RandomState(seed)
    in_set = np.zeros(n_genes, dtype=bool)
    in_set[pos] = True
    control = np.zeros(n_genes, dtype=bool)
    set_cuts = cut[pos]
    for c in np.unique(set_cuts[~np.isnan(set_cuts)]):
        members = pool[cut[pool] == c]  # in column order, as scanpy's index keeps them
        if ctrl_size < len(members):
            members = members[rng.choice(len(members), size=ctrl_size, replace=False)]
        control[members] = True
    control &= ~in_set
    if not control.any():
        return None
    return in_set / float(in_set.sum()), control / float(control.sum())


def expression_scores(atlas, genes, selection: np.ndarray, *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0) -> np.ndarray:
    """score_genes per cell, aligned with ``atlas.cells`` (NaN outside ``selection``).

    ``genes``: gene-order symbols. Each study is scored on its own panel (method.md section 6:
    a gene it did not measure is missing, not zero): score_genes over the study's selected
    cells and measured genes, control genes binned there (:func:`score_genes_matrix`); NaN
    for a study that measured none of ``genes``. Raises QueryError for an atlas without stored
    expression (built before it was added: rebuild it).
    """
    if not atlas.has_expression:
        raise QueryError(f"atlas '{atlas.name}' stores no expression (built before it was added): re-run `python -m compute build <manifest>`")
    out = np.full(atlas.n_cells, np.nan)
    column = {g: i for i, g in enumerate(atlas.genes)}
    wanted = np.zeros(len(atlas.genes), dtype=bool)
    wanted[[column[g] for g in set(genes) if g in column]] = True
    sums_of = _gene_sums(atlas, selection)
    for s in atlas.studies:
        rows = selection[s.offset : s.offset + s.n_cells]
        n_rows = int(rows.sum())
        if not n_rows:
            continue
        measured = np.asarray(atlas.measured(s.id))
        in_set = np.flatnonzero(wanted[measured])
        if len(in_set) == 0:
            continue  # the study measured none of the genes: no score (NaN), not zero
        # score_genes_matrix on the selected cells x measured genes, without building that
        # matrix: the gene means come from _gene_sums, and only the set's and the control genes'
        # columns are read for the products (zero-weight columns add nothing)
        picked = _set_and_controls(sums_of[s.id][measured] / n_rows, in_set, ctrl_size, n_bins, seed)
        if picked is None:
            continue  # no control gene: NaN, as score_genes_matrix gives
        w_set, w_control = picked
        used = np.flatnonzero((w_set != 0) | (w_control != 0))
        X = atlas.store(s.id, "expr").gather(measured[used])[np.flatnonzero(rows)]
        out[s.offset : s.offset + s.n_cells][rows] = np.asarray(X @ w_set[used]).ravel() - np.asarray(X @ w_control[used]).ravel()
    return out


def _gene_sums(atlas, selection: np.ndarray) -> dict[str, np.ndarray]:
    """Each study's gene sums (float64, every gene of the gene order) of stored expression over
    its selected cells: a masked pass over the gene-major store, summed in the order scipy sums
    the selected rows. They depend on the cells, not on the genes asked for, so they are kept
    in the atlas's result cache under the selection: a new gene set on the same cells (the
    common case on the page) reads them instead of passing over every stored value again."""
    import hashlib

    selection = np.asarray(selection, dtype=bool)
    digest = hashlib.blake2b(np.packbits(selection).tobytes() + str(selection.size).encode(), digest_size=20).hexdigest()
    key = atlas.cache.key("expression-gene-sums", 1, digest)
    hit = atlas.cache.get(key)
    if hit is not None:
        return hit
    out = {}
    for s in atlas.studies:
        rows = selection[s.offset : s.offset + s.n_cells]
        if rows.any():
            out[s.id] = atlas.store(s.id, "expr").gene_totals(rows)[0]
    atlas.cache.set(key, out)
    return out

"""Correlation among a gene set's genes, for the gene-set null's correction (method.md 7).

Random gene sets matched by mean and detection are nearly independent genes; a real signature's
genes move together (one program), which widens the spread of its score between groups beyond
anything the random sets show, so the plain null calls too many links (docs/validation.md). CAMERA
(Wu and Smyth 2012) measures this as the variance inflation factor VIF = 1 + (m - 1) x the
mean pairwise correlation of the set's m genes. Here the correlation is across the selected
cells, from the variance of the set's summed standardised values (no m x m matrix, so a
5,000-gene list costs the same pass as a small one):
Var(sum_g z_g) = m + m (m - 1) mean_rho."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["VIF_DRAWS", "mean_correlation", "variance_inflation"]

# random sets whose correlation is averaged for the null's own VIF
VIF_DRAWS = 16  # enough for a mean near 1; each set more widens the column slice read


def mean_correlation(M: sp.spmatrix, sets: np.ndarray) -> np.ndarray:
    """Mean pairwise Pearson correlation across the rows (cells) of ``M`` (cells x genes) among
    the genes of each row of ``sets`` (sets x genes per set, gene positions; a position may
    repeat across sets, not within one). Genes constant over the cells are left out; a set with
    fewer than two other genes gets 0."""
    M = sp.csr_matrix(M)
    n = M.shape[0]
    sets = np.atleast_2d(np.asarray(sets, dtype=np.int64))
    if n < 2 or sets.size == 0:
        return np.zeros(sets.shape[0])
    genes = np.unique(sets)
    sub = M[:, genes].astype(np.float64)
    mean = np.asarray(sub.mean(axis=0)).ravel()
    sq = np.asarray(sub.multiply(sub).mean(axis=0)).ravel()
    sd = np.sqrt(np.clip(sq - mean**2, 0, None))
    inv = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 1e-12)
    col = np.searchsorted(genes, sets)  # each set's genes as columns of ``sub``
    n_sets, m = sets.shape
    W = sp.csr_matrix((inv[col].ravel(), (col.ravel(), np.repeat(np.arange(n_sets), m))), shape=(genes.size, n_sets))
    S = sub @ W  # cells x sets: the sum of each set's standardised values (up to a constant)
    S = S.toarray() if sp.issparse(S) else np.asarray(S)
    var = S.var(axis=0)
    k = (inv[col] > 0).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (var - k) / (k * (k - 1))
    return np.where(k >= 2, rho, 0.0)


def variance_inflation(M: sp.spmatrix, signature: np.ndarray, draws: np.ndarray) -> tuple[float, float]:
    """(VIF of ``signature``, mean VIF of the first VIF_DRAWS ``draws``) across the cells of ``M``."""
    sets = np.vstack([np.asarray(signature, dtype=np.int64)[None, :], np.asarray(draws, dtype=np.int64)[:VIF_DRAWS]])
    rho = mean_correlation(M, sets)
    m = sets.shape[1]
    vif = 1.0 + (m - 1) * rho
    return float(vif[0]), float(vif[1:].mean()) if vif.size > 1 else 1.0

"""A panel-invariant scale for studies measured on different gene panels (method.md section 6).

SIGnature scales each cell's attributions to sum to 1,000 over the genes its study measured.
A study measured on fewer genes therefore gets larger values per gene: the same cells on a
765-gene panel score several times higher than on their full panel.

SigAtlas keeps those values (SIGnature's scale, for comparison with published numbers) and
puts every study on one scale at query time with one number per study, its **measured
share** phi_s: the share of a cell's attribution that the genes study s measured are expected
to carry, were every gene of the atlas measured. A value on the panel-invariant scale is the
stored value times phi_s; a study that measured every gene has phi_s = 1.

The shares come from the atlas itself. With mu_t the mean per-gene profile of study t (its
cells' rows averaged, summing to 1 over its panel P_t) and pi the atlas's mean profile over all
genes (summing to 1), the pair is the fixed point of

    pi_g  = mean over studies t that measured g of  phi_t * mu_tg
    phi_t = sum over g in P_t of pi_g                     (pi renormalised to sum to 1)

started from phi = 1: a gene's expected share is learned from the studies that measured it,
each brought to the full-panel scale by its own share. For two copies of the same cells, one
on the full panel and one on a subset P, phi of the subset copy converges to the share of the
full copy's attribution that falls on P, which is what makes the two copies comparable. The
same rule, on mean normalised expression, rescales expression to a panel-invariant library
size. Cell types differ between studies, so a share is an atlas-wide average, not a per-cell
truth; the build report states every study's share.
"""

from __future__ import annotations

import numpy as np

__all__ = ["measured_shares", "read_study_panel"]


def read_study_panel(study_dir) -> tuple[np.ndarray, np.ndarray]:
    """(measured gene positions, (2, genes) gene means) as written for a study under
    ``study_dir`` (build side: the files exist before the root is written)."""
    from pathlib import Path

    from compute.atlas._format import GENE_MEANS_FILE, MEASURED_FILE

    d = Path(study_dir)
    return np.load(d / MEASURED_FILE), np.load(d / GENE_MEANS_FILE)


def measured_shares(profiles: list[np.ndarray], measured: list[np.ndarray], n_genes: int, *,
                    iterations: int = 200, tol: float = 1e-9, gene_shares: bool = False):
    """Measured share phi_t of every study (array, one value per study, in (0, 1]).

    ``profiles[t]``: study t's mean value per gene (length ``n_genes``; any positive scale: it
    is renormalised over the study's panel). ``measured[t]``: gene positions study t measured.
    A study with an all-zero profile gets phi = 1 (nothing to learn from it). With
    ``gene_shares``: ``(phi, pi)``, pi each gene's expected share of a cell's total (summing to 1
    over the genes any study measured), so a gene set's share is its genes' sum.
    """
    n = len(profiles)
    mask = np.zeros((n, n_genes), dtype=bool)
    mu = np.zeros((n, n_genes), dtype=np.float64)
    for t, (p, m) in enumerate(zip(profiles, measured, strict=True)):
        m = np.asarray(m, dtype=np.int64)
        mask[t, m] = True
        p = np.asarray(p, dtype=np.float64)
        total = p[m].sum()
        if total > 0:
            mu[t, m] = p[m] / total
    informative = mu.sum(axis=1) > 0
    phi = np.ones(n)
    pi = np.zeros(n_genes)
    n_measuring = (mask & informative[:, None]).sum(axis=0)
    for _ in range(iterations):
        pi = np.divide((phi[:, None] * mu * informative[:, None]).sum(axis=0), n_measuring,
                       out=np.zeros(n_genes), where=n_measuring > 0)
        total = pi.sum()
        if total <= 0:
            break
        pi /= total
        new = np.where(informative, (mask * pi[None, :]).sum(axis=1), 1.0)
        new = np.clip(new, 1e-6, 1.0)
        done = np.max(np.abs(new - phi)) < tol
        phi = new
        if done:
            break
    return (phi, pi) if gene_shares else phi

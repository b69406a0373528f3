"""A null for every ranking: random gene sets matched to the signature (method.md section 4).

Each draw replaces every signature gene by a random gene from the same bin of the selection's
gene statistics (mean attribution x detection rate), keeping its weight, and reruns the whole
query (hit threshold from the draw's own scores, per-sample hit %, group means). A group's
empirical p-value is (1 + #draws with a mean hit % >= the observed) / (1 + draws): it cannot be
below 1 / (1 + draws), the floor reported with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["NullResult", "Panels", "gene_bins", "matched_draws", "null_rankings"]

N_MEAN_BINS = 10
N_DETECTION_BINS = 4
MIN_POOL = 5


@dataclass
class NullResult:
    """Per group (disease or study): the null band of its mean sample hit % and a p-value."""

    groups: pd.DataFrame  # group, by, observed, null_median, null_lo, null_hi, p_value
    n_draws: int
    p_floor: float
    band: tuple[float, float]  # the band's percentiles, e.g. (2.5, 97.5)
    n_cells: int = 0  # selected cells the draws were scored on (a stratified subsample for large selections)

    def p_values(self) -> dict[str, float]:
        """{group: empirical p-value}."""
        return dict(zip(self.groups["group"].astype(str), self.groups["p_value"].astype(float), strict=True)) if len(self.groups) else {}


def gene_bins(mean: np.ndarray, detection: np.ndarray) -> np.ndarray:
    """Bin code per gene: quantile bins of mean attribution, each split by detection rate.
    Genes never detected in the selection get bin -1 (never drawn)."""
    codes = np.full(mean.size, -1, dtype=np.int64)
    seen = detection > 0
    if not seen.any():
        return codes
    ranks = pd.Series(mean[seen]).rank(method="first").to_numpy()
    mbin = np.minimum((ranks - 1) * N_MEAN_BINS // seen.sum(), N_MEAN_BINS - 1).astype(np.int64)
    dbin = np.zeros(seen.sum(), dtype=np.int64)
    for b in range(N_MEAN_BINS):
        inb = mbin == b
        if inb.sum() >= N_DETECTION_BINS:
            r = pd.Series(detection[seen][inb]).rank(method="first").to_numpy()
            dbin[inb] = np.minimum((r - 1) * N_DETECTION_BINS // inb.sum(), N_DETECTION_BINS - 1)
    codes[seen] = mbin * N_DETECTION_BINS + dbin
    return codes


def matched_draws(signature: np.ndarray, bins: np.ndarray, n_draws: int, seed: int = 0, allowed: list[np.ndarray] | None = None) -> np.ndarray:
    """(n_draws, |signature|) gene positions: each column drawn from its gene's bin (never a
    signature gene), without repeats inside a draw. A bin with fewer than MIN_POOL candidates
    borrows the neighbouring bins; an undetected signature gene is matched among all genes.

    ``allowed[j]`` (bool over genes), when given, limits signature gene j's candidates, e.g. to
    genes measured in every study that measured gene j, so a random set covers each study as
    the signature does; it is relaxed only when it leaves no candidate at all."""
    rng = np.random.default_rng(seed)
    signature = np.asarray(signature, dtype=np.int64)
    sig_set = np.zeros(bins.size, dtype=bool)
    sig_set[signature] = True
    candidates = []
    for j, g in enumerate(signature):
        if allowed is not None and (~sig_set & allowed[j]).any():
            # outside the allowed genes counts as a signature gene: never drawn for this column
            excluded = sig_set | ~allowed[j]
        else:
            excluded = sig_set
        candidates.append(_pool(g, bins, excluded))
    return _draw(candidates, n_draws, signature.size, rng)


def _pool(g: int, bins: np.ndarray, sig_set: np.ndarray) -> np.ndarray:
    """Candidate genes for signature gene ``g``: its bin, widened until MIN_POOL genes."""
    b = bins[g]
    if b < 0:
        pool = np.flatnonzero(~sig_set & (bins >= 0))
    else:
        width = 0
        while True:
            lo, hi = b - width, b + width
            pool = np.flatnonzero(~sig_set & (bins >= lo) & (bins <= hi))
            if pool.size >= MIN_POOL or width > N_MEAN_BINS * N_DETECTION_BINS:
                break
            width += 1
    if pool.size == 0:
        pool = np.flatnonzero(~sig_set)
    return pool


def _draw(candidates: list[np.ndarray], n_draws: int, k: int, rng) -> np.ndarray:
    """Column j of every draw from ``candidates[j]``, all draws at once; a gene repeated inside a
    draw is drawn again (up to 8 rounds, where the pool allows)."""
    draws = np.empty((n_draws, k), dtype=np.int64)
    for j, pool in enumerate(candidates):
        draws[:, j] = pool[rng.integers(pool.size, size=n_draws)]
    for _ in range(8):
        s = np.sort(draws, axis=1)
        dup_rows = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        if dup_rows.size == 0:
            break
        for d in dup_rows:  # few rows: redraw the later copies of each repeated gene
            _, first = np.unique(draws[d], return_index=True)
            again = np.setdiff1d(np.arange(k), first)
            for j in again:
                draws[d, j] = candidates[j][rng.integers(candidates[j].size)]
    return draws


@dataclass
class Panels:
    """The selected cells' study panels: ``cell_study`` (study index per cell), ``measured``
    (studies x genes, bool) and ``share`` (measured share per study)."""

    cell_study: np.ndarray
    measured: np.ndarray
    share: np.ndarray

    def rescale(self, sums: np.ndarray, D: sp.spmatrix) -> np.ndarray:
        """Weighted sums over all draw genes (cells x draws) -> panel scores: the sums over the
        measured genes only (an unmeasured gene has no stored value, so it adds nothing),
        divided by the measured genes' weight and times the study's share."""
        weight = np.asarray(sp.csr_matrix(D).T @ self.measured.T.astype(np.float64)).T  # studies x draws
        factor = np.divide(self.share[:, None], weight, out=np.zeros_like(weight), where=weight > 0)
        return sums * factor[self.cell_study]


def null_rankings(
    M: sp.csc_matrix,
    draws: np.ndarray,
    weights: np.ndarray,
    quantile: float | None,
    value: float | None,
    sample_codes: np.ndarray,
    group_of_sample: dict[str, np.ndarray],
    kept_samples: np.ndarray,
    *,
    chunk: int = 100,
    progress=None,
    panels: Panels | None = None,
) -> dict[str, np.ndarray]:
    """Mean sample hit % per group for every draw.

    ``M``: selected cells x genes (attributions). ``draws``: (n_draws, k) gene columns with
    ``weights`` (k). The hit cut-off is the draw's own ``quantile`` of its scores, or the fixed
    ``value``. ``sample_codes``: sample index per selected cell; ``kept_samples``: samples that
    pass ``cell_min``; ``group_of_sample[by]``: group index per sample (-1 when the group is
    not ranked); ``progress(fraction done)`` is called after each block of draws.
    ``panels``: each cell's study panel and scale (method.md section 6): a draw's score then uses
    only the genes the cell's study measured, weights renormalised, times the study's share,
    exactly as the observed scores do. Returns {by: (n_draws, n_groups)}.
    """
    n_cells = M.shape[0]
    n_samples = int(sample_codes.max()) + 1 if sample_codes.size else 0
    per_sample = sp.csr_matrix((np.ones(n_cells), (sample_codes, np.arange(n_cells))), shape=(n_samples, n_cells))
    cells_per_sample = np.asarray(per_sample.sum(axis=1)).ravel()
    # float32 like the stored values: a float64 operand would copy M to float64 for every block
    w = (np.asarray(weights, dtype=np.float64) / np.sum(weights)).astype(np.float32)
    out = {by: [] for by in group_of_sample}
    for start in range(0, draws.shape[0], chunk):
        block = draws[start : start + chunk]
        n = block.shape[0]
        D = sp.csc_matrix((np.tile(w, n), (block.ravel(), np.repeat(np.arange(n), block.shape[1]))), shape=(M.shape[1], n),
                          dtype=np.float32)
        scores = (M @ D).toarray()  # cells x draws
        if panels is not None:
            scores = panels.rescale(scores, D)
        cut = np.quantile(scores, quantile, axis=0) if quantile is not None else np.full(n, value)
        hits = (scores > cut).astype(np.float64)
        pct = 100.0 * (per_sample @ hits) / np.maximum(cells_per_sample, 1)[:, None]  # samples x draws
        for by, gos in group_of_sample.items():
            n_groups = int(gos.max()) + 1 if (gos >= 0).any() else 0
            keep = kept_samples & (gos >= 0)
            G = sp.csr_matrix((np.ones(keep.sum()), (gos[keep], np.flatnonzero(keep))), shape=(n_groups, n_samples))
            counts = np.asarray(G.sum(axis=1)).ravel()
            out[by].append(((G @ pct) / np.maximum(counts, 1)[:, None]).T)
        if progress is not None:
            progress(min(start + chunk, draws.shape[0]) / draws.shape[0])
    return {by: np.vstack(parts) if parts else np.zeros((0, 0)) for by, parts in out.items()}

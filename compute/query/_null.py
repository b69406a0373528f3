"""A null for every ranking: random gene sets matched to the signature (method.md section 4).

Each draw replaces every signature gene by a random gene from the same bin of the selection's
gene statistics (mean attribution x detection rate; the signature's own genes are in the bins
too), keeping its weight, and reruns the whole
query (hit threshold from the draw's own scores, per-sample hit %, group means). A group's
empirical p-value is (1 + #draws with a mean hit % >= the observed) / (1 + draws): it cannot be
below 1 / (1 + draws), the floor reported with it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.errors import QueryError

__all__ = ["NullResult", "Panels", "check_draw_pool", "gene_bins", "matched_draws", "null_rankings", "null_thread_limit", "null_threads",
           "prepare_null"]

N_MEAN_BINS = 10
N_DETECTION_BINS = 4
MIN_POOL = 5
# bins cut among a panel's genes (gene_bins' ``among``) hold at least this many genes each: a
# study measuring few genes gets coarser bins rather than pools borrowed from the next bin
MIN_BIN = 10
# repeated genes redrawn one scalar draw at a time up to this many per round (MS1 with 1,000 draws
# needs about 5,000); beyond, a vectorised redraw per column (seconds, not minutes, for 5,000 genes)
MAX_SCALAR_REDRAWS = 50_000
# the null's block of draws x cells (float32 scores) kept at once: 128 MB (every block reads the
# selected cells' values once: fewer, larger blocks read less)
BLOCK_BYTES = 128 * 2**20
# with several threads, no block of fewer draws than this (smaller ones re-read the matrix for little)
MIN_THREAD_DRAWS = 64


_THREAD_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("sigatlas_null_threads", default=None)


@contextlib.contextmanager
def null_thread_limit(threads: int) -> Iterator[None]:
    """The nulls computed in this block (this thread, this context) use at most ``threads``
    threads: work that runs beside something more urgent on the same cores (a linked page's
    evidence, computed while the browser builds the page) leaves it a core."""
    token = _THREAD_LIMIT.set(max(1, int(threads)))
    try:
        yield
    finally:
        _THREAD_LIMIT.reset(token)


def null_threads(environ=None) -> int:
    """Threads one null uses: $SIGATLAS_QUERY_THREADS, else the CPU count, at most 4 (a query
    is one of several a server runs; dashboard.jobs bounds how many at once); at most the limit
    of an enclosing :func:`null_thread_limit`."""
    limit = _THREAD_LIMIT.get()
    found = _null_threads(environ)
    return found if limit is None else min(found, limit)


def _null_threads(environ=None) -> int:
    import os

    env = os.environ if environ is None else environ
    raw = env.get("SIGATLAS_QUERY_THREADS", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"$SIGATLAS_QUERY_THREADS must be a whole number of threads, got {raw!r}") from None
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class NullResult:
    """Per group (disease or study): the null band of its mean sample hit % and a p-value, the
    answer to "this signature, or would any gene set like it do?" (specificity against random
    gene sets). For diseases the statistic is the disease's mean hit % above the reference's
    (``relative_to``; the band is drawn at the reference's observed hit % plus the null's
    difference, the reference itself gets no p-value); the band and ``p_value`` are scaled for
    the correlation among the signature's genes (``inflation`` = sqrt(vif / vif_null): wider for a
    set more correlated than the random sets, narrower for one less). ``p_value_uncorrected``: the
    same without that scaling; ``p_value_plain``: the mean hit %
    itself against the draws', as before either correction (SIGnature's question)."""

    groups: pd.DataFrame  # group, observed, null_median, null_lo, null_hi, p_value, p_value_uncorrected, p_value_plain
    n_draws: int
    p_floor: float
    band: tuple[float, float]  # the band's percentiles, e.g. (2.5, 97.5)
    n_cells: int = 0  # selected cells the draws were scored on (a stratified subsample for large selections)
    vif: float = 1.0  # the signature's variance inflation factor across the selected cells (CAMERA)
    vif_null: float = 1.0  # the random sets' mean variance inflation factor
    inflation: float = 1.0  # the factor the null's spread around its median was scaled by
    relative_to: tuple[str, ...] = ()  # the groups (the reference's) each disease's hit % is compared above

    def p_values(self) -> dict[str, float]:
        """{group: p-value} for the groups that have one (not the reference itself)."""
        if not len(self.groups):
            return {}
        p = self.groups["p_value"].astype(float)
        return {g: float(v) for g, v in zip(self.groups["group"].astype(str), p, strict=True) if np.isfinite(v)}


def gene_bins(mean: np.ndarray, detection: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Bin code per gene: quantile bins of mean attribution, each split by detection rate.
    Genes never detected in the selection get bin -1 (never drawn), and so do genes outside
    ``among`` (bool over genes) when it is given: the bins are then cut among those genes only,
    fewer of them when the genes are few, so that every bin holds about MIN_BIN genes or more
    (a bin is then a signature gene's whole pool, the same for every gene in it)."""
    codes = np.full(mean.size, -1, dtype=np.int64)
    seen = detection > 0
    if among is not None:
        seen &= np.asarray(among, dtype=bool)
    n_seen = int(seen.sum())
    if not n_seen:
        return codes
    n_det = max(1, min(N_DETECTION_BINS, n_seen // MIN_BIN))
    n_mean = max(1, min(N_MEAN_BINS, n_seen // (n_det * MIN_BIN)))
    # ranks with ties in order of appearance (a stable sort): numpy, as a query re-bins once per
    # panel pattern of its genes (64 for MS1 on the demo) and pandas' rank cost ~1 ms a call
    ranks = np.empty(n_seen, dtype=np.int64)
    ranks[np.argsort(mean[seen], kind="stable")] = np.arange(n_seen)
    mbin = np.minimum(ranks * n_mean // n_seen, n_mean - 1)
    # within each mean bin, the detection rank: sorted by bin, then detection (np.lexsort is stable)
    order = np.lexsort((detection[seen], mbin))
    size = np.bincount(mbin, minlength=n_mean)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    within = np.empty(n_seen, dtype=np.int64)
    within[order] = np.arange(n_seen) - start[mbin[order]]
    split = size[mbin] >= n_det  # a bin of fewer genes than detection bins stays whole
    dbin = np.where(split, np.minimum(within * n_det // np.maximum(size[mbin], 1), n_det - 1), 0)
    codes[seen] = mbin * N_DETECTION_BINS + dbin
    return codes


def matched_draws(signature: np.ndarray, bins: np.ndarray, n_draws: int, seed: int = 0, allowed: list[np.ndarray] | None = None,
                  stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(n_draws, |signature|) gene positions: each column drawn from its gene's whole bin, the
    signature's own genes included, without repeats inside a draw. A bin with fewer than MIN_POOL
    candidates borrows the neighbouring bins; an undetected signature gene is matched among all
    genes.

    The signature's genes stay in the pool because the null's question is "would a random gene set
    like this one score as high?", and the signature is one such set: leaving its genes out made
    the draws a different population. Genes of one bin are far from alike (a few carry a disease's
    or a cell type's program), so a set holding one of those rare genes met a null that could never
    hold it: 10-14% of no-effect sets had p <= 0.05 (docs/validation.md, "Disease evidence").

    ``allowed[j]`` (bool over genes), when given, limits signature gene j's candidates, e.g. to
    genes measured in every study that measured gene j, so a random set covers each study as
    the signature does; it is relaxed only when it leaves no candidate at all. With ``stats`` (the
    (mean, detection) ``bins`` were cut from) the bins are cut again among each allowed set's genes
    (:func:`gene_bins`' ``among``), so a column's pool is exactly its gene's bin there: bins cut
    over all genes and then thinned to a small panel's genes held a few genes each and borrowed
    their neighbours', a pool that differs from gene to gene of one bin, and the null was
    conservative (4.1-4.6% of no-effect sets at p <= 0.05 on a corpus of 157 shared genes).

    Raises QueryError when the genes outside the signature are fewer than its genes (a signature
    of most of the atlas's genes): every draw would then be nearly the signature itself, no null."""
    rng = np.random.default_rng(seed)
    signature = np.asarray(signature, dtype=np.int64)
    check_draw_pool(signature, bins.size)
    nothing = np.zeros(bins.size, dtype=bool)
    candidates, rebinned = [], {}
    for j, g in enumerate(signature):
        # outside the allowed genes: never drawn for this column (unless nothing is allowed)
        excluded = ~allowed[j] if allowed is not None and allowed[j].any() else nothing
        pool = None
        if stats is not None and excluded is not nothing:
            key = excluded.tobytes()
            if key not in rebinned:
                rebinned[key] = gene_bins(stats[0], stats[1], among=~excluded)
            own = rebinned[key]
            pool = np.flatnonzero(own == own[g]) if own[g] >= 0 else np.flatnonzero(own >= 0)
        candidates.append(pool if pool is not None and pool.size else _pool(g, bins, excluded))
    return _draw(candidates, n_draws, signature.size, rng)


def check_draw_pool(signature: np.ndarray, n_genes: int) -> None:
    """Raise QueryError, saying how many genes are left and what to do, when fewer of the
    ``n_genes`` genes lie outside ``signature`` (gene positions) than the signature has: the
    random sets would then be mostly the signature's own genes, no null."""
    k = int(np.unique(np.asarray(signature, dtype=np.int64)).size)
    left = n_genes - k
    if left < k:
        raise QueryError(
            f"the null cannot draw random gene sets for this signature: it uses {k:,} of the atlas's {n_genes:,} genes, "
            f"leaving {left:,} to draw from; random gene sets of {k:,} genes would be mostly the signature's own genes "
            f"(at least {k:,} others needed). Use a signature of at most {n_genes // 2:,} genes, or set null_draws to 0 (no p-values).")


def _pool(g: int, bins: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Candidate genes for signature gene ``g``: its bin (minus ``excluded``), widened until
    MIN_POOL genes."""
    b = bins[g]
    if b < 0:
        pool = np.flatnonzero(~excluded & (bins >= 0))
    else:
        width = 0
        while True:
            lo, hi = b - width, b + width
            pool = np.flatnonzero(~excluded & (bins >= lo) & (bins <= hi))
            if pool.size >= MIN_POOL or width > N_MEAN_BINS * N_DETECTION_BINS:
                break
            width += 1
    if pool.size == 0:
        pool = np.flatnonzero(~excluded)
    return pool


def _draw(candidates: list[np.ndarray], n_draws: int, k: int, rng) -> np.ndarray:
    """Column j of every draw from ``candidates[j]``, all draws at once; a gene repeated inside a
    draw is drawn again (up to 8 rounds, where the pool allows): each later copy, in column
    order, row by row."""
    draws = np.empty((n_draws, k), dtype=np.int64)
    for j, pool in enumerate(candidates):
        draws[:, j] = pool[rng.integers(pool.size, size=n_draws)]
    for _ in range(8):
        later = _later_copies(draws)
        dup_rows = np.flatnonzero(later.any(axis=1))
        if dup_rows.size == 0:
            break
        if later.sum() > MAX_SCALAR_REDRAWS:
            # a long gene list (thousands of genes from shared pools): redraw column by column,
            # vectorised (a different random stream than the scalar redraws below)
            for j in np.flatnonzero(later.any(axis=0)).tolist():
                rows = np.flatnonzero(later[:, j])
                draws[rows, j] = candidates[j][rng.integers(candidates[j].size, size=rows.size)]
            continue
        for d in dup_rows.tolist():  # few values: one scalar draw each keeps the random stream of a seed
            for j in np.flatnonzero(later[d]).tolist():
                draws[d, j] = candidates[j][rng.integers(candidates[j].size)]
    return draws


def _later_copies(draws: np.ndarray) -> np.ndarray:
    """Boolean like ``draws``: the gene already appears at an earlier column of its row."""
    order = np.argsort(draws, axis=1, kind="stable")  # equal genes keep their column order
    ordered = np.take_along_axis(draws, order, axis=1)
    repeat = ordered[:, 1:] == ordered[:, :-1]
    later = np.zeros(draws.shape, dtype=bool)
    rows = np.nonzero(repeat)[0]
    later[rows, order[:, 1:][repeat]] = True
    return later


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

    def factors(self, draws: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(studies, n_draws) float64: each draw's panel factor in each study, its study's share
        over the weight of the draw genes the study measured (0 when it measured none), so that a
        cell's panel score is its weighted sum over all draw genes times its study's factor.
        ``w``: the float32 weights of a draw's columns."""
        n = draws.shape[0]
        D = sp.csc_matrix((np.tile(w, n), (draws.ravel(), np.repeat(np.arange(n), draws.shape[1]))),
                          shape=(self.measured.shape[1], n), dtype=np.float32)
        weight = np.asarray(sp.csr_matrix(D).T @ self.measured.T.astype(np.float64)).T  # studies x draws
        return np.divide(self.share[:, None], weight, out=np.zeros_like(weight), where=weight > 0)


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
    chunk: int | None = None,
    progress=None,
    panels: Panels | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Mean sample hit % per group for every draw.

    ``M``: selected cells x genes (attributions). ``draws``: (n_draws, k) gene columns with
    ``weights`` (k). The hit cut-off is the draw's own ``quantile`` of its scores, or the fixed
    ``value``. ``sample_codes``: sample index per selected cell; ``kept_samples``: samples that
    pass ``cell_min``; ``group_of_sample[by]``: group index per sample (-1 when the group is
    not ranked); ``progress(fraction done)`` is called after each block of ``chunk`` draws (by
    default as many as fit BLOCK_BYTES of float32 scores). ``M`` may be CSC or CSR (a CSR is used
    as it is: pass one to avoid a conversion per call).
    ``panels``: each cell's study panel and scale (method.md section 6): a draw's score then uses
    only the genes the cell's study measured, weights renormalised, times the study's share,
    exactly as the observed scores do. ``threads``: blocks of draws computed at once (default
    :func:`null_threads`). Returns {by: (n_draws, n_groups)}.

    The draws are the columns of one sparse genes x draws matrix D; every draw's scores
    (``M @ D``), its cut and its per-sample hit counts are computed in one compiled pass per
    block of draws (``_null_kernel.hit_counts``) that never holds the whole cells x draws
    product, bit-identical to the sparse product it replaces (tests/compute/query/test_null.py keeps that as
    the reference).
    """
    from compute.query._null_kernel import hit_counts

    n_cells = M.shape[0]
    n_draws = draws.shape[0]
    sample_codes = np.asarray(sample_codes, dtype=np.int64)
    n_samples = int(sample_codes.max()) + 1 if sample_codes.size else 0
    cells_per_sample = np.bincount(sample_codes, minlength=n_samples).astype(np.float64)
    # float32 like the stored values: the sums run in the precision the values are stored in
    w = (np.asarray(weights, dtype=np.float64) / np.sum(weights)).astype(np.float32)
    genes, gene_weights = _sorted_draws(np.asarray(draws, dtype=np.int64), w)
    if panels is not None:
        factor = panels.factors(draws, w)
        cell_study = np.asarray(panels.cell_study, dtype=np.int64)
    else:
        factor, cell_study = np.ones((1, n_draws)), np.zeros(n_cells, dtype=np.int64)
    counts = np.zeros((n_draws, n_samples), dtype=np.int64)
    rows = M if sp.isspmatrix_csr(M) or isinstance(M, sp.csr_array) else sp.csr_matrix(M)
    rows.sort_indices()  # the kernel adds a cell's genes in ascending order, as the sparse product did
    data = np.asarray(rows.data, dtype=np.float32)
    cut_q = -1.0 if quantile is None else float(quantile)
    cut_v = 0.0 if value is None else float(value)
    n_threads = max(1, int(threads)) if threads else null_threads()
    # a block of draws x cells in float32 of about BLOCK_BYTES (shared by the blocks that run at
    # once): each block reads the matrix once; with several threads, at least one block each
    step = int(chunk) if chunk else max(8, min(1024, BLOCK_BYTES // max(4 * n_cells * n_threads, 1)))
    if not chunk and n_threads > 1 and n_draws >= 2 * MIN_THREAD_DRAWS:
        step = min(step, max(MIN_THREAD_DRAWS, -(-n_draws // n_threads)))
    blocks = [(start, min(start + step, n_draws)) for start in range(0, n_draws, step)]

    def block_counts(block: tuple[int, int]) -> np.ndarray:
        start, stop = block
        use_ptr, use_draw, use_weight = _gene_uses(genes[start:stop], gene_weights[start:stop], M.shape[1])
        return hit_counts(rows.indptr, rows.indices, data, use_ptr, use_draw, use_weight, stop - start, cell_study,
                          np.ascontiguousarray(factor[:, start:stop]), cut_q, cut_v, sample_codes, n_samples)

    # the kernel releases the GIL: blocks run side by side in threads, each draw's numbers the same
    # whichever block holds it
    if n_threads > 1 and len(blocks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(n_threads, len(blocks)), thread_name_prefix="sigatlas-null") as pool:
            for (start, stop), block in zip(blocks, pool.map(block_counts, blocks), strict=True):
                counts[start:stop] = block
                if progress is not None:
                    progress(stop / n_draws)
    else:
        for start, stop in blocks:
            counts[start:stop] = block_counts((start, stop))
            if progress is not None:
                progress(stop / n_draws)
    pct = 100.0 * counts.T.astype(np.float64) / np.maximum(cells_per_sample, 1)[:, None]  # samples x draws
    out = {}
    for by, gos in group_of_sample.items():
        n_groups = int(gos.max()) + 1 if (gos >= 0).any() else 0
        keep = kept_samples & (gos >= 0)
        G = sp.csr_matrix((np.ones(keep.sum()), (gos[keep], np.flatnonzero(keep))), shape=(n_groups, n_samples))
        per_group = np.asarray(G.sum(axis=1)).ravel()
        out[by] = ((G @ pct) / np.maximum(per_group, 1)[:, None]).T if n_draws else np.zeros((0, 0))
    return out


def prepare_null() -> None:
    """Load (or, the first time after an install, compile) the null's kernel now rather than on
    the first query that asks for p-values."""
    from compute.query._null_kernel import column_totals

    column_totals(np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32), 1)
    null_rankings(sp.csr_matrix(np.ones((2, 1), dtype=np.float32)), np.zeros((1, 1), dtype=np.int64), np.ones(1), 0.5, None,
                  np.zeros(2, dtype=np.int64), {"disease": np.zeros(1, dtype=np.int64)}, np.ones(1, dtype=bool))


def _gene_uses(genes: np.ndarray, weights: np.ndarray, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a block of sorted draws: per gene (pointer array over ``n_genes``) the draws that use
    it and its weight in each, so the kernel finds a stored value's draws without a search."""
    d, j = np.nonzero(genes >= 0)
    g = genes[d, j]
    order = np.argsort(g, kind="stable")
    use_ptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(np.bincount(g, minlength=n_genes), out=use_ptr[1:])
    return use_ptr, d[order].astype(np.int64), np.ascontiguousarray(weights[d, j][order], dtype=np.float32)


def _sorted_draws(draws: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each draw's genes in ascending order with their weights, a gene drawn twice kept once
    with the summed weight (-1 marks the dropped copy): the order in which a sparse genes x draws
    matrix adds them, so the compiled sums equal the sparse product's."""
    order = np.argsort(draws, axis=1, kind="stable")
    genes = np.take_along_axis(draws, order, axis=1)
    weights = np.ascontiguousarray(w[order], dtype=np.float32)
    repeat = np.zeros(genes.shape, dtype=bool)
    repeat[:, 1:] = genes[:, 1:] == genes[:, :-1]
    if repeat.any():  # a draw the redraws could not clear (long gene lists): one entry per gene, weights summed
        flat_w = weights.ravel()
        starts = np.flatnonzero(~repeat.ravel())
        weights = np.where(repeat, np.float32(0), np.add.reduceat(flat_w, starts)[np.cumsum(~repeat.ravel()) - 1].reshape(genes.shape))
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        genes = np.where(repeat, -1, genes)
    return np.ascontiguousarray(genes), weights

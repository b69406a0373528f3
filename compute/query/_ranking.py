"""Which genes matter in a cell population: every gene ranked by mean attribution (or
expression), with the sample as the unit, and against a reference population a sample-level
test with Benjamini-Hochberg q-values (SIGnature's gene ranking within a cell type)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.errors import QueryError

__all__ = ["GeneRanking", "RankingParams", "compare_cell_groups", "differential", "gene_ranking", "sample_gene_means"]

STORES = ("attr", "expr")


@dataclass(frozen=True)
class RankingParams:
    """A gene ranking's population (filters as in Atlas.select: a term selects its
    descendants), its reference (``versus``: the diseases of the reference population, the same
    other filters), the store ranked, and the rules: samples with fewer than ``cell_min``
    selected cells are left out; ``top_n`` is the "top genes" cut for each sample."""

    cell_types: tuple[str, ...] = ()
    diseases: tuple[str, ...] = ()
    tissues: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()
    versus: tuple[str, ...] = ()
    store: str = "attr"
    scale: str = "panel"
    cell_min: int = 10
    top_n: int = 50

    def __post_init__(self):
        if self.store not in STORES:
            raise QueryError(f"store must be one of {', '.join(STORES)}, got '{self.store}'")
        if int(self.cell_min) < 1 or int(self.top_n) < 1:
            raise QueryError(f"cell_min and top_n must be at least 1, got {self.cell_min} and {self.top_n}")


@dataclass
class GeneRanking:
    """``table``: one row per gene of the gene order measured by at least one sample, sorted
    by ``mean`` (highest first): ``rank``, ``mean`` (mean over samples of the per-sample mean
    over cells), ``sd`` (over samples), ``n_samples`` (samples whose study measured it),
    ``top_share`` (share of those samples in which it is among that sample's ``top_n``);
    with a reference: ``ref_mean``, ``ref_n_samples``, ``diff`` (mean - ref_mean), ``log2fc``
    (of the means, pseudo-count 1% of the population's mean gene value), ``t``, ``p`` (Welch's
    t-test over sample means) and ``q`` (Benjamini-Hochberg over the genes tested).
    ``samples``/``ref_samples``: the samples used (study, sample, disease, n_cells).
    ``per_sample``: genes x samples means (NaN: not measured), for the spread of a gene."""

    params: RankingParams
    table: pd.DataFrame
    samples: pd.DataFrame
    per_sample: pd.DataFrame
    ref_samples: pd.DataFrame | None = None
    ref_per_sample: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def top(self, n: int = 50) -> list[str]:
        """The ``n`` top genes by mean."""
        return list(self.table.index[:n])

    def versus_order(self) -> list[str]:
        """With a reference: the genes higher in the population than in the reference (``diff`` > 0)
        by the versus test, most significant first (``p``, then the larger ``diff``); genes the
        test could not judge (fewer than 2 samples on a side) after them by ``diff``. Raises
        QueryError without a reference."""
        if "p" not in self.table.columns:
            raise QueryError("this ranking has no reference: rank it versus a disease (for example normal) first")
        up = self.table[self.table["diff"] > 0]
        tested = up[up["p"].notna()].sort_values(["p", "diff"], ascending=[True, False], kind="stable")
        untested = up[up["p"].isna()].sort_values("diff", ascending=False, kind="stable")
        return [str(g) for g in tested.index] + [str(g) for g in untested.index]


# the largest cells x samples indicator sample_gene_means builds dense (8 bytes each: 32 MB)
DENSE_INDICATOR_MAX = 4_000_000


def _count(n: int, one: str, many: str | None = None) -> str:
    """"1 sample", "3 samples" (the rule tests forbid importing compute.atlas's private twin)."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def sample_gene_means(atlas, selection: np.ndarray, store: str = "attr", scale: str = "panel",
                      cell_min: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples table, samples x genes mean value over each sample's selected cells; NaN where
    the sample's study did not measure the gene). Samples with fewer than ``cell_min`` selected
    cells are left out. Reads each selected study's store once (one sparse product)."""
    selection = np.asarray(selection, dtype=bool)
    cells = atlas.cells
    rows, means = [], []
    for s in atlas.studies:
        sel = selection[s.offset: s.offset + s.n_cells]
        if not sel.any():
            continue
        samples = cells["sample"].to_numpy()[s.offset: s.offset + s.n_cells].astype(str)
        codes, names = pd.factorize(samples[sel])
        counts = np.bincount(codes, minlength=len(names))
        keep = counts >= cell_min
        if not keep.any():
            continue
        where = np.flatnonzero(sel)
        # genes x cells (the stored compressed columns read as rows, no copy) times cells x samples:
        # indicator @ store converted the whole store to rows first, most of a ranking's time
        by_gene = atlas.store(s.id, store).rows(np.ones(s.n_cells, dtype=bool)).T
        if s.n_cells * len(names) <= DENSE_INDICATOR_MAX:
            # a dense indicator: one pass over the store (sparse x sparse took two, and half a
            # lasso comparison's time on the demo)
            indicator = np.zeros((s.n_cells, len(names)), dtype=np.float64)
            indicator[where, codes] = 1.0
            sums = np.asarray(by_gene @ indicator, dtype=np.float64).T
        else:
            indicator = sp.csr_matrix((np.ones(where.size, dtype=np.float64), (where, codes)), shape=(s.n_cells, len(names)))
            sums = np.asarray((by_gene @ indicator).toarray(), dtype=np.float64).T
        factor = atlas.panel_factors(s.id, np.arange(len(atlas.genes))) if scale == "panel" and store == "attr" else 1.0
        m = sums / counts[:, None] * factor
        m[:, ~atlas.measured_mask(s.id)] = np.nan
        disease = cells["disease"].to_numpy()[s.offset: s.offset + s.n_cells].astype(str)[sel]
        first = {c: disease[np.flatnonzero(codes == c)[0]] for c in range(len(names))}
        for c in np.flatnonzero(keep):
            rows.append({"study": s.id, "sample": names[c], "disease": first[c], "n_cells": int(counts[c]),
                         "simulated": bool(s.simulated)})
        means.append(m[keep])
    if not rows:
        return pd.DataFrame(columns=["study", "sample", "disease", "n_cells", "simulated"]), pd.DataFrame(columns=atlas.genes)
    table = pd.DataFrame(rows)
    table.index = [f"{r.study}/{r.sample}" for r in table.itertuples()]
    return table, pd.DataFrame(np.vstack(means), index=table.index, columns=atlas.genes)


def _top_share(means: pd.DataFrame, top_n: int) -> pd.Series:
    """Per gene: the share of the samples measuring it in which it ranks among the sample's top ``top_n``."""
    M = means.to_numpy()
    filled = np.where(np.isnan(M), -np.inf, M)
    n = min(top_n, M.shape[1])
    top = np.zeros_like(M, dtype=bool)
    if n:
        idx = np.argpartition(-filled, n - 1, axis=1)[:, :n]
        np.put_along_axis(top, idx, True, axis=1)
    top &= np.isfinite(filled) & (filled > 0)
    measured = ~np.isnan(M)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = top.sum(axis=0) / measured.sum(axis=0)
    return pd.Series(share, index=means.columns)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t and two-sided p per column of samples x genes arrays (NaN: not measured, left
    out of that column), vectorised over the columns: scipy's ``nan_policy="omit"`` loops over
    columns in Python (15 s for 5,000 genes with one missing value, against milliseconds here)."""
    from scipy import stats

    def moments(x):
        ok = ~np.isnan(x)
        n = ok.sum(axis=0).astype(float)
        filled = np.where(ok, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = filled.sum(axis=0) / n
            var = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0) / (n - 1)
        return n, mean, var

    (na, ma, va), (nb, mb, vb) = moments(np.asarray(a, dtype=float)), moments(np.asarray(b, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        sa, sb = va / na, vb / nb
        se2 = sa + sb
        t = (ma - mb) / np.sqrt(se2)
        df = se2**2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
        p = 2 * stats.t.sf(np.abs(t), df)
    bad = (na < 2) | (nb < 2) | ~np.isfinite(t)
    return np.where(bad, np.nan, t), np.where(bad, np.nan, p)


def differential(means: pd.DataFrame, ref_means: pd.DataFrame) -> pd.DataFrame:
    """Per gene (columns of the two samples x genes tables; NaN: not measured): ``ref_mean``,
    ``ref_n_samples``, ``diff``, ``log2fc`` (pseudo-count 1% of the mean gene value), Welch's
    ``t`` and two-sided ``p`` over the sample means, and Benjamini-Hochberg ``q`` over the genes
    with a p-value (those with 2+ samples on each side)."""
    mean, ref = means.mean(axis=0, skipna=True), ref_means.mean(axis=0, skipna=True)
    out = pd.DataFrame({"ref_mean": ref, "ref_n_samples": ref_means.notna().sum(axis=0).astype(int), "diff": mean - ref})
    level = float(np.nanmean(mean.to_numpy())) if mean.notna().any() else 0.0
    eps = max(0.01 * level, 1e-9)
    out["log2fc"] = np.log2((mean + eps) / (ref + eps))
    t, p = _welch(means.to_numpy(), ref_means.to_numpy())
    enough = (means.notna().sum(axis=0).to_numpy() >= 2) & (ref_means.notna().sum(axis=0).to_numpy() >= 2)
    p = np.where(enough, p, np.nan)
    out["t"], out["p"] = np.where(enough, t, np.nan), p
    q = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        from scipy.stats import false_discovery_control

        q[tested] = false_discovery_control(p[tested], method="bh")
    out["q"] = q
    return out


def _reference_taken_out(atlas, params: RankingParams, sel: np.ndarray) -> tuple[np.ndarray, int]:
    """(the reference's cells: the population's other filters with the ``versus`` diseases, how
    many of them the population ``sel`` held). A population that asks for every disease (or
    for a reference disease among others) holds the reference; the comparison takes it out of
    the population rather than compare cells with themselves. Raises QueryError when nothing
    of the population is left."""
    ref_sel = atlas.select(cell_types=params.cell_types or None, diseases=list(params.versus),
                           tissues=params.tissues or None, studies=params.studies or None)
    shared = int((sel & ref_sel).sum())
    if shared and not (sel & ~ref_sel).any():
        raise QueryError(f"the population is its reference ({', '.join(params.versus)}): every one of its {shared:,} cells is a "
                         "reference cell; choose other diseases for the population (for example sepsis versus normal)")
    return ref_sel, shared


def gene_ranking(atlas, params: RankingParams | None = None, **kw) -> GeneRanking:
    """Rank every gene of ``atlas`` in the population ``params`` selects (see RankingParams;
    keyword arguments build one). Raises QueryError for an empty population or reference."""
    filters = ("cell_types", "diseases", "tissues", "studies", "versus")
    params = params or RankingParams(**{k: (() if v is None else (v,) if isinstance(v, str) else tuple(v)) if k in filters else v
                                        for k, v in kw.items()})
    sel = atlas.select(cell_types=params.cell_types or None, diseases=params.diseases or None,
                       tissues=params.tissues or None, studies=params.studies or None)
    ref_sel, taken_out = None, 0
    if params.versus:
        ref_sel, taken_out = _reference_taken_out(atlas, params, sel)
        sel = sel & ~ref_sel
    samples, means = sample_gene_means(atlas, sel, params.store, params.scale, params.cell_min)
    if samples.empty:
        raise QueryError(f"no sample has {params.cell_min}+ cells in the population (cell types "
                         f"{', '.join(params.cell_types) or 'all'}; diseases {', '.join(params.diseases) or 'all'}): widen it "
                         "or lower cell_min")
    measured = means.notna().sum(axis=0)
    keep = measured.index[measured > 0]
    means = means[keep]
    table = pd.DataFrame({"mean": means.mean(axis=0, skipna=True), "sd": means.std(axis=0, skipna=True, ddof=1),
                          "n_samples": measured[keep].astype(int), "top_share": _top_share(means, params.top_n)})
    notes = [f"{_count(len(samples), 'sample')} of {_count(samples['study'].nunique(), 'study', 'studies')}, "
             f"{int(samples['n_cells'].sum()):,} cells; "
             f"each sample counts once (the mean over its cells), whatever its size"]
    ref_samples = ref_means = None
    if params.versus:
        ref_samples, ref_means = sample_gene_means(atlas, ref_sel, params.store, params.scale, params.cell_min)
        if ref_samples.empty:
            raise QueryError(f"no reference sample ({', '.join(params.versus)}) has {params.cell_min}+ cells of the population")
        ref_means = ref_means[keep]
        diff = differential(means, ref_means)
        table = table.join(diff)
        tested = diff["p"].notna().to_numpy()
        notes.append(f"reference: {len(ref_samples)} samples ({', '.join(params.versus)}); Welch's t-test over sample means, "
                     f"{int(tested.sum()):,} genes tested (2+ samples measured on each side), Benjamini-Hochberg q-values")
        if taken_out:
            notes.append(f"the reference's {taken_out:,} cells ({', '.join(params.versus)}) are taken out of the population: "
                         "it holds the other diseases only")
    table = table.sort_values(["mean", "top_share"], ascending=False, kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.index.name = "gene"
    return GeneRanking(params=params, table=table, samples=samples, per_sample=means.T.loc[table.index],
                       ref_samples=ref_samples, ref_per_sample=None if ref_means is None else ref_means.T.loc[table.index],
                       notes=notes)


def compare_cell_groups(atlas, group_a, group_b, *, store: str = "attr", scale: str = "panel", cell_min: int = 3,
                        top_n: int = 50, names: tuple[str, str] = ("group A", "group B")) -> GeneRanking:
    """Every gene ranked in the cells ``group_a`` (cell positions of the atlas, or a boolean mask)
    against the cells ``group_b`` (two groups picked by hand, e.g. a lasso on the UMAP), with the
    sample (donor) as the unit as in :func:`gene_ranking`: each group's cells averaged per sample,
    samples with fewer than ``cell_min`` of the group's cells left out, Welch's test over the
    sample means. Cells in both groups count in A only (B is the reference). Returns a
    GeneRanking whose ``params.versus`` is ``(names[1],)``. Raises QueryError for an empty group,
    a position outside the atlas, or a group with no sample of ``cell_min`` cells."""
    n = atlas.n_cells
    masks = []
    for name, group in zip(names, (group_a, group_b), strict=True):
        g = np.asarray(group)
        if g.dtype == bool:
            if g.shape != (n,):
                raise QueryError(f"{name}: a mask of {g.shape[0]:,} cells for an atlas of {n:,}")
            mask = g.copy()
        else:
            g = g.astype(np.int64, copy=False).ravel()
            if g.size and (g.min() < 0 or g.max() >= n):
                raise QueryError(f"{name}: cell positions must lie within 0-{n - 1:,}")
            mask = np.zeros(n, dtype=bool)
            mask[g] = True
        masks.append(mask)
    a, b = masks[0], masks[1] & ~masks[0]
    params = RankingParams(versus=(names[1],), store=store, scale=scale, cell_min=cell_min, top_n=top_n)
    for name, mask in zip(names, (a, b), strict=True):
        if not mask.any():
            raise QueryError(f"{name} holds no cell" + (" of its own (every one is in the other group)" if name == names[1] else "")
                             + ": select cells on the UMAP first")
    samples, means = sample_gene_means(atlas, a, store, scale, cell_min)
    ref_samples, ref_means = sample_gene_means(atlas, b, store, scale, cell_min)
    for name, got, mask in ((names[0], samples, a), (names[1], ref_samples, b)):
        if got.empty:
            raise QueryError(f"{name}: none of its samples has {cell_min}+ of its {int(mask.sum()):,} cells (the donor is the unit): "
                             "select more cells")
    measured = means.notna().sum(axis=0)
    keep = measured.index[measured > 0]
    means, ref_means = means[keep], ref_means[keep]
    table = pd.DataFrame({"mean": means.mean(axis=0, skipna=True), "sd": means.std(axis=0, skipna=True, ddof=1),
                          "n_samples": measured[keep].astype(int), "top_share": _top_share(means, top_n)}).join(differential(means, ref_means))
    tested = int(table["p"].notna().sum())
    notes = [f"{names[0]}: {int(a.sum()):,} cells, {_count(len(samples), 'sample')} of {_count(samples['study'].nunique(), 'study', 'studies')}; "
             f"{names[1]}: {int(b.sum()):,} cells, {_count(len(ref_samples), 'sample')}; each sample counts once (samples with fewer than "
             f"{cell_min} of a group's cells left out)",
             f"Welch's t-test over sample means, {tested:,} genes tested (2+ samples on each side), Benjamini-Hochberg q-values"]
    if tested == 0:
        notes.append("no gene could be tested: a group needs cells from 2 or more samples (donors) for a p-value")
    shared = int((masks[0] & masks[1]).sum())
    if shared:
        notes.append(f"{shared:,} cells in both groups count in {names[0]} only")
    table = table.sort_values(["mean", "top_share"], ascending=False, kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.index.name = "gene"
    return GeneRanking(params=params, table=table, samples=samples, per_sample=means.T.loc[table.index],
                       ref_samples=ref_samples, ref_per_sample=ref_means.T.loc[table.index], notes=notes)

"""How well an embedding integrates studies: scIB-style metrics, computed here (no scib-metrics).

Pure functions on (embedding, cell types, studies) -> numbers. Definitions follow scIB
(Luecken et al., Nat Methods 2022) and scib-metrics:

- cell-type ASW: silhouette width on cell-type labels, rescaled (asw + 1) / 2 (1 = types apart);
- batch ASW within a type: per cell type, 1 - |silhouette| on study labels, mean over the
  type's cells, then mean over types (1 = studies mixed within every type);
- iLISI within a type: per cell, the inverse Simpson index of study labels among its nearest
  cells of the same type (Gaussian weights calibrated to perplexity k / 3, as harmony and
  scIB do), rescaled (lisi - 1) / (studies with that type - 1); median over cells;
- kNN cross-study same-type share: the share of a cell's k nearest neighbours that carry its
  label and come from another study, and its reference under perfect mixing (neighbours of
  the same type drawn at random from all studies: (n_t - n_st) / (n_t - 1) for a cell of
  type t in study s);
- kNN cell-type purity: the share of a cell's k nearest neighbours that carry its label.

Cells with a missing label (None, NaN, "", "nan", "none", "unknown", "unassigned", "na")
take no part: they are neither queries nor neighbours, so a partly labelled atlas is measured
on its labelled cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = [
    "GOAL_MIXING",
    "GOAL_PURITY",
    "MISSING_LABELS",
    "IntegrationMetrics",
    "batch_asw",
    "celltype_asw",
    "ilisi_within_type",
    "integration_metrics",
    "integration_report",
    "knn_shares",
    "missing_labels",
    "perfect_mixing_share",
]

# issue 15's goal: cross-study same-type share at least half of perfect mixing, purity >= 0.8
GOAL_MIXING = 0.5
GOAL_PURITY = 0.8

MISSING_LABELS = frozenset({"", "nan", "none", "null", "na", "n/a", "unknown", "unassigned", "unlabelled", "unlabeled"})


def missing_labels(labels) -> np.ndarray:
    """Boolean array: which of ``labels`` are missing (None, NaN, or a MISSING_LABELS word,
    case and surrounding spaces ignored)."""
    s = pd.Series(np.asarray(labels, dtype=object))
    text = s.astype(str).str.strip().str.lower()
    return (s.isna() | text.isin(MISSING_LABELS)).to_numpy()


@dataclass(frozen=True)
class IntegrationMetrics:
    """Integration of studies in one embedding (see the module docstring for definitions)."""

    n_cells: int  # labelled cells measured
    n_unlabelled: int  # cells left out for a missing label
    n_studies: int
    n_cell_types: int
    k: int
    cross_study_share: float
    perfect_share: float
    mixing: float  # cross_study_share / perfect_share (NaN when no type is shared by two studies)
    purity: float
    celltype_asw: float
    batch_asw: float
    ilisi: float
    subsampled: bool = False  # True when the metrics describe a seeded subsample of the cells

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(self).items()}

    def meets_goal(self) -> bool:
        """Issue 15's goal: mixing >= GOAL_MIXING and purity >= GOAL_PURITY."""
        return bool(self.mixing >= GOAL_MIXING and self.purity >= GOAL_PURITY)

    def text(self) -> str:
        """One line for reports and logs."""
        def f(x):
            return "n/a" if np.isnan(x) else f"{x:.2f}"

        return (f"integration ({self.n_cells:,} labelled cells{' subsampled' if self.subsampled else ''}, {self.n_studies} studies, "
                f"{self.n_cell_types} cell types, k={self.k}): cross-study same-type share {f(self.cross_study_share)} of "
                f"{f(self.perfect_share)} under perfect mixing ({f(self.mixing)}), purity {f(self.purity)}, cell-type ASW "
                f"{f(self.celltype_asw)}, batch ASW {f(self.batch_asw)}, iLISI within type {f(self.ilisi)}")


def _codes(values) -> tuple[np.ndarray, np.ndarray]:
    """(unique values, integer codes) of ``values`` as strings."""
    return np.unique(np.asarray(values).astype(str), return_inverse=True)


def knn_shares(neighbors: np.ndarray, types: np.ndarray, studies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query cell (rows of ``neighbors``, indices into ``types``/``studies``, the cell itself
    left out): (share of neighbours of the same type from another study, share of the same type)."""
    same = types[neighbors] == types[:, None]
    other = studies[neighbors] != studies[:, None]
    return (same & other).mean(axis=1), same.mean(axis=1)


def perfect_mixing_share(types: np.ndarray, studies: np.ndarray) -> np.ndarray:
    """Per cell, the cross-study same-type share expected if its neighbours were cells of its
    type drawn at random from all studies: (n_t - n_st) / (n_t - 1); 0 for a type's only cell."""
    t_codes = _codes(types)[1]
    s_codes = _codes(studies)[1]
    counts = np.zeros((t_codes.max() + 1, s_codes.max() + 1), dtype=np.int64)
    np.add.at(counts, (t_codes, s_codes), 1)
    n_t = counts.sum(axis=1)[t_codes]
    n_st = counts[t_codes, s_codes]
    return np.divide(n_t - n_st, n_t - 1, out=np.zeros(len(t_codes)), where=n_t > 1)


def _subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))


def celltype_asw(embedding: np.ndarray, types: np.ndarray, *, max_cells: int = 5000, seed: int = 0) -> float:
    """scIB's cell-type ASW, (silhouette + 1) / 2, on a seeded subsample of ``max_cells``
    (NaN with fewer than two types)."""
    from sklearn.metrics import silhouette_score

    idx = _subsample(len(types), max_cells, np.random.default_rng(seed))
    t = np.asarray(types).astype(str)[idx]
    if not 1 < len(np.unique(t)) < len(t):
        return float("nan")
    return float((silhouette_score(embedding[idx], t) + 1) / 2)


def batch_asw(embedding: np.ndarray, types: np.ndarray, studies: np.ndarray, *, max_cells: int = 5000, seed: int = 0) -> float:
    """scIB's batch ASW: per cell type seen in two or more studies, the mean over its cells of
    1 - |silhouette on study labels|, then the mean over types; on a seeded subsample of
    ``max_cells`` (NaN when no type is in two studies)."""
    from sklearn.metrics import silhouette_samples

    idx = _subsample(len(types), max_cells, np.random.default_rng(seed))
    X, t, s = embedding[idx], np.asarray(types).astype(str)[idx], np.asarray(studies).astype(str)[idx]
    scores = []
    for ct in np.unique(t):
        m = t == ct
        n_studies = len(np.unique(s[m]))
        # silhouette needs 2 <= labels <= cells - 1
        if n_studies < 2 or n_studies >= m.sum():
            continue
        scores.append(float(np.mean(1 - np.abs(silhouette_samples(X[m], s[m])))))
    return float(np.mean(scores)) if scores else float("nan")


def _simpson(dist: np.ndarray, nbr_labels: np.ndarray, n_labels: int, perplexity: float, tol: float = 1e-5,
             n_iter: int = 50) -> np.ndarray:
    """Per row, Simpson's index of ``nbr_labels`` under Gaussian weights whose bandwidth is found
    by bisection so the weights' entropy is log(perplexity) (harmony's compute_lisi, vectorised)."""
    n = dist.shape[0]
    beta = np.ones(n)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    target = np.log(perplexity)
    d = dist - dist[:, :1]  # shifting every row by its nearest distance leaves P unchanged and avoids underflow
    for _ in range(n_iter):
        P = np.exp(-d * beta[:, None])
        sumP = P.sum(axis=1)
        H = np.log(sumP) + beta * (d * P).sum(axis=1) / sumP
        diff = H - target
        if np.all(np.abs(diff) < tol):
            break
        up = diff > 0  # entropy too high: sharpen (larger beta)
        lo = np.where(up, beta, lo)
        hi = np.where(up, hi, beta)
        beta = np.where(up, np.where(np.isinf(hi), beta * 2, (beta + hi) / 2), np.where(np.isinf(lo), beta / 2, (beta + lo) / 2))
    P = np.exp(-d * beta[:, None])
    P /= P.sum(axis=1, keepdims=True)
    per_label = np.zeros((n, n_labels))
    np.add.at(per_label, (np.repeat(np.arange(n), nbr_labels.shape[1]), nbr_labels.ravel()), P.ravel())
    return (per_label**2).sum(axis=1)


def ilisi_within_type(embedding: np.ndarray, types: np.ndarray, studies: np.ndarray, *, k: int = 90) -> float:
    """iLISI within cell types: for every type in two or more studies, each cell's inverse
    Simpson index of study labels among its ``k`` nearest cells of that type (scIB uses 90,
    perplexity k / 3), rescaled by the type's study count to [0, 1]; the median over cells
    (NaN when no type is in two studies)."""
    from sklearn.neighbors import NearestNeighbors

    t = np.asarray(types).astype(str)
    s_codes = _codes(studies)[1]
    scaled = []
    for ct in np.unique(t):
        rows = np.flatnonzero(t == ct)
        codes = s_codes[rows]
        present, local = np.unique(codes, return_inverse=True)
        if len(present) < 2 or len(rows) < 3:
            continue
        kk = min(k, len(rows) - 1)
        dist, nbr = NearestNeighbors(n_neighbors=kk + 1).fit(embedding[rows]).kneighbors(embedding[rows])
        dist, nbr = dist[:, 1:], nbr[:, 1:]  # the cell itself is not its own neighbour
        lisi = 1 / _simpson(dist, local[nbr], len(present), perplexity=max(kk / 3, 1.0))
        scaled.append((lisi - 1) / (len(present) - 1))
    return float(np.median(np.concatenate(scaled))) if scaled else float("nan")


def integration_metrics(embedding: np.ndarray, cell_types, studies, *, k: int = 15, lisi_k: int = 90, asw_cells: int = 5000,
                        max_cells: int = 50_000, seed: int = 0) -> IntegrationMetrics:
    """Every integration metric of ``embedding`` (cells x dims) for labels ``cell_types`` and
    ``studies`` (one per cell). Unlabelled cells are left out; above ``max_cells`` labelled
    cells, all metrics are computed on a seeded subsample of that size (kNN cost grows with n^2)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(embedding, dtype=np.float32)
    types = np.asarray(cell_types, dtype=object)
    studies = np.asarray(studies).astype(str)
    if not len(X) == len(types) == len(studies):
        raise ValueError(f"embedding has {len(X)} cells but {len(types)} cell types and {len(studies)} studies were given")
    keep = ~missing_labels(types)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(keep)
    subsampled = len(rows) > max_cells
    rows = rows[_subsample(len(rows), max_cells, rng)]
    X, t, s = X[rows], types[rows].astype(str), studies[rows]
    n = len(rows)
    nan = float("nan")
    if n < 2:
        return IntegrationMetrics(n, int((~keep).sum()), len(np.unique(s)), len(np.unique(t)), k, nan, nan, nan, nan, nan, nan, nan,
                                  subsampled)
    kk = min(k, n - 1)
    _, nbr = NearestNeighbors(n_neighbors=kk + 1).fit(X).kneighbors(X)
    # drop each cell itself; with duplicate points it may not come first, so remove it by index
    own = nbr == np.arange(n)[:, None]
    own[:, -1] |= ~own.any(axis=1)
    nbr = nbr[~own].reshape(n, kk)
    _, t_codes = _codes(t)
    _, s_codes = _codes(s)
    cross, same = knn_shares(nbr, t_codes, s_codes)
    perfect = perfect_mixing_share(t, s)
    share, ref = float(cross.mean()), float(perfect.mean())
    return IntegrationMetrics(
        n_cells=n, n_unlabelled=int((~keep).sum()), n_studies=len(np.unique(s)), n_cell_types=len(np.unique(t)), k=kk,
        cross_study_share=share, perfect_share=ref, mixing=share / ref if ref > 0 else nan, purity=float(same.mean()),
        celltype_asw=celltype_asw(X, t, max_cells=asw_cells, seed=seed), batch_asw=batch_asw(X, t, s, max_cells=asw_cells, seed=seed),
        ilisi=ilisi_within_type(X, t, s, k=lisi_k), subsampled=subsampled,
    )


def integration_report(embedding: np.ndarray, cells: pd.DataFrame, *, label_column: str = "cell_type", **kw) -> IntegrationMetrics:
    """:func:`integration_metrics` of an atlas's embedding, ``cells`` being ``Atlas.cells`` (or
    any frame with ``study`` and ``label_column``, rows aligned with ``embedding``)."""
    for col in ("study", label_column):
        if col not in cells.columns:
            raise KeyError(f"cells has no column '{col}' (it has {', '.join(map(str, cells.columns))})")
    labels = cells[label_column]
    labels = labels.astype(object).where(labels.notna(), None).to_numpy()
    return integration_metrics(embedding, labels, cells["study"].astype(str).to_numpy(), **kw)

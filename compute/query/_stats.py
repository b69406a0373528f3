"""Hits, per-sample hit percentages and group rankings (method.md section 4). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from compute.errors import QueryError

__all__ = ["HitRule", "group_gene_means", "hit_share", "rank_groups", "sample_hit_table"]

HIT_KINDS = ("percentile", "quantile", "value")
# the allowed value range of each hit-rule kind (None: unbounded), and the default rule
HIT_RANGES = {"percentile": (0.0, 100.0), "quantile": (0.0, 1.0), "value": (None, None)}
DEFAULT_HIT_RULE = ("percentile", 90.0)


@dataclass(frozen=True)
class HitRule:
    """A hit is a cell whose score is strictly above the cut-off.

    kind "percentile" (value in [0, 100]) or "quantile" (value in [0, 1]) of the scores of the
    selected cells, or "value" (a fixed score)."""

    kind: str = DEFAULT_HIT_RULE[0]
    value: float = DEFAULT_HIT_RULE[1]

    def __post_init__(self):
        if self.kind not in HIT_KINDS:
            raise QueryError(f"hit rule must be one of {', '.join(HIT_KINDS)}, got '{self.kind}'")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise QueryError(f"the hit rule's value must be a number, got {self.value!r}") from None
        if not np.isfinite(value):
            raise QueryError(f"the hit rule's value must be finite, got {self.value!r}")
        lo, hi = HIT_RANGES[self.kind]
        if lo is not None and not lo <= value <= hi:
            raise QueryError(f"a {self.kind} must be within {lo:g}-{hi:g}, got {self.value}")
        object.__setattr__(self, "value", value)

    @classmethod
    def default(cls, kind: str) -> HitRule:
        """The default rule expressed as ``kind``: the 90th percentile, the 0.9 quantile, or (for
        a fixed value, which has no default of its own) the default percentile's number."""
        base = cls()
        if kind == "quantile":
            return cls("quantile", base.quantile)
        if kind == "percentile":
            return cls("percentile", base.quantile * 100)
        return cls(kind, base.value)

    @property
    def quantile(self) -> float | None:
        """The rule as a quantile of the selected cells' scores (None for a fixed value)."""
        if self.kind == "value":
            return None
        return self.value / 100 if self.kind == "percentile" else self.value

    def threshold(self, scores: np.ndarray) -> float:
        """The cut-off on ``scores`` (the selected cells' scores)."""
        if self.kind == "value":
            return float(self.value)
        if scores.size == 0:
            raise QueryError("no cells in the selection: widen the filters")
        return float(np.quantile(scores, self.quantile))

    def describe(self) -> str:
        if self.kind == "percentile":
            return f"score > {self.value:g}th percentile of selected cells"
        if self.kind == "quantile":
            return f"score > {self.value:g} quantile of selected cells"
        return f"score > {self.value:g}"


SAMPLE_KEYS = ("study", "sample", "disease")


def hit_share(scores: np.ndarray, threshold: float) -> float:
    """The % of ``scores`` that are hits: strictly above ``threshold`` (the rule sample_hit_table
    counts by), so cells tied at the cut-off are not hits. NaN for no scores."""
    scores = np.asarray(scores)
    return float(100.0 * np.count_nonzero(scores > threshold) / scores.size) if scores.size else float("nan")


def _sorted_codes(column: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per row of ``rows``, labels): each value of ``column`` at ``rows`` as text, coded by
    its rank among the labels (sorted text), so codes order like the text. A categorical column
    is coded through its categories (no text per cell): a million cells cost milliseconds."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()[rows]
        labels = column.cat.categories.astype(str).to_numpy(dtype=object)
        if (codes < 0).any():  # a missing value reads "nan", as str() writes it
            labels = np.append(labels, "nan")
            codes = np.where(codes < 0, labels.size - 1, codes)
        text, rank = np.unique(labels.astype(str), return_inverse=True)  # two categories with one text are one label
        return rank[codes], text.astype(object)
    text, codes = np.unique(column.to_numpy()[rows].astype(str), return_inverse=True)
    return codes, text.astype(object)


def sample_hit_table(cells: pd.DataFrame, scores: np.ndarray, selection: np.ndarray, threshold: float) -> pd.DataFrame:
    """One row per (study, sample, disease) among selected cells, sorted by them: n_cells,
    n_hits, hit_pct, mean_score, tissue, donor and simulated (of the sample's first cell; the
    donor is the sample where the cells have no donor column)."""
    sel = np.asarray(selection, dtype=bool)
    if sel.sum() == 0:
        return pd.DataFrame(columns=["study", "sample", "disease", "tissue", "donor", "simulated", "n_cells", "n_hits", "hit_pct",
                                     "mean_score"])
    rows = np.flatnonzero(sel)
    key = np.zeros(rows.size, dtype=np.int64)
    labels = {}
    for col in SAMPLE_KEYS:
        codes, labels[col] = _sorted_codes(cells[col], rows)
        key = key * labels[col].size + codes  # lexicographic: study, then sample, then disease
    groups, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    values = scores[rows]
    n_cells = np.bincount(inverse, minlength=groups.size)
    n_hits = np.bincount(inverse, weights=values > threshold, minlength=groups.size).astype(np.int64)
    out = {}
    rest = groups
    for col in reversed(SAMPLE_KEYS):
        out[col] = labels[col][rest % labels[col].size]
        rest = rest // labels[col].size
    first_rows = rows[first]  # np.unique's index is each group's first selected cell
    out = pd.DataFrame({
        "study": out["study"], "sample": out["sample"], "disease": out["disease"],
        "tissue": cells["tissue"].to_numpy()[first_rows].astype(str).astype(object),
        "donor": (cells["donor"].to_numpy()[first_rows].astype(str).astype(object) if "donor" in cells else out["sample"]),
        "simulated": cells["simulated"].to_numpy()[first_rows].astype(bool),
        "n_cells": n_cells.astype(np.int64),
        "n_hits": n_hits,
        "mean_score": np.bincount(inverse, weights=values, minlength=groups.size) / n_cells,
    })
    out["hit_pct"] = 100.0 * out["n_hits"] / out["n_cells"]
    return out


def rank_groups(samples: pd.DataFrame, by: str = "disease", cell_min: int = 25, samp_min: int = 3) -> pd.DataFrame:
    """Rank groups (disease, study, tissue) by the mean of their samples' hit percentages.

    Samples with fewer than ``cell_min`` selected cells are dropped first; groups with fewer
    than ``samp_min`` remaining samples are dropped. Columns: group, mean_hit_pct,
    median_hit_pct, sd_hit_pct, n_samples, n_studies, n_cells, n_simulated_samples, rank.
    """
    cols = ["group", "mean_hit_pct", "median_hit_pct", "sd_hit_pct", "n_samples", "n_studies", "n_cells", "n_simulated_samples", "rank"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    kept = samples[samples["n_cells"] >= cell_min]
    if kept.empty:
        return pd.DataFrame(columns=cols)
    # numpy over group codes rather than a pandas groupby with six aggregations (30 ms a call):
    # the null and the evidence rank many times, and the ranking comes first
    codes, groups = pd.factorize(kept[by].to_numpy(), sort=False)  # order of first appearance, as groupby(sort=False)
    n_groups = len(groups)
    hit = kept["hit_pct"].to_numpy(dtype=np.float64)
    n = np.bincount(codes, minlength=n_groups)
    mean = np.bincount(codes, weights=hit, minlength=n_groups) / n
    order = np.lexsort((hit, codes))  # by group, then hit %
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    ordered = hit[order]
    lo, hi = starts + (n - 1) // 2, starts + n // 2
    median = (ordered[lo] + ordered[hi]) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.bincount(codes, weights=(hit - mean[codes]) ** 2, minlength=n_groups) / (n - 1))
    sd[n < 2] = np.nan
    study_codes = pd.factorize(kept["study"].to_numpy())[0]
    pairs = np.unique(codes.astype(np.int64) * (study_codes.max() + 1) + study_codes)
    out = pd.DataFrame({
        "group": groups,
        "mean_hit_pct": mean,
        "median_hit_pct": median,
        "sd_hit_pct": sd,
        "n_samples": n.astype(np.int64),
        "n_studies": np.bincount(pairs // (study_codes.max() + 1), minlength=n_groups).astype(np.int64),
        "n_cells": np.bincount(codes, weights=kept["n_cells"].to_numpy(), minlength=n_groups).astype(np.int64),
        "n_simulated_samples": np.bincount(codes, weights=kept["simulated"].to_numpy().astype(np.int64), minlength=n_groups).astype(int),
    })
    out = out[out["n_samples"] >= samp_min]
    out = out.sort_values(["mean_hit_pct", "median_hit_pct", "group"], ascending=[False, False, True]).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out[cols]


def group_gene_means(values: np.ndarray, genes, labels: np.ndarray, selection: np.ndarray) -> pd.DataFrame:
    """genes x groups table of mean attribution over the selected cells of each group that
    measured the gene (NaN values are unmeasured); NaN when none did."""
    sel = np.asarray(selection, dtype=bool)
    lab = np.asarray(labels).astype(str)[sel]
    vals = values[sel]
    groups = sorted(set(lab.tolist()))
    if not groups:
        return pd.DataFrame(index=list(genes))
    codes = np.searchsorted(np.array(groups), lab)
    # NaN: the cell's study did not measure the gene; it counts in neither the sum nor the cells
    seen = ~np.isnan(vals)
    counts = np.stack([np.bincount(codes, weights=seen[:, j], minlength=len(groups)) for j in range(vals.shape[1])], axis=1)
    sums = np.stack([np.bincount(codes, weights=np.where(seen[:, j], vals[:, j], 0.0), minlength=len(groups)) for j in range(vals.shape[1])], axis=1)
    means = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    return pd.DataFrame(means.T, index=list(genes), columns=groups)

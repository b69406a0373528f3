"""Evidence for a disease link within studies, pooled across studies (method.md section 7).

The donor is the unit. Per study holding donors of a disease D and of the reference R
(default: normal), Hedges' g of the per-donor values (hit % of the donor's selected cells,
and its mean score); across those studies a random-effects meta-analysis (DerSimonian-Laird,
Paule-Mandel as a check) from ``statsmodels.stats.meta_analysis``. The p-value of the pooled
effect comes from permuting disease and reference labels among each study's donors (every
arrangement when they are few): it is exact under "no within-study difference" whatever the
donor counts, while the normal z-test of the pooled g is far off its nominal rate with a
handful of donors per side (Hedges' variance grows with g^2, so z saturates: with 3 disease and
2 reference donors in each of two studies it called 0 of 400 no-effect links at 0.05 and the
permutation test 18, tests/compute/query/test_meta.py and docs/validation.md). The z-test's p is kept as
``effect_z_p`` for comparison. The permutation p cannot go below 1 / (the number of
arrangements): one study of 3 + 2 donors has 10, so alone it can never reach 0.05, whatever
its effect. A disease seen only in studies without reference donors gets no p-value: its hit %
cannot be told apart from its study's batch."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["EVIDENCE_LEVELS", "MIN_DONORS", "MIN_DONORS_PER_ARM", "MetaAnalysis", "donor_table", "evidence_words", "meta_analyse"]

# per study, at least one donor on each side and this many in all: Hedges' g's small-sample
# correction and its variance (statsmodels: n - 3.94 in a denominator) need four
MIN_DONORS_PER_ARM = 1
MIN_DONORS = 4
# every arrangement of the donor labels when there are at most this many; random ones otherwise
MAX_EXACT_PERMUTATIONS = 5000
N_RANDOM_PERMUTATIONS = 2000

EVIDENCE_LEVELS = {
    "pooled": "studies with their own reference donors, pooled",
    "one_study": "1 study with its own reference donors",
    "no_within_study_reference": "no within-study reference: seen only in studies without reference donors, so this disease "
                                 "cannot be told apart from its study's batch",
    "no_reference": "no reference donors in the selection",
}
# the same level when a study does hold reference donors, but too few to compare or without spread
NO_USABLE_REFERENCE = (f"no usable within-study reference: its studies' reference donors are too few ({MIN_DONORS} donors "
                       "in all are needed) or show no spread, so this disease cannot be told apart from its study's batch")
# the measures compared, each a column of the donor table; the first is the headline
Z95 = 1.959963984540054  # the normal 97.5% point
MEASURES = {"hit_pct": "effect", "mean_score": "effect_score"}

EFFECT_COLUMNS = ["effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "effect_z_p", "effect_pm", "tau2", "i2",
                  "heterogeneity_p", "loo_lo", "loo_hi", "n_studies_positive", "n_studies_with_reference",
                  "n_studies_with_reference_donors", "n_donors",
                  "n_reference_donors", "evidence", "effect_score", "effect_score_lo", "effect_score_hi", "effect_score_p",
                  "effect_score_q", "n_permutations"]
STUDY_COLUMNS = ["disease", "study", "measure", "g", "variance", "g_lo", "g_hi", "weight", "n_donors", "n_reference_donors",
                 "mean", "reference_mean", "included", "reason"]


@dataclass
class MetaAnalysis:
    """``diseases``: one row per disease (index) with EFFECT_COLUMNS; ``studies``: one row per
    (disease, study, measure) with STUDY_COLUMNS, the studies without a usable reference
    included with their reason; ``reference``: the reference label(s)."""

    diseases: pd.DataFrame
    studies: pd.DataFrame
    reference: tuple[str, ...]


def donor_table(samples: pd.DataFrame, cell_min: int) -> pd.DataFrame:
    """Per (study, disease, donor): hit_pct and mean_score averaged over the donor's samples
    with at least ``cell_min`` selected cells, n_samples and n_cells. ``samples`` is
    :func:`compute.query.sample_hit_table`'s table (a ``donor`` column; the sample when absent)."""
    kept = samples[samples["n_cells"] >= cell_min]
    cols = ["study", "disease", "donor", "hit_pct", "mean_score", "n_samples", "n_cells"]
    if kept.empty:
        return pd.DataFrame(columns=cols)
    donor = kept["donor"] if "donor" in kept else kept["sample"]
    frame = pd.DataFrame({"study": kept["study"].astype(str).to_numpy(), "disease": kept["disease"].astype(str).to_numpy(),
                          "donor": donor.astype(str).to_numpy(), "hit_pct": kept["hit_pct"].to_numpy(dtype=float),
                          "mean_score": kept["mean_score"].to_numpy(dtype=float), "n_cells": kept["n_cells"].to_numpy()})
    out = frame.groupby(["study", "disease", "donor"], sort=True, observed=True).agg(
        hit_pct=("hit_pct", "mean"), mean_score=("mean_score", "mean"), n_samples=("hit_pct", "size"), n_cells=("n_cells", "sum"))
    return out.reset_index()[cols]


def _smd(case: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Hedges' g (case - reference) and its variance, by statsmodels."""
    from statsmodels.stats.meta_analysis import effectsize_smd

    # one donor on a side has no spread of its own and no weight in the pooled SD ((n - 1) x sd^2)
    g, v = effectsize_smd(case.mean(), case.std(ddof=1) if case.size > 1 else 0.0, case.size,
                          ref.mean(), ref.std(ddof=1) if ref.size > 1 else 0.0, ref.size)
    return float(g), float(v)


def _combine(g: np.ndarray, v: np.ndarray, method: str = "dl") -> dict:
    """Random-effects pooled estimate by statsmodels' combine_effects: mean, 95% CI (normal),
    z-test p, tau^2 (DerSimonian-Laird; a negative moment estimate is 0, as in metafor), I^2,
    Cochran's Q p and the relative weights."""
    from scipy.special import chdtrc, ndtr
    from statsmodels.stats.meta_analysis import combine_effects

    # the 95% interval and the normal and chi-square tails from scipy.special: scipy.stats'
    # distribution objects cost a millisecond a call, more than the estimate itself
    if g.size == 1:
        se = math.sqrt(v[0])
        return {"mean": float(g[0]), "lo": float(g[0] - Z95 * se), "hi": float(g[0] + Z95 * se), "se": se,
                "p": float(2 * ndtr(-abs(g[0]) / se)), "tau2": np.nan, "i2": np.nan, "q_p": np.nan, "weights": np.ones(1)}
    with np.errstate(invalid="ignore"):  # a negative moment estimate of tau^2 (clipped below) warns inside statsmodels
        res = combine_effects(g, v, method_re=method)
    if method == "dl" and res.tau2 < 0:
        # statsmodels leaves the DerSimonian-Laird moment estimate unclipped; at tau^2 = 0 (as
        # metafor reports it) the random-effects estimate is the fixed-effect one
        mean, se, weights = float(res.mean_effect_fe), float(res.sd_eff_w_fe), np.asarray(res.weights_rel_fe, dtype=float)
        tau2 = 0.0
    else:
        mean, se, weights = float(res.mean_effect_re), float(res.sd_eff_w_re), np.asarray(res.weights_rel_re, dtype=float)
        tau2 = float(res.tau2)
    q = float(res.q)
    return {"mean": mean, "lo": mean - Z95 * se, "hi": mean + Z95 * se, "se": se, "p": float(2 * ndtr(-abs(mean) / se)),
            "tau2": tau2, "i2": float(max(0.0, (q - (g.size - 1)) / q)) if q > 0 else 0.0, "q_p": float(chdtrc(g.size - 1, q)),
            "weights": weights}


def _arm_stats(values: np.ndarray, case: np.ndarray) -> tuple[np.ndarray, ...]:
    """For arrangements ``case`` (arrangements x donors, True: disease) of one study's donor
    ``values`` (donors x measures): per arrangement and measure the two arms' means and SDs."""
    n_case = case.sum(axis=1)[:, None]
    n_ref = case.shape[1] - n_case
    c = case.astype(float)
    r = 1.0 - c
    m_case, m_ref = (c @ values) / n_case, (r @ values) / n_ref
    ss_case = c @ values**2 - n_case * m_case**2
    ss_ref = r @ values**2 - n_ref * m_ref**2
    with np.errstate(invalid="ignore", divide="ignore"):  # one donor on a side: no spread, no weight (see _smd)
        sd_case = np.where(n_case > 1, np.sqrt(np.clip(ss_case, 0, None) / np.maximum(n_case - 1, 1)), 0.0)
        sd_ref = np.where(n_ref > 1, np.sqrt(np.clip(ss_ref, 0, None) / np.maximum(n_ref - 1, 1)), 0.0)
    return m_case, sd_case, n_case, m_ref, sd_ref, n_ref


def _pooled_z(G: np.ndarray, V: np.ndarray) -> np.ndarray:
    """The DerSimonian-Laird pooled z (tau^2 clipped at 0) of each row of arrangements x studies
    effects ``G`` and variances ``V``: the statistic :func:`_combine` tests, for many
    arrangements at once (tests check it against statsmodels on the observed arrangement)."""
    w = 1.0 / V
    k = G.shape[1]
    fe = (w * G).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    if k > 1:
        q = (w * (G - fe) ** 2).sum(axis=1, keepdims=True)
        c = w.sum(axis=1, keepdims=True) - (w**2).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
        tau2 = np.clip((q - (k - 1)) / c, 0, None)
        w = 1.0 / (V + tau2)
    mean = (w * G).sum(axis=1) / w.sum(axis=1)
    return mean * np.sqrt(w.sum(axis=1))


def _permutation_p(blocks: list[tuple[np.ndarray, int]], observed_z: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Two-sided p-values of the pooled z for each measure, from arrangements of the disease
    and reference labels among each study's donors. ``blocks``: per study its donors x measures
    values (disease donors first) and the number of disease donors. Every arrangement when
    there are at most MAX_EXACT_PERMUTATIONS (the observed one among them); otherwise
    N_RANDOM_PERMUTATIONS random ones and the observed one added (p >= 1 / (N + 1))."""
    from statsmodels.stats.meta_analysis import effectsize_smd

    sizes = [math.comb(v.shape[0], n) for v, n in blocks]
    exact = math.prod(sizes) <= MAX_EXACT_PERMUTATIONS
    rng = np.random.default_rng(seed)
    per_study = []
    for values, n_case in blocks:
        n = values.shape[0]
        if exact:
            combos = np.array(list(itertools.combinations(range(n), n_case)), dtype=np.int64)
            case = np.zeros((combos.shape[0], n), dtype=bool)
            np.put_along_axis(case, combos, True, axis=1)
        else:
            order = rng.permuted(np.tile(np.arange(n), (N_RANDOM_PERMUTATIONS, 1)), axis=1)
            case = order < n_case
        m1, s1, n1, m2, s2, n2 = _arm_stats(values, case)
        with np.errstate(invalid="ignore", divide="ignore"):
            g, v = effectsize_smd(m1, s1, n1, m2, s2, n2)
        per_study.append((np.asarray(g, dtype=float), np.asarray(v, dtype=float)))
    if exact:
        grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
        picks = [grid.ravel() for grid in grids]
    else:
        picks = [np.arange(N_RANDOM_PERMUTATIONS)] * len(blocks)
    n_measures = observed_z.size
    p = np.empty(n_measures)
    n_perm = picks[0].size
    for j in range(n_measures):
        G = np.stack([g[idx, j] for (g, _), idx in zip(per_study, picks, strict=True)], axis=1)
        V = np.stack([v[idx, j] for (_, v), idx in zip(per_study, picks, strict=True)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(_pooled_z(G, V))
        z = np.where(np.isfinite(z), z, np.inf)  # an arrangement with no spread in either arm: as extreme as any
        extreme = int((z >= abs(observed_z[j]) * (1 - 1e-9)).sum())
        p[j] = extreme / n_perm if exact else (1 + extreme) / (1 + n_perm)
    return p, n_perm + (0 if exact else 1)


def _reason(n_case: int, n_ref: int, values: np.ndarray | None) -> str:
    if n_ref == 0:
        return "no reference donors in this study"
    if n_case < MIN_DONORS_PER_ARM or n_case + n_ref < MIN_DONORS:
        return f"{n_case} disease and {n_ref} reference donors: at least {MIN_DONORS} in all are needed"
    if values is not None and not np.all(np.isfinite(values)):
        return "a donor's value is not finite"
    return ""


def meta_analyse(donors: pd.DataFrame, diseases, reference_labels, *, seed: int = 0) -> MetaAnalysis:
    """The within-study evidence for each of ``diseases`` (labels of ``donors``' disease column)
    against the donors whose disease is in ``reference_labels``, from :func:`donor_table`'s
    ``donors``. See the module docstring for the rules; returns a :class:`MetaAnalysis`."""
    from scipy.stats import false_discovery_control

    reference = tuple(sorted(set(map(str, reference_labels))))
    ref_set = set(reference)
    measures = list(MEASURES)
    # numpy from here: pandas indexing in this loop cost more than the statistics
    study = donors["study"].astype(str).to_numpy()
    disease_of = donors["disease"].astype(str).to_numpy()
    values_all = donors[measures].to_numpy(dtype=float)
    is_ref = np.isin(disease_of, list(ref_set))
    rows_of = {sid: np.flatnonzero(study == sid) for sid in np.unique(study)}
    any_reference = bool(is_ref.any())
    rows, study_rows = [], []
    for i, disease in enumerate(map(str, diseases)):
        row = dict.fromkeys(EFFECT_COLUMNS, np.nan)
        row["n_studies_with_reference"] = row["n_studies_with_reference_donors"] = 0
        row["n_permutations"] = 0
        case_rows = disease_of == disease
        row["n_donors"], row["n_reference_donors"] = int(case_rows.sum()), 0
        if disease in ref_set or not any_reference:
            row["evidence"] = "no_reference"
            rows.append(row)
            continue
        blocks, effects = [], {m: [] for m in measures}
        used, mine = [], []
        for sid in np.unique(study[case_rows]).tolist():
            idx = rows_of[sid]
            case = values_all[idx[disease_of[idx] == disease]]
            ref = values_all[idx[is_ref[idx]]]
            reason = _reason(case.shape[0], ref.shape[0], np.vstack([case, ref]))
            row["n_studies_with_reference_donors"] += int(ref.shape[0] > 0)
            stats_by_measure = {}
            if not reason:
                for j, m in enumerate(measures):
                    with np.errstate(invalid="ignore", divide="ignore"):
                        g, v = _smd(case[:, j], ref[:, j])
                    if not (np.isfinite(g) and np.isfinite(v)):
                        reason = "no spread among the donors within either side: the standardised difference is undefined"
                        break
                    stats_by_measure[m] = (g, v)
            for j, m in enumerate(measures):
                g, v = stats_by_measure.get(m, (np.nan, np.nan))
                half = Z95 * math.sqrt(v) if np.isfinite(v) else np.nan
                mine.append({"disease": disease, "study": sid, "measure": m, "g": g, "variance": v, "g_lo": g - half,
                             "g_hi": g + half, "weight": np.nan, "n_donors": int(case.shape[0]),
                             "n_reference_donors": int(ref.shape[0]),
                             "mean": float(case[:, j].mean()) if case.size else np.nan,
                             "reference_mean": float(ref[:, j].mean()) if ref.size else np.nan,
                             "included": not reason, "reason": reason})
            if reason:
                continue
            used.append(sid)
            blocks.append((np.vstack([case, ref]), case.shape[0]))
            for m in measures:
                effects[m].append(stats_by_measure[m])
            row["n_reference_donors"] += int(ref.shape[0])
        study_rows += mine
        k = len(used)
        row["n_studies_with_reference"] = k
        if k == 0:
            row["evidence"] = "no_within_study_reference"
            rows.append(row)
            continue
        row["evidence"] = "pooled" if k >= 2 else "one_study"
        row["n_donors"] = int(sum(n for _, n in blocks))
        observed_z = []
        for m in measures:
            g = np.array([e[0] for e in effects[m]])
            v = np.array([e[1] for e in effects[m]])
            pooled = _combine(g, v)
            col = MEASURES[m]
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = pooled["mean"], pooled["lo"], pooled["hi"]
            observed_z.append(pooled["mean"] / pooled["se"])
            weights = dict(zip(used, pooled["weights"], strict=True))
            for r in mine:
                if r["measure"] == m and r["study"] in weights:
                    r["weight"] = float(weights[r["study"]])
            if m != measures[0]:
                continue
            row["effect_z_p"] = pooled["p"]
            row["tau2"], row["i2"], row["heterogeneity_p"] = pooled["tau2"], pooled["i2"], pooled["q_p"]
            row["n_studies_positive"] = int((g > 0).sum())
            if k >= 2:
                row["effect_pm"] = _combine(g, v, method="iterated")["mean"]
                loo = [g[1 - j] if k == 2 else _combine(np.delete(g, j), np.delete(v, j))["mean"] for j in range(k)]
                row["loo_lo"], row["loo_hi"] = float(min(loo)), float(max(loo))
        p, n_perm = _permutation_p(blocks, np.array(observed_z), seed=seed + i)
        row["effect_p"], row["effect_score_p"] = float(p[0]), float(p[1])
        row["n_permutations"] = int(n_perm)
        rows.append(row)
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS, index=pd.Index(list(map(str, diseases)), name="disease"))
    for col in ("effect", "effect_score"):
        p = table[f"{col}_p"].to_numpy(dtype=float)
        q = np.full(p.shape, np.nan)
        ok = np.isfinite(p)
        if ok.any():
            q[ok] = false_discovery_control(p[ok], method="bh")
        table[f"{col}_q"] = q
    for col in ("n_studies_positive", "n_studies_with_reference", "n_studies_with_reference_donors", "n_donors",
                "n_reference_donors", "n_permutations"):
        table[col] = table[col].fillna(0).astype(int)
    return MetaAnalysis(table, pd.DataFrame(study_rows, columns=STUDY_COLUMNS), reference)


def evidence_words(row) -> str:
    """The evidence level of a disease row (:func:`meta_analyse`'s table) in words."""
    level = row.get("evidence") if hasattr(row, "get") else row["evidence"]
    if level == "pooled":
        k = int(row["n_studies_with_reference"])
        return f"{k} studies with their own reference donors"
    if level == "no_within_study_reference" and int(row.get("n_studies_with_reference_donors", 0) or 0) > 0:
        return NO_USABLE_REFERENCE
    return EVIDENCE_LEVELS.get(str(level), str(level))

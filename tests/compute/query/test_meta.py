"""The disease evidence's meta-analysis on donor tables (compute.query meta_analyse): the
estimators agree with statsmodels and method.md, the pooled test is calibrated on no-effect
donors, and planted effects, confounds and heterogeneity are reported as such."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from compute.query import donor_table, meta_analyse
from compute.query._meta import _combine, _pooled_z


def donors(spec, *, seed=0, shift=None, sd=2.0):
    """A donor table: ``spec`` is {study: {disease: n_donors}}; ``shift`` {(study, disease): added hit %}."""
    rng = np.random.default_rng(seed)
    rows = []
    for study, arms in spec.items():
        base = rng.normal(10, 3)  # a study's own level: batch
        for disease, n in arms.items():
            for j in range(n):
                delta = (shift or {}).get((study, disease), 0.0)
                rows.append({"study": study, "disease": disease, "donor": f"{study}-{disease}-{j}",
                             "hit_pct": base + delta + rng.normal(0, sd), "mean_score": 1 + 0.1 * (delta + rng.normal(0, sd)),
                             "n_samples": 1, "n_cells": 100})
    return pd.DataFrame(rows)


def test_pooled_z_is_statsmodels_dersimonian_laird():
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(3)
    for k in (1, 2, 3, 6):
        for _ in range(20):
            g, v = rng.normal(0.5, 1, k), rng.uniform(0.2, 1.5, k)
            z = _pooled_z(g[None, :], v[None, :])[0]
            pooled = _combine(g, v)
            assert z == pytest.approx(pooled["mean"] / pooled["se"], rel=1e-9)
            if k > 1:
                res = combine_effects(g, v, method_re="dl")
                if res.tau2 >= 0:  # statsmodels' own figures where it does not need the clip
                    assert pooled["mean"] == pytest.approx(res.mean_effect_re)
                    assert pooled["tau2"] == pytest.approx(res.tau2)


def test_hedges_g_is_the_method_formula():
    table = donors({"S1": {"D": 4, "normal": 3}}, seed=1)
    m = meta_analyse(table, ["D"], ["normal"])
    row = m.studies[(m.studies["measure"] == "hit_pct")].iloc[0]
    case = table.loc[table["disease"] == "D", "hit_pct"].to_numpy()
    ref = table.loc[table["disease"] == "normal", "hit_pct"].to_numpy()
    n1, n2 = case.size, ref.size
    s = np.sqrt(((n1 - 1) * case.var(ddof=1) + (n2 - 1) * ref.var(ddof=1)) / (n1 + n2 - 2))
    g = (1 - 3 / (4 * (n1 + n2) - 9)) * (case.mean() - ref.mean()) / s
    assert row["g"] == pytest.approx(g)
    # statsmodels' variance: n/(n1 n2) + g^2 / (2 (n - 3.94)) (Hedges and Olkin's closer form of method.md's)
    assert row["variance"] == pytest.approx((n1 + n2) / (n1 * n2) + g**2 / (2 * (n1 + n2 - 3.94)))
    assert m.diseases.loc["D", "evidence"] == "one_study"
    assert m.diseases.loc["D", "effect"] == pytest.approx(g)


def test_donor_table_averages_a_donors_samples_and_applies_cell_min():
    samples = pd.DataFrame({
        "study": ["S"] * 4, "sample": ["a1", "a2", "b1", "c1"], "donor": ["a", "a", "b", "c"], "disease": ["D", "D", "D", "normal"],
        "n_cells": [30, 50, 10, 40], "hit_pct": [10.0, 20.0, 99.0, 5.0], "mean_score": [1.0, 2.0, 9.0, 0.5]})
    out = donor_table(samples, cell_min=25).set_index("donor")
    assert list(out.index) == ["a", "c"]  # b's only sample has fewer than cell_min cells
    assert out.loc["a", "hit_pct"] == pytest.approx(15.0)
    assert out.loc["a", "n_samples"] == 2


@pytest.mark.parametrize("design", [
    {"S1": {"D": 3, "normal": 2}, "S2": {"D": 3, "normal": 2}},                          # the demo's: 100 arrangements
    {"S1": {"D": 4, "normal": 4}, "S2": {"D": 3, "normal": 5}, "S3": {"D": 6, "normal": 6}},  # random arrangements
])
def test_pooled_test_is_calibrated_on_no_effect_donors(design):
    n_rep = 300
    p = np.array([meta_analyse(donors(design, seed=s), ["D"], ["normal"], seed=s).diseases.loc["D", "effect_p"]
                  for s in range(n_rep)])
    assert np.isfinite(p).all()
    for alpha in (0.05, 0.10):
        lo, hi = stats.binom.ppf([0.025, 0.975], n_rep, alpha) / n_rep
        rate = float((p <= alpha + 1e-12).mean())
        assert lo <= rate <= hi, f"{rate:.3f} of no-effect tests at p <= {alpha}, outside [{lo:.3f}, {hi:.3f}]"


def test_planted_within_study_effect_is_found():
    spec = {f"S{i}": {"D": 5, "normal": 5} for i in range(3)}
    table = donors(spec, seed=4, shift={(f"S{i}", "D"): 6.0 for i in range(3)})
    m = meta_analyse(table, ["D"], ["normal"])
    row = m.diseases.loc["D"]
    assert row["evidence"] == "pooled" and row["n_studies_with_reference"] == 3
    assert row["effect"] > 1 and row["effect_lo"] > 0 and row["effect_p"] < 0.01
    assert row["n_studies_positive"] == 3 and row["n_donors"] == 15 and row["n_reference_donors"] == 15


def test_a_study_batch_without_reference_donors_gets_no_link():
    # disease C's only study has no reference donors and a high level: batch and disease are one
    spec = {"S1": {"D": 3, "normal": 3}, "S2": {"C": 4}}
    table = donors(spec, seed=5, shift={("S2", "C"): 40.0})
    m = meta_analyse(table, ["C", "D"], ["normal"])
    row = m.diseases.loc["C"]
    assert row["evidence"] == "no_within_study_reference"
    assert np.isnan(row["effect"]) and np.isnan(row["effect_p"]) and np.isnan(row["effect_q"])
    reasons = m.studies.loc[m.studies["disease"] == "C", "reason"]
    assert reasons.str.contains("no reference donors").all()
    # the same shift shared by both sides of a study with its own controls is no effect
    both = donors({"S1": {"D": 4, "normal": 4}}, seed=6, shift={("S1", "D"): 0.0, ("S1", "normal"): 0.0})
    assert meta_analyse(both, ["D"], ["normal"]).diseases.loc["D", "effect_p"] > 0.05


def test_heterogeneity_and_leave_one_out_when_one_study_lacks_the_program():
    spec = {f"S{i}": {"D": 6, "normal": 6} for i in range(3)}
    table = donors(spec, seed=7, sd=1.0, shift={("S0", "D"): 5.0, ("S1", "D"): 5.0})
    row = meta_analyse(table, ["D"], ["normal"]).diseases.loc["D"]
    assert row["i2"] > 0.5 and row["tau2"] > 0 and row["heterogeneity_p"] < 0.05
    assert row["loo_hi"] - row["loo_lo"] > 1.0  # leaving out the study without the program moves the estimate
    assert row["n_studies_positive"] >= 2


def test_reference_itself_and_no_reference_anywhere():
    table = donors({"S1": {"D": 3, "normal": 3}}, seed=8)
    m = meta_analyse(table, ["D", "normal"], ["normal"])
    assert m.diseases.loc["normal", "evidence"] == "no_reference"
    m = meta_analyse(table, ["D"], ["influenza"])
    assert m.diseases.loc["D", "evidence"] == "no_reference" and np.isnan(m.diseases.loc["D", "effect_p"])


def test_bh_q_over_the_diseases_tested():
    spec = {f"S{i}": {"A": 5, "B": 5, "normal": 5} for i in range(2)}
    table = donors(spec, seed=9, shift={("S0", "A"): 6.0, ("S1", "A"): 6.0})
    d = meta_analyse(table, ["A", "B"], ["normal"]).diseases
    p = d["effect_p"].to_numpy()
    assert np.allclose(d["effect_q"].to_numpy(), stats.false_discovery_control(p, method="bh"))


def test_one_donor_on_a_side_counts_with_no_spread_of_its_own():
    table = donors({"S1": {"D": 1, "normal": 4}, "S2": {"D": 4, "normal": 1}}, seed=10)
    m = meta_analyse(table, ["D"], ["normal"])
    assert m.studies["included"].all() and m.diseases.loc["D", "evidence"] == "pooled"
    case = table[(table.study == "S1") & (table.disease == "D")]["hit_pct"].to_numpy()
    ref = table[(table.study == "S1") & (table.disease == "normal")]["hit_pct"].to_numpy()
    g = (1 - 3 / (4 * 5 - 9)) * (case.mean() - ref.mean()) / ref.std(ddof=1)
    assert m.studies.query("study == 'S1' and measure == 'hit_pct'")["g"].iloc[0] == pytest.approx(g)
    assert np.isfinite(m.diseases.loc["D", "effect_p"])


def test_an_atlas_without_healthy_donors_answers_with_no_reference(tiny_atlas):
    from compute.errors import QueryError
    from compute.query import QueryParams, reference_labels

    class NoHealthy:  # the tiny atlas as an atlas whose studies hold no healthy donor
        cells = tiny_atlas.cells[tiny_atlas.cells["disease"].astype(str) != "normal"]

        def disease_grouping(self, groups):
            return {}

    assert reference_labels(NoHealthy(), QueryParams(genes=(("CD14", None),)), NoHealthy.cells) == ()
    with pytest.raises(QueryError, match="not a disease of this atlas"):
        reference_labels(NoHealthy(), QueryParams(genes=(("CD14", None),), reference="lupus-ish"), NoHealthy.cells)
    d = meta_analyse(donors({"S1": {"D": 3}}, seed=11), ["D"], ()).diseases
    assert d.loc["D", "evidence"] == "no_reference"


def test_reference_donors_too_few_to_compare_are_named_as_such():
    from compute.query import evidence_words

    # 2 patients and 1 control: below the 4 donors a study's g needs
    d = meta_analyse(donors({"S1": {"D": 2, "normal": 1}}, seed=12), ["D"], ["normal"]).diseases
    row = d.loc["D"]
    assert row["evidence"] == "no_within_study_reference" and row["n_studies_with_reference_donors"] == 1
    assert "too few" in evidence_words(row) and "batch" in evidence_words(row)
    # the same disease in a study with no control at all, beside another study that has some
    table = donors({"S1": {"D": 3}, "S2": {"E": 3, "normal": 3}}, seed=12)
    row = meta_analyse(table, ["D"], ["normal"]).diseases.loc["D"]
    assert row["evidence"] == "no_within_study_reference" and row["n_studies_with_reference_donors"] == 0
    assert "seen only in studies without reference donors" in evidence_words(row)

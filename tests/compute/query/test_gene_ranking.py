"""Genes ranked within a cell population (issue 21): a dense reference, the sample as the
unit, unmeasured genes missing (not zero), q-values on known inputs, the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from compute.errors import QueryError
from compute.query import RankingParams, differential, gene_ranking


def _dense_sample_means(atlas, mask, genes, store="attr"):
    """samples x genes means from Atlas.gene_values (NaN where not measured), the slow way."""
    values = atlas.gene_values(genes, store=store)[mask]
    cells = atlas.cells[mask]
    key = cells["study"].astype(str) + "/" + cells["sample"].astype(str)
    return pd.DataFrame(values, columns=genes).groupby(key.to_numpy(), sort=True).mean()


@pytest.mark.parametrize("store", ["attr", "expr"])
@pytest.mark.parametrize("indicator", ["dense", "sparse"])
def test_ranking_matches_a_dense_reference(tiny_atlas, store, indicator, monkeypatch):
    # both ways sample_gene_means sums a study's samples (a dense indicator below a size, sparse above)
    import compute.query._ranking as ranking

    monkeypatch.setattr(ranking, "DENSE_INDICATOR_MAX", ranking.DENSE_INDICATOR_MAX if indicator == "dense" else 0)
    r = gene_ranking(tiny_atlas, RankingParams(cell_types=("monocyte",), store=store, cell_min=1))
    genes = list(r.table.index[:5]) + list(r.table.index[-3:]) + ["S100A8", "LYZ", "CD3E"]
    genes = [g for g in dict.fromkeys(genes) if g in r.table.index]
    ref = _dense_sample_means(tiny_atlas, tiny_atlas.select(cell_types="monocyte"), genes, store)
    got = r.per_sample.loc[genes].T.sort_index()
    np.testing.assert_allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.table.loc[genes, "mean"], ref.mean(axis=0, skipna=True), rtol=1e-5)
    assert (np.diff(r.table["mean"].to_numpy()) <= 1e-12).all() and list(r.table["rank"]) == list(range(1, len(r.table) + 1))


def test_the_sample_is_the_unit_not_the_cell(tiny_atlas):
    r = gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), cell_min=1))
    sizes = r.samples["n_cells"]
    assert sizes.nunique() > 1  # unequal samples, so cell weighting would differ
    np.testing.assert_allclose(r.table["mean"], r.per_sample.mean(axis=1, skipna=True).loc[r.table.index], rtol=1e-9)
    weighted = (r.per_sample.fillna(0) * sizes.to_numpy()).sum(axis=1) / (r.per_sample.notna() * sizes.to_numpy()).sum(axis=1)
    assert not np.allclose(weighted.loc[r.table.index], r.table["mean"], rtol=1e-3)
    # duplicating one sample's cells would not change its weight: each sample is one number per gene
    assert r.per_sample.shape[1] == len(r.samples)


def test_unmeasured_genes_are_missing_not_zero(tiny_atlas, tiny_build):
    truth = tiny_build[2]
    study = next(s for s in truth["studies"] if s["missing_genes"])
    r = gene_ranking(tiny_atlas, RankingParams(cell_min=1))
    gene = next(g for g in study["missing_genes"] if g in r.table.index)
    cols = [c for c in r.per_sample.columns if c.startswith(study["id"] + "/")]
    assert cols and r.per_sample.loc[gene, cols].isna().all()
    assert r.table.loc[gene, "n_samples"] == r.per_sample.loc[gene].notna().sum() < len(r.samples)
    # the real PBMC study measured 765 genes: a ranking on it holds only those
    pbmc = gene_ranking(tiny_atlas, RankingParams(studies=("PBMC68K",), cell_min=1))
    assert len(pbmc.table) == int(tiny_atlas.measured_mask("PBMC68K").sum())


def test_real_pbmc_monocytes_rank_their_markers_high(tiny_atlas):
    import scanpy as sc

    r = gene_ranking(tiny_atlas, RankingParams(studies=("PBMC68K",), cell_types=("classical monocyte",), store="expr", cell_min=1))
    assert {"LYZ", "CST3", "TYROBP", "AIF1", "LST1"} <= set(r.top(50)), r.top(20)
    assert r.notes[0].startswith("1 sample of 1 study, "), r.notes[0]  # one real study of one sample: no "1 samples"
    # scanpy's own log-normalised values of the same cells put the same genes first
    pbmc = sc.datasets.pbmc68k_reduced()
    mono = (pbmc.obs["bulk_labels"] == "CD14+ Monocyte").to_numpy()
    raw = pd.Series(np.asarray(pbmc.raw.X[mono].mean(axis=0)).ravel(), index=pbmc.raw.var_names)
    theirs = [g for g in raw.sort_values(ascending=False).index if g in r.table.index][:10]
    assert len(set(theirs) & set(r.top(10))) >= 8, (theirs, r.top(10))


def test_differential_q_values_on_known_inputs():
    rng = np.random.default_rng(0)
    a = pd.DataFrame(rng.uniform(1, 2, size=(5, 4)), columns=list("ABCD"))  # values are >= 0, as stored
    b = pd.DataFrame(rng.uniform(1, 2, size=(6, 4)), columns=list("ABCD"))
    a["A"] += 5  # a clear difference
    b.loc[0:4, "D"] = np.nan  # one reference sample only: not tested
    out = differential(a, b)
    for g in "ABC":
        t, p = stats.ttest_ind(a[g], b[g], equal_var=False)
        assert out.loc[g, "t"] == pytest.approx(t) and out.loc[g, "p"] == pytest.approx(p)
    assert np.isnan(out.loc["D", "p"]) and np.isnan(out.loc["D", "q"])
    p = out.loc[list("ABC"), "p"].to_numpy()
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * 3 / np.arange(1, 4))[::-1])[::-1]
    expected = np.empty(3)
    expected[order] = np.minimum(bh, 1)
    np.testing.assert_allclose(out.loc[list("ABC"), "q"], expected)
    assert out.loc["A", "q"] < 0.05 and out.loc["A", "log2fc"] > 0


def test_versus_reference_and_errors(tiny_atlas):
    r = gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), diseases=("sepsis",), versus=("healthy",), cell_min=1))
    assert {"ref_mean", "p", "q", "log2fc"} <= set(r.table.columns) and r.ref_samples is not None
    assert set(r.samples["disease"]) == {"infectious disease with sepsis"} and set(r.ref_samples["disease"]) == {"normal"}
    with pytest.raises(QueryError, match="is its reference"):
        gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), diseases=("healthy",), versus=("healthy",), cell_min=1))
    with pytest.raises(QueryError, match="no sample"):
        gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), cell_min=100_000))
    with pytest.raises(QueryError, match="store"):
        RankingParams(store="nope")


def test_a_population_that_holds_its_reference_loses_it(tiny_atlas):
    """Issue 36 item 5: "classical monocyte versus normal" ranks the other diseases' monocytes
    against the normal ones (the reference taken out of the population, and the note says so)."""
    whole = gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), cell_min=1))
    r = gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), versus=("normal",), cell_min=1))
    assert "normal" in set(whole.samples["disease"]) and "normal" not in set(r.samples["disease"])
    assert set(r.ref_samples["disease"]) == {"normal"} and r.table["p"].notna().any()
    assert not set(r.samples.index) & set(r.ref_samples.index)
    assert any("taken out of the population" in n for n in r.notes)
    # the same as asking for every other disease by name
    others = tuple(sorted(set(whole.samples["disease"]) - {"normal"}))
    named = gene_ranking(tiny_atlas, RankingParams(cell_types=("classical monocyte",), diseases=others, versus=("normal",), cell_min=1))
    np.testing.assert_allclose(r.table["mean"].to_numpy(), named.table.loc[r.table.index, "mean"].to_numpy())


def test_the_command_line_prints_both_rankings(tiny_build, capsys):
    from compute.__main__ import main

    assert main(["genes", str(tiny_build[1]), "--cell-type", "monocyte", "--top", "5"]) == 0
    text = capsys.readouterr().out
    assert "expr_rank" in text and "SIMULATED" in text and "each sample counts once" in text
    assert main(["genes", str(tiny_build[1]), "--cell-type", "monocyte", "--disease", "sepsis", "--versus", "normal", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["genes"]) == 30 and {"gene", "rank", "expr_rank", "q"} <= set(doc["genes"][0]) and doc["simulated"]


def test_marker_and_housekeeping_shares_of_the_top_genes(tiny_atlas):
    from compute.reference import MARKER_TERMS, immune_markers
    from compute.validate import HOUSEKEEPING, gene_ranking_table, markers_for

    tree = tiny_atlas.vocabulary
    # a classical monocyte has the monocyte markers; a B cell, CD19-positive inherits the B cell set
    assert markers_for("CL:0000860", tree, immune_markers(), MARKER_TERMS) == set(immune_markers()["CD14+ Monocyte"])
    assert set(immune_markers()["B cell"]) <= markers_for("CL:0001201", tree, immune_markers(), MARKER_TERMS)
    assert HOUSEKEEPING["ribosomal"].match("RPL13A") and HOUSEKEEPING["ribosomal"].match("RPS4X")
    assert not HOUSEKEEPING["ribosomal"].match("RPS6KA1") and HOUSEKEEPING["mitochondrial"].match("MT-CO1")
    table = gene_ranking_table(tiny_atlas, studies=["PBMC68K"], cell_min=1).set_index("term")
    mono = table.loc["CL:0000860"]
    known = markers_for("CL:0000860", tree, immune_markers(), MARKER_TERMS) & set(tiny_atlas.genes)
    r = gene_ranking(tiny_atlas, RankingParams(cell_types=("CL:0000860",), studies=("PBMC68K",), cell_min=1))
    assert mono["markers attribution"] == pytest.approx(len(known & set(r.top(50))) / len(known))
    for col in ("markers attribution", "markers expression", "ribosomal attribution", "mitochondrial expression"):
        assert table[col].between(0, 1).all()


def test_differential_welch_matches_scipy_with_unmeasured_genes():
    """The vectorised Welch test equals scipy's (nan_policy="omit") gene by gene, unmeasured
    samples left out; a gene with fewer than 2 samples on a side has no p-value."""
    import warnings

    from scipy import stats

    from compute.query import differential

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(12, 300)), rng.normal(0.4, 2.0, size=(9, 300))
    a[rng.random(a.shape) < 0.1] = np.nan
    b[:, :3] = np.nan
    b[1:, 3] = np.nan  # one sample only
    genes = [f"G{i}" for i in range(300)]
    out = differential(pd.DataFrame(a, columns=genes), pd.DataFrame(b, columns=genes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.ttest_ind(a, b, axis=0, equal_var=False, nan_policy="omit")
    ok = np.isfinite(np.asarray(ref.pvalue, dtype=float))
    np.testing.assert_allclose(out["p"].to_numpy()[ok], np.asarray(ref.pvalue, dtype=float)[ok], rtol=1e-10)
    np.testing.assert_allclose(out["t"].to_numpy()[ok], np.asarray(ref.statistic, dtype=float)[ok], rtol=1e-10)
    assert out["p"].iloc[:4].isna().all() and out["q"].iloc[:4].isna().all()

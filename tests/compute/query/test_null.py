"""The query engine's null (matched random gene sets) and its evidence tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from compute.query import QueryParams, gene_bins, matched_draws, rank_groups, run_query, sample_hit_table, selection_matrix
from compute.query._null import null_rankings
from compute.query._run import _sample_layout, selection_panels
from compute.reference import ms1_signature


def _monocytes(atlas):
    return tuple(c for c in atlas.cells["cell_type"].astype(str).unique() if "monocyte" in c.lower())


def test_matched_draws_stay_in_bin_include_the_signatures_genes_and_avoid_repeats():
    rng = np.random.default_rng(0)
    mean, det = rng.gamma(1, 1, 400), rng.uniform(0.01, 0.9, 400)
    det[:5] = 0  # never detected: never drawn
    bins = gene_bins(mean, det)
    assert np.all(bins[:5] == -1) and bins[5:].min() >= 0
    signature = np.arange(10, 40)
    draws = matched_draws(signature, bins, 300, seed=1)
    assert draws.shape == (300, 30)
    assert not np.isin(draws, np.arange(5)).any()
    # the signature's genes are drawn like any gene of their bin (about 1 in 10 of a column's draws:
    # each bin holds ~10 genes), never kept out: the signature is one of the random sets
    own = np.mean(draws == signature[None, :])
    assert 0.05 < own < 0.2, own
    assert np.mean(bins[draws] == bins[signature][None, :]) > 0.99  # every bin holds ~10 genes: no borrowing needed
    assert all(len(set(row)) == len(row) for row in draws)


def test_null_rankings_equal_rerunning_the_query_with_the_drawn_genes(tiny_atlas):
    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), min_coverage=0)
    result = run_query(tiny_atlas, params)
    M = selection_matrix(tiny_atlas, result.selection, {"cell_type": sorted(params.cell_types)})
    codes, kept, groups = _sample_layout(result, tiny_atlas.cells)
    panels = selection_panels(tiny_atlas, result.selection)
    # random genes measured by some but not all selected studies: the reruns renormalise per study
    partly = np.flatnonzero(panels.measured.any(axis=0) & ~panels.measured.all(axis=0))
    everywhere = np.flatnonzero(panels.measured.all(axis=0))
    rng = np.random.default_rng(3)
    draws = np.array([np.concatenate([rng.choice(everywhere, 9, replace=False), rng.choice(partly, 3, replace=False)]) for _ in range(4)])
    w = np.linspace(0.5, 2.0, 12)
    nulls = null_rankings(M, draws, w, 0.9, None, codes, groups, kept, chunk=3, panels=panels)
    for d in range(4):
        genes = [tiny_atlas.genes[i] for i in draws[d]]
        again = run_query(tiny_atlas, QueryParams(genes=tuple(zip(genes, w, strict=True)), cell_types=params.cell_types, min_coverage=0))
        # the same groups in the same order as the observed ranking: compare by name
        want = again.diseases.set_index("group")["mean_hit_pct"].reindex(result.diseases["group"]).to_numpy()
        np.testing.assert_allclose(nulls["disease"][d], want, rtol=1e-9, atol=1e-9)


def test_planted_program_is_significant_and_the_p_value_has_its_floor(tiny_atlas, tiny_build):
    truth = {p["name"]: p for p in tiny_build[2]["programs"]}["MS1"]
    top = max(truth["strength"], key=truth["strength"].get)
    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), n_null=300, evidence=True)
    result = run_query(tiny_atlas, params)
    null = result.null["disease"]
    assert null.n_draws == 300 and null.p_floor == 1 / 301
    table = null.groups.set_index("group")
    # no draw reaches the planted disease; the correlation among the MS1 genes (VIF about 3 against
    # the draws' 1.2-1.4) widens the null, so its corrected p sits a few draws above the floor
    assert table.loc[top, "p_value_uncorrected"] == null.p_floor and table.loc[top, "p_value"] <= 0.02
    assert null.vif > 2 * null.vif_null
    tested = table["p_value"].dropna()  # the reference (normal) is compared with itself: no p-value
    assert list(table.index[table["p_value"].isna()]) == list(null.relative_to) == ["normal"]
    assert ((tested >= null.p_floor) & (tested <= 1)).all()
    assert (table["null_lo"] <= table["null_median"]).all() and (table["null_median"] <= table["null_hi"]).all()
    assert set(result.null) == {"disease", "study"} and len(result.null["study"].groups) == len(result.studies)

    ev = result.evidence
    assert list(ev.thresholds.columns) == [80.0, 90.0, 95.0, 99.0]
    np.testing.assert_allclose(ev.thresholds[90.0].reindex(result.diseases["group"]), result.diseases["mean_hit_pct"])
    assert -1 <= ev.rank_stability <= 1
    np.testing.assert_allclose(ev.gene_shares.sum(axis=0), 100.0)
    assert ev.top_gene == ev.gene_shares[result.diseases["group"].iloc[0]].idxmax()
    assert ev.top_survives == (ev.without_top_gene["group"].iloc[0] == result.diseases["group"].iloc[0])


def test_group_means_from_sample_tables_match_a_direct_computation():
    cells = pd.DataFrame({"study": ["s"] * 6, "sample": list("aabbcc"), "disease": ["x", "x", "y", "y", "y", "y"],
                          "tissue": "blood", "simulated": False})
    scores = np.array([0, 5, 5, 5, 0, 0.0])
    samples = sample_hit_table(cells, scores, np.ones(6, bool), 1.0)
    ranked = rank_groups(samples, "disease", cell_min=1, samp_min=1).set_index("group")["mean_hit_pct"]
    assert ranked["x"] == 50.0 and ranked["y"] == 50.0  # y: samples b (100%) and c (0%)
    M = sp.csc_matrix(scores[:, None])
    codes = np.array([0, 0, 1, 1, 2, 2])
    nulls = null_rankings(M, np.zeros((1, 1), int), np.ones(1), None, 1.0, codes, {"disease": np.array([0, 1, 1])}, np.ones(3, bool))
    np.testing.assert_allclose(nulls["disease"][0], [50.0, 50.0])


def test_expression_scores_are_scanpys_score_genes_on_the_selected_cells(tiny_atlas, tiny_build):
    import anndata as ad
    import scanpy as sc

    cts = _monocytes(tiny_atlas)
    genes = tuple((g, None) for g in ms1_signature())
    result = run_query(tiny_atlas, QueryParams(genes=genes, cell_types=cts, expression=True))
    sel = result.selection
    assert np.isnan(result.expression_scores[~sel]).all() and np.isfinite(result.expression_scores[sel]).all()
    # each study on its own panel: score_genes over its selected cells and the genes it measured
    dense = tiny_atlas.gene_values(tiny_atlas.genes, store="expr")
    study = tiny_atlas.cells["study"].astype(str).to_numpy()
    for sid in np.unique(study[sel]):
        rows = sel & (study == sid)
        measured = ~np.isnan(dense[rows][0])
        adata = ad.AnnData(dense[rows][:, measured])
        adata.var_names = [g for g, m in zip(tiny_atlas.genes, measured, strict=True) if m]
        in_set = [g for g in result.resolution.matched if g in set(adata.var_names)]
        sc.tl.score_genes(adata, in_set, ctrl_size=50, n_bins=25, random_state=0, use_raw=False)
        np.testing.assert_allclose(result.expression_scores[rows], adata.obs["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    truth = {p["name"]: p for p in tiny_build[2]["programs"]}["MS1"]["strength"]
    assert result.expression_diseases["group"].iloc[0] == max(truth, key=truth.get)


def test_expression_scores_read_the_selection_s_gene_sums_from_the_cache(tiny_build, tmp_path):
    from compute.atlas import Atlas
    from compute.query._expression import expression_scores

    cached, plain = Atlas.open(tiny_build[1], cache=tmp_path), Atlas.open(tiny_build[1], cache=False)
    sel = cached.select(cell_types=_monocytes(cached))
    ms1 = [g for g in ms1_signature() if g in set(cached.genes)]
    for genes in (ms1, ms1[:20], list(cached.genes[:300])):  # new genes, the same cells: sums from the cache
        np.testing.assert_array_equal(expression_scores(cached, genes, sel), expression_scores(plain, genes, sel))
    other = sel.copy()
    other[np.flatnonzero(sel)[:5]] = False  # other cells: other sums, not the cached ones
    np.testing.assert_array_equal(expression_scores(cached, ms1, other), expression_scores(plain, ms1, other))
    assert not np.array_equal(expression_scores(cached, ms1, other)[other], expression_scores(cached, ms1, sel)[other])


def test_stratified_subsample_keeps_every_sample_its_share():
    from compute.query._run import stratified_subsample

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 40, 5000)
    for fraction in (0.01, 0.3, 0.77):
        keep = stratified_subsample(codes, fraction, seed=2)
        sizes, kept = np.bincount(codes), np.bincount(codes[keep], minlength=40)
        np.testing.assert_array_equal(kept, np.ceil(fraction * sizes))
    assert stratified_subsample(codes, 1.0).all()
    a, b = stratified_subsample(codes, 0.5, seed=1), stratified_subsample(codes, 0.5, seed=2)
    assert not np.array_equal(a, b)  # random within each sample, seeded


def test_null_on_a_subsample_agrees_with_the_full_null(tiny_atlas, tiny_build):
    truth = {p["name"]: p for p in tiny_build[2]["programs"]}["MS1"]
    top = max(truth["strength"], key=truth["strength"].get)
    base = dict(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), n_null=200)
    full = run_query(tiny_atlas, QueryParams(**base))
    n_sel = full.n_selected
    half = run_query(tiny_atlas, QueryParams(**base, null_max_cells=n_sel // 2))
    assert full.null["disease"].n_cells == n_sel
    assert n_sel // 2 <= half.null["disease"].n_cells <= n_sel // 2 + len(full.samples)
    # the observed ranking does not depend on the null; no draw reaches the planted disease
    pd.testing.assert_frame_equal(full.diseases, half.diseases)
    p_half = half.null["disease"].groups.set_index("group")["p_value_uncorrected"]
    assert p_half[top] == half.null["disease"].p_floor
    med_full = full.null["disease"].groups.set_index("group")["null_median"]
    med_half = half.null["disease"].groups.set_index("group")["null_median"]
    assert np.max(np.abs(med_full - med_half)) < 5.0  # percentage points: the band centre barely moves


def _sparse_product_null(M, draws, weights, quantile, value, sample_codes, group_of_sample, kept_samples, panels=None, chunk=7):
    """The null as it was computed before the compiled kernel (issue 17): each block of draws as
    one scipy sparse product M @ D, cut with np.quantile, hits summed per sample. The reference
    the kernel must equal exactly."""
    M = sp.csc_matrix(M)
    n_cells = M.shape[0]
    n_samples = int(sample_codes.max()) + 1
    per_sample = sp.csr_matrix((np.ones(n_cells), (sample_codes, np.arange(n_cells))), shape=(n_samples, n_cells))
    cells_per_sample = np.asarray(per_sample.sum(axis=1)).ravel()
    w = (np.asarray(weights, dtype=np.float64) / np.sum(weights)).astype(np.float32)
    out = {by: [] for by in group_of_sample}
    for start in range(0, draws.shape[0], chunk):
        block = draws[start : start + chunk]
        n = block.shape[0]
        D = sp.csc_matrix((np.tile(w, n), (block.ravel(), np.repeat(np.arange(n), block.shape[1]))), shape=(M.shape[1], n), dtype=np.float32)
        scores = (M @ D).toarray()
        if panels is not None:
            scores = panels.rescale(scores, D)
        cut = np.quantile(scores, quantile, axis=0) if quantile is not None else np.full(n, value)
        hits = (scores > cut).astype(np.float64)
        pct = 100.0 * (per_sample @ hits) / np.maximum(cells_per_sample, 1)[:, None]
        for by, gos in group_of_sample.items():
            n_groups = int(gos.max()) + 1
            keep = kept_samples & (gos >= 0)
            G = sp.csr_matrix((np.ones(keep.sum()), (gos[keep], np.flatnonzero(keep))), shape=(n_groups, n_samples))
            counts = np.asarray(G.sum(axis=1)).ravel()
            out[by].append(((G @ pct) / np.maximum(counts, 1)[:, None]).T)
    return {by: np.vstack(parts) for by, parts in out.items()}


def test_compiled_null_equals_the_sparse_product_it_replaced_exactly(tiny_atlas):
    from compute.query._run import selection_rows

    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), min_coverage=0)
    result = run_query(tiny_atlas, params)
    M = selection_matrix(tiny_atlas, result.selection, {"cell_type": sorted(params.cell_types)})
    rows = selection_rows(tiny_atlas, result.selection, {"cell_type": sorted(params.cell_types)})
    assert (M != rows).nnz == 0  # the cell-major copy holds the same values
    codes, kept, groups = _sample_layout(result, tiny_atlas.cells)
    panels = selection_panels(tiny_atlas, result.selection)
    rng = np.random.default_rng(11)
    measured_somewhere = np.flatnonzero(panels.measured.any(axis=0))
    draws = np.array([rng.choice(measured_somewhere, 15, replace=False) for _ in range(40)])
    draws[3, 5] = draws[3, 2]  # a gene twice in one draw: the sparse product sums its weights
    w = np.linspace(0.5, 3.0, 15)
    for quantile, value, with_panels in ((0.9, None, True), (0.5, None, False), (None, 0.05, True), (1.0, None, True), (0.0, None, False)):
        p = panels if with_panels else None
        want = _sparse_product_null(M, draws, w, quantile, value, codes, groups, kept, panels=p)
        for matrix, chunk in ((M, None), (rows, 9)):
            got = null_rankings(matrix, draws, w, quantile, value, codes, groups, kept, panels=p, chunk=chunk)
            for by in want:
                np.testing.assert_array_equal(got[by], want[by])  # bit for bit: same sums, same order, same cut


def test_compiled_quantile_is_numpys_linear_quantile():
    from compute.query._null_kernel import _quantile_linear

    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 10, 101, 1000):
        for values in (rng.random(n), np.round(rng.random(n), 1), np.zeros(n), rng.exponential(1, n).astype(np.float32).astype(np.float64)):
            for q in (0.0, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0):
                assert _quantile_linear(values, q, np.empty(n)) == np.quantile(values, q), (n, q)


def test_matched_draws_keep_their_seed_and_never_repeat_a_gene_where_pools_allow():
    rng = np.random.default_rng(2)
    mean, det = rng.gamma(1, 1, 1500), rng.uniform(0.05, 0.9, 1500)
    bins = gene_bins(mean, det)
    signature = np.arange(0, 120)  # about 3 signature genes per bin of ~35 candidates: draws collide and are redrawn
    a = matched_draws(signature, bins, 500, seed=3)
    b = matched_draws(signature, bins, 500, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, matched_draws(signature, bins, 500, seed=4))
    assert all(len(set(row)) == len(row) for row in a)


def test_on_a_small_panel_each_genes_pool_is_its_whole_bin_among_the_panels_genes():
    """A selection whose studies share few genes (a small panel): bins cut over all genes and
    thinned to the shared ones held 1-2 genes and borrowed their neighbours', so two genes of one
    bin had different pools and the signature was not one of its own random sets (the null called
    4.1-4.6% at 0.05, measured on the evidence corpus). Now the bins are cut among the shared genes:
    every gene in a pool has that same pool, the property that makes the signature exchangeable
    with its draws."""
    rng = np.random.default_rng(5)
    n = 1500
    mean, det = rng.gamma(1, 1, n), rng.uniform(0.05, 0.9, n)
    shared = np.zeros(n, dtype=bool)
    shared[rng.choice(n, 157, replace=False)] = True
    signature = rng.choice(np.flatnonzero(shared), 20, replace=False)
    allowed = [shared] * signature.size
    draws = matched_draws(signature, gene_bins(mean, det), 400, seed=1, allowed=allowed, stats=(mean, det))
    own = gene_bins(mean, det, among=shared)
    assert np.isin(draws, np.flatnonzero(shared)).all()
    assert (own[draws] == own[signature][None, :]).mean() > 0.99  # drawn from the gene's own bin (a few redraws borrow)
    sizes = np.bincount(own[own >= 0])
    assert sizes[sizes > 0].min() >= 10  # coarser bins, none of a handful of genes
    # without the panel-aware bins: pools differ between genes of one bin (the fault)
    old = matched_draws(signature, gene_bins(mean, det), 400, seed=1, allowed=allowed)
    assert (own[old] == own[signature][None, :]).mean() < 0.9


def test_ranking_first_then_evidence_equals_the_whole_query(tiny_atlas):
    from compute.query import add_evidence, run_ranking

    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), n_null=100, evidence=True, seed=5)
    whole = run_query(tiny_atlas, params)
    first = run_ranking(tiny_atlas, params)
    assert first.null == {} and first.evidence is None  # the ranking alone, whatever params ask
    pd.testing.assert_frame_equal(first.diseases, whole.diseases)
    np.testing.assert_array_equal(first.scores, whole.scores)
    done = add_evidence(tiny_atlas, first)
    assert done is first
    for by in ("disease", "study"):
        pd.testing.assert_frame_equal(done.null[by].groups, whole.null[by].groups)
    pd.testing.assert_frame_equal(done.evidence.thresholds, whole.evidence.thresholds)


def test_subsampled_null_p_values_match_the_full_null(tiny_atlas):
    """The documented subsample (QueryParams.null_max_cells, a per-sample stratified share of the
    cells): p-values within 0.1 of the full null's, and the same calls at 0.05."""
    params = dict(genes=tuple((g, None) for g in ms1_signature()), cell_types=_monocytes(tiny_atlas), n_null=400, seed=1)
    full = run_query(tiny_atlas, QueryParams(**params))
    sub = run_query(tiny_atlas, QueryParams(**params, null_max_cells=int(full.n_selected * 0.6)))
    assert sub.null["disease"].n_cells < full.n_selected
    p_full = full.null["disease"].groups.set_index("group")["p_value"]
    p_sub = sub.null["disease"].groups.set_index("group")["p_value"].reindex(p_full.index)
    assert np.max(np.abs(p_full - p_sub)) <= 0.1
    # the same calls at 0.05, away from the line: a Monte-Carlo p within 0.03 of it may fall either side
    clear = ((p_full - 0.05).abs() > 0.03) & ((p_sub - 0.05).abs() > 0.03)
    assert ((p_full <= 0.05) == (p_sub <= 0.05))[clear].all()


@pytest.mark.parametrize("seed", [3])
def test_score_genes_matrix_is_scanpys_score_genes_on_real_cells(seed):
    """The vectorised score_genes gives scanpy's numbers on real PBMC cells (scanpy's
    pbmc68k_reduced, log-normalised .raw): several gene sets, cell subsets, both matrix kinds."""
    import scanpy as sc
    import scipy.sparse as sp

    from compute.query._expression import score_genes_matrix

    pbmc = sc.datasets.pbmc68k_reduced()
    raw = pbmc.raw.to_adata()
    names = list(raw.var_names)
    rng = np.random.default_rng(seed)
    sets = [["CD14", "LYZ", "S100A8", "S100A9", "FCN1", "VCAN"], ["NKG7", "GNLY", "PRF1"],
            list(rng.choice(names, 40, replace=False)), list(rng.choice(names, 300, replace=False))]
    subsets = [np.ones(raw.n_obs, bool), (pbmc.obs["bulk_labels"] == "CD14+ Monocyte").to_numpy(), rng.random(raw.n_obs) < 0.3]
    checked = 0
    # 765 genes: bins of 32, so a control size of 10 draws genes at random in every bin (50: whole bins)
    for genes, ctrl_size in itertools.product(sets, (10, 50)):
        genes = [g for g in genes if g in set(names)]
        for rows in subsets:
            adata = raw[rows].copy()
            sc.tl.score_genes(adata, genes, ctrl_size=ctrl_size, n_bins=25, random_state=seed, use_raw=False)
            cols = [names.index(g) for g in genes]
            for X in (sp.csr_matrix(adata.X), sp.csc_matrix(adata.X), adata.X.toarray()):
                ours = score_genes_matrix(X, cols, ctrl_size=ctrl_size, n_bins=25, seed=seed)
                # scanpy sums float32 rows in float32 (scipy's sum keeps the matrix's dtype until its
                # last step), this sums in float64: 4e-7 apart at most here; a single other control
                # gene moves scores by about 1e-2
                np.testing.assert_allclose(ours, adata.obs["score"].to_numpy(), rtol=0, atol=2e-6)
                checked += 1
    assert checked == 72


def test_null_threads_give_the_same_numbers_as_one_thread():
    """Blocks of draws computed side by side in threads: every draw's group means are those of
    the one-thread run, bit for bit (each draw is computed whole inside one block)."""
    from compute.query._null import null_threads

    rng = np.random.default_rng(4)
    M = sp.random(3000, 200, density=0.1, format="csr", random_state=5, dtype=np.float32)
    draws = rng.integers(0, 200, size=(300, 12))
    codes = rng.integers(0, 40, size=3000)
    groups = {"disease": rng.integers(-1, 5, size=40)}
    kept = rng.random(40) < 0.9
    seen = []
    one = null_rankings(M, draws, np.ones(12), 0.9, None, codes, groups, kept, threads=1)
    two = null_rankings(M, draws, np.ones(12), 0.9, None, codes, groups, kept, threads=2, progress=seen.append)
    np.testing.assert_array_equal(one["disease"], two["disease"])
    assert seen == [150 / 300, 1.0]  # two blocks of 150 draws, progress after each
    assert null_threads({"SIGATLAS_QUERY_THREADS": "3"}) == 3 and 1 <= null_threads({}) <= 4
    with pytest.raises(ValueError, match="SIGATLAS_QUERY_THREADS"):
        null_threads({"SIGATLAS_QUERY_THREADS": "many"})


def test_matched_draws_refuse_a_signature_that_leaves_too_few_genes():
    """Issue 33, failure 3: a signature of every gene (or most of them) left no gene to draw from
    (``ValueError: high <= 0`` in the draw, a 500 from the API); now a QueryError says how many
    genes are left and what to do. A signature of half the genes or fewer is drawn for."""
    from compute.errors import QueryError

    rng = np.random.default_rng(0)
    bins = gene_bins(rng.gamma(1, 1, 60), rng.uniform(0.05, 0.9, 60))
    for k, left in ((60, 0), (59, 1), (31, 29)):
        with pytest.raises(QueryError, match=f"leaving {left} to draw from") as err:
            matched_draws(np.arange(k), bins, 10, seed=1)
        assert "at most 30 genes" in str(err.value) and "null_draws to 0" in str(err.value)
    draws = matched_draws(np.arange(30), bins, 50, seed=1)  # as many left as needed: drawn from all 60
    assert draws.shape == (50, 30) and draws.min() >= 0 and draws.max() < 60 and (draws >= 30).mean() > 0.3
    assert np.mean([len(set(row)) == 30 for row in draws]) > 0.8  # tiny bins: a few repeats survive the redraws


def test_a_query_of_most_of_the_atlas_genes_with_a_null_is_a_400_not_a_500(tiny_build):
    from dashboard.app import create_app

    client = create_app(tiny_build[1]).server.test_client()
    genes = client.get("/api/v1/atlas").get_json()["genes"]
    for n in (len(genes), len(genes) - 3):
        resp = client.post("/api/v1/query", json={"genes": " ".join(genes[:n]), "null_draws": 100})
        assert resp.status_code == 400, (n, resp.status_code, resp.get_json())
        error = resp.get_json()["error"]
        assert f"leaving {len(genes) - n:,} to draw from" in error and "null_draws to 0" in error, error
    # the same signature without a null is answered
    assert client.post("/api/v1/query", json={"genes": " ".join(genes), "null_draws": 0}).status_code == 200


def test_the_dashboard_query_job_says_the_signature_leaves_too_few_genes(tiny_build):
    """The same refusal in the page: the query job answers with the message (shown above the tabs
    with the gene decisions), not an exception."""
    from dashboard.callbacks import query
    from dashboard.callbacks.wiring import QUERY_CONTROLS
    from dashboard.data import DashboardData
    from dashboard.state import DEFAULTS

    data = DashboardData(tiny_build[1])
    genes = " ".join(data.atlas.genes)
    settings = {key: DEFAULTS[key] for key in QUERY_CONTROLS} | {"genes": genes, "null_draws": 100}
    out = query.run_query(data, lambda _: None, run_clicks=1, request=None, **settings)
    error = out["query_error"]["error"]
    assert "leaving 0 to draw from" in error and "null_draws to 0" in error and out["result_key"] is None


def test_a_thread_limit_holds_in_its_own_thread_and_block_only():
    import threading

    from compute.query import null_thread_limit
    from compute.query._null import null_threads

    env = {"SIGATLAS_QUERY_THREADS": "3"}
    seen = []
    with null_thread_limit(1):
        assert null_threads(env) == 1
        worker = threading.Thread(target=lambda: seen.append(null_threads(env)))  # another thread: its own limit (none)
        worker.start()
        worker.join()
        with null_thread_limit(5):
            assert null_threads(env) == 3  # a limit never raises the count
        assert null_threads(env) == 1
    assert seen == [3] and null_threads(env) == 3

"""The gene-major store and Atlas.score against a dense numpy reference, filters and cache included."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.atlas import Atlas, GeneMajorStore, QueryError, StudyArrays, write_atlas, write_gene_major

GENES = [f"G{i}" for i in range(25)]
CELL_TYPES, DISEASES, TISSUES = ["T", "mono", "B"], ["healthy", "sepsis"], ["blood", "lung"]


def _study(sid: str, n: int, seed: int) -> StudyArrays:
    rng = np.random.default_rng(seed)
    A = sp.random(n, len(GENES), density=0.25, random_state=seed, format="csr", dtype=np.float32)
    A.data = rng.uniform(0, 50, A.nnz).astype(np.float32)
    E = A.copy()
    E.data = np.log1p(E.data).astype(np.float32)
    cells = pd.DataFrame({
        "cell_id": [f"{sid}_{i}" for i in range(n)], "study": sid, "sample": rng.choice(["a", "b", "c"], n),
        "donor": "d", "cell_type": rng.choice(CELL_TYPES, n), "disease": rng.choice(DISEASES, n),
        "tissue": rng.choice(TISSUES, n), "simulated": True,
    })
    return StudyArrays(meta={"id": sid, "title": sid, "simulated": True}, cells=cells, attributions=A, expression=E,
                       embedding=np.zeros((n, 4), np.float32), umap=np.zeros((n, 2), np.float32))


@pytest.fixture(scope="module")
def store_atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-atlas")
    (root / "model").mkdir()
    studies = [_study("S1", 40, 1), _study("S2", 25, 2), _study("S3", 60, 3)]
    write_atlas(root / "atlas", name="store", gene_order=GENES, studies=studies, model_dir=root / "model",
                model_card={}, build={}, method={})
    dense = np.vstack([s.attributions.toarray() for s in studies]).astype(np.float64)
    cells = pd.concat([s.cells for s in studies], ignore_index=True)
    return Atlas.open(root / "atlas"), dense, cells


def reference_score(dense, cells, tokens, weights, aggregate, filters):
    """Straight from method.md: first occurrence of each known gene, its weight; zeros count."""
    idx, w = [], []
    for tok, wt in zip(tokens, weights, strict=True):
        if tok in GENES and GENES.index(tok) not in idx:
            idx.append(GENES.index(tok))
            w.append(wt)
    w = np.asarray(w, dtype=np.float64)
    vals = dense[:, idx] * w
    if aggregate == "mean":
        out = vals.sum(axis=1) / w.sum()
    elif aggregate == "sum":
        out = vals.sum(axis=1)
    else:
        out = np.maximum(vals.max(axis=1), 0.0)
    mask = np.ones(len(cells), dtype=bool)
    for column, values in filters.items():
        if values:
            mask &= cells[column].isin(values).to_numpy()
    if filters and any(filters.values()):
        out = np.where(mask, out, np.nan)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    tokens=st.lists(st.sampled_from(GENES + ["NOPE1", "ZZZ9"]), min_size=1, max_size=30),
    weighted=st.booleans(),
    data=st.data(),
    aggregate=st.sampled_from(["mean", "sum", "max"]),
    cell_types=st.lists(st.sampled_from(CELL_TYPES), max_size=2, unique=True),
    diseases=st.lists(st.sampled_from(DISEASES), max_size=1, unique=True),
    tissues=st.lists(st.sampled_from(TISSUES), max_size=1, unique=True),
    studies=st.lists(st.sampled_from(["S1", "S2", "S3"]), max_size=2, unique=True),
)
def test_score_equals_dense_reference(store_atlas, tokens, weighted, data, aggregate, cell_types, diseases, tissues, studies):
    atlas, dense, cells = store_atlas
    weights = data.draw(st.lists(st.floats(0.1, 5.0), min_size=len(tokens), max_size=len(tokens))) if weighted else [1.0] * len(tokens)
    filters = {"cell_type": cell_types, "disease": diseases, "tissue": tissues, "study": studies}
    if not any(t in GENES for t in tokens):
        with pytest.raises(QueryError, match="none of the"):
            atlas.score(tokens, weights if weighted else None)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = atlas.score(tokens, weights if weighted else None, aggregate,
                          cell_types=cell_types, diseases=diseases, tissues=tissues, studies=studies)
        again = atlas.score(tokens, weights if weighted else None, aggregate,
                            cell_types=cell_types, diseases=diseases, tissues=tissues, studies=studies)
    want = reference_score(dense, cells, tokens, weights, aggregate, filters)
    np.testing.assert_allclose(got, want, rtol=5e-6, atol=1e-9, equal_nan=True)  # float32 accumulation
    np.testing.assert_array_equal(got, again)  # the second answer comes from the cache


def test_order_and_duplicates_do_not_change_the_score(store_atlas):
    atlas, _, _ = store_atlas
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = atlas.score(["G1", "G5", "G7"])
        b = atlas.score(["G7", "G1", "G5", "G1", "g5"])
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_cache_is_per_atlas_content_and_can_be_disabled(store_atlas, tmp_path):
    atlas, _, _ = store_atlas
    cold = Atlas.open(atlas.path, cache=tmp_path / "c")
    first = cold.score(["G2", "G3"], cell_types=["T"])
    assert any((tmp_path / "c").iterdir())
    off = Atlas.open(atlas.path, cache=False)
    np.testing.assert_array_equal(first, off.score(["G2", "G3"], cell_types=["T"]))
    assert off.cache.get(off.cache.key("anything")) is None


def test_filters_name_unknown_values_and_bad_aggregate(store_atlas):
    atlas, _, _ = store_atlas
    with pytest.raises(QueryError, match="no cell_type called 'NK'"):
        atlas.score(["G1"], cell_types=["NK"])
    with pytest.raises(QueryError, match="aggregate must be one of mean, sum, max"):
        atlas.score(["G1"], aggregate="median")
    with pytest.raises(QueryError, match="finite and sum to a positive number"):
        atlas.score(["G1", "G2"], [1.0, -1.0])


def test_expression_store_round_trip(store_atlas):
    atlas, dense, _ = store_atlas
    assert atlas.has_expression and "expression" in atlas.meta["elements"]
    expr = atlas.gene_values(GENES, store="expr")
    np.testing.assert_allclose(expr, np.log1p(dense), rtol=1e-6)


def test_store_write_read_and_errors(tmp_path):
    M = sp.random(50, 8, density=0.3, random_state=0, format="csr", dtype=np.float32)
    nnz = write_gene_major(tmp_path, "x", M)
    st_ = GeneMajorStore(tmp_path, "x", 8, 50)
    assert nnz == M.nnz
    for g in range(8):
        idx, val = st_.column(g)
        np.testing.assert_array_equal(M.toarray()[idx, g], val)
        assert np.all(np.diff(idx) > 0)
    sums, counts = st_.gene_totals()
    np.testing.assert_allclose(sums, M.toarray().sum(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(counts, (M.toarray() != 0).sum(axis=0))
    with pytest.raises(Exception, match="does not match the gene order"):
        GeneMajorStore(tmp_path, "x", 9, 50)


def test_score_equals_the_gathered_matrix_vector_product_it_replaced(store_atlas):
    """Atlas.score sums straight from the mapped store (a compiled loop, issue 17): the same float32
    operations in the same order as the scipy product over the gathered columns it replaced."""
    atlas = store_atlas[0]
    rng = np.random.default_rng(3)
    for _ in range(10):
        genes = rng.choice(len(GENES), rng.integers(1, 12), replace=False)
        w = rng.uniform(0.1, 3.0, genes.size)
        for aggregate in ("mean", "sum"):
            got = atlas.score([GENES[g] for g in genes], w, aggregate, scale="raw")
            for s in atlas.studies:
                store = atlas.store(s.id)
                want = store.gather(genes) @ (w / w.sum() if aggregate == "mean" else w).astype(np.float32)
                np.testing.assert_array_equal(got[s.offset : s.offset + s.n_cells], want.astype(np.float64))


def test_stores_stay_open_across_queries(store_atlas, monkeypatch):
    """Only the first query maps the store files: later ones, over any genes and filters, open
    none again (a fresh atlas without the result cache, so every query reads the stores)."""
    atlas = Atlas.open(store_atlas[0].path, cache=False)
    opened = []
    real_load = np.load

    def counting_load(*args, **kwargs):
        opened.append(str(args[0]))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    first = atlas.score(GENES[:3])
    assert sum(f.rsplit("/", 1)[-1].startswith("attr.") for f in opened) == 3 * len(atlas.studies)  # indptr, indices, data of every study
    opened.clear()
    rng = np.random.default_rng(0)
    for i in range(20):
        genes = [GENES[g] for g in rng.choice(len(GENES), 5, replace=False)]
        atlas.score(genes, cell_types=["T", "mono"] if i % 2 else None)
    np.testing.assert_array_equal(atlas.score(GENES[:3]), first)
    assert opened == []


def test_study_cell_counts_and_selected_studies(store_atlas):
    atlas, _, cells = store_atlas
    mask = (cells["cell_type"] == "T").to_numpy()
    counts = atlas.study_cell_counts(mask)
    assert counts.to_dict() == cells[mask].groupby("study").size().reindex([s.id for s in atlas.studies], fill_value=0).to_dict()
    np.testing.assert_array_equal(atlas.study_bounds, np.cumsum([0] + [s.n_cells for s in atlas.studies]))


def test_the_consolidated_store_scores_as_the_studies_do_and_is_made_once(store_atlas, tmp_path):
    """Every study's attributions as one store (issue 17): scores bit-identical to the per-study
    sums, written once to the cache folder of this atlas version and mapped from there after."""
    path = store_atlas[0].path
    first = Atlas.open(path, cache=tmp_path / "cache")
    whole = first.consolidated_store()
    assert whole is not None and whole.n_cells == first.n_cells and (tmp_path / "cache" / "consolidated").is_dir()
    rng = np.random.default_rng(8)
    for _ in range(10):
        genes = rng.choice(len(GENES), rng.integers(1, 15), replace=False)
        w = rng.uniform(0.1, 3.0, genes.size)
        for aggregate in ("mean", "sum"):
            res = first.resolve([GENES[g] for g in genes], w)
            per_study = np.zeros(first.n_cells)
            for s in first.studies:
                per_study[s.offset : s.offset + s.n_cells] = first.store(s.id).aggregate(genes, w, aggregate) * first.panel_share(s.id)
            mask = rng.random(first.n_cells) < 0.5
            np.testing.assert_array_equal(first._score_consolidated(whole, np.asarray(res.indices), np.asarray(res.weights), aggregate, None,
                                                                    "panel"), per_study)
            got = first._score_consolidated(whole, np.asarray(res.indices), np.asarray(res.weights), aggregate, mask, "raw")
            assert np.isnan(got[~mask]).all()
    written = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "cache" / "consolidated").iterdir()}
    again = Atlas.open(path, cache=tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(again.consolidated_store().data), np.asarray(whole.data))
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "cache" / "consolidated").iterdir()} == written  # mapped, not made again

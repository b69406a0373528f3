"""The build's per-study work in row blocks (issue 22): what a block-at-a-time path computes is
what the whole-study path computed, and a block is all it holds."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from compute.atlas import GeneMajorStore, StudyArrays, write_gene_major, write_study, write_study_blocks
from compute.atlas._store import store_files
from compute.build import _tasks as tasks
from compute.errors import IngestError
from compute.model import Encoder, PieceWriter, piece_blocks, piece_ready, save_encoder, write_piece


def _matrix(n_cells=257, n_genes=60, density=0.2, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n_cells, n_genes, density=density, format="csr", random_state=seed, dtype=np.float32)
    X.data = rng.gamma(2.0, 1.0, X.nnz).astype(np.float32)
    X.data[X.indices == 7] = 0  # an empty gene
    X.eliminate_zeros()
    return X


# -- gene-major stores read a block of genes at a time -------------------------------------------
@pytest.mark.parametrize("block_values", [1, 37, 500, 10**9])
def test_store_rows_and_totals_in_blocks_equal_the_whole_reads(tmp_path, block_values):
    X = _matrix()
    write_gene_major(tmp_path, "attr", X)
    store = GeneMajorStore(tmp_path, "attr", X.shape[1], X.shape[0])
    rng = np.random.default_rng(1)
    for cells in (rng.random(X.shape[0]) < 0.3, np.ones(X.shape[0], bool), np.zeros(X.shape[0], bool)):
        whole = store.rows(cells)
        blocked = store.rows_in_blocks(cells, block_values=block_values)
        assert blocked.shape == whole.shape and (blocked != whole).nnz == 0
        genes = np.sort(rng.choice(X.shape[1], 13, replace=False))
        assert (store.rows_in_blocks(cells, genes, block_values=block_values) != whole[:, genes]).nnz == 0
    sums, counts = store.gene_totals()
    b_sums, b_counts = store.gene_totals_in_blocks(block_values=block_values)
    np.testing.assert_array_equal(b_counts, counts)
    np.testing.assert_array_equal(b_sums, sums)


def test_store_block_reads_do_not_go_through_the_memory_map(tmp_path):
    """Read with positioned reads of the files: a mapped page the process touches counts in its
    resident memory, so reading a whole store through the map shows the store's size."""
    X = _matrix()
    write_gene_major(tmp_path, "attr", X)
    store = GeneMajorStore(tmp_path, "attr", X.shape[1], X.shape[0])
    expected = store.rows(np.ones(X.shape[0], bool))
    sums = store.gene_totals()[0]
    store.indices = store.data = None  # any read through the map would fail
    assert (store.rows_in_blocks(np.ones(X.shape[0], bool), block_values=50) != expected).nnz == 0
    np.testing.assert_array_equal(store.gene_totals_in_blocks(block_values=50)[0], sums)


def test_a_truncated_store_file_is_named(tmp_path):
    X = _matrix()
    write_gene_major(tmp_path, "attr", X)
    store = GeneMajorStore(tmp_path, "attr", X.shape[1], X.shape[0])
    data = tmp_path / store_files("attr")[2]
    data.write_bytes(data.read_bytes()[:-40])
    with pytest.raises(Exception, match=r"attr\.data\.npy: shorter than"):
        store.gene_totals_in_blocks()


# -- pieces written and read a block of rows at a time ----------------------------------------------
def test_a_piece_written_in_blocks_is_the_piece_written_whole(tmp_path):
    X = _matrix()
    write_piece(tmp_path / "whole", X)
    with PieceWriter(tmp_path / "blocks", X.shape[1]) as w:
        for start in range(0, X.shape[0], 50):
            w.append(X[start : start + 50])
    for name in ("data", "indices", "indptr"):
        a, b = np.load(tmp_path / "whole" / f"{name}.npy"), np.load(tmp_path / "blocks" / f"{name}.npy")
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(np.load(tmp_path / "whole" / "indptr.npy"), X.indptr)
    starts, blocks = zip(*piece_blocks(tmp_path / "blocks", 64), strict=True)
    assert list(starts) == list(range(0, X.shape[0], 64)) and max(b.shape[0] for b in blocks) == 64
    assert (sp.vstack(blocks) != X).nnz == 0


def test_a_piece_that_fails_midway_leaves_no_finished_piece(tmp_path):
    X = _matrix()
    with pytest.raises(RuntimeError), PieceWriter(tmp_path / "p", X.shape[1]) as w:
        w.append(X[:10])
        raise RuntimeError("killed")
    assert not piece_ready(tmp_path / "p") and not list((tmp_path / "p").iterdir())
    with pytest.raises(ValueError, match="a block of 3 genes"), PieceWriter(tmp_path / "q", X.shape[1]) as w:
        w.append(sp.csr_matrix((2, 3), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="not a finished piece"):
        next(piece_blocks(tmp_path / "q", 10))


# -- a study written from blocks ------------------------------------------------------------------
def _cells(n):
    return pd.DataFrame({"cell_id": [f"c{i}" for i in range(n)], "sample": [f"s{i % 3}" for i in range(n)],
                         "disease": ["normal"] * n, "cell_type": [["T cell", "B cell"][i % 2] for i in range(n)]})


def test_a_study_written_from_blocks_has_the_files_of_one_written_whole(tmp_path):
    A, E = _matrix(seed=1), _matrix(seed=2)
    A = A.multiply(1.0 / np.maximum(A.sum(axis=1), 1e-9)).tocsr().astype(np.float32)  # any values do
    emb = np.random.default_rng(3).normal(size=(A.shape[0], 8)).astype(np.float32)
    umap = np.random.default_rng(4).normal(size=(A.shape[0], 2)).astype(np.float32)
    measured = np.arange(0, A.shape[1], 2)
    meta = {"id": "s1", "title": "t", "simulated": True}
    whole = write_study(tmp_path / "whole", StudyArrays(meta=meta, cells=_cells(A.shape[0]), attributions=A, expression=E,
                                                        embedding=emb, umap=umap, measured=measured))

    def blocks(M, size=40):
        return lambda: (M[i : i + size] for i in range(0, M.shape[0], size))

    blocked = write_study_blocks(tmp_path / "blocks", meta=meta, cells=_cells(A.shape[0]), attributions=blocks(A), expression=blocks(E),
                                 n_genes=A.shape[1], embedding=emb, umap=umap, measured=measured)
    assert blocked == whole
    d_whole, d_blocks = tmp_path / "whole" / "studies" / "s1", tmp_path / "blocks" / "studies" / "s1"
    names = sorted(p.name for p in d_whole.iterdir())
    assert names == sorted(p.name for p in d_blocks.iterdir())
    for name in names:
        if name == "gene_means.npy":  # block sums added in float64; scipy sums a whole float32 matrix to float32 precision
            np.testing.assert_allclose(np.load(d_blocks / name), np.load(d_whole / name), rtol=1e-6)
        else:
            assert (d_blocks / name).read_bytes() == (d_whole / name).read_bytes(), name
    with pytest.raises(ValueError, match="rows of attr for"):
        write_study_blocks(tmp_path / "short", meta=meta, cells=_cells(A.shape[0]), attributions=blocks(A[:100]), expression=None,
                           n_genes=A.shape[1], embedding=None, umap=None, measured=None)


# -- the per-study tasks ------------------------------------------------------------------------
def _ingested(tmp_path, n_cells=90, seed=0):
    genes = [f"G{i}" for i in range(40)]
    X = _matrix(n_cells, len(genes), 0.3, seed)
    X.data = np.log1p(X.data)
    a = ad.AnnData(X=X, obs=_cells(n_cells).set_index("cell_id"), var=pd.DataFrame(index=genes))
    path = tmp_path / "study.h5ad"
    a.write_h5ad(path)
    return str(path), genes


def _aligned_study(ingest_file: str, gene_order: list[str], share: float) -> sp.csr_matrix:
    """The whole study aligned at once (what the build did before it worked in blocks)."""
    from compute.ingest import align_to_genes

    a = ad.read_h5ad(ingest_file)
    X, _ = align_to_genes(a.X, list(a.var_names), gene_order)
    X.data = np.log1p(np.expm1(X.data.astype(np.float64)) * share).astype(np.float32)
    return X


def test_aligned_blocks_are_the_aligned_study(tmp_path):
    path, genes = _ingested(tmp_path)
    order = sorted(genes[5:] + ["NEW1", "NEW2"])
    whole = _aligned_study(path, order, share=0.7)
    parts = list(tasks.aligned_blocks(path, order, 10, "s1", share=0.7, rows_per_block=16))
    assert [s for s, _ in parts] == list(range(0, 90, 16)) and max(X.shape[0] for _, X in parts) == 16
    assert (sp.vstack([X for _, X in parts]) != whole).nnz == 0
    with pytest.raises(IngestError, match="study 's1': only 35 of its 40 genes"):
        next(tasks.aligned_blocks(path, order, 36, "s1"))


def test_cells_task_holds_one_block_and_matches_the_whole_study(tmp_path, monkeypatch):
    import torch

    from compute.attribution import attribute
    from compute.embedding import embed

    path, genes = _ingested(tmp_path, n_cells=150)
    torch.manual_seed(0)
    encoder = Encoder(len(genes), hidden_sizes=(16, 8), latent_dim=4)
    encoder.gene_order = genes
    encoder.eval()
    save_encoder(encoder, tmp_path / "model")
    piece = tmp_path / "piece"
    tasks.train_piece_task("s1", path, genes, 10, 1.0, str(piece), False)
    X = sp.vstack([b for _, b in piece_blocks(piece, 1000)]).tocsr()
    seen = []
    real = tasks.ROWS_PER_BLOCK
    monkeypatch.setattr(tasks, "ROWS_PER_BLOCK", 32)
    import compute.attribution as attribution_module

    def spy(enc, block, **kw):
        seen.append(block.shape[0])
        return attribute(enc, block, **kw)

    monkeypatch.setattr(attribution_module, "attribute", spy)
    settings = {"method": "ig", "n_steps": 8, "batch_size": 16}
    out = tasks.cells_task("s1", str(piece), str(tmp_path / "model"), "k-test-blocks", settings, str(tmp_path / "attr"),
                           str(tmp_path / "embed.npy"), False)
    assert out["computed"] and seen and max(seen) == 32 and sum(seen) == 150 and real >= 1024
    A = sp.vstack([b for _, b in piece_blocks(tmp_path / "attr", 1000)])
    whole = attribute(encoder, X, method="ig", n_steps=8, batch_size=16)
    np.testing.assert_allclose(A.toarray(), whole.toarray(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "embed.npy"), embed(encoder, X), rtol=1e-5, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


# -- ingest in blocks: raw counts in an h5ad ---------------------------------------------------------
def _whole_and_blocked(tmp_path, adata, rows, min_genes=200, **spec_kw):
    from compute.ingest import ingest_h5ad_in_blocks, qc_and_normalise, read_study
    from compute.manifest import IngestSpec, SourceSpec, StudySpec
    from tests.realdata import write

    src = write(adata, tmp_path / "source.h5ad")
    spec = StudySpec(id="S1", title="t", source=SourceSpec(kind="h5ad", path=src, **spec_kw.pop("source", {})), **spec_kw)
    ingest = IngestSpec(min_genes=min_genes)
    target = tmp_path / "blocked.h5ad"
    done = ingest_h5ad_in_blocks(spec, ingest, target, rows_per_block=rows)
    if not done:
        return None, None
    whole = qc_and_normalise(read_study(spec), spec, ingest)
    return whole, ad.read_h5ad(target)


@pytest.mark.parametrize("rows", [7, 100, 10_000])
def test_ingest_in_blocks_writes_what_the_whole_study_path_makes_real_counts(tmp_path, rows):
    """celltypist's real counts (559 cells x 32,786 genes, symbols that harmonise onto one another,
    cells QC drops): the same cells, genes, values, report and table, block size whatever."""
    from compute.ingest import ingest_report
    from tests.realdata import celltypist_counts

    a = celltypist_counts(300)
    a.obs["cell_type"] = np.where(np.arange(a.n_obs) % 3 == 0, "T cell", "monocyte")
    median_genes = int(np.median(np.diff(sp.csr_matrix(a.X).indptr)))
    whole, blocked = _whole_and_blocked(tmp_path, a, rows, min_genes=median_genes)
    assert blocked is not None
    assert whole.n_obs < a.n_obs  # QC dropped some: the blocks must keep the same ones
    assert list(blocked.var_names) == list(whole.var_names) and list(blocked.obs_names) == list(whole.obs_names)
    assert blocked.X.dtype == np.float32 and (sp.csr_matrix(blocked.X) != sp.csr_matrix(whole.X)).nnz == 0
    assert ingest_report(blocked) == ingest_report(whole)
    assert blocked.uns["log1p"] == {"base": None} and "log1p" in whole.uns
    pd.testing.assert_frame_equal(blocked.obs.astype(str), whole.obs.astype(str))
    np.testing.assert_array_equal(blocked.obs["n_counts"].to_numpy(), whole.obs["n_counts"].to_numpy())


def test_ingest_in_blocks_leaves_other_values_to_the_whole_study_path(tmp_path):
    from tests.conftest import make_counts_adata

    a = make_counts_adata(n_cells=40, n_genes=30)
    tpm = a.copy()
    tpm.X = tpm.X * 1.5  # not integers: the whole-study path checks .raw and explains
    assert _whole_and_blocked(tmp_path, tpm, 16) == (None, None)
    assert not (tmp_path / "blocked.h5ad").exists()
    dense = a.copy()
    dense.X = dense.X.toarray()
    assert _whole_and_blocked(tmp_path, dense, 16) == (None, None)
    assert _whole_and_blocked(tmp_path, a, 16, source={"values": "tpm"}) == (None, None)

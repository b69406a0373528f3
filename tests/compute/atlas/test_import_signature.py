"""import-signature: SIGnature's own writer makes the input, SIGnature's own reader is the reference."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from SIGnature import SIGnature

from compute.__main__ import main as compute_main
from compute.atlas import Atlas, GeneMajorStore, SignatureImportError, import_signature, write_gene_major
from compute.atlas._store import GeneMajorWriter
from compute.query import QueryParams, run_query

N_GENES = 300
FOLDERS = {"CD14+ monocyte": 260, "T cell": 140}


def _make_signature_layout(root, seed=0, *, scale=True):
    """Two cell-type folders written by sc-signature's create_tiledb; studies span both folders."""
    rng = np.random.default_rng(seed)
    genes = [f"GENE{i}" for i in range(N_GENES)]
    (root / "gene_order.tsv").write_text("\n".join(genes) + "\n")
    matrices = {}
    for ct, n in FOLDERS.items():
        d = root / "sig" / ct
        d.mkdir(parents=True)
        m = sp.random(n, N_GENES, density=0.08, random_state=rng, format="csr", dtype=np.float32)
        m.data = (m.data + 0.01).astype(np.float32)
        if scale:
            m = sp.csr_matrix(sp.diags(1000.0 / np.asarray(m.sum(axis=1)).ravel()) @ m, dtype=np.float32)
        sp.save_npz(d / "attr.npz", m)
        SIGnature(gene_order=genes, attribution_tiledb_uri=str(d / "attributions")).create_tiledb(npz_path=str(d / "attr.npz"))
        (d / "attr.npz").unlink()
        meta = pd.DataFrame(
            {
                "study": rng.choice(["GSE1", "GSE2", "study 3/x"], n),
                "sample": [f"smp{i % 9}" for i in range(n)],
                "prediction": ct,
                "prediction_nn_dist": rng.random(n),
                "disease": rng.choice(["healthy", "sepsis", "Kawasaki disease"], n),
                "tissue": "blood",
            },
            index=[f"{ct}-cell{i}" for i in range(n)],
        )
        meta.to_csv(d / "cell_metadata.csv.gz")
        matrices[ct] = m
    return genes, matrices


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("signature")
    genes, matrices = _make_signature_layout(root)
    atlas_path = import_signature(root / "sig", root / "gene_order.tsv", root / "atlas", block_cells=97, log=lambda m: None)
    return root, genes, matrices, Atlas.open(atlas_path, cache=False)


def _by_folder(atlas: Atlas, values: np.ndarray, folder: str) -> np.ndarray:
    """``values`` (aligned with atlas.cells) back in the array-row order of one folder."""
    cells = atlas.cells
    m = (cells["source_folder"] == folder).to_numpy()
    out = np.full(FOLDERS[folder], np.nan)
    out[cells["source_row"].to_numpy()[m]] = values[m]
    return out


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_scores_equal_signature_query_attributions(imported, data):
    root, genes, _, atlas = imported
    k = data.draw(st.integers(1, 120), label="genes")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    rng = np.random.default_rng(seed)
    gene_list = list(rng.choice(genes, k, replace=False))
    aggregate = data.draw(st.sampled_from(["mean", "sum"]), label="aggregate")
    weights = rng.uniform(0.1, 3.0, k).tolist() if data.draw(st.booleans(), label="weighted") else None
    ours = atlas.score(gene_list, weights, aggregate)
    for folder in FOLDERS:
        sig = SIGnature(gene_order=genes, attribution_tiledb_uri=str(root / "sig" / folder / "attributions"))
        ref = np.asarray(sig.query_attributions(gene_list, aggregate_type=aggregate, weights=weights), dtype=np.float64).ravel()
        np.testing.assert_allclose(_by_folder(atlas, ours, folder), ref, rtol=2e-5, atol=1e-4)


def test_import_keeps_every_value_and_the_metadata(imported):
    _, _, matrices, atlas = imported
    assert atlas.n_cells == sum(FOLDERS.values())
    assert not atlas.has_umap and not atlas.has_model and not atlas.has_expression
    assert atlas.meta["elements"]["attributions"]["row_sum"] == pytest.approx(1000.0)
    cells = atlas.cells
    assert set(cells["cell_type"].astype(str)) == set(FOLDERS)
    assert {"prediction_nn_dist", "source_folder", "source_row", "cell_id"} <= set(cells.columns)
    # a study with an odd name gets a folder-safe id; its title keeps the original
    titles = {s.id: s.title for s in atlas.studies}
    assert "study 3/x" in titles.values() and all("/" not in sid and " " not in sid for sid in titles)
    assert set(cells["study"].astype(str)) == set(titles)
    for folder, m in matrices.items():
        dense = np.zeros((FOLDERS[folder], N_GENES), np.float32)
        sel = (cells["source_folder"] == folder).to_numpy()
        rows = cells["source_row"].to_numpy()
        got = atlas.gene_values(atlas.genes)
        dense[rows[sel]] = got[sel]
        np.testing.assert_array_equal(dense, m.toarray())


def test_imported_atlas_verifies_and_names_what_to_rerun(imported):
    from compute.atlas import verify_atlas

    atlas = imported[3]
    assert verify_atlas(atlas.path).ok
    damaged = next(atlas.path.glob("studies/*/attr.indices.npy"))
    original = damaged.read_bytes()
    try:
        damaged.write_bytes(original[:-4])
        report = verify_atlas(atlas.path)
        assert not report.ok and damaged.parent.name in report.advice
        assert report.advice.startswith("python -m compute import-signature --attributions ")
    finally:
        damaged.write_bytes(original)


def test_block_size_does_not_change_the_stores(imported, tmp_path):
    root, _, _, atlas = imported
    other = Atlas.open(import_signature(root / "sig", root / "gene_order.tsv", tmp_path / "a2", block_cells=10_000, log=lambda m: None), cache=False)
    for s, t in zip(atlas.studies, other.studies, strict=True):
        assert s.id == t.id
        a, b = atlas._store(s), other._store(t)
        for x, y in ((a.indptr, b.indptr), (a.indices, b.indices), (a.data, b.data)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_queries_and_dashboard_work_without_umap(imported):
    from dashboard.app import answer_query
    from dashboard.data import DashboardData

    _, genes, _, atlas = imported
    params = QueryParams(genes=tuple(genes[:20]), cell_types=("CD14+ monocyte",), cell_min=5, samp_min=1, n_null=100)
    result = run_query(atlas, params)
    assert result.n_selected == FOLDERS["CD14+ monocyte"]
    assert set(result.diseases["group"]) <= {"healthy", "sepsis", "Kawasaki disease"} and len(result.diseases) > 0
    from dashboard.state import DEFAULTS

    state = dict(DEFAULTS) | {"genes": " ".join(genes[:20]), "cell_types": ["CD14+ monocyte"], "cell_min": 5, "samp_min": 1}
    out = answer_query(DashboardData(atlas.path), state)
    assert "cells selected" in out["status"]
    assert "no UMAP" in out["umap_fig"].layout.annotations[0].text


def test_unscaled_values_are_recorded_as_such(tmp_path):
    _make_signature_layout(tmp_path, seed=3, scale=False)
    atlas = Atlas.open(import_signature(tmp_path / "sig", tmp_path / "gene_order.tsv", tmp_path / "atlas", log=lambda m: None), cache=False)
    assert atlas.meta["elements"]["attributions"]["row_sum"] is None
    assert "not rescaled" in atlas.values_description


@pytest.fixture
def layout_copy(imported, tmp_path):
    root = imported[0]
    shutil.copytree(root / "sig", tmp_path / "sig")
    shutil.copy(root / "gene_order.tsv", tmp_path / "gene_order.tsv")
    return tmp_path


def _rewrite_metadata(path, edit):
    df = pd.read_csv(path, index_col=0)
    edit(df).to_csv(path)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda p: (p / "sig" / "T cell" / "cell_metadata.csv.gz").unlink(), "has attributions/ but no cell_metadata"),
        (lambda p: shutil.rmtree(p / "sig" / "T cell" / "attributions"), "has cell metadata but no attributions/"),
        (lambda p: (p / "gene_order.tsv").write_text("\n".join(f"GENE{i}" for i in range(N_GENES - 1)) + "\n"), "gene order has 299 genes"),
        (lambda p: (p / "gene_order.tsv").write_text("A\nB\nA\n"), "duplicate genes in the gene order: A (lines 1 and 3)"),
        (lambda p: _rewrite_metadata(p / "sig" / "T cell" / "cell_metadata.csv.gz", lambda df: df.iloc[:50]), "has only 50 rows"),
        (lambda p: _rewrite_metadata(p / "sig" / "T cell" / "cell_metadata.csv.gz", lambda df: df.drop(columns="study")), "no column for 'study'"),
        (lambda p: (p / "sig" / "T cell" / "attributions" / "__schema").rename(p / "schema-gone"), "not a readable TileDB array"),
    ],
)
def test_bad_layouts_are_named_and_nothing_is_written(layout_copy, breakage, message):
    breakage(layout_copy)
    with pytest.raises(SignatureImportError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        import_signature(layout_copy / "sig", layout_copy / "gene_order.tsv", layout_copy / "atlas", log=lambda m: None)
    assert not (layout_copy / "atlas" / "atlas.json").exists()
    assert not any(p.name.endswith("import-scratch") for p in layout_copy.iterdir())


def test_cli_reports_errors_and_imports(layout_copy, capsys):
    rc = compute_main(["import-signature", "--attributions", str(layout_copy / "nowhere"), "--gene-order",
                       str(layout_copy / "gene_order.tsv"), "--out", str(layout_copy / "atlas")])
    assert rc == 2 and "nowhere: not a directory" in capsys.readouterr().err
    rc = compute_main(["import-signature", "--attributions", str(layout_copy / "sig" / "T cell"), "--gene-order",
                       str(layout_copy / "gene_order.tsv"), "--out", str(layout_copy / "atlas"), "--name", "Genentech T cells"])
    assert rc == 0
    atlas = Atlas.open(layout_copy / "atlas", cache=False)
    assert atlas.name == "Genentech T cells" and atlas.n_cells == FOLDERS["T cell"]


def test_metadata_read_from_plain_gzip_csv_with_blank_required_value(layout_copy):
    f = layout_copy / "sig" / "T cell" / "cell_metadata.csv.gz"
    text = gzip.decompress(f.read_bytes()).decode().splitlines()
    header = text[0].split(",")
    row = text[5].split(",")
    row[header.index("disease")] = ""
    text[5] = ",".join(row)
    f.write_bytes(gzip.compress(("\n".join(text) + "\n").encode()))
    with pytest.raises(SignatureImportError, match=r"column 'disease' is empty on line\(s\) 6"):
        import_signature(layout_copy / "sig", layout_copy / "gene_order.tsv", layout_copy / "atlas", log=lambda m: None)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_gene_major_writer_equals_in_memory_writer(tmp_path_factory, data):
    n_cells = data.draw(st.integers(0, 60), label="cells")
    n_genes = data.draw(st.integers(1, 25), label="genes")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    m = sp.random(n_cells, n_genes, density=0.3, random_state=np.random.default_rng(seed), format="csr", dtype=np.float32)
    cuts = sorted(data.draw(st.lists(st.integers(0, n_cells), max_size=5), label="cuts"))
    d = tmp_path_factory.mktemp("writer")
    write_gene_major(d / "ref", "attr", m)
    writer = GeneMajorWriter(d / "new", "attr", np.bincount(m.indices, minlength=n_genes))
    for a, b in zip([0, *cuts], [*cuts, n_cells], strict=True):
        writer.append(m[a:b])
    assert writer.close() == m.nnz
    ref, new = GeneMajorStore(d / "ref", "attr", n_genes, n_cells), GeneMajorStore(d / "new", "attr", n_genes, n_cells)
    for x, y in ((ref.indptr, new.indptr), (ref.indices, new.indices), (ref.data, new.data)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_gene_major_writer_refuses_short_or_long_input(tmp_path):
    m = sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 3.0]], dtype=np.float32))
    w = GeneMajorWriter(tmp_path / "a", "attr", np.array([2, 1]))
    w.append(m[:1])
    with pytest.raises(ValueError, match="2 announced values never arrived"):
        w.close()
    assert not list((tmp_path / "a").iterdir())
    w = GeneMajorWriter(tmp_path / "b", "attr", np.array([1, 1]))
    with pytest.raises(ValueError, match="more values for some gene"):
        w.append(m)

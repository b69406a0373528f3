"""Ingest: CELLxGENE-schema files with no mapping, the real PBMC study, QC, normalisation, alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from compute.errors import IngestError
from compute.ingest import align_to_genes, qc_and_normalise, read_study
from compute.manifest import FieldSpec, IngestSpec, SourceSpec, StudySpec
from tests.conftest import make_counts_adata


def _spec(path, **kw) -> StudySpec:
    return StudySpec(id="CXG1", title="cellxgene-style", source=SourceSpec(kind="h5ad", path=path), **kw)


def _cellxgene_file(tmp_path):
    """Ensembl var.index + feature_name, normalised X with counts in .raw, CELLxGENE obs columns."""
    import anndata as ad

    symbols = ["CD14", "LYZ", "S100A8", "CD3E", "MS4A1", "CD14"]  # a duplicated symbol, as happens
    counts = make_counts_adata(n_cells=30, genes=[f"g{i}" for i in range(6)], density=0.6, seed=1).X
    ens = [f"ENSG{1000 + i:011d}" for i in range(6)]
    var = pd.DataFrame({"feature_name": symbols}, index=ens)
    rng = np.random.default_rng(1)
    obs = pd.DataFrame(
        {
            "cell_type": rng.choice(["classical monocyte", "B cell"], 30),
            "disease": rng.choice(["normal", "COVID-19"], 30),
            "tissue": "blood",
            "donor_id": rng.choice(["d1", "d2", "d3"], 30),
            "sample_id": rng.choice(["s1", "s2"], 30),
            "assay": "10x 3' v3",
        },
        index=[f"cell{i}" for i in range(30)],
    )
    lognorm = counts.copy()
    lognorm.data = np.log1p(lognorm.data * 0.37)
    a = ad.AnnData(X=lognorm, obs=obs, var=var)
    a.raw = ad.AnnData(X=counts, obs=obs, var=var)
    path = tmp_path / "cxg.h5ad"
    a.write_h5ad(path)
    return path, counts, symbols


def test_cellxgene_file_needs_no_mapping(tmp_path):
    path, counts, symbols = _cellxgene_file(tmp_path)
    a = read_study(_spec(path))
    assert sorted(a.var_names) == ["CD14", "CD3E", "LYZ", "MS4A1", "S100A8"]
    # counts came from .raw (X was normalised), duplicate symbols summed
    dense = counts.toarray()
    cd14 = dense[:, 0] + dense[:, 5]
    np.testing.assert_array_equal(a[:, "CD14"].X.toarray().ravel(), cd14)
    for col in ("cell_type", "disease", "tissue", "donor", "sample", "study", "simulated"):
        assert col in a.obs
    assert set(a.obs["sample"]) <= {"s1", "s2"} and set(a.obs["donor"]) <= {"d1", "d2", "d3"}
    assert set(a.obs["disease"]) <= {"normal", "COVID-19"} and not a.obs["simulated"].any()


def test_normalise_to_1e4_then_log1p(tmp_path):
    path, _, _ = _cellxgene_file(tmp_path)
    raw = read_study(_spec(path))
    out = qc_and_normalise(raw, _spec(path), IngestSpec(min_genes=1, min_counts=1, min_gene_overlap=0))
    back = np.expm1(out.X.toarray()).sum(axis=1)
    np.testing.assert_allclose(back, 1e4, rtol=1e-4)
    raw_sums = np.asarray(raw.X.sum(axis=1)).ravel()
    kept = raw_sums >= 1
    assert len(out) == kept.sum()
    np.testing.assert_allclose(out.obs["n_counts"], raw_sums[kept])


def test_qc_removing_everything_says_what_to_change(tmp_path):
    path, _, _ = _cellxgene_file(tmp_path)
    with pytest.raises(IngestError, match=r"study 'CXG1'.*no cell passes QC.*ingest.min_genes"):
        qc_and_normalise(read_study(_spec(path)), _spec(path), IngestSpec(min_genes=10_000))


def test_missing_column_and_missing_file_are_named(tmp_path):
    path, _, _ = _cellxgene_file(tmp_path)
    with pytest.raises(IngestError, match=r"study 'CXG1'.*column 'celltype_fine'.*columns.cell_type"):
        read_study(_spec(path, cell_type="celltype_fine"))
    with pytest.raises(IngestError, match=r"column 'diagnosis'.*disease.column"):
        read_study(_spec(path, disease=FieldSpec(column="diagnosis")))
    with pytest.raises(IngestError, match="file not found"):
        read_study(_spec(tmp_path / "absent.h5ad"))


def test_normalised_matrix_without_counts_is_refused(tmp_path):
    import anndata as ad

    a = make_counts_adata()
    a.X = sp.csr_matrix(a.X.multiply(0.37), dtype=np.float32)
    path = tmp_path / "lognorm.h5ad"
    a.write_h5ad(path)
    with pytest.raises(IngestError, match="non-integer values and there is no .raw"):
        read_study(_spec(path))
    assert ad.read_h5ad(path).n_obs == a.n_obs  # the input file is untouched


def test_real_pbmc68k_counts_are_recovered():
    spec = StudySpec(id="PBMC68K", title="pbmc", source=SourceSpec(kind="scanpy-pbmc68k"),
                     tissue=FieldSpec(value="blood"), disease=FieldSpec(value="healthy"), cell_type="bulk_labels")
    a = read_study(spec)
    assert a.n_obs == 700 and a.n_vars == 765
    assert np.allclose(a.X.data, np.rint(a.X.data)) and a.X.data.min() >= 1
    assert (a.obs["sample"] == "PBMC68K").all()
    # one vocabulary: "healthy" is the CELLxGENE schema's PATO term, the study's label is kept
    assert (a.obs["disease"] == "normal").all() and (a.obs["disease_ontology_term_id"] == "PATO:0000461").all()
    assert (a.obs["disease_original"] == "healthy").all()
    monos = a.obs["cell_type_original"] == "CD14+ Monocyte"
    assert (a.obs.loc[monos, "cell_type_ontology_term_id"] == "CL:0001054").all()
    assert (a.obs.loc[monos, "cell_type"] == "CD14-positive monocyte").all()


def test_align_fills_absent_genes_with_zeros_and_drops_extras():
    X = sp.csr_matrix(np.array([[1.0, 2.0, 3.0], [0.0, 5.0, 0.0]], dtype=np.float32))
    out, ov = align_to_genes(X, ["B", "EXTRA", "A"], ["A", "B", "C"])
    np.testing.assert_array_equal(out.toarray(), [[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert (ov.n_shared, ov.n_study_genes, ov.n_model_genes) == (2, 3, 3)
    with pytest.raises(IngestError, match=r"only 2 of its 3 genes.*minimum 3"):
        align_to_genes(X, ["B", "EXTRA", "A"], ["A", "B", "C"], min_overlap=3, where="study 'X'")

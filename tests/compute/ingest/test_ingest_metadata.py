"""Donor and sample metadata reach the atlas's cells table (issue 36, item 13: colour and split by
any donor or sample column the studies carry): CELLxGENE-schema columns (sex, development stage,
...) and an ``age`` column by themselves, any obs column a manifest names under
``columns.metadata``; a named column the file lacks is refused naming the study and the column;
studies that carry different columns build into one atlas whose missing values read "unknown".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.errors import IngestError, ManifestError
from compute.ingest import ingest_report, read_study
from compute.manifest import FieldSpec, SourceSpec, StudySpec, parse_manifest
from tests import realdata as rd
from tests.conftest import make_counts_adata


def _donors(n_cells: int, n_donors: int = 4) -> np.ndarray:
    return np.array([f"D{i % n_donors}" for i in range(n_cells)], dtype=object)


def _cellxgene_style(n_cells: int = 80):
    """Counts with CELLxGENE-schema obs: donor_id, sex, development_stage (and its ontology id),
    a numeric age per donor and per-cell numbers that are no donor metadata."""
    donors = _donors(n_cells)
    number = np.array([int(d[1:]) for d in donors])
    obs = pd.DataFrame({
        "cell_type": np.where(np.arange(n_cells) % 2 == 0, "T cell", "B cell"),
        "disease": "normal", "tissue": "blood", "donor_id": donors,
        "sex": np.where(number % 2 == 0, "female", "male"),
        "development_stage": [f"{40 + 5 * k}-year-old human stage" for k in number],
        "development_stage_ontology_term_id": [f"HsapDv:{80 + k:07d}" for k in number],
        "age": (40 + 5 * number).astype(float),  # floats in the file, whole years
        "percent_mito": np.linspace(0, 0.1, n_cells),  # per cell: never donor metadata
    }, index=[f"c{i}" for i in range(n_cells)])
    obs.loc["c3", "age"] = np.nan  # ... and one donor's age not recorded in one cell: the donor's cells then disagree
    return make_counts_adata(n_cells=n_cells, obs=obs, genes=_symbols(60), density=0.5)


def _symbols(n: int) -> list[str]:
    """``n`` current human HGNC symbols."""
    from compute.query import symbol_table

    return sorted({s for s in symbol_table().current.values() if s.isalnum() and s.isupper()})[:n]


def _spec(path, sid="S1", metadata=()):
    return StudySpec(id=sid, title=sid, source=SourceSpec(kind="h5ad", path=path), metadata=tuple(metadata),
                     tissue=FieldSpec(column="tissue"), disease=FieldSpec(column="disease"))


def test_cellxgene_columns_are_carried_per_donor(tmp_path):
    a = _cellxgene_style()
    a.obs = a.obs.drop(index=[]).assign(age=a.obs["age"].fillna(a.obs["age"].iloc[7]))  # every cell of a donor its age
    out = read_study(_spec(rd.write(a, tmp_path / "s.h5ad")))
    cells = out.obs
    assert {"sex", "development_stage", "age"} <= set(cells.columns)
    # the ontology ids and per-cell numbers stay out: a colour shows labels, per donor
    assert "development_stage_ontology_term_id" not in cells and "percent_mito" not in cells
    assert sorted(cells["sex"].unique()) == ["female", "male"]
    assert set(cells["age"]) == {"40", "45", "50", "55"}  # whole years without ".0"
    by_donor = cells.groupby("donor", observed=True)[["sex", "age"]].nunique()
    assert (by_donor == 1).all().all()
    meta = ingest_report(out)["metadata"]
    assert meta["columns"]["sex"] == {"column": "sex", "from": "automatic"} and meta["skipped"] == []


def test_a_column_that_varies_within_a_sample_is_left_out_and_said(tmp_path):
    out = read_study(_spec(rd.write(_cellxgene_style(), tmp_path / "s.h5ad")))
    assert "age" not in out.obs and "sex" in out.obs  # c3's missing age makes donor D3's cells disagree
    rep = ingest_report(out)
    assert [s["column"] for s in rep["metadata"]["skipped"]] == ["age"]
    assert any("'age' not carried" in w and "columns.metadata" in w for w in rep["warnings"])


def test_a_manifest_named_column_is_carried_under_its_name_or_a_new_one(tmp_path):
    a = _cellxgene_style()
    a.obs["Gender"] = np.where(a.obs["sex"] == "female", "F", "M")
    a.obs["batch"] = "run1"
    path = rd.write(a, tmp_path / "s.h5ad")
    out = read_study(_spec(path, metadata=[("batch", "batch"), ("gender", "Gender"), ("age", "age")]))
    cells = out.obs
    assert set(cells["gender"]) == {"F", "M"} and set(cells["batch"]) == {"run1"}
    # named in the manifest, age is carried per cell, its missing value as "unknown"
    assert cells["age"].iloc[3] == "unknown" and cells["age"].iloc[0] == "40"
    assert ingest_report(out)["metadata"]["columns"]["gender"] == {"column": "Gender", "from": "manifest"}


def test_a_manifest_naming_a_missing_column_is_refused(tmp_path):
    path = rd.write(_cellxgene_style(), tmp_path / "s.h5ad")
    with pytest.raises(IngestError) as err:
        read_study(_spec(path, sid="GSE7", metadata=[("bmi", "BMI")]))
    msg = str(err.value)
    assert "study 'GSE7'" in msg and "'BMI'" in msg and "columns.metadata" in msg and "obs has: cell_type" in msg
    with pytest.raises(IngestError, match="standard column"):
        read_study(_spec(path, sid="GSE7", metadata=[("disease", "sex")]))


@pytest.mark.parametrize(("value", "fragment"), [
    ("sex", "a list of obs columns"),
    ([""], "expected obs column names"),
    (["Patient ID"], "cannot name a column"),
    ({"sex": 3}, "columns.metadata.sex"),
    (["sex", "sex"], "named twice"),
])
def test_bad_metadata_keys_are_refused_by_the_manifest(tmp_path, value, fragment):
    doc = {"version": 1, "atlas": {"name": "x", "out": "atlas"},
           "studies": [{"id": "S1", "source": {"kind": "h5ad", "path": "s.h5ad"}, "columns": {"metadata": value}}]}
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc, tmp_path / "m.yaml")
    assert "study 'S1'" in str(err.value) and "columns.metadata" in str(err.value) and fragment in str(err.value)


def test_metadata_keys_parse(tmp_path):
    doc = {"version": 1, "atlas": {"name": "x", "out": "atlas"},
           "studies": [{"id": "S1", "source": {"kind": "h5ad", "path": "s.h5ad"}, "columns": {"metadata": ["batch"]}},
                       {"id": "S2", "source": {"kind": "h5ad", "path": "t.h5ad"}, "columns": {"metadata": {"sex": "Gender"}}}]}
    m = parse_manifest(doc, tmp_path / "m.yaml")
    assert m.study("S1").metadata == (("batch", "batch"),) and m.study("S2").metadata == (("sex", "Gender"),)


def test_real_cells_carry_their_tumour_as_donor_metadata(tmp_path):
    """Real cells: infercnvpy's oligodendroglioma set (Tirosh et al. 2016) names each cell's tumour
    in its id (MGH36_P6_F03: tumour MGH36, plate 6). None of the packaged real sets (scanpy's
    pbmc68k_reduced, celltypist's sample, this one) carries sex or age, so the tumour, a donor
    column, is what a manifest names here."""
    a = rd.oligodendroglioma_tpm()
    a.obs["tumour"] = [str(i).split("_")[0] for i in a.obs_names]
    a.obs["plate"] = [str(i).split("_")[1] for i in a.obs_names]
    a.obs["disease"], a.obs["tissue"] = "oligodendroglioma", "brain"
    spec = StudySpec(id="OLIG", title="OLIG", source=SourceSpec(kind="h5ad", path=rd.write(a, tmp_path / "olig.h5ad"), values="tpm"),
                     cell_type="cell_type", sample="plate", donor="tumour", metadata=(("tumour", "tumour"),),
                     tissue=FieldSpec(column="tissue"), disease=FieldSpec(column="disease"))
    cells = read_study(spec).obs
    assert cells["tumour"].nunique() >= 4 and cells["tumour"].str.match(r"^(MGH)?\d+$").all(), sorted(set(cells["tumour"]))
    # every malignant cell's label names its own tumour: the carried column agrees with the authors'
    malignant = cells["cell_type_original"].astype(str).str.startswith("malignant_")
    named = cells.loc[malignant, "cell_type_original"].astype(str).str.removeprefix("malignant_")
    assert malignant.sum() > 50
    assert all(t.endswith(n) for t, n in zip(cells.loc[malignant, "tumour"].astype(str), named, strict=True))

"""The census source: a local SOMA experiment laid out as the CELLxGENE Census, built here from
the 700 real PBMCs scanpy ships, read through the real ``cellxgene_census`` client (nothing is
downloaded from the network)."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from compute.census import (
    CensusError,
    dataset_rng,
    download_datasets,
    estimate,
    expand_census,
    load_plan,
    obs_value_filter,
    plan_census,
    plan_manifest,
    plan_text,
    select_cells,
)
from compute.errors import ManifestError
from compute.manifest import AttributionSpec, CensusSource, ModelSpec, load_manifest, parse_manifest
from tests.conftest import REPO

SMALL_MODEL = {"kind": "train", "hidden_sizes": [64, 32], "latent_dim": 16, "epochs": 2, "batch_size": 256}
# the release the README's example pins; the fixture says it mirrors it (its cells are scanpy's)
VERSION = "2025-01-30"

# The fixture's datasets: (dataset id, title, disease label, disease term, cells, donors, primary).
# The cells are pbmc68k_reduced's 700, split in this order; the non-primary dataset repeats the
# first dataset's first cells (the Census holds such duplicates, flagged is_primary_data False).
DATASETS = [
    ("4a6d2b7c-0f1e-4b38-9d2a-1c5e8f7a9b01", "Healthy PBMC reference", "normal", "PATO:0000461", 180, 3, True),
    ("7c1e9f3a-5b2d-4e6f-8a0b-2d4c6e8f0a12", "COVID-19 PBMC atlas", "COVID-19", "MONDO:0100096", 180, 3, True),
    ("9e3b5d7f-1a2c-4d6e-8f0a-3b5d7f9a1c23", "Lupus PBMC cohort", "systemic lupus erythematosus", "MONDO:0007915", 150, 2, True),
    ("b2d4f6a8-3c5e-4f7a-9b1c-4d6f8a0b2c34", "Sepsis whole blood", "sepsis", "MONDO:1040015", 150, 2, True),
    ("c5e7a9b1-4d6f-4a8b-0c2d-5e7f9a1b3c45", "Tiny healthy pilot", "normal", "PATO:0000461", 40, 1, True),
    ("e8a0c2d4-6f8a-4b0c-2d4e-6f8a0b2c4d56", "Healthy PBMC reference (re-upload)", "normal", "PATO:0000461", 60, 3, False),
]
# genes the lupus dataset did not measure (its presence-matrix row lacks them, its counts are 0)
UNMEASURED_IN_LUPUS = 100
# bulk_labels that match no Cell Ontology term as written, as a curator would map them
CURATED = {"CD4+/CD25 T Reg": "CL:0000815", "CD4+/CD45RA+/CD25- Naive T": "CL:0000895",
           "CD4+/CD45RO+ Memory": "CL:0000897", "CD8+ Cytotoxic T": "CL:0000794",
           "CD8+/CD45RA+ Naive Cytotoxic": "CL:0000900", "CD34+": "CL:0008001", "CD56+ NK": "CL:0000623"}
# genes in var that no dataset measured (the Census's var is every gene of every dataset)
EXTRA_GENES = ["ALB", "INS", "GCG", "TTR", "APOA1", "SFTPC", "KRT5", "MYH7", "NPHS1", "PRL"]


def _pbmc_counts():
    """(counts CSR float32, obs, gene symbols) of pbmc68k_reduced, counts from .raw as ingest does."""
    import scanpy as sc

    a = sc.datasets.pbmc68k_reduced()
    raw = a.raw.X.toarray() if sp.issparse(a.raw.X) else np.asarray(a.raw.X)
    counts = np.rint(np.expm1(raw) * a.obs["n_counts"].to_numpy()[:, None] / 1e4).astype(np.float32)
    return sp.csr_matrix(counts), a.obs.copy(), [str(g) for g in a.raw.var_names]


def _feature_ids(symbols: list[str]) -> list[str]:
    """An Ensembl id per symbol (the HGNC tables' own; a made-up one for the few without)."""
    from compute.query import symbol_table

    by_symbol: dict[str, str] = {}
    for ensg, syms in sorted(symbol_table().ensembl.items()):
        if len(syms) == 1:
            by_symbol.setdefault(syms[0], ensg)
    return [by_symbol.get(s, f"ENSG9{i:010d}") for i, s in enumerate(symbols)]


def _dataframe(parent, key: str, frame: pd.DataFrame, writes: list) -> None:
    """Create a SOMA DataFrame ``key`` under ``parent``; its rows are queued in ``writes``
    (written once the tree is closed: tiledbsoma 2.3 loses the enumeration values of a text
    column written through the handle add_new_dataframe returns)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    parent.add_new_dataframe(key, schema=table.schema, index_column_names=["soma_joinid"],
                             domain=[(0, max(len(frame) - 1, 0))]).close()
    writes.append((f"{parent.uri}/{key}", table))


def _coo_table(matrix):
    import pyarrow as pa

    coo = sp.coo_matrix(matrix)
    return pa.Table.from_pydict({"soma_dim_0": coo.row.astype(np.int64), "soma_dim_1": coo.col.astype(np.int64),
                                 "soma_data": coo.data})


def write_local_census(path: Path, version: str = VERSION) -> dict:
    """A SOMA collection at ``path`` with the Census layout (census_info/summary and datasets;
    census_data/homo_sapiens with obs, ms/RNA/var, ms/RNA/X/raw and the
    feature_dataset_presence_matrix) holding pbmc68k_reduced's cells as :data:`DATASETS`.
    Returns what went in: {"obs": DataFrame, "counts": CSR, "var": DataFrame}."""
    import pyarrow as pa
    import tiledbsoma as soma

    from compute.vocabulary import match_label, ontologies

    counts, pbmc, symbols = _pbmc_counts()
    onto = ontologies()
    terms = {label: match_label(label, "cell_type", CURATED).term_id for label in pbmc["bulk_labels"].cat.categories}
    n_genes = len(symbols) + len(EXTRA_GENES)
    var = pd.DataFrame({"soma_joinid": np.arange(n_genes, dtype=np.int64),
                        "feature_id": _feature_ids(symbols + EXTRA_GENES),
                        "feature_name": symbols + EXTRA_GENES,
                        "feature_length": np.full(n_genes, 1000, dtype=np.int64)})
    counts = sp.hstack([counts, sp.csr_matrix((counts.shape[0], len(EXTRA_GENES)), dtype=np.float32)]).tocsr()
    rows, frames, start = [], [], 0
    presence = np.zeros((len(DATASETS), n_genes), dtype=bool)
    for i, (did, _, disease, disease_id, n, donors, primary) in enumerate(DATASETS):
        idx = np.arange(start, start + n) if primary else np.arange(n)  # the re-upload repeats the first cells
        start += n if primary else 0
        rows.append(idx)
        block = pbmc.iloc[idx]
        frames.append(pd.DataFrame({
            "dataset_id": did,
            "assay": "10x 3' v1", "assay_ontology_term_id": "EFO:0009901",
            "cell_type": [onto.term(terms[b]).label for b in block["bulk_labels"]],
            "cell_type_ontology_term_id": [terms[b] for b in block["bulk_labels"]],
            "development_stage": "adult stage", "development_stage_ontology_term_id": "HsapDv:0000258",
            "disease": disease, "disease_ontology_term_id": disease_id,
            "donor_id": [f"{did[:4]}-donor{k % donors + 1}" for k in range(n)],
            "is_primary_data": primary,
            "self_reported_ethnicity": "unknown", "sex": ["female" if k % donors == 0 else "male" for k in range(n)],
            "suspension_type": "cell", "tissue": "blood", "tissue_ontology_term_id": "UBERON:0000178",
            "tissue_type": "tissue", "tissue_general": "blood", "tissue_general_ontology_term_id": "UBERON:0000178",
        }))
        presence[i, : len(symbols)] = True
    lupus = [d[2] for d in DATASETS].index("systemic lupus erythematosus")
    presence[lupus, len(symbols) - UNMEASURED_IN_LUPUS : len(symbols)] = False
    obs = pd.concat(frames, ignore_index=True)
    X = counts[np.concatenate(rows)].tolil()
    lupus_rows = np.flatnonzero(obs["dataset_id"].to_numpy() == DATASETS[lupus][0])
    X[np.ix_(lupus_rows, np.flatnonzero(~presence[lupus]))] = 0  # what a dataset did not measure has no counts
    X = X.tocsr()
    X.eliminate_zeros()
    obs.insert(0, "soma_joinid", np.arange(len(obs), dtype=np.int64))
    obs["raw_sum"] = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    obs["nnz"] = np.diff(X.indptr).astype(np.int64)
    obs["n_measured_vars"] = presence[[d for d in range(len(DATASETS)) for _ in range(len(rows[d]))]].sum(axis=1)
    for c in obs.columns:
        if obs[c].dtype == object:  # the Census stores its text columns as enumerations
            obs[c] = obs[c].astype("category")
    datasets = pd.DataFrame({
        "soma_joinid": np.arange(len(DATASETS), dtype=np.int64),
        "citation": [f"Fixture {i + 1} (2026), cells from scanpy's pbmc68k_reduced" for i in range(len(DATASETS))],
        "collection_id": "f0c1d2e3-0000-4000-8000-000000000000",
        "collection_name": "SigAtlas test collection", "collection_doi": "10.0000/sigatlas.fixture",
        "collection_doi_label": "SigAtlas 2026",
        "dataset_id": [d[0] for d in DATASETS], "dataset_version_id": [f"v-{d[0][:8]}" for d in DATASETS],
        "dataset_title": [d[1] for d in DATASETS], "dataset_h5ad_path": [f"{d[0]}.h5ad" for d in DATASETS],
        "dataset_total_cell_count": [d[4] for d in DATASETS],
    })
    summary = pd.DataFrame({"soma_joinid": np.arange(4, dtype=np.int64),
                            "label": ["census_schema_version", "census_build_date", "dataset_schema_version", "total_cell_count"],
                            "value": ["2.1.0", version, "5.2.0", str(len(obs))]})
    writes: list = []
    with soma.Collection.create(str(path)) as root:
        root.metadata["census_schema_version"] = "2.1.0"
        info = root.add_new_collection("census_info")
        _dataframe(info, "summary", summary, writes)
        _dataframe(info, "datasets", datasets, writes)
        exp = root.add_new_collection("census_data").add_new_collection("homo_sapiens", soma.Experiment)
        _dataframe(exp, "obs", obs, writes)
        rna = exp.add_new_collection("ms").add_new_collection("RNA", soma.Measurement)
        _dataframe(rna, "var", var, writes)
        rna.add_new_collection("X").add_new_sparse_ndarray("raw", type=pa.float32(), shape=X.shape).close()
        writes.append((f"{rna.uri}/X/raw", _coo_table(X.astype(np.float32))))
        rna.add_new_sparse_ndarray("feature_dataset_presence_matrix", type=pa.bool_(), shape=presence.shape).close()
        writes.append((f"{rna.uri}/feature_dataset_presence_matrix", _coo_table(sp.csr_matrix(presence))))
    for uri, table in writes:
        with soma.open(uri, mode="w") as obj:
            obj.write(table)
    return {"obs": obs, "counts": X, "var": var, "presence": presence}


@pytest.fixture(scope="module")
def local_census(tmp_path_factory):
    path = tmp_path_factory.mktemp("census") / "soma"
    truth = write_local_census(path)
    return path, truth


def _readme_manifest() -> dict:
    """The README's census example (the yaml block after its census-example marker)."""
    text = (REPO / "README.md").read_text()
    marker = text.index("<!-- census-example")
    block = re.search(r"```yaml\n(.*?)```", text[marker:], re.S)
    return yaml.safe_load(block.group(1))


def _write_manifest(folder: Path, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _local(doc: dict, soma_path: Path, out: Path, **source) -> dict:
    """``doc`` pointed at the local Census, writing to ``out``, with a small model."""
    doc = json.loads(json.dumps(doc))
    doc["atlas"]["out"] = str(out)
    doc["model"] = SMALL_MODEL
    for s in doc["studies"]:
        if s["source"]["kind"] == "census":
            s["source"]["uri"] = str(soma_path)
            s["source"].update(source)
    return doc


def _entry(**source) -> dict:
    src = {"kind": "census", "version": VERSION, "filter": {"tissue_general": "blood"}, **source}
    return {"version": 1, "atlas": {"name": "c", "out": "atlas/c"}, "studies": [{"id": "blood", "source": src}]}


# -- the manifest -------------------------------------------------------------------------------
def test_a_census_entry_parses_into_a_typed_source(tmp_path):
    m = parse_manifest(_entry(uri="mirror/census", filter={"disease": ["normal", "COVID-19"], "tissue_general": "blood"},
                              max_cells_per_cell_type=300, max_datasets=5), tmp_path / "m.yaml")
    s = m.study("blood")
    c = s.source.census
    assert s.source.kind == "census" and s.source.path is None and s.organism == "human"
    assert c.version == VERSION and c.uri == str((tmp_path / "mirror/census").resolve())
    assert c.filter == (("disease", ("COVID-19", "normal")), ("tissue_general", ("blood",)))
    assert (c.primary_only, c.max_cells_per_dataset, c.max_cells_per_cell_type, c.min_cells_per_dataset, c.max_datasets) == (
        True, 5000, 300, 50, 5)
    assert c.dataset_id is None and c.selection is None
    assert parse_manifest(_entry(uri="s3://bucket/census"), tmp_path / "m.yaml").studies[0].source.census.uri == "s3://bucket/census"
    assert parse_manifest(_readme_manifest(), tmp_path / "m.yaml").study("blood").source.census.max_datasets == 30


@pytest.mark.parametrize("change, words", [
    (lambda d: d["studies"][0]["source"].update(verison="2025-01-30"), ["key 'source.verison'", "unknown key", "max_cells_per_dataset"]),
    (lambda d: d["studies"][0]["source"].pop("version"), ["key 'source.version'", "missing"]),
    (lambda d: d["studies"][0]["source"].update(version="stable"), ["key 'source.version'", "pin a Census release"]),
    (lambda d: d["studies"][0]["source"].update(version="latest"), ["key 'source.version'", "pin"]),
    (lambda d: d["studies"][0]["source"].update(version=20250130), ["key 'source.version'", "a string"]),
    (lambda d: d["studies"][0]["source"].update(filter={}), ["key 'source.filter'", "empty"]),
    (lambda d: d["studies"][0]["source"].pop("filter"), ["key 'source.filter'", "missing"]),
    (lambda d: d["studies"][0]["source"].update(filter={"diseases": ["normal"]}), ["key 'source.filter.diseases'", "unknown key"]),
    (lambda d: d["studies"][0]["source"].update(filter={"disease": []}), ["key 'source.filter.disease'", "empty"]),
    (lambda d: d["studies"][0]["source"].update(filter={"disease": [3]}), ["key 'source.filter.disease'", "a string"]),
    (lambda d: d["studies"][0]["source"].update(max_cells_per_dataset=0), ["key 'source.max_cells_per_dataset'", ">= 1"]),
    (lambda d: d["studies"][0]["source"].update(max_cells_per_cell_type=True), ["source.max_cells_per_cell_type", "boolean"]),
    (lambda d: d["studies"][0]["source"].update(primary_only="yes"), ["key 'source.primary_only'", "true or false"]),
    (lambda d: d["studies"][0]["source"].update(path="x.h5ad"), ["key 'source.path'", "unknown key"]),
    (lambda d: d["studies"][0]["source"].update(values="tpm"), ["key 'source.values'", "unknown key"]),
    (lambda d: d["studies"][0].update(disease="healthy"), ["key 'disease'", "not used with source.kind 'census'"]),
    (lambda d: d["studies"][0].update(columns={"cell_type": "x"}), ["key 'columns'", "Census's own"]),
    (lambda d: d["studies"][0].update(organism="zebrafish"), ["key 'organism'", "homo_sapiens"]),
])
def test_census_manifest_errors_name_the_file_the_study_and_the_key(tmp_path, change, words):
    doc = _entry()
    change(doc)
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc, tmp_path / "manifest.yaml")
    msg = str(err.value)
    assert "manifest.yaml" in msg and "study 'blood'" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_census_keys_are_unknown_keys_of_other_sources(tmp_path):
    doc = _entry()
    doc["studies"][0]["source"] = {"kind": "h5ad", "path": "x.h5ad", "version": VERSION}
    with pytest.raises(ManifestError, match=r"key 'source.version': unknown key \(allowed here: kind, path, values\)"):
        parse_manifest(doc, tmp_path / "m.yaml")


# -- the filter, the draw and the estimate (pure) ----------------------------------------------------
def test_the_value_filter_takes_labels_and_term_ids_and_quotes_safely():
    src = CensusSource(version=VERSION, filter=(("assay", ("10x 3' v3",)), ("disease", ("COVID-19", "MONDO:0007915")),
                                                ("donor_id", ("AB:12",))))
    f = obs_value_filter(src)
    assert f == ("is_primary_data == True and assay in [\"10x 3' v3\"] and (disease in ['COVID-19'] or "
                 "disease_ontology_term_id in ['MONDO:0007915']) and donor_id in ['AB:12']")
    assert not obs_value_filter(dataclasses.replace(src, primary_only=False)).startswith("is_primary_data")


def test_select_cells_caps_per_cell_type_then_per_dataset_in_proportion():
    strata = np.array(["T"] * 600 + ["B"] * 300 + ["NK"] * 90 + ["DC"] * 10)
    kept = select_cells(strata, max_cells=200, max_per_stratum=250, rng=dataset_rng(0, "d1"))
    got = pd.Series(strata[kept]).value_counts().to_dict()
    # the per-type cap leaves T 250, B 250, NK 90, DC 10 (600); 200 of them in that proportion
    assert got == {"T": 83, "B": 83, "NK": 30, "DC": 4}
    assert np.all(np.diff(kept) > 0)
    again = select_cells(strata, max_cells=200, max_per_stratum=250, rng=dataset_rng(0, "d1"))
    assert np.array_equal(kept, again)  # seeded
    assert not np.array_equal(kept, select_cells(strata, max_cells=200, max_per_stratum=250, rng=dataset_rng(1, "d1")))
    assert not np.array_equal(kept, select_cells(strata, max_cells=200, max_per_stratum=250, rng=dataset_rng(0, "d2")))
    assert np.array_equal(select_cells(strata, max_cells=5000, rng=dataset_rng(0, "d1")), np.arange(1000))  # no cap binds


def test_select_cells_invariants():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.sampled_from("ABCDE"), max_size=300), st.integers(1, 200), st.one_of(st.none(), st.integers(1, 80)),
           st.integers(0, 3))
    def check(labels, max_cells, per_type, seed):
        strata = np.array(labels, dtype=object)
        kept = select_cells(strata, max_cells=max_cells, max_per_stratum=per_type, rng=dataset_rng(seed, "x"))
        counts = pd.Series(labels, dtype=object).value_counts()
        capped = counts if per_type is None else counts.clip(upper=per_type)
        assert len(kept) == min(max_cells, int(capped.sum()))
        assert len(np.unique(kept)) == len(kept) and np.all(np.diff(kept) > 0)
        got = pd.Series(strata[kept], dtype=object).value_counts()
        assert all(got.get(k, 0) <= capped[k] for k in capped.index)

    check()


def test_the_estimate_is_arithmetic_on_the_plan():
    e = estimate(cells=10_000, values=20_000_000, genes=30_000, model=ModelSpec(), attribution=AttributionSpec(),
                 bandwidth_mb_s=10, datasets=4)
    assert e.values_known and e.download_bytes == 20 * 20_000_000
    assert e.download_s == pytest.approx(40.0)
    assert e.disk_bytes["downloads"] == 8 * 20_000_000 + 200 * 10_000 + 4 * (100_000 + 60 * 30_000)
    assert e.disk_bytes["atlas"] > 2 * 8 * 20_000_000
    bigger = estimate(cells=20_000, values=None, genes=30_000, model=ModelSpec(epochs=20), attribution=AttributionSpec())
    assert not bigger.values_known and bigger.values == 20_000 * 2000 and bigger.build_s > 2 * e.build_s
    assert any("docs/benchmarks/build-cpu.txt" in h for h in e.how)


# -- planning against the local Census ------------------------------------------------------------
def test_plan_reads_the_filtered_obs_and_keeps_it(local_census, tmp_path):
    soma_path, truth = local_census
    doc = _local(_readme_manifest(), soma_path, tmp_path / "atlas", max_cells_per_dataset=120, max_cells_per_cell_type=30,
                 min_cells_per_dataset=50)
    doc["studies"][0]["source"]["filter"]["disease"].append("Crohn disease")  # in no dataset of the fixture
    manifest = load_manifest(_write_manifest(tmp_path, doc))
    [plan] = plan_manifest(manifest, tmp_path / "census")
    by_title = {d.title: d for d in plan.datasets}
    assert sorted(by_title) == ["COVID-19 PBMC atlas", "Healthy PBMC reference", "Lupus PBMC cohort", "Sepsis whole blood"]
    assert plan.n_matching_cells == 700 and plan.n_matching_datasets == 5  # the re-upload is not primary data
    assert [s[0] for s in plan.skipped] == [DATASETS[4][0]] and "min_cells_per_dataset" in plan.skipped[0][2]
    # the fixture's cells are all "10x 3' v1": the README's other assays match none either
    assert plan.unmatched == (*(("assay", a) for a in ("10x 3' v2", "10x 3' v3", "10x 5' v1", "10x 5' v2")),
                              ("disease", "Crohn disease"))
    covid = by_title["COVID-19 PBMC atlas"]
    assert covid.study_id == "blood-7c1e9f3a" and covid.n_matching == 180 and covid.n_selected == 120
    assert covid.n_donors == 3 and covid.diseases == {"COVID-19": 120}
    assert max(covid.cell_types.values()) <= 30
    assert by_title["Lupus PBMC cohort"].n_genes == len(truth["var"]) - len(EXTRA_GENES) - UNMEASURED_IN_LUPUS
    obs = truth["obs"].set_index("soma_joinid")
    cells = plan.cells(covid.dataset_id)
    assert set(obs.loc[cells, "dataset_id"]) == {covid.dataset_id}
    assert covid.nnz == int(obs.loc[cells, "nnz"].sum())
    # kept: the same plan is read back, without opening the Census (here: a URI that is gone)
    gone = dataclasses.replace(manifest.studies[0], source=dataclasses.replace(
        manifest.studies[0].source, census=dataclasses.replace(manifest.studies[0].source.census, uri=str(tmp_path / "gone"))))
    again = plan_census(gone, manifest.seed, tmp_path / "census")
    assert again.datasets == plan.datasets and np.array_equal(again.cells(covid.dataset_id), cells)
    text = plan_text([plan], manifest)
    for words in ("census entry 'blood'", "Census 2025-01-30 at", "matching: 700 cells in 5 datasets",
                  "blood-7c1e9f3a", "120 of 180", "left out: c5e7a9b1", "disease 'Crohn disease'",
                  "total: 4 studies, 478 cells, 10 donors", "needs (estimated): download", "how estimated:"):
        assert words in text, (words, text)


def test_census_plan_command(local_census, tmp_path, capsys):
    from compute.__main__ import main

    soma_path, _ = local_census
    path = _write_manifest(tmp_path, _local(_readme_manifest(), soma_path, tmp_path / "atlas"))
    assert main(["census-plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 datasets -> studies:" in out and "total: 4 studies, 660 cells, 10 donors" in out
    assert "diseases: COVID-19 180, normal 180, sepsis 150, systemic lupus erythematosus 150" in out
    assert "no expression was downloaded" in out and not list((tmp_path / ".atlas.work" / "census").rglob("*.h5ad"))
    assert main(["census-plan", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [len(p["datasets"]) for p in doc["plans"]] == [4] and doc["estimate"]["cells"] == 660
    none = _write_manifest(tmp_path / "none", {"version": 1, "atlas": {"name": "x", "out": "x"},
                                               "studies": [{"id": "P", "source": {"kind": "scanpy-pbmc68k"}}]})
    assert main(["census-plan", str(none)]) == 2
    assert "no study with source.kind 'census'" in capsys.readouterr().err


def test_a_mirror_of_another_release_or_no_census_is_refused(local_census, tmp_path):
    soma_path, _ = local_census
    other = parse_manifest(_entry(uri=str(soma_path), version="2024-07-01"), tmp_path / "m.yaml")
    with pytest.raises(CensusError, match=r"is release 2025-01-30, but the manifest pins 2024-07-01"):
        plan_manifest(other, tmp_path / "census")
    missing = parse_manifest(_entry(uri=str(tmp_path / "nothing")), tmp_path / "m.yaml")
    with pytest.raises(CensusError, match=r"cannot open the Census 2025-01-30 at .*nothing.*source.uri"):
        plan_manifest(missing, tmp_path / "census")
    mouse = parse_manifest({**_entry(uri=str(soma_path)), "studies": [{**_entry()["studies"][0], "organism": "mouse"}]},
                           tmp_path / "m.yaml")
    mouse = dataclasses.replace(mouse, studies=(dataclasses.replace(mouse.studies[0], source=dataclasses.replace(
        mouse.studies[0].source, census=dataclasses.replace(mouse.studies[0].source.census, uri=str(soma_path)))),))
    with pytest.raises(CensusError, match="no mus_musculus experiment"):
        plan_manifest(mouse, tmp_path / "census")


# -- downloading -------------------------------------------------------------------------------
def _planned(local_census, root: Path):
    soma_path, _ = local_census
    doc = _local(_entry(filter={"tissue_general": "blood"}, max_cells_per_dataset=100, max_cells_per_cell_type=25),
                 soma_path, root / "atlas")
    manifest = parse_manifest(doc, root / "m.yaml")
    return plan_census(manifest.studies[0], manifest.seed, root / "census")


def _same_file(a: Path, b: Path) -> None:
    import anndata as ad

    x, y = ad.read_h5ad(a), ad.read_h5ad(b)
    assert (x.X != y.X).nnz == 0
    pd.testing.assert_frame_equal(x.obs, y.obs)
    pd.testing.assert_frame_equal(x.var, y.var)
    assert x.uns["census"] == y.uns["census"]


def test_download_holds_the_selected_cells_and_the_measured_genes(local_census, tmp_path):
    import anndata as ad

    _, truth = local_census
    plan = _planned(local_census, tmp_path)
    files = download_datasets(plan, progress=False)
    assert [f.name for f in files] == [f"{d.dataset_id}.h5ad" for d in plan.datasets]
    lupus = next(d for d in plan.datasets if d.title == "Lupus PBMC cohort")
    a = ad.read_h5ad(plan.file(lupus.dataset_id))
    cells = plan.cells(lupus.dataset_id)
    genes = plan.genes(lupus.dataset_id)
    assert a.n_obs == lupus.n_selected == len(cells) and a.n_vars == len(genes) == lupus.n_genes
    assert list(a.obs_names) == [str(c) for c in cells]
    assert list(a.var_names) == list(truth["var"]["feature_id"].iloc[genes])
    assert list(a.var["feature_name"]) == list(truth["var"]["feature_name"].iloc[genes])
    assert (a.X != truth["counts"][cells][:, genes]).nnz == 0  # raw counts as stored
    assert {"cell_type_ontology_term_id", "disease_ontology_term_id", "tissue_ontology_term_id", "donor_id"} <= set(a.obs)
    assert json.loads(a.uns["census"])["version"] == VERSION


def test_a_download_killed_after_one_dataset_resumes_without_fetching_it_again(local_census, tmp_path):
    reference = _planned(local_census, tmp_path / "reference")
    download_datasets(reference, progress=False)
    plan = _planned(local_census, tmp_path / "resumed")
    code = ("import os, signal; from pathlib import Path; from compute.census import download_datasets, load_plan; "
            f"download_datasets(load_plan(Path({str(plan.folder)!r})), progress=False, "
            "on_dataset=lambda d, p: os.kill(os.getpid(), signal.SIGKILL))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    first = plan.file(plan.datasets[0].dataset_id)
    assert sorted(plan.folder.glob("*.h5ad")) == [first]  # one whole file, no partial ones
    stamp = (first.stat().st_ino, first.stat().st_mtime_ns)
    fetched = []
    download_datasets(plan, progress=False, on_dataset=lambda d, p: fetched.append(d.dataset_id))
    assert fetched == [d.dataset_id for d in plan.datasets[1:]]  # the first is not downloaded again
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == stamp
    assert not list(plan.folder.glob(".*tmp*"))
    for d in plan.datasets:
        _same_file(plan.file(d.dataset_id), reference.file(d.dataset_id))


# -- the atlas --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def census_atlas(local_census, tmp_path_factory):
    """(manifest path, atlas path, build seconds) of the README's example built from the local Census."""
    from compute.build import build_atlas

    soma_path, _ = local_census
    folder = tmp_path_factory.mktemp("census-atlas")
    path = _write_manifest(folder, _local(_readme_manifest(), soma_path, folder / "atlas"))
    t0 = time.perf_counter()
    atlas = build_atlas(load_manifest(path), quiet=True, scheduler="sync")
    return path, atlas, time.perf_counter() - t0


def test_the_readme_example_builds_an_atlas_of_the_census_datasets(census_atlas, local_census):
    from compute.atlas import Atlas

    _, truth = local_census
    _, path, seconds = census_atlas
    print(f"census atlas built in {seconds:.1f} s")
    atlas = Atlas.open(path, cache=False)
    studies = {s.id: s for s in atlas.studies}
    titles = {d[0]: d[1] for d in DATASETS}
    assert sorted(s.title for s in studies.values()) == sorted(titles[d[0]] for d in DATASETS[:4])
    for entry in atlas.meta["studies"]:
        c = entry["census"]
        assert entry["id"] == f"blood-{c['dataset_id'][:8]}" and entry["source"] == "census"
        assert c["version"] == VERSION and c["collection"] == "SigAtlas test collection" and c["cells"]["selected"] > 0
        assert "tissue_general in ['blood']" in c["value_filter"]
        assert atlas.meta["build"]["source_keys"][entry["id"]].startswith(f"census:{VERSION}:{c['dataset_id']}:")
    cells = atlas.cells.astype({c: str for c in ("study", "sample", "donor", "cell_type", "disease",
                                                 "cell_type_ontology_term_id", "disease_ontology_term_id",
                                                 "tissue_ontology_term_id")})
    obs = truth["obs"]
    for sid in studies:
        sub = cells[cells["study"] == sid]
        dataset = next(d for d in DATASETS if sid == f"blood-{d[0][:8]}")
        donors = set(obs.loc[obs["dataset_id"] == dataset[0], "donor_id"].astype(str))
        assert set(sub["sample"]) == set(sub["donor"]) <= donors and sub["sample"].nunique() == dataset[5]
        assert set(sub["disease_ontology_term_id"]) == {dataset[3]}
    assert set(cells["tissue_ontology_term_id"]) == {"UBERON:0000178"}
    assert set(cells["cell_type_ontology_term_id"]) <= set(obs["cell_type_ontology_term_id"].astype(str))
    assert "CL:0001054" in set(cells["cell_type_ontology_term_id"]) and "" not in set(cells["cell_type_ontology_term_id"])
    assert set(cells["cell_type"]) >= {"CD14-positive monocyte", "natural killer cell"}  # the terms' labels
    assert set(cells["disease"]) == {"COVID-19", "normal", "systemic lupus erythematosus", "infectious disease with sepsis"}
    # the Census's donor columns reach the atlas as donor metadata, each donor's own (issue 36, item 13)
    assert {"sex", "development_stage", "self_reported_ethnicity", "assay"} <= set(atlas.metadata_columns)
    assert set(cells["sex"].astype(str)) == {"female", "male"} and set(cells["development_stage"].astype(str)) == {"adult stage"}
    truth_sex = obs.assign(donor_id=obs["donor_id"].astype(str)).groupby("donor_id", observed=True)["sex"].first().astype(str)
    assert (cells["sex"].astype(str).to_numpy() == truth_sex.loc[cells["donor"]].to_numpy()).all()


def test_a_rebuild_reuses_the_plan_and_the_downloads(census_atlas, tmp_path):
    from compute.build import build_atlas

    path, atlas, _ = census_atlas
    doc = yaml.safe_load(path.read_text())
    doc["studies"][0]["source"]["uri"] = str(tmp_path / "gone")  # a build that needed the Census would fail
    moved = _write_manifest(tmp_path, doc)
    manifest = load_manifest(moved)
    expanded = expand_census(manifest, atlas.parent / f".{atlas.name}.work" / "census", progress=False)
    assert len(expanded.studies) == 4 and all(s.source.path.is_file() for s in expanded.studies)
    assert load_plan(expanded.studies[0].source.path.parent).key == expanded.studies[0].source.census.selection
    t0 = time.perf_counter()
    build_atlas(load_manifest(path), quiet=True, scheduler="sync")  # unchanged: nothing to do
    assert time.perf_counter() - t0 < 30


def test_two_entries_selecting_one_dataset_are_refused(local_census, tmp_path):
    soma_path, _ = local_census
    doc = _local(_entry(), soma_path, tmp_path / "atlas")
    doc["studies"].append({"id": "covid", "source": {**doc["studies"][0]["source"], "filter": {"disease": "COVID-19"}}})
    manifest = parse_manifest(doc, tmp_path / "m.yaml")
    with pytest.raises(CensusError, match=r"dataset 7c1e9f3a.* is selected by census entries 'blood' and 'covid'"):
        expand_census(manifest, tmp_path / "census", progress=False)
    assert not list((tmp_path / "census").rglob("*.h5ad"))  # refused before anything was downloaded

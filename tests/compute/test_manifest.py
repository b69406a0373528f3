"""The manifest parser: valid documents parse; every bad key names itself, the study and the file."""

from __future__ import annotations

import copy

import pytest
import yaml

from compute.errors import ManifestError
from compute.manifest import load_manifest, parse_manifest
from tests.conftest import REPO

BASE = {
    "version": 1,
    "atlas": {"name": "demo", "out": "atlas/demo"},
    "seed": 0,
    "model": {"kind": "train"},
    "studies": [
        {
            "id": "PBMC68K",
            "title": "10x PBMC 68k (reduced)",
            "source": {"kind": "scanpy-pbmc68k"},
            "organism": "human",
            "tissue": "blood",
            "disease": "healthy",
            "columns": {"cell_type": "bulk_labels", "sample": None, "donor": None},
            "simulated": False,
        },
        {"id": "GSE1", "source": {"kind": "h5ad", "path": "data/GSE1.h5ad"}, "disease": {"column": "disease"}},
    ],
}


def parse(doc, tmp_path):
    return parse_manifest(doc, tmp_path / "data_manifest.yaml")


def test_issue_example_parses_and_resolves_paths(tmp_path):
    m = parse(BASE, tmp_path)
    assert m.atlas.out == (tmp_path / "atlas/demo").resolve()
    assert m.studies[0].cell_type == "bulk_labels" and m.studies[0].disease.value == "healthy"
    gse = m.study("GSE1")
    assert gse.source.path == (tmp_path / "data/GSE1.h5ad").resolve()
    assert gse.disease.column == "disease" and gse.tissue.value is None and gse.tissue.column is None
    assert m.model.kind == "train" and m.model.hidden_sizes == (1024, 1024)


def _mutated(fn):
    doc = copy.deepcopy(BASE)
    fn(doc)
    return doc


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda d: d.update(colour="blue"), ["key 'colour'", "unknown key"]),
        (lambda d: d.pop("studies"), ["key 'studies'", "missing"]),
        (lambda d: d["studies"][1].update(titel="x"), ["study 'GSE1'", "key 'titel'", "unknown key"]),
        (lambda d: d["studies"][1].pop("source"), ["study 'GSE1'", "key 'source'", "missing"]),
        (lambda d: d["studies"][1]["source"].pop("path"), ["study 'GSE1'", "source.path", "missing"]),
        (lambda d: d["studies"][1]["source"].update(kind="loom"), ["study 'GSE1'", "source.kind", "loom"]),
        (lambda d: d["studies"][0]["columns"].update(celltype="x"), ["study 'PBMC68K'", "columns.celltype"]),
        (lambda d: d["studies"][0].update(simulated="yes"), ["study 'PBMC68K'", "key 'simulated'", "true or false"]),
        (lambda d: d["studies"][0].update(organism="rat"), ["study 'PBMC68K'", "key 'organism'", "human, mouse", "'rat'"]),
        (lambda d: d["studies"][1]["source"].update(values="raw"),
         ["study 'GSE1'", "key 'source.values'", "counts, tpm, fpkm, lognorm", "'raw'"]),
        (lambda d: d["studies"][1]["source"].update(values=3), ["study 'GSE1'", "source.values", "a string"]),
        (lambda d: d["studies"][0]["source"].update(values="tpm"), ["study 'PBMC68K'", "source.values", "provides counts"]),
        (lambda d: d["studies"][1].update(disease={"col": "x"}), ["study 'GSE1'", "disease.col"]),
        (lambda d: d.update(version=2), ["key 'version'", "version 1"]),
        (lambda d: d["model"].update(kind="pretrained"), ["model.path", "missing"]),
        (lambda d: d["model"].update(hidden_sizes=[0]), ["model.hidden_sizes", ">= 1"]),
        (lambda d: d["model"].update(epochs=True), ["model.epochs", "boolean"]),
        (lambda d: d["atlas"].pop("out"), ["atlas.out", "missing"]),
        (lambda d: d.update(seed=-1), ["key 'seed'"]),
        (lambda d: d["studies"].append(copy.deepcopy(d["studies"][1])), ["study 'GSE1'", "more than once"]),
        (lambda d: d["studies"][1].update(id="bad id!"), ["key 'id'", "bad id!"]),
        (lambda d: d.update(studies=[]), ["key 'studies'", "empty"]),
        (lambda d: d.update(attribution={"method": "shap"}), ["attribution.method", "shap"]),
        (lambda d: d.update(ingest={"min_genes": "many"}), ["ingest.min_genes", "integer"]),
        (lambda d: d.update(embedding={"umap": "no"}), ["embedding.umap", "true or false"]),
        (lambda d: d.update(embedding={"genes": "common"}), ["embedding.genes", "auto, shared, all", "common"]),
    ],
)
def test_bad_manifests_name_key_study_and_file(tmp_path, mutate, fragments):
    with pytest.raises(ManifestError) as err:
        parse(_mutated(mutate), tmp_path)
    msg = str(err.value)
    assert "data_manifest.yaml" in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_values_and_organism_keys(tmp_path):
    m = parse(BASE, tmp_path)
    assert m.study("GSE1").source.values == "counts" and m.study("GSE1").organism == "human"  # the defaults
    for values in ("counts", "tpm", "fpkm", "lognorm"):
        doc = _mutated(lambda d, v=values: d["studies"][1]["source"].update(values=v))
        doc["studies"][1]["organism"] = "mouse"
        gse = parse(doc, tmp_path).study("GSE1")
        assert (gse.source.values, gse.organism) == (values, "mouse")
    tpm = _mutated(lambda d: d["studies"][1]["source"].update(values="tpm"))
    # the values kind is part of what ingest reads, so it changes the build's fingerprint
    assert parse(tpm, tmp_path).fingerprint() != parse(BASE, tmp_path).fingerprint()


def test_umap_can_be_switched_off(tmp_path):
    m = parse(_mutated(lambda d: d.update(embedding={"umap": False, "n_neighbors": 10})), tmp_path)
    assert m.embedding.umap is False and m.embedding.n_neighbors == 10
    assert parse(_mutated(lambda d: None), tmp_path).embedding.umap is True


def test_embedding_genes_default_to_auto_and_take_shared_or_all(tmp_path):
    assert parse(BASE, tmp_path).embedding.genes == "auto" and parse(BASE, tmp_path).embedding.min_shared_genes == 500
    m = parse(_mutated(lambda d: d.update(embedding={"genes": "shared", "min_shared_genes": 100})), tmp_path)
    assert (m.embedding.genes, m.embedding.min_shared_genes) == ("shared", 100)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstudies: [\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)


def test_committed_demo_manifest_is_what_the_simulator_writes():
    from compute.demo import demo_manifest_text

    committed = (REPO / "data_manifest.yaml").read_text()
    assert committed == demo_manifest_text(), "regenerate: python -m compute simulate --write-manifest data_manifest.yaml"
    m = load_manifest(REPO / "data_manifest.yaml")
    sims = [s for s in m.studies if s.simulated]
    assert len(sims) >= 24 and all(s.title.startswith("SIMULATED") for s in sims)
    assert [s.id for s in m.studies if not s.simulated] == ["PBMC68K"]


def test_yaml_roundtrip_of_base(tmp_path):
    path = tmp_path / "data_manifest.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_manifest(path).fingerprint() == load_manifest(path).fingerprint()

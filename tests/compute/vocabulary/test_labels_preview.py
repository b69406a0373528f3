"""Issue 34: `python -m compute labels MANIFEST` before a build: every label with the term it
would get, how, and a proposal where none; ready-to-paste maps that read back as the same
labels; hostile labels and unreadable studies give clear errors and lose nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from compute.__main__ import main
from compute.manifest import load_manifest

HOSTILE_CELL_TYPES = ["CD14 Mono", "DC2", "  B cells  ", "B cells", "CD4+\nT", "T: cells #1", "'quoted'", '"dq"',
                      "émigré cells", "💥", "- NK", "*anchor", "&x", "yes", "null", "123", "", "nan", "x" * 3000,
                      "CL:9999999", "MONDO:0100096", "CD34+", "Doublet", "tab\there", "{a: b}", "[1, 2]", "? key"]
HOSTILE_DISEASES = ["control", "RA", "septic shock", "COVID19", "HIV", "lupus", "", "healthy"]


def _write_study(path, cell_types, diseases):
    import anndata as ad
    import scipy.sparse as sp

    n = len(cell_types)
    obs = pd.DataFrame({"ct": cell_types, "dis": [diseases[i % len(diseases)] for i in range(n)]},
                       index=[f"c{i}" for i in range(n)])
    ad.AnnData(X=sp.csr_matrix(np.ones((n, 3), dtype=np.float32)), obs=obs,
               var=pd.DataFrame(index=["CD14", "LYZ", "MS4A1"])).write_h5ad(path)


def _manifest(tmp_path, studies):
    doc = {"version": 1, "atlas": {"name": "t", "out": "out"}, "studies": studies}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def _hostile(tmp_path, extra=()):
    cells = HOSTILE_CELL_TYPES * 2  # every label on two cells
    _write_study(tmp_path / "hostile.h5ad", cells, HOSTILE_DISEASES)
    studies = [{"id": "HOSTILE", "source": {"kind": "h5ad", "path": "hostile.h5ad"}, "tissue": "blood",
                "disease": {"column": "dis"}, "columns": {"cell_type": "ct"}}, *extra]
    return _manifest(tmp_path, studies)


def test_labels_preview_of_hostile_labels_loses_nothing_and_pastes_back(tmp_path, capsys):
    path = _hostile(tmp_path)
    assert main(["labels", str(path), "--json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    got = {r["label"]: r for r in study["labels"]["cell_type"]}
    assert set(got) == set(HOSTILE_CELL_TYPES) and all(r["n_cells"] == 2 for r in got.values())
    assert got["DC2"]["term_id"] == "CL:0002399" and got["CD14 Mono"]["term_id"] == "CL:0000860"
    assert got["CD34+"]["term_id"] is None and got["CD34+"]["proposal"] == "CL:0008001"
    assert got["MONDO:0100096"]["term_id"] is None  # a disease id is not a cell type
    dis = {r["label"]: r for r in study["labels"]["disease"]}
    assert set(dis) == set(HOSTILE_DISEASES)
    assert dis["control"]["how"] == "assumed healthy" and "controls are patients" in " ".join(dis["control"]["notes"])
    assert dis["RA"]["term_id"] is None and dis["RA"]["proposal"] == "MONDO:0008383"
    assert dis["septic shock"]["proposal"] == "MONDO:1040015"

    # the text output's maps, pasted into the manifest, read back as the very same labels
    assert main(["labels", str(path)]) == 0
    text = capsys.readouterr().out
    assert "PROPOSED" in text and "assumed healthy" in text
    block = text.split("ready to paste under study HOSTILE's columns:")[1].split("\n", 1)[1]
    pasted = yaml.safe_load(block)
    assert set(pasted["cell_type_map"]) == set(HOSTILE_CELL_TYPES)
    assert set(pasted["disease_map"]) == set(HOSTILE_DISEASES)
    doc = yaml.safe_load(path.read_text())
    doc["studies"][0]["columns"].update(pasted)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    spec = load_manifest(path).studies[0]
    assert set(spec.label_map("cell_type")) == set(HOSTILE_CELL_TYPES)
    # and with the maps in place every label keeps its term (the proposals now applied, by hand)
    assert main(["labels", str(path), "--json"]) == 0
    after = {r["label"]: r for r in json.loads(capsys.readouterr().out)[0]["labels"]["cell_type"]}
    assert after["CD34+"]["term_id"] == "CL:0008001" and after["CD34+"]["how"] == "map"
    assert after["DC2"]["term_id"] == "CL:0002399"


def test_a_study_that_cannot_be_read_is_named_and_the_others_still_previewed(tmp_path, capsys):
    missing = {"id": "GONE", "source": {"kind": "h5ad", "path": "gone.h5ad"}, "disease": "healthy", "tissue": "blood",
               "columns": {"cell_type": "ct"}}
    bad_column = {"id": "BADCOL", "source": {"kind": "h5ad", "path": "hostile.h5ad"}, "disease": "healthy",
                  "tissue": "blood", "columns": {"cell_type": "celltype"}}
    path = _hostile(tmp_path, extra=[missing, bad_column])
    assert main(["labels", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "study HOSTILE" in out and "DC2" in out
    assert "ERROR: file not found" in out and "gone.h5ad" in out
    assert "column 'celltype'" in out and "obs has: ct, dis" in out
    assert "2 of 3 studies could not be read: GONE, BADCOL" in err


def test_a_map_value_that_names_no_term_is_an_error_that_says_where(tmp_path, capsys):
    path = _hostile(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["studies"][0]["columns"]["cell_type_map"] = {"DC2": "not a cell type"}
    path.write_text(yaml.safe_dump(doc))
    assert main(["labels", str(path)]) == 1
    out = capsys.readouterr().out
    assert "columns.cell_type_map" in out and "DC2" in out


def test_labels_preview_names_an_unknown_study(tmp_path, capsys):
    path = _hostile(tmp_path)
    assert main(["labels", str(path), "--study", "NOPE"]) == 2
    assert "no study 'NOPE'" in capsys.readouterr().err


@pytest.mark.slow
def test_labels_preview_on_the_demo_manifest(tmp_path, capsys):
    from compute.demo import SimulationConfig, demo_manifest_text, simulate_studies

    cfg = SimulationConfig(n_studies=3, seed=0, max_genes=300)
    simulate_studies(tmp_path / "data", cfg)
    (tmp_path / "m.yaml").write_text(demo_manifest_text(cfg, data_dir=str(tmp_path / "data")))
    assert main(["labels", str(tmp_path / "m.yaml"), "--json"]) == 0
    studies = json.loads(capsys.readouterr().out)
    assert [s["study"] for s in studies][0] == "PBMC68K" and len(studies) == 4
    pbmc = {r["label"]: r for r in studies[0]["labels"]["cell_type"]}
    assert sum(r["term_id"] is not None for r in pbmc.values()) == 9 and pbmc["CD34+"]["proposal"] == "CL:0008001"
    assert all(r["term_id"] for s in studies[1:] for kind in ("cell_type", "disease") for r in s["labels"][kind])


def test_a_manifest_switch_accepts_the_proposals_and_says_so(tmp_path, capsys):
    from compute.errors import ManifestError

    path = _hostile(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["studies"][0]["columns"]["accept_proposals"] = ["cell_type"]
    doc["studies"][0]["columns"]["cell_type_map"] = {"Doublet": None}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    assert load_manifest(path).studies[0].accept_proposals == ("cell_type",)
    assert main(["labels", str(path), "--json"]) == 0
    labels = json.loads(capsys.readouterr().out)[0]["labels"]
    rows = {r["label"]: r for r in labels["cell_type"]}
    assert (rows["CD34+"]["term_id"], rows["CD34+"]["how"]) == ("CL:0008001", "accepted proposal")
    assert any("accept_proposals" in n for n in rows["CD34+"]["notes"])
    assert rows["Doublet"]["term_id"] is None  # the map leaves it unmapped on purpose
    dis = {r["label"]: r for r in labels["disease"]}
    assert dis["RA"]["term_id"] is None  # diseases were not asked for
    doc["studies"][0]["columns"]["accept_proposals"] = ["cell_types"]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(ManifestError, match="columns.accept_proposals.*unknown kind 'cell_types'"):
        load_manifest(path)

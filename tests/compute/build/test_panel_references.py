"""Issue 34, item 5: a partial-panel study is calibrated on reference cells of its own tissue and
cell lineage (never myoblasts for blood), the build report names the references chosen and
those left out; a mixture label (PBMC) is no triplet negative of its lineage's cell types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from compute.vocabulary import cell_lineages, term_relation, tissues_related

BLOOD, VENOUS, MUSCLE = "UBERON:0000178", "UBERON:0013756", "UBERON:0001134"
PBMC, MONOCYTE, NK, MYOBLAST, NEURON = "CL:2000001", "CL:0000860", "CL:0000623", "CL:0000056", "CL:0000540"


def test_lineages_of_blood_and_muscle_terms():
    assert cell_lineages(MONOCYTE) == {"hematopoietic"} and cell_lineages(PBMC) == {"hematopoietic"}
    assert cell_lineages(MYOBLAST) == {"muscle"} and cell_lineages(NEURON) == {"neural"}
    assert cell_lineages("") == frozenset() and cell_lineages("CL:9999999") == frozenset()


def test_tissues_related_by_term_or_own_label():
    assert tissues_related(BLOOD, VENOUS) and tissues_related(VENOUS, BLOOD)
    assert not tissues_related(BLOOD, MUSCLE)
    assert tissues_related("Tumour core", "tumour core") and not tissues_related("", "")
    assert not tissues_related(BLOOD, "blood-ish")  # an own label is compared as written, never guessed


def test_pbmc_is_no_negative_of_the_blood_types_it_holds():
    rel = term_relation([PBMC, MONOCYTE, NK, NEURON])
    assert rel.loc[PBMC, MONOCYTE] == -1 and rel.loc[NK, PBMC] == -1  # neither positive nor negative
    assert rel.loc[PBMC, NEURON] == 0  # another lineage: still a negative
    assert rel.loc[MONOCYTE, NK] == 0 and rel.loc[PBMC, PBMC] == 1


def test_candidates_keep_blood_cells_and_name_the_myoblasts_left_out():
    from compute.build._calibration import _candidates

    entries = [{"id": "BLOOD_FULL"}, {"id": "HSMM"}, {"id": "MIXED"}]
    partial = (np.array([BLOOD] * 4), np.array([MONOCYTE, NK, PBMC, ""]))
    context = {
        0: (np.array([BLOOD, VENOUS, BLOOD]), np.array([PBMC, MONOCYTE, ""])),
        1: (np.array([MUSCLE] * 3), np.array([MYOBLAST] * 3)),
        2: (np.array([BLOOD, BLOOD]), np.array([NEURON, NK])),  # a blood study's one mislabelled cell is left out
    }
    masks, rule, left_out = _candidates(partial, context, entries)
    assert masks[0].tolist() == [True, True, False]  # the cell with no cell-type term has no known lineage
    assert not masks[1].any() and masks[2].tolist() == [False, True]
    assert rule == {"tissues": ["blood"], "lineages": ["hematopoietic"]}
    assert list(left_out) == ["HSMM"] and "skeletal muscle" in left_out["HSMM"] and "not blood" in left_out["HSMM"]


def _study(n: int, genes: list[str], cell_types: list[str], tissue: str, seed: int):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    # a few marker blocks so types differ; counts high enough for QC on a small panel
    X = rng.poisson(1.0, size=(n, len(genes))).astype(np.float32)
    types = rng.choice(cell_types, n)
    for k, t in enumerate(cell_types):
        X[types == t, k * 20:(k + 1) * 20] += rng.poisson(8.0, size=(int((types == t).sum()), 20))
    obs = pd.DataFrame({"cell_type": types, "disease": "healthy", "tissue": tissue}, index=[f"s{seed}c{i}" for i in range(n)])
    return ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def tissue_atlas(tmp_path_factory):
    """A SIMULATED three-study atlas: blood on a full panel, myoblasts (skeletal muscle) on a full
    panel, and blood on a third of the genes."""
    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.manifest import load_manifest
    from compute.reference import immune_markers

    work = tmp_path_factory.mktemp("tissues")
    markers = sorted({g for gs in immune_markers().values() for g in gs})[:120]
    genes = markers + [f"GENE{i}" for i in range(360 - len(markers))]
    blood = ["classical monocyte", "natural killer cell", "B cell"]
    studies = {"BLOOD_FULL": _study(240, genes, blood, "blood", 1), "MYO_FULL": _study(240, genes, ["myoblast"], "skeletal muscle tissue", 2),
               "BLOOD_PANEL": _study(240, genes, blood, "blood", 3)[:, genes[:120]].copy()}
    entries = []
    for sid, a in studies.items():
        a.write_h5ad(work / f"{sid}.h5ad")
        entries.append({"id": sid, "title": f"{sid} (simulated)", "simulated": True, "source": {"kind": "h5ad", "path": f"{sid}.h5ad"},
                        "tissue": {"column": "tissue"}, "disease": {"column": "disease"},
                        "columns": {"cell_type": "cell_type", "sample": None, "donor": None}})
    manifest = {"version": 1, "atlas": {"name": "tissues", "out": "atlas"}, "seed": 0,
                "model": {"kind": "train", "hidden_sizes": [32], "latent_dim": 8, "epochs": 1, "batch_size": 128},
                "ingest": {"min_genes": 20, "min_counts": 50, "min_gene_overlap": 100},
                "attribution": {"method": "ig", "n_steps": 10, "batch_size": 256}, "embedding": {"umap": False}, "studies": entries}
    (work / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    build_atlas(load_manifest(work / "manifest.yaml"), scheduler="sync", quiet=True)
    return Atlas.open(work / "atlas", cache=False)


def test_a_blood_panel_is_calibrated_on_blood_never_on_myoblasts(tissue_atlas):
    from compute.atlas import study_report_text

    entry = {e["id"]: e for e in tissue_atlas.meta["studies"]}
    calibration = entry["BLOOD_PANEL"]["panel"]["calibration"]
    assert entry["BLOOD_PANEL"]["panel"].get("gene_scale"), calibration
    assert set(calibration["reference_studies"]) == {"BLOOD_FULL"}
    assert calibration["reference_rule"] == {"tissues": ["blood"], "lineages": ["hematopoietic"]}
    assert "MYO_FULL" in calibration["references_left_out"]
    text = study_report_text(tissue_atlas.meta)
    panel_line = next(line for line in text.splitlines() if "Panel calibration" in line)
    assert "BLOOD_FULL" in panel_line and "cells of its tissue (blood) and lineage (hematopoietic)" in panel_line
    assert "left out: MYO_FULL (tissue skeletal muscle tissue, not blood)" in panel_line


def test_the_build_report_shows_the_label_transfer_per_label(tissue_atlas):
    from compute.atlas import label_rows, study_report_text

    entry = {e["id"]: e for e in tissue_atlas.meta["studies"]}
    transfer = entry["BLOOD_PANEL"]["report"]["vocabulary"]["cell_type"]["transfer"]
    assert {r["label"] for r in transfer} <= {"classical monocyte", "natural killer cell", "B cell"} and transfer
    for r in transfer:
        assert r["verdict"] in ("supported", "not settled", "contradicted") and 0 < r["share"] <= 1 and r["n_cells"] >= 10
    text = study_report_text(tissue_atlas.meta)
    assert text.count("Neighbours in other studies (label transfer):") >= 2
    rows = [r for r in label_rows(entry["BLOOD_PANEL"]) if r["kind"] == "cell_type"]
    assert all(r["neighbours"] and r["neighbours"].split(":")[0] in ("supported", "not settled", "contradicted") for r in rows
               if r["label"] in {t["label"] for t in transfer})


def _entry_with_evidence() -> dict:
    """An atlas entry's report as the build writes it: a matched label the neighbours support, one
    they contradict, an unmatched label with the text's, the neighbours' and the markers' proposals."""
    return {"id": "S", "report": {"vocabulary": {
        "cell_type": {
            "mapped": [{"label": "CD56+ NK", "term_id": NK, "term_label": "natural killer cell", "how": "reader", "n_cells": 31},
                       {"label": "DC2", "term_id": "CL:0000784", "term_label": "plasmacytoid dendritic cell", "how": "synonym",
                        "n_cells": 20}],
            "unmapped": [{"label": "Cluster 7", "reason": "no term with this label or synonym", "n_cells": 40}],
            "proposals": [{"label": "Cluster 7", "proposal": MONOCYTE, "proposal_label": "classical monocyte"}],
            "evidence": {"supported": 1, "not_settled": 1, "flags": [{"label": "DC2", "term_id": "CL:0000784", "set": "cDC2",
                                                                     "score": -0.4}],
                         "proposals": [{"label": "Cluster 7", "proposal": MONOCYTE, "set": "CD14+ Monocyte"}]},
            "transfer": [{"label": "Cluster 7", "n_cells": 40, "term": MONOCYTE, "term_label": "classical monocyte", "share": 0.9,
                          "verdict": "proposed", "text": "90% of its 40 cells' neighbours say CL:0000860: proposed, not applied"},
                         {"label": "CD56+ NK", "n_cells": 31, "term": NK, "term_label": "natural killer cell", "share": 0.8,
                          "verdict": "supported", "text": "80% of its 31 cells' neighbours say CL:0000623 natural killer cell"},
                         {"label": "DC2", "n_cells": 20, "term": "CL:0002399", "term_label": "CD1c-positive myeloid dendritic cell",
                          "share": 0.7, "verdict": "contradicted", "text": "CHECK: 70% of its 20 cells' neighbours say CL:0002399"}]},
        "disease": {"mapped": [{"label": "healthy", "term_id": "PATO:0000461", "term_label": "normal", "how": "healthy",
                                "n_cells": 91}], "unmapped": []}}}}


def test_label_rows_and_the_studies_tab_show_term_how_evidence_and_proposal():
    from compute.atlas import label_rows, transfer_line
    from dashboard import ids
    from dashboard.views.studies import study_vocabulary_table

    entry = _entry_with_evidence()
    rows = {r["label"]: r for r in label_rows(entry)}
    assert rows["CD56+ NK"]["how"] == "by reading the label" and rows["CD56+ NK"]["neighbours"].startswith("supported:")
    assert rows["DC2"]["neighbours"].startswith("contradicted: CHECK") and "cDC2" in rows["DC2"]["markers"]
    assert rows["Cluster 7"]["term_id"] is None and rows["Cluster 7"]["how"] == "no term with this label or synonym"
    proposal = rows["Cluster 7"]["proposal"]
    assert "classical monocyte (CL:0000860) from the label's text" in proposal
    assert "from its cells' neighbours in other studies (90%)" in proposal and "from its cells' marker genes" in proposal
    assert "not applied" in proposal and rows["healthy"]["proposal"] is None
    line = transfer_line(entry)
    assert "1 cell-type labels supported" in line and "CHECK, the neighbours contradict" in line and "'DC2'" in line
    assert "the neighbours propose (not applied): 'Cluster 7' -> classical monocyte" in line

    table = study_vocabulary_table("S", entry)
    assert table.id == f"{ids.STUDY_VOCABULARY_PREFIX}S"
    cells = [[str(td.children) for td in tr.children] for tr in table.children[1].children]
    by_label = {c[1]: c for c in cells}
    assert by_label["CD56+ NK"][2:5] == ["natural killer cell", NK, "by reading the label"]
    assert by_label["CD56+ NK"][6].startswith("supported:")
    assert by_label["Cluster 7"][2] == "no term: kept as its own group" and by_label["Cluster 7"][6].startswith("PROPOSED: classical monocyte")
    assert "CHECK" in by_label["DC2"][6] and by_label["healthy"][4] == "healthy -> normal (PATO)"
    assert study_vocabulary_table("S", {"report": {}}) is None

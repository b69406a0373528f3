"""Issue 34, item 2: evidence from the cells. A label's cells are weighed against known marker
sets; a text match the cells contradict is flagged, a label the text cannot settle gets the
markers' proposal with its margin, and nothing is applied."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from compute.__main__ import main
from compute.vocabulary import judge_markers, marker_evidence, marker_sets, match_label, ontologies

PDC_GENES = ["LILRA4", "CLEC4C", "IL3RA", "SERPINF1", "SCT", "LRRC26"]
CDC2_GENES = ["CD1C", "FCER1A", "CLEC10A"]
B_GENES = ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"]
FILLER = ["ACTB", "GAPDH", "B2M", "MALAT1", "TMSB4X", "EEF1A1", "RPL13", "RPS27", "FTL", "TPT1"]
GENES = PDC_GENES + CDC2_GENES + B_GENES + FILLER


def _counts(groups: dict[str, list[str]], n: int = 40, seed: int = 0):
    """Counts (cells x GENES) and labels: each label's cells express its listed genes highly."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, genes in groups.items():
        lam = np.full(len(GENES), 0.2)
        lam[[GENES.index(g) for g in FILLER]] = 20
        lam[[GENES.index(g) for g in genes]] = 15
        rows.append(rng.poisson(lam, size=(n, len(GENES))))
        labels += [label] * n
    return np.vstack(rows).astype(np.float32), np.array(labels, dtype=object)


def _log(counts):
    return np.log1p(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 1e4)


GROUPS = {"pDC": CDC2_GENES, "B cells": B_GENES, "cluster 7": PDC_GENES, "Mono": []}


def test_every_marker_set_names_live_terms_and_known_genes():
    onto = ontologies()
    for name, (terms, genes) in marker_sets().items():
        assert terms and genes, name
        assert all(onto.term(t) is not None and onto.kind_of(t) == "cell_type" for t in terms), name


def test_a_text_match_the_cells_contradict_is_flagged():
    counts, labels = _counts(GROUPS)
    ev = marker_evidence(_log(counts), GENES, labels)
    pdc = match_label("pDC", "cell_type").term_id
    verdict, text = judge_markers(ev["pDC"], pdc)  # the label says pDC; the cells are CD1C+ cDC2
    assert verdict == "contradicted" and text.startswith("CHECK") and "CD1C+ dendritic cell" in text
    assert ev["pDC"].terms == ("CL:0002399",)
    verdict, _ = judge_markers(ev["B cells"], match_label("B cells", "cell_type").term_id)
    assert verdict == "supported"
    # a label the text cannot settle: the markers propose, with their margin
    assert not match_label("cluster 7", "cell_type").mapped
    verdict, text = judge_markers(ev["cluster 7"], None)
    assert verdict == "proposed" and "CL:0000784" in text and "not applied" in text and ev["cluster 7"].confidence > 0
    # cells expressing no known set say nothing
    assert judge_markers(ev["Mono"], "CL:0000576")[0] == "not settled"
    assert judge_markers(None, "CL:0000576")[0] == "not settled"


def test_evidence_does_not_depend_on_gene_order_or_storage():
    counts, labels = _counts(GROUPS, seed=1)
    X = _log(counts)
    order = np.random.default_rng(2).permutation(len(GENES))
    a = marker_evidence(X, GENES, labels)
    b = marker_evidence(sp.csr_matrix(X[:, order]), [GENES[i] for i in order], labels)
    assert {k: (v.best, v.score) for k, v in a.items()} == {k: (v.best, v.score) for k, v in b.items()}


def _write_study(tmp_path, seed: int) -> None:
    """One study of GROUPS' simulated cells (labels in column "ct") as s.h5ad, and m.yaml naming it."""
    import anndata as ad

    counts, labels = _counts(GROUPS, seed=seed)
    obs = pd.DataFrame({"ct": labels}, index=[f"c{i}" for i in range(len(labels))])
    ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=GENES)).write_h5ad(tmp_path / "s.h5ad")
    doc = {"version": 1, "atlas": {"name": "t", "out": "out"},
           "studies": [{"id": "S", "source": {"kind": "h5ad", "path": "s.h5ad"}, "disease": "healthy", "tissue": "blood",
                        "columns": {"cell_type": "ct"}}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))


def test_the_labels_command_shows_the_cells_evidence(tmp_path, capsys):
    _write_study(tmp_path, seed=3)
    assert main(["labels", str(tmp_path / "m.yaml"), "--markers", "--json"]) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)[0]["labels"]["cell_type"]}
    assert rows["pDC"]["term_id"] == "CL:0000784" and rows["pDC"]["markers"]["verdict"] == "contradicted"
    assert rows["pDC"]["markers"]["proposal"] == "CL:0002399"
    assert rows["cluster 7"]["term_id"] is None and rows["cluster 7"]["markers"]["proposal"] == "CL:0000784"
    assert main(["labels", str(tmp_path / "m.yaml"), "--markers"]) == 0
    assert "cells: contradicted: CHECK" in capsys.readouterr().out


def test_the_neighbours_majority_supports_contradicts_or_proposes():
    from compute.vocabulary import judge_transfer, transfer_evidence

    labels = ["pDC"] * 20 + ["B"] * 20 + ["x"] * 20 + ["few"] * 3
    predicted = ["CL:0002399"] * 18 + ["CL:0000784"] * 2 + ["CL:0000788"] * 20 + ["CL:0000784"] * 15 + [""] * 5 + ["CL:0000236"] * 3
    ev = transfer_evidence(labels, predicted)
    assert (ev["pDC"].term, ev["pDC"].share) == ("CL:0002399", 0.9)
    assert ev["x"].n_cells == 15 and "few" not in ev  # cells with no prediction do not vote
    assert judge_transfer(ev["pDC"], "CL:0000784")[0] == "contradicted"
    assert judge_transfer(ev["B"], "CL:0000236")[0] == "supported"  # naive B cell is a B cell
    assert judge_transfer(ev["x"], None)[0] == "proposed"
    assert judge_transfer(None, "CL:0000236")[0] == "not settled"


def test_the_labels_command_shows_the_neighbours_of_a_built_atlas(tiny_build, capsys):
    manifest, atlas, _ = tiny_build
    assert main(["labels", str(manifest), "--atlas", str(atlas), "--study", "PBMC68K", "--json"]) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)[0]["labels"]["cell_type"]}
    assert rows["CD34+"]["transfer"]["term"]  # an unmatched label: what its neighbours say, as a proposal
    assert rows["CD34+"]["transfer"]["verdict"] in ("proposed", "not settled")
    assert {r["transfer"]["verdict"] for r in rows.values()} <= {"supported", "contradicted", "proposed", "not settled"}
    assert sum(r["transfer"]["verdict"] == "supported" for r in rows.values()) >= 3


def test_the_build_report_flags_what_the_cells_contradict(tmp_path):
    from compute.atlas import study_report_lines
    from compute.atlas._report import evidence_line
    from compute.ingest import ingest_report, qc_and_normalise, read_study
    from compute.manifest import IngestSpec, load_manifest

    _write_study(tmp_path, seed=4)
    spec = load_manifest(tmp_path / "m.yaml").studies[0]
    report = ingest_report(qc_and_normalise(read_study(spec), spec, IngestSpec(min_genes=1, min_counts=1)))
    ev = report["vocabulary"]["cell_type"]["evidence"]
    assert [f["label"] for f in ev["flags"]] == ["pDC"] and ev["flags"][0]["proposal"] == "CL:0002399"
    assert [p["label"] for p in ev["proposals"]] == ["cluster 7"] and ev["supported"] >= 1
    line = evidence_line({"report": report})
    assert "CHECK" in line and "'pDC'" in line and "'cluster 7' -> CL:0000784" in line
    assert line in study_report_lines({"report": report})

"""Real studies compared fairly (issue 14, the atlas and query side), on real cells shipped in
packages: celltypist's 559-cell sample on its full panel and on the 765 genes of scanpy's PBMC
68k study, plus the PBMC 68k cells themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml

from compute.atlas import Atlas, measured_shares
from compute.build import StudyFailures, build_atlas
from compute.manifest import load_manifest
from compute.query import QueryParams, run_query
from compute.validate import TWO_PANEL_IDS, two_panel_manifest, two_panel_table

# the two copies' study ids ("CT_FULL", "CT_PANEL"); not compute.validate.FULL, which is the
# validation suite's full Profile (compute.validate._run), a different object of the same name
FULL, PANEL = TWO_PANEL_IDS

pytestmark = pytest.mark.slow


# panel-aware training (issue 34): each cell shown on another study's panel half the time, its
# embedding there pulled to its embedding as measured
PANEL_AWARE = {"panel_dropout": 0.5, "panel_consistency": 10.0}


def _built(work, extra_studies=None):
    manifest = two_panel_manifest(work, epochs=8, extra_studies=extra_studies, **PANEL_AWARE)
    os.environ.setdefault("SIGATLAS_THREADS", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_atlas(load_manifest(manifest), scheduler="sync", quiet=True)
    return Atlas.open(work / "atlas", cache=False)


@pytest.fixture(scope="module")
def real_atlas(tmp_path_factory):
    return _built(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def many_atlas(tmp_path_factory):
    """The same three studies with the real non-count studies available here (the brain tumour set,
    HSMM's myoblasts when `make test-data` fetched them)."""
    from compute.validate._real import other_real_studies

    work = tmp_path_factory.mktemp("real-many")
    return _built(work, other_real_studies(work))


def _unmeasured_in_panel(atlas, genes):
    panel = set(atlas.genes[i] for i in atlas.measured("PBMC68K"))
    full = set(atlas.genes[i] for i in atlas.measured(FULL))
    return [g for g in genes if g in full and g not in panel]


def test_a_gene_a_study_never_measured_is_missing_not_zero(real_atlas):
    genes = _unmeasured_in_panel(real_atlas, ["MKI67", "TOP2A"])
    assert genes == ["MKI67", "TOP2A"]
    cov = real_atlas.study_coverage(genes)
    assert cov.loc[FULL, "measured"] == 2 and cov.loc[FULL, "coverage"] == 1.0
    assert cov.loc["PBMC68K", "measured"] == 0 and cov.loc["PBMC68K", "coverage"] == 0.0
    scores = real_atlas.score(genes)
    study = real_atlas.cells["study"].astype(str).to_numpy()
    assert np.isnan(scores[study == "PBMC68K"]).all()
    assert np.isfinite(scores[study == FULL]).all()
    result = run_query(real_atlas, QueryParams(genes=tuple((g, None) for g in genes), cell_min=1, samp_min=1))
    left = result.excluded_studies
    assert {"PBMC68K", PANEL} <= set(left.index)
    assert "measured 0 of the 2 signature genes" in left.loc["PBMC68K", "reason"]
    assert "normal" not in set(result.diseases["group"])  # PBMC 68k's only disease is not ranked on zeros


def test_mixed_coverage_renormalises_weights_over_measured_genes(real_atlas):
    unmeasured = _unmeasured_in_panel(real_atlas, ["MKI67", "TOP2A"])
    panel = [real_atlas.genes[i] for i in real_atlas.measured("PBMC68K")][:3]
    both = real_atlas.score(panel + unmeasured, [1, 1, 1, 5, 5], scale="raw")
    alone = real_atlas.score(panel, scale="raw")
    study = real_atlas.cells["study"].astype(str).to_numpy()
    # PBMC 68k measured only the three panel genes: its score is theirs, not diluted by zeros
    np.testing.assert_allclose(both[study == "PBMC68K"], alone[study == "PBMC68K"], rtol=1e-6)
    cov = real_atlas.study_coverage(panel + unmeasured, [1, 1, 1, 5, 5])
    assert cov.loc["PBMC68K", "coverage"] == pytest.approx(3 / 13)


def test_the_same_cells_on_two_panels_score_alike_on_the_panel_scale(real_atlas):
    table = two_panel_table(real_atlas).set_index("marker set")
    assert len(table) >= 4
    panel, raw, expr = (np.log(table[f"{k}: twin ratio"].astype(float)).abs() for k in ("attr panel", "attr raw", "expr"))
    # SIGnature's rows-to-1,000 values: the 765-gene copy scores higher per cell in every set, several
    # times higher in some (1.4-4.4x with the streamed-batch encoder of issue 22; 3-6x before it)
    assert (table["attr raw: twin ratio"] > 1.25).all(), table["attr raw: twin ratio"].to_dict()
    assert (table["attr raw: twin ratio"] > 3).any() and (table["attr raw: ratio"] > 3).any()
    # the panel scale (the 765-gene studies calibrated gene by gene through the encoder) brings every
    # set's twins within 1.5x of each other, and closer than the raw scale on the median
    assert table["attr panel: twin ratio"].between(1 / 1.5, 1.5).all(), table[["attr panel: twin ratio", "attr raw: twin ratio"]].to_dict()
    assert panel.median() < raw.median(), table[["attr panel: twin ratio", "attr raw: twin ratio"]].to_dict()
    # expression normalised to 10,000 x the measured share: the twins agree within 25%, hit rates within 1.6x
    assert (expr < np.log(1.25)).all(), table["expr: twin ratio"].to_dict()
    assert (table["expr: ratio"] <= 1.6).all(), table[["expr: full", "expr: 765"]].to_dict()


def test_every_marker_set_on_two_panels_within_1_5x(real_atlas):
    table = two_panel_table(real_atlas).set_index("marker set")
    assert (table["attr panel: ratio"] <= 1.5).all() and table["attr panel: twin ratio"].between(1 / 1.5, 1.5).all()
    # the measured share alone (one number per study) did not: the per-gene calibration does the work
    entry = {e["id"]: e for e in real_atlas.meta["studies"]}
    assert entry[PANEL]["panel"]["gene_scale"] and entry[FULL]["panel"].get("gene_scale") is None
    calibration = entry[PANEL]["panel"]["calibration"]
    # its reference: full-panel cells matched to its own cells in the embedding, less those its QC would drop
    assert set(calibration["reference_studies"]) == {FULL} and 0 < calibration["reference_cells"] <= 500


def test_the_calibration_holds_on_cells_it_never_saw(real_atlas):
    """The build calibrates the 765-gene copy on every full-panel cell, its own twins among them.
    Here the factors come from half of the full-panel cells (through the encoder, as the build
    computes them) and the two copies of the other half are compared: the same marker sets within
    1.5x of each other on the panel scale, as in the whole atlas."""
    from compute.validate import held_out_ratios

    ratios = held_out_ratios(real_atlas)
    said = "; ".join(f"{k} {v:.3f}" for k, v in ratios.items())
    # every set of two genes or more on both panels, as the whole-atlas table compares them: the
    # platelet set keeps one gene on PBMC 68k's panel (CXCR4), compared by neither check (its tail
    # is 1.53x held out: `python -m compute bench panels` prints it)
    assert set(ratios) == {"CD14+ Monocyte", "Natural killer cell", "B cell", "T cell"}, said
    assert all(r <= 1.5 for r in ratios.values()), said


def test_many_studies_calibrate_blood_on_blood_and_keep_every_set_within_1_5x(many_atlas):
    entry = {e["id"]: e for e in many_atlas.meta["studies"]}
    assert len(entry) >= 4  # the brain tumour set (infercnvpy) at least
    for sid in (PANEL, "PBMC68K"):
        calibration = entry[sid]["panel"]["calibration"]
        # blood cells only: never the myoblasts (HSMM) or the brain tumour cells, however alike on the panel's genes
        assert set(calibration["reference_studies"]) == {FULL}, calibration
        assert calibration["reference_rule"] == {"tissues": ["blood"], "lineages": ["hematopoietic"]}
        if "HSMM" in entry:
            assert "HSMM" in calibration["references_left_out"], calibration
    table = two_panel_table(many_atlas).set_index("marker set")
    assert (table["attr panel: ratio"] <= 1.5).all(), table["attr panel: ratio"].to_dict()
    from compute.validate import held_out_ratios

    ratios = held_out_ratios(many_atlas)
    assert all(r <= 1.5 for r in ratios.values()), ratios


def test_the_two_panels_of_the_same_cells_mix_in_the_embedding(real_atlas):
    """The two copies of the same cells are no longer islands: the embedding reads the genes every
    study measured (embedding.genes: auto), so perfect mixing, about half of a cell's 15 nearest
    neighbours in the other copy, is what the issue asks (0.5 of it at least)."""
    from compute.integration import integration_metrics

    record = real_atlas.meta["method"]["embedding_genes"]
    assert record["genes"] == "shared" and record["n_genes"] == real_atlas.measured(PANEL).size, record
    study = real_atlas.cells["study"].astype(str).to_numpy()
    both = np.isin(study, [FULL, PANEL])
    m = integration_metrics(real_atlas.embedding()[both], np.full(int(both.sum()), "PBMC", dtype=object), study[both])
    # 1.04 of perfect mixing (0.06 with the embedding on every gene, panel-aware training as here;
    # 0.00 without it: `python -m compute bench panels`)
    assert m.mixing >= 0.5, m.text()
    # each cell's twin is among its nearest neighbours in the other copy
    # each cell lands on its twin (the same cell id in the other copy; the panel's QC keeps fewer)
    emb, ids = real_atlas.embedding(), real_atlas.cells["cell_id"].astype(str).to_numpy()
    full_row = {c: i for i, c in enumerate(ids) if study[i] == FULL}
    pairs = np.array([(full_row[ids[i]], i) for i in np.flatnonzero(study == PANEL)])
    twin_d = np.linalg.norm(emb[pairs[:, 0]] - emb[pairs[:, 1]], axis=1)
    assert len(pairs) > 400 and np.median(twin_d) < 1e-3, (len(pairs), np.median(twin_d))


def test_measured_shares_recover_the_share_of_a_sub_panel():
    rng = np.random.default_rng(0)
    profile = rng.gamma(0.5, size=200)
    panel = np.sort(rng.choice(200, 60, replace=False))
    sub = np.zeros(200)
    sub[panel] = profile[panel]
    phi = measured_shares([profile, sub], [np.arange(200), panel], 200)
    assert phi[0] == pytest.approx(1.0)
    assert phi[1] == pytest.approx(profile[panel].sum() / profile.sum(), rel=1e-6)


def test_build_report_warns_and_info_json_is_only_json(real_atlas):
    warnings_ = real_atlas.meta["report"]["warnings"]
    assert any("PBMC68K" in w and "triplet" in w for w in warnings_)
    entry = {e["id"]: e for e in real_atlas.meta["studies"]}
    assert entry[PANEL]["panel"]["n_genes_measured"] < 800 and entry[FULL]["panel"]["attr_share"] == pytest.approx(1.0, abs=5e-3)
    assert entry[PANEL]["report"]["qc"]["scaled_for_panel"] is True
    out = subprocess.run([sys.executable, "-m", "compute", "info", str(real_atlas.path), "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)  # nothing but JSON on stdout
    assert {s["id"] for s in doc["studies"]} == {FULL, PANEL, "PBMC68K"}
    text = subprocess.run([sys.executable, "-m", "compute", "info", str(real_atlas.path)], capture_output=True, text=True, check=True).stdout
    assert "build report:" in text and "Measured share" in text and "QC: 559 cells in" in text


def test_no_shared_cell_type_is_reported(tmp_path):
    from compute.build import atlas_warnings

    ingested = [{"id": "A", "cell_types": ["T cell"]}, {"id": "B", "cell_types": ["CD4+ T"]}]
    assert "triplet loss" in atlas_warnings(ingested)[0] and "never engages" in atlas_warnings(ingested)[0]
    assert atlas_warnings([{"id": "A", "cell_types": ["T"]}, {"id": "B", "cell_types": ["T"]}]) == []


def test_every_failing_study_is_named_once(tmp_path):
    from tests.realdata import oligodendroglioma_tpm, write

    write(oligodendroglioma_tpm(), tmp_path / "tpm.h5ad")
    studies = [
        {"id": "GONE", "source": {"kind": "h5ad", "path": "missing.h5ad"}, "disease": "normal", "tissue": "blood"},
        {"id": "TPM_AS_COUNTS", "source": {"kind": "h5ad", "path": "tpm.h5ad"}, "disease": "normal", "tissue": "brain"},
        {"id": "PBMC68K", "source": {"kind": "scanpy-pbmc68k"}, "disease": "normal", "tissue": "blood",
         "columns": {"cell_type": "bulk_labels"}},
    ]
    studies.append({"id": "GONE_TOO", "source": {"kind": "h5ad", "path": "missing-too.h5ad"}, "disease": "normal", "tissue": "blood"})
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "atlas": {"name": "x", "out": "atlas"}, "studies": studies}))
    # missing files are all found before any work, each named on its own line
    with pytest.raises(StudyFailures) as info:
        build_atlas(load_manifest(manifest), scheduler="sync", quiet=True)
    assert list(info.value.failures) == ["GONE", "GONE_TOO"]
    # fix the paths: two studies now fail at ingest on the Dask cluster; one line each, no traceback
    studies[0].update(id="TPM_TOO", source={"kind": "h5ad", "path": "tpm.h5ad"})
    studies.pop()
    manifest.write_text(yaml.safe_dump({"version": 1, "atlas": {"name": "x", "out": "atlas"}, "studies": studies}))
    proc = subprocess.run([sys.executable, "-m", "compute", "build", str(manifest), "--quiet", "--workers", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "error: 2 of the manifest's studies failed at ingest:"
    assert lines[1].strip().startswith("TPM_TOO:") and "source.values" in lines[1]
    assert lines[2].strip().startswith("TPM_AS_COUNTS:") and "source.values" in lines[2]


def test_other_real_studies_are_written_with_their_value_kinds(tmp_path):
    from compute.validate._real import other_real_studies
    from tests.realdata import hsmm_available

    entries = {e["id"]: e for e in other_real_studies(tmp_path / "new-folder")}
    assert entries["OLIGO"]["source"] == {"kind": "h5ad", "path": "OLIGO.h5ad", "values": "tpm"}
    assert (tmp_path / "new-folder" / "OLIGO.h5ad").is_file()
    if hsmm_available():
        assert entries["HSMM"]["source"]["values"] == "fpkm" and (tmp_path / "new-folder" / "HSMM.h5ad").is_file()

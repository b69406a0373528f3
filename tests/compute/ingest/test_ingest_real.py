"""Ingest of real studies: values kinds, symbol harmonisation, species, QC and the study report.

Every test runs on real cells shipped inside packages (scanpy, celltypist, infercnvpy) or
fetched by ``make test-data`` (HSMMSingleCell); see tests/realdata.py.
"""

from __future__ import annotations

import json
from collections import Counter

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from compute.errors import IngestError
from compute.ingest import ingest_report, qc_and_normalise, read_study
from compute.manifest import FieldSpec, IngestSpec, SourceSpec, StudySpec
from tests import realdata as rd

REPORT_KEYS = {"values", "species", "symbols", "qc", "n_genes_measured", "vocabulary", "metadata", "warnings"}


def _spec(path, *, values="counts", organism="human", cell_type=None, sid="REAL1") -> StudySpec:
    return StudySpec(id=sid, title=sid, source=SourceSpec(kind="h5ad", path=path, values=values),
                     organism=organism, cell_type=cell_type)


def _ingest(adata, tmp_path, name, ingest=None, **kw):
    """(read_study's AnnData, QC'd AnnData, spec) of ``adata`` written to an h5ad."""
    spec = _spec(rd.write(adata, tmp_path / f"{name}.h5ad"), **kw)
    raw = read_study(spec)
    return raw, qc_and_normalise(raw, spec, ingest or IngestSpec()), spec


def _col(adata, gene) -> np.ndarray:
    return np.asarray(adata[:, gene].X.todense()).ravel().astype(np.float64)


def _pbmc_processed():
    a = rd.pbmc68k_processed()
    a.obs["disease"], a.obs["tissue"] = "normal", "blood"
    return a


# -- (a) symbols --------------------------------------------------------------------------------
OLD_NAMES = {"RTCB": "C22orf28", "HMCES": "C3orf37", "PHYKPL": "AGXT2L2"}


def _current_panel(full, extra=()):
    """``full`` on the genes it names by current symbols (and ``extra``), so that the report's
    lists (capped at 200) hold exactly the decisions a test makes."""
    from compute.query import symbol_table

    table = symbol_table()
    keep = [table.current.get(g.upper()) == g or g in extra for g in map(str, full.var_names)]
    return full[:, keep].copy()


def test_previous_symbols_in_two_studies_land_on_one_current_symbol(tmp_path):
    full = rd.celltypist_counts()
    current = _current_panel(full)
    assert current.n_vars > 15_000 and set(OLD_NAMES) <= set(current.var_names)
    renamed = current.copy()
    renamed.var_names = [OLD_NAMES.get(g, g) for g in map(str, current.var_names)]
    a, _, _ = _ingest(current, tmp_path, "current")
    b, _, _ = _ingest(renamed, tmp_path, "renamed")
    for new, old in OLD_NAMES.items():
        assert new in a.var_names and new in b.var_names and old not in b.var_names
        # the same real counts, now under the current symbol in both studies
        np.testing.assert_array_equal(_col(b, new), _col(a, new))
        np.testing.assert_array_equal(_col(b, new), np.asarray(full[:, new].X.todense()).ravel())
    assert list(a.var_names) == list(b.var_names)
    rep_a, rep_b = ingest_report(a)["symbols"], ingest_report(b)["symbols"]
    assert rep_a["renamed"] == [] and rep_a["n_renamed"] == 0
    assert sorted(map(tuple, rep_b["renamed"])) == sorted((old, new) for new, old in OLD_NAMES.items())
    assert rep_b["renamed_by"] == {"previous": 3}


def test_case_alias_conflict_and_ambiguous_names_are_decided_and_listed(tmp_path):
    study = _current_panel(rd.celltypist_counts(), extra={"NKG2-E", "QARS"})
    names = list(map(str, study.var_names))
    assert {"CD14", "NKG2-E", "KLRC3", "QARS"} <= set(names)
    study.var_names = ["cd14" if g == "CD14" else g for g in names]  # a human study in lower case
    a, _, _ = _ingest(study, tmp_path, "decisions")
    rep = ingest_report(a)["symbols"]
    assert "CD14" in a.var_names and "cd14" not in a.var_names
    assert rep["renamed"] == [["cd14", "CD14"]] and rep["renamed_by"] == {"case": 1}
    # NKG2-E is an alias of KLRC3 only, and the study measures KLRC3 itself: kept apart
    assert rep["conflicts"] == [["NKG2-E", "KLRC3"]] and "NKG2-E" in a.var_names
    np.testing.assert_array_equal(_col(a, "KLRC3"), np.asarray(study[:, "KLRC3"].X.todense()).ravel())
    # QARS was the symbol of two genes (EPRS1, QARS1): unchanged, listed with both
    assert [[n, sorted(g)] for n, g in rep["ambiguous"]] == [["QARS", ["EPRS1", "QARS1"]]]
    assert "QARS" in a.var_names
    assert rep["n_in"] == len(names) and rep["n_out"] == a.n_vars == ingest_report(a)["n_genes_measured"]


# -- (b) duplicates and Ensembl ids (HSMM) --------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Variable names are not unique")  # HSMM's duplicated names, on purpose
def test_hsmm_duplicated_short_names_are_summed_and_reported(tmp_path):
    rd.require_hsmm()
    hsmm = rd.hsmm_fpkm("symbol")
    names = list(map(str, hsmm.var_names))
    dup = {n: c for n, c in Counter(names).items() if c > 1}
    a, _, _ = _ingest(hsmm, tmp_path, "hsmm", values="fpkm")
    rep = ingest_report(a)["symbols"]
    assert rep["n_duplicates_summed"] == len(dup) == 188
    assert {n: c for n, c in rep["duplicates_summed"]} == dict(list(dup.items())[:200])
    assert a.var_names.is_unique
    # a duplicated name no other name was merged into: its column is the sum of its copies,
    # rescaled per cell like every FPKM value
    merged = {new for new, _ in rep["merged"]}
    fpkm = sp.csr_matrix(hsmm.X, dtype=np.float64)
    scale = 1e4 / np.asarray(fpkm.sum(axis=1)).ravel()
    checked = 0
    for name in dup:
        if name in a.var_names and name not in merged:
            cols = [i for i, n in enumerate(names) if n == name]
            expect = np.asarray(fpkm[:, cols].sum(axis=1)).ravel() * scale
            np.testing.assert_allclose(_col(a, name), expect, rtol=1e-5, atol=1e-6)
            checked += 1
    assert checked >= 50


def test_hsmm_ensembl_ids_map_through_the_symbol_table(tmp_path):
    rd.require_hsmm()
    hsmm = rd.hsmm_fpkm("ensembl")
    assert str(hsmm.var_names[0]) == "ENSG00000000003.10"
    a, _, _ = _ingest(hsmm, tmp_path, "hsmm-ens", values="fpkm")
    rep = ingest_report(a)["symbols"]
    assert rep["ensembl_mapped"] == hsmm.n_vars
    assert rep["ensembl_via"]["symbol table"] > 30_000
    assert {"TSPAN6", "DPM1", "MYOD1", "MYOG"} <= set(a.var_names)
    assert not any(str(g).startswith("ENSG00000000003") for g in a.var_names)


# -- (c) species ----------------------------------------------------------------------------------------
def test_mouse_copy_is_refused_as_human_and_mapped_to_human_as_mouse(tmp_path):
    human = rd.celltypist_counts()
    mouse = rd.as_mouse(human)
    assert "Cd14" in mouse.var_names and "CD14" not in mouse.var_names
    path = rd.write(mouse, tmp_path / "mouse.h5ad")
    with pytest.raises(IngestError) as err:
        read_study(_spec(path))
    msg = str(err.value)
    assert "study 'REAL1'" in msg and "mouse.h5ad" in msg and "set organism: mouse" in msg
    assert "current human symbols" in msg and "mouse symbols" in msg

    a = read_study(_spec(path, organism="mouse"))
    orth = rd.orthologs()
    humans_of = orth.groupby("mouse")["human"].apply(set).to_dict()
    mouse_names = list(map(str, mouse.var_names))
    one = {m for m in mouse_names if len(humans_of.get(m, ())) == 1}
    sp_rep = ingest_report(a)["species"]
    assert sp_rep["detected"] == "mouse" and sp_rep["mouse_share"] > 0.9
    assert sp_rep["orthologs"]["unmapped"] == len(mouse_names) - len(one) > 0
    assert sp_rep["orthologs"]["mapped"] == len(one)
    # human symbols only: no mouse name survives (C2, F10 and a few more are spelt alike)
    from compute.query import symbol_table

    current = symbol_table().current
    human_names = set(orth["human"])
    assert not (set(mouse_names) - human_names) & set(a.var_names)
    assert all(g in human_names or current.get(g.upper()) == g for g in map(str, a.var_names))
    # a one-to-one gene keeps its real counts under the human symbol
    assert humans_of["Cd14"] == {"CD14"}
    np.testing.assert_array_equal(_col(a, "CD14"), np.asarray(human[:, "CD14"].X.todense()).ravel())
    # a mouse gene with several human orthologs is left out, never upper-cased into one of them
    assert len(humans_of["Hnrnpc"]) > 1 and "Hnrnpc" in mouse_names
    assert "HNRNPC" not in a.var_names


def test_human_study_declared_mouse_is_refused(tmp_path):
    path = rd.write(rd.celltypist_counts(), tmp_path / "human.h5ad")
    with pytest.raises(IngestError, match=r"study 'REAL1'.*organism is 'mouse' but the genes look human.*set organism: human"):
        read_study(_spec(path, organism="mouse"))


# -- (d) values -------------------------------------------------------------------------------------------
def test_tpm_is_refused_as_counts_and_rescaled_as_tpm(tmp_path):
    tpm = rd.oligodendroglioma_tpm()
    path = rd.write(tpm, tmp_path / "oligo.h5ad")
    with pytest.raises(IngestError) as err:
        read_study(_spec(path))
    msg = str(err.value)
    assert "oligo.h5ad" in msg and "look like TPM" in msg and "set source.values: tpm" in msg
    assert "source.values: tpm | fpkm | lognorm" in msg

    raw, out, _ = _ingest(tpm, tmp_path, "oligo-tpm", values="tpm")
    rep = ingest_report(out)
    assert rep["values"]["kind"] == "tpm" and "approximation" in rep["values"]["note"]
    assert rep["qc"]["min_counts"] is None and "not applied" in rep["qc"]["min_counts_note"]
    # pseudo-counts: each cell's TPM scaled to 10,000, in proportion
    np.testing.assert_allclose(np.asarray(raw.X.sum(axis=1)).ravel(), 1e4, rtol=1e-4)
    t = np.asarray(tpm[:, "PTPRZ1"].X.todense()).ravel().astype(np.float64)
    expect = t / np.asarray(sp.csr_matrix(tpm.X, dtype=np.float64).sum(axis=1)).ravel() * 1e4
    np.testing.assert_allclose(_col(raw, "PTPRZ1"), expect, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_fpkm_is_refused_as_counts_and_accepted_as_fpkm(tmp_path):
    rd.require_hsmm()
    hsmm = rd.hsmm_fpkm("symbol")
    path = rd.write(hsmm, tmp_path / "hsmm.h5ad")
    with pytest.raises(IngestError, match=r"hsmm.h5ad.*FPKM.*set source.values: fpkm.*source.values: tpm \| fpkm \| lognorm"):
        read_study(_spec(path))
    _, out, _ = _ingest(hsmm, tmp_path, "hsmm-fpkm", values="fpkm")
    rep = ingest_report(out)
    assert rep["values"] == {**rep["values"], "kind": "fpkm", "source": "X"}
    assert rep["values"]["note"] == "approximation: TPM/FPKM rescaled per cell to 10,000, not counts"
    assert rep["qc"]["cells_in"] == 271


def test_scaled_x_with_lognormalised_raw_names_raw_and_the_setting(tmp_path):
    path = rd.write(_pbmc_processed(), tmp_path / "pbmc-processed.h5ad")
    with pytest.raises(IngestError) as err:
        read_study(_spec(path, cell_type="bulk_labels"))
    msg = str(err.value)
    assert "negative values" in msg and ".raw holds log-normalised values" in msg
    assert "Set source.values: lognorm to use .raw" in msg and "there is no .raw" not in msg


def test_lognorm_from_raw_matches_the_recovered_counts(tmp_path):
    _, out, spec = _ingest(_pbmc_processed(), tmp_path, "pbmc-lognorm", values="lognorm", cell_type="bulk_labels")
    rep = ingest_report(out)
    assert rep["values"]["kind"] == "lognorm" and rep["values"]["source"] == ".raw"
    # the same cells from counts (the scanpy-pbmc68k source recovers them): same normalised values
    counts_spec = StudySpec(id="PBMC68K", title="pbmc", source=SourceSpec(kind="scanpy-pbmc68k"),
                            tissue=FieldSpec(value="blood"), disease=FieldSpec(value="normal"), cell_type="bulk_labels")
    ref = qc_and_normalise(read_study(counts_spec), counts_spec, IngestSpec())
    assert list(out.var_names) == list(ref.var_names) and out.n_obs == ref.n_obs
    np.testing.assert_allclose(out.X.toarray(), ref.X.toarray(), atol=5e-3)


def test_inconsistent_lognorm_and_logged_tpm_are_refused(tmp_path):
    path = rd.write(rd.oligodendroglioma_log2(), tmp_path / "oligo-log2.h5ad")
    with pytest.raises(IngestError) as err:
        read_study(_spec(path, values="lognorm"))
    msg = str(err.value)
    assert "source.values is 'lognorm'" in msg and "expm1 row sums range from" in msg and "within 1%" in msg
    with pytest.raises(IngestError, match=r"source.values is 'tpm'.*looks log-transformed.*2\*\*x - 1"):
        read_study(_spec(path, values="tpm"))
    with pytest.raises(IngestError, match=r"values on a log scale.*Undo the log transform"):
        read_study(_spec(path))


def test_counts_declared_lognorm_are_refused_with_the_hint(tmp_path):
    path = rd.write(rd.celltypist_counts(60), tmp_path / "counts.h5ad")
    with pytest.raises(IngestError, match=r"too large for log1p.*integers: if they are counts, set source.values: counts"):
        read_study(_spec(path, values="lognorm"))


# -- (e) QC -------------------------------------------------------------------------------------------------
def _pbmc_counts_spec():
    return StudySpec(id="PBMC68K", title="pbmc", source=SourceSpec(kind="scanpy-pbmc68k"),
                     tissue=FieldSpec(value="blood"), disease=FieldSpec(value="normal"), cell_type="bulk_labels")


def test_qc_thresholds_scale_with_a_small_panel():
    spec = _pbmc_counts_spec()
    raw = read_study(spec)
    out = qc_and_normalise(raw, spec, IngestSpec(min_genes=200, min_counts=500))
    assert raw.n_vars == 765
    assert out.n_obs > 650  # unscaled, min_genes 200 on 765 genes kept 557 of 700
    qc = ingest_report(out)["qc"]
    assert qc["scaled_for_panel"] is True and qc["min_genes"] == 77 and qc["min_counts"] == 191
    assert (qc["cells_in"], qc["cells_kept"]) == (700, out.n_obs)
    n_genes = np.diff(sp.csr_matrix(raw.X).indptr)
    assert out.n_obs == int(((n_genes >= 77) & (np.asarray(raw.X.sum(axis=1)).ravel() >= 191)).sum())


def test_qc_reports_drops_per_cell_type_and_warns_above_20_percent():
    spec = _pbmc_counts_spec()
    raw = read_study(spec)
    out = qc_and_normalise(raw, spec, IngestSpec(min_genes=620, min_counts=500))
    rep = ingest_report(out)
    qc = rep["qc"]
    threshold = qc["min_genes"]
    assert threshold == round(620 * 765 / 2000)
    n_genes = np.diff(sp.csr_matrix(raw.X).indptr)
    n_counts = np.asarray(raw.X.sum(axis=1)).ravel()
    low_g, low_c = n_genes < threshold, n_counts < qc["min_counts"]
    assert qc["dropped"] == {"min_genes": int((low_g & ~low_c).sum()), "min_counts": int((low_c & ~low_g).sum()),
                             "both": int((low_g & low_c).sum())}
    kept = ~(low_g | low_c)
    types = raw.obs["cell_type"].to_numpy()
    flagged, calm = [], []
    for ct in sorted(set(types)):
        m = types == ct
        assert qc["by_cell_type"][ct] == {"in": int(m.sum()), "kept": int((m & kept).sum()), "dropped": int((m & ~kept).sum())}
        (flagged if (m & ~kept).sum() / m.sum() > 0.2 else calm).append(ct)
    assert flagged and calm  # the threshold splits the cell types
    for ct in flagged:
        assert any(f"'{ct}'" in w and "QC dropped" in w for w in rep["warnings"]), ct
    for ct in calm:
        assert not any(f"'{ct}'" in w for w in rep["warnings"]), ct


def test_a_30_cell_study_warns_that_few_cells_remain(tmp_path):
    _, out, _ = _ingest(rd.celltypist_counts(30), tmp_path, "small")
    rep = ingest_report(out)
    assert out.n_obs == 30 and rep["qc"]["scaled_for_panel"] is False
    assert any("Only 30 cells passed QC" in w for w in rep["warnings"])


# -- the report -------------------------------------------------------------------------------------------------
def test_report_round_trips_through_h5ad(tmp_path):
    _, out, _ = _ingest(rd.oligodendroglioma_tpm(), tmp_path, "oligo-rt", values="tpm")
    out.write_h5ad(tmp_path / "ingested.h5ad")
    back = ad.read_h5ad(tmp_path / "ingested.h5ad")
    rep = ingest_report(back)
    assert set(rep) == REPORT_KEYS and rep == ingest_report(out)
    assert json.loads(back.uns["sigatlas_report"]) == rep
    assert rep["n_genes_measured"] == back.n_vars
    assert rep["species"]["detected"] == "human" and rep["species"]["orthologs"] is None
    with pytest.raises(IngestError, match="no uns\\['sigatlas_report'\\]"):
        ingest_report(ad.AnnData(np.ones((2, 2), dtype=np.float32)))

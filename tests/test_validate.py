"""The validation suite: its metrics on known inputs, its measurements on the tiny SIMULATED
atlas, and one end-to-end run of the quick profile that writes a report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from compute.validate import (
    QUICK,
    auroc,
    evaluate_calibration,
    evaluate_links,
    evaluate_pbmc,
    headline,
    precision_at_k,
    run_validation,
    scenarios,
    verdicts,
)


def test_auroc_and_precision_on_known_inputs():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    assert auroc([0.9, 0.3, 0.5, 0.1], [1, 0, 1, 0]) == 1.0
    assert auroc([0.9, 0.6, 0.5, 0.1], [1, 0, 1, 0]) == 0.75
    assert np.isnan(auroc([1, 2], [1, 1]))
    assert precision_at_k([5, 4, 3, 2], [1, 0, 1, 0], 2) == 0.5
    assert precision_at_k([5, 4, 3, 2], [1, 1, 0, 0], 2) == 1.0
    assert np.isnan(precision_at_k([], [], 1))


def test_scenarios_cover_every_axis_once():
    from compute.validate import FULL

    plan = scenarios(FULL)
    keys = [s.key for s in plan]
    assert len(keys) == len(set(keys))
    assert {s.axis for s in plan} == {"effect", "batch", "depth", "dropout", "seed"}
    assert [s.sim.effect_scale for s in plan if s.axis == "effect"] == list(FULL.effect_levels)
    assert all(s.sim.effect_scale == FULL.robustness_effect for s in plan if s.axis in ("batch", "depth", "dropout", "seed"))
    assert {s.model_seed for s in plan if s.axis == "seed"} == set(FULL.seeds) - {0}


def test_links_on_the_tiny_atlas(tiny_atlas, tiny_build):
    truth = tiny_build[2]
    recs = evaluate_links(tiny_atlas, truth, cell_min=10, samp_min=3)
    assert len(recs) == 2 * len(truth["programs"])
    for r in recs:
        assert 0 <= r["auroc"] <= 1 and 0 <= r["sample_auroc"] <= 1 and 0 <= r["precision_at_k"] <= 1
        assert r["n_groups"] >= 5 and r["k"] >= 2
    ms1 = {r["method"]: r for r in recs if r["program"] == "MS1"}
    # sepsis carries MS1 at full strength in the tiny corpus: both scorings put it first
    # sepsis (strength 1.0) and COVID-19 (0.75) are one study each in the tiny corpus; since the
    # panel-invariant input (issue 14) attribution puts COVID-19 3 points above sepsis there
    # (43% vs 40%), so the check is that the planted diseases fill the top of the ranking
    sepsis = "infectious disease with sepsis"  # the MONDO term of the simulated "sepsis"
    assert ms1["attribution"]["top"] in {sepsis, "COVID-19"} and ms1["attribution"]["precision_at_k"] == 1
    assert ms1["expression"]["top"] == sepsis
    assert ms1["attribution"]["auroc"] >= 0.9


def test_pbmc_markers_hit_their_own_type(tiny_atlas):
    recs = evaluate_pbmc(tiny_atlas)
    by = {r["cell_type"]: r for r in recs}
    assert len(recs) == 10
    b = by["CD19+ B"]
    # real cells: B-cell markers' hits are mostly B cells, far above their 14% share
    for method in ("attribution", "expression"):
        assert b[f"{method}_right_type"] > 3 * b["share_of_cells"]
        assert 0 <= b[f"{method}_right_lineage"] <= 1
        assert b[f"{method}_right_type"] <= b[f"{method}_right_lineage"] + 1e-12


def test_calibration_records(tiny_atlas, tiny_build):
    cal = evaluate_calibration(tiny_atlas, tiny_build[2], n_random=3, size=15, n_null=39, cell_min=10, samp_min=3,
                               marker_sets={"B": ("MS4A1", "CD79A", "CD19")})
    p = cal["p_values"]
    assert set(p["kind"]) == {"random genes", "cell-type markers"}
    assert (p["p_value"] >= cal["p_floor"] - 1e-12).all() and (p["p_value"] <= 1).all()
    rates = cal["rates"]
    row = rates[(rates["signatures"] == "all") & (rates["alpha"] == 0.05)].iloc[0]
    assert row["tests"] == len(p)
    assert row["false_positive_rate"] == pytest.approx((p["p_value"] <= 0.05 + 1e-12).mean())


def test_quick_validation_writes_the_report(tmp_path):
    """The whole command, at the quick profile: builds, measures, writes the report, its
    figures and its results.json."""
    report = tmp_path / "validation.md"
    results = run_validation(report=report, work=tmp_path / "work", profile=QUICK, log=lambda *a: None)
    text = report.read_text()
    assert "SIMULATED" in text and "## Headline" in text and "Calibration" in text and "PBMC 68k" in text
    assert "**Bottom line.** On these SIMULATED corpora" in text
    h = headline(results)
    assert set(h["condition"]) == {"effect x1", "batch sd 1"}
    for line in verdicts(results):
        assert line.split("**")[0] in text
    folder = tmp_path / "validation"
    assert (folder / "recovery.png").stat().st_size > 1000 and (folder / "robustness.png").stat().st_size > 1000
    saved = json.loads((folder / "results.json").read_text())
    assert len(saved["links"]) == len(results["links"]) == 3 * 2 * len(scenarios(QUICK))
    assert saved["stability"] and saved["pbmc"] and saved["modules"]
    assert pd.DataFrame(saved["links"])["sample_auroc"].between(0, 1).all()
    from compute.atlas import Atlas

    # the report can be rewritten from results.json alone, with the same tables
    again = tmp_path / "again.md"
    subprocess.run([sys.executable, "-m", "compute", "validate", "--from-results", str(folder / "results.json"), "--report", str(again)],
                   check=True, capture_output=True)
    assert again.read_text().split("## Headline")[1] == text.split("## Headline")[1].replace("validation/", "again/")
    built = Atlas.open(tmp_path / "work" / "atlas" / "effect-1", cache=False)
    assert not built.has_umap and built.meta["method"]["umap"]["skipped"]  # validation atlases skip the layout


def test_validate_command_line_help():
    out = subprocess.run([sys.executable, "-m", "compute", "validate", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--report", "--work", "--reuse", "--quick"):
        assert flag in out

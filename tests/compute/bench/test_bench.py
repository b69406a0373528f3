"""The benchmarks run end to end on a tiny configuration (figures are not asserted: no timed tests)."""

from __future__ import annotations

import numpy as np
import pytest

from compute.bench import AttributionBenchConfig, run_attribution_bench
from compute.bench._attributions import make_cells

pytestmark = pytest.mark.slow  # builds an atlas (or several processes) end to end


def test_benchmark_cells_are_log_normalised_at_the_requested_density():
    X = make_cells(300, 2000, 0.08, seed=1)
    assert abs(X.nnz / (300 * 2000) - 0.08) < 0.01
    counts = np.expm1(X.toarray())
    np.testing.assert_allclose(counts.sum(axis=1), 1e4, rtol=1e-4)


def test_attribution_benchmark_runs_and_compares_side_by_side(tmp_path):
    lines: list[str] = []
    cfg = AttributionBenchConfig(cells=24, genes=300, hidden=(32, 16), latent=8, memory_cells=(12, 24), reference_cells=6, signature=False)
    report = run_attribution_bench(cfg, out=lines.append, json_path=str(tmp_path / "bench.json"))
    text = "\n".join(lines)
    assert "Captum IG (SIGnature's call)" in text and "SigAtlas attribute('ig')" in text
    assert report["runs"]["ours"]["path"] == "ig (first-layer identity, fused SCimilarity head)"
    assert report["diff_vs_captum"]["ours"]["rows"] == 24 and report["diff_vs_captum"]["ours"]["max_rel_row"] < 1e-5
    assert report["diff_vs_float64"]["ours"]["max_rel_row"] < 1e-5
    assert [r["cells"] for r in report["memory_scaling"]] == [12, 24]
    assert (tmp_path / "bench.json").is_file()


def test_query_benchmark_runs_and_agrees_with_the_dense_reference():
    from compute.bench import QueryBenchConfig, run_query_bench

    lines: list[str] = []
    report = run_query_bench(QueryBenchConfig(sizes=(500, 1500), genes=300, signature_genes=20, repeats=2, signature=False), out=lines.append)
    assert [r["cells"] for r in report["rows"]] == [500, 1500]
    assert all(r["max_abs_diff_vs_dense"] < 1e-4 for r in report["rows"])
    assert "ours/floor" in "\n".join(lines)


def test_study_scale_benchmark_runs_on_simulated_atlases_and_keeps_stores_open(tmp_path):
    from compute.atlas import Atlas
    from compute.bench import StudyScaleConfig, run_study_scale_bench
    from compute.bench._query import sparse_rows, write_simulated_atlas

    lines: list[str] = []
    cfg = StudyScaleConfig(studies=(2, 6), cells=3000, genes=200, density=0.05, samples_per_study=4, signature_genes=10, repeats=2,
                           n_null=20, compare_cells=1200, compare_studies=3, signature=False)
    report = run_study_scale_bench(cfg, out=lines.append, json_path=str(tmp_path / "scale.json"))
    assert [r["studies"] for r in report["rows"]] == [2, 6]
    assert all(r["store_opens"] == 0 and r["null_cells"] > 0 and r["disk_bytes"] > 0 for r in report["rows"])
    assert report["compare"]["cells"] == 1200 and report["compare"]["many_over_one_cpu"] > 0
    assert "SIMULATED" in lines[0] and (tmp_path / "scale.json").is_file()
    # the same cells whatever the study count: the scores agree across splits
    X = sparse_rows(500, 50, 0.1, seed=1)
    a = Atlas.open(write_simulated_atlas(tmp_path / "one", X, 1, 2), cache=False)
    b = Atlas.open(write_simulated_atlas(tmp_path / "five", X, 5, 2), cache=False)
    assert len(b.studies) == 5 and b.cells["simulated"].all() and b.cells["study"].str.startswith("SIM").all()
    np.testing.assert_array_equal(a.score(a.genes[:7], scale="raw"), b.score(b.genes[:7], scale="raw"))

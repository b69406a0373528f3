"""The benchmarks run end to end on a tiny configuration (figures are not asserted: no timed tests)."""

from __future__ import annotations

import numpy as np

from compute.bench import AttributionBenchConfig, run_attribution_bench
from compute.bench._attributions import make_cells


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

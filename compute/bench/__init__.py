"""Benchmarks (scripts that print figures and ratios; never timed tests)."""

from compute.bench._attributions import AttributionBenchConfig, run_attribution_bench
from compute.bench._build import BuildBenchConfig, run_build_bench
from compute.bench._query import QueryBenchConfig, run_query_bench

__all__ = ["AttributionBenchConfig", "BuildBenchConfig", "QueryBenchConfig", "run_attribution_bench", "run_build_bench", "run_query_bench"]

"""Benchmarks (scripts that print figures and ratios; never timed tests)."""

from compute.bench._attributions import AttributionBenchConfig, run_attribution_bench

__all__ = ["AttributionBenchConfig", "run_attribution_bench"]

"""Benchmarks (scripts that print figures and ratios; never timed tests)."""

from compute.bench._attributions import AttributionBenchConfig, run_attribution_bench
from compute.bench._build import BuildBenchConfig, run_build_bench
from compute.bench._panels import PanelBenchConfig, panel_figures, run_panel_bench
from compute.bench._query import (
    QueryBenchConfig,
    StudyScaleConfig,
    run_atlas_query_bench,
    run_query_bench,
    run_study_scale_bench,
)
from compute.bench._training import TrainingBenchConfig, run_training_bench

__all__ = ["PanelBenchConfig", "panel_figures", "run_panel_bench",
           "AttributionBenchConfig", "BuildBenchConfig", "QueryBenchConfig", "run_attribution_bench", "run_build_bench", "run_query_bench",
           "run_study_scale_bench", "StudyScaleConfig", "run_atlas_query_bench", "TrainingBenchConfig", "run_training_bench"]

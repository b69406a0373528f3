"""Validation suite: planted truth on SIMULATED atlases and real PBMC data (``python -m compute validate``)."""

from compute.validate._metrics import (
    auroc,
    evaluate_calibration,
    evaluate_links,
    evaluate_modules,
    evaluate_pbmc,
    precision_at_k,
    stability,
)
from compute.validate._real import (
    real_studies_section,
    run_real_validation,
    two_panel_manifest,
    two_panel_table,
)
from compute.validate._report import headline, integration_table, verdicts, write_report
from compute.validate._run import FULL, QUICK, Profile, Scenario, run_validation, scenarios

__all__ = [
    "FULL",
    "QUICK",
    "Profile",
    "Scenario",
    "auroc",
    "evaluate_calibration",
    "evaluate_links",
    "evaluate_modules",
    "evaluate_pbmc",
    "headline",
    "integration_table",
    "precision_at_k",
    "real_studies_section",
    "run_real_validation",
    "two_panel_manifest",
    "two_panel_table",
    "run_validation",
    "scenarios",
    "stability",
    "verdicts",
    "write_report",
]

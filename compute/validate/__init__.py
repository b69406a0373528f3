"""Validation suite: planted truth on SIMULATED atlases and real PBMC data (``python -m compute validate``)."""

from compute.validate._evidence import (
    EVIDENCE_SIM,
    evaluate_evidence,
    evidence_section,
    run_evidence_validation,
)
from compute.validate._generank import (
    HOUSEKEEPING,
    evaluate_gene_ranking,
    gene_ranking_table,
    markers_for,
)
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
from compute.validate._report import (
    gene_ranking_section,
    headline,
    integration_table,
    verdicts,
    write_report,
)
from compute.validate._run import (
    FULL,
    QUICK,
    Profile,
    Scenario,
    add_gene_ranking,
    run_validation,
    scenarios,
)
from compute.validate._tfs import (
    JASPAR_RELEASE,
    TFList,
    jaspar_human_tf_names,
    split_dimers,
    tf_list,
    tf_share,
    to_current_symbols,
)

__all__ = [
    "EVIDENCE_SIM",
    "evaluate_evidence",
    "evidence_section",
    "run_evidence_validation",
    "FULL",
    "HOUSEKEEPING",
    "QUICK",
    "JASPAR_RELEASE",
    "TFList",
    "add_gene_ranking",
    "Profile",
    "Scenario",
    "auroc",
    "evaluate_calibration",
    "evaluate_links",
    "evaluate_modules",
    "evaluate_gene_ranking",
    "evaluate_pbmc",
    "gene_ranking_section",
    "gene_ranking_table",
    "headline",
    "integration_table",
    "jaspar_human_tf_names",
    "markers_for",
    "precision_at_k",
    "real_studies_section",
    "run_real_validation",
    "two_panel_manifest",
    "two_panel_table",
    "run_validation",
    "scenarios",
    "split_dimers",
    "stability",
    "tf_list",
    "tf_share",
    "to_current_symbols",
    "verdicts",
    "write_report",
]

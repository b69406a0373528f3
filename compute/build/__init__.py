"""The build: manifest -> ingest -> gene order -> encoder -> attributions and embeddings -> label
transfer -> UMAP -> the atlas written -> panel calibration -> vocabulary -> gene modules.

``build_atlas`` (``_pipeline.py``) runs the stages in that order, each a function of one build's
state; the per-study stages run as Dask tasks (``_tasks.py``); the partial panels' calibration
(``_calibration.py``) and the stored gene modules (``_modules.py``) sit beside them.
"""

from compute.build._calibration import factors_from_cells
from compute.build._pipeline import (
    ATLAS_CONTENT_VERSION,
    PIPELINE_VERSION,
    TRAINING_VERSION,
    StudyFailures,
    StudyTerms,
    atlas_warnings,
    build_atlas,
    dask_client,
    embedding_genes,
    input_shares,
    panel_shares,
    work_dir,
)

__all__ = [
    "ATLAS_CONTENT_VERSION",
    "PIPELINE_VERSION",
    "TRAINING_VERSION",
    "StudyFailures",
    "StudyTerms",
    "atlas_warnings",
    "build_atlas",
    "dask_client",
    "embedding_genes",
    "factors_from_cells",
    "input_shares",
    "panel_shares",
    "work_dir",
]

"""Downloading a planned census entry: one dataset at a time, each to its own h5ad, written to a
temporary name and renamed into place, so a download killed at any moment resumes from the
datasets already on disk and never leaves half a file."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from compute.census._errors import CensusError
from compute.census._open import open_census, where
from compute.census._plan import CensusPlan, DatasetPlan
from compute.files import atomic_write

__all__ = ["PROVENANCE_KEY", "download_datasets", "fetch_dataset"]

# uns key of a downloaded file: where its cells came from (JSON text)
PROVENANCE_KEY = "census"
# obs columns a downloaded study keeps (those the Census has): what ingest reads, and context; the donor
# and sample columns (sex, development_stage, self_reported_ethnicity, assay, suspension_type) reach the
# atlas as donor metadata (compute.ingest.METADATA_COLUMNS)
OBS_COLUMNS = ("soma_joinid", "dataset_id", "donor_id", "assay", "assay_ontology_term_id", "cell_type",
               "cell_type_ontology_term_id", "disease", "disease_ontology_term_id", "tissue", "tissue_ontology_term_id",
               "tissue_general", "sex", "development_stage", "self_reported_ethnicity", "suspension_type", "is_primary_data")
# cells read per request: bounds TileDB's result buffers on large datasets
CHUNK_CELLS = 20_000


def download_datasets(plan: CensusPlan, *, progress: bool = True, only: tuple[str, ...] | None = None,
                      on_dataset: Callable[[DatasetPlan, Path], None] | None = None) -> list[Path]:
    """Download every dataset of ``plan`` (or those in ``only``) that is not on disk yet (its
    selected cells, the genes it measured, raw counts) into ``plan.file(dataset_id)``; returns
    every dataset's file. ``on_dataset(dataset, path)`` is called after each file is in place.
    Raises CensusError."""
    from tqdm.auto import tqdm

    _remove_stale_temporaries(plan.folder)
    todo = [d for d in plan.datasets if not plan.file(d.dataset_id).is_file() and (only is None or d.dataset_id in only)]
    if todo:
        bar = tqdm(total=sum(d.n_selected for d in todo), unit="cell", desc=f"census {plan.entry}", disable=not progress)
        try:
            with open_census(plan) as census:
                for d in todo:
                    bar.set_postfix_str(d.study_id)
                    adata = fetch_dataset(census, plan, d)
                    atomic_write(plan.file(d.dataset_id), lambda t, a=adata: a.write_h5ad(t))
                    del adata
                    bar.update(d.n_selected)
                    if on_dataset is not None:
                        on_dataset(d, plan.file(d.dataset_id))
        finally:
            bar.close()
    return [plan.file(d.dataset_id) for d in plan.datasets]


def fetch_dataset(census, plan: CensusPlan, dataset: DatasetPlan):
    """The dataset's selected cells as AnnData (read with cellxgene_census.get_anndata, in chunks of
    CHUNK_CELLS cells): X raw counts (CSR float32) over the genes it measured, var indexed by
    feature_id with feature_name, obs the Census columns indexed by soma_joinid, and
    uns[PROVENANCE_KEY] saying where it came from."""
    import anndata as ad
    import cellxgene_census
    import scipy.sparse as sp

    cells = plan.cells(dataset.dataset_id)
    genes = plan.genes(dataset.dataset_id)
    available = set(census["census_data"][plan.experiment].obs.keys())
    columns = [c for c in OBS_COLUMNS if c in available]
    parts = []
    try:
        for start in range(0, len(cells), CHUNK_CELLS):
            with warnings.catch_warnings():  # the client builds AnnData on an integer index; ours is set below
                warnings.simplefilter("ignore", ad.ImplicitModificationWarning)
                parts.append(cellxgene_census.get_anndata(
                    census, plan.experiment, X_name="raw", obs_coords=cells[start : start + CHUNK_CELLS],
                    var_coords=genes, obs_column_names=columns,
                    var_column_names=["soma_joinid", "feature_id", "feature_name"]))
    except Exception as exc:  # TileDB and the client raise several types (network, a damaged mirror)
        raise CensusError(f"cannot read dataset {dataset.dataset_id} ({dataset.study_id}) from the {where(plan)}: "
                          f"{type(exc).__name__}: {exc}; re-run to resume (finished datasets are kept)") from exc
    X = sp.vstack([sp.csr_matrix(p.X, dtype=np.float32) for p in parts]).tocsr() if parts else sp.csr_matrix((0, 0))
    obs = pd.concat([p.obs for p in parts], ignore_index=True)
    var = parts[0].var.copy()
    if len(obs) != dataset.n_selected or not np.array_equal(np.sort(obs["soma_joinid"].to_numpy()), cells):
        raise CensusError(f"the {where(plan)} returned {len(obs)} cells for dataset {dataset.dataset_id}, "
                          f"the plan selected {dataset.n_selected}: is the mirror complete?")
    obs.index = pd.Index(obs["soma_joinid"].astype(str).to_numpy())
    var.index = pd.Index(var["feature_id"].astype(str).to_numpy())
    for frame in (obs, var):
        for c in frame.columns:
            if frame[c].dtype == object or isinstance(frame[c].dtype, pd.CategoricalDtype):
                frame[c] = frame[c].astype(str).astype("category")
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns[PROVENANCE_KEY] = json.dumps({"version": plan.version, "dataset_id": dataset.dataset_id,
                                            "value_filter": plan.value_filter, "plan": plan.key})
    return adata


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of downloads killed mid-write (atomic_write names them .<stem>.<pid>.tmp.h5ad)."""
    for tmp in folder.glob(".*.tmp.h5ad"):
        try:
            pid = int(tmp.name.split(".")[-3])
            os.kill(pid, 0)  # a running writer keeps its file
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            pass

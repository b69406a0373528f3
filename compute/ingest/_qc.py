"""Quality control and normalisation of one study (method.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from compute.errors import IngestError
from compute.ingest._read import _where
from compute.ingest._report import ingest_report, store_report
from compute.manifest import IngestSpec, StudySpec

__all__ = ["FULL_PANEL", "qc_and_normalise", "qc_decision", "qc_thresholds"]

# thresholds apply as set to panels of at least this many genes; a whole transcriptome
# measures 20,000+, and min_genes 200 was chosen for those
FULL_PANEL = 2000
MIN_CELLS_KEPT = 100
MAX_TYPE_DROP = 0.2


def qc_thresholds(min_genes: int, min_counts: int, n_genes: int) -> tuple[int, int, float]:
    """(effective min_genes, effective min_counts, scale) for a panel of ``n_genes`` genes.

    scale = min(1, n_genes / FULL_PANEL): each threshold is multiplied by it and rounded
    half up. A threshold set to 1 or more stays at least 1, and min_genes is always at least
    1: an empty cell cannot be normalised.
    """
    scale = min(1.0, n_genes / FULL_PANEL) if n_genes else 1.0

    def eff(t: int) -> int:
        v = math.floor(t * scale + 0.5)
        return max(v, 1) if t >= 1 else 0

    return max(eff(min_genes), 1), eff(min_counts), scale


def qc_and_normalise(adata, spec: StudySpec, ingest: IngestSpec):
    """Drop cells below the QC thresholds; then pseudo-counts -> per 10,000 -> log1p.

    Thresholds: ``ingest.min_genes`` and ``ingest.min_counts`` apply as set to panels of
    >= 2,000 genes and scale down in proportion below that (:func:`qc_thresholds`), so a
    765-gene panel is held to 765/2,000 of them. ``min_counts`` applies to counts only: TPM,
    FPKM and log-normalised values carry no library size (each cell is rescaled). A cell
    failing both thresholds is counted once, under ``dropped["both"]``; ``dropped["min_genes"]``
    and ``dropped["min_counts"]`` count cells failing only that one.

    Returns a new AnnData with ``obs['n_counts']``, ``obs['n_genes']``, log-normalised X and
    the report's ``qc`` section and QC warnings added to ``uns['sigatlas_report']`` (read it
    with :func:`ingest_report`). Raises IngestError when no cell passes.
    """
    import scanpy as sc

    where = _where(spec)
    try:
        report = ingest_report(adata)
    except IngestError:
        report = {"values": {"kind": "counts"}, "warnings": []}  # an AnnData not from read_study
    is_counts = (report.get("values") or {}).get("kind", "counts") == "counts"
    X = sp.csr_matrix(adata.X, copy=True)
    X.eliminate_zeros()  # a stored zero is not a detected gene
    n_counts = np.asarray(X.sum(axis=1)).ravel()
    n_genes = np.diff(X.indptr)
    keep, report = qc_decision(n_counts, n_genes, adata.obs["cell_type"].astype(str).to_numpy(), adata.n_vars, report,
                               is_counts, ingest, where)
    out = adata[keep].copy()
    out.obs["n_counts"] = n_counts[keep].astype(np.float32)
    out.obs["n_genes"] = n_genes[keep].astype(np.int32)
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    if {"cell_type_original", "cell_type_ontology_term_id"} <= set(out.obs.columns) and isinstance(report.get("vocabulary"), dict):
        from compute.ingest._evidence import label_evidence

        report["vocabulary"].setdefault("cell_type", {})["evidence"] = label_evidence(
            out.X, list(out.var_names), out.obs["cell_type_original"].to_numpy(), out.obs["cell_type_ontology_term_id"].to_numpy())
    store_report(out, report)
    return out


def qc_decision(n_counts: np.ndarray, n_genes: np.ndarray, cell_type: np.ndarray, n_vars: int, report: dict, is_counts: bool,
                ingest: IngestSpec, where: str) -> tuple[np.ndarray, dict]:
    """(bool per cell: it passes QC; ``report`` with its qc section and QC warnings) from each
    cell's counts and detected genes (see :func:`qc_and_normalise`). Raises IngestError when no
    cell passes."""
    min_genes, min_counts, scale = qc_thresholds(ingest.min_genes, ingest.min_counts if is_counts else 0, n_vars)
    low_genes = n_genes < min_genes
    low_counts = n_counts < min_counts
    keep = ~(low_genes | low_counts)
    if not keep.any():
        raise IngestError(
            f"{where}: no cell passes QC (min_genes={min_genes}, min_counts={min_counts if is_counts else 'not applied'}, "
            f"from ingest.min_genes={ingest.min_genes}, ingest.min_counts={ingest.min_counts} scaled to its "
            f"{n_vars} genes); median genes per cell {np.median(n_genes):.0f}, median counts "
            f"{np.median(n_counts):.0f}. Lower 'ingest.min_genes' / 'ingest.min_counts' in the manifest."
        )
    by_type = {}
    warnings = list(report.get("warnings") or [])
    for ct in sorted(set(cell_type)):
        m = cell_type == ct
        n_in, n_kept = int(m.sum()), int((m & keep).sum())
        by_type[ct] = {"in": n_in, "kept": n_kept, "dropped": n_in - n_kept}
        if n_in and (n_in - n_kept) / n_in > MAX_TYPE_DROP:
            warnings.append(
                f"QC dropped {100 * (n_in - n_kept) / n_in:.0f}% of the '{ct}' cells ({n_in - n_kept} of {n_in})."
            )
    if keep.sum() < MIN_CELLS_KEPT:
        warnings.append(
            f"Only {int(keep.sum())} cells passed QC (fewer than {MIN_CELLS_KEPT}): too few for per-sample hit rates to mean much."
        )
    report["qc"] = {
        "min_genes": min_genes,
        "min_counts": min_counts if is_counts else None,
        "min_genes_set": ingest.min_genes,
        "min_counts_set": ingest.min_counts,
        "scaled_for_panel": scale < 1.0,
        "panel_scale": round(scale, 4),
        "min_counts_note": None if is_counts else
        f"min_counts not applied: {report['values']['kind']} values carry no library size",
        "cells_in": int(len(n_counts)),
        "cells_kept": int(keep.sum()),
        "dropped": {
            "min_genes": int((low_genes & ~low_counts).sum()),
            "min_counts": int((low_counts & ~low_genes).sum()),
            "both": int((low_genes & low_counts).sum()),
        },
        "by_cell_type": by_type,
    }
    report["warnings"] = warnings
    report.setdefault("n_genes_measured", int(n_vars))
    return keep, report

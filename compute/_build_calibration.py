"""The build's panel calibration: per-gene factors that put a partial-panel study's attributions on
the scale of a full panel (README "One scale across panels").

A study that measured a subset of the genes has its attributions scaled to 1,000 over that
subset, and the encoder, seeing the other genes at zero, also moves attribution between the genes
it does see: a marker set can carry half or twice its full-panel share. One number per study (the
measured share) cannot undo a shift that differs gene by gene. So the build asks the encoder
itself: it takes a seeded sample of cells from the studies that measured (nearly) every gene, the
reference, and attributes them twice, as they are (their stored attributions) and with their input
as the partial study's cells are given it: only the panel's genes, each cell normalised again to
10,000 x the study's input share. For each gene of the panel, the factor is the ratio of the two
sums over the reference cells: what a gene's attribution becomes on the full panel per unit of its
attribution on this panel. Genes the masked reference expresses in fewer than ``min_detected``
cells take the panel's overall ratio. Studies with the same panel share one calibration.

A study keeps its measured share (no gene scale) when it measured nearly every gene, or when the
atlas has no reference study to calibrate against.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["FULL_SHARE", "GENE_SCALE_FILE", "REFERENCE_CELLS", "calibrate_panels"]

GENE_SCALE_FILE = "gene_scale.npy"
FULL_SHARE = 0.99  # a study whose panel carries at least this share of the attribution counts as a full panel
REFERENCE_CELLS = 1000  # reference cells attributed once more per distinct partial panel
MIN_DETECTED = 10


def _reference_sample(root: Path, entries: list[dict], refs: list[int], n_genes: int, n_cells: int, seed: int):
    """(reference cells' log-normalised input, their stored attributions, both cells x genes CSR;
    their counts, float64), a seeded sample of at most ``n_cells`` cells drawn across the
    reference studies in proportion to their sizes."""
    import pandas as pd

    from compute.atlas._format import ATTR_PREFIX, CELLS_FILE, EXPR_PREFIX
    from compute.atlas._store import GeneMajorStore

    sizes = np.array([entries[i]["n_cells"] for i in refs], dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(total, size=min(n_cells, total), replace=False))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    X_parts, A_parts, counts = [], [], []
    for j, i in enumerate(refs):
        rows = pick[(pick >= bounds[j]) & (pick < bounds[j + 1])] - bounds[j]
        if rows.size == 0:
            continue
        mask = np.zeros(int(sizes[j]), dtype=bool)
        mask[rows] = True
        d = root / entries[i]["dir"]
        counts.append(pd.read_parquet(d / CELLS_FILE, columns=["n_counts"])["n_counts"].to_numpy(dtype=np.float64)[rows])
        for prefix, parts in ((EXPR_PREFIX, X_parts), (ATTR_PREFIX, A_parts)):
            store = GeneMajorStore(d, prefix, n_genes, int(sizes[j]))
            parts.append(store.rows(mask).tocsr().astype(np.float32))
            del store  # unmapped: one study's pages at a time
    return sp.vstack(X_parts, format="csr"), sp.vstack(A_parts, format="csr"), np.concatenate(counts)


def _passes_qc(X: sp.csr_matrix, counts: np.ndarray, measured: np.ndarray, qc: dict) -> np.ndarray:
    """Bool per reference cell: it would pass the partial study's QC (its min_genes and
    min_counts, as scaled for its panel) had it been measured on that panel. Its counts on the
    panel are its counts times the panel's share of its normalised expression. Cells a small
    panel leaves with few counts are the ones QC drops there, and they carry unusually large
    attributions on the genes they keep: calibrating on them biased the factors (by 40% for
    T cell markers on a 765-gene panel)."""
    keep = np.zeros(X.shape[1], dtype=bool)
    keep[measured] = True
    E = X.tocsr(copy=True)
    E.data = np.expm1(E.data.astype(np.float64))
    on_panel = keep[E.indices]
    rows = np.repeat(np.arange(E.shape[0]), np.diff(E.indptr))
    panel_expr = np.bincount(rows, weights=E.data * on_panel, minlength=E.shape[0])
    total_expr = np.bincount(rows, weights=E.data, minlength=E.shape[0])
    genes = np.bincount(rows, weights=on_panel.astype(np.float64), minlength=E.shape[0])
    panel_counts = counts * np.divide(panel_expr, total_expr, out=np.zeros_like(panel_expr), where=total_expr > 0)
    return (genes >= float(qc.get("min_genes") or 0)) & (panel_counts >= float(qc.get("min_counts") or 0))


def _as_panel_input(X: sp.csr_matrix, measured: np.ndarray, share: float) -> sp.csr_matrix:
    """The reference cells' input as a study measuring only ``measured`` sees it: their normalised
    expression on those genes, each cell normalised again to 10,000 x ``share`` (the study's input
    share, compute.build.input_shares), log1p."""
    keep = np.zeros(X.shape[1], dtype=np.float32)
    keep[measured] = 1.0
    E = (X @ sp.diags(keep)).tocsr()
    E.eliminate_zeros()
    E.data = np.expm1(E.data.astype(np.float64))
    totals = np.asarray(E.sum(axis=1)).ravel()
    per_row = np.divide(1e4 * share, totals, out=np.zeros_like(totals), where=totals > 0)
    E.data = np.log1p(E.data * np.repeat(per_row, np.diff(E.indptr))).astype(np.float32)
    return E


def calibrate_panels(root: Path, entries: list[dict], n_genes: int, attribution: dict, input_shares: dict[str, float], *,
                     seed: int = 0, reference_cells: int = REFERENCE_CELLS, min_detected: int = MIN_DETECTED) -> dict[str, dict]:
    """Write ``gene_scale.npy`` (float32, one factor per gene of the gene order) into the folder of
    every partial-panel study of ``entries`` (written studies, ``panel`` recorded by
    compute.build.panel_shares) and add ``gene_scale`` and ``calibration`` to its ``panel``.
    ``attribution``: the manifest's attribution settings (method, n_steps, batch_size), so the
    masked reference is attributed as the studies were; ``input_shares``: each study's input
    share (its cells' normalisation, compute.build.input_shares). Returns {study id: {file name: the
    absolute path}} of the files written."""
    from compute.atlas._panel import read_study_panel
    from compute.files import save_npy_atomic
    from compute.model import load_encoder

    shares = [float(e["panel"]["attr_share"]) for e in entries]
    refs = [i for i, sh in enumerate(shares) if sh >= FULL_SHARE]
    partial = [i for i, sh in enumerate(shares) if sh < FULL_SHARE]
    if not partial:
        return {}
    if not refs:
        for i in partial:
            entries[i]["panel"]["calibration"] = {"skipped": "no study measured nearly every gene: the measured share applies"}
        return {}
    X, A_full, counts = _reference_sample(root, entries, refs, n_genes, reference_cells, seed)
    encoder = load_encoder(root / "model")
    encoder.eval()
    by_panel: dict[bytes, np.ndarray | None] = {}
    summaries: dict[bytes, dict] = {}
    written: dict[str, dict] = {}
    for i in partial:
        measured = np.asarray(read_study_panel(root / entries[i]["dir"])[0], dtype=np.int64)
        share = float(input_shares.get(entries[i]["id"], 1.0))
        qc = (entries[i].get("report") or {}).get("qc") or {}
        # studies with the same panel, input share and QC share one calibration
        key = measured.tobytes() + np.float64(share).tobytes() + json.dumps([qc.get("min_genes"), qc.get("min_counts")]).encode()
        if key not in by_panel:
            by_panel[key], summaries[key] = _calibrate_one(encoder, X, A_full, counts, measured, share, qc, float(shares[i]),
                                                           attribution, min_detected)
            summaries[key]["reference_studies"] = [entries[r]["id"] for r in refs]
        entries[i]["panel"]["calibration"] = dict(summaries[key])
        if by_panel[key] is None:
            continue
        path = root / entries[i]["dir"] / GENE_SCALE_FILE
        save_npy_atomic(path, by_panel[key])
        entries[i]["panel"]["gene_scale"] = GENE_SCALE_FILE
        written[entries[i]["id"]] = {GENE_SCALE_FILE: str(path)}
    return written


def _calibrate_one(encoder, X: sp.csr_matrix, A_full: sp.csr_matrix, counts: np.ndarray, measured: np.ndarray, share: float,
                   qc: dict, fallback: float, attribution: dict, min_detected: int) -> tuple[np.ndarray | None, dict]:
    """(the factors of one panel, float32 over the gene order, or None when too few reference
    cells would pass its QC; a summary for the build report)."""
    from compute.attribution import attribute

    kept = np.flatnonzero(_passes_qc(X, counts, measured, qc))  # the reference cells this study's QC would keep
    dropped = int(X.shape[0] - kept.size)
    if kept.size < min_detected:
        return None, {"skipped": f"only {kept.size} reference cells would pass this study's QC on its panel: the measured "
                                 "share applies", "reference_cells_dropped_by_qc": dropped}
    full_sums = np.asarray(A_full[kept].sum(axis=0)).ravel().astype(np.float64)
    Xm = _as_panel_input(X[kept], measured, share)  # the reference's input as this study's cells are given
    A_masked = attribute(encoder, Xm, method=attribution["method"], n_steps=attribution["n_steps"],
                         batch_size=attribution.get("batch_size"))
    masked_sums = np.asarray(A_masked.sum(axis=0)).ravel().astype(np.float64)
    detected = np.bincount(A_masked.indices[A_masked.data > 0], minlength=X.shape[1])
    on_full, on_masked = full_sums[measured].sum(), masked_sums[measured].sum()
    overall = on_full / on_masked if on_masked > 0 else fallback
    scale = np.full(X.shape[1], overall, dtype=np.float64)
    good = measured[(detected[measured] >= min_detected) & (masked_sums[measured] > 0)]
    scale[good] = full_sums[good] / masked_sums[good]
    # six significant digits: the same reference gives the same file whatever the float noise
    factors = np.array([float(f"{v:.6g}") for v in scale], dtype=np.float32)
    return factors, {"reference_cells": int(kept.size), "reference_cells_dropped_by_qc": dropped,
                     "genes_calibrated": int(good.size), "genes_overall_ratio": int(measured.size - good.size),
                     "overall_ratio": round(float(overall), 6), "min_detected": int(min_detected),
                     "median_factor": round(float(np.median(scale[measured])), 6) if measured.size else None}

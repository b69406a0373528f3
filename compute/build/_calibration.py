"""The build's panel calibration: per-gene factors that put a partial-panel study's attributions on
the scale of a full panel (README "One scale across panels").

A study that measured a subset of the genes has its attributions scaled to 1,000 over that
subset, and the encoder, seeing the other genes at zero, also moves attribution between the genes
it does see: a marker set can carry half or twice its full-panel share. One number per study (the
measured share) cannot undo a shift that differs gene by gene. So the build asks the encoder
itself. The reference studies are those with the most complete panels (a measured share within
``REFERENCE_SHARE`` of the largest), and of their cells only those of the partial study's tissue and
cell lineage are candidates (a blood study is never calibrated on myoblasts, however alike their
inputs look on its genes; the build report names the studies chosen and those left out, and why).
For a partial study, a seeded sample of its cells picks the nearest candidate cells of each in
the input on its own genes; of those, the
cells the study's own QC would keep on its panel are attributed twice: as they are (their stored
attributions times their study's share) and with their input as the partial study's cells are
given it (only the panel's genes, each cell normalised again to 10,000 x the study's input share).
For each gene of the panel, the factor is the ratio of the two sums: what a gene's attribution is
on a full panel per unit of its attribution on this panel. Genes the masked reference expresses in
fewer than ``min_detected`` cells take the panel's overall ratio.

A study keeps its measured share (no gene scale) when it measured nearly every gene, when the atlas
has no study with a near-full panel to calibrate against, when no such study holds cells of its
tissue and lineage, or when too few matched reference cells would pass its QC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["FULL_SHARE", "GENE_SCALE_FILE", "POOL_CELLS", "REFERENCE_CELLS", "REFERENCE_SHARE", "calibrate_panels", "factors_from_cells"]

GENE_SCALE_FILE = "gene_scale.npy"
FULL_SHARE = 0.99  # a study whose panel carries at least this share of the attribution needs no calibration
REFERENCE_SHARE = 0.9  # reference studies: a share within this factor of the most complete panel's
POOL_CELLS = 5_000  # reference cells a partial study's own cells are matched among (on its genes)
NEAREST = 3  # reference cells taken per cell of the partial study's sample (distinct ones kept)
REFERENCE_CELLS = 500  # a partial study's cells matched; their nearest reference cells are attributed once more
MIN_DETECTED = 10


def _cell_context(root: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """(tissue key, cell-type term) of every cell of a written study: the tissue's UBERON term, or
    the study's own tissue label where none matched; the Cell Ontology term or ''."""
    import pandas as pd

    from compute.atlas import CELLS_FILE

    df = pd.read_parquet(root / entry["dir"] / CELLS_FILE,
                         columns=["tissue_ontology_term_id", "tissue_original", "cell_type_ontology_term_id"])

    def text(col: str) -> np.ndarray:
        return df[col].astype(object).where(df[col].notna(), "").astype(str).to_numpy()

    term, own = text("tissue_ontology_term_id"), text("tissue_original")
    return np.where(term != "", term, own), text("cell_type_ontology_term_id")


def _lineages_of(terms: np.ndarray) -> dict[str, frozenset]:
    from compute.vocabulary import cell_lineages

    return {t: cell_lineages(t) for t in np.unique(terms).tolist()}


def _term_name(key: str) -> str:
    from compute.vocabulary import ontologies

    info = ontologies().term(key) if key else None
    return info.label if info is not None else (key or "no tissue")


def _candidates(partial: tuple[np.ndarray, np.ndarray], context: dict[int, tuple[np.ndarray, np.ndarray]],
                entries: list[dict]) -> tuple[dict[int, np.ndarray], dict, dict[str, str]]:
    """Which cells of each reference study (``context``: study index -> its cells' tissue keys and
    cell-type terms) may calibrate a partial study whose cells are ``partial``: those whose tissue
    is one of its tissues (or a close relative: compute.vocabulary.tissues_related) and whose cell
    type is of one of its cells' lineages (when its cells have a lineage at all). Returns (study
    index -> bool mask over its cells, the rule {tissues, lineages} in words, study id -> why it
    was left out, for the studies without a candidate cell)."""
    from compute.vocabulary import tissues_related

    tissues = sorted(set(partial[0].tolist()) - {""})
    lineages = frozenset().union(*_lineages_of(partial[1]).values())
    masks, left_out = {}, {}
    for r, (tissue, cell_type) in context.items():
        ok_tissue = {t: any(tissues_related(t, mine) for mine in tissues) for t in np.unique(tissue).tolist()}
        of_lineage = _lineages_of(cell_type)
        ok_lineage = {t: (not lineages) or bool(of_lineage[t] & lineages) for t in of_lineage}
        by_tissue = np.array([ok_tissue[t] for t in tissue.tolist()], dtype=bool)
        by_lineage = np.array([ok_lineage[t] for t in cell_type.tolist()], dtype=bool)
        masks[r] = by_tissue & by_lineage
        if not masks[r].any():
            theirs = ", ".join(sorted({_term_name(t) for t in np.unique(tissue).tolist()}))
            kinds = ", ".join(sorted(set().union(*of_lineage.values()))) or "no known lineage"
            left_out[entries[r]["id"]] = (f"tissue {theirs}, not {', '.join(map(_term_name, tissues)) or 'known'}" if not by_tissue.any()
                                          else f"cells of lineage {kinds}, not {', '.join(sorted(lineages))}")
    rule = {"tissues": [_term_name(t) for t in tissues], "lineages": sorted(lineages)}
    return masks, rule, left_out


def _reference_pool(masks: dict[int, np.ndarray], n_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(study index, row within the study) of a seeded sample of at most ``n_cells`` of the
    candidate cells (``masks``: study index -> bool over its cells), drawn evenly among them;
    studies in ascending order, rows ascending within each: the cells a partial study's
    reference is matched from."""
    study = np.concatenate([np.full(int(masks[r].sum()), r, dtype=np.int64) for r in sorted(masks)] or [np.zeros(0, np.int64)])
    row = np.concatenate([np.flatnonzero(masks[r]).astype(np.int64) for r in sorted(masks)] or [np.zeros(0, np.int64)])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(study.size, size=min(n_cells, study.size), replace=False))
    return study[pick], row[pick]


def _own_input(root: Path, entry: dict, n_genes: int, n_cells: int, seed: int) -> sp.csr_matrix:
    """A seeded sample of at most ``n_cells`` of a study's cells: their stored log-normalised input."""
    from compute.atlas import EXPR_PREFIX, GeneMajorStore

    n = int(entry["n_cells"])
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=min(n_cells, n), replace=False)] = True
    store = GeneMajorStore(root / entry["dir"], EXPR_PREFIX, n_genes, n)
    return store.rows_in_blocks(mask).tocsr().astype(np.float32)


def _nearest(Q: sp.csr_matrix, P: sp.csr_matrix, k: int = NEAREST) -> np.ndarray:
    """Distinct rows of ``P`` among the ``k`` nearest (cosine) of some row of ``Q`` (several per
    cell: a study whose cells all look most like a few reference cells still gets a varied
    reference)."""
    def unit(M):
        norms = np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).ravel())
        return sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ M

    sims = np.asarray((unit(Q) @ unit(P).T).todense())
    if sims.size == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, sims.shape[1])
    return np.unique(np.argpartition(-sims, k - 1, axis=1)[:, :k])


def _reference_sample(root: Path, entries: list[dict], cells: tuple[np.ndarray, np.ndarray], n_genes: int):
    """(the reference cells' log-normalised input, their attributions on their own panel scale
    (stored values x their study's measured share), both cells x genes CSR; their counts) for
    ``cells`` (study index, row within the study, in ascending order within each study, studies
    in ascending order: the order of the rows returned)."""
    import pandas as pd

    from compute.atlas import ATTR_PREFIX, CELLS_FILE, EXPR_PREFIX, GeneMajorStore

    X_parts, A_parts, counts = [], [], []
    study_of, row_of = cells
    for i in np.unique(study_of).tolist():
        rows = np.sort(row_of[study_of == i])
        n = int(entries[i]["n_cells"])
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        d = root / entries[i]["dir"]
        counts.append(pd.read_parquet(d / CELLS_FILE, columns=["n_counts"])["n_counts"].to_numpy(dtype=np.float64)[rows])
        for prefix, parts in ((EXPR_PREFIX, X_parts), (ATTR_PREFIX, A_parts)):
            store = GeneMajorStore(d, prefix, n_genes, n)
            part = store.rows_in_blocks(mask).tocsr().astype(np.float32)  # a block of genes at a time
            if prefix == ATTR_PREFIX:
                part.data *= np.float32(entries[i]["panel"]["attr_share"])
            parts.append(part)
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
    from compute.atlas import read_study_panel
    from compute.files import save_npy_atomic
    from compute.model import load_encoder

    shares = [float(e["panel"]["attr_share"]) for e in entries]
    if not entries or max(shares) < FULL_SHARE * REFERENCE_SHARE:
        for e in entries:
            if float(e["panel"]["attr_share"]) < FULL_SHARE:
                e["panel"]["calibration"] = {"skipped": "no study measured nearly every gene: the measured share applies"}
        return {}
    # the reference: the studies with the most complete panels (a union gene order leaves every
    # study some genes short); every other study short of a full panel is calibrated against them
    refs = [i for i, sh in enumerate(shares) if sh >= REFERENCE_SHARE * max(shares)]
    partial = [i for i, sh in enumerate(shares) if i not in refs and sh < FULL_SHARE]
    if not partial:
        return {}
    context = {r: _cell_context(root, entries[r]) for r in refs}
    encoder = load_encoder(root / "model")
    encoder.eval()
    pools: dict[bytes, tuple] = {}  # partial studies with the same candidate cells share one sample of them
    written: dict[str, dict] = {}
    for i in partial:
        masks, rule, left_out = _candidates(_cell_context(root, entries[i]), context, entries)
        if not any(m.any() for m in masks.values()):
            entries[i]["panel"]["calibration"] = {
                "skipped": f"no study with a near-full panel holds cells of its tissue ({', '.join(rule['tissues']) or 'unknown'}) "
                           f"and lineage ({', '.join(rule['lineages']) or 'unknown'}): the measured share applies",
                "reference_rule": rule, "references_left_out": left_out}
            continue
        key = b"".join(np.packbits(masks[r]).tobytes() for r in sorted(masks))
        if key not in pools:
            pool_study, pool_row = _reference_pool(masks, POOL_CELLS, seed)
            pools[key] = (pool_study, *_reference_sample(root, entries, (pool_study, pool_row), n_genes))
        pool_study, X_pool, A_pool, counts_pool = pools[key]
        measured = np.asarray(read_study_panel(root / entries[i]["dir"])[0], dtype=np.int64)
        qc = (entries[i].get("report") or {}).get("qc") or {}
        share = float(input_shares.get(entries[i]["id"], 1.0))
        # the reference cells nearest to a sample of this study's cells, compared on its own genes as
        # it measures them (in the input, not the embedding: an encoder that keeps studies apart
        # matched every cell to the same few)
        chosen = _nearest(_own_input(root, entries[i], n_genes, reference_cells, seed), _as_panel_input(X_pool, measured, share))
        factors, summary = _calibrate_one(encoder, X_pool[chosen], A_pool[chosen], counts_pool[chosen], measured, share, qc,
                                          float(shares[i]), attribution, min_detected)
        studies, n = np.unique(pool_study[chosen], return_counts=True)
        summary["reference_studies"] = {entries[r]["id"]: int(k) for r, k in zip(studies.tolist(), n.tolist(), strict=True)}
        summary["reference_rule"] = rule
        summary["references_left_out"] = left_out
        entries[i]["panel"]["calibration"] = summary
        if factors is None:
            continue
        path = root / entries[i]["dir"] / GENE_SCALE_FILE
        save_npy_atomic(path, factors)
        entries[i]["panel"]["gene_scale"] = GENE_SCALE_FILE
        written[entries[i]["id"]] = {GENE_SCALE_FILE: str(path)}
    return written


def factors_from_cells(root: Path, entries: list[dict], n_genes: int, study_id: str, cells: tuple[np.ndarray, np.ndarray],
                       attribution: dict, min_detected: int = MIN_DETECTED) -> tuple[np.ndarray | None, dict]:
    """The factors of written partial-panel study ``study_id`` computed through the atlas's encoder
    from the given reference cells (study index, row within the study; studies ascending, rows
    ascending within each) as the build computes them, less its matching step: (float32 factors
    over the gene order, or None when too few of the cells would pass the study's QC; the summary).
    For checks on cells the build's calibration never saw."""
    from compute.atlas import read_study_panel
    from compute.model import load_encoder

    entry = next(e for e in entries if e["id"] == study_id)
    X, A_full, counts = _reference_sample(root, entries, cells, n_genes)
    encoder = load_encoder(root / "model")
    encoder.eval()
    measured = np.asarray(read_study_panel(root / entry["dir"])[0], dtype=np.int64)
    return _calibrate_one(encoder, X, A_full, counts, measured, float(entry["panel"]["expr_share"]), entry["report"]["qc"],
                          float(entry["panel"]["attr_share"]), attribution, min_detected)


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

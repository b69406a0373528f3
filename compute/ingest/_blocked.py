"""Ingest of an h5ad study of raw counts a block of cells at a time (issue 22).

:func:`compute.ingest.read_study` then :func:`compute.ingest.qc_and_normalise` hold the whole
study, several copies of its values, while they read, check, sum duplicate symbols, QC and
normalise it: a worker's memory grew with the largest study. Every one of those steps is a
per-cell operation or a reduction over cells, so for the common case, raw counts in an h5ad's X
stored as CSR, this module makes the same ingested file reading the source in blocks of rows
(anndata's backed mode) and writing X block by block (anndata's sparse dataset append):

1. each block: pseudo-counts (the integers checked), duplicate symbols summed, each cell's
   counts and detected genes;
2. the QC decision and report over all cells (:func:`compute.ingest.qc_decision`);
3. each block again: the cells kept, normalised (scanpy's normalize_total to 10,000, log1p:
   per-cell operations, so a block gives the rows the whole matrix gives) and appended.

Anything else (TPM/FPKM, log-normalised values, counts only in .raw, dense or CSC storage, other
sources) returns False and takes the whole-study path, whose checks and messages are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["ingest_h5ad_in_blocks"]


def _blocks(X, n_obs: int, rows: int):
    for start in range(0, n_obs, rows):
        yield start, sp.csr_matrix(X[start : start + rows])


def ingest_h5ad_in_blocks(spec, ingest, target: str | Path, rows_per_block: int = 4096) -> bool:
    """Write ``target`` (h5ad, atomically) as :func:`read_study` then :func:`qc_and_normalise`
    would make it, reading the source ``rows_per_block`` cells at a time. Returns False, having
    written nothing, when the study is not raw counts in a CSR X of an h5ad file (the caller then
    takes the whole-study path). Raises IngestError as that path does."""
    import anndata as ad
    import scanpy as sc
    from anndata.io import sparse_dataset, write_elem

    from compute.files import atomic_write, estimated_h5ad_bytes, reserved_space
    from compute.ingest._evidence import evidence_summary
    from compute.ingest._genes import study_gene_names
    from compute.ingest._qc import qc_decision
    from compute.ingest._read import _sum_columns, _where, standard_cells, study_report_before_qc
    from compute.ingest._report import REPORT_KEY, store_report
    from compute.ingest._values import _csr, _is_counts
    from compute.vocabulary import marker_sums

    path = spec.source.path
    if (spec.source.kind in ("scanpy-pbmc68k", "census") or spec.source.values != "counts" or path is None
            or not Path(path).is_file() or Path(path).suffix != ".h5ad"):
        return False
    try:
        src = ad.read_h5ad(path, backed="r")
    except Exception:  # the whole-study path reads it again and names the problem
        return False
    try:
        if src.n_obs == 0 or not isinstance(src.X, ad.abc.CSRDataset):
            return False
        where = _where(spec)
        rows = max(int(rows_per_block), 1)
        # 1. pseudo-counts are X itself when every value is a whole number >= 0
        n_counts, n_genes = np.zeros(src.n_obs, dtype=np.float32), np.zeros(src.n_obs, dtype=np.int64)
        genes = None
        for start, B in _blocks(src.X, src.n_obs, rows):
            B = _csr(B)
            if not _is_counts(B):
                return False  # not counts in X: the whole-study path looks in .raw or explains
            if genes is None:
                genes = study_gene_names(src.var, spec.organism, where)
            C, symbols = _sum_columns(B, genes.names)
            C.eliminate_zeros()  # a stored zero is not a detected gene
            n_counts[start : start + C.shape[0]] = np.asarray(C.sum(axis=1)).ravel()
            n_genes[start : start + C.shape[0]] = np.diff(C.indptr)
        table, vocabulary, metadata = standard_cells(src.obs, spec)
        report = study_report_before_qc(genes, {"kind": "counts", "source": "X", "note": "raw counts"}, vocabulary, len(symbols),
                                        metadata)
        # 2. the QC decision over every cell
        keep, report = qc_decision(n_counts, n_genes, table["cell_type"].astype(str).to_numpy(), len(symbols), report, True,
                                   ingest, where)
        obs = table[keep].copy()
        obs["n_counts"] = n_counts[keep].astype(np.float32)
        obs["n_genes"] = n_genes[keep].astype(np.int32)
        for c in obs.columns:  # as categories, as the whole-study path writes them
            if obs[c].dtype == object:
                obs[c] = obs[c].astype("category")
        import pandas as pd

        out = ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(symbols, dtype=str)))
        store_report(out, report)
        out.uns["log1p"] = {"base": None}  # what scanpy's log1p records

        # 3. the kept cells normalised, block by block, appended to X
        def write(tmp):
            out.write_h5ad(tmp)
            import h5py

            with h5py.File(tmp, "a") as f:
                written = False
                originals = table["cell_type_original"].astype(str).to_numpy()
                sums = None  # the cells' marker genes per label, for the report's evidence (as qc_and_normalise)
                for start, B in _blocks(src.X, src.n_obs, rows):
                    C, _ = _sum_columns(_csr(B), genes.names)
                    k = keep[start : start + C.shape[0]]
                    if not k.any():
                        continue
                    block = ad.AnnData(X=C[np.flatnonzero(k)])
                    sc.pp.normalize_total(block, target_sum=1e4)
                    sc.pp.log1p(block)
                    X = sp.csr_matrix(block.X, dtype=np.float32)
                    part = marker_sums(X, list(symbols), originals[start : start + C.shape[0]][k])
                    sums = part if sums is None else sums.plus(part)
                    if written:
                        sparse_dataset(f["X"]).append(X)
                    else:
                        write_elem(f, "X", X)
                        written = True
                if sums is not None:
                    report["vocabulary"].setdefault("cell_type", {})["evidence"] = evidence_summary(
                        sums, obs["cell_type_original"].astype(str).to_numpy(),
                        obs["cell_type_ontology_term_id"].astype(str).to_numpy())
                    holder = ad.AnnData(obs=pd.DataFrame(index=["0"]))
                    store_report(holder, report)
                    del f["uns"][REPORT_KEY]
                    write_elem(f["uns"], REPORT_KEY, holder.uns[REPORT_KEY])

        # the kept cells' detected genes are the stored values of the normalised X
        with reserved_space(Path(target), estimated_h5ad_bytes(int(keep.sum()), int(n_genes[keep].sum()), len(symbols))):
            atomic_write(Path(target), write)
        return True
    finally:
        src.file.close()

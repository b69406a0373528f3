"""Read one study into a standard AnnData: raw counts, HGNC symbols, standard obs columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.errors import IngestError
from compute.manifest import FieldSpec, IngestSpec, StudySpec

__all__ = ["CELL_COLUMNS", "read_study", "qc_and_normalise"]

# The standard per-cell columns every ingested study carries, in this order.
CELL_COLUMNS = ("cell_id", "study", "sample", "donor", "cell_type", "disease", "tissue", "simulated")

# CELLxGENE-schema obs columns, tried in order when the manifest does not name one.
_AUTO_COLUMNS = {
    "cell_type": ("cell_type",),
    "disease": ("disease",),
    "tissue": ("tissue",),
    "donor": ("donor_id", "donor"),
    "sample": ("sample_id", "sample", "library_id"),
}


def _where(spec: StudySpec) -> str:
    src = spec.source.path if spec.source.path is not None else spec.source.kind
    return f"study '{spec.id}' ({src})"


def _load_pbmc68k():
    """scanpy's bundled 700 PBMCs; counts recovered from ``.raw`` (log1p of counts per 10k)."""
    import anndata as ad
    import scanpy as sc

    a = sc.datasets.pbmc68k_reduced()
    raw = a.raw.X.toarray() if sp.issparse(a.raw.X) else np.asarray(a.raw.X)
    counts = np.rint(np.expm1(raw) * a.obs["n_counts"].to_numpy()[:, None] / 1e4)
    out = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=a.obs.copy(),
        var=pd.DataFrame(index=a.raw.var_names.copy()),
    )
    return out


def _looks_like_counts(m) -> bool:
    data = m.data if sp.issparse(m) else np.asarray(m).ravel()
    sample = data[: 200_000]
    if sample.size == 0:
        return True
    return bool(np.all(sample >= 0) and np.allclose(sample, np.rint(sample)))


def _count_matrix(adata, spec: StudySpec):
    """(counts, var_names): raw counts from X, or from .raw when X is normalised."""
    if _looks_like_counts(adata.X):
        return adata.X, adata.var
    if adata.raw is not None and _looks_like_counts(adata.raw.X):
        return adata.raw.X, adata.raw.var
    raise IngestError(
        f"{_where(spec)}: X holds non-integer values and there is no .raw with counts. "
        "SigAtlas normalises from raw counts (method.md section 1); store counts in X or .raw.X."
    )


def _symbols(var: pd.DataFrame, spec: StudySpec) -> np.ndarray:
    """HGNC symbols per column; CELLxGENE files (Ensembl index) use var['feature_name']."""
    index = var.index.astype(str)
    if "feature_name" in var.columns and index.str.match(r"^ENS[A-Z]*G\d+").mean() > 0.5:
        names = var["feature_name"].astype(str).to_numpy()
        # CELLxGENE appends "_ENSG..." to symbols that are not unique; keep the symbol part
        return np.array([n.split("_ENSG")[0] for n in names], dtype=object)
    if index.str.match(r"^ENS[A-Z]*G\d+").mean() > 0.5:
        raise IngestError(
            f"{_where(spec)}: var.index holds Ensembl ids and there is no var['feature_name'] with "
            "symbols; add a 'feature_name' column (CELLxGENE schema) or index genes by HGNC symbol."
        )
    return index.to_numpy(dtype=object)


def _column(obs: pd.DataFrame, name: str | None, role: str, spec: StudySpec, required: bool, key: str | None = None):
    if name is not None:
        if name not in obs.columns:
            raise IngestError(
                f"{_where(spec)}: column '{name}' (manifest key '{key or f'columns.{role}'}') is not in obs; "
                f"obs has: {', '.join(map(str, obs.columns))}"
            )
        return obs[name].astype(str).to_numpy(dtype=object)
    for cand in _AUTO_COLUMNS.get(role, ()):
        if cand in obs.columns:
            return obs[cand].astype(str).to_numpy(dtype=object)
    if required:
        raise IngestError(
            f"{_where(spec)}: no '{role}' annotation: set 'columns.{role}' in the manifest "
            f"(obs has: {', '.join(map(str, obs.columns))})"
        )
    return None


def _field(obs: pd.DataFrame, fs: FieldSpec, role: str, spec: StudySpec) -> np.ndarray:
    if fs.value is not None:
        return np.full(len(obs), fs.value, dtype=object)
    return _column(obs, fs.column, role, spec, required=True, key=f"{role}.column")


def read_study(spec: StudySpec):
    """Read a study as AnnData: X = raw counts (CSR float32), var index = symbols,
    obs = :data:`CELL_COLUMNS`. Duplicate symbols are summed. Raises IngestError."""
    import anndata as ad

    if spec.source.kind == "scanpy-pbmc68k":
        adata = _load_pbmc68k()
    else:
        path = spec.source.path
        if path is None or not path.is_file():
            raise IngestError(
                f"{_where(spec)}: file not found. For the demo data run `python -m compute simulate`; "
                "otherwise fix 'source.path' (relative to the manifest)."
            )
        try:
            adata = ad.read_h5ad(path)
        except Exception as exc:  # h5py/anndata raise many types for a damaged file
            raise IngestError(f"{_where(spec)}: cannot read h5ad: {exc}") from exc
    if adata.n_obs == 0:
        raise IngestError(f"{_where(spec)}: the file has no cells")
    counts, var = _count_matrix(adata, spec)
    symbols = _symbols(var, spec)
    counts = sp.csr_matrix(counts, dtype=np.float32)
    uniq, inverse = np.unique(symbols, return_inverse=True)
    if len(uniq) < len(symbols):
        # sum duplicate symbols: one column per gene
        agg = sp.csr_matrix(
            (np.ones(len(symbols), dtype=np.float32), (np.arange(len(symbols)), inverse)),
            shape=(len(symbols), len(uniq)),
        )
        counts = (counts @ agg).tocsr()
        symbols = uniq
    obs = adata.obs
    donor = _column(obs, spec.donor, "donor", spec, required=False)
    sample = _column(obs, spec.sample, "sample", spec, required=False)
    if sample is None:
        sample = donor if donor is not None else np.full(len(obs), spec.id, dtype=object)
    if donor is None:
        donor = sample
    table = pd.DataFrame(
        {
            "cell_id": obs.index.astype(str).to_numpy(dtype=object),
            "study": spec.id,
            "sample": sample,
            "donor": donor,
            "cell_type": _column(obs, spec.cell_type, "cell_type", spec, required=True),
            "disease": _field(obs, spec.disease, "disease", spec),
            "tissue": _field(obs, spec.tissue, "tissue", spec),
            "simulated": bool(spec.simulated),
        }
    )
    table.index = pd.Index([str(i) for i in range(len(table))])
    return ad.AnnData(X=counts, obs=table, var=pd.DataFrame(index=pd.Index(symbols, dtype=str)))


def qc_and_normalise(adata, spec: StudySpec, ingest: IngestSpec):
    """Drop cells below ``min_genes``/``min_counts``; then counts -> per-10k -> log1p.

    Returns a new AnnData with ``obs['n_counts']``, ``obs['n_genes']`` and log-normalised X.
    """
    import scanpy as sc

    X = adata.X
    n_counts = np.asarray(X.sum(axis=1)).ravel()
    n_genes = np.diff(X.indptr)
    keep = (n_counts >= ingest.min_counts) & (n_genes >= ingest.min_genes)
    if not keep.any():
        raise IngestError(
            f"{_where(spec)}: no cell passes QC (min_genes={ingest.min_genes}, min_counts={ingest.min_counts}); "
            f"median genes per cell {np.median(n_genes):.0f}, median counts {np.median(n_counts):.0f}. "
            "Lower 'ingest.min_genes' / 'ingest.min_counts' in the manifest."
        )
    out = adata[keep].copy()
    out.obs["n_counts"] = n_counts[keep].astype(np.float32)
    out.obs["n_genes"] = n_genes[keep].astype(np.int32)
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    return out

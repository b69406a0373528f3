"""Real single-cell data sets shipped inside installed packages, in the forms ingest tests need.

- scanpy ``pbmc68k_reduced``: 700 PBMCs, 765 genes; X scaled (negative values), .raw
  log-normalised (log1p of counts per 10,000 over the full transcriptome, stored to 3 decimals).
- celltypist ``sample_cell_by_gene.csv``: 559 cells x 32,786 genes of integer counts.
- infercnvpy ``oligodendroglioma()``: 184 Smart-seq cells x 9,450 genes (Tirosh et al. 2016).
- Bioconductor HSMMSingleCell (Debian r-bioc-hsmmsinglecell, fetched by ``make test-data``):
  FPKM of 271 human skeletal muscle myoblasts, Ensembl ids with version, duplicated short names.

Parsed data are cached per process; every function returns a fresh copy.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.validate._real import HSMM_DIR, HSMM_FILES

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "SIGATLAS_REQUIRE_TEST_DATA"


def _package_file(package: str, *parts: str) -> str:
    from importlib.resources import files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # celltypist's import of scanpy.__version__
        return str(files(package).joinpath(*parts))


def write(adata, path: Path) -> Path:
    """Write ``adata`` to ``path`` (h5ad) and return the path."""
    for df in (adata.obs, adata.var):  # as categories already: anndata would log each conversion
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].astype("category")
    adata.write_h5ad(path)
    return path


# -- scanpy pbmc68k ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _pbmc68k():
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


def pbmc68k_processed():
    """scanpy's processed pbmc68k_reduced as it ships: X scaled, .raw log-normalised,
    obs['bulk_labels'] the cell types."""
    return _pbmc68k().copy()


# -- celltypist -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _celltypist():
    from compute.validate._real import celltypist_sample

    a = celltypist_sample()
    return a.X, list(a.obs_names), list(a.var_names)


def celltypist_counts(n_cells: int | None = None):
    """celltypist's 559 real cells (first ``n_cells``) x 32,786 genes, integer counts in X,
    var index = the file's gene symbols. The file has no annotation: cell_type is 'unlabelled'."""
    import anndata as ad

    X, cells, genes = _celltypist()
    n = len(cells) if n_cells is None else n_cells
    obs = pd.DataFrame({"cell_type": "unlabelled", "disease": "normal", "tissue": "blood"},
                       index=pd.Index(cells[:n]))
    return ad.AnnData(X=X[:n].copy(), obs=obs, var=pd.DataFrame(index=pd.Index(genes)))


# -- infercnvpy oligodendroglioma ---------------------------------------------------------------
@lru_cache(maxsize=1)
def _oligodendroglioma():
    from compute.validate._real import oligodendroglioma_tpm as load

    return load()


def oligodendroglioma_tpm():
    """184 Smart-seq cells x 9,450 genes as TPM; obs['cell_type'] from the data set.

    infercnvpy 0.6 ships linear TPM/10, not Tirosh's log2(TPM/10 + 1): its largest value is
    34,215 and each cell sums to 75,000-128,000 over these 9,450 genes (about 1e5 = 1e6 / 10).
    So TPM = 10 * X (compute.validate's loader)."""
    return _oligodendroglioma().copy()


def oligodendroglioma_log2():
    """The same cells as Tirosh et al. published them: log2(TPM/10 + 1) (not log1p of
    per-cell normalised counts)."""
    out = oligodendroglioma_tpm()
    X = sp.csr_matrix(out.X, dtype=np.float64)
    X.data = np.log2(X.data / 10 + 1)
    out.X = sp.csr_matrix(X, dtype=np.float32)
    return out


# -- HSMMSingleCell -------------------------------------------------------------------------------
def hsmm_available() -> bool:
    return all((HSMM_DIR / f).is_file() for f in HSMM_FILES)


def require_hsmm() -> None:
    """Skip the calling test when the HSMM files are absent, or fail when
    $SIGATLAS_REQUIRE_TEST_DATA is 1 (CI)."""
    import pytest

    if hsmm_available():
        return
    why = (f"HSMMSingleCell test data not in {HSMM_DIR} (run `make test-data`: it needs apt-get "
           "and the Debian package r-bioc-hsmmsinglecell)")
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{why}; {REQUIRE_ENV}=1 requires it")
    pytest.skip(why)


@lru_cache(maxsize=2)
def _hsmm(index: str):
    from compute.validate._real import hsmm_fpkm as load

    return load(HSMM_DIR, index=index)


def hsmm_fpkm(index: str = "symbol"):
    """271 myoblasts x 47,192 genes of FPKM. ``index="symbol"``: var index = the package's
    gene_short_name (duplicated names included, as a user would load it); ``"ensembl"``:
    var index = Ensembl ids with version and the short names in var['gene_short_name'].
    obs: the sample sheet (Hours, Media, ...), cell_type 'myoblast'."""
    return _hsmm(index).copy()


# -- orthologs ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def orthologs() -> pd.DataFrame:
    """celltypist's Ensembl 105 human-mouse ortholog pairs (columns human, mouse), rows with
    both symbols only."""
    path = _package_file("celltypist", "data", "samples", "Ensembl105_Human2Mouse_Genes.csv")
    return pd.read_csv(path, header=None, names=["human", "mouse"], dtype=str).dropna()


def as_mouse(adata):
    """A copy of a human study with mouse gene symbols: each gene with a mouse ortholog is
    renamed to the first one listed (a mouse symbol claimed by an earlier gene is not reused);
    genes without one are dropped. Real cells, mouse names."""
    first = orthologs().drop_duplicates("human").set_index("human")["mouse"]
    keep, names, used = [], [], set()
    for i, g in enumerate(map(str, adata.var_names)):
        m = first.get(g)
        if m is not None and m not in used:
            keep.append(i)
            names.append(m)
            used.add(m)
    out = adata[:, keep].copy()
    out.var = pd.DataFrame(index=pd.Index(names))
    return out

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

REPO = Path(__file__).resolve().parent.parent
HSMM_DIR = REPO / ".cache" / "test-data" / "HSMMSingleCell"
HSMM_FILES = ("HSMM_expr_matrix.rda", "HSMM_gene_annotation.rda", "HSMM_sample_sheet.rda")
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
    path = _package_file("celltypist", "data", "samples", "sample_cell_by_gene.csv")
    # a plain numeric CSV (cells in rows, no quoting): splitting lines is twice as fast as pandas
    # on 32,786 columns
    with open(path, encoding="utf-8") as f:
        genes = f.readline().rstrip("\n").split(",")[1:]
        assert not any('"' in g for g in genes), "quoted header: parse with pandas instead"
        cells, rows = [], []
        for line in f:
            name, _, rest = line.rstrip("\n").partition(",")
            cells.append(name)
            rows.append(np.array(rest.split(","), dtype=np.float32))
    return sp.csr_matrix(np.vstack(rows)), cells, genes


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
    import infercnvpy as cnv

    with warnings.catch_warnings():
        # the packaged h5ad predates anndata's encoding metadata; it reads correctly
        warnings.simplefilter("ignore")
        return cnv.datasets.oligodendroglioma()


def oligodendroglioma_tpm():
    """184 Smart-seq cells x 9,450 genes as TPM; obs['cell_type'] from the data set.

    infercnvpy 0.6 ships linear TPM/10, not Tirosh's log2(TPM/10 + 1): its largest value is
    34,215 and each cell sums to 75,000-128,000 over these 9,450 genes (about 1e5 = 1e6 / 10).
    So TPM = 10 * X.
    """
    a = _oligodendroglioma()
    X = sp.csr_matrix(a.X, dtype=np.float64) * 10.0
    out = a.copy()
    out.X = sp.csr_matrix(X, dtype=np.float32)
    out.obs["disease"], out.obs["tissue"] = "oligodendroglioma", "brain"
    return out


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


@lru_cache(maxsize=1)
def _hsmm():
    import pyreadr

    def one(name):
        return next(iter(pyreadr.read_r(str(HSMM_DIR / name)).values()))

    expr, genes, samples = (one(f) for f in HSMM_FILES)
    X = sp.csr_matrix(expr.to_numpy(dtype=np.float64).T, dtype=np.float32)  # genes x cells in the file
    return X, list(expr.columns), list(expr.index), genes.loc[expr.index], samples.loc[expr.columns]


def hsmm_fpkm(index: str = "symbol"):
    """271 myoblasts x 47,192 genes of FPKM. ``index="symbol"``: var index = the package's
    gene_short_name (duplicated names included, as a user would load it); ``"ensembl"``:
    var index = Ensembl ids with version and the short names in var['gene_short_name'].
    obs: the sample sheet (Hours, Media, ...), cell_type 'myoblast'."""
    import anndata as ad

    X, cells, ids, genes, samples = _hsmm()
    obs = samples.copy()
    obs.index = pd.Index(cells)
    for c in obs.columns:
        if isinstance(obs[c].dtype, pd.CategoricalDtype):
            obs[c] = obs[c].astype(str)
    obs["cell_type"], obs["disease"], obs["tissue"] = "myoblast", "normal", "skeletal muscle"
    short = genes["gene_short_name"].astype(str).to_numpy()
    if index == "symbol":
        var = pd.DataFrame(index=pd.Index(short))
    else:
        var = pd.DataFrame({"gene_short_name": short}, index=pd.Index(ids))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "var_names are not unique": that is the point
        return ad.AnnData(X=X.copy(), obs=obs, var=var)


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

"""Expression-based scores on the same cells, for comparison (method.md section 5).

``scanpy.tl.score_genes`` (mean expression of the set minus the mean of expression-matched
control genes) on the stored log-normalised expression of the selected cells.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from compute.errors import QueryError

__all__ = ["expression_scores"]


def expression_scores(atlas, genes, selection: np.ndarray, *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0) -> np.ndarray:
    """score_genes per cell, aligned with ``atlas.cells`` (NaN outside ``selection``).

    ``genes``: gene-order symbols. The control genes are binned on the selected cells only, as
    scanpy does for the AnnData it is given. Raises QueryError for an atlas without stored
    expression (built before it was added: rebuild it).
    """
    import anndata as ad
    import scanpy as sc

    if not atlas.has_expression:
        raise QueryError(f"atlas '{atlas.name}' stores no expression (built before it was added): re-run `python -m compute build <manifest>`")
    parts = []
    for s in atlas.studies:
        rows = selection[s.offset : s.offset + s.n_cells]
        if not rows.any():
            continue
        parts.append(atlas._store(s, "expr").rows(rows).tocsr())
    out = np.full(atlas.n_cells, np.nan)
    if not parts:
        return out
    adata = ad.AnnData(sp.vstack(parts, format="csr"))
    adata.var_names = list(atlas.genes)
    sc.tl.score_genes(adata, gene_list=list(genes), ctrl_size=ctrl_size, n_bins=n_bins, random_state=seed, use_raw=False, score_name="score")
    out[selection] = adata.obs["score"].to_numpy(dtype=np.float64)
    return out

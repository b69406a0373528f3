"""Expression-based scores on the same cells, for comparison (method.md section 5).

``scanpy.tl.score_genes`` (mean expression of the set minus the mean of expression-matched
control genes) on the stored log-normalised expression of the selected cells.
"""

from __future__ import annotations

import numpy as np

from compute.errors import QueryError

__all__ = ["expression_scores"]


def expression_scores(atlas, genes, selection: np.ndarray, *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0) -> np.ndarray:
    """score_genes per cell, aligned with ``atlas.cells`` (NaN outside ``selection``).

    ``genes``: gene-order symbols. Each study is scored on its own panel (method.md section 6:
    a gene it did not measure is missing, not zero): score_genes over the study's selected
    cells and measured genes, control genes binned there; NaN for a study that measured none
    of ``genes``. Raises QueryError for an atlas without stored
    expression (built before it was added: rebuild it).
    """
    import anndata as ad
    import scanpy as sc

    if not atlas.has_expression:
        raise QueryError(f"atlas '{atlas.name}' stores no expression (built before it was added): re-run `python -m compute build <manifest>`")
    out = np.full(atlas.n_cells, np.nan)
    wanted = set(genes)
    for s in atlas.studies:
        rows = selection[s.offset : s.offset + s.n_cells]
        if not rows.any():
            continue
        measured = atlas.measured(s.id)
        names = [atlas.genes[i] for i in measured]
        in_set = [g for g in names if g in wanted]
        if not in_set:
            continue  # the study measured none of the genes: no score (NaN), not zero
        X = atlas.expression_rows(s.id, rows)[:, measured].tocsr()
        adata = ad.AnnData(X)
        adata.var_names = names
        sc.tl.score_genes(adata, gene_list=in_set, ctrl_size=ctrl_size, n_bins=n_bins, random_state=seed, use_raw=False, score_name="score")
        out[s.offset : s.offset + s.n_cells][rows] = adata.obs["score"].to_numpy(dtype=np.float64)
    return out

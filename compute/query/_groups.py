"""Per gene and group summaries of a query's selection, for the heatmap and the dot plot."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compute.errors import QueryError
from compute.query._run import query_cells
from compute.query._stats import group_gene_means

__all__ = ["gene_by_group", "gene_group_summary"]


def _top_gene_means(atlas, result, by: str, max_genes: int):
    """(values of the matched genes for all cells, genes, labels, genes x groups mean table of
    the top ``max_genes`` genes). Genes are ranked by their mean over groups (not cells) so a
    large group does not decide the rows alone."""
    genes = list(result.resolution.matched)
    values = atlas.gene_values(genes)
    # the cells as the query grouped them (disease groups)
    labels = query_cells(atlas, result.params)[by].to_numpy().astype(str)
    mean = group_gene_means(values, genes, labels, np.asarray(result.selection, dtype=bool))
    keep = mean.mean(axis=1, skipna=True).fillna(0).sort_values(ascending=False, kind="stable").index[:max_genes]
    return values, genes, labels, mean.loc[keep]


def gene_by_group(atlas, result, by: str = "disease", max_genes: int = 60) -> pd.DataFrame:
    """genes x groups mean attribution over the selected cells (top ``max_genes`` by overall mean)."""
    return _top_gene_means(atlas, result, by, max_genes)[3]


def gene_group_summary(atlas, result, by: str = "disease", max_genes: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, pct): two genes x groups tables with the same index and columns.

    ``mean``: mean attribution of each matched signature gene over the selected cells of each
    group (zeros included; the table ``gene_by_group`` returns). ``pct``: % of the group's hit cells (selected
    and score > ``result.threshold``) in which the gene's attribution is non-zero; NaN for a group
    without hit cells. Rows: the top ``max_genes`` genes by their mean over groups, highest first;
    columns: every group with selected cells, sorted by name.
    """
    if by not in atlas.cells.columns:
        raise QueryError(f"cannot group by '{by}': the atlas cells have no such column")
    genes = list(result.resolution.matched)
    if not genes or not result.selection.any():
        return pd.DataFrame(), pd.DataFrame()
    sel = np.asarray(result.selection, dtype=bool)
    values, genes, labels, mean = _top_gene_means(atlas, result, by, max_genes)
    keep = mean.index
    # NaN scores (outside the selection) compare False: never hits
    hits = sel & (np.asarray(result.scores, dtype=float) > result.threshold)
    pos = {g: i for i, g in enumerate(genes)}
    cols = [pos[g] for g in keep]
    v = values[hits][:, cols]
    nonzero = pd.DataFrame(np.where(np.isnan(v), np.nan, v != 0), columns=list(keep))  # unmeasured: not counted
    pct = 100.0 * nonzero.groupby(labels[hits], sort=True).mean().T
    return mean, pct.reindex(index=mean.index, columns=mean.columns).astype(float)

"""One signature query over an atlas: resolve genes, score, select, hit, rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compute.errors import QueryError
from compute.query._genes import GeneResolution, parse_gene_list
from compute.query._stats import HitRule, group_gene_means, rank_groups, sample_hit_table

__all__ = ["QueryParams", "QueryResult", "run_query"]

MAX_GENES = 5000


@dataclass(frozen=True)
class QueryParams:
    """Everything that determines a query's answer (besides the atlas)."""

    genes: tuple[tuple[str, float | None], ...]
    cell_types: tuple[str, ...] = ()  # empty: all cell types
    diseases: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()
    rule: HitRule = field(default_factory=HitRule)
    cell_min: int = 25
    samp_min: int = 3

    @classmethod
    def from_text(cls, text: str, **kw) -> QueryParams:
        return cls(genes=tuple(parse_gene_list(text)), **kw)


@dataclass
class QueryResult:
    params: QueryParams
    resolution: GeneResolution
    scores: np.ndarray  # all cells
    selection: np.ndarray  # bool mask of cells in the filters
    threshold: float
    samples: pd.DataFrame
    diseases: pd.DataFrame
    studies: pd.DataFrame

    @property
    def n_selected(self) -> int:
        return int(self.selection.sum())


def selection_mask(cells: pd.DataFrame, params: QueryParams) -> np.ndarray:
    mask = np.ones(len(cells), dtype=bool)
    for col, values in (("cell_type", params.cell_types), ("disease", params.diseases), ("study", params.studies)):
        if values:
            mask &= cells[col].astype(str).isin(values).to_numpy()
    return mask


def run_query(atlas, params: QueryParams) -> QueryResult:
    """Answer ``params`` on ``atlas``. Raises QueryError for no matched gene or an empty selection."""
    if not params.genes:
        raise QueryError("the gene list is empty: paste gene symbols or pick a preset")
    if len(params.genes) > MAX_GENES:
        raise QueryError(f"the gene list has {len(params.genes)} entries; at most {MAX_GENES} are accepted")
    res = atlas.resolve(list(params.genes))
    scores = atlas.score_resolved(res)
    sel = selection_mask(atlas.cells, params)
    if not sel.any():
        raise QueryError("no cells match the filters (cell types / diseases / studies): widen them")
    thr = params.rule.threshold(scores[sel])
    samples = sample_hit_table(atlas.cells, scores, sel, thr)
    diseases = rank_groups(samples, "disease", params.cell_min, params.samp_min)
    studies = rank_groups(samples, "study", params.cell_min, 1)
    return QueryResult(params, res, scores, sel, thr, samples, diseases, studies)


def gene_by_group(atlas, result: QueryResult, by: str = "disease", max_genes: int = 60) -> pd.DataFrame:
    """genes x groups mean attribution over the selected cells (top ``max_genes`` by overall mean)."""
    genes = list(result.resolution.matched)
    values = atlas.gene_values(genes)
    table = group_gene_means(values, genes, atlas.cells[by].to_numpy(), result.selection)
    order = table.mean(axis=1).sort_values(ascending=False).index[:max_genes]
    return table.loc[order]

"""Signature queries: gene-list parsing and resolution, hits, per-sample rankings. No torch."""

from compute.query._genes import GeneDecision, GeneResolution, parse_gene_list, resolve_genes
from compute.query._groups import gene_by_group, gene_group_summary
from compute.query._null import (
    N_DETECTION_BINS,
    N_MEAN_BINS,
    NullResult,
    check_draw_pool,
    gene_bins,
    matched_draws,
    prepare_null,
)
from compute.query._ranking import (
    GeneRanking,
    RankingParams,
    differential,
    gene_ranking,
    sample_gene_means,
)
from compute.query._run import (
    DATA_KINDS,
    Evidence,
    QueryParams,
    QueryResult,
    add_evidence,
    query_cells,
    run_query,
    run_ranking,
    selection_mask,
    selection_matrix,
)
from compute.query._stats import (
    DEFAULT_HIT_RULE,
    HIT_KINDS,
    HIT_RANGES,
    HitRule,
    group_gene_means,
    rank_groups,
    sample_hit_table,
)
from compute.query._symbols import SymbolTable, ensembl_base, symbol_table

__all__ = [
    "DATA_KINDS",
    "DEFAULT_HIT_RULE",
    "HIT_KINDS",
    "HIT_RANGES",
    "N_DETECTION_BINS",
    "N_MEAN_BINS",
    "check_draw_pool",
    "gene_bins",
    "matched_draws",
    "prepare_null",
    "Evidence",
    "GeneDecision",
    "GeneResolution",
    "NullResult",
    "HitRule",
    "GeneRanking",
    "RankingParams",
    "differential",
    "gene_ranking",
    "sample_gene_means",
    "QueryParams",
    "QueryResult",
    "gene_by_group",
    "gene_group_summary",
    "group_gene_means",
    "parse_gene_list",
    "rank_groups",
    "resolve_genes",
    "run_query",
    "run_ranking",
    "add_evidence",
    "sample_hit_table",
    "SymbolTable",
    "ensembl_base",
    "symbol_table",
    "query_cells",
    "selection_mask",
    "selection_matrix",
]

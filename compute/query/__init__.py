"""Signature queries over an atlas (any object with the AtlasView contract): scores' hits, the
null, per-sample and gene rankings, the disease evidence. No torch.

The gene-list names (parse_gene_list, resolve_genes, GeneResolution, GeneDecision, SymbolTable,
ensembl_base, symbol_table) live in compute.genes and are re-exported here, where scripts found
them first."""

from compute.genes import (
    GeneDecision,
    GeneResolution,
    SymbolTable,
    ensembl_base,
    parse_gene_list,
    resolve_genes,
    symbol_table,
)
from compute.query._contract import AtlasView, GeneStoreView, ResultCacheView, StudyView, prepare_atlas
from compute.query._groups import gene_by_group, gene_group_summary
from compute.query._meta import (
    EVIDENCE_LEVELS,
    MetaAnalysis,
    donor_table,
    evidence_words,
    meta_analyse,
)
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
    compare_cell_groups,
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
    reference_labels,
    run_query,
    run_ranking,
    selection_mask,
    selection_matrix,
    with_effects,
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

__all__ = [
    "AtlasView",
    "GeneStoreView",
    "ResultCacheView",
    "StudyView",
    "prepare_atlas",
    "compare_cell_groups",
    "EVIDENCE_LEVELS",
    "MetaAnalysis",
    "donor_table",
    "evidence_words",
    "meta_analyse",
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
    "reference_labels",
    "with_effects",
    "selection_mask",
    "selection_matrix",
]

"""Genes, the bottom floor: an offline human symbol table (current, previous and alias symbols,
Ensembl ids) and the parsing and resolution of a pasted gene list against a gene order, showing
every decision. Used by ingest (a study's genes onto the gene order), the atlas and the query.
Imports nothing else of SigAtlas."""

from compute.genes._resolve import MIN_RECOGNISED, STATUSES, GeneDecision, GeneResolution, parse_gene_list, resolve_genes
from compute.genes._symbols import ENSEMBL_RELEASES, SymbolTable, ensembl_base, symbol_table

__all__ = [
    "ENSEMBL_RELEASES",
    "MIN_RECOGNISED",
    "STATUSES",
    "GeneDecision",
    "GeneResolution",
    "SymbolTable",
    "ensembl_base",
    "parse_gene_list",
    "resolve_genes",
    "symbol_table",
]

"""Ingest: read a study, QC, normalise (1e4 + log1p), align to the gene order."""

from compute.ingest._align import GeneOverlap, align_to_genes
from compute.ingest._read import CELL_COLUMNS, qc_and_normalise, read_study

__all__ = ["CELL_COLUMNS", "GeneOverlap", "align_to_genes", "qc_and_normalise", "read_study"]

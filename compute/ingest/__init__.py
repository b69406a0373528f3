"""Ingest: read a study (counts, TPM/FPKM or log-normalised values; human or mouse), harmonise
its genes to current HGNC symbols, QC, normalise (1e4 + log1p), align to the gene order.
Each ingested study carries a report of every decision (:func:`ingest_report`)."""

from compute.ingest._align import GeneOverlap, align_to_genes, gene_overlap
from compute.ingest._blocked import ingest_h5ad_in_blocks
from compute.ingest._genes import detect_species, harmonise_symbols, ortholog_table
from compute.ingest._preview import StudyLabels, labels_json, labels_text, preview_labels
from compute.ingest._qc import qc_and_normalise, qc_decision, qc_thresholds
from compute.ingest._read import CELL_COLUMNS, METADATA_COLUMNS, read_study
from compute.ingest._report import REPORT_KEY, ingest_report

__all__ = [
    "CELL_COLUMNS",
    "METADATA_COLUMNS",
    "GeneOverlap",
    "REPORT_KEY",
    "StudyLabels",
    "align_to_genes",
    "gene_overlap",
    "detect_species",
    "harmonise_symbols",
    "ingest_h5ad_in_blocks",
    "ingest_report",
    "ortholog_table",
    "qc_and_normalise",
    "qc_decision",
    "qc_thresholds",
    "labels_json",
    "labels_text",
    "preview_labels",
    "read_study",
]

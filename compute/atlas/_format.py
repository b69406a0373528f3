"""The on-disk atlas format, version 1 (documented in README.md, 'The atlas format').

    <atlas>/atlas.json                 root: format_version, genes, studies, model card, build
    <atlas>/genes.tsv                  the gene order, one symbol a line
    <atlas>/model/                     the encoder (SCimilarity directory format)
    <atlas>/studies/<id>/cells.parquet one row per cell (standard columns, then the donor or
                                       sample metadata the study carries: sex, age, ...; the
                                       study's entry lists them as ``metadata_columns``)
    <atlas>/studies/<id>/attr.indptr.npy   gene-major (CSC) attributions: int64, n_genes + 1
    <atlas>/studies/<id>/attr.indices.npy  int32 cell positions within the study
    <atlas>/studies/<id>/attr.data.npy     float32 |IG| x input, rows scaled to 1,000
    <atlas>/studies/<id>/expr.{indptr,indices,data}.npy  optional: log-normalised expression,
                                       the same gene-major layout (for expression-based scores)
    <atlas>/studies/<id>/embedding.npy     float32 (n_cells, latent_dim)
    <atlas>/studies/<id>/umap.npy          float32 (n_cells, 2), one layout for the whole atlas
    <atlas>/studies/<id>/measured.npy      int32 gene positions the study measured (its panel):
                                       for scores an unmeasured gene is missing, not zero
    <atlas>/studies/<id>/gene_means.npy    float64 (2, n_genes): mean attribution and mean
                                       normalised expression (per 1e4, before log1p) per gene
                                       over the study's cells; the panel shares come from them

Gene-major storage means a query for k genes reads 2k indptr entries and k contiguous
slices of indices/data, memory-mapped, whatever the number of cells.
"""

FORMAT_NAME = "sigatlas-atlas"
FORMAT_VERSION = 1
ROOT_FILE = "atlas.json"
GENES_FILE = "genes.tsv"
MODEL_DIR = "model"
STUDIES_DIR = "studies"
CELLS_FILE = "cells.parquet"
ATTR_PREFIX = "attr"
EXPR_PREFIX = "expr"
ATTR_FILES = ("attr.indptr.npy", "attr.indices.npy", "attr.data.npy")
EMBEDDING_FILE = "embedding.npy"
UMAP_FILE = "umap.npy"
MEASURED_FILE = "measured.npy"
GENE_MEANS_FILE = "gene_means.npy"

# what a cell holds in a metadata column (sex, age, ...) its study did not record, or recorded
# as missing: atlases whose studies carry different columns read as one table. Atlases built
# before metadata columns were carried have none (their entries lack ``metadata_columns``).
MISSING_METADATA = "unknown"

ELEMENTS = {
    "cells": {"encoding": "parquet-table", "version": 1},
    "attributions": {"encoding": "csc-gene-major", "version": 1, "dtype": "float32", "row_sum": 1000.0},
    "embedding": {"encoding": "dense-npy", "version": 1, "dtype": "float32"},
    # optional: present when every study has it (atlases built before it was added lack it)
    "expression": {"encoding": "csc-gene-major", "version": 1, "dtype": "float32",
                   "values": "log1p(count / cell total * 1e4 * the study measured share of expression)"},
    "umap": {"encoding": "dense-npy", "version": 1, "dtype": "float32"},
    # optional: atlases built before per-study panels were recorded (and imported ones) lack
    # them; every gene then counts as measured and every measured share is 1
    "measured": {"encoding": "gene-positions-npy", "version": 1, "dtype": "int32"},
    "gene_means": {"encoding": "dense-npy", "version": 1, "dtype": "float64", "rows": ["attribution", "expression per 1e4"]},
}

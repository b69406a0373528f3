"""The on-disk atlas format, version 1 (documented in README.md, 'The atlas format').

    <atlas>/atlas.json                 root: format_version, genes, studies, model card, build
    <atlas>/genes.tsv                  the gene order, one symbol a line
    <atlas>/model/                     the encoder (SCimilarity directory format)
    <atlas>/studies/<id>/cells.parquet one row per cell (standard columns)
    <atlas>/studies/<id>/attr.indptr.npy   gene-major (CSC) attributions: int64, n_genes + 1
    <atlas>/studies/<id>/attr.indices.npy  int32 cell positions within the study
    <atlas>/studies/<id>/attr.data.npy     float32 |IG| x input, rows scaled to 1,000
    <atlas>/studies/<id>/expr.{indptr,indices,data}.npy  optional: log-normalised expression,
                                       the same gene-major layout (for expression-based scores)
    <atlas>/studies/<id>/embedding.npy     float32 (n_cells, latent_dim)
    <atlas>/studies/<id>/umap.npy          float32 (n_cells, 2), one layout for the whole atlas

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

ELEMENTS = {
    "cells": {"encoding": "parquet-table", "version": 1},
    "attributions": {"encoding": "csc-gene-major", "version": 1, "dtype": "float32", "row_sum": 1000.0},
    "embedding": {"encoding": "dense-npy", "version": 1, "dtype": "float32"},
    # optional: present when every study has it (atlases built before it was added lack it)
    "expression": {"encoding": "csc-gene-major", "version": 1, "dtype": "float32", "values": "log1p(count / cell total * 1e4)"},
    "umap": {"encoding": "dense-npy", "version": 1, "dtype": "float32"},
}

"""Write an atlas (format version 1). Study files first, the root ``atlas.json`` last."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.atlas import _format as fmt
from compute.atlas._store import save_npy_atomic, write_gene_major

__all__ = ["StudyArrays", "write_atlas", "write_json_atomic"]


@dataclass
class StudyArrays:
    """Everything stored for one study; rows of all arrays are the rows of ``cells``."""

    meta: dict  # id, title, simulated, organism, gene_overlap, ...
    cells: pd.DataFrame
    attributions: sp.csr_matrix  # cells x genes
    embedding: np.ndarray
    umap: np.ndarray
    expression: sp.spmatrix | None = None  # cells x genes, log-normalised, aligned to the gene order


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _write_study(root: Path, s: StudyArrays) -> dict:
    sid = s.meta["id"]
    d = root / fmt.STUDIES_DIR / sid
    d.mkdir(parents=True, exist_ok=True)
    n = len(s.cells)
    if not (s.attributions.shape[0] == s.embedding.shape[0] == s.umap.shape[0] == n):
        raise ValueError(f"study '{sid}': arrays disagree on the number of cells")
    cells = s.cells.reset_index(drop=True)
    tmp = d / f".{fmt.CELLS_FILE}.tmp"
    cells.to_parquet(tmp, index=False)
    os.replace(tmp, d / fmt.CELLS_FILE)
    attr_nnz = write_gene_major(d, fmt.ATTR_PREFIX, s.attributions)
    if s.expression is not None:
        if s.expression.shape != s.attributions.shape:
            raise ValueError(f"study '{sid}': expression and attributions differ in shape")
        write_gene_major(d, fmt.EXPR_PREFIX, s.expression)
    save_npy_atomic(d / fmt.EMBEDDING_FILE, np.ascontiguousarray(s.embedding, dtype=np.float32))
    save_npy_atomic(d / fmt.UMAP_FILE, np.ascontiguousarray(s.umap, dtype=np.float32))
    diseases = cells["disease"].astype(str).value_counts().to_dict()
    return {
        **s.meta,
        "dir": f"{fmt.STUDIES_DIR}/{sid}",
        "n_cells": int(n),
        "n_samples": int(cells["sample"].nunique()),
        "diseases": {k: int(v) for k, v in diseases.items()},
        "cell_types": sorted(cells["cell_type"].astype(str).unique().tolist()),
        "attr_nnz": attr_nnz,
        "has_expression": s.expression is not None,
    }


def write_atlas(
    out: str | Path,
    *,
    name: str,
    gene_order: list[str],
    studies: list[StudyArrays],
    model_dir: Path,
    model_card: dict,
    build: dict,
    method: dict,
) -> Path:
    """Write the atlas under ``out`` and return its path.

    An existing root file is removed first, so an interrupted write leaves an atlas that
    reports itself incomplete rather than a mix of old and new studies.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / fmt.ROOT_FILE).unlink(missing_ok=True)
    (root / fmt.GENES_FILE).write_text("\n".join(gene_order) + "\n")
    model_out = root / fmt.MODEL_DIR
    if Path(model_dir).resolve() != model_out.resolve():
        shutil.rmtree(model_out, ignore_errors=True)
        shutil.copytree(model_dir, model_out)
    old = {p.name for p in (root / fmt.STUDIES_DIR).glob("*")} if (root / fmt.STUDIES_DIR).is_dir() else set()
    entries = [_write_study(root, s) for s in studies]
    for stale in old - {e["id"] for e in entries}:
        shutil.rmtree(root / fmt.STUDIES_DIR / stale, ignore_errors=True)
    doc = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_cells": int(sum(e["n_cells"] for e in entries)),
        "n_genes": len(gene_order),
        "genes_file": fmt.GENES_FILE,
        "model_dir": fmt.MODEL_DIR,
        "elements": {k: v for k, v in fmt.ELEMENTS.items() if k != "expression" or all(e["has_expression"] for e in entries)},
        "method": method,
        "model_card": model_card,
        "build": build,
        "studies": entries,
    }
    write_json_atomic(root / fmt.ROOT_FILE, doc)
    return root

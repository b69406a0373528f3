"""Write an atlas (format version 1). Study files first, the root ``atlas.json`` last."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.atlas import _format as fmt
from compute.atlas._store import write_gene_major
from compute.files import (
    atomic_write,
    copy_tree_atomic,
    file_record,
    save_npy_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["StudyArrays", "checksum_files", "publish_version", "stage_version", "study_entry", "versions_dir", "write_atlas",
           "write_root", "write_study", "write_study_blocks"]


@dataclass
class StudyArrays:
    """Everything stored for one study; rows of all arrays are the rows of ``cells``."""

    meta: dict  # id, title, simulated, organism, gene_overlap, ...
    cells: pd.DataFrame
    attributions: sp.csr_matrix  # cells x genes
    embedding: np.ndarray | None  # None: no encoder embedding (e.g. imported attributions)
    umap: np.ndarray | None
    expression: sp.spmatrix | None = None  # cells x genes, log-normalised, aligned to the gene order
    measured: np.ndarray | None = None  # gene positions the study measured (None: not recorded)


def checksum_files(root: Path, skip: tuple[str, ...] = (fmt.ROOT_FILE,)) -> dict:
    """{relative path: {sha256, bytes}} of every atlas file under ``root`` except the root file,
    markers and temporary files (names starting with '.')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and str(rel) not in skip:
            out[rel.as_posix()] = file_record(p)
    return out


def write_study(root: Path, s: StudyArrays) -> dict:
    sid = s.meta["id"]
    d = root / fmt.STUDIES_DIR / sid
    d.mkdir(parents=True, exist_ok=True)
    n = len(s.cells)
    sizes = [a.shape[0] for a in (s.attributions, s.embedding, s.umap) if a is not None]
    if any(k != n for k in sizes):
        raise ValueError(f"study '{sid}': arrays disagree on the number of cells")
    write_cells(d, s.cells)
    attr_nnz = write_gene_major(d, fmt.ATTR_PREFIX, s.attributions)
    if s.expression is not None:
        if s.expression.shape != s.attributions.shape:
            raise ValueError(f"study '{sid}': expression and attributions differ in shape")
        write_gene_major(d, fmt.EXPR_PREFIX, s.expression)
    if s.embedding is not None:
        save_npy_atomic(d / fmt.EMBEDDING_FILE, np.ascontiguousarray(s.embedding, dtype=np.float32))
    if s.umap is not None:
        save_npy_atomic(d / fmt.UMAP_FILE, np.ascontiguousarray(s.umap, dtype=np.float32))
    n_measured = None
    if s.measured is not None:
        measured = np.unique(np.asarray(s.measured, dtype=np.int32))
        save_npy_atomic(d / fmt.MEASURED_FILE, measured)
        save_npy_atomic(d / fmt.GENE_MEANS_FILE, gene_means(s.attributions, s.expression))
        n_measured = int(measured.size)
    return study_entry(s.meta, s.cells, attr_nnz=attr_nnz, has_expression=s.expression is not None,
                       has_embedding=s.embedding is not None, has_umap=s.umap is not None, n_genes_measured=n_measured)


def write_study_blocks(root: Path, *, meta: dict, cells: pd.DataFrame, attributions, expression, n_genes: int,
                       embedding: np.ndarray | None, umap: np.ndarray | None, measured: np.ndarray | None) -> dict:
    """:func:`write_study` for a study read a block of rows at a time. ``attributions`` and
    ``expression`` (or None) are callables that each return a fresh iterator over the study's
    rows as CSR blocks, in order (each is read twice: the values per gene, then the values);
    ``embedding`` and ``umap`` may be memory-mapped. The files are those :func:`write_study`
    writes for the same matrices; memory is one block and the gene-major stores' index."""
    from compute.atlas._store import GeneMajorWriter

    sid = meta["id"]
    d = root / fmt.STUDIES_DIR / sid
    d.mkdir(parents=True, exist_ok=True)
    n = len(cells)
    sizes = [a.shape[0] for a in (embedding, umap) if a is not None]
    if any(k != n for k in sizes):
        raise ValueError(f"study '{sid}': arrays disagree on the number of cells")
    write_cells(d, cells)
    means = np.zeros((2, n_genes), dtype=np.float64)
    nnz = {}
    for row, (prefix, blocks) in enumerate(((fmt.ATTR_PREFIX, attributions), (fmt.EXPR_PREFIX, expression))):
        if blocks is None:
            continue
        counts, rows = np.zeros(n_genes, dtype=np.int64), 0
        for X in blocks():
            counts += np.bincount(sp.csr_matrix(X).indices, minlength=n_genes)
            rows += X.shape[0]
        if rows != n:
            raise ValueError(f"study '{sid}': {rows} rows of {prefix} for {n} cells")
        writer = GeneMajorWriter(d, prefix, counts)
        try:
            for X in blocks():
                X = sp.csr_matrix(X, dtype=np.float32)
                writer.append(X)
                if prefix == fmt.EXPR_PREFIX:
                    X = X.astype(np.float64)
                    X.data = np.expm1(X.data)
                means[row] += np.asarray(X.sum(axis=0, dtype=np.float64)).ravel()
            nnz[prefix] = writer.close()
        except BaseException:
            writer.abort()
            raise
    if embedding is not None:
        save_npy_atomic(d / fmt.EMBEDDING_FILE, np.ascontiguousarray(embedding, dtype=np.float32))
    if umap is not None:
        save_npy_atomic(d / fmt.UMAP_FILE, np.ascontiguousarray(umap, dtype=np.float32))
    n_measured = None
    if measured is not None:
        measured = np.unique(np.asarray(measured, dtype=np.int32))
        save_npy_atomic(d / fmt.MEASURED_FILE, measured)
        save_npy_atomic(d / fmt.GENE_MEANS_FILE, means / max(n, 1))
        n_measured = int(measured.size)
    return study_entry(meta, cells, attr_nnz=nnz[fmt.ATTR_PREFIX], has_expression=expression is not None,
                       has_embedding=embedding is not None, has_umap=umap is not None, n_genes_measured=n_measured)


def gene_means(attributions, expression=None) -> np.ndarray:
    """(2, genes) float64: mean attribution and mean normalised expression (expm1 of the stored
    log1p values, per 1e4) per gene over the cells; zeros where a matrix is absent."""
    A = sp.csr_matrix(attributions)
    n = max(A.shape[0], 1)
    out = np.zeros((2, A.shape[1]), dtype=np.float64)
    out[0] = np.asarray(A.sum(axis=0, dtype=np.float64)).ravel() / n
    if expression is not None:
        E = sp.csr_matrix(expression, dtype=np.float64, copy=True)
        E.data = np.expm1(E.data)
        out[1] = np.asarray(E.sum(axis=0)).ravel() / n
    return out


def write_cells(study_dir: Path, cells: pd.DataFrame) -> None:
    table = cells.reset_index(drop=True)
    atomic_write(study_dir / fmt.CELLS_FILE, lambda t: table.to_parquet(t, index=False))


def study_entry(meta: dict, cells: pd.DataFrame, *, attr_nnz: int, has_expression: bool, has_embedding: bool = True, has_umap: bool = True,
                n_genes_measured: int | None = None) -> dict:
    """The study's entry in atlas.json (its files already written under studies/<id>)."""
    sid = meta["id"]
    diseases = cells["disease"].astype(str).value_counts().to_dict()
    return {
        **meta,
        "dir": f"{fmt.STUDIES_DIR}/{sid}",
        "n_cells": len(cells),
        "n_samples": int(cells["sample"].nunique()),
        "diseases": {k: int(v) for k, v in diseases.items()},
        "cell_types": sorted(cells["cell_type"].astype(str).unique().tolist()),
        "attr_nnz": int(attr_nnz),
        "has_expression": bool(has_expression),
        "has_embedding": bool(has_embedding),
        "has_umap": bool(has_umap),
        "has_measured": n_genes_measured is not None,
        **({"n_genes_measured": int(n_genes_measured)} if n_genes_measured is not None else {}),
    }


def _elements(entries: list[dict], attributions: dict | None = None) -> dict:
    """The elements every study has; optional ones (expression, embedding, umap) only when all do."""
    optional = {"expression": "has_expression", "embedding": "has_embedding", "umap": "has_umap",
                "measured": "has_measured", "gene_means": "has_measured"}
    out = {}
    for name, spec in fmt.ELEMENTS.items():
        flag = optional.get(name)
        if flag is None or all(e.get(flag, name not in ("measured", "gene_means")) for e in entries):
            out[name] = dict(spec)
    if attributions:
        out["attributions"].update(attributions)
    return out


def write_root(
    root: Path,
    *,
    name: str,
    gene_order: list[str],
    entries: list[dict],
    model_card: dict | None,
    build: dict,
    method: dict,
    attributions: dict | None = None,
    files: dict | None = None,
    report: dict | None = None,
    vocabulary: dict | None = None,
    gene_modules: dict | None = None,
) -> None:
    """Write atlas.json (last, atomically) for studies already written; drop stale study folders.
    ``model_card`` None: the atlas carries no encoder. ``attributions``: overrides of the
    attribution element's description (e.g. the row sum of imported values). ``files``: the
    checksums of the atlas files ({relative path: {sha256, bytes}}, checked by ``python -m compute
    verify``); computed here by reading every file when not given. ``vocabulary``: the
    vocabulary file's name, ontology versions and label-transfer summary (None: none recorded).
    ``gene_modules``: {"dir", "params", ...} of the precomputed gene modules (None: none stored)."""
    studies_dir = root / fmt.STUDIES_DIR
    keep = {e["id"] for e in entries}
    for stale in (p for p in studies_dir.glob("*") if p.name not in keep) if studies_dir.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
    doc = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_cells": int(sum(e["n_cells"] for e in entries)),
        "n_genes": len(gene_order),
        "genes_file": fmt.GENES_FILE,
        "model_dir": fmt.MODEL_DIR if model_card is not None else None,
        "elements": _elements(entries, attributions),
        "method": method,
        "model_card": model_card,
        "build": build,
        "studies": entries,
        "report": report or {},
        "vocabulary": vocabulary,
        "gene_modules": gene_modules,
        "files": files if files is not None else checksum_files(root),
    }
    write_json_atomic(root / fmt.ROOT_FILE, doc)


VERSIONS_SUFFIX = ".versions"
KEEP_VERSIONS = 2  # the version served and the one before it (a server may still read it)


def versions_dir(out: str | Path) -> Path:
    """Where the versions of the atlas at ``out`` live: ``<parent>/.<name>.versions/``."""
    out = Path(out)
    return out.parent / f".{out.name}{VERSIONS_SUFFIX}"


def stage_version(out: str | Path, name: str) -> Path:
    """A version folder for a new build of the atlas at ``out`` (created if needed), seeded
    with hard links to the files of the version served now, so that studies whose inputs did
    not change are not written again (their markers match) while a rewritten file replaces
    its link by a rename, never touching the served version. Returns the folder."""
    out = Path(out)
    stage = versions_dir(out) / name
    stage.mkdir(parents=True, exist_ok=True)
    current = out.resolve() if out.exists() else None
    if current is not None and current != stage.resolve() and (current / fmt.STUDIES_DIR).is_dir():
        for src in (current / fmt.STUDIES_DIR).rglob("*"):
            dst = stage / src.relative_to(current)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            elif not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:  # no hard links here (another device, a file system without them): copy
                    shutil.copy2(src, dst)
    return stage


def publish_version(out: str | Path, stage: str | Path) -> None:
    """Point ``out`` at version ``stage`` in one atomic step (a symbolic link replaced by a
    rename): a server that opened the previous version keeps reading it until it reopens.
    An ``out`` that is still a plain folder (an atlas written before versions) is moved
    among the versions first. Older versions beyond :data:`KEEP_VERSIONS` are removed."""
    out, stage = Path(out), Path(stage)
    versions = versions_dir(out)
    link = out.parent / f".{out.name}.{os.getpid()}.link"
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(stage, out.parent), link)
    if out.is_dir() and not out.is_symlink():
        os.replace(out, versions / f"unversioned-{int(os.path.getmtime(out))}")
    os.replace(link, out)
    served = out.resolve()
    older = sorted((p for p in versions.iterdir() if p.is_dir() and p.resolve() != served), key=lambda p: p.stat().st_mtime)
    for p in older[: max(0, len(older) - (KEEP_VERSIONS - 1))]:
        shutil.rmtree(p, ignore_errors=True)


def begin_atlas(out: str | Path, gene_order: list[str]) -> Path:
    """Create ``out``, remove its root file (so an interrupted write reports itself
    incomplete rather than mixing old and new studies) and write the gene order."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / fmt.ROOT_FILE).unlink(missing_ok=True)
    write_text_atomic(root / fmt.GENES_FILE, "\n".join(gene_order) + "\n")
    return root


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
    root = begin_atlas(out, gene_order)
    model_out = root / fmt.MODEL_DIR
    if Path(model_dir).resolve() != model_out.resolve():
        copy_tree_atomic(Path(model_dir), model_out)
    entries = [write_study(root, s) for s in studies]
    write_root(root, name=name, gene_order=gene_order, entries=entries, model_card=model_card, build=build, method=method)
    return root

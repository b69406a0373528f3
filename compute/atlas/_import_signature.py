"""Import SIGnature's published attribution layout into a SigAtlas atlas.

SIGnature (Gold et al.) ships its precomputed attributions as one folder per cell type::

    <dir>/<cell type>/attributions/        sparse TileDB array, dims x = cell row, y = gene
                                            position in the gene order, attribute "vals"
    <dir>/<cell type>/cell_metadata.csv.gz  one row per array row: study, sample, prediction
                                            (the cell type), disease, tissue, ...

The import streams each array in blocks of cells (never the whole array in memory), spills
each block's rows per study to a scratch folder, then writes every study's gene-major store
with :class:`GeneMajorWriter`. Values are copied as they are (float32), so a score over the
imported atlas equals SIGnature's ``query_attributions`` over the same cells. The atlas has
no encoder, embedding or UMAP: those are not part of the published layout.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.atlas import _format as fmt
from compute.atlas._store import GeneMajorWriter
from compute.atlas._write import begin_atlas, study_entry, write_cells, write_root
from compute.errors import SigAtlasError

__all__ = ["SignatureImportError", "find_signature_folders", "import_signature", "read_gene_order"]

ARRAY_DIR = "attributions"
METADATA_FILES = ("cell_metadata.csv.gz", "cell_metadata.csv")
# SigAtlas cells column -> SIGnature metadata columns accepted for it, first match wins
COLUMN_SOURCES = {
    "study": ("study",),
    "sample": ("sample",),
    "cell_type": ("prediction", "cell_type", "celltype"),
    "disease": ("disease",),
    "tissue": ("tissue",),
    "donor": ("donor", "donor_id", "subject"),
}
REQUIRED = ("study", "sample", "cell_type", "disease")
_HINT = "SIGnature's layout: <dir>/<cell type>/attributions/ (TileDB) and <dir>/<cell type>/cell_metadata.csv.gz"


class SignatureImportError(SigAtlasError):
    """The folder is not in SIGnature's layout, or its parts disagree (named in the message)."""


@dataclass
class _Folder:
    path: Path
    array: Path
    metadata_file: Path
    cells: pd.DataFrame = field(default=None, repr=False)


def read_gene_order(path: str | Path) -> list[str]:
    """The gene order: one symbol per line (the first tab-separated field; blank lines skipped),
    as SCimilarity's ``gene_order.tsv``. Duplicates are an error naming their lines."""
    path = Path(path)
    if not path.is_file():
        raise SignatureImportError(f"{path}: gene order file not found")
    genes, first_line = [], {}
    dups = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        gene = line.split("\t")[0].strip()
        if not gene:
            continue
        if gene in first_line:
            dups.append(f"{gene} (lines {first_line[gene]} and {lineno})")
        first_line.setdefault(gene, lineno)
        genes.append(gene)
    if not genes:
        raise SignatureImportError(f"{path}: the gene order file is empty")
    if dups:
        raise SignatureImportError(f"{path}: duplicate genes in the gene order: {', '.join(dups[:10])}")
    return genes


def find_signature_folders(directory: str | Path) -> list[Path]:
    """The cell-type folders under ``directory`` (or ``directory`` itself when it is one),
    sorted by name. Raises SignatureImportError naming a folder with only half the layout."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SignatureImportError(f"{directory}: not a directory. Expected {_HINT}")

    def complete(d: Path) -> bool | None:
        has_array = (d / ARRAY_DIR).is_dir()
        has_meta = any((d / f).is_file() for f in METADATA_FILES)
        if has_array and has_meta:
            return True
        if has_array or has_meta:
            what = "cell_metadata.csv.gz" if has_array else f"{ARRAY_DIR}/"
            raise SignatureImportError(f"{d}: has {'attributions/' if has_array else 'cell metadata'} but no {what}. Expected {_HINT}")
        return None

    if complete(directory):
        return [directory]
    folders = [d for d in sorted(directory.iterdir()) if d.is_dir() and complete(d)]
    if not folders:
        raise SignatureImportError(f"{directory}: no cell-type folders found. Expected {_HINT}")
    return folders


def _read_metadata(folder: _Folder) -> pd.DataFrame:
    raw = pd.read_csv(folder.metadata_file, low_memory=False)
    first = raw.columns[0]
    cell_ids = raw.pop(first).astype(str) if str(first).startswith("Unnamed") or str(first) in ("", "index", "cell_id") else None
    cells = pd.DataFrame(index=raw.index)
    used = set()
    for column, sources in COLUMN_SOURCES.items():
        found = next((c for c in sources if c in raw.columns), None)
        if found is None and column in REQUIRED:
            raise SignatureImportError(
                f"{folder.metadata_file}: no column for '{column}' (looked for {', '.join(sources)}); it has {', '.join(map(str, raw.columns[:20]))}"
            )
        if found is not None:
            used.add(found)
            values = raw[found].astype(str)
            blank = raw[found].isna()
            if blank.any() and column in REQUIRED:
                rows = ", ".join(str(i + 2) for i in np.flatnonzero(blank.to_numpy())[:5])
                raise SignatureImportError(f"{folder.metadata_file}: column '{found}' is empty on line(s) {rows}")
            cells[column] = values.where(~blank, "unknown")
    if "tissue" not in cells:
        cells["tissue"] = "unknown"
    if "donor" not in cells:
        cells["donor"] = cells["sample"]
    cells.insert(0, "cell_id", cell_ids.to_numpy() if cell_ids is not None else [f"{folder.path.name}:{i}" for i in range(len(raw))])
    cells["simulated"] = False
    cells["source_folder"] = folder.path.name
    cells["source_row"] = np.arange(len(raw), dtype=np.int64)
    for c in raw.columns:  # everything else SIGnature ships (prediction_nn_dist, ...), kept as is
        if c not in used and c not in cells:
            cells[c] = raw[c].astype(str) if raw[c].dtype == object else raw[c]
    return cells


def _open_array(folder: _Folder, n_genes: int, attr: str, dims: tuple[str, str]):
    import tiledb

    try:
        array = tiledb.open(str(folder.array), "r")
    except tiledb.TileDBError as exc:
        raise SignatureImportError(f"{folder.array}: not a readable TileDB array ({exc})") from exc
    schema = array.schema
    names = [schema.domain.dim(i).name for i in range(schema.domain.ndim)]
    attrs = [schema.attr(i).name for i in range(schema.nattr)]
    if not schema.sparse or tuple(names) != dims or attr not in attrs:
        array.close()
        raise SignatureImportError(
            f"{folder.array}: expected a sparse array with dims {dims} and attribute '{attr}', found "
            f"{'sparse' if schema.sparse else 'dense'} dims {tuple(names)} and attributes {attrs}"
        )
    y_hi = int(schema.domain.dim(1).domain[1])
    if y_hi + 1 != n_genes:
        array.close()
        raise SignatureImportError(
            f"{folder.array}: the array has {y_hi + 1} gene columns but the gene order has {n_genes} genes; "
            "pass the gene order the attributions were computed with"
        )
    extent = array.nonempty_domain()
    if extent is not None and int(extent[0][1]) >= len(folder.cells):
        array.close()
        raise SignatureImportError(
            f"{folder.array}: the array has cells up to row {int(extent[0][1])} but {folder.metadata_file.name} "
            f"has only {len(folder.cells)} rows"
        )
    return array


def import_signature(
    attributions: str | Path,
    gene_order: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    block_cells: int = 100_000,
    attr: str = "vals",
    dims: tuple[str, str] = ("x", "y"),
    log=None,
) -> Path:
    """Import SIGnature's layout under ``attributions`` into a new atlas at ``out``; returns ``out``.

    Cells keep their metadata (``prediction`` becomes ``cell_type``; all other columns are
    kept, with ``source_folder`` and ``source_row`` pointing back at the array row) and are
    grouped into studies by the ``study`` column, across cell-type folders. Reads each array
    once, ``block_cells`` rows at a time; scratch space beside ``out`` holds one copy of the
    values until the stores are written. Needs ``tiledb`` (``pip install 'sigatlas[signature]'``).
    """
    try:
        import tiledb  # noqa: F401
    except ImportError as exc:
        raise SignatureImportError(
            "import-signature reads TileDB arrays and needs the tiledb package: "
            "pip install 'sigatlas[signature]' (or pip install tiledb)"
        ) from exc
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    genes = read_gene_order(gene_order)
    folders = []
    for path in find_signature_folders(attributions):
        meta_file = next(path / f for f in METADATA_FILES if (path / f).is_file())
        folder = _Folder(path=path, array=path / ARRAY_DIR, metadata_file=meta_file)
        folder.cells = _read_metadata(folder)
        folders.append(folder)
    n_genes = len(genes)
    out = Path(out)
    scratch = out.parent / f".{out.name}.import-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    counts: dict[str, np.ndarray] = {}
    pieces: dict[str, list[Path]] = {}
    frames: dict[str, list[pd.DataFrame]] = {}
    row_sums = []
    try:
        for folder in folders:
            array = _open_array(folder, n_genes, attr, dims)
            n = len(folder.cells)
            study_of = folder.cells["study"].to_numpy()
            log(f"  {folder.path.name}: {n:,} cells")
            with array:
                for start in range(0, n, block_cells):
                    stop = min(start + block_cells, n)
                    got = array.query(attrs=[attr], dims=list(dims))[start:stop]
                    block = sp.csr_matrix(
                        (got[attr].astype(np.float32), (got[dims[0]].astype(np.int64) - start, got[dims[1]].astype(np.int64))),
                        shape=(stop - start, n_genes),
                    )
                    block.sum_duplicates()
                    row_sums.append(np.asarray(block.sum(axis=1)).ravel())
                    for sid in pd.unique(study_of[start:stop]):
                        rows = np.flatnonzero(study_of[start:stop] == sid)
                        part = block[rows]
                        f = scratch / f"{sum(map(len, pieces.values()))}.npz"
                        sp.save_npz(f, part, compressed=False)
                        pieces.setdefault(sid, []).append(f)
                        counts.setdefault(sid, np.zeros(n_genes, np.int64))
                        counts[sid] += np.bincount(part.indices, minlength=n_genes)
            for sid, frame in folder.cells.groupby("study", sort=False):
                frames.setdefault(sid, []).append(frame)

        root = begin_atlas(out, genes)
        entries = []
        for sid in sorted(pieces):
            d = root / fmt.STUDIES_DIR / _safe(sid)
            writer = GeneMajorWriter(d, fmt.ATTR_PREFIX, counts[sid])
            for f in pieces[sid]:
                writer.append(sp.load_npz(f))
            nnz = writer.close()
            cells = pd.concat(frames[sid], ignore_index=True)
            cells["study"] = _safe(sid)
            write_cells(d, cells)
            meta = {"id": _safe(sid), "title": sid, "simulated": False, "source": "SIGnature import"}
            entry = study_entry(meta, cells, attr_nnz=nnz, has_expression=False, has_embedding=False, has_umap=False)
            entries.append(entry)
            log(f"  study {sid}: {len(cells):,} cells, {nnz:,} values")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    sums = np.concatenate(row_sums) if row_sums else np.zeros(0)
    expressed = sums[sums > 0]
    scaled = expressed.size > 0 and bool(np.allclose(expressed, expressed[0], rtol=1e-3))
    write_root(
        root,
        name=name or out.name,
        gene_order=genes,
        entries=entries,
        model_card=None,
        build={
            "source": "import-signature",
            "attributions_dir": str(Path(attributions).resolve()),
            "gene_order_file": str(Path(gene_order).resolve()),
            "gene_order_sha256": hashlib.sha256("\n".join(genes).encode()).hexdigest(),
            "folders": [f.path.name for f in folders],
            "seconds": round(time.perf_counter() - t0, 1),
        },
        method={
            "attributions": "imported from SIGnature's precomputed arrays, values unchanged",
            "departures": ["no encoder, embedding or UMAP in the atlas (not part of SIGnature's published layout)"],
        },
        attributions={"row_sum": round(float(expressed[0]), 3) if scaled else None, "source": "SIGnature TileDB import"},
    )
    log(f"imported {sum(e['n_cells'] for e in entries):,} cells in {len(entries)} studies into {root} "
        f"({time.perf_counter() - t0:.1f} s)")
    return root


def _safe(study: str) -> str:
    """A study id usable as a folder name (unchanged when it already is one)."""
    s = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(study)).lstrip(".") or "_"
    return s if s == study else f"{s}-{hashlib.sha1(str(study).encode()).hexdigest()[:6]}"

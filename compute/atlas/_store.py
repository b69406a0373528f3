"""Gene-major (CSC) matrix stores: one study's attributions or expression, memory-mapped.

Three .npy files per store, ``<prefix>.indptr.npy`` (int64, n_genes + 1),
``<prefix>.indices.npy`` (int32 cell positions, ascending within a gene) and
``<prefix>.data.npy`` (float32). A query for k genes touches 2k indptr entries and k
contiguous slices of indices and data, whatever the number of cells; nothing else is read.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from compute.errors import AtlasFormatError
from compute.files import PositionedNpy, allocate, save_npy_atomic

__all__ = ["AGGREGATES", "GeneMajorStore", "GeneMajorWriter", "consolidate_stores", "consolidated_store", "record_file", "store_files", "write_gene_major"]

AGGREGATES = ("mean", "sum", "max")


def store_files(prefix: str) -> tuple[str, str, str]:
    return (f"{prefix}.indptr.npy", f"{prefix}.indices.npy", f"{prefix}.data.npy")


def write_gene_major(directory: str | Path, prefix: str, matrix) -> int:
    """Write ``matrix`` (cells x genes, any scipy/numpy form) as a gene-major store; each file
    goes to a temporary name and is renamed into place. Returns the number of stored values."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    csc = sp.csc_matrix(matrix, dtype=np.float32)
    csc.sum_duplicates()
    csc.sort_indices()
    f_indptr, f_indices, f_data = store_files(prefix)
    save_npy_atomic(d / f_indptr, csc.indptr.astype(np.int64))
    save_npy_atomic(d / f_indices, csc.indices.astype(np.int32))
    save_npy_atomic(d / f_data, csc.data.astype(np.float32))
    return int(csc.nnz)


class _MappedArray:
    """A new 1-d .npy file mapped for writing (Python's mmap: shared with the file), whose pages
    can be dropped from this process's resident memory (:meth:`release`; Linux: the values stay
    in the page cache and reach the file as usual, a later access reads them back). The pages a
    writer scatters values into would otherwise stay resident until the map closes: the whole
    store's size."""

    def __init__(self, path: Path, dtype, n: int):
        import mmap

        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))  # writes the header, sizes the file
        offset = header.offset
        del header
        try:
            allocate(path)  # a full disk: StorageError here, not SIGBUS when the map is written
        except OSError:
            path.unlink(missing_ok=True)
            raise
        self._fh = open(path, "r+b")  # noqa: SIM115 - closed in close()
        self._map = mmap.mmap(self._fh.fileno(), 0)
        self.array = np.frombuffer(self._map, dtype=dtype, count=n, offset=offset) if n else np.zeros(0, dtype=dtype)

    def release(self) -> None:
        import mmap

        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self, flush: bool = True) -> None:
        self.array = None
        if flush:
            self._map.flush()
        self._map.close()
        self._fh.close()


class GeneMajorWriter:
    """Write a gene-major store from row blocks without holding the matrix in memory.

    ``counts[g]`` is the number of non-zeros gene ``g`` will receive over all blocks (known
    from a first pass). :meth:`append` takes the next cells x genes block (CSR, rows in
    order, no duplicate entries); each value goes straight to its place in memory-mapped
    temporary files, which :meth:`close` renames into place once every value has arrived.
    Peak memory is one block, whatever the number of cells.
    """

    def __init__(self, directory: str | Path, prefix: str, counts: np.ndarray):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        counts = np.asarray(counts, dtype=np.int64)
        self.indptr = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self._cursor = self.indptr[:-1].copy()
        self._files = store_files(prefix)
        nnz = int(self.indptr[-1])
        self._tmp = [self.dir / f".{f}.tmp.npy" for f in self._files]
        self._maps = [_MappedArray(self._tmp[1], np.int32, nnz)]
        try:
            self._maps.append(_MappedArray(self._tmp[2], np.float32, nnz))
        except OSError:
            self.abort()
            raise
        self._indices, self._data = (m.array for m in self._maps)
        self.n_rows = 0

    def append(self, block: sp.spmatrix) -> None:
        csc = sp.csc_matrix(block, dtype=np.float32)
        csc.sort_indices()
        if csc.shape[1] != self.indptr.size - 1:
            raise ValueError(f"block has {csc.shape[1]} genes, the store {self.indptr.size - 1}")
        per_gene = np.diff(csc.indptr)
        if np.any(self._cursor + per_gene > self.indptr[1:]):
            raise ValueError("a block brings more values for some gene than its count allows")
        gene_of = np.repeat(np.arange(per_gene.size), per_gene)
        dest = self._cursor[gene_of] + (np.arange(csc.nnz) - csc.indptr[gene_of])
        self._indices[dest] = csc.indices + self.n_rows
        self._data[dest] = csc.data
        self._cursor += per_gene
        self.n_rows += csc.shape[0]
        for m in self._maps:
            m.release()

    def abort(self) -> None:
        """Drop the temporary files; nothing is renamed into place."""
        self._indices = self._data = None
        for m in self._maps:
            m.close(flush=False)
        self._maps = []
        for tmp in self._tmp:
            tmp.unlink(missing_ok=True)

    def close(self) -> int:
        """Check every value arrived, flush and rename into place; returns the number of values."""
        if not np.array_equal(self._cursor, self.indptr[1:]):
            short = int(np.sum(self.indptr[1:] - self._cursor))
            self.abort()
            raise ValueError(f"gene-major store {self.dir}: {short} announced values never arrived")
        self._indices = self._data = None
        for m in self._maps:
            m.close()
        self._maps = []
        np.save(self._tmp[0], self.indptr)
        for tmp, f in zip(self._tmp, self._files, strict=True):
            os.replace(tmp, self.dir / f)
        return int(self.indptr[-1])


BLOCK_VALUES = 4_000_000  # values a block read holds (16 MB of indices and 16 MB of data)


class _PositionedReader:
    """Ranges of a store's 1-d .npy files read with positioned reads (compute.files.PositionedNpy),
    never memory-mapped; a short file is an AtlasFormatError."""

    def __init__(self, paths: dict[str, Path]):
        self._files = {name: PositionedNpy(path) for name, path in paths.items()}
        for f in self._files.values():
            f.open()

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            return self._files[name].read(start, stop - start).copy()
        except ValueError as exc:
            raise AtlasFormatError(f"{exc}, which its store's index says it holds: rebuild the atlas") from exc

    def close(self) -> None:
        for f in self._files.values():
            f.close()


class GeneMajorStore:
    """Read side of a gene-major store. ``hint`` is appended to format errors (what to re-run)."""

    def __init__(self, directory: str | Path, prefix: str, n_genes: int, n_cells: int, *, hint: str = ""):
        d = Path(directory)
        try:
            # plain ndarray views of the memory maps: slicing an np.memmap builds a memmap object
            # per slice (about 3 us each, most of a query over many studies); a view reads the
            # same mapped pages, which stay mapped while the store is open
            self.indptr, self.indices, self.data = (np.asarray(np.load(d / f, mmap_mode="r")) for f in store_files(prefix))
        except (OSError, ValueError) as exc:
            raise AtlasFormatError(f"{d}: cannot read the '{prefix}' store ({exc}). {hint}".rstrip()) from exc
        if self.indptr.shape != (n_genes + 1,) or self.indices.shape != self.data.shape or int(self.indptr[-1]) != self.data.shape[0]:
            raise AtlasFormatError(
                f"{d}: the '{prefix}' store does not match the gene order ({self.indptr.shape[0] - 1} vs {n_genes} genes). {hint}".rstrip()
            )
        self.n_genes, self.n_cells = n_genes, n_cells
        self._paths = {name: d / f for name, f in zip(("indptr", "indices", "data"), store_files(prefix), strict=True)}

    @classmethod
    def from_arrays(cls, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_cells: int) -> GeneMajorStore:
        """A store over arrays already in memory (or mapped), e.g. a consolidated store."""
        store = cls.__new__(cls)
        store.indptr, store.indices, store.data = indptr, indices, data
        store.n_genes, store.n_cells = indptr.size - 1, int(n_cells)
        store._paths = None
        return store

    @classmethod
    def exists(cls, directory: str | Path, prefix: str) -> bool:
        return all((Path(directory) / f).is_file() for f in store_files(prefix))

    def column(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(cell positions, values) of gene ``g``'s non-zeros."""
        a, b = int(self.indptr[g]), int(self.indptr[g + 1])
        return self.indices[a:b], self.data[a:b]

    def gather(self, genes) -> sp.csc_matrix:
        """cells x len(genes) CSC of those gene columns: contiguous slices copied, nothing else read."""
        genes = np.asarray(genes, dtype=np.int64)
        lo, hi = np.asarray(self.indptr[genes]), np.asarray(self.indptr[genes + 1])
        indptr = np.zeros(genes.size + 1, dtype=np.int64)
        np.cumsum(hi - lo, out=indptr[1:])
        index_dtype = np.int32 if indptr[-1] < 2**31 - 1 else np.int64
        empty_i, empty_d = np.zeros(0, np.int32), np.zeros(0, np.float32)
        indices = np.concatenate([self.indices[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)] or [empty_i])
        data = np.concatenate([self.data[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)] or [empty_d])
        return sp.csc_matrix((data, indices.astype(index_dtype, copy=False), indptr.astype(index_dtype)), shape=(self.n_cells, genes.size))

    def aggregate(self, genes, weights=None, how: str = "mean", out: np.ndarray | None = None) -> np.ndarray:
        """Per-cell aggregate over gene positions ``genes``, added into ``out`` (float64, length
        n_cells; a new zero array by default): "mean" sum_g w_g a_cg / sum_g w_g (w = 1 without
        weights), "sum" sum_g w_g a_cg, "max" max_g w_g a_cg. Zeros count: a cell without a
        gene's value has 0 for it.

        Sums run in float32, the precision the values are stored in (relative error below 1e-6
        against float64, tested), column after column straight from the mapped store (a compiled
        loop: no gathered copy, about 10 us of overhead per store, so a query over hundreds of
        studies costs about what it costs over one); the same operations in the same order as
        scipy's CSC matrix-vector product over :meth:`gather`'s columns, so the results are equal.
        """
        genes = np.asarray(genes, dtype=np.int64)
        w = np.ones(genes.size) if weights is None else np.asarray(weights, dtype=np.float64)
        if how == "max":
            vec = np.zeros(self.n_cells, dtype=np.float64)
            for g, wg in zip(genes.tolist(), w.tolist(), strict=True):
                idx, val = self.column(g)
                vec[idx] = np.maximum(vec[idx], wg * val.astype(np.float64))
        else:
            vec = self.weighted_sums(genes, (w / w.sum() if how == "mean" else w).astype(np.float32))
        if out is None:
            return vec.astype(np.float64)
        out += vec
        return out

    def weighted_sums(self, genes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """float32 per cell: sum_j weights[j] x value of gene ``genes[j]`` (int64 positions;
        float32 weights), summed column after column in float32 (see :meth:`aggregate`)."""
        from compute.atlas._store_kernel import weighted_column_sums

        vec = np.zeros(self.n_cells, dtype=np.float32)
        weighted_column_sums(self.indptr, self.indices, self.data, np.asarray(genes, dtype=np.int64),
                             np.asarray(weights, dtype=np.float32), vec)
        return vec

    def rows(self, cells: np.ndarray) -> sp.csc_matrix:
        """The whole store restricted to the cells where boolean ``cells`` is true (in memory)."""
        csc = sp.csc_matrix((np.asarray(self.data), np.asarray(self.indices), np.asarray(self.indptr)), shape=(self.n_cells, self.n_genes))
        cells = np.asarray(cells, dtype=bool)
        return csc if cells.all() else csc[np.flatnonzero(cells)]

    # -- reading a whole store with bounded memory (the build: panel calibration, gene modules) --
    def _value_blocks(self, genes: np.ndarray | None = None, block_values: int = BLOCK_VALUES):
        """Yield (gene positions, values per gene, cell positions, values) for runs of consecutive
        genes (of ``genes``, ascending; all by default) holding at most ``block_values`` values
        (or one gene, when a gene alone holds more). Read with positioned reads of the files, not
        through the memory map: a mapped page this process touched counts in its resident memory
        until the map is closed, so reading a whole store through the map would show the store's
        size; here a block's arrays are dropped with it."""
        indptr = np.asarray(self.indptr, dtype=np.int64)
        genes = np.arange(self.n_genes, dtype=np.int64) if genes is None else np.asarray(genes, dtype=np.int64)
        lo, hi = indptr[genes], indptr[genes + 1]
        files = _PositionedReader(self._paths) if self._paths is not None else None
        try:
            i = 0
            while i < genes.size:
                # the longest run of genes from i, contiguous in the gene order, within block_values
                j = i + 1
                while j < genes.size and genes[j] == genes[j - 1] + 1 and hi[j] - lo[i] <= block_values:
                    j += 1
                a, b = int(lo[i]), int(hi[j - 1])
                if files is not None:
                    idx, val = files.read("indices", a, b), files.read("data", a, b)
                else:
                    idx, val = np.asarray(self.indices[a:b]), np.asarray(self.data[a:b])
                yield genes[i:j], hi[i:j] - lo[i:j], idx, val
                i = j
        finally:
            if files is not None:
                files.close()

    def rows_in_blocks(self, cells: np.ndarray, genes: np.ndarray | None = None, *, block_values: int = BLOCK_VALUES) -> sp.csc_matrix:
        """As :meth:`rows` (then restricted to gene positions ``genes``, ascending, when given), read
        a block of genes at a time (:meth:`_value_blocks`): memory is the selected values and
        one block, whatever the store's size."""
        cells = np.asarray(cells, dtype=bool)
        new_row = np.cumsum(cells) - 1
        cols = np.arange(self.n_genes, dtype=np.int64) if genes is None else np.asarray(genes, dtype=np.int64)
        counts = np.zeros(cols.size, dtype=np.int64)
        idx_parts, val_parts = [], []
        at = 0
        for block_genes, per_gene, idx, val in self._value_blocks(cols, block_values):
            keep = cells[idx]
            gene_of = np.repeat(np.arange(block_genes.size), per_gene)
            counts[at : at + block_genes.size] = np.bincount(gene_of[keep], minlength=block_genes.size)
            idx_parts.append(new_row[idx[keep]].astype(np.int32))
            val_parts.append(val[keep].astype(np.float32, copy=False))
            at += block_genes.size
        indptr = np.zeros(cols.size + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32)
        data = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
        return sp.csc_matrix((data, indices, indptr), shape=(int(cells.sum()), cols.size))

    def gene_totals_in_blocks(self, *, block_values: int = BLOCK_VALUES) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`gene_totals` over every cell, read a block of genes at a time (sums in float64)."""
        sums, counts = np.zeros(self.n_genes), np.zeros(self.n_genes, dtype=np.int64)
        for block_genes, per_gene, _, val in self._value_blocks(None, block_values):
            gene_of = np.repeat(np.arange(block_genes.size), per_gene)
            sums[block_genes] = np.bincount(gene_of, weights=val.astype(np.float64), minlength=block_genes.size)
            counts[block_genes] = per_gene
        return sums, counts

    def gene_totals(self, cell_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sum of values, number of non-zero cells) per gene over the cells in ``cell_mask``."""
        if cell_mask is not None:
            from compute.atlas._store_kernel import masked_column_totals

            sums, counts = np.zeros(self.n_genes), np.zeros(self.n_genes, dtype=np.int64)
            masked_column_totals(np.asarray(self.indptr, dtype=np.int64), self.indices, self.data, np.asarray(cell_mask, dtype=bool), sums, counts)
            return sums, counts
        indices, data = np.asarray(self.indices), np.asarray(self.data, dtype=np.float64)
        gene_of = np.repeat(np.arange(self.n_genes), np.diff(np.asarray(self.indptr)))
        if cell_mask is not None:
            keep = np.asarray(cell_mask, dtype=bool)[indices]
            gene_of, data = gene_of[keep], data[keep]
        sums = np.bincount(gene_of, weights=data, minlength=self.n_genes)
        counts = np.bincount(gene_of, minlength=self.n_genes)
        return sums, counts


def _unique_tmp(d: Path, name: str) -> Path:
    """A temporary name beside ``name`` that no other process or thread uses: two writers of one
    derived file must never open the same temporary file (one truncating what the other has
    memory-mapped kills the other with SIGBUS)."""
    return d / f".{name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp.npy"


def consolidate_stores(stores: list[GeneMajorStore], directory: str | Path | None = None, prefix: str = "attr") -> GeneMajorStore:
    """One gene-major store over ``stores`` stacked in order (the studies' cells one block after
    the other): each gene's values of every study in one contiguous slice, so a query reads k
    slices whatever the number of studies. Written to ``directory`` (temporary names of this
    writer alone, renamed into place, then memory-mapped) or, without one, held in memory. Its
    values are the stores' values, unchanged. Writers of one directory must hold its lock
    (:func:`consolidated_store`, which also records the checksums)."""
    from compute.atlas._store_kernel import copy_columns

    n_genes = stores[0].n_genes
    counts = np.zeros(n_genes, dtype=np.int64)
    for st in stores:
        counts += np.diff(np.asarray(st.indptr, dtype=np.int64))
    indptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz, n_cells = int(indptr[-1]), sum(st.n_cells for st in stores)
    if directory is None:
        indices, data = np.empty(nnz, dtype=np.int32 if n_cells < 2**31 else np.int64), np.empty(nnz, dtype=np.float32)
    else:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = [_unique_tmp(d, f) for f in store_files(prefix)]
    try:
        if directory is not None:
            indices = np.lib.format.open_memmap(tmp[1], mode="w+", dtype=np.int32 if n_cells < 2**31 else np.int64, shape=(nnz,))
            data = np.lib.format.open_memmap(tmp[2], mode="w+", dtype=np.float32, shape=(nnz,))
            for t in tmp[1:]:
                allocate(t)  # a full disk: StorageError here, not SIGBUS when the map is written
        cursor = indptr[:-1].copy()
        offset = 0
        for st in stores:
            copy_columns(np.asarray(st.indptr, dtype=np.int64), st.indices, st.data, offset, cursor, indices, data)
            offset += st.n_cells
        if directory is None:
            return GeneMajorStore.from_arrays(indptr, indices, data, n_cells)
        indices.flush()
        data.flush()
        del indices, data
        np.save(tmp[0], indptr)
        for t, f in zip(tmp, store_files(prefix), strict=True):
            os.replace(t, d / f)
    finally:
        if directory is not None:
            for t in tmp:
                t.unlink(missing_ok=True)
    return GeneMajorStore(d, prefix, n_genes, n_cells)


RECORD_VERSION = 1


def record_file(prefix: str) -> str:
    """The file beside a consolidated store that records its files' checksums."""
    return f"{prefix}.record.json"


class _DirectoryLock:
    """An exclusive lock on a derived directory, for every process and thread (``fcntl.flock``
    on a file of its own: each holder opens the lock file itself, so two threads of one process
    exclude each other as two processes do; the system frees it when its holder ends)."""

    def __init__(self, directory: Path, prefix: str):
        self.path = directory / f".{prefix}.lock"

    def __enter__(self):
        import fcntl

        self._fh = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def _damage(d: Path, prefix: str, n_genes: int, n_cells: int, nnz: int) -> str | None:
    """What is wrong with the consolidated store in ``d`` (its record missing or unreadable, a
    file missing, of another size or another checksum than recorded, or a store of other
    dimensions); None when every file matches its record."""
    import json

    from compute.files import file_sha256

    record_path = d / record_file(prefix)
    try:
        record = json.loads(record_path.read_text())
        files = record["files"]
        if record.get("version") != RECORD_VERSION or [record.get("n_genes"), record.get("n_cells"), record.get("nnz")] != [n_genes, n_cells, nnz]:
            return f"{record_path} describes another store ({record.get('n_genes')} genes, {record.get('n_cells')} cells, {record.get('nnz')} values)"
    except FileNotFoundError:
        return f"{record_path} is missing (a store written before checksums, or a write that did not finish)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{record_path} is unreadable ({exc})"
    for f in store_files(prefix):
        want = files.get(f) if isinstance(files, dict) else None
        path = d / f
        try:
            size = path.stat().st_size
            if not isinstance(want, dict) or size != want.get("bytes"):
                return f"{path} has {size:,} bytes, its record {want.get('bytes') if isinstance(want, dict) else None}"
            if file_sha256(path) != want.get("sha256"):
                return f"{path} does not match its recorded checksum"
        except OSError as exc:
            return f"{path} cannot be read ({exc})"
    return None


def consolidated_store(stores: list[GeneMajorStore], directory: str | Path, prefix: str = "attr", *, log=None) -> GeneMajorStore:
    """The consolidated store of ``stores`` (:func:`consolidate_stores`) kept in ``directory``:
    the one there when every file matches the checksums recorded when it was written (checked
    here, once per call: a process maps it once), else written again with a new record. One
    writer at a time, of any process or thread (a lock file in ``directory``); a reader maps only
    files that a finished write renamed into place, and a write never changes a file in place,
    so a store another thread or process has mapped stays whole. A store found damaged is said
    (``log(message)``), discarded and rebuilt. Raises OSError (CacheError, a StorageError) when
    ``directory`` cannot be written."""
    from compute.atlas._cache import private_folder
    from compute.files import file_record, write_json_atomic

    d = Path(directory)
    private_folder(d)
    n_genes, n_cells = stores[0].n_genes, sum(st.n_cells for st in stores)
    nnz = sum(int(st.data.shape[0]) for st in stores)
    with _DirectoryLock(d, prefix):
        present = any((d / f).exists() for f in (*store_files(prefix), record_file(prefix)))
        problem = _damage(d, prefix, n_genes, n_cells, nnz) if present else "absent"
        if problem is None:
            try:
                return GeneMajorStore(d, prefix, n_genes, n_cells)
            except AtlasFormatError as exc:
                problem = str(exc)
        if present and log is not None:
            log(f"consolidated store {d}: {problem}; discarded and rebuilt from the atlas")
        (d / record_file(prefix)).unlink(missing_ok=True)  # no record while the files change: a crash leaves it rebuilt
        whole = consolidate_stores(stores, d, prefix)
        write_json_atomic(d / record_file(prefix), {
            "version": RECORD_VERSION, "n_genes": n_genes, "n_cells": n_cells, "nnz": nnz,
            "files": {f: file_record(d / f) for f in store_files(prefix)}})
        return whole

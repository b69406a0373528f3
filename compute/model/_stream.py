"""Training data that never sits in memory whole: per-study CSR pieces on disk, read a batch at
a time (positioned reads of each row's values), and a seeded sampler that balances studies and
cell types.

A piece is a folder with ``data.npy`` (float32), ``indices.npy`` (int32) and ``indptr.npy``
(int64) of one study's cells aligned to the gene order, and ``piece.json`` (rows, genes,
stored values), written last: a folder without it is unfinished and is written again.

The sampler is a pure function of (seed, epoch, batch index): a batch can be recomputed
anywhere (a resumed run, another rank of a distributed run) without any state to carry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from compute.files import PositionedNpy

__all__ = ["BalancedBatches", "CellCorpus", "PieceWriter", "piece_blocks", "piece_info", "piece_ready", "piece_rows", "write_piece"]

_PIECE_FILES = ("data", "indices", "indptr")
_MARKER = "piece.json"


def write_piece(folder: str | Path, X: sp.csr_matrix) -> dict:
    """Write ``X`` (cells x genes) as a piece in ``folder`` (every file atomically, the marker
    last); returns the marker's content."""
    with PieceWriter(folder, sp.csr_matrix(X).shape[1]) as w:
        w.append(X)
    return w.info


_HEADER = 128  # bytes before a piece array's values: the .npy header of any 1-d array of up to 10^18 values


class PieceWriter:
    """Write a piece from row blocks, one block in memory at a time.

    Each block's values go straight to the end of temporary files; :meth:`close` writes their
    .npy headers (1-d arrays, whose header always fits in :data:`_HEADER` bytes), the row index,
    renames every file into place and writes the marker last. Used as a context manager, an
    error drops the temporary files and leaves no marker: the piece is written again."""

    def __init__(self, folder: str | Path, n_genes: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / _MARKER).unlink(missing_ok=True)  # unfinished until close
        self.n_genes = int(n_genes)
        self._tmp = {name: self.folder / f".{name}.{os.getpid()}.tmp.npy" for name in ("data", "indices")}
        self._fh = {name: open(path, "wb") for name, path in self._tmp.items()}
        for fh in self._fh.values():
            fh.write(b"\0" * _HEADER)
        self._row_nnz: list[np.ndarray] = []
        self.n_rows, self.nnz, self.info = 0, 0, None

    def append(self, block) -> None:
        """The next rows (cells x genes, any scipy or numpy form); values are stored as float32,
        each row's genes in ascending order."""
        X = sp.csr_matrix(block, dtype=np.float32)
        if X.shape[1] != self.n_genes:
            raise ValueError(f"{self.folder}: a block of {X.shape[1]} genes, the piece has {self.n_genes}")
        X.sort_indices()
        self._fh["data"].write(np.ascontiguousarray(X.data, dtype=np.float32).tobytes())
        self._fh["indices"].write(np.ascontiguousarray(X.indices, dtype=np.int32).tobytes())
        self._row_nnz.append(np.diff(X.indptr).astype(np.int64))
        self.n_rows += X.shape[0]
        self.nnz += X.nnz

    def abort(self) -> None:
        for fh in self._fh.values():
            fh.close()
        for path in self._tmp.values():
            path.unlink(missing_ok=True)

    def close(self) -> dict:
        from compute.files import save_npy_atomic, write_json_atomic

        for name, dtype in (("data", np.float32), ("indices", np.int32)):
            fh = self._fh[name]
            fh.seek(0)
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (self.nnz,)}
            np.lib.format.write_array_header_1_0(fh, header)
            if fh.tell() != _HEADER:
                raise AssertionError(f"unexpected .npy header length {fh.tell()} for {self.nnz} values")
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(self._tmp[name], self.folder / f"{name}.npy")
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        if self._row_nnz:
            np.cumsum(np.concatenate(self._row_nnz), out=indptr[1:])
        save_npy_atomic(self.folder / "indptr.npy", indptr)
        self.info = {"n_rows": int(self.n_rows), "n_genes": self.n_genes, "nnz": int(self.nnz)}
        write_json_atomic(self.folder / _MARKER, self.info)
        return self.info

    def __enter__(self) -> PieceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def piece_blocks(folder: str | Path, rows_per_block: int):
    """Yield (first row, the rows as CSR float32) of a finished piece, ``rows_per_block`` rows at
    a time, read with positioned reads (one block in memory)."""
    n_genes = piece_info(folder)["n_genes"]
    piece = _FilePiece(Path(folder))
    piece.open()
    try:
        for start in range(0, piece.n_rows, max(int(rows_per_block), 1)):
            stop = min(start + int(rows_per_block), piece.n_rows)
            yield start, piece.block(start, stop, n_genes)
    finally:
        piece.close()


def piece_info(folder: str | Path, what: str = "piece") -> dict:
    """A finished piece's marker: {"n_rows", "n_genes", "nnz"}; FileNotFoundError naming it (``what``)
    and what to re-run when the piece is unfinished."""
    folder = Path(folder)
    if not piece_ready(folder):
        raise FileNotFoundError(f"{folder}: not a finished {what} (piece.json missing); re-run the build, which writes it again")
    return {k: int(v) for k, v in json.loads((folder / _MARKER).read_text()).items()}


def piece_rows(folder: str | Path) -> int:
    """The number of rows of a finished piece (from its marker)."""
    return piece_info(folder)["n_rows"]


def piece_ready(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished piece (its marker and every array)."""
    folder = Path(folder)
    return (folder / _MARKER).is_file() and all((folder / f"{n}.npy").is_file() for n in _PIECE_FILES)


class _ArrayPiece:
    """A piece held in memory (CellCorpus.from_csr)."""

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray):
        self.data, self.indices, self.indptr = data, indices, indptr
        self.n_rows = len(indptr) - 1

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
        return lengths, self.indices[pos], self.data[pos]


class _FilePiece:
    """A piece on disk, each row read with positioned reads (os.pread) of its stored values.

    Not a memory map: pages of a mapped file that a process touched count in its resident set
    until the kernel reclaims them, so reading random rows of a memory-mapped corpus for an
    epoch would show a resident set the size of the corpus. Here a batch's rows are read into
    fresh arrays and dropped with it."""

    def __init__(self, folder: Path):
        self.files = {name: PositionedNpy(folder / f"{name}.npy") for name in _PIECE_FILES}
        self.n_rows = self.files["indptr"].length - 1
        self.folder = folder

    def open(self) -> None:
        """Open the piece's files (CellCorpus keeps a bounded number of pieces open: 3 descriptors
        each, and a corpus of thousands of studies would pass the usual limit of 1,024)."""
        for f in self.files.values():
            f.open()

    def _read(self, name: str, start: int, count: int) -> np.ndarray:
        return self.files[name].read(start, count)

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bounds = [self._read("indptr", int(r), 2) for r in rows]
        lengths = np.array([int(b[1] - b[0]) for b in bounds], dtype=np.int64)
        indices = [self._read("indices", int(b[0]), n) for b, n in zip(bounds, lengths, strict=True)]
        data = [self._read("data", int(b[0]), n) for b, n in zip(bounds, lengths, strict=True)]
        empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
        return lengths, (np.concatenate(indices) if indices else empty[0]), (np.concatenate(data) if data else empty[1])

    def block(self, start: int, stop: int, n_genes: int) -> sp.csr_matrix:
        """Rows ``start`` to ``stop`` as one CSR matrix: three contiguous reads."""
        indptr = self._read("indptr", start, stop - start + 1).astype(np.int64)
        a, n = int(indptr[0]), int(indptr[-1] - indptr[0])
        return sp.csr_matrix((self._read("data", a, n).copy(), self._read("indices", a, n).copy(), indptr - a),
                             shape=(stop - start, n_genes))

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


class CellCorpus:
    """Rows of several CSR pieces addressed by one global cell index (pieces in order).

    ``CellCorpus.open(folders, n_genes)`` reads pieces on disk a batch at a time (positioned
    reads, never the whole piece); ``CellCorpus.from_csr(X)`` wraps a matrix already in memory
    (same interface). ``rows(idx)`` returns the dense float32 rows and counts them in
    ``rows_read`` and ``max_rows_per_call``, so a test can check how much was read at once.
    """

    MAX_OPEN = 128  # pieces with open files at a time (least recently read closed first)

    def __init__(self, pieces: list, n_genes: int):
        self._pieces = pieces
        self._open: dict[int, None] = {}  # insertion order = recency
        self.n_genes = int(n_genes)
        sizes = np.array([p.n_rows for p in pieces], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_cells = int(self.offsets[-1])
        self.rows_read = 0
        self.max_rows_per_call = 0

    @classmethod
    def open(cls, folders: list[str | Path], n_genes: int) -> CellCorpus:
        pieces = []
        for folder in map(Path, folders):
            info = piece_info(folder, "training piece")
            if info["n_genes"] != n_genes:
                raise ValueError(f"{folder}: piece has {info['n_genes']} genes, the gene order {n_genes}; re-run the build")
            pieces.append(_FilePiece(folder))
        return cls(pieces, n_genes)

    @classmethod
    def from_csr(cls, X: sp.spmatrix) -> CellCorpus:
        X = sp.csr_matrix(X, dtype=np.float32)
        return cls([_ArrayPiece(X.data, X.indices, X.indptr.astype(np.int64))], X.shape[1])

    @property
    def n_open(self) -> int:
        """Pieces whose files are open now (at most ``MAX_OPEN``)."""
        return len(self._open)

    def _touch(self, p: int) -> None:
        self._open.pop(p, None)
        self._open[p] = None
        self._pieces[p].open()
        while len(self._open) > self.MAX_OPEN:
            oldest = next(iter(self._open))
            del self._open[oldest]
            self._pieces[oldest].close()

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Dense float32 rows ``idx`` (global cell indices, any order), in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.zeros((idx.size, self.n_genes), dtype=np.float32)
        piece_of = np.searchsorted(self.offsets, idx, side="right") - 1
        for p in np.unique(piece_of):
            at = np.flatnonzero(piece_of == p)
            local = idx[at] - self.offsets[p]
            order = np.argsort(local, kind="stable")  # in file order: reads move forward through the piece
            piece = self._pieces[p]
            if isinstance(piece, _FilePiece):
                self._touch(int(p))
            lengths, indices, data = piece.read(local[order])
            out[np.repeat(at[order], lengths), indices] = data
        self.rows_read += int(idx.size)
        self.max_rows_per_call = max(self.max_rows_per_call, int(idx.size))
        return out


@dataclass(frozen=True)
class _Strata:
    order: np.ndarray  # cell indices sorted by (study, label)
    study: np.ndarray  # per stratum
    label: np.ndarray
    start: np.ndarray
    count: np.ndarray


def _strata(study: np.ndarray, label: np.ndarray) -> _Strata:
    """The cells ordered by (study, label, index), as ``np.lexsort((label, study))`` orders
    them, built one study at a time: the only array of the corpus's length it makes is the
    order itself (int32 below 2**31 cells), so the build process grows 4 B a cell, not the
    ~50 of a lexsort over int64 copies. Studies stored in contiguous runs (as the build writes
    them) are read in place; otherwise one stable argsort groups them first."""
    n = study.size
    itype = np.int32 if n < 2**31 else np.int64
    order = np.empty(n, dtype=itype)
    contiguous = n < 2 or bool(np.all(study[1:] >= study[:-1]))
    grouped = None if contiguous else np.argsort(study, kind="stable").astype(itype)
    by_study = study if contiguous else study[grouped]
    bounds = np.flatnonzero(by_study[1:] != by_study[:-1]) + 1  # a bool a cell, not a diff of the codes
    del by_study
    starts, stops = np.r_[0, bounds], np.r_[bounds, n]
    s_out, l_out, start_out, count_out = [], [], [], []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        cells = np.arange(a, b, dtype=itype) if contiguous else grouped[a:b]
        lab = np.asarray(label[a:b] if contiguous else label[cells], dtype=np.int64)
        by_label = np.argsort(lab, kind="stable")
        order[a:b] = cells[by_label]
        lab = lab[by_label]
        change = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        s_out.append(np.full(change.size, int(study[cells[0]]), dtype=np.int64))
        l_out.append(lab[change])
        start_out.append(change + a)
        count_out.append(np.diff(np.r_[change, b - a]))
    del grouped
    return _Strata(order, np.concatenate(s_out), np.concatenate(l_out), np.concatenate(start_out).astype(np.int64),
                   np.concatenate(count_out).astype(np.int64))


class BalancedBatches:
    """Batches of global cell indices, a pure function of (seed, epoch, batch).

    Each batch holds ``pair_share`` of its cells in cross-study groups: a cell type shared by
    at least two studies (drawn with weight sqrt(its cells), so rare types come up more often
    than their share), two different studies that have it (uniformly), and ``group`` cells of
    that type from each, so every batch carries anchor-positive pairs for the triplet loss. The
    rest is drawn study-balanced: a study with weight sqrt(its cells), a cell type (or the
    study's unlabelled cells) within it with weight sqrt(their cells), then a cell. Draws are
    with replacement; an epoch is ``n_cells / batch_size`` batches.

    ``study_codes`` and ``label_codes``: one integer per cell (label -1: no usable label, used
    for reconstruction only). The sampler holds one index array of the corpus's length (4 bytes a
    cell below 2**31 cells) beside the codes it is given, never cell values.
    """

    def __init__(self, study_codes, label_codes, batch_size: int, seed: int, *, pair_share: float = 0.5, group: int = 4):
        study, label = np.asarray(study_codes), np.asarray(label_codes)
        if study.shape != label.shape or study.ndim != 1:
            raise ValueError(f"study_codes and label_codes must be 1-d of one length, got {study.shape} and {label.shape}")
        self.n_cells = int(study.size)
        if self.n_cells < 2:
            raise ValueError(f"training needs at least 2 cells (BatchNorm), got {self.n_cells}")
        self.batch_size = int(min(batch_size, self.n_cells))
        self.seed = int(seed)
        self.group = int(group)
        self.n_batches = max(1, -(-self.n_cells // self.batch_size))
        self._strata = _strata(study, label)
        st = self._strata
        self._studies = np.unique(st.study)
        cells_in = np.array([st.count[st.study == k].sum() for k in self._studies], dtype=np.float64)
        self._study_p = np.sqrt(cells_in) / np.sqrt(cells_in).sum()
        self._strata_of = {int(k): np.flatnonzero(st.study == k) for k in self._studies}
        self._within_p = {k: np.sqrt(st.count[v]) / np.sqrt(st.count[v]).sum() for k, v in self._strata_of.items()}
        # cell types in two or more studies: what the cross-study groups are drawn from (the exact
        # label: under an ontology relation it is always its own positive)
        shared = {}
        for i in range(len(st.label)):
            if st.label[i] >= 0:
                shared.setdefault(int(st.label[i]), []).append(i)
        self._pair_labels = np.array(sorted(k for k, v in shared.items() if len(v) > 1), dtype=np.int64)
        self._pair_strata = {k: np.array(shared[k]) for k in self._pair_labels}
        w = np.sqrt([st.count[self._pair_strata[k]].sum() for k in self._pair_labels]) if self._pair_labels.size else np.zeros(0)
        self._pair_p = w / w.sum() if w.size else w
        self.pair_share = float(pair_share) if self._pair_labels.size else 0.0

    def state(self) -> dict:
        """What identifies the batches (to check a checkpoint was written by the same sampler)."""
        return {"kind": "balanced", "seed": self.seed, "n_cells": self.n_cells, "batch_size": self.batch_size,
                "pair_share": self.pair_share, "group": self.group, "n_batches": self.n_batches}

    def batch(self, epoch: int, b: int) -> np.ndarray:
        """The sorted global cell indices of batch ``b`` of ``epoch`` (length ``batch_size``)."""
        rng = np.random.default_rng([self.seed, int(epoch), int(b), 22])
        st = self._strata
        picks: list[np.ndarray] = []
        n_groups = int(self.batch_size * self.pair_share) // (2 * self.group)
        if n_groups:
            labels = rng.choice(self._pair_labels, size=n_groups, p=self._pair_p)
            for lab in labels:
                two = rng.choice(self._pair_strata[int(lab)], size=2, replace=False)
                for k in two:
                    picks.append(st.start[k] + rng.integers(st.count[k], size=self.group))
        taken = sum(p.size for p in picks)
        rest = self.batch_size - taken
        if rest:
            studies = rng.choice(self._studies, size=rest, p=self._study_p)
            for k in np.unique(studies):
                m = int((studies == k).sum())
                strata = self._strata_of[int(k)]
                which = strata[rng.choice(strata.size, size=m, p=self._within_p[int(k)])]
                picks.append(st.start[which] + (rng.random(m) * st.count[which]).astype(np.int64))
        return np.sort(st.order[np.concatenate(picks)].astype(np.int64))

"""Read an atlas: ``Atlas.open(path)``; read-only, memory-mapped, no torch."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import _format as fmt
from compute.errors import AtlasFormatError, QueryError
from compute.query._genes import GeneResolution, resolve_genes

__all__ = ["Atlas", "SignatureWarning", "StudyInfo"]

_REBUILD = "Re-run `python -m compute build <manifest>` to (re)write it."


class SignatureWarning(UserWarning):
    """Some requested genes were left out of a score (not in the gene order, or duplicated)."""


@dataclass(frozen=True)
class StudyInfo:
    id: str
    title: str
    n_cells: int
    simulated: bool
    offset: int  # first row of this study in Atlas.cells
    dir: Path
    meta: dict


class _GeneMajor:
    """One study's memory-mapped CSC attribution store."""

    def __init__(self, d: Path, n_genes: int, n_cells: int):
        indptr_f, indices_f, data_f = (d / f for f in fmt.ATTR_FILES)
        try:
            self.indptr = np.load(indptr_f, mmap_mode="r")
            self.indices = np.load(indices_f, mmap_mode="r")
            self.data = np.load(data_f, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise AtlasFormatError(f"{d}: cannot read the attribution store ({exc}). {_REBUILD}") from exc
        if self.indptr.shape != (n_genes + 1,) or self.indices.shape != self.data.shape:
            raise AtlasFormatError(
                f"{d}: attribution store does not match the gene order ({self.indptr.shape[0] - 1} vs {n_genes} genes). {_REBUILD}"
            )
        self.n_cells = n_cells

    def column(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[g]), int(self.indptr[g + 1])
        return self.indices[a:b], self.data[a:b]


class Atlas:
    """An atlas on disk. Open with :meth:`open`; never writes.

    ``genes``: the gene order. ``cells``: one row per cell (study, sample, donor, cell_type,
    disease, tissue, simulated, ...). ``score(genes)``: mean attribution per cell, aligned
    with ``cells``.
    """

    def __init__(self, path: Path, root: dict):
        self.path = path
        self.meta = root
        self.name: str = root.get("name", path.name)
        self.studies: tuple[StudyInfo, ...] = tuple(self._study_infos(root))
        self._stores: dict[str, _GeneMajor] = {}

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Atlas:
        """Open and validate the root of an atlas; raises AtlasFormatError saying what to re-run."""
        path = Path(path)
        root_file = path / fmt.ROOT_FILE
        if not path.is_dir():
            raise AtlasFormatError(f"{path}: no atlas here (not a directory). {_REBUILD}")
        if not root_file.is_file():
            raise AtlasFormatError(
                f"{path}: no {fmt.ROOT_FILE}: the atlas is missing or its build did not finish. {_REBUILD}"
            )
        try:
            root = json.loads(root_file.read_text())
        except json.JSONDecodeError as exc:
            raise AtlasFormatError(f"{root_file}: not valid JSON ({exc}). {_REBUILD}") from exc
        if root.get("format") != fmt.FORMAT_NAME:
            raise AtlasFormatError(f"{root_file}: not a SigAtlas atlas (format={root.get('format')!r}). {_REBUILD}")
        version = root.get("format_version")
        if not isinstance(version, int):
            raise AtlasFormatError(f"{root_file}: no format_version. {_REBUILD}")
        if version > fmt.FORMAT_VERSION:
            raise AtlasFormatError(
                f"{root_file}: format_version {version} is newer than this SigAtlas reads ({fmt.FORMAT_VERSION}); "
                "upgrade SigAtlas (git pull && make setup)."
            )
        if version < fmt.FORMAT_VERSION:
            raise AtlasFormatError(
                f"{root_file}: format_version {version} is older than this SigAtlas reads ({fmt.FORMAT_VERSION}). {_REBUILD}"
            )
        for key in ("genes_file", "studies", "n_cells"):
            if key not in root:
                raise AtlasFormatError(f"{root_file}: missing key '{key}'. {_REBUILD}")
        atlas = cls(path, root)
        for s in atlas.studies:
            missing = [f for f in (fmt.CELLS_FILE, *fmt.ATTR_FILES, fmt.UMAP_FILE) if not (s.dir / f).is_file()]
            if missing:
                raise AtlasFormatError(f"{s.dir}: study '{s.id}' is missing {', '.join(missing)}. {_REBUILD}")
        return atlas

    def _study_infos(self, root: dict):
        offset = 0
        for entry in root["studies"]:
            yield StudyInfo(
                id=entry["id"],
                title=entry.get("title", entry["id"]),
                n_cells=int(entry["n_cells"]),
                simulated=bool(entry.get("simulated", False)),
                offset=offset,
                dir=self.path / entry["dir"],
                meta=entry,
            )
            offset += int(entry["n_cells"])

    # -- read-outs -------------------------------------------------------------------
    @cached_property
    def genes(self) -> list[str]:
        f = self.path / self.meta["genes_file"]
        if not f.is_file():
            raise AtlasFormatError(f"{f}: gene order file missing. {_REBUILD}")
        return [ln for ln in f.read_text().splitlines() if ln]

    @cached_property
    def cells(self) -> pd.DataFrame:
        """One row per cell, all studies in atlas order (categorical columns)."""
        frames = []
        for s in self.studies:
            df = pd.read_parquet(s.dir / fmt.CELLS_FILE)
            if len(df) != s.n_cells:
                raise AtlasFormatError(f"{s.dir}: cells table has {len(df)} rows, atlas.json says {s.n_cells}. {_REBUILD}")
            frames.append(df)
        cells = pd.concat(frames, ignore_index=True)
        for c in ("study", "sample", "donor", "cell_type", "disease", "tissue"):
            if c in cells:
                cells[c] = cells[c].astype(str).astype("category")
        cells["simulated"] = cells["simulated"].astype(bool)
        return cells

    @property
    def n_cells(self) -> int:
        return int(self.meta["n_cells"])

    @property
    def has_simulated(self) -> bool:
        return any(s.simulated for s in self.studies)

    def umap(self) -> np.ndarray:
        """(n_cells, 2) UMAP coordinates aligned with ``cells``."""
        return np.concatenate([np.load(s.dir / fmt.UMAP_FILE) for s in self.studies]) if self.studies else np.zeros((0, 2), np.float32)

    def embedding(self) -> np.ndarray:
        """(n_cells, latent_dim) embeddings aligned with ``cells``."""
        return np.concatenate([np.load(s.dir / fmt.EMBEDDING_FILE) for s in self.studies])

    def _store(self, s: StudyInfo) -> _GeneMajor:
        if s.id not in self._stores:
            self._stores[s.id] = _GeneMajor(s.dir, len(self.genes), s.n_cells)
        return self._stores[s.id]

    # -- queries ---------------------------------------------------------------------
    def resolve(self, genes, weights=None) -> GeneResolution:
        """Match ``genes`` (strings or (gene, weight) pairs) to the gene order; see GeneResolution."""
        if isinstance(genes, str):
            genes = [genes]
        return resolve_genes(list(genes), self.genes, weights)

    def gene_values(self, genes) -> np.ndarray:
        """(n_cells, len(genes)) float32 attributions of gene-order symbols ``genes`` (zeros included)."""
        pos = {g: i for i, g in enumerate(self.genes)}
        unknown = [g for g in genes if g not in pos]
        if unknown:
            raise QueryError(f"not in the gene order of atlas '{self.name}': {', '.join(unknown)}")
        out = np.zeros((self.n_cells, len(genes)), dtype=np.float32)
        for s in self.studies:
            store = self._store(s)
            for j, g in enumerate(genes):
                idx, val = store.column(pos[g])
                out[s.offset + idx, j] = val
        return out

    def score(self, genes, weights=None) -> np.ndarray:
        """Per-cell signature score aligned with ``cells`` (method.md section 4):
        sum_g a_cg / |G|, or sum_g w_g a_cg / sum_g w_g with weights. Zeros are included.

        Genes absent from the gene order are left out with a :class:`SignatureWarning`
        naming them; duplicates count once. Raises QueryError when no gene matches or the
        weights do not sum to a positive number.
        """
        res = self.resolve(genes, weights)
        if res.missing or res.duplicates:
            parts = []
            if res.missing:
                parts.append(f"{len(res.missing)} not in the gene order ({', '.join(res.missing[:20])}{', ...' if len(res.missing) > 20 else ''})")
            if res.duplicates:
                parts.append(f"{len(res.duplicates)} duplicates ({', '.join(res.duplicates[:20])})")
            warnings.warn(f"left out of the score: {'; '.join(parts)}", SignatureWarning, stacklevel=2)
        return self.score_resolved(res)

    def score_resolved(self, res: GeneResolution) -> np.ndarray:
        """Score for an already-resolved gene list (no warnings)."""
        if not res.matched:
            raise QueryError(
                f"none of the {len(res.requested)} requested genes is in the gene order of atlas '{self.name}'"
            )
        w = np.asarray(res.weights, dtype=np.float64)
        if w.sum() <= 0:
            raise QueryError("the weights of the matched genes must sum to a positive number")
        out = np.zeros(self.n_cells, dtype=np.float64)
        for s in self.studies:
            store = self._store(s)
            idx_parts, val_parts = [], []
            for g, wg in zip(res.indices, w, strict=True):
                idx, val = store.column(g)
                idx_parts.append(idx)
                val_parts.append(np.asarray(val, dtype=np.float64) * wg)
            if idx_parts:
                idx = np.concatenate(idx_parts)
                val = np.concatenate(val_parts)
                out[s.offset : s.offset + s.n_cells] = np.bincount(idx, weights=val, minlength=s.n_cells)
        return out / w.sum()

    def __repr__(self) -> str:
        return f"Atlas({str(self.path)!r}, {len(self.studies)} studies, {self.n_cells} cells, {len(self.genes)} genes)"

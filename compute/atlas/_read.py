"""Read an atlas: ``Atlas.open(path)``; read-only, memory-mapped, no torch."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import _format as fmt
from compute.atlas._cache import ResultCache
from compute.atlas._store import AGGREGATES, GeneMajorStore
from compute.atlas._verify import VERIFY_MODES
from compute.atlas._vocab import (
    FILTER_COLUMNS,
    TERM_COLUMNS,
    TermTree,
    filter_mask,
    predicted_columns,
    read_vocabulary,
)
from compute.errors import AtlasFormatError, QueryError
from compute.genes import GeneResolution, resolve_genes, symbol_table

__all__ = ["FILTER_COLUMNS", "Atlas", "SignatureWarning", "StudyInfo"]

_cache_log = logging.getLogger("sigatlas.cache")
_OPEN_ATLASES: weakref.WeakSet = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    # a process forked while another thread held an atlas's lock would wait on it forever
    for atlas in list(_OPEN_ATLASES):
        atlas._whole_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)



def _normalise_filters(**filters) -> dict[str, list[str]]:
    """{column: sorted values} for the filters that are given (a string counts as one value)."""
    out = {}
    for name, values in filters.items():
        if values is None:
            continue
        if isinstance(values, str):
            values = [values]
        values = sorted({str(v) for v in values})
        if values:
            out[FILTER_COLUMNS.get(name, name)] = values
    return out

SCALES = ("panel", "raw")


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise QueryError(f"scale must be one of {', '.join(SCALES)}, got '{scale}'")


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


class Atlas:
    """An atlas on disk. Open with :meth:`open`; never writes.

    ``genes``: the gene order. ``cells``: one row per cell (study, sample, donor, cell_type,
    disease, tissue, simulated, ...). ``score(genes)``: mean attribution per cell, aligned
    with ``cells``.
    """

    def __init__(self, path: Path, root: dict, *, cache: bool | str | Path = True, verify: str = "lazy"):
        # the version folder itself: an atlas path that is a link to the served version (see
        # compute.atlas.publish_version) may be switched to a new build while this one is open
        self.path = path.resolve()
        self.link = path
        self.meta = root
        self.name: str = root.get("name", path.name)
        self.studies: tuple[StudyInfo, ...] = tuple(self._study_infos(root))
        self._stores: dict[tuple[str, str], GeneMajorStore] = {}
        self._has_expression: bool | None = None
        self._gene_scales: dict[str, np.ndarray | None] = {}  # calibrated per-gene panel factors, read once (gene_scale)
        self._whole: GeneMajorStore | None = None  # every study's attributions as one store (consolidated_store)
        self._whole_lock = threading.Lock()
        _OPEN_ATLASES.add(self)
        self._memo: dict[str, tuple] = {}
        self._verify = verify
        self._verified: set[str] = set()  # studies whose files matched their checksums
        fingerprint = hashlib.sha256((path / fmt.ROOT_FILE).read_bytes()).hexdigest()[:20] if (path / fmt.ROOT_FILE).is_file() else "none"
        self.fingerprint = fingerprint
        directory = cache if isinstance(cache, str | Path) and not isinstance(cache, bool) else None
        self.cache = ResultCache(fingerprint, directory, enabled=cache is not False)

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, cache: bool | str | Path = True, verify: str = "lazy") -> Atlas:
        """Open and validate the root of an atlas; raises AtlasFormatError saying what to re-run.

        ``cache``: True keeps query results in a disk cache (``$SIGATLAS_CACHE_DIR`` or
        ~/.cache/sigatlas, per atlas content), a path puts it there, False disables it.
        ``verify``: how files are checked against the checksums atlas.json records: "lazy"
        (default) the size of every file now and each study's checksums when the study is
        first read (a damaged study is refused with the file and the repair command, never
        served); "full" every checksum now; "sizes" sizes only; "none" no check.
        """
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
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
        atlas = cls(path, root, cache=cache, verify=verify)
        atlas._check_at_open()
        required = [fmt.CELLS_FILE, *fmt.ATTR_FILES]
        required += [f for element, f in (("umap", fmt.UMAP_FILE), ("embedding", fmt.EMBEDDING_FILE)) if atlas.has_element(element)]
        for s in atlas.studies:
            missing = [f for f in required if not (s.dir / f).is_file()]
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

    def study_cells(self, study: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Study ``study``'s rows of the cells table as stored (``columns`` only, when given):
        for work that goes study by study and must not hold every cell's labels at once."""
        s = self._study_info(study)
        self.verify_study(s)
        df = pd.read_parquet(s.dir / fmt.CELLS_FILE, columns=columns)
        if len(df) != s.n_cells:
            raise AtlasFormatError(f"{s.dir}: cells table has {len(df)} rows, atlas.json says {s.n_cells}. {_REBUILD}")
        return df

    @cached_property
    def cells(self) -> pd.DataFrame:
        """One row per cell, all studies in atlas order (categorical columns)."""
        frames = []
        for s in self.studies:
            self.verify_study(s)
            df = pd.read_parquet(s.dir / fmt.CELLS_FILE)
            if len(df) != s.n_cells:
                raise AtlasFormatError(f"{s.dir}: cells table has {len(df)} rows, atlas.json says {s.n_cells}. {_REBUILD}")
            frames.append(df)
        cells = pd.concat(frames, ignore_index=True)
        predicted = predicted_columns(self.path, self.meta, self.vocabulary, len(cells))
        if predicted is not None:
            cells = pd.concat([cells, predicted], axis=1)
        for c in ("study", "sample", "donor", "cell_type", "disease", "tissue", *(f"{k}_{suffix}" for k in TERM_COLUMNS
                  for suffix in ("original", "ontology_term_id")), "cell_type_predicted", "cell_type_predicted_ontology_term_id"):
            if c in cells:
                cells[c] = cells[c].astype(str).astype("category")
        cells["simulated"] = cells["simulated"].astype(bool) if "simulated" in cells else False
        for c in self.metadata_columns:
            # a study that did not record the column holds nothing there after the concat
            values = cells[c].astype(object) if c in cells else pd.Series(fmt.MISSING_METADATA, index=cells.index, dtype=object)
            cells[c] = values.where(values.notna(), fmt.MISSING_METADATA).astype(str).astype("category")
        return cells

    @cached_property
    def metadata_columns(self) -> list[str]:
        """The donor or sample metadata columns of ``cells`` (sex, age, ... whatever the studies
        carry), in the order the studies first list them; a cell whose study lacks one holds
        MISSING_METADATA ("unknown") there. [] for atlases built before they were carried."""
        out: dict[str, None] = {}
        for s in self.studies:
            for c in s.meta.get("metadata_columns") or ():
                out.setdefault(str(c), None)
        return list(out)

    @property
    def n_cells(self) -> int:
        return int(self.meta["n_cells"])

    @property
    def has_simulated(self) -> bool:
        return any(s.simulated for s in self.studies)

    def has_element(self, name: str) -> bool:
        """Whether the atlas stores element ``name`` ("umap", "embedding", "expression", ...)
        for every study. Imported attributions (``import-signature``) have no UMAP, embedding
        or encoder."""
        elements = self.meta.get("elements")
        return True if elements is None and name in ("umap", "embedding") else name in (elements or {})

    @property
    def has_umap(self) -> bool:
        return self.has_element("umap")

    @property
    def has_model(self) -> bool:
        """Whether the atlas carries its encoder (under ``model/``)."""
        return bool(self.meta.get("model_dir")) and (self.path / self.meta["model_dir"]).is_dir()

    @property
    def values_description(self) -> str:
        """What the stored attribution values are, in words (for figures and exports)."""
        row_sum = self.meta.get("elements", {}).get("attributions", {}).get("row_sum", 1000.0)
        return f"|IG x input|, each cell's row scaled to {row_sum:g}" if row_sum else "attributions as imported (row sums not rescaled)"

    def umap(self) -> np.ndarray:
        """(n_cells, 2) UMAP coordinates aligned with ``cells``; AtlasFormatError when the atlas has none."""
        if not self.has_umap:
            raise AtlasFormatError(f"{self.path}: atlas '{self.name}' has no UMAP (check Atlas.has_umap first).")
        for s in self.studies:
            self.verify_study(s)
        return np.concatenate([np.load(s.dir / fmt.UMAP_FILE) for s in self.studies]) if self.studies else np.zeros((0, 2), np.float32)

    def embedding(self) -> np.ndarray:
        """(n_cells, latent_dim) embeddings aligned with ``cells``; AtlasFormatError when the atlas has none."""
        if not self.has_element("embedding"):
            raise AtlasFormatError(f"{self.path}: atlas '{self.name}' has no embedding.")
        for s in self.studies:
            self.verify_study(s)
        return np.concatenate([np.load(s.dir / fmt.EMBEDDING_FILE) for s in self.studies])

    # -- panels: what each study measured, and its scale (method.md section 6) -------------------
    @cached_property
    def _measured_masks(self) -> dict[str, np.ndarray]:
        n = len(self.genes)
        out = {}
        for s in self.studies:
            self.verify_study(s)
            f = s.dir / fmt.MEASURED_FILE
            if s.meta.get("has_measured") and f.is_file():
                mask = np.zeros(n, dtype=bool)
                pos = np.load(f)
                if pos.size and (pos.min() < 0 or pos.max() >= n):
                    raise AtlasFormatError(f"{f}: gene positions outside the gene order of {n}. {_REBUILD}")
                mask[pos] = True
            else:  # not recorded (older or imported atlas): every gene counts as measured
                mask = np.ones(n, dtype=bool)
            out[s.id] = mask
        return out

    def measured(self, study: str) -> np.ndarray:
        """Gene positions study ``study`` measured (its panel, in the gene order); every gene for
        an atlas that did not record panels (``has_element("measured")`` is False)."""
        return np.flatnonzero(self._study_mask(study))

    @cached_property
    def _study_index(self) -> dict[str, StudyInfo]:
        return {s.id: s for s in self.studies}

    def _study_info(self, study: str) -> StudyInfo:
        try:
            return self._study_index[str(study)]
        except KeyError:
            raise QueryError(f"no study called '{study}' in atlas '{self.name}'") from None

    def measured_mask(self, study: str) -> np.ndarray:
        """Boolean over the gene order: which genes study ``study`` measured (see :meth:`measured`)."""
        return self._study_mask(study).copy()

    def _study_mask(self, study: str) -> np.ndarray:
        try:
            return self._measured_masks[str(study)]
        except KeyError:
            raise QueryError(f"no study called '{study}' in atlas '{self.name}'") from None

    def panel_share(self, study: str, store: str = fmt.ATTR_PREFIX) -> float:
        """The measured share of ``study`` (method.md section 6): the factor that puts its stored
        values on the panel-invariant scale; 1.0 for atlases that did not record panels."""
        info = self._study_info(study)
        panel = info.meta.get("panel") or {}
        return float(panel.get("expr_share" if store == fmt.EXPR_PREFIX else "attr_share", 1.0))

    def gene_scale(self, study: str) -> np.ndarray | None:
        """Per-gene factors (float64 over the gene order) that put ``study``'s stored attributions
        on the panel-invariant scale, where its build calibrated them (README "One scale across
        panels": the encoder's attributions of full-panel reference cells, whole and masked to
        this study's panel, gene by gene); None where it did not (a full panel, or an atlas built
        before calibration): then :meth:`panel_share` is the factor of every gene."""
        info = self._study_info(study)
        if info.id not in self._gene_scales:
            name = (info.meta.get("panel") or {}).get("gene_scale")
            scale = None
            if name:
                try:
                    scale = np.load(info.dir / name).astype(np.float64)
                except (OSError, ValueError) as exc:
                    raise AtlasFormatError(f"{info.dir / name}: cannot read the study's gene scale ({exc}). {_REBUILD}") from exc
                if scale.shape != (len(self.genes),):
                    raise AtlasFormatError(f"{info.dir / name}: {scale.shape[0]} factors for {len(self.genes)} genes. {_REBUILD}")
            self._gene_scales[info.id] = scale
        return self._gene_scales[info.id]

    def panel_factors(self, study: str, genes: np.ndarray) -> np.ndarray:
        """The factors (float64, one per gene position in ``genes``) that put ``study``'s stored
        attributions of those genes on the panel-invariant scale: its calibrated gene scale, or
        its measured share for every gene."""
        scale = self.gene_scale(study)
        genes = np.asarray(genes, dtype=np.int64)
        return scale[genes] if scale is not None else np.full(genes.size, self.panel_share(study))

    def study_coverage(self, genes, weights=None) -> pd.DataFrame:
        """Per study: how many of the signature's genes (those in the gene order) it measured.

        Index: study id. Columns: ``requested`` (genes of the signature in the gene order),
        ``measured`` (of those, measured by the study) and ``coverage`` (measured / requested;
        with weights, the measured share of the total weight). Genes outside the gene order are
        reported by :meth:`resolve`, not here."""
        res = genes if isinstance(genes, GeneResolution) else self.resolve(genes, weights)
        return self.coverage_resolved(res)

    def coverage_resolved(self, res: GeneResolution) -> pd.DataFrame:
        """:meth:`study_coverage` for an already-resolved gene list."""
        idx = np.asarray(res.indices, dtype=np.int64)
        w = np.asarray(res.weights, dtype=np.float64) if len(idx) else np.zeros(0)
        m = self._panel_matrix[:, idx]
        total = w.sum()
        coverage = (m @ w) / total if total > 0 else np.zeros(len(self.studies))
        return pd.DataFrame({"requested": np.full(len(self.studies), int(idx.size)), "measured": m.sum(axis=1).astype(int),
                             "coverage": coverage.astype(float)},
                            index=pd.Index([s.id for s in self.studies], name="study"))

    @cached_property
    def _panel_matrix(self) -> np.ndarray:
        """Studies x genes, bool: what each study measured (all True where panels were not recorded)."""
        return np.array([self._study_mask(s.id) for s in self.studies], dtype=bool).reshape(len(self.studies), len(self.genes))

    @cached_property
    def study_bounds(self) -> np.ndarray:
        """Row bounds of the studies in ``cells`` (studies + 1 int64): study i is rows bounds[i]:bounds[i + 1]."""
        return np.concatenate([[0], np.cumsum([s.n_cells for s in self.studies], dtype=np.int64)]).astype(np.int64)

    @cached_property
    def _attr_shares(self) -> np.ndarray:
        """Each study's factor on its summed attributions on the panel scale (float64, atlas
        order): its measured share, or 1 where a calibrated gene scale enters the weights."""
        return np.array([1.0 if self.gene_scale(s.id) is not None else self.panel_share(s.id) for s in self.studies],
                        dtype=np.float64)

    def _studies_selected(self, mask: np.ndarray | None) -> np.ndarray:
        """Bool per study: it has a cell in ``mask`` (None: every study with cells)."""
        if mask is None:
            return np.diff(self.study_bounds) > 0
        return self.study_cell_counts(mask).to_numpy() > 0

    def study_cell_counts(self, mask: np.ndarray) -> pd.Series:
        """Cells of ``mask`` in each study (Series indexed by study id)."""
        # a running count read at the study bounds: no loop over studies
        running = np.concatenate([[0], np.cumsum(np.asarray(mask, dtype=np.int64))])
        return pd.Series(np.diff(running[self.study_bounds]), index=[s.id for s in self.studies], dtype=np.int64)

    def store(self, study: str, store: str = fmt.ATTR_PREFIX, *, keep: bool = True) -> GeneMajorStore:
        """Study ``study``'s gene-major store, memory-mapped and kept open: "attr" (attributions,
        as stored: SIGnature's rows-to-1,000) or "expr" (log-normalised expression). Its rows
        are the study's cells in ``cells`` order from ``StudyInfo.offset``; every gene of the
        gene order has a column (unmeasured genes are empty: see :meth:`measured`).

        ``keep=False`` is for one pass over every study (the build's gene modules): a store the
        atlas has not opened yet is opened for the caller only, and unmapped once the caller
        drops it, so the pages read do not stay in this process's memory study after study."""
        info = self._study_info(study)
        if keep or (info.id, store) in self._stores:
            return self._store(info, store)
        self.verify_study(info)
        return GeneMajorStore(info.dir, store, len(self.genes), info.n_cells, hint=_REBUILD)

    # -- integrity: files against the checksums atlas.json records ------------------------
    def _recorded(self, prefix: str) -> list[str]:
        files = self.meta.get("files") or {}
        return sorted(rel for rel in files if rel.startswith(prefix))

    def _refuse(self, problems: list[str], studies: set[str]) -> None:
        from compute.atlas._verify import repair_advice

        raise AtlasFormatError(f"{self.path}: {len(problems)} file(s) do not match atlas.json, not served: "
                               + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
                               + f". To repair: {repair_advice(self.meta, self.path, studies)}")

    def _check_at_open(self) -> None:
        if self._verify == "none" or not self.meta.get("files"):
            return
        from compute.atlas._verify import check_recorded

        files = self.meta["files"]
        # every size now (a stat per file); the root's own small files with their checksums too
        root_files = {r for r in files if not r.startswith((f"{fmt.STUDIES_DIR}/", f"{fmt.MODEL_DIR}/"))}
        problems = check_recorded(self.path, files, sorted(set(files) - root_files), hashes=False)
        problems += check_recorded(self.path, files, sorted(root_files), hashes=self._verify != "sizes")
        if self._verify == "full":
            problems += check_recorded(self.path, files, self._recorded(f"{fmt.STUDIES_DIR}/"), hashes=True)
            self._verified.update(s.id for s in self.studies)
        if problems:
            self._refuse(problems, {p.split("/")[1] for p in problems if p.startswith(f"{fmt.STUDIES_DIR}/")})

    def verify_study(self, s: StudyInfo) -> None:
        """Check study ``s``'s files against their recorded checksums, once per process (with
        ``verify="lazy"``); AtlasFormatError naming the damaged files and the repair command."""
        if self._verify != "lazy" or s.id in self._verified or not self.meta.get("files"):
            return
        from compute.atlas._verify import check_recorded

        problems = check_recorded(self.path, self.meta["files"], self._recorded(f"{fmt.STUDIES_DIR}/{s.id}/"), hashes=True)
        if problems:
            self._refuse(problems, {s.id})
        self._verified.add(s.id)

    def _store(self, s: StudyInfo, prefix: str = fmt.ATTR_PREFIX) -> GeneMajorStore:
        key = (s.id, prefix)
        if key not in self._stores:
            self.verify_study(s)
            self._stores[key] = GeneMajorStore(s.dir, prefix, len(self.genes), s.n_cells, hint=_REBUILD)
        return self._stores[key]

    @property
    def has_expression(self) -> bool:
        """Whether every study stores its log-normalised expression (for expression scores).
        Looked up once per opened atlas (four files a study: every query asks)."""
        if self._has_expression is None:  # a plain attribute, no lock: a forked job may ask it
            self._has_expression = bool(self.studies) and all(GeneMajorStore.exists(s.dir, fmt.EXPR_PREFIX) for s in self.studies)
        return self._has_expression

    # -- selections ------------------------------------------------------------------
    def select(self, *, cell_types=None, diseases=None, tissues=None, studies=None, simulated: bool | None = None) -> np.ndarray:
        """Boolean mask over ``cells``: cells in every given filter (None or empty: no filter on
        that column). A cell type, disease or tissue is a label in ``cells`` or an ontology term
        (id or label, e.g. "monocyte" or "CL:0000576"), which selects the cells of that term and
        of every descendant term. ``simulated``: only simulated (True) or real (False) cells.
        Unknown values raise QueryError naming them."""
        filters = _normalise_filters(cell_types=cell_types, diseases=diseases, tissues=tissues, studies=studies)
        if simulated is not None:
            filters["simulated"] = [str(bool(simulated))]  # the cells column holds booleans
        return self._mask(filters)

    def _mask(self, filters: dict[str, list[str]]) -> np.ndarray:
        # the last filters' mask kept (a page's queries mostly repeat them; 10-60 ms each), a copy
        # handed out so no caller can change the kept one
        key = tuple(sorted((k, tuple(v)) for k, v in filters.items()))
        return self.remember("select", key, lambda: filter_mask(self.cells, self.vocabulary, filters, self.name)).copy()

    def disease_grouping(self, groups) -> dict[str, str]:
        """{disease label: group label} for the diseases of the atlas under one of ``groups``
        (ontology terms, ids or labels; the first that applies wins). Raises QueryError for a
        group the vocabulary does not know."""
        return self.vocabulary.grouping(self._present_terms("disease"), list(groups), self.name)

    def _present_terms(self, kind: str) -> dict[str, str]:
        """{label in cells[kind]: its term id ("" when unmapped)}."""
        column = f"{kind}_ontology_term_id"
        if column not in self.cells:
            return {str(v): "" for v in self.cells[kind].astype(str).unique()}
        pairs = self.cells[[kind, column]].astype(str).drop_duplicates()
        return dict(zip(pairs[kind], pairs[column], strict=True))

    def term_hierarchy(self, kind: str = "cell_type") -> dict:
        """The ``kind`` (cell_type, disease, tissue) terms of the atlas as a tree for a picker,
        with cell counts (TermTree.hierarchy), and the labels that matched no term, with theirs:
        {"tree": [...], "unmapped": [{"label", "n_cells"}]}."""
        column = f"{kind}_ontology_term_id"
        counts = self.cells[column].astype(str).value_counts() if column in self.cells else pd.Series(dtype=int)
        tree = self.vocabulary.hierarchy({t: int(n) for t, n in counts.items() if t})
        if column in self.cells:
            unmapped = self.cells.loc[self.cells[column].astype(str) == "", kind].astype(str).value_counts()
        else:
            unmapped = self.cells[kind].astype(str).value_counts()
        return {"tree": tree, "unmapped": [{"label": k, "n_cells": int(v)} for k, v in unmapped.items()]}

    @cached_property
    def vocabulary(self) -> TermTree:
        """The ontology terms the atlas's cells use, with their ancestors (empty for atlases
        built before the vocabulary was recorded)."""
        return read_vocabulary(self.path, self.meta)

    def prepare(self, *, symbols: bool = True) -> float:
        """Do now, once, what the first query of a process would otherwise pay for: check every
        study's checksums (``verify="lazy"``) and map its attribution store and the consolidated
        store (:meth:`consolidated_store`, made the first time), read the cells table,
        the vocabulary and the panels, load the compiled score loops and (``symbols``) the gene
        symbol table. ``compute.query.prepare_atlas`` calls it and also loads the null's kernel: a
        server calls that before it forks its workers, so that each inherits an atlas ready to
        answer (the demo's first MS1 query drops from about 3 s to its usual tens of
        milliseconds). Returns the seconds it took."""
        import time

        t0 = time.perf_counter()
        _ = self.cells, self.vocabulary, self._panel_matrix, self.study_bounds
        for s in self.studies:
            store = self._store(s)
            if store.n_genes and s.n_cells:
                store.weighted_sums(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.float32))  # loads the compiled loop
        whole = self.consolidated_store()
        if whole is not None and len(self.genes):
            self._score_consolidated(whole, np.zeros(1, dtype=np.int64), np.ones(1), "mean", None, "panel")
        first = next((s for s in self.studies if s.n_cells), None)
        if first is not None and self.has_expression:  # the expression scores' masked gene sums: a forked
            # job then finds the loop loaded, and never compiles under a lock another thread held at the fork
            self._store(first, fmt.EXPR_PREFIX).gene_totals(np.zeros(first.n_cells, dtype=bool))
        if symbols:
            try:
                symbol_table()
            except ImportError:  # the table's packages are optional: queries then match exactly and by case
                pass
        return time.perf_counter() - t0

    def remember(self, name: str, key, build):
        """The value kept under ``name`` when it was made for ``key``; otherwise ``build()``,
        kept (one value per name: the last one) and returned. In memory, for this process:
        e.g. the query engine's selected-cells matrix, reused while the selection is the same."""
        kept = self._memo.get(name)
        if kept is not None and kept[0] == key:
            return kept[1]
        value = build()
        self._memo[name] = (key, value)
        return value

    # -- reading values: a score is the weighted read of the stores the format defines ----------
    def resolve(self, genes, weights=None) -> GeneResolution:
        """Match ``genes`` (strings or (gene, weight) pairs) to the gene order; see GeneResolution."""
        if isinstance(genes, str):
            genes = [genes]
        return resolve_genes(list(genes), self.genes, weights)

    def gene_values(self, genes, *, store: str = fmt.ATTR_PREFIX, scale: str = "panel") -> np.ndarray:
        """(n_cells, len(genes)) float32 values of gene-order symbols ``genes``: zeros included,
        NaN where the cell's study did not measure the gene. ``store`` "attr" (attributions) or
        "expr" (log-normalised expression); ``scale`` "panel" (attributions times the study's
        measured share) or "raw" (as stored: SIGnature's rows-to-1,000)."""
        _check_scale(scale)
        pos = {g: i for i, g in enumerate(self.genes)}
        unknown = [g for g in genes if g not in pos]
        if unknown:
            raise QueryError(f"not in the gene order of atlas '{self.name}': {', '.join(unknown)}")
        out = np.zeros((self.n_cells, len(genes)), dtype=np.float32)
        cols = np.array([pos[g] for g in genes], dtype=np.int64)
        for s in self.studies:
            st = self._store(s, store)
            mask = self._study_mask(s.id)
            factors = self.panel_factors(s.id, cols) if scale == "panel" and store == fmt.ATTR_PREFIX else np.ones(cols.size)
            for j, g in enumerate(cols.tolist()):
                if not mask[g]:
                    out[s.offset : s.offset + s.n_cells, j] = np.nan
                    continue
                idx, val = st.column(g)
                out[s.offset + idx, j] = val * factors[j] if factors[j] != 1.0 else val
        return out

    def score(self, genes, weights=None, aggregate: str = "mean", *, cell_types=None, diseases=None, tissues=None, studies=None,
              scale: str = "panel") -> np.ndarray:
        """Per-cell signature score aligned with ``cells`` (method.md sections 4 and 6).

        ``aggregate``: "mean" sum_g a_cg / |G| (weighted: sum_g w_g a_cg / sum_g w_g), "sum",
        or "max"; zeros are included. Only the genes a cell's study measured count: the mean's
        weights are renormalised over them, and a study that measured none of the genes gets
        NaN (see :meth:`study_coverage`). ``scale``: "panel" (default) multiplies each study's
        values by its measured share, so studies measured on different gene panels compare;
        "raw" gives SIGnature's rows-to-1,000 values. With filters (cell types, diseases, tissues, studies) only
        the selected cells are scored and the others are NaN; studies without a selected cell
        are not read. Results are cached on disk, keyed by the resolved genes, weights,
        aggregate and filters.

        Genes absent from the gene order are left out with a :class:`SignatureWarning` naming
        them; duplicates count once. Raises QueryError when no gene matches, the weights do
        not sum to a positive number, or a filter names something the atlas does not have.
        """
        res = self.resolve(genes, weights)
        if res.missing or res.duplicates:
            parts = []
            if res.missing:
                parts.append(f"{len(res.missing)} not in the gene order ({', '.join(res.missing[:20])}{', ...' if len(res.missing) > 20 else ''})")
            if res.duplicates:
                parts.append(f"{len(res.duplicates)} duplicates ({', '.join(res.duplicates[:20])})")
            warnings.warn(f"left out of the score: {'; '.join(parts)}", SignatureWarning, stacklevel=2)
        filters = _normalise_filters(cell_types=cell_types, diseases=diseases, tissues=tissues, studies=studies)
        mask = self._mask(filters) if filters else None
        return self.score_resolved(res, aggregate, mask=mask, cache_key=filters, scale=scale)

    def score_resolved(self, res: GeneResolution, aggregate: str = "mean", *, mask: np.ndarray | None = None, cache_key=None,
                       store: str = fmt.ATTR_PREFIX, scale: str = "panel") -> np.ndarray:
        """Score for an already-resolved gene list (no warnings). ``mask`` limits the cells
        (others NaN); ``cache_key`` (JSON-able, describing ``mask``) enables the disk cache for
        a masked call; unmasked calls are always cacheable."""
        if aggregate not in AGGREGATES:
            raise QueryError(f"aggregate must be one of {', '.join(AGGREGATES)}, got '{aggregate}'")
        if not res.matched:
            raise QueryError(
                f"none of the {len(res.requested)} requested genes is in the gene order of atlas '{self.name}'"
            )
        w = np.asarray(res.weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise QueryError("the weights of the matched genes must be finite and sum to a positive number")
        _check_scale(scale)
        cacheable = mask is None or cache_key is not None
        key = self.cache.key("score", 2, store, list(map(int, res.indices)), w.tolist(), aggregate, cache_key, scale) if cacheable else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        idx = np.asarray(res.indices, dtype=np.int64)
        whole = self.consolidated_store() if aggregate != "max" and store == fmt.ATTR_PREFIX else None
        if whole is not None:
            out = self._score_consolidated(whole, idx, w, aggregate, mask, scale)
            if key is not None:
                self.cache.set(key, out)
            return out
        out = np.zeros(self.n_cells, dtype=np.float64)
        # studies that share a panel pattern over these genes share their renormalised weights:
        # what is left per study is one compiled pass over its columns (query cost barely grows
        # with the number of studies)
        panels = self._panel_matrix[:, idx]
        prepared: dict[bytes, tuple] = {}
        for i in np.flatnonzero(self._studies_selected(mask)).tolist():
            s = self.studies[i]
            part = out[s.offset : s.offset + s.n_cells]
            measured = panels[i]
            p = measured.tobytes()
            if p not in prepared:
                usable = measured.any() and w[measured].sum() > 0
                prepared[p] = (usable, idx[measured], (w[measured] / w[measured].sum() if aggregate == "mean" else w[measured]).astype(np.float32)
                               if usable else None, w[measured])
            usable, genes_p, w32, w_p = prepared[p]
            if not usable:
                part[:] = np.nan  # the study measured none of the genes: no score, not zero
                continue
            gene_scale = self.gene_scale(s.id) if scale == "panel" and store == fmt.ATTR_PREFIX else None
            if gene_scale is not None:  # calibrated gene by gene: the factors enter the weights
                w32 = (w32 * gene_scale[genes_p]).astype(np.float32)
                w_p = w_p * gene_scale[genes_p]
            if aggregate == "max":
                self._store(s, store).aggregate(genes_p, w_p, aggregate, out=part)
            else:
                part += self._store(s, store).weighted_sums(genes_p, w32)
            factor = self.panel_share(s.id, store) if scale == "panel" and store == fmt.ATTR_PREFIX and gene_scale is None else 1.0
            if factor != 1.0:
                part *= factor
        if mask is not None:
            out[~mask] = np.nan
        if key is not None:
            self.cache.set(key, out)
        return out

    def consolidated_store(self) -> GeneMajorStore | None:
        """The attributions of every study as one gene-major store (cells in atlas order), so a
        query reads one slice per gene whatever the number of studies; None for a one-study atlas
        (its store is already that). Made on first use from the studies' stores (each checked
        against its checksums first, as ``verify`` says), kept in the result cache's folder for
        this atlas version (or in memory with ``cache=False``) and memory-mapped once."""
        if len(self.studies) < 2:
            return None
        with self._whole_lock:  # one thread of this process makes it; the others wait and share it
            if self._whole is None:
                from compute.atlas._store import consolidate_stores, consolidated_store

                stores = [self._store(s) for s in self.studies]  # checks every study, as its first read would
                if self.cache.enabled:
                    directory = self.cache.directory / "consolidated"
                    try:
                        self.cache.prepare_directory()
                        self._whole = consolidated_store(stores, directory, fmt.ATTR_PREFIX, log=_cache_log.warning)
                    except OSError as exc:  # a read-only or full cache folder: in memory instead
                        _cache_log.warning("consolidated store: cannot write %s (%s); held in memory by this process", directory, exc)
                if self._whole is None:
                    self._whole = consolidate_stores(stores, None, fmt.ATTR_PREFIX)
        return self._whole

    def _score_consolidated(self, whole: GeneMajorStore, idx: np.ndarray, w: np.ndarray, aggregate: str, mask, scale: str) -> np.ndarray:
        """score_resolved over the consolidated store: each study's weights renormalised over the
        genes it measured (one weight row per panel pattern), then its scale; bit-identical to
        the per-study sums (tests/compute/atlas/test_store.py)."""
        from compute.atlas._store_kernel import consolidated_sums

        panels = self._panel_matrix[:, idx]
        selected = self._studies_selected(mask)
        pattern_of: dict[bytes, int] = {}
        rows: list[np.ndarray] = []
        study_pattern = np.full(len(self.studies), -1, dtype=np.int64)
        unusable = np.zeros(len(self.studies), dtype=bool)
        for i in np.flatnonzero(selected).tolist():
            measured = panels[i]
            gene_scale = self.gene_scale(self.studies[i].id) if scale == "panel" else None
            # studies calibrated gene by gene get their own weight row (the factors enter the weights)
            key = measured.tobytes() + (gene_scale[idx].tobytes() if gene_scale is not None else b"")
            if key not in pattern_of:
                row = np.zeros(idx.size, dtype=np.float32)
                if measured.any() and w[measured].sum() > 0:
                    row[measured] = (w[measured] / w[measured].sum() if aggregate == "mean" else w[measured]).astype(np.float32)
                    if gene_scale is not None:
                        row = (row * gene_scale[idx]).astype(np.float32)
                    pattern_of[key] = len(rows)
                    rows.append(row)
                else:
                    pattern_of[key] = -1
            study_pattern[i] = pattern_of[key]
            unusable[i] = pattern_of[key] < 0
        sums = np.zeros(self.n_cells, dtype=np.float32)
        if rows:
            consolidated_sums(whole.indptr, whole.indices, whole.data, idx, np.vstack(rows), self.study_bounds, study_pattern, sums)
        out = np.zeros(self.n_cells, dtype=np.float64)
        out += sums
        if scale == "panel":
            out *= np.repeat(self._attr_shares, np.diff(self.study_bounds))
        if unusable.any():
            out[np.repeat(unusable, np.diff(self.study_bounds))] = np.nan  # measured none of the genes: no score, not zero
        if mask is not None:
            out[~mask] = np.nan
        return out

    def __repr__(self) -> str:
        return f"Atlas({str(self.path)!r}, {len(self.studies)} studies, {self.n_cells} cells, {len(self.genes)} genes)"

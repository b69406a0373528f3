"""What the query needs from an atlas, stated as typed Protocols: ``compute.atlas.Atlas`` is the one
implementation, but the query imports nothing from ``compute.atlas`` (the atlas reads, writes and
verifies the on-disk format; the query computes over it), and a test may pass any object that has
these members. Also here: the warm-up of everything a server's first query would pay for."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

from compute.genes import GeneResolution

__all__ = ["AtlasView", "GeneStoreView", "ResultCacheView", "StudyView", "prepare_atlas"]

T = TypeVar("T")


class StudyView(Protocol):
    """One study of the atlas: its cells are rows ``offset`` to ``offset + n_cells`` of the cells table."""

    id: str
    offset: int
    n_cells: int


class GeneStoreView(Protocol):
    """A study's gene-major store (attributions "attr" or expression "expr")."""

    def rows(self, rows: np.ndarray) -> Any: ...  # the selected cells x gene order, scipy CSC
    def gather(self, genes: np.ndarray) -> Any: ...  # every cell x the given genes, scipy CSC
    def gene_totals(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ResultCacheView(Protocol):
    """The atlas's disk cache of results, keyed by the atlas version."""

    def key(self, *parts: Any) -> str: ...
    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


@runtime_checkable
class AtlasView(Protocol):
    """The members of an atlas the query reads (``compute.atlas.Atlas`` has them all)."""

    name: str
    fingerprint: str  # identifies the atlas version: keys of what is remembered across queries
    genes: list[str]  # the gene order
    studies: Sequence[StudyView]
    cells: pd.DataFrame  # one row per cell, studies in order
    cache: ResultCacheView

    @property
    def n_cells(self) -> int: ...
    @property
    def has_expression(self) -> bool: ...
    def select(self, *, cell_types=None, diseases=None, tissues=None, studies=None, simulated: bool | None = None) -> np.ndarray: ...
    def disease_grouping(self, groups) -> dict[str, str]: ...
    def resolve(self, genes, weights=None) -> GeneResolution: ...
    def score_resolved(self, res: GeneResolution, aggregate: str = "mean", *, mask: np.ndarray | None = None, cache_key=None,
                       store: str = "attr", scale: str = "panel") -> np.ndarray: ...
    def gene_values(self, genes, *, store: str = "attr", scale: str = "panel") -> np.ndarray: ...
    def coverage_resolved(self, res: GeneResolution) -> pd.DataFrame: ...
    def study_cell_counts(self, mask: np.ndarray) -> pd.Series: ...
    def store(self, study: str, store: str = "attr", *, keep: bool = True) -> GeneStoreView: ...
    def measured(self, study: str) -> np.ndarray: ...
    def measured_mask(self, study: str) -> np.ndarray: ...
    def panel_share(self, study: str, store: str = "attr") -> float: ...
    def panel_factors(self, study: str, genes: np.ndarray) -> np.ndarray: ...
    def gene_scale(self, study: str) -> np.ndarray | None: ...
    def remember(self, name: str, key: Hashable, build: Callable[[], T]) -> T: ...
    def prepare(self, *, symbols: bool = True) -> float: ...


def prepare_atlas(atlas: AtlasView, *, symbols: bool = True) -> float:
    """Do now, once, what the first query of a process would otherwise pay for: the atlas's own
    reads (``Atlas.prepare``: checksums, memory maps, the cells table, the compiled score loops and,
    with ``symbols``, the gene symbol table) and the null's compiled kernel. A server calls it before
    it forks its workers. Returns the seconds it took."""
    from compute.query._null import prepare_null

    t0 = time.perf_counter()
    atlas.prepare(symbols=symbols)
    prepare_null()
    return time.perf_counter() - t0

"""The dashboard's one data-access layer: an opened atlas and cached query answers. Read-only."""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import Atlas, ResultCache
from compute.errors import QueryError
from compute.genemodules import GeneModules, gene_modules, stored_modules
from compute.query import (
    GeneRanking,
    QueryParams,
    QueryResult,
    add_evidence,
    gene_group_summary,
    gene_ranking,
    query_cells,
    run_ranking,
)
from dashboard.jobs import JobSlots, default_job_limit

__all__ = ["FORK_GUARD", "DashboardData", "ModulesPending", "is_result_key"]


# Background jobs are forked from a server process whose other threads may be inside a lock at
# that moment (this class's, a cached_property's, the numba compiler's): the child would wait on
# it forever. Work that runs beside the page's requests and takes such locks (Run's own ranking,
# the start-up warm-up) holds FORK_GUARD, and the job manager forks only while holding it
# (dashboard.app). A forked child also gets fresh locks of its own (os.register_at_fork).
FORK_GUARD = threading.Lock()
_FORKED_RESETS: weakref.WeakSet = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    for data in list(_FORKED_RESETS):
        data._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)

RANKING_VERSION = 2  # bump when GeneRanking changes shape
RESULT_VERSION = 2  # bump when QueryResult changes shape, so older cached results are not read (2: per-study coverage)



_RANKING_SUFFIX = "-ranking"
# a query result's key (result_key: ResultCache.key, a SHA-256 hex digest); its ranking's adds _RANKING_SUFFIX
_RESULT_KEY = re.compile(r"[0-9a-f]{64}")


def is_result_key(value, *, ranking: bool = False) -> bool:
    """Whether ``value`` has the form of a query result's key (:meth:`DashboardData.result_key`;
    ``ranking``: of its ranking's, :meth:`DashboardData.partial_key`). A short link's key, a
    file name or any other text has not (issue 33: such a key reached the rendering callbacks)."""
    if not isinstance(value, str):
        return False
    if ranking:
        return value.endswith(_RANKING_SUFFIX) and _RESULT_KEY.fullmatch(value.removesuffix(_RANKING_SUFFIX)) is not None
    return _RESULT_KEY.fullmatch(value) is not None


class ModulesPending(RuntimeError):
    """The atlas's gene modules are still being computed in the background; the message says so."""


class DashboardData:
    """Opens the atlas once; answers queries, keeping the last ``cache_size`` results.

    Pickles as its atlas path, so a background-callback process (spawned, on macOS) reopens
    the atlas instead of copying memory maps."""

    def __init__(self, atlas_path: str | Path, cache_size: int = 16):
        self.atlas = Atlas.open(atlas_path)
        self._cache_size = cache_size
        self._lock = threading.Lock()
        _FORKED_RESETS.add(self)
        self._by_key: OrderedDict[str, QueryResult] = OrderedDict()
        self._memo: dict[str, object] = {}

    def __reduce__(self):
        return (DashboardData, (self.atlas.path, self._cache_size))

    @cached_property
    def umap(self) -> np.ndarray | None:
        """UMAP coordinates, or None for atlases without one (imported SIGnature attributions)."""
        return self.atlas.umap() if self.atlas.has_umap else None

    def column_values(self, column: str) -> list[str]:
        """The distinct labels of the cells' ``column``, sorted."""
        return sorted(self.atlas.cells[column].astype(str).unique())

    def memo(self, name: str, build):
        """What ``build()`` returns, computed once per opened atlas and kept under ``name``: the
        views keep here what they derive from the atlas alone (the filters' option trees, the
        label colours)."""
        try:
            return self._memo[name]
        except KeyError:
            value = self._memo[name] = build()
            return value

    @cached_property
    def cell_types(self) -> list[str]:
        return self.column_values("cell_type")

    @cached_property
    def diseases(self) -> list[str]:
        return self.column_values("disease")

    @cached_property
    def tissues(self) -> list[str]:
        return self.column_values("tissue")

    @cached_property
    def has_vocabulary(self) -> bool:
        """Whether the atlas records ontology terms (atlases built before it hold the studies' labels only)."""
        return bool(self.atlas.vocabulary.terms)

    def disease_grouping(self, groups) -> dict[str, str]:
        """{disease: group} for the atlas's diseases under one of ``groups`` (the first that
        applies), as the query groups them; {} for none or for terms the atlas does not know."""
        if not groups:
            return {}
        try:
            return self.atlas.disease_grouping(list(groups))
        except QueryError:
            return {}

    def query_cells(self, params: QueryParams) -> pd.DataFrame:
        """The cells table as ``params`` groups it (diseases pooled under disease_groups)."""
        return query_cells(self.atlas, params)

    @cached_property
    def job_slots(self) -> JobSlots:
        """The machine-wide limit on jobs computing at once (dashboard.jobs): $SIGATLAS_MAX_JOBS, else the CPU count."""
        return JobSlots(self.atlas.cache.directory / "job-slots", default_job_limit())

    def gene_modules(self) -> GeneModules:
        """The atlas's gene modules: those its build stored (read in milliseconds). An atlas built
        before builds stored them gets them computed once, in a background thread of this process
        (then from the atlas's cache, shared by every worker): until they are ready this raises
        ModulesPending, so that no request ever computes them."""
        stored = stored_modules(self.atlas)
        if stored is not None:
            return stored
        with self._lock:
            job = self.__dict__.get("_modules_job")
            if job is None:
                job = {"result": None, "error": None, "started": time.time()}
                self.__dict__["_modules_job"] = job

                def work():
                    try:
                        job["result"] = gene_modules(self.atlas)
                    except Exception as exc:  # noqa: BLE001 - shown in the Modules tab by whoever asks next
                        job["error"] = exc

                threading.Thread(target=work, name="sigatlas-gene-modules", daemon=True).start()
        if job["error"] is not None:
            raise job["error"]
        if job["result"] is None:
            raise ModulesPending(f"Gene modules are being computed for this atlas (started {time.time() - job['started']:.0f} s ago; "
                                 "about a minute on the demo). This atlas was built before builds stored them: rebuild it "
                                 "(python -m compute build MANIFEST) to have them at once. This tab fills in when they are ready.")
        return job["result"]

    @property
    def summary(self) -> dict:
        sim = [s for s in self.atlas.studies if s.simulated]
        return {
            "name": self.atlas.name,
            "n_studies": len(self.atlas.studies),
            "n_simulated": len(sim),
            "n_cells": self.atlas.n_cells,
            "n_genes": len(self.atlas.genes),
            "format_version": self.atlas.meta["format_version"],
            "imported": self.atlas.meta.get("build", {}).get("source") == "import-signature",
        }

    def query(self, params: QueryParams, progress=None, on_ranking=None, on_wait=None) -> QueryResult:
        """The answer to ``params``: from memory or the disk cache when asked before, else run
        (and stored under :meth:`result_key` for the rendering callbacks). A query that runs is
        ranked first (``compute.query.run_ranking``, tens of milliseconds) and completed after
        (``add_evidence``: the null, the evidence); ``on_ranking(key)``, when given, is called in
        between with the key under which the ranking alone is stored (:meth:`partial_key`).
        A query that runs first takes one of the machine's job slots (:attr:`job_slots`; the
        page's jobs and the API's requests alike), ``on_wait(position, waiting)`` told its place
        while it waits. The same query asked again while it is computed (a linked page's job
        while the server computes that page's evidence, query.start_evidence; two users opening
        one link) waits for it and reads its result (JobSlots.computing), never computes it twice."""
        key = self.result_key(params)
        result = self.stored_result(key)
        if result is None:
            def computed_elsewhere() -> None:
                if progress is not None:
                    progress(0.02, "the same query is being computed for another page: waiting for its result")

            with self.job_slots.computing(key, computed_elsewhere):
                result = self.stored_result(key)  # computed while this one waited for the key
                if result is None:
                    with self.job_slots.slot(on_wait):
                        result = self._run(key, params, progress, on_ranking)
        return result

    def _run(self, key: str, params: QueryParams, progress, on_ranking) -> QueryResult:
        """Computes and stores the result of ``params`` under ``key``; called holding the key's lock
        (:meth:`query`), so no other process stores it meanwhile."""
        import copy

        partial = self.partial_key(key)
        ranked = self.stored_result(partial)  # the page's request ranked it already (:meth:`rank`)
        if ranked is not None:
            result = copy.deepcopy(ranked)  # a copy: add_evidence completes ``result`` itself
        else:
            result = run_ranking(self.atlas, params, progress=progress)
            if self.stored_result(partial) is None:  # (the page's request may have stored it meanwhile)
                self.store_result(partial, copy.deepcopy(result))
        if on_ranking is not None:
            on_ranking(partial)
        result = add_evidence(self.atlas, result, progress=progress)
        self.store_result(key, result)
        return result

    def ranks_in_request(self) -> bool:
        """Whether Run's own request ranks a new query (:meth:`rank`): unless every job slot is
        busy, when the query's job ranks it in its turn."""
        return self.job_slots.busy() < self.job_slots.limit

    def rank(self, params: QueryParams) -> str | None:
        """The key under which the ranking alone of ``params`` is stored (:meth:`partial_key`),
        computed now when needed (``compute.query.run_ranking``: tens of milliseconds, so the page
        asks for it in the Run request itself and shows it before the background job has even
        started). None when the full result is stored already, or when every job slot is busy
        (a loaded server ranks in the job, in its turn). Raises QueryError as :meth:`query`."""
        key = self.result_key(params)
        if self.stored_result(key) is not None:
            return None
        partial = self.partial_key(key)
        if self.stored_result(partial) is None:
            if not self.ranks_in_request():
                return None
            with FORK_GUARD:  # the query's job is forked now: not while this thread holds locks
                self.store_result(partial, run_ranking(self.atlas, params))
        return partial

    @staticmethod
    def partial_key(key: str) -> str:
        """The key of the ranking alone of the result stored under ``key``."""
        return f"{key}{_RANKING_SUFFIX}"

    @staticmethod
    def final_key(partial_key: str) -> str:
        """The key of the full result whose ranking alone is stored under ``partial_key``."""
        return partial_key.removesuffix(_RANKING_SUFFIX)

    def gene_ranking(self, *, cell_types: tuple = (), diseases: tuple = (), studies: tuple = (), versus: tuple = (),
                     store: str = "attr"):
        """Every gene ranked in the population the (checked) filters select, against the
        reference diseases ``versus`` (compute.query.gene_ranking's GeneRanking): from memory or the disk
        cache when asked before. Raises QueryError for an empty population or reference."""
        args = {"cell_types": tuple(cell_types), "diseases": tuple(diseases), "studies": tuple(studies), "versus": tuple(versus),
                "store": store}
        key = self.atlas.cache.key("gene-ranking", RANKING_VERSION, repr(sorted(args.items())))
        ranking = self.stored_result(key, GeneRanking)
        if ranking is None:
            ranking = gene_ranking(self.atlas, **args)
            self.store_result(key, ranking)
        return ranking

    def gene_groups(self, result: QueryResult, by: str, max_genes: int | None = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(mean attribution, % of hit cells carrying the gene): genes x groups, the top
        ``max_genes`` genes by mean attribution (None: every matched gene)."""
        n = len(result.resolution.matched) if max_genes is None else max_genes
        return gene_group_summary(self.atlas, result, by=by, max_genes=max(int(n), 1))

    # links too long for an address: their query string kept under a short key in the disk cache,
    # which the server processes (gunicorn workers) share
    def store_link(self, search: str) -> str:
        """A short key for the link's query string ``search`` (the same string gives the same key)."""
        import hashlib

        key = hashlib.sha256(search.encode("utf-8")).hexdigest()[:16]
        self._results().set(f"link-{key}", search)
        return key

    def stored_link(self, key: str) -> str | None:
        """The query string stored under ``key`` by :meth:`store_link`, or None when unknown."""
        if not isinstance(key, str) or not key.isalnum() or len(key) > 64:
            return None
        value = self._results().get(f"link-{key}")
        return value if isinstance(value, str) else None

    # results handed from the background query process to the rendering callbacks
    def result_key(self, params: QueryParams) -> str:
        return self.atlas.cache.key("dashboard-query", RESULT_VERSION, repr(params))

    def _results(self) -> ResultCache:
        # one diskcache handle per process: a forked background job must not reuse the parent's
        if getattr(self, "_results_pid", None) != os.getpid():
            self._results_cache = ResultCache(self.atlas.fingerprint, self.atlas.cache.directory / "dashboard-results")
            self._results_pid = os.getpid()
        return self._results_cache

    def store_result(self, key: str, result: QueryResult) -> None:
        with self._lock:
            self._by_key[key] = result
            while len(self._by_key) > self._cache_size:
                self._by_key.popitem(last=False)
        self._results().set(key, result)

    def stored_result(self, key: str, kind: type = QueryResult):
        """The ``kind`` (a query result unless told) stored under ``key`` by :meth:`store_result`,
        else None: a key that names an entry of another kind (a gene ranking) is no result."""
        with self._lock:
            hit = self._by_key.get(key)
        if hit is None:
            hit = self._results().get(key)
            if hit is not None:
                with self._lock:
                    self._by_key[key] = hit
        return hit if isinstance(hit, kind) else None


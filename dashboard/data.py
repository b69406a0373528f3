"""The dashboard's one data-access layer: an opened atlas and cached query answers. Read-only."""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import Atlas, ResultCache, measured_share, study_warnings
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
from dashboard.figures import bh_q_values, label_colours
from dashboard.jobs import JobSlots, default_job_limit
from dashboard.picker_tree import picker_entries
from dashboard.presets import PRESETS
from dashboard.state import TABS

__all__ = ["FILTER_KINDS", "FORK_GUARD", "DashboardData", "FilterChoices", "ModulesPending", "is_result_key"]


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

# filter (state / API key) -> the annotation column it filters
FILTER_KINDS = {"cell_types": "cell_type", "diseases": "disease", "tissues": "tissue"}
ONTOLOGIES = {"cell_type": "Cell Ontology", "disease": "MONDO", "tissue": "UBERON"}
_INDENT = "\u00a0\u00a0"  # one tree level in an option's label (plain spaces would collapse)


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


class FilterChoices(Mapping):
    """The values one filter accepts, each mapped to the value its control shows for it.

    ``options``: grouped select data ([{"group", "items": [{"value", "label"}]}]): the ontology
    terms of the atlas as a tree (indented, with the cells at or below each term) and the labels
    that matched no term. ``choices[v]``: the option that selects the same cells as ``v`` (a term
    id, another-case term label or an equivalent ancestor term -> the tree's term label; a study's
    own label that alone names its term, which has no subtype here -> the term's label); any other
    study's own label maps to itself (it selects exactly its cells, which no option does). Term
    labels and ids are also found case-insensitively. What a value selects is compute's rule
    (Atlas.select); this only names it the way the control shows it."""

    def __init__(self, options: list[dict], canonical: dict[str, str], folded: dict[str, str]):
        self.options = options
        self._canonical = canonical
        self._folded = folded

    def __getitem__(self, value: str) -> str:
        if value in self._canonical:
            return self._canonical[value]
        if isinstance(value, str) and value.casefold() in self._folded:
            return self._folded[value.casefold()]
        raise KeyError(value)

    def __contains__(self, value) -> bool:
        try:
            self[value]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._canonical)

    def __len__(self) -> int:
        return len(self._canonical)

    @property
    def option_values(self) -> list[str]:
        """The option values, in display order."""
        return [item["value"] for group in self.options for item in group["items"]]

    def with_extra(self, values) -> list[dict]:
        """``options`` plus a group for the given values that are not options (a study's own
        label from an older link), so the control can show them."""
        shown = set(self.option_values)
        extra = [v for v in dict.fromkeys(values or []) if v not in shown]
        if not extra:
            return self.options
        return [*self.options, {"group": "From the link: a study's own label", "items": [
            {"value": v, "label": f"{v} (study label)"} for v in extra]}]


def _walk(nodes: list[dict]):
    for node in nodes:
        yield node
        yield from _walk(node["children"])


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
        self._cover_cache: dict[str, dict[str, frozenset]] = {}
        self._colour_cache: dict[str, dict[str, str]] = {}

    def __reduce__(self):
        return (DashboardData, (self.atlas.path, self._cache_size))

    @cached_property
    def umap(self) -> np.ndarray | None:
        """UMAP coordinates, or None for atlases without one (imported SIGnature attributions)."""
        return self.atlas.umap() if self.atlas.has_umap else None

    def _values(self, column: str) -> list[str]:
        return sorted(self.atlas.cells[column].astype(str).unique())

    @cached_property
    def cell_types(self) -> list[str]:
        return self._values("cell_type")

    @cached_property
    def diseases(self) -> list[str]:
        return self._values("disease")

    @cached_property
    def tissues(self) -> list[str]:
        return self._values("tissue")

    def label_colours(self, kind: str) -> dict[str, str]:
        """One colour per label of the cells' ``kind`` column ("disease", "study", "cell_type",
        "cell_type_predicted"; a disease's groups too) for the whole atlas (figures.label_colours):
        the same in every figure and every query."""
        if kind not in self._colour_cache:
            cells = self.atlas.cells
            labels = self._values(kind) if kind in cells.columns else []
            extra = ()
            if kind == "disease":  # a ranking's disease groups too
                extra = [item["value"] for option in self.disease_group_choices.options for item in option["items"]]
            elif kind == "cell_type" and "cell_type_predicted" in cells.columns:  # a predicted type as its annotated namesake
                extra = self._values("cell_type_predicted")
            self._colour_cache[kind] = label_colours(labels, extra)
        return self._colour_cache[kind]

    @cached_property
    def has_vocabulary(self) -> bool:
        """Whether the atlas records ontology terms (atlases built before it hold the studies' labels only)."""
        return bool(self.atlas.vocabulary.terms)

    def filter_choices(self, key: str) -> FilterChoices:
        """The choices of filter ``key`` ("cell_types", "diseases" or "tissues"): see FilterChoices."""
        return self._filter_choices[key]

    @cached_property
    def _filter_choices(self) -> dict[str, FilterChoices]:
        return {key: self._term_choices(kind) for key, kind in FILTER_KINDS.items()}

    def _covers(self, kind: str) -> dict[str, frozenset]:
        """{term id: the ``kind`` terms of the cells at or below it}, for every term with any."""
        if kind not in self._cover_cache:
            column = f"{kind}_ontology_term_id"
            cells, vocab = self.atlas.cells, self.atlas.vocabulary
            present = sorted(set(cells[column].astype(str)) - {""}) if column in cells else []
            covers = {t: frozenset(vocab.descendants_present(t, present)) for t in vocab.terms}
            self._cover_cache[kind] = {t: c for t, c in covers.items() if c}
        return self._cover_cache[kind]

    def _term_choices(self, kind: str) -> FilterChoices:
        cells = self.atlas.cells
        original = f"{kind}_original"
        if not self.has_vocabulary:  # an atlas built before the vocabulary: the labels as the studies gave them
            counts = cells[kind].astype(str).value_counts()
            items = [{"value": v, "label": f"{v} ({int(counts[v]):,})"} for v in sorted(counts.index)]
            return FilterChoices([{"group": "Labels as the studies gave them (this atlas records no ontology terms)", "items": items}],
                                 {v: v for v in counts.index}, {})
        canonical: dict[str, str] = {}
        if original in cells:  # a study's own label selects exactly its cells: kept as given
            canonical |= {v: v for v in cells[original].astype(str).unique()}
        hierarchy = self.atlas.term_hierarchy(kind)
        folded: dict[str, str] = {}
        vocab = self.atlas.vocabulary
        covers = self._covers(kind)
        # each term under every parent it has, cell types under the names users know (issue 36, item 11)
        entries = picker_entries(vocab, hierarchy["tree"], covers, plain_names=kind == "cell_type")
        by_cover = {covers[e.term]: e.label for e in entries if e.alias_of is None and e.term in covers}
        for term, cover in covers.items():
            if cover in by_cover:  # a term id, or an ancestor equivalent to a tree term here: the same cells
                label = vocab.label(term)
                canonical[term] = canonical[label] = by_cover[cover]
                folded[label.casefold()] = folded[term.casefold()] = by_cover[cover]
        items = [{"value": e.value, "label": f"{_INDENT * e.depth}{e.label} ({e.n_cells:,})"} for e in entries]
        options = [{"group": f"{ONTOLOGIES[kind]} terms (a term includes its subtypes; cells at or below it)", "items": items}]
        unmapped = [{"value": u["label"], "label": f"{u['label']} (no ontology term) ({u['n_cells']:,})"} for u in hierarchy["unmapped"]]
        if unmapped:
            options.append({"group": "No ontology term: the study's own label", "items": unmapped})
        options = [g for g in options if g["items"]]
        for group in options:
            canonical |= {item["value"]: item["value"] for item in group["items"]}  # an option shows itself
        # a term's second place in the tree reads as the term itself
        canonical |= {e.value: e.alias_of for e in entries if e.alias_of is not None}
        if original in cells:
            canonical |= self._same_cells(kind, original, {item["value"] for group in options for item in group["items"]})
        return FilterChoices(options, canonical, folded)

    def _same_cells(self, kind: str, original: str, shown: set[str]) -> dict[str, str]:
        """{a study's own label: the option that selects exactly its cells} ("healthy" -> "normal"
        when every normal cell was called healthy and the term has no subtype here); labels
        whose term also holds other studies' labels or subtypes keep their own form."""
        pairs = self.atlas.cells[[original, kind, f"{kind}_ontology_term_id"]].astype(str).drop_duplicates()
        covers = self._covers(kind)
        out = {}
        for label, rows in pairs.groupby(kind, sort=False):
            term = rows[f"{kind}_ontology_term_id"].iloc[0]
            if len(rows) == 1 and label in shown and (not term or covers.get(term) == {term}):
                own = rows[original].iloc[0]
                # the study's label names this term only, and is no option of its own (options show themselves)
                if (pairs[original] == own).sum() == 1 and (own == label or own not in shown):
                    out[own] = label
        return out

    @cached_property
    def disease_group_choices(self) -> FilterChoices:
        """The disease terms a ranking can group by: every term of the disease tree above at
        least two of the atlas's diseases (or above one and itself present), as options labelled
        with how many diseases they pool; a term id or an equivalent term maps to its option."""
        atlas = self.atlas
        nodes = [n for n in _walk(atlas.term_hierarchy("disease")["tree"]) if n["children"] or not n["present"]]
        canonical: dict[str, str] = {}
        folded: dict[str, str] = {}
        items = []
        if nodes:
            vocab = atlas.vocabulary
            covers = self._covers("disease")
            by_cover = {covers[n["id"]]: n["label"] for n in nodes if n["id"] in covers}
            for n in nodes:
                pooled = self.disease_grouping([n["label"]])
                items.append({"value": n["label"], "label": f"{_INDENT * n['depth']}{n['label']} ({len(pooled)} diseases)"})
            for term, cover in covers.items():
                if cover in by_cover:
                    label = vocab.label(term)
                    canonical[term] = canonical[label] = by_cover[cover]
                    folded[label.casefold()] = folded[term.casefold()] = by_cover[cover]
            canonical |= {item["value"]: item["value"] for item in items}
        options = [{"group": "MONDO terms above the atlas's diseases", "items": items}] if items else []
        return FilterChoices(options, canonical, folded)

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
    def known_values(self) -> dict:
        """What a state may name (``dashboard.state.read_state``'s ``known``): per filter the
        values it accepts, each mapped to the form its control shows (a term id to the term's
        label), the disease groups, the studies, the presets and the tabs."""
        return {**{key: self.filter_choices(key) for key in FILTER_KINDS}, "disease_groups": self.disease_group_choices,
                "studies": [s.id for s in self.atlas.studies], "preset": list(PRESETS), "tab": list(TABS),
                "rank_gene": frozenset(self.atlas.genes),
                # the reference donors' disease: any disease term the disease filter accepts (its subtypes count)
                "reference": self.filter_choices("diseases")}

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

    @cached_property
    def study_options(self) -> list[dict]:
        """[{"value": id, "label": "id · title (SIMULATED)"}] for the study filter."""
        return [{"value": s.id, "label": f"{s.id} · {s.title}" + (" (SIMULATED)" if s.simulated else "")} for s in self.atlas.studies]

    def cell_types_for_term(self, term: str | None, fallback: str | None = None) -> list[str]:
        """The cell-type filter's value for ontology term ``term`` (an id or label): [its label]
        when the atlas has cells at or below it, else []. For atlases built before the vocabulary,
        the cell types whose name contains ``fallback`` (case-insensitive)."""
        if not term:
            return []
        choices = self.filter_choices("cell_types")
        if self.has_vocabulary:
            return [choices[term]] if term in choices else []
        return [c for c in self.cell_types if fallback and fallback.lower() in c.lower()]

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
        while it waits."""
        key = self.result_key(params)
        result = self.stored_result(key)
        if result is None:
            with self.job_slots.slot(on_wait):
                result = self._run(key, params, progress, on_ranking)
        return result

    def _run(self, key: str, params: QueryParams, progress, on_ranking) -> QueryResult:
        import copy

        result = self.stored_result(key)  # answered while this one waited for its slot
        if result is None:
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

    def _coverage_fields(self, study: str, coverage: pd.DataFrame | None) -> dict:
        """A study's signature coverage (genes measured of those requested, share of the
        signature's weight), its measured share (None: not recorded) and its ingest warnings."""
        meta = self._study_meta.get(study, {})
        out = {"measured": None, "requested": None, "coverage": None,
               "measured_share": measured_share(meta), "notes": "; ".join(study_warnings(meta))}
        if coverage is not None and study in coverage.index:
            row = coverage.loc[study]
            m, r, c = int(row["measured"]), int(row["requested"]), float(row["coverage"])
            out |= {"measured": m, "requested": r, "coverage": round(c, 4) if np.isfinite(c) else None}
        return out

    @cached_property
    def _study_meta(self) -> dict[str, dict]:
        return {s.id: s.meta for s in self.atlas.studies}

    def study_rows(self, result: QueryResult) -> list[dict]:
        """Rows for the study table: one per ranked study, with its null p-value when computed,
        its signature coverage (``measured`` of the ``requested`` signature genes, ``coverage``:
        the measured genes' share of the signature's weight, 0-1), ``measured_share`` (None: not recorded) and ``notes`` (its ingest
        warnings)."""
        titles = {s.id: s.title for s in self.atlas.studies}
        sim = {s.id: s.simulated for s in self.atlas.studies}
        diseases = result.samples.groupby("study")["disease"].agg(lambda d: ", ".join(sorted(set(d)))).to_dict()
        null = result.null.get("study")
        p = null.p_values() if null is not None else {}
        q = bh_q_values(p)  # over the studies ranked: each is a test
        rows = []
        for r in result.studies.itertuples():
            rows.append({
                "rank": int(r.rank),
                "study": r.group,
                "title": titles.get(r.group, r.group),
                "data": "SIMULATED" if sim.get(r.group) else "real",
                "diseases": diseases.get(r.group, ""),
                "samples": int(r.n_samples),
                "cells": int(r.n_cells),
                "mean_hit_pct": float(r.mean_hit_pct),
                "p_value": float(p[r.group]) if r.group in p else None,
                "p_floor": null.p_floor if null is not None else None,
                "q_value": q.get(r.group),
                **self._coverage_fields(str(r.group), result.coverage),
            })
        return rows

    def excluded_rows(self, result: QueryResult) -> list[dict]:
        """One row per study with cells in the filters that was left out of the rankings and the
        null (its coverage below ``min_coverage``): the study table's columns (no rank, hit % or
        p-value; ``cells``: its cells in the filters; ``diseases``: every disease the study holds),
        ``included`` (False) and ``reason``."""
        excluded = result.excluded_studies
        titles = {s.id: s.title for s in self.atlas.studies}
        sim = {s.id: s.simulated for s in self.atlas.studies}
        rows = []
        for study, r in excluded.iterrows():
            study = str(study)
            rows.append({
                "rank": None, "study": study, "title": titles.get(study, study), "data": "SIMULATED" if sim.get(study) else "real",
                "diseases": ", ".join(sorted(map(str, self._study_meta.get(study, {}).get("diseases") or {}))),
                "samples": None, "cells": int(r["n_selected"]), "mean_hit_pct": None, "p_value": None, "p_floor": None, "q_value": None,
                **self._coverage_fields(study, result.coverage), "included": False, "reason": str(r["reason"]),
            })
        return rows

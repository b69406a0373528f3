"""The dashboard's one data-access layer: an opened atlas and cached query answers. Read-only."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import Atlas, ResultCache, measured_share, study_warnings
from compute.query import QueryParams, QueryResult, gene_group_summary, run_query

__all__ = ["DashboardData"]

RESULT_VERSION = 2  # bump when QueryResult changes shape, so older cached results are not read (2: per-study coverage)


class DashboardData:
    """Opens the atlas once; answers queries, keeping the last ``cache_size`` results.

    Pickles as its atlas path, so a background-callback process (spawned, on macOS) reopens
    the atlas instead of copying memory maps."""

    def __init__(self, atlas_path: str | Path, cache_size: int = 16):
        self.atlas = Atlas.open(atlas_path)
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._by_key: OrderedDict[str, QueryResult] = OrderedDict()

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

    @cached_property
    def study_options(self) -> list[dict]:
        """[{"value": id, "label": "id · title (SIMULATED)"}] for the study filter."""
        return [{"value": s.id, "label": f"{s.id} · {s.title}" + (" (SIMULATED)" if s.simulated else "")} for s in self.atlas.studies]

    def cell_types_matching(self, hint: str | None) -> list[str]:
        if not hint:
            return []
        return [c for c in self.cell_types if hint.lower() in c.lower()]

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

    def query(self, params: QueryParams, progress=None) -> QueryResult:
        """The answer to ``params``: from memory or the disk cache when asked before, else run
        (and stored under :meth:`result_key` for the rendering callbacks)."""
        key = self.result_key(params)
        result = self.stored_result(key)
        if result is None:
            result = run_query(self.atlas, params, progress=progress)
            self.store_result(key, result)
        return result

    def gene_groups(self, result: QueryResult, by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(mean attribution, % of hit cells carrying the gene): genes x groups."""
        return gene_group_summary(self.atlas, result, by=by)

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

    def stored_result(self, key: str) -> QueryResult | None:
        with self._lock:
            hit = self._by_key.get(key)
        if hit is None:
            hit = self._results().get(key)
            if hit is not None:
                with self._lock:
                    self._by_key[key] = hit
        return hit

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
                "mean_hit_pct": round(float(r.mean_hit_pct), 2),
                "p_value": round(float(p[r.group]), 4) if r.group in p else None,
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
                "samples": None, "cells": int(r["n_selected"]), "mean_hit_pct": None, "p_value": None,
                **self._coverage_fields(study, result.coverage), "included": False, "reason": str(r["reason"]),
            })
        return rows

"""The dashboard's one data-access layer: an opened atlas and cached query answers. Read-only."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from compute.atlas import Atlas
from compute.query import QueryParams, QueryResult, gene_by_group, run_query

__all__ = ["DashboardData"]


class DashboardData:
    """Opens the atlas once; answers queries, keeping the last ``cache_size`` results."""

    def __init__(self, atlas_path: str | Path, cache_size: int = 16):
        self.atlas = Atlas.open(atlas_path)
        self._cache: OrderedDict[QueryParams, QueryResult] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @cached_property
    def umap(self) -> np.ndarray | None:
        """UMAP coordinates, or None for atlases without one (imported SIGnature attributions)."""
        return self.atlas.umap() if self.atlas.has_umap else None

    @cached_property
    def cell_types(self) -> list[str]:
        return sorted(self.atlas.cells["cell_type"].astype(str).unique())

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
        }

    def query(self, params: QueryParams) -> QueryResult:
        with self._lock:
            hit = self._cache.get(params)
            if hit is not None:
                self._cache.move_to_end(params)
                return hit
        result = run_query(self.atlas, params)
        with self._lock:
            self._cache[params] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def heatmap(self, result: QueryResult, by: str) -> pd.DataFrame:
        return gene_by_group(self.atlas, result, by=by)

    def study_rows(self, result: QueryResult) -> list[dict]:
        """Rows for the study table: one per study with selected cells."""
        titles = {s.id: s.title for s in self.atlas.studies}
        sim = {s.id: s.simulated for s in self.atlas.studies}
        diseases = result.samples.groupby("study")["disease"].agg(lambda d: ", ".join(sorted(set(d)))).to_dict()
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
            })
        return rows

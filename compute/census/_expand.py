"""A census entry of the manifest becomes one study per Census dataset its filter selects.

The manifest stays a pure description (parsing it reads nothing): the entry is expanded when a
plan or a build needs it, from the plan kept in the work folder, so the same manifest and seed
give the same studies, and a build never asks the Census again once its plan and files exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from compute.census._download import download_datasets
from compute.census._errors import CensusError
from compute.census._open import where
from compute.census._plan import CensusPlan, DatasetPlan, load_plan, plan_census
from compute.manifest import Manifest, SourceSpec, StudySpec

__all__ = ["census_entries", "dataset_studies", "expand_census", "plan_manifest", "read_census_study", "source_key",
           "study_provenance"]


def _is_entry(spec: StudySpec) -> bool:
    return spec.source.kind == "census" and spec.source.census is not None and spec.source.census.dataset_id is None


def census_entries(manifest: Manifest) -> list[StudySpec]:
    """The manifest's census entries not yet expanded into datasets."""
    return [s for s in manifest.studies if _is_entry(s)]


def plan_manifest(manifest: Manifest, root: Path, *, log: Callable[[str], None] = lambda _: None) -> list[CensusPlan]:
    """The plan of every census entry of ``manifest`` (kept under ``root``). Raises CensusError."""
    return [plan_census(s, manifest.seed, root, log=log) for s in census_entries(manifest)]


def dataset_studies(plan: CensusPlan, entry: StudySpec) -> list[StudySpec]:
    """One study per planned dataset: its cells read from the downloaded file; cell types, diseases,
    tissues and donors from the Census's own columns (the ingest's CELLxGENE defaults)."""
    census = entry.source.census
    return [StudySpec(id=d.study_id, title=d.title, organism=entry.organism,
                      source=SourceSpec(kind="census", path=plan.file(d.dataset_id),
                                        census=dataclasses.replace(census, dataset_id=d.dataset_id, selection=plan.key)))
            for d in plan.datasets]


def expand_census(manifest: Manifest, root: Path, *, progress: bool = True, log: Callable[[str], None] = lambda _: None,
                  on_dataset: Callable[[DatasetPlan, Path], None] | None = None) -> Manifest:
    """``manifest`` with every census entry replaced by its datasets' studies, each dataset
    downloaded (resuming: files already in place are kept) under ``root``. Raises CensusError."""
    plans = {s.id: plan_census(s, manifest.seed, root, log=log) for s in census_entries(manifest)}
    entry_of: dict[str, str] = {}
    for entry, plan in plans.items():  # every entry planned and checked before anything is downloaded
        if not plan.datasets:
            raise CensusError(f"{manifest.path}: census entry '{entry}' selects no dataset of the {where(plan)} "
                              f"({plan.n_matching_cells:,} matching cells, {len(plan.skipped)} datasets left out): "
                              "`python -m compute census-plan MANIFEST` shows what the filter matches")
        for d in plan.datasets:
            if d.dataset_id in entry_of:  # its cells would enter the atlas twice
                raise CensusError(f"{manifest.path}: dataset {d.dataset_id} ({d.title}) is selected by census entries "
                                  f"'{entry_of[d.dataset_id]}' and '{entry}': narrow one filter (for example by disease) "
                                  "so that each dataset comes in once")
            entry_of[d.dataset_id] = entry
    studies: list[StudySpec] = []
    for s in manifest.studies:
        if s.id not in plans or not _is_entry(s):
            studies.append(s)
            continue
        download_datasets(plans[s.id], progress=progress, on_dataset=on_dataset)
        studies += dataset_studies(plans[s.id], s)
    seen: dict[str, int] = {}
    for st in studies:
        seen[st.id] = seen.get(st.id, 0) + 1
    twice = sorted(i for i, n in seen.items() if n > 1)
    if twice:
        raise CensusError(f"{manifest.path}: study ids {', '.join(twice)} appear more than once after the census entries became "
                          "one study per dataset each (a study named like one of an entry's datasets): rename it or the entry")
    return dataclasses.replace(manifest, studies=tuple(studies))


def _expanded(spec: StudySpec) -> tuple[str, str]:
    c = spec.source.census
    if spec.source.kind != "census" or c is None or c.dataset_id is None or spec.source.path is None:
        raise CensusError(f"study '{spec.id}' is a census entry, not one of its datasets: expand the manifest first "
                          "(compute.census.expand_census; the build does)")
    return c.dataset_id, c.selection


def source_key(spec: StudySpec) -> str:
    """What identifies a census study's cells for the build's caches: the pinned release, the
    dataset and the plan key (filter, caps, seed), readable in the atlas's build record."""
    dataset_id, selection = _expanded(spec)
    return f"census:{spec.source.census.version}:{dataset_id}:{selection}"


def read_census_study(spec: StudySpec):
    """The downloaded AnnData of a census study (raw counts; var indexed by Ensembl id with
    feature_name; obs the Census columns), downloading it first when it is not on disk."""
    import anndata as ad

    dataset_id, _ = _expanded(spec)
    path = spec.source.path
    if not path.is_file():
        plan = load_plan(path.parent)
        download_datasets(plan, progress=False, only=(dataset_id,))
    return ad.read_h5ad(path)


def study_provenance(spec: StudySpec) -> dict:
    """Where a census study's cells came from, for its atlas entry: the release, the dataset and
    its collection, the filter, how many of the matching cells were kept and by what caps."""
    dataset_id, _ = _expanded(spec)
    plan = load_plan(spec.source.path.parent)
    d = plan.dataset(dataset_id)
    return {"version": plan.version, **({"uri": plan.uri} if plan.uri else {}), "experiment": plan.experiment,
            "dataset_id": dataset_id, "dataset_version_id": d.dataset_version_id, "collection": d.collection,
            "doi": d.doi, "citation": d.citation, "value_filter": plan.value_filter,
            "cells": {"matching": d.n_matching, "selected": d.n_selected}, "caps": dict(plan.caps), "seed": plan.seed,
            "plan": plan.key, "sampling": "seeded draw stratified by cell type (compute.census.select_cells)"}


"""What a census entry brings in, decided before anything is downloaded: the matching cells of
every dataset (read from the Census obs only), the seeded stratified draw the caps leave, and
the genes each dataset measured. Kept in the work folder, so a build reuses it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from compute.census._errors import CensusError
from compute.census._filter import filter_clauses, obs_value_filter
from compute.census._open import EXPERIMENTS, datasets_table, measured_genes, open_census, where
from compute.census._select import dataset_rng, select_cells
from compute.files import atomic_write, write_json_atomic
from compute.manifest import StudySpec

__all__ = ["CensusPlan", "DatasetPlan", "load_plan", "plan_census", "plan_key"]

# bump when what a plan selects for the same inputs changes: a new plan (and new downloads)
PLAN_FORMAT = "1"
PLAN_FILE = "plan.json"
SELECTION_FILE = "selection.npz"
# study ids are '<entry id>-<the first characters of the dataset id>', longer when two would meet
_ID_PREFIX = 8
# the obs columns a plan reads (those present): the draw's strata, the study's samples, the summary
_PLAN_COLUMNS = ("soma_joinid", "dataset_id", "donor_id", "cell_type", "cell_type_ontology_term_id", "disease", "nnz")


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset of a census entry, as a study: ``n_selected`` of its ``n_matching`` cells
    (``n_donors`` donors, ``diseases`` and ``cell_types`` counts among them); ``nnz`` the
    selected cells' stored values (the Census obs nnz column; None when the Census has none);
    ``n_genes`` the genes the dataset measured (its presence matrix row)."""

    dataset_id: str
    study_id: str
    title: str
    n_matching: int
    n_selected: int
    n_donors: int
    n_genes: int
    nnz: int | None
    diseases: dict[str, int]
    cell_types: dict[str, int]
    collection: str = ""
    doi: str = ""
    citation: str = ""
    dataset_version_id: str = ""


@dataclass(frozen=True)
class CensusPlan:
    """A census entry planned: its ``datasets`` (-> studies), the datasets ``skipped`` (id,
    matching cells, reason), the filter values that matched no cell, and where its files go
    (``folder``: plan.json, selection.npz, one <dataset_id>.h5ad per dataset once downloaded)."""

    entry: str
    title: str
    version: str
    uri: str | None
    experiment: str
    value_filter: str
    caps: dict
    seed: int
    key: str
    folder: Path
    n_matching_cells: int
    n_matching_datasets: int
    n_genes: int
    datasets: tuple[DatasetPlan, ...]
    skipped: tuple[tuple[str, int, str], ...] = ()
    unmatched: tuple[tuple[str, str], ...] = ()
    n_var: int = 0
    _arrays: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def file(self, dataset_id: str) -> Path:
        """The downloaded h5ad of ``dataset_id``."""
        return self.folder / f"{dataset_id}.h5ad"

    def dataset(self, dataset_id: str) -> DatasetPlan:
        for d in self.datasets:
            if d.dataset_id == dataset_id:
                return d
        raise KeyError(dataset_id)

    def _array(self, name: str) -> np.ndarray | None:
        if not self._arrays:
            with np.load(self.folder / SELECTION_FILE, allow_pickle=False) as z:
                self._arrays.update({k: z[k] for k in z.files})
        return self._arrays.get(name)

    def cells(self, dataset_id: str) -> np.ndarray:
        """soma_joinids (sorted) of the dataset's selected cells."""
        return self._array(f"cells_{self._position(dataset_id)}")

    def genes(self, dataset_id: str) -> np.ndarray | None:
        """var soma_joinids of the genes the dataset measured (None: every gene of the Census)."""
        return self._array(f"genes_{self._position(dataset_id)}")

    def _position(self, dataset_id: str) -> int:
        return [d.dataset_id for d in self.datasets].index(dataset_id)

    @property
    def n_cells(self) -> int:
        return sum(d.n_selected for d in self.datasets)

    def to_dict(self) -> dict:
        """The plan as JSON-able data (what plan.json holds; the arrays are in selection.npz)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_arrays"}
        d["datasets"] = [asdict(x) for x in self.datasets]
        d["folder"] = str(self.folder)
        return d


def plan_key(spec: StudySpec, seed: int) -> str:
    """What determines an entry's cells: the release, the experiment, the filter, the caps and the
    seed (not the URI: a mirror holds the same release's cells)."""
    src = spec.source.census
    caps = _caps(spec)
    payload = [PLAN_FORMAT, src.version, EXPERIMENTS[spec.organism], obs_value_filter(src), caps, int(seed)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _caps(spec: StudySpec) -> dict:
    src = spec.source.census
    return {"max_cells_per_dataset": src.max_cells_per_dataset, "max_cells_per_cell_type": src.max_cells_per_cell_type,
            "min_cells_per_dataset": src.min_cells_per_dataset, "max_datasets": src.max_datasets}


def plan_census(spec: StudySpec, seed: int, root: Path, *, log: Callable[[str], None] = lambda _: None) -> CensusPlan:
    """The plan of census entry ``spec`` (kept under ``root``/<entry id>-<plan key>/; an existing
    plan is read, not recomputed). Reads the Census obs (with the entry's filter), its datasets
    table and presence matrix; downloads no expression. Raises CensusError."""
    key = plan_key(spec, seed)
    folder = Path(root) / f"{spec.id}-{key}"
    if (folder / PLAN_FILE).is_file():
        return load_plan(folder)
    src = spec.source.census
    experiment = EXPERIMENTS[spec.organism]
    value_filter = obs_value_filter(src)
    log(f"planning census entry '{spec.id}': reading the obs of {where(src)} ({experiment}) where {value_filter}")
    with open_census(src) as census:
        obs = _matching_obs(census, experiment, value_filter, spec)
        ids = sorted(map(str, obs["dataset_id"].unique()))
        table = datasets_table(census, ids, src)
        n_var = int(census["census_data"][experiment].ms["RNA"].var.count)
        kept, skipped = _kept_datasets(obs, ids, src)
        genes_of = measured_genes(census, experiment, [int(table.loc[d, "soma_joinid"]) for d in kept if d in table.index],
                                  src)
    present = {column: set(map(str, obs[column].unique())) for _, column, _ in filter_clauses(src)}
    unmatched = tuple((k, v) for k, column, values in filter_clauses(src) for v in values if v not in present[column])
    caps = _caps(spec)
    study_ids = _study_ids(spec.id, kept)
    strata = "cell_type_ontology_term_id" if "cell_type_ontology_term_id" in obs else "cell_type"
    arrays: dict[str, np.ndarray] = {}
    datasets, gene_sets = [], []
    groups = {str(d): g for d, g in obs.groupby("dataset_id", observed=True)}
    for i, d in enumerate(kept):
        cells = groups[d].sort_values("soma_joinid")
        pos = select_cells(cells[strata].astype(str).to_numpy(), max_cells=src.max_cells_per_dataset,
                           max_per_stratum=src.max_cells_per_cell_type, rng=dataset_rng(seed, d))
        chosen = cells.iloc[pos]
        arrays[f"cells_{i}"] = chosen["soma_joinid"].to_numpy(dtype=np.int64)
        row = table.loc[d] if d in table.index else None
        genes = None
        if genes_of is not None and row is not None:
            genes = genes_of[int(row["soma_joinid"])]
            arrays[f"genes_{i}"] = genes
        gene_sets.append(genes)
        datasets.append(DatasetPlan(
            dataset_id=d, study_id=study_ids[d], title=_text(row, "dataset_title") or d,
            n_matching=int(len(cells)), n_selected=int(len(chosen)),
            n_donors=int(chosen["donor_id"].nunique()) if "donor_id" in chosen else 0,
            n_genes=int(len(genes)) if genes is not None else n_var,
            nnz=int(chosen["nnz"].sum()) if "nnz" in chosen else None,
            diseases=_counts(chosen, "disease"), cell_types=_counts(chosen, "cell_type"),
            collection=_text(row, "collection_name"), doi=_text(row, "collection_doi"), citation=_text(row, "citation"),
            dataset_version_id=_text(row, "dataset_version_id"),
        ))
    plan = CensusPlan(
        entry=spec.id, title=spec.title, version=src.version, uri=src.uri, experiment=experiment,
        value_filter=value_filter, caps=caps, seed=int(seed), key=key, folder=folder,
        n_matching_cells=int(len(obs)), n_matching_datasets=len(ids),
        # the atlas's genes before harmonisation: the union of what the datasets measured
        n_genes=n_var if any(g is None for g in gene_sets) else int(len(np.unique(np.concatenate(gene_sets or [[]])))),
        datasets=tuple(datasets), skipped=tuple(skipped), unmatched=unmatched, n_var=n_var,
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / SELECTION_FILE, lambda t: np.savez(t, **arrays))
    write_json_atomic(folder / PLAN_FILE, plan.to_dict())  # last: its presence marks a finished plan
    return plan


def _matching_obs(census, experiment: str, value_filter: str, spec: StudySpec) -> pd.DataFrame:
    import cellxgene_census

    src = spec.source.census
    if experiment not in census["census_data"]:
        raise CensusError(f"the {where(src)} has no {experiment} experiment (organism: {spec.organism})")
    available = set(census["census_data"][experiment].obs.keys())
    required = ["soma_joinid", "dataset_id", *(c for _, c, _ in filter_clauses(src))]
    wanted = list(dict.fromkeys([*required, *_PLAN_COLUMNS]))
    missing = [c for c in dict.fromkeys(required) if c not in available]
    if missing:
        raise CensusError(f"the {where(src)}'s {experiment} obs has no column {', '.join(missing)} "
                          f"(census entry '{spec.id}', source.filter)")
    try:
        obs = cellxgene_census.get_obs(census, experiment, value_filter=value_filter,
                                       column_names=[c for c in wanted if c in available])
    except Exception as exc:  # TileDB's parser and reader raise several types
        raise CensusError(f"cannot select cells of the {where(src)} where {value_filter}: {type(exc).__name__}: {exc}") from exc
    # text columns stay categorical: a filter can match millions of cells
    return obs


def _kept_datasets(obs: pd.DataFrame, ids: list[str], src) -> tuple[list[str], list[tuple[str, int, str]]]:
    """(datasets that become studies, datasets left out with their matching cells and why)."""
    sizes = obs.groupby("dataset_id", observed=True).size()
    sizes.index = sizes.index.astype(str)
    skipped, kept = [], []
    for d in ids:
        if sizes[d] < src.min_cells_per_dataset:
            skipped.append((d, int(sizes[d]), f"fewer matching cells than min_cells_per_dataset ({src.min_cells_per_dataset})"))
        else:
            kept.append(d)
    if src.max_datasets is not None and len(kept) > src.max_datasets:
        ranked = sorted(kept, key=lambda d: (-int(sizes[d]), d))
        kept = sorted(ranked[: src.max_datasets])
        skipped += [(d, int(sizes[d]), f"beyond max_datasets ({src.max_datasets}; the largest are kept)")
                    for d in ranked[src.max_datasets:]]
    return kept, skipped


def _study_ids(entry: str, dataset_ids: list[str]) -> dict[str, str]:
    n = _ID_PREFIX
    while len({d[:n] for d in dataset_ids}) < len(dataset_ids):
        n += 4
    return {d: f"{entry}-{d[:n]}" for d in dataset_ids}


def _counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    if column not in frame:
        return {}
    counts = frame[column].value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))) if v}


def _text(row, column: str) -> str:
    if row is None or column not in row.index or pd.isna(row[column]):
        return ""
    return str(row[column])


def load_plan(folder: Path) -> CensusPlan:
    """The plan kept in ``folder`` (written by :func:`plan_census`). Raises CensusError."""
    try:
        d = json.loads((Path(folder) / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CensusError(f"no readable census plan in {folder} ({exc}): run the build (or "
                          "`python -m compute census-plan MANIFEST`) again to plan the entry") from exc
    d["datasets"] = tuple(DatasetPlan(**x) for x in d["datasets"])
    d["skipped"] = tuple(tuple(x) for x in d["skipped"])
    d["unmatched"] = tuple(tuple(x) for x in d["unmatched"])
    d["folder"] = Path(folder)
    return CensusPlan(**d)

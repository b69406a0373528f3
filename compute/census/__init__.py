"""Studies from the CELLxGENE Census (https://chanzuckerberg.github.io/cellxgene-census/).

A manifest entry with ``source: {kind: census, version, filter, ...}`` selects cells of a pinned
Census release; :func:`plan_census` decides, from the obs alone, which cells of which datasets
come in (caps per dataset and per cell type, a seeded stratified draw), :func:`download_datasets`
fetches them one dataset at a time through ``cellxgene_census`` (crash-safe, resumable), and
:func:`expand_census` turns the entry into one study per dataset for the build. Nothing here
imports ``cellxgene_census`` or ``tiledbsoma`` until a Census is opened.
"""

from compute.census._download import download_datasets, fetch_dataset
from compute.census._errors import CensusError
from compute.census._estimate import Estimate, estimate
from compute.census._expand import (
    census_entries,
    dataset_studies,
    expand_census,
    plan_manifest,
    read_census_study,
    source_key,
    study_provenance,
)
from compute.census._filter import obs_value_filter
from compute.census._open import EXPERIMENTS, open_census
from compute.census._plan import CensusPlan, DatasetPlan, load_plan, plan_census, plan_key
from compute.census._select import dataset_rng, select_cells
from compute.census._text import manifest_estimate, plan_json, plan_text

__all__ = [
    "EXPERIMENTS",
    "CensusError",
    "CensusPlan",
    "DatasetPlan",
    "Estimate",
    "census_entries",
    "dataset_rng",
    "dataset_studies",
    "download_datasets",
    "estimate",
    "expand_census",
    "fetch_dataset",
    "load_plan",
    "manifest_estimate",
    "obs_value_filter",
    "open_census",
    "plan_census",
    "plan_json",
    "plan_key",
    "plan_manifest",
    "plan_text",
    "read_census_study",
    "select_cells",
    "source_key",
    "study_provenance",
]

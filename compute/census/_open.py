"""Opening the Census (a pinned release, or a SOMA collection at a URI) and reading its tables."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from compute.census._errors import CensusError
from compute.manifest import CensusSource

__all__ = ["EXPERIMENTS", "census_build_date", "datasets_table", "measured_genes", "open_census", "where"]

# the study's organism (manifest) -> the Census experiment holding its cells
EXPERIMENTS = {"human": "homo_sapiens", "mouse": "mus_musculus"}
# TileDB read buffers: the client's default is 1 GiB each; 128 MiB bounds a download's memory
# (the client's own docstring suggests it) at the price of more, smaller reads
_BUFFER_BYTES = 128 * 1024**2


def where(source: CensusSource) -> str:
    """How a source's Census is named in messages: its release, and the URI when one is given
    (``source``: anything with ``version`` and ``uri``, a CensusSource or a plan)."""
    return f"Census {source.version}" + (f" at {source.uri}" if source.uri else "")


@contextlib.contextmanager
def open_census(source: CensusSource):
    """The Census of ``source`` (anything with ``version`` and ``uri``) opened with
    cellxgene_census.open_soma (a context manager): the pinned release, or the collection at the
    URI after checking that its census_info/summary names that release. Raises CensusError."""
    import cellxgene_census

    config = {"py.init_buffer_bytes": _BUFFER_BYTES, "soma.init_buffer_bytes": _BUFFER_BYTES}
    try:
        if source.uri is not None:
            census = cellxgene_census.open_soma(uri=source.uri, tiledb_config=config)
        else:
            census = cellxgene_census.open_soma(census_version=source.version, tiledb_config=config)
    except Exception as exc:  # the client and TileDB raise many types: a missing URI, no network, an unknown release
        hint = ("point source.uri at a SOMA collection with the Census layout (census_info, census_data)"
                if source.uri else "check the network, or set source.uri to an offline mirror of the release")
        raise CensusError(f"cannot open the {where(source)}: {type(exc).__name__}: {exc}; {hint}") from exc
    try:
        # the client opened the release by name; a collection at a URI must say it is that release
        built = census_build_date(census, source) if source.uri is not None else source.version
        if built != source.version:
            raise CensusError(f"the {where(source)} is release {built}, but the manifest pins {source.version}: "
                              "point source.uri at a mirror of the pinned release, or pin the mirror's release")
        yield census
    finally:
        census.close()


def census_build_date(census, source: CensusSource) -> str:
    """The release named by census_info/summary (label census_build_date)."""
    try:
        summary = census["census_info"]["summary"].read().concat().to_pandas()
        values = dict(zip(summary["label"].astype(str), summary["value"].astype(str), strict=True))
    except Exception as exc:  # a collection without the Census layout
        raise CensusError(f"the {where(source)} has no census_info/summary table ({type(exc).__name__}: {exc}): "
                          "it is not laid out as the CELLxGENE Census is") from exc
    if "census_build_date" not in values:
        raise CensusError(f"the {where(source)}'s census_info/summary has no census_build_date row")
    return values["census_build_date"]


def datasets_table(census, dataset_ids, source: CensusSource) -> pd.DataFrame:
    """census_info/datasets rows of ``dataset_ids``, indexed by dataset_id."""
    ids = sorted(set(map(str, dataset_ids)))
    if not ids:
        return pd.DataFrame(columns=["soma_joinid", "dataset_title"]).rename_axis("dataset_id")
    literal = "[" + ", ".join(repr(i) for i in ids) + "]"
    try:
        table = census["census_info"]["datasets"].read(value_filter=f"dataset_id in {literal}").concat().to_pandas()
    except Exception as exc:
        raise CensusError(f"cannot read census_info/datasets of the {where(source)}: {type(exc).__name__}: {exc}") from exc
    table["dataset_id"] = table["dataset_id"].astype(str)
    return table.set_index("dataset_id")


def measured_genes(census, experiment: str, dataset_joinids: list[int], source: CensusSource) -> dict[int, np.ndarray] | None:
    """The var soma_joinids each dataset (by its census_info/datasets soma_joinid) measured, from
    the experiment's feature_dataset_presence_matrix, reading only those datasets' rows (the whole
    matrix of a Census release is hundreds of MB). None when the collection has no such matrix
    (every gene is then taken as measured)."""
    rna = census["census_data"][experiment].ms["RNA"]
    if "feature_dataset_presence_matrix" not in rna:
        return None
    rows = np.unique(np.asarray(dataset_joinids, dtype=np.int64))
    out: dict[int, np.ndarray] = {int(r): np.zeros(0, dtype=np.int64) for r in rows}
    if not len(rows):
        return out
    try:
        table = rna["feature_dataset_presence_matrix"].read((rows,)).tables().concat()
    except Exception as exc:
        raise CensusError(f"cannot read the gene presence matrix of the {where(source)}: {type(exc).__name__}: {exc}") from exc
    ds = table.column("soma_dim_0").to_numpy()
    genes = table.column("soma_dim_1").to_numpy()
    present = table.column("soma_data").to_numpy(zero_copy_only=False).astype(bool)
    for r in out:
        out[r] = np.unique(genes[(ds == r) & present]).astype(np.int64)
    return out

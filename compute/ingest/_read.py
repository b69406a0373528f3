"""Read one study into a standard AnnData: pseudo-counts, current HGNC symbols, standard obs columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.errors import IngestError
from compute.ingest._genes import study_gene_names
from compute.ingest._report import store_report
from compute.ingest._values import pseudo_counts
from compute.manifest import FieldSpec, StudySpec

__all__ = ["CELL_COLUMNS", "METADATA_COLUMNS", "read_study"]

# The standard per-cell columns every ingested study carries, in this order. cell_type, disease
# and tissue hold the harmonised label (the ontology term's label, or the study's own label when
# no term matched); *_original the study's label; *_ontology_term_id the term ("" if none).
CELL_COLUMNS = ("cell_id", "study", "sample", "donor", "cell_type", "disease", "tissue", "simulated",
                "cell_type_original", "cell_type_ontology_term_id", "disease_original", "disease_ontology_term_id",
                "tissue_original", "tissue_ontology_term_id")

# Donor or sample metadata carried without being asked for, when a study's obs has the column:
# the CELLxGENE schema's donor and sample columns (their *_ontology_term_id twins are not: the
# labels are what a colour shows) and a plain ``age``. Each is carried only when it holds one value
# per sample and at most MAX_METADATA_VALUES values: per-cell numbers or free text are not donor
# metadata, and a manifest that wants one anyway names it under ``columns.metadata``.
METADATA_COLUMNS = ("sex", "age", "development_stage", "self_reported_ethnicity", "assay", "suspension_type")
MAX_METADATA_VALUES = 200
# the cells table's columns that a metadata column may not replace (the build adds organism and
# label transfer the predicted cell type)
_RESERVED = (*CELL_COLUMNS, "organism", "cell_type_predicted", "cell_type_predicted_ontology_term_id",
             "cell_type_prediction_confidence")

# CELLxGENE-schema obs columns, tried in order when the manifest does not name one.
_AUTO_COLUMNS = {
    "cell_type": ("cell_type",),
    "disease": ("disease",),
    "tissue": ("tissue",),
    "donor": ("donor_id", "donor"),
    "sample": ("sample_id", "sample", "library_id"),
}


def _where(spec: StudySpec) -> str:
    src = spec.source.path if spec.source.path is not None else spec.source.kind
    return f"study '{spec.id}' ({src})"


def _load_pbmc68k():
    """scanpy's bundled 700 PBMCs; counts recovered from ``.raw`` (log1p of counts per 10k)."""
    import anndata as ad
    import scanpy as sc

    a = sc.datasets.pbmc68k_reduced()
    raw = a.raw.X.toarray() if sp.issparse(a.raw.X) else np.asarray(a.raw.X)
    counts = np.rint(np.expm1(raw) * a.obs["n_counts"].to_numpy()[:, None] / 1e4)
    out = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=a.obs.copy(),
        var=pd.DataFrame(index=a.raw.var_names.copy()),
    )
    return out


def _column(obs: pd.DataFrame, name: str | None, role: str, spec: StudySpec, required: bool, key: str | None = None):
    if name is not None:
        if name not in obs.columns:
            raise IngestError(
                f"{_where(spec)}: column '{name}' (manifest key '{key or f'columns.{role}'}') is not in obs; "
                f"obs has: {', '.join(map(str, obs.columns))}"
            )
        return obs[name].astype(str).to_numpy(dtype=object)
    for cand in _AUTO_COLUMNS.get(role, ()):
        if cand in obs.columns:
            return obs[cand].astype(str).to_numpy(dtype=object)
    if required:
        raise IngestError(
            f"{_where(spec)}: no '{role}' annotation: set 'columns.{role}' in the manifest "
            f"(obs has: {', '.join(map(str, obs.columns))})"
        )
    return None


def _field(obs: pd.DataFrame, fs: FieldSpec, role: str, spec: StudySpec) -> np.ndarray:
    if fs.value is not None:
        return np.full(len(obs), fs.value, dtype=object)
    return _column(obs, fs.column, role, spec, required=True, key=f"{role}.column")


def _harmonised(obs: pd.DataFrame, kind: str, values: np.ndarray, column: str | None, constant: bool, spec: StudySpec):
    """The study's ``kind`` labels matched to ontology terms (compute.vocabulary.harmonise).
    A CELLxGENE-schema file's ``<kind>_ontology_term_id`` column supplies the terms when the
    labels come from the schema's own ``<kind>`` column."""
    from compute.vocabulary import harmonise

    id_column = f"{kind}_ontology_term_id"
    ids = None
    if not constant and column in (None, kind) and id_column in obs.columns:
        ids = obs[id_column].astype(str).to_numpy(dtype=object)
    try:
        return harmonise(values, kind, spec.label_map(kind), ids=ids, accept_proposals=kind in spec.accept_proposals)
    except IngestError as exc:
        raise IngestError(f"{_where(spec)}: columns.{kind}_map: {exc}") from exc


def _metadata_text(values: pd.Series) -> np.ndarray:
    """A metadata column as text: whole numbers without a decimal point (an age of 45.0 reads
    45), and MISSING_METADATA where the study recorded nothing (NaN, None, "", "nan")."""
    from compute.atlas import MISSING_METADATA

    # each distinct value formatted once: a study has a few donors' values, not a million
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    distinct = np.asarray(distinct)
    if pd.api.types.is_numeric_dtype(distinct.dtype) and not pd.api.types.is_bool_dtype(distinct.dtype):
        numbers = distinct.astype(float)
        text = np.array([f"{v:.0f}" if float(v).is_integer() else f"{v:g}" for v in numbers], dtype=object)
        text[~np.isfinite(numbers)] = MISSING_METADATA
    else:
        text = np.array([str(v).strip() for v in distinct], dtype=object)
        text[np.isin(text, ["", "nan", "NaN", "None", "<NA>"])] = MISSING_METADATA
    return np.where(codes < 0, MISSING_METADATA, text[np.maximum(codes, 0)] if text.size else MISSING_METADATA).astype(object)


def _metadata(obs: pd.DataFrame, spec: StudySpec, sample: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """({name: text per cell} of the donor or sample metadata a study carries: the manifest's
    ``columns.metadata``, then the :data:`METADATA_COLUMNS` obs has; the report's metadata
    section: each column's source and the automatic ones left out, and why). Raises IngestError
    when a manifest-named column is not in obs or its name is one of the standard columns."""
    out, carried, skipped = {}, {}, []
    for name, column in spec.metadata:
        if name in _RESERVED:
            raise IngestError(f"{_where(spec)}: columns.metadata names '{name}', a standard column of the atlas's cells: "
                              "give it another name ({other_name: " + column + "})")
        if column not in obs.columns:
            raise IngestError(
                f"{_where(spec)}: column '{column}' (manifest key 'columns.metadata') is not in obs; "
                f"obs has: {', '.join(map(str, obs.columns))}"
            )
        out[name] = _metadata_text(obs[column])
        carried[name] = {"column": column, "from": "manifest"}
    keys = pd.Series(sample, dtype=object)
    for name in METADATA_COLUMNS:
        if name in out or name not in obs.columns:
            continue
        text = _metadata_text(obs[name])
        n_values = len(pd.unique(text))
        if n_values > MAX_METADATA_VALUES:
            skipped.append({"column": name, "why": f"{n_values:,} values, more than {MAX_METADATA_VALUES}"})
        elif pd.Series(text, dtype=object).groupby(keys.to_numpy()).nunique().max() > 1:
            skipped.append({"column": name, "why": "it varies within a sample"})
        else:
            out[name] = text
            carried[name] = {"column": name, "from": "automatic"}
    return out, {"columns": carried, "skipped": skipped}


def _sum_columns(X: sp.csr_matrix, names: list[str | None]) -> tuple[sp.csr_matrix, np.ndarray]:
    """X with one column per distinct name (columns of one name summed; None dropped), names sorted."""
    kept = [n for n in names if n is not None]
    uniq, inverse = np.unique(np.array(kept, dtype=object), return_inverse=True)
    cols = np.flatnonzero([n is not None for n in names])
    agg = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float64), (cols, inverse)), shape=(len(names), len(uniq))
    )
    return sp.csr_matrix(X @ agg, dtype=np.float32), uniq


def _load(spec: StudySpec):
    if spec.source.kind == "scanpy-pbmc68k":
        return _load_pbmc68k()
    if spec.source.kind == "census":
        from compute.census import read_census_study

        return read_census_study(spec)
    import anndata as ad

    path = spec.source.path
    if path is None or not path.is_file():
        raise IngestError(
            f"{_where(spec)}: file not found. For the demo data run `python -m compute simulate`; "
            "otherwise fix 'source.path' (relative to the manifest)."
        )
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for a damaged file
        raise IngestError(f"{_where(spec)}: cannot read h5ad: {exc}") from exc


def read_study(spec: StudySpec):
    """Read a study as AnnData: X = pseudo-counts (CSR float32; raw counts for
    ``source.values: counts``), var index = current human HGNC symbols (one column per gene,
    duplicates summed), obs = :data:`CELL_COLUMNS` then the study's donor or sample metadata
    (sex, age, ...: :func:`standard_cells`), and ``uns['sigatlas_report']`` with the
    report's values, species, symbols and n_genes_measured sections (qc is None until
    :func:`qc_and_normalise`). Raises IngestError."""
    import anndata as ad

    adata = _load(spec)
    where = _where(spec)
    if adata.n_obs == 0:
        raise IngestError(f"{where}: the file has no cells")
    values = pseudo_counts(adata, spec.source.values, where)
    genes = study_gene_names(values.var, spec.organism, where)
    counts, symbols = _sum_columns(values.X, genes.names)
    table, vocabulary, metadata = standard_cells(adata.obs, spec)
    out = ad.AnnData(X=counts, obs=table, var=pd.DataFrame(index=pd.Index(symbols, dtype=str)))
    store_report(out, study_report_before_qc(genes, values.report, vocabulary, int(out.n_vars), metadata))
    return out


def standard_cells(obs: pd.DataFrame, spec: StudySpec) -> tuple[pd.DataFrame, dict, dict]:
    """(the cells table of a study's obs: :data:`CELL_COLUMNS`, then its donor or sample metadata
    as text, MISSING_METADATA where a cell has none; the report's vocabulary section; its
    metadata section). Raises IngestError when a cell id occurs more than once, or a column the
    manifest names is not in obs."""
    refuse_duplicate_cells(obs.index, spec)
    donor = _column(obs, spec.donor, "donor", spec, required=False)
    sample = _column(obs, spec.sample, "sample", spec, required=False)
    if sample is None:
        sample = donor if donor is not None else np.full(len(obs), spec.id, dtype=object)
    if donor is None:
        donor = sample
    originals = {
        "cell_type": _column(obs, spec.cell_type, "cell_type", spec, required=True),
        "disease": _field(obs, spec.disease, "disease", spec),
        "tissue": _field(obs, spec.tissue, "tissue", spec),
    }
    label_columns = {"cell_type": spec.cell_type, "disease": spec.disease.column, "tissue": spec.tissue.column}
    constant = {"cell_type": False, "disease": spec.disease.value is not None, "tissue": spec.tissue.value is not None}
    table = pd.DataFrame({"cell_id": obs.index.astype(str).to_numpy(dtype=object), "study": spec.id,
                          "sample": sample, "donor": donor})
    vocabulary = {}
    for kind, original in originals.items():
        h = _harmonised(obs, kind, original, label_columns[kind], constant[kind], spec)
        table[kind] = h.labels
        table[f"{kind}_original"] = original
        table[f"{kind}_ontology_term_id"] = h.term_ids
        vocabulary[kind] = h.report()
    table["simulated"] = bool(spec.simulated)
    table = table[list(CELL_COLUMNS)]
    columns, metadata = _metadata(obs, spec, sample)
    for name, values in columns.items():
        table[name] = values
    table.index = pd.Index([str(i) for i in range(len(table))])
    return table, vocabulary, metadata


def refuse_duplicate_cells(cell_ids: pd.Index, spec: StudySpec) -> None:
    """Raise IngestError naming how many cell ids of a study occur more than once, and a few:
    the atlas finds a cell by its study and id, so two cells of one id would be one cell to
    every lookup, export and link."""
    ids = pd.Index(cell_ids.astype(str))
    if ids.is_unique:
        return
    counts = ids.value_counts()
    dups = counts[counts > 1]
    examples = ", ".join(f"'{i}' x{n}" for i, n in dups.head(3).items())
    raise IngestError(
        f"{_where(spec)}: {len(dups):,} cell id(s) occur more than once in obs ({int(dups.sum()):,} cells; e.g. {examples}): "
        "every cell needs its own id. Make them unique in the file (e.g. adata.obs_names_make_unique(), or prefix "
        "each sample's barcodes with the sample) and re-run."
    )


def study_report_before_qc(genes, value_report: dict, vocabulary: dict, n_genes: int, metadata: dict | None = None) -> dict:
    """The ingest report of a study read (its qc section None until QC)."""
    warnings = list(genes.warnings)
    for skipped in (metadata or {}).get("skipped", ()):
        warnings.append(f"obs column '{skipped['column']}' not carried as donor or sample metadata ({skipped['why']}); "
                        "name it under columns.metadata to carry it per cell.")
    value_report = dict(value_report)
    if "warning" in value_report:
        warnings.append(value_report.pop("warning") + ".")
    return {
        "values": value_report,
        "species": genes.species,
        "symbols": genes.symbols,
        "qc": None,
        "n_genes_measured": int(n_genes),
        "vocabulary": vocabulary,
        "metadata": metadata,
        "warnings": warnings,
    }

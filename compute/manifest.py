"""The data manifest (``data_manifest.yaml``, version 1), parsed in one place.

``load_manifest(path)`` returns a frozen :class:`Manifest`. Unknown keys, missing keys
and values of the wrong type raise :class:`~compute.errors.ManifestError` naming the
file, the study (when inside one) and the key. Paths in the manifest are relative to
the manifest's own folder and are resolved here, once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compute.errors import ManifestError

__all__ = [
    "AtlasSpec",
    "AttributionSpec",
    "CENSUS_FILTER_KEYS",
    "CensusSource",
    "EMBEDDING_GENES",
    "EmbeddingSpec",
    "FieldSpec",
    "IngestSpec",
    "Manifest",
    "ModelSpec",
    "ORGANISMS",
    "SourceSpec",
    "StudySpec",
    "VALUE_KINDS",
    "load_manifest",
    "parse_manifest",
]

MANIFEST_VERSION = 1
_STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SOURCE_KINDS = ("h5ad", "scanpy-pbmc68k", "census")
# source.filter of a census entry: CELLxGENE Census obs columns; a value that is an ontology term id
# (MONDO:0100096) selects on the column's *_ontology_term_id twin (compute.census)
CENSUS_FILTER_KEYS = ("assay", "cell_type", "dataset_id", "development_stage", "disease", "donor_id",
                      "self_reported_ethnicity", "sex", "suspension_type", "tissue", "tissue_general")
# Census releases that move: an atlas must name the one it was built from
_MOVING_CENSUS_VERSIONS = ("stable", "latest")
# what a study's matrix holds (source.values); compute.ingest turns each into pseudo-counts
VALUE_KINDS = ("counts", "tpm", "fpkm", "lognorm")
# a study's species; the gene order is always human HGNC symbols (mouse joins through orthologs)
ORGANISMS = ("human", "mouse")
MODEL_KINDS = ("train", "pretrained")
# "ig" (fast exact) or "ig-captum" (the generic path, same numbers, ~20x slower). DeepLift and
# Input x Gradient vanish on an L2-normalised encoder (compute/attribution): not for atlases.
ATTRIBUTION_METHODS = ("ig", "ig-captum")
EMBEDDING_GENES = ("auto", "shared", "all")


@dataclass(frozen=True)
class AtlasSpec:
    name: str
    out: Path


@dataclass(frozen=True)
class ModelSpec:
    """How to obtain the encoder: train one on the ingested cells, or load a directory."""

    kind: str = "train"
    path: Path | None = None
    hidden_sizes: tuple[int, ...] = (1024, 1024)
    latent_dim: int = 128
    input_dropout: float = 0.4
    dropout: float = 0.5
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-3
    # Departs from SCimilarity's 0.001 (method.md 2): at 0.001 the triplet term is negligible and
    # reconstruction keeps every study on its own island. Measured on the demo (25 studies, 12
    # epochs, 1 thread; issue 15): cross-study same-type share of the 15 nearest neighbours 0.015
    # at 0.001, 0.07 at 0.01, 0.34 at 0.03, 0.79 at 0.1 (perfect mixing 0.94), purity 0.87 -> 0.99;
    # eval reconstruction MSE 0.305 -> 0.339, about what the cell-type means alone give (0.342):
    # what is lost is the study's own capture, not cell identity. Checked on the validation
    # corpora: 0.65 of perfect at batch sd 0.5, 0.85 at the base; at batch sd 1.0 studies stay
    # apart even at 0.2. The margin (0.05 vs 0.2 or 0.3) changed nothing measurable.
    triplet_weight: float = 0.1
    margin: float = 0.05
    # chance that a training cell is shown on another study's gene panel (the genes outside it
    # zeroed and the cell normalised again over the panel's genes, as ingest normalises a study
    # measured on that panel: compute.model.panel_input; reconstruction still targets the cell as
    # measured), so the encoder learns to embed and attribute a cell alike whatever its panel
    panel_dropout: float = 0.0
    # with panel dropout: weight of a term that pulls a cell's embedding on the other panel to its
    # embedding as measured (squared distance, the measured one held fixed). Reconstruction alone
    # left the same cells on two panels apart: 0.00 of perfect mixing (issue 34, item 5)
    panel_consistency: float = 0.0


@dataclass(frozen=True)
class IngestSpec:
    """Quality control and gene alignment applied to every study."""

    min_genes: int = 200
    min_counts: int = 500
    min_gene_overlap: int = 500


@dataclass(frozen=True)
class AttributionSpec:
    method: str = "ig"
    n_steps: int = 50
    batch_size: int = 256


@dataclass(frozen=True)
class EmbeddingSpec:
    n_neighbors: int = 15
    min_dist: float = 0.3
    # UMAP for large atlases: fit on at most this many cells (drawn evenly from every study,
    # seeded) and transform the rest; every cell is in the fit below it
    fit_cells: int = 100_000
    # false: no UMAP at all (faster builds; the dashboard's cells view then says the atlas has none)
    umap: bool = True
    # which genes the stored embedding (UMAP, label transfer, the Cells explorer) reads:
    # "shared", only the genes every study measured (each cell normalised again over them, as a
    # study measuring just those genes would be), so the same cells on two panels get one
    # embedding; "all", every gene the cell's study measured (method.md 3's e = f(x)); "auto",
    # shared when studies' panels differ and they share at least min_shared_genes genes, else all.
    # Attributions always read every gene the study measured.
    genes: str = "auto"
    min_shared_genes: int = 500


@dataclass(frozen=True)
class CensusSource:
    """A census entry's cells: those of the pinned Census ``version`` (read from ``uri`` when given:
    an offline mirror or a test fixture) that pass ``filter`` (column -> accepted values) and, with
    ``primary_only``, are not duplicates of cells in another dataset; at most
    ``max_cells_per_cell_type`` of each cell type and ``max_cells_per_dataset`` per dataset (seeded
    stratified draws, compute.census), datasets with fewer than ``min_cells_per_dataset`` matching
    cells left out, at most ``max_datasets`` (the largest). ``dataset_id`` and ``selection`` are set
    when compute.census expands the entry into one study per dataset, never in the manifest."""

    version: str
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()
    uri: str | None = None
    primary_only: bool = True
    max_cells_per_dataset: int = 5000
    max_cells_per_cell_type: int | None = None
    min_cells_per_dataset: int = 50
    max_datasets: int | None = None
    dataset_id: str | None = None
    selection: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """Where a study's cells come from and what its matrix holds: ``values`` is one of
    :data:`VALUE_KINDS` (raw counts, TPM, FPKM or log-normalised values); ``census`` the Census
    selection of a ``census`` source."""

    kind: str
    path: Path | None = None
    values: str = "counts"
    census: CensusSource | None = None


@dataclass(frozen=True)
class FieldSpec:
    """A per-cell annotation: a constant ``value`` for the whole study, or an obs ``column``.

    Both None means "look for the CELLxGENE-schema column at ingest".
    """

    value: str | None = None
    column: str | None = None


@dataclass(frozen=True)
class StudySpec:
    id: str
    title: str
    source: SourceSpec
    organism: str = "human"
    tissue: FieldSpec = field(default_factory=FieldSpec)
    disease: FieldSpec = field(default_factory=FieldSpec)
    cell_type: str | None = None
    sample: str | None = None
    donor: str | None = None
    simulated: bool = False
    # columns.<kind>_map: original label -> ontology term id or exact term label (None: leave
    # the label unmapped on purpose); applied before automatic matching (compute.vocabulary)
    cell_type_map: tuple[tuple[str, str | None], ...] = ()
    disease_map: tuple[tuple[str, str | None], ...] = ()
    tissue_map: tuple[tuple[str, str | None], ...] = ()
    # columns.accept_proposals: the kinds (cell_type, disease, tissue) whose unmatched labels take
    # the label reader's proposal (shown first by `python -m compute labels`); never by default
    accept_proposals: tuple[str, ...] = ()
    # columns.metadata: donor or sample metadata to carry into the atlas's cells table beside the
    # CELLxGENE-schema columns ingest carries by itself (compute.ingest.METADATA_COLUMNS): (name in
    # the atlas, obs column) pairs; a list in the manifest keeps each column's own name
    metadata: tuple[tuple[str, str], ...] = ()

    def label_map(self, kind: str) -> dict[str, str | None]:
        """The manifest's map for annotation ``kind`` (cell_type, disease, tissue) as a dict."""
        return dict(getattr(self, f"{kind}_map"))


@dataclass(frozen=True)
class Manifest:
    path: Path
    version: int
    atlas: AtlasSpec
    seed: int
    model: ModelSpec
    ingest: IngestSpec
    attribution: AttributionSpec
    embedding: EmbeddingSpec
    studies: tuple[StudySpec, ...]

    def study(self, study_id: str) -> StudySpec:
        for s in self.studies:
            if s.id == study_id:
                return s
        raise KeyError(study_id)

    def fingerprint(self) -> str:
        """A hash of everything that determines the build (paths as written, not mtimes)."""
        payload = asdict(self)
        payload.pop("path")
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _Where:
    """Formats 'file: study X: key' prefixes for error messages."""

    def __init__(self, file: Path, study: str | None = None):
        self.file, self.study = file, study

    def error(self, key: str, problem: str) -> ManifestError:
        where = f"{self.file}"
        if self.study is not None:
            where += f": study '{self.study}'"
        shown = key if key.isprintable() else key.encode("unicode_escape").decode("ascii")  # a key "\n" shows as \n
        return ManifestError(f"{where}: key '{shown}': {problem}")


def _check_keys(d: Any, allowed: set[str], required: set[str], where: _Where, ctx: str) -> dict:
    if not isinstance(d, dict):
        raise where.error(ctx, f"expected a mapping, got {type(d).__name__} ({d!r})")
    for k in d:
        if k not in allowed:
            raise where.error(
                f"{ctx}.{k}" if ctx else str(k),
                f"unknown key (allowed here: {', '.join(sorted(allowed))})",
            )
    for k in required:
        if k not in d:
            raise where.error(f"{ctx}.{k}" if ctx else k, "missing (required)")
    return d


def _typed(value: Any, kind: type | tuple[type, ...], key: str, where: _Where) -> Any:
    # bool is an int in Python; never accept it where a number is meant
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise where.error(key, f"expected {_kind_name(kind)}, got a boolean ({value!r})")
    if not isinstance(value, kind):
        raise where.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__} ({value!r})")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _path(base: Path, value: Any, key: str, where: _Where) -> Path:
    """``value`` (a path relative to the manifest's folder) as an absolute path."""
    text = _typed(value, str, key, where)
    if not text or "\x00" in text:
        raise where.error(key, f"{text!r} is not a path")
    # absolute and normalised, but links kept: an atlas path is a link to its served version
    return Path(os.path.abspath(base / text))


def _positive_int(value: Any, key: str, where: _Where, minimum: int = 1) -> int:
    _typed(value, int, key, where)
    if value < minimum:
        raise where.error(key, f"must be >= {minimum}, got {value}")
    return value


def _finite(value: Any, key: str, where: _Where) -> float:
    v = float(_typed(value, (int, float), key, where))
    if not math.isfinite(v):
        raise where.error(key, f"must be a finite number, got {v}")
    return v


def _fraction(value: Any, key: str, where: _Where) -> float:
    _typed(value, (int, float), key, where)
    if not 0 <= value < 1:
        raise where.error(key, f"must be in [0, 1), got {value}")
    return float(value)


def _parse_model(d: Any, base: Path, where: _Where) -> ModelSpec:
    allowed = {f for f in ModelSpec.__dataclass_fields__}
    d = _check_keys(d, allowed, {"kind"}, where, "model")
    kind = _typed(d["kind"], str, "model.kind", where)
    if kind not in MODEL_KINDS:
        raise where.error("model.kind", f"must be one of {', '.join(MODEL_KINDS)}, got '{kind}'")
    kw: dict[str, Any] = {"kind": kind}
    if kind == "pretrained":
        if "path" not in d:
            raise where.error("model.path", "missing (required when model.kind is 'pretrained')")
        kw["path"] = _path(base, d["path"], "model.path", where)
        extra = set(d) - {"kind", "path"}
        if extra:
            raise where.error(
                f"model.{sorted(extra)[0]}",
                "only 'path' may be given with a pretrained model (its shape comes from layer_sizes.json)",
            )
        return ModelSpec(**kw)
    if "path" in d:
        raise where.error("model.path", "only meaningful with model.kind 'pretrained'")
    if "hidden_sizes" in d:
        hs = _typed(d["hidden_sizes"], list, "model.hidden_sizes", where)
        if not hs:
            raise where.error("model.hidden_sizes", "needs at least one hidden layer")
        kw["hidden_sizes"] = tuple(_positive_int(h, "model.hidden_sizes", where) for h in hs)
    for key in ("latent_dim", "epochs", "batch_size"):
        if key in d:
            kw[key] = _positive_int(d[key], f"model.{key}", where, minimum=2 if key == "batch_size" else 1)
    for key in ("input_dropout", "dropout", "triplet_weight", "panel_dropout"):
        if key in d:
            kw[key] = _fraction(d[key], f"model.{key}", where)
    if "panel_consistency" in d:
        v = _finite(d["panel_consistency"], "model.panel_consistency", where)
        if v < 0:
            raise where.error("model.panel_consistency", f"must be >= 0, got {v}")
        kw["panel_consistency"] = v
    for key in ("learning_rate", "margin"):
        if key in d:
            v = _finite(d[key], f"model.{key}", where)
            if v <= 0:
                raise where.error(f"model.{key}", f"must be > 0, got {v}")
            kw[key] = v
    return ModelSpec(**kw)


def _parse_simple(cls, d: Any, ctx: str, where: _Where):
    allowed = set(cls.__dataclass_fields__)
    d = _check_keys(d, allowed, set(), where, ctx)
    defaults = cls()
    kw = {}
    for key, value in d.items():
        default = getattr(defaults, key)
        key_name = f"{ctx}.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise where.error(key_name, f"expected true or false, got {value!r}")
            kw[key] = value
        elif isinstance(default, int):
            kw[key] = _positive_int(value, key_name, where, minimum=0)
        elif isinstance(default, float):
            kw[key] = _finite(value, key_name, where)
        else:
            kw[key] = _typed(value, str, key_name, where)
    out = cls(**kw)
    if isinstance(out, AttributionSpec) and out.method not in ATTRIBUTION_METHODS:
        raise where.error(f"{ctx}.method", f"must be one of {', '.join(ATTRIBUTION_METHODS)}, got '{out.method}'")
    if isinstance(out, EmbeddingSpec) and out.genes not in EMBEDDING_GENES:
        raise where.error(f"{ctx}.genes", f"must be one of {', '.join(EMBEDDING_GENES)}, got '{out.genes}'")
    return out


def _parse_field(value: Any, key: str, where: _Where) -> FieldSpec:
    if value is None:
        return FieldSpec()
    if isinstance(value, str):
        return FieldSpec(value=value)
    if isinstance(value, dict):
        _check_keys(value, {"column"}, {"column"}, where, key)
        return FieldSpec(column=_typed(value["column"], str, f"{key}.column", where))
    raise where.error(key, f"expected a constant string or {{column: NAME}}, got {value!r}")


def _parse_study(d: Any, base: Path, file: Path, index: int) -> StudySpec:
    if not isinstance(d, dict):
        raise _Where(file).error("studies", f"entry {index + 1} must be a mapping with id and source, got {type(d).__name__} ({d!r})")
    sid = d.get("id")
    where = _Where(file, str(sid) if sid is not None else f"#{index + 1}")
    allowed = {"id", "title", "source", "organism", "tissue", "disease", "columns", "simulated"}
    d = _check_keys(d, allowed, {"id", "source"}, where, "")
    sid = _typed(d["id"], str, "id", where)
    if not _STUDY_ID.fullmatch(sid):  # match() would let a trailing newline through
        raise where.error("id", f"'{sid}' may only contain letters, digits, '_', '.', '-'")
    if isinstance(d["source"], dict) and d["source"].get("kind") == "census":
        return _parse_census_study(d, sid, base, where)
    src = _check_keys(d["source"], {"kind", "path", "values"}, {"kind"}, where, "source")
    kind = _typed(src["kind"], str, "source.kind", where)
    if kind not in SOURCE_KINDS:
        raise where.error("source.kind", f"must be one of {', '.join(SOURCE_KINDS)}, got '{kind}'")
    path = None
    if kind == "h5ad":
        if "path" not in src:
            raise where.error("source.path", "missing (required for source.kind 'h5ad')")
        path = _path(base, src["path"], "source.path", where)
    elif "path" in src:
        raise where.error("source.path", f"not used with source.kind '{kind}'")
    values = _typed(src.get("values", "counts"), str, "source.values", where)
    if values not in VALUE_KINDS:
        raise where.error(
            "source.values",
            f"must be one of {', '.join(VALUE_KINDS)} (what the matrix holds: raw counts, TPM, FPKM, or "
            f"log1p of per-cell normalised values), got '{values}'",
        )
    if kind == "scanpy-pbmc68k" and values != "counts":
        raise where.error("source.values", f"source.kind 'scanpy-pbmc68k' provides counts; remove the key (got '{values}')")
    organism = _typed(d.get("organism", "human"), str, "organism", where)
    if organism not in ORGANISMS:
        raise where.error(
            "organism",
            f"must be one of {', '.join(ORGANISMS)} (mouse genes are mapped to human orthologs), got '{organism}'",
        )
    cols = d.get("columns")
    cols = {} if cols is None else cols  # "columns:" left empty; [] or 0 is an error below
    cols = _check_keys(cols, {"cell_type", "sample", "donor", "accept_proposals", "metadata", *LABEL_MAPS}, set(), where, "columns")
    for k, v in cols.items():
        if v is not None and k not in LABEL_MAPS and k not in ("accept_proposals", "metadata"):
            _typed(v, str, f"columns.{k}", where)
    accept = _parse_accept_proposals(cols.get("accept_proposals"), where)
    metadata = _parse_metadata(cols.get("metadata"), where)
    maps = {k: _parse_label_map(cols.get(k), base, f"columns.{k}", where) for k in LABEL_MAPS}
    simulated = _typed(d.get("simulated", False), bool, "simulated", where)
    return StudySpec(
        id=sid,
        title=_typed(d.get("title", sid), str, "title", where),
        source=SourceSpec(kind=kind, path=path, values=values),
        organism=organism,
        tissue=_parse_field(d.get("tissue"), "tissue", where),
        disease=_parse_field(d.get("disease"), "disease", where),
        cell_type=cols.get("cell_type"),
        sample=cols.get("sample"),
        donor=cols.get("donor"),
        simulated=simulated,
        accept_proposals=accept,
        metadata=metadata,
        **maps,
    )


LABEL_MAPS = ("cell_type_map", "disease_map", "tissue_map")
_PROPOSAL_KINDS = ("cell_type", "disease", "tissue")


def _parse_accept_proposals(value: Any, where: _Where) -> tuple[str, ...]:
    """columns.accept_proposals: true (every kind), false/absent (none) or a list of kinds."""
    key = "columns.accept_proposals"
    if value is None or value is False:
        return ()
    if value is True:
        return _PROPOSAL_KINDS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error(key, f"expected true, false or a list of {', '.join(_PROPOSAL_KINDS)}, got {value!r}")
    bad = [v for v in value if v not in _PROPOSAL_KINDS]
    if bad:
        raise where.error(key, f"unknown kind {bad[0]!r} (allowed: {', '.join(_PROPOSAL_KINDS)})")
    return tuple(dict.fromkeys(value))


# a metadata column's name in the atlas: a cells-table column, a URL value and a CSV header alike
_METADATA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _parse_metadata(value: Any, where: _Where) -> tuple[tuple[str, str], ...]:
    """columns.metadata: a list of obs columns (each kept under its own name) or a mapping
    {name in the atlas: obs column} (to give one name to what studies call sex, gender, ...)."""
    key = "columns.metadata"
    if value is None:
        return ()
    if isinstance(value, list):
        for v in value:
            if not isinstance(v, str) or not v:
                raise where.error(key, f"expected obs column names, got {v!r}")
        pairs = [(v, v) for v in value]
    elif isinstance(value, dict):
        pairs = []
        for name, column in value.items():
            if not isinstance(column, str) or not column:
                raise where.error(f"{key}.{name}", f"expected the obs column to read, got {column!r}")
            pairs.append((str(name), column))
    else:
        raise where.error(key, f"expected a list of obs columns or a mapping {{name: obs column}}, got {value!r}")
    seen: set[str] = set()
    for name, _ in pairs:
        if not _METADATA_NAME.fullmatch(name):
            raise where.error(key, f"'{name}' cannot name a column of the atlas: use letters, digits and '_', starting "
                                   "with a letter (give {name: obs column} to carry a column under another name)")
        if name in seen:
            raise where.error(key, f"'{name}' is named twice")
        seen.add(name)
    return tuple(pairs)


_CENSUS_KEYS = ("kind", "version", "uri", "filter", "primary_only", "max_cells_per_dataset", "max_cells_per_cell_type",
                "min_cells_per_dataset", "max_datasets")


def _parse_census_study(d: dict, sid: str, base: Path, where: _Where) -> StudySpec:
    """A ``source.kind: census`` entry: one study per Census dataset its filter selects (expanded by
    compute.census at plan and build time). The Census's own cell_type, disease, tissue and donor_id
    columns and their ontology term ids are used, so the per-study annotation keys are refused."""
    for key in ("tissue", "disease", "columns", "simulated"):
        if key in d:
            raise where.error(key, "not used with source.kind 'census': the Census's own cell_type, disease, tissue "
                                   "and donor_id columns (with their ontology term ids) are used; remove the key")
    src = _check_keys(d["source"], set(_CENSUS_KEYS), {"kind", "version", "filter"}, where, "source")
    version = _typed(src["version"], str, "source.version", where)
    if version.strip().lower() in _MOVING_CENSUS_VERSIONS or not version.strip() or not version.isprintable():
        raise where.error("source.version", f"pin a Census release (for example 2025-01-30), got {version!r}: "
                                            "'stable' and 'latest' move, and an atlas must name the cells it was built from")
    uri = None
    if src.get("uri") is not None:
        text = _typed(src["uri"], str, "source.uri", where)
        # an object-store or file:// URI as given; anything else is a folder relative to the manifest
        uri = text if "://" in text else str(_path(base, text, "source.uri", where))
    filt = _check_keys(src["filter"], set(CENSUS_FILTER_KEYS), set(), where, "source.filter")
    if not filt:
        # the whole Census is tens of millions of cells: planning alone would read all of their metadata
        raise where.error("source.filter", "is empty: name at least one column to select on (for example "
                                           "tissue_general: blood)")
    pairs = []
    for key, value in filt.items():
        values = [value] if isinstance(value, str) else _typed(value, list, f"source.filter.{key}", where)
        if not values:
            raise where.error(f"source.filter.{key}", "the list is empty: name at least one value, or remove the key")
        for v in values:
            _typed(v, str, f"source.filter.{key}", where)
            if not v or not v.isprintable():
                raise where.error(f"source.filter.{key}", f"{v!r} is not a value a Census column holds")
        pairs.append((key, tuple(sorted(set(values)))))
    kw: dict[str, Any] = {}
    if "primary_only" in src:
        kw["primary_only"] = _typed(src["primary_only"], bool, "source.primary_only", where)
    for key in ("max_cells_per_dataset", "min_cells_per_dataset", "max_cells_per_cell_type", "max_datasets"):
        if src.get(key) is not None:
            kw[key] = _positive_int(src[key], f"source.{key}", where)
        elif key in src and key in ("max_cells_per_dataset", "min_cells_per_dataset"):
            raise where.error(f"source.{key}", "expected an integer >= 1, got null")
    organism = _typed(d.get("organism", "human"), str, "organism", where)
    if organism not in ORGANISMS:
        raise where.error("organism", f"must be one of {', '.join(ORGANISMS)} (the Census experiment: homo_sapiens or "
                                      f"mus_musculus), got '{organism}'")
    census = CensusSource(version=version.strip(), filter=tuple(sorted(pairs)), uri=uri, **kw)
    return StudySpec(id=sid, title=_typed(d.get("title", sid), str, "title", where),
                     source=SourceSpec(kind="census", census=census), organism=organism)


def _parse_label_map(value: Any, base: Path, key: str, where: _Where) -> tuple[tuple[str, str | None], ...]:
    """A label map given inline ({label: term}) or as a file (.yaml/.yml/.json: a mapping;
    .csv/.tsv: columns ``label`` and ``term``), relative to the manifest's folder."""
    if value is None:
        return ()
    if isinstance(value, str):
        path = _path(base, value, key, where)
        if not path.is_file():
            raise where.error(key, f"map file {path} not found")
        try:
            if path.suffix.lower() in (".csv", ".tsv"):
                import pandas as pd

                table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
                if not {"label", "term"} <= set(table.columns):
                    raise where.error(key, f"{path}: needs columns 'label' and 'term', has {', '.join(table.columns)}")
                value = {r.label: (r.term or None) for r in table.itertuples()}
            elif path.suffix.lower() in (".yaml", ".yml", ".json"):
                value = yaml.safe_load(path.read_text())
            else:
                raise where.error(key, f"{path}: use a .yaml, .yml, .json, .csv or .tsv file")
        except ManifestError:
            raise
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise where.error(key, f"cannot read map file {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise where.error(key, f"expected a mapping of label -> ontology term (id or label), or a file name, got {value!r}")
    out = []
    for label, term in value.items():
        if term is not None and not isinstance(term, str):
            raise where.error(f"{key}.{label}", f"expected a term id (for example CL:0000860) or label, got {term!r}")
        out.append((str(label), term))
    return tuple(sorted(out, key=lambda kv: kv[0]))


def parse_manifest(data: Any, file: Path) -> Manifest:
    """Validate an already-loaded YAML document; ``file`` is used for paths and messages."""
    file = Path(file)
    base = file.resolve().parent
    where = _Where(file)
    allowed = {"version", "atlas", "seed", "model", "ingest", "attribution", "embedding", "studies"}
    data = _check_keys(data, allowed, {"version", "atlas", "studies"}, where, "")
    version = _typed(data["version"], int, "version", where)
    if version != MANIFEST_VERSION:
        raise where.error("version", f"this SigAtlas reads manifest version {MANIFEST_VERSION}, got {version}")
    atlas = _check_keys(data["atlas"], {"name", "out"}, {"name", "out"}, where, "atlas")
    atlas_spec = AtlasSpec(
        name=_typed(atlas["name"], str, "atlas.name", where),
        out=_path(base, atlas["out"], "atlas.out", where),
    )
    seed = _positive_int(data.get("seed", 0), "seed", where, minimum=0)
    model = _parse_model(data.get("model", {"kind": "train"}), base, where)
    ingest = _parse_simple(IngestSpec, data.get("ingest", {}), "ingest", where)
    attribution = _parse_simple(AttributionSpec, data.get("attribution", {}), "attribution", where)
    if attribution.n_steps < 1 or attribution.batch_size < 1:
        raise where.error("attribution", "n_steps and batch_size must be >= 1")
    embedding = _parse_simple(EmbeddingSpec, data.get("embedding", {}), "embedding", where)
    studies_raw = _typed(data["studies"], list, "studies", where)
    if not studies_raw:
        raise where.error("studies", "the list is empty: name at least one study")
    studies = tuple(_parse_study(s, base, file, i) for i, s in enumerate(studies_raw))
    seen: set[str] = set()
    for s in studies:
        if s.id in seen:
            raise _Where(file, s.id).error("id", "appears more than once in 'studies'")
        seen.add(s.id)
    return Manifest(
        path=file.resolve(),
        version=version,
        atlas=atlas_spec,
        seed=seed,
        model=model,
        ingest=ingest,
        attribution=attribution,
        embedding=embedding,
        studies=studies,
    )


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``path``; raises ManifestError with file, study and key."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file (see README, 'The manifest')")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from exc
    return parse_manifest(data, path)

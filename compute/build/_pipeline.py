"""The build: manifest -> ingest -> encoder -> attributions -> embedding/UMAP -> atlas.

The per-study stages (ingest, training data, attributions and embedding, UMAP transform,
writing) run as Dask tasks (``compute.build._tasks``): on a LocalCluster by default, or on the
cluster whose scheduler address is given (the work folder and the atlas must then be on a file
system every worker sees). Training the encoder is one step, in this process or on
``train_workers`` processes (torch.distributed, data parallel; GPU when present), reading each
study's cells a batch at a time from the pieces the training-data tasks wrote (never the whole
corpus in memory), checkpointed in the work folder and resumed after a crash.

Each stage's output is kept in a work folder beside the atlas (``.<name>.work``), keyed by a
hash of its inputs (source file contents, manifest settings, seed, upstream keys), so
re-running with an unchanged manifest reuses finished work, and changing one study redoes
only what depends on it. Every file (work folder and atlas) is written to a temporary name and
renamed into place, and the atlas root is written last: a build killed at any moment leaves an
atlas that reports itself incomplete, and re-running it finishes the job from what was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from compute.atlas import (
    FORMAT_VERSION,
    ROOT_FILE,
    begin_atlas,
    embedding_genes_text,
    integration_line,
    measured_shares,
    publish_version,
    read_study_panel,
    stage_version,
    write_predictions,
    write_root,
    write_vocabulary,
)
from compute.build import _tasks as tasks
from compute.build._calibration import calibrate_panels
from compute.build._modules import store_gene_modules
from compute.errors import IngestError, ManifestError, SigAtlasError, StorageError
from compute.files import atomic_write, copy_tree_atomic, file_record, file_sha256, write_json_atomic
from compute.manifest import EmbeddingSpec, Manifest, StudySpec
from compute.process import peak_rss

__all__ = ["PIPELINE_VERSION", "StudyFailures", "build_atlas", "dask_client", "work_dir"]

# a failed study's traceback goes here (shown by `python -m compute build --verbose`)
log_exc = logging.getLogger("sigatlas.build")

# Bump when training gives other weights for the same inputs (2: streamed balanced batches, data
# parallel forward; 3: a mixture term such as PBMC is no triplet negative of its lineage's types;
# 4: panel dropout normalises a cell again over the other panel's genes, as ingest does):
# invalidates the trained encoder and what depends on it, not ingest.
TRAINING_VERSION = "4"
# Bump when a stage's output for the same inputs changes: invalidates every cached stage.
PIPELINE_VERSION = "5"  # 2: values kinds, symbol harmonisation, species, ingest report; 3: ontology terms; 4: the label reader;
# 5: donor or sample metadata (sex, age, columns.metadata) carried in the cells table
# What the final write puts in the atlas; bumping it rewrites existing atlases from the cached
# stages (2: the expression store was added).
ATLAS_CONTENT_VERSION = "9"  # 3: file checksums in the root; 4: measured genes, gene means, ingest report;
# 5: vocabulary.json and the label transfer; 6: predictions in one atlas-level file;
# 7: gene modules precomputed and stored (gene_modules/); 8: partial panels calibrated gene by gene
# (studies/<id>/gene_scale.npy, compute.build._calibration); 9: each entry's metadata_columns


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _file_sha(path: Path) -> str:

    return file_sha256(path)


def _source_key(spec: StudySpec) -> str:
    if spec.source.kind == "scanpy-pbmc68k":

        return f"scanpy-pbmc68k:{version('scanpy')}"
    if spec.source.kind == "census":  # a pinned release's cells do not change: no need to hash the file
        from compute.census import source_key

        return source_key(spec)
    if spec.source.path is None or not spec.source.path.is_file():
        raise IngestError(
            f"study '{spec.id}' ({spec.source.path}): file not found. For the demo data run "
            "`python -m compute simulate`; otherwise fix 'source.path' (relative to the manifest)."
        )
    return _file_sha(spec.source.path)


def _study_meta(spec: StudySpec) -> dict:
    """What the atlas entry of a study says about it besides its cells (a census study: its release
    and dataset, compute.census.study_provenance)."""
    meta = {"id": spec.id, "title": spec.title, "simulated": spec.simulated, "organism": spec.organism,
            "source": spec.source.kind}
    if spec.source.kind == "census":
        from compute.census import study_provenance

        meta["census"] = study_provenance(spec)
    return meta


def work_dir(manifest: Manifest) -> Path:
    out = manifest.atlas.out
    return out.parent / f".{out.name}.work"


def _study_dict(spec: StudySpec) -> dict:
    d = asdict(spec)
    d["source"]["path"] = str(spec.source.path) if spec.source.path else None
    return d


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        # this process's peak resident memory by the end of each stage (cumulative): shows which
        # stage of the build process grows with the corpus (the build benchmark prints it)
        self.peaks: dict[str, int] = {}

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            tqdm.write(msg)

    def stage(self, name: str, t0: float) -> None:

        self.timings[name] = round(time.perf_counter() - t0, 2)
        self.peaks[name] = peak_rss()
        self(f"  {name}: {self.timings[name]:.1f} s")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, verbose: bool = False):
    """A Dask client for the build: ``None``/"local" starts a LocalCluster (``workers`` processes,
    one thread each; default: the CPU count up to 4), "sync" runs every task in this process
    (no Dask), anything else is a scheduler address (``tcp://host:port``)."""
    if scheduler == "sync":
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler in (None, "local"):
        n = workers or max(1, min(os.cpu_count() or 1, 4))
        # the status page on loopback only: on ":0" it listened on every interface, without authentication
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                          silence_logs=logging.ERROR if verbose else logging.CRITICAL) as cluster, Client(cluster) as client:
            yield client
    else:
        with Client(scheduler) as client:
            yield client


class StudyFailures(SigAtlasError):
    """One or more studies failed in a build stage; ``failures`` maps study id -> exception."""

    def __init__(self, stage: str, failures: dict[str, BaseException], not_run: list[str] | None = None):
        self.stage, self.failures, self.not_run = stage, failures, list(not_run or [])
        lines = [f"{len(failures)} of the manifest's studies failed at {stage}:"]
        lines += [f"  {sid}: {_one_line(exc)}" for sid, exc in failures.items()]
        if self.not_run:
            lines.append(f"  not finished (the stage stopped at the write error above): {', '.join(self.not_run)}")
        if any(isinstance(exc, StorageError) for exc in failures.values()):
            lines.append("Make room where the write failed (or set atlas.out to a folder with room) and re-run the build; "
                         "finished work is kept. --verbose shows the tracebacks.")
        else:
            lines.append("Fix the studies named above (or remove them from the manifest) and re-run the build; "
                         "finished work is kept. --verbose shows the tracebacks.")
        super().__init__("\n".join(lines))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, SigAtlasError) else f"{type(exc).__name__}: {text}"


def _run(client, fn, calls: list[tuple], *, desc: str, quiet: bool, names: list[str] | None = None) -> list:
    """``fn(*args)`` for every args in ``calls`` (on the cluster when there is one), in order.

    Every call runs even when some fail; then :class:`StudyFailures` names each failed one
    (``names[i]``: the study of ``calls[i]``), so a manifest with three broken studies says so
    once, not one study per run. A StorageError (disk full, read-only, no permission) stops the
    stage instead: every other study would meet the same disk, and HDF5 writes that meet a full
    disk one after another can crash the process rather than fail."""
    if not calls:
        return []
    names = names or [str(i) for i in range(len(calls))]
    bar = tqdm(total=len(calls), desc=desc, unit="study", disable=quiet)
    failures: dict[str, BaseException] = {}
    out: list = [None] * len(calls)
    done: set[int] = set()
    try:
        if client is None:
            for i, args in enumerate(calls):
                try:
                    out[i] = fn(*args)
                except Exception as exc:  # collected and reported together below
                    failures[names[i]] = exc
                done.add(i)
                bar.update()
                if isinstance(failures.get(names[i]), StorageError):
                    break
        else:
            from distributed import as_completed

            futures = [client.submit(fn, *args, pure=False) for args in calls]
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                i = index[fut.key]
                if fut.status == "error":
                    failures[names[i]] = fut.exception()
                elif fut.status == "finished":
                    out[i] = fut.result()
                else:  # cancelled below
                    continue
                done.add(i)
                bar.update()
                if isinstance(failures.get(names[i]), StorageError):
                    client.cancel([f for j, f in enumerate(futures) if j not in done])
                    break
    finally:
        bar.close()
    if failures:
        ordered = {n: failures[n] for n in names if n in failures}
        for sid, exc in ordered.items():
            log_exc.debug("study %s failed at %s", sid, desc, exc_info=(type(exc), exc, exc.__traceback__))
        raise StudyFailures(desc, ordered, [names[i] for i in range(len(calls)) if i not in done])
    return out


@dataclass
class _Build:
    """One build: its settings and what its stages have made so far. Each stage reads the fields
    the stages before it set and sets its own (named in its docstring); ``build_atlas`` runs them
    in order."""

    manifest: Manifest
    force: bool
    rewrite: bool
    quiet: bool
    scheduler: str | None
    train_workers: int
    checkpoint_every: int | None
    log: _Log
    out: Path
    work: Path
    t_start: float
    # training results depend on the thread count: set it explicitly ($SIGATLAS_THREADS, default
    # the CPU count), not from OMP_NUM_THREADS, which a Dask cluster sets to 1 in this process
    # for its workers; an interrupted and resumed build then trains exactly as an uninterrupted one
    train_threads: int = field(default_factory=lambda: int(os.environ.get("SIGATLAS_THREADS") or os.cpu_count() or 1))
    client: Any = None
    peaks: list[dict] = field(default_factory=list)  # every task's peak memory, by stage (the build benchmark's)
    source_keys: dict[str, str] = field(default_factory=dict)
    build_key: str = ""
    ingested: list[dict] = field(default_factory=list)
    ingest_keys: dict[str, str] = field(default_factory=dict)
    ingest_files: dict[str, str] = field(default_factory=dict)
    n_obs: dict[str, int] = field(default_factory=dict)
    pretrained: Any = None
    gene_order: list[str] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)
    embed_genes: dict = field(default_factory=dict)  # embedding_genes(): which genes the stored embedding reads
    warnings: list[str] = field(default_factory=list)
    encoder: Any = None
    model_dir: Path | None = None
    model_key: str = ""
    model_card: dict = field(default_factory=dict)
    pieces: list[str] | None = None  # each study's aligned cells on disk (training reads them; so do the cells and write stages)
    piece_of: dict[str, str] = field(default_factory=dict)
    attr_files: dict[str, str] = field(default_factory=dict)
    embed_keys: dict[str, str] = field(default_factory=dict)
    embed_files: dict[str, str] = field(default_factory=dict)
    cells_done: list[dict] = field(default_factory=list)
    transfer_files: list[str] = field(default_factory=list)
    transfer_summary: dict = field(default_factory=dict)
    integration: dict | None = None
    umap_files: dict[str, str] = field(default_factory=dict)
    fitted: int = 0
    root: Path | None = None
    versioned: bool = False
    model_out: Path | None = None
    written: list[dict] = field(default_factory=list)
    write_t0: float = 0.0  # the write stage's start: it ends after the root is written

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.manifest.studies]

    @property
    def total_cells(self) -> int:
        return sum(self.n_obs.values())

    @property
    def task_threads(self) -> int | None:
        """Torch threads of a per-study task: one on each local worker; None (the task's choice) elsewhere."""
        return 1 if self.client is not None and self.scheduler in (None, "local") else None

    def run(self, fn, calls: list[tuple], *, desc: str, names: list[str] | None = None, quiet: bool | None = None) -> list:
        return _run(self.client, fn, calls, desc=desc, quiet=self.quiet if quiet is None else quiet, names=names)


def build_atlas(manifest: Manifest, *, force: bool = False, quiet: bool = False, scheduler: str | None = None,
                workers: int | None = None, rewrite: bool = False, stats: dict | None = None, verbose: bool = False,
                train_workers: int = 1, checkpoint_every: int | None = 1000) -> Path:
    """Build (or bring up to date) the atlas described by ``manifest``; returns its path.

    ``scheduler``/``workers``: where the per-study tasks run (:func:`dask_client`). ``force``:
    recompute every stage. ``rewrite``: rewrite every atlas file from the work folder (after
    ``python -m compute verify`` found damage), without recomputing. ``stats``: filled with the
    per-task peak memory of each worker and the stage timings (for the build benchmark).
    ``train_workers``: processes training the encoder data parallel (torch.distributed on this
    machine; 1: in this process). ``checkpoint_every``: batches between training checkpoints
    (besides one at the end of every epoch; None: at epoch ends only).
    """
    b = _Build(manifest, force, rewrite, quiet, scheduler, train_workers, checkpoint_every, log=_Log(quiet),
               out=manifest.atlas.out, work=work_dir(manifest), t_start=time.perf_counter())
    for sub in ("ingest", "model", "train", "attr", "embed", "umap", "transfer"):
        (b.work / sub).mkdir(parents=True, exist_ok=True)
    _expand_census(b)
    _key_sources(b)
    if _up_to_date(b):
        return b.out
    with dask_client(scheduler, workers, verbose) as client:
        b.client = client
        _ingest(b)
        _choose_gene_order(b)
        _prepare_encoder(b)
        _attribute_and_embed(b)
        _transfer_labels(b)
        _umap(b)
        _write_studies(b)
    b.client = None
    _calibrate_panels(b)
    _transfer_evidence(b)
    _write_root_and_modules(b, _write_vocabulary(b))
    if stats is not None:
        stats.update({"timings_s": dict(b.log.timings), "build_process_peak_bytes": dict(b.log.peaks), "tasks": b.peaks,
                      "n_cells": b.total_cells, "n_studies": len(b.manifest.studies),
                      "computed": [r["id"] for r in b.cells_done if r["computed"]],
                      "written": [w["entry"]["id"] for w in b.written if not w["skipped"]]})
    b.log(f"atlas written: {b.out} ({b.total_cells} cells, {len(b.manifest.studies)} studies) in "
          f"{time.perf_counter() - b.t_start:.0f} s")
    return b.out


# -- the stages, in the order build_atlas runs them ---------------------------------------------------
def _expand_census(b: _Build) -> None:
    """Sets ``manifest``: each census entry becomes one study per Census dataset, planned (once, kept
    in the work folder) and downloaded here, one dataset at a time, before any study is read."""
    if any(s.source.kind == "census" for s in b.manifest.studies):
        from compute.census import expand_census

        b.manifest = expand_census(b.manifest, b.work / "census", progress=not b.quiet, log=b.log)


def _key_sources(b: _Build) -> None:
    """Sets ``source_keys`` (each study's source file, hashed) and ``build_key``; StudyFailures
    naming every study whose source is missing."""
    missing = {}
    for s in b.manifest.studies:
        try:
            b.source_keys[s.id] = _source_key(s)
        except IngestError as exc:
            missing[s.id] = exc
    if missing:
        raise StudyFailures("finding the source files", missing)
    b.build_key = _sha(PIPELINE_VERSION, ATLAS_CONTENT_VERSION, FORMAT_VERSION, b.manifest.fingerprint(), b.source_keys)


def _up_to_date(b: _Build) -> bool:
    """Whether the atlas at ``out`` was built from this manifest and these sources (and no
    force or rewrite asks for more)."""
    root_file = b.out / ROOT_FILE
    if b.force or b.rewrite or not root_file.is_file():
        return False
    try:
        if json.loads(root_file.read_text()).get("build", {}).get("key") == b.build_key:
            b.log(f"atlas {b.out} is up to date (manifest and sources unchanged); nothing to do "
                  f"(`python -m compute verify {b.out}` checks its files)")
            return True
    except json.JSONDecodeError:
        pass
    return False


def _ingest(b: _Build) -> None:
    """Stage 1. Sets ``ingest_keys``, ``ingest_files``, ``ingested`` (each study's task result) and ``n_obs``."""
    t0 = time.perf_counter()
    where = "in this process" if b.client is None else f"on {len(b.client.scheduler_info()['workers'])} Dask workers"
    b.log(f"[1/6] ingest {len(b.manifest.studies)} studies {where}")
    # what ingest reads: not the title or organism (written with the study), so renaming a
    # study rewrites its entry and files without recomputing anything
    b.ingest_keys = {s.id: _sha(PIPELINE_VERSION, {k: v for k, v in _study_dict(s).items() if k != "title"},
                                asdict(b.manifest.ingest), b.source_keys[s.id])[:16] for s in b.manifest.studies}
    b.ingest_files = {s.id: str(b.work / "ingest" / f"{s.id}-{b.ingest_keys[s.id]}.h5ad") for s in b.manifest.studies}
    b.ingested = b.run(tasks.ingest_task, [(s, b.manifest.ingest, b.ingest_files[s.id], b.force) for s in b.manifest.studies],
                       desc="ingest", names=b.ids)
    b.peaks += [dict(r, stage="ingest") for r in b.ingested]
    b.n_obs = {r["id"]: r["n_obs"] for r in b.ingested}
    b.log.stage("ingest", t0)


def _choose_gene_order(b: _Build) -> None:
    """Stage 2. Sets ``pretrained`` (a pretrained encoder, or None), ``gene_order`` (the encoder's,
    or every ingested gene), ``shares`` and ``warnings``; StudyFailures naming the studies that share
    too few genes with it."""
    from compute.model import load_encoder

    if b.manifest.model.kind == "pretrained":
        b.pretrained = load_encoder(b.manifest.model.path)
        b.gene_order = list(b.pretrained.gene_order)
    else:
        b.gene_order = sorted(set().union(*(set(r["var_names"]) for r in b.ingested)))
    min_overlap = b.manifest.ingest.min_gene_overlap
    b.log(f"[2/6] gene order: {len(b.gene_order)} genes; {b.total_cells} cells pass QC")
    in_order = set(b.gene_order)
    short = {r["id"]: IngestError(
        f"only {n} of its {len(r['var_names'])} genes are in the model's gene order of {len(b.gene_order)} "
        f"(minimum {min_overlap}, 'ingest.min_gene_overlap')")
        for r in b.ingested if (n := len(in_order.intersection(r["var_names"]))) < min_overlap}
    if short:
        raise StudyFailures("gene alignment", short)
    expected = _expected_shares(b.ingested, b.gene_order)  # once: the input shares and the embedding's genes
    b.shares = input_shares(b.ingested, b.gene_order, expected)
    b.embed_genes = embedding_genes(b.ingested, b.gene_order, b.manifest.embedding, b.manifest.path, expected=expected)
    b.log(f"  {embedding_genes_text(b.embed_genes)}")
    b.warnings = atlas_warnings(b.ingested)
    for w in b.warnings:
        b.log(f"  warning: {w}")


def _prepare_encoder(b: _Build) -> None:
    """Stage 3, one step here. Sets ``encoder``, ``model_dir``, ``model_key`` and ``model_card``: the
    pretrained encoder, a trained one reused from the work folder, or one trained now (then also
    ``pieces``, the training data)."""
    from compute.model import seed_everything

    t0 = time.perf_counter()
    seed_everything(b.manifest.seed)
    if b.pretrained is not None:
        _use_pretrained(b)
    else:
        _train_or_reuse(b)
    b.log.stage("encoder", t0)


def _use_pretrained(b: _Build) -> None:
    b.encoder = b.pretrained
    b.model_dir = b.manifest.model.path
    b.model_key = _sha("pretrained", _file_sha(b.model_dir / "encoder.ckpt"))[:16]
    b.model_card = {"source": "pretrained", "path": str(b.model_dir), "n_genes": b.encoder.n_genes,
                    "hidden_sizes": list(b.encoder.hidden_sizes), "latent_dim": b.encoder.latent_dim}
    card_file = b.model_dir / "model_card.json"
    if card_file.is_file():
        b.model_card["card"] = json.loads(card_file.read_text())
    b.log(f"[3/6] encoder: loaded {b.model_dir}")


def _train_or_reuse(b: _Build) -> None:
    from compute.model import load_encoder, save_encoder
    from compute.vocabulary import ontologies

    m = b.manifest
    b.model_key = _sha(asdict(m.model), m.seed, b.gene_order, b.ingest_keys, b.shares, ontologies().versions, TRAINING_VERSION)[:16]
    b.model_dir = b.work / "model" / b.model_key
    if (b.model_dir / "encoder.ckpt").is_file() and not b.force:
        b.encoder = load_encoder(b.model_dir)
        b.model_card = json.loads((b.model_dir / "model_card.json").read_text())
        b.log(f"[3/6] encoder: reused trained model {b.model_key}")
        return
    b.log(f"[3/6] encoder: training {m.model.hidden_sizes} -> {m.model.latent_dim}")
    _write_training_pieces(b)
    plan_dir = b.work / "train" / b.model_key
    b.encoder, b.model_card = _train(m, b.gene_order, b.ingested, b.pieces, plan_dir, b.model_key, b.quiet, b.train_threads,
                                     b.train_workers, b.checkpoint_every, b.force, shares=b.shares)
    saving = b.model_dir.with_name(f".{b.model_dir.name}.{os.getpid()}.saving")
    save_encoder(b.encoder, saving, card=b.model_card)
    copy_tree_atomic(saving, b.model_dir)
    shutil.rmtree(saving, ignore_errors=True)
    shutil.rmtree(plan_dir, ignore_errors=True)  # the checkpoint: the model is saved


def _write_training_pieces(b: _Build) -> None:
    """Sets ``pieces`` (compute.model.write_piece folders, in manifest order): each study's cells aligned to
    the gene order, one task per study, reused when finished; the encoder reads them a batch at a time."""
    gene_key = _sha(b.gene_order)
    folder = b.work / "train" / "pieces"
    dirs = {s.id: str(folder / f"{s.id}-{_sha(b.ingest_keys[s.id], gene_key, b.shares[s.id])[:16]}") for s in b.manifest.studies}
    min_overlap = b.manifest.ingest.min_gene_overlap
    done = b.run(tasks.train_piece_task, [(s.id, b.ingest_files[s.id], b.gene_order, min_overlap, b.shares[s.id], dirs[s.id], b.force)
                                          for s in b.manifest.studies], desc="training data", names=b.ids)
    b.pieces = [dirs[s.id] for s in b.manifest.studies]
    b.peaks += [dict(r, stage="training data") for r in done]


def _attribute_and_embed(b: _Build) -> None:
    """Stage 4, one task per study. Sets ``piece_of``, ``attr_files`` (each study's attributions: a
    piece, written a block of rows at a time), ``embed_keys``, ``embed_files`` and ``cells_done``."""
    from compute.attribution import describe_path
    t0 = time.perf_counter()
    spec_a = b.manifest.attribution
    b.log(f"[4/6] attributions ({describe_path(b.encoder, spec_a.method)}, {spec_a.n_steps} steps) and embeddings")
    b.encoder = b.pretrained = None  # the tasks load it themselves: not held here while they run
    if b.pieces is None:  # not trained here: the aligned cells are written (or reused) now
        _write_training_pieces(b)
    b.piece_of = dict(zip(b.ids, b.pieces, strict=True))
    b.attr_files = {s.id: str(b.work / "attr" / f"{s.id}-"
                              f"{_sha(b.model_key, b.ingest_keys[s.id], asdict(spec_a), b.gene_order, b.shares[s.id])[:16]}")
                    for s in b.manifest.studies}
    panel = _embedding_panel(b)
    b.embed_keys = {s.id: _sha(b.model_key, b.ingest_keys[s.id], b.gene_order, b.shares[s.id], *panel[s.id])[:16]
                    for s in b.manifest.studies}
    b.embed_files = {s.id: str(b.work / "embed" / f"{s.id}-{b.embed_keys[s.id]}.npy") for s in b.manifest.studies}
    b.cells_done = b.run(tasks.cells_task, [
        (s.id, b.piece_of[s.id], str(b.model_dir), b.model_key, asdict(spec_a),
         b.attr_files[s.id], b.embed_files[s.id], b.force, b.task_threads, *panel[s.id]) for s in b.manifest.studies],
        desc="attributions", names=b.ids)
    b.peaks += [dict(r, stage="attributions+embedding") for r in b.cells_done]
    b.log.stage("attributions+embedding", t0)


def _embedding_panel(b: _Build) -> dict[str, tuple]:
    """Each study's (genes, ratio) for the embedding (compute.embedding.embed's ``keep`` and
    ``ratio``): () when it reads every gene its study measured; with the shared genes, their
    positions and the shared genes' share over the study's input share (panel_input's rule)."""
    g = b.embed_genes
    if g.get("genes") != "shared":
        return {s.id: () for s in b.manifest.studies}
    positions = [int(i) for i in g["positions"]]
    return {s.id: (positions, round(g["share"] / b.shares[s.id], 9)) for s in b.manifest.studies}


def _transfer_labels(b: _Build) -> None:
    """Stage 4b: a predicted cell-type term for every cell from other studies' labelled cells. Sets
    ``transfer_files``, ``transfer_summary`` and ``integration``."""
    t0 = time.perf_counter()
    transfer_key = _sha(_transfer_settings(), [b.embed_keys[i] for i in b.ids], [b.ingest_keys[i] for i in b.ids],
                        b.manifest.seed)[:16]
    b.transfer_files, b.transfer_summary, transfer_peaks = _label_transfer(
        b.client, b.manifest, b.ingested, b.embed_files, b.work / "transfer" / transfer_key, b.manifest.seed, b.force, b.quiet,
        threads=b.task_threads, timings=b.log.timings)
    b.peaks += transfer_peaks
    acc = b.transfer_summary["accuracy"]
    b.log(f"  label transfer: {acc['n_evaluated']:,} labelled cells held out, "
          + (f"exact {100 * acc['exact']:.1f}%" if "exact" in acc else "no cell type shared by two studies")
          + (f", same cell type {100 * acc['compatible']:.1f}%" if "compatible" in acc else ""))
    b.integration = b.transfer_summary.pop("integration", None)
    if b.integration:

        b.log(f"  {integration_line({'report': {'integration': b.integration}})}")
    b.log.stage("label transfer", t0)


def _umap(b: _Build) -> None:
    """Stage 5: fit on a stated subsample, transform the rest. Sets ``umap_files`` ("" each when the
    manifest skips the UMAP) and ``fitted``."""
    t0 = time.perf_counter()
    m, total = b.manifest, b.total_cells
    fit_cells = max(int(m.embedding.fit_cells), 10)
    umap_key = _sha([b.embed_keys[i] for i in b.ids], asdict(m.embedding), m.seed)[:16]
    umap_dir = b.work / "umap" / umap_key
    b.umap_files = {sid: str(umap_dir / f"{sid}.npy") for sid in b.ids}
    b.fitted = min(fit_cells, total) if m.embedding.umap else 0
    if not m.embedding.umap:
        b.umap_files = dict.fromkeys(b.umap_files, "")
        b.log("[5/6] UMAP: skipped (embedding.umap: false)")
    else:
        b.log(f"[5/6] UMAP: fit on {b.fitted:,} of {total:,} cells" + (", the rest transformed" if b.fitted < total else ""))
    if m.embedding.umap and (b.force or not all(Path(f).is_file() for f in b.umap_files.values())):
        params = {"n_neighbors": m.embedding.n_neighbors, "min_dist": m.embedding.min_dist}
        fit = b.run(tasks.umap_fit_task, [(b.embed_files, b.n_obs, fit_cells, params, m.seed, str(umap_dir))],
                    desc="umap fit", quiet=True)
        b.peaks += [dict(r, stage="umap fit") for r in fit]
        if fit[0]["fit_cells"] < total:
            b.peaks += [dict(r, stage="umap transform") for r in b.run(
                tasks.umap_study_task, [(sid, b.embed_files[sid], str(umap_dir)) for sid in b.ids],
                desc="umap transform", names=b.ids)]
    b.log.stage("umap", t0)


def _write_studies(b: _Build) -> None:
    """Stage 6 (its first part; the log's "write" stage ends with the root): the atlas folder, the
    model and each study's files (one task per study). Sets ``root``, ``versioned``,
    ``model_out`` and ``written``."""

    b.write_t0 = time.perf_counter()
    b.log(f"[6/6] writing atlas to {b.out}")
    # a new version beside the one being served, switched to in one step at the end; a
    # rerun after a crash resumes the same version (its name is the build key)
    b.versioned = os.name != "nt"  # symbolic links need privileges on Windows: write in place there
    if b.versioned:
        name = b.build_key[:16] if not (b.force or b.rewrite) else f"{b.build_key[:16]}.{time.strftime('%Y%m%dT%H%M%S')}"
        b.root = begin_atlas(stage_version(b.out, name), b.gene_order)
    else:
        b.root = begin_atlas(b.out, b.gene_order)
    b.model_out = b.root / "model"
    if Path(b.model_dir).resolve() != b.model_out.resolve():
        copy_tree_atomic(Path(b.model_dir), b.model_out)
    min_overlap = b.manifest.ingest.min_gene_overlap
    calls = []
    for s in b.manifest.studies:
        key = _sha(ATLAS_CONTENT_VERSION, FORMAT_VERSION, _study_dict(s), b.piece_of[s.id], b.attr_files[s.id], b.embed_files[s.id],
                   b.umap_files[s.id], b.shares[s.id])
        calls.append((str(b.root), _study_meta(s), s.organism, b.ingest_files[s.id], b.gene_order, min_overlap, b.piece_of[s.id],
                      b.attr_files[s.id], b.embed_files[s.id], b.umap_files[s.id] or None, key, b.rewrite or b.force))
    b.written = b.run(tasks.write_study_task, calls, desc="write", names=b.ids)
    b.peaks += [dict(r, stage="write") for r in b.written if not r["skipped"]]


def _calibrate_panels(b: _Build) -> None:
    """Each entry's panel share, then partial panels' per-gene factors from the encoder's
    attributions of full-panel reference cells, whole and masked to each panel
    (compute/build/_calibration.py); their files join ``written``, a warning each to ``warnings``."""

    entries = [w["entry"] for w in b.written]
    panel_shares(b.root, entries, len(b.gene_order))
    t_cal = time.perf_counter()
    calibrated = calibrate_panels(b.root, entries, len(b.gene_order), asdict(b.manifest.attribution), b.shares, seed=b.manifest.seed)
    for w in b.written:
        for name, path in calibrated.get(w["entry"]["id"], {}).items():
            w["files"][name] = file_record(path)
    b.log.timings["panel calibration"] = round(time.perf_counter() - t_cal, 2)
    for e in entries:
        if e["panel"]["attr_share"] < 0.5:
            how = ("calibrated gene by gene against full-panel reference cells (README 'One scale across panels')"
                   if e["panel"].get("gene_scale") else "rescaled by that share (method.md section 6), an atlas-wide estimate")
            b.warnings.append(f"study '{e['id']}' measured {e['panel']['n_genes_measured']:,} of {len(b.gene_order):,} genes, "
                              f"estimated to carry {100 * e['panel']['attr_share']:.0f}% of a cell's attribution: its values are "
                              + how)


def _transfer_evidence(b: _Build) -> None:
    """Each study's cell-type labels weighed against the label transfer (the majority term among a
    label's cells' neighbours in other studies): ``report.vocabulary.cell_type.transfer`` of its
    entry, one record a label {label, n_cells, term, term_label, share, verdict, text}, as
    ``python -m compute labels --atlas`` shows them. Reads one study's labels at a time."""
    import pandas as pd

    from compute.atlas import CELLS_FILE
    from compute.vocabulary import judge_transfer, ontologies, transfer_evidence

    files = dict(zip(b.ids, b.transfer_files, strict=True))
    for w in b.written:
        entry = w["entry"]
        section = ((entry.get("report") or {}).get("vocabulary") or {}).get("cell_type")
        cells_file = b.root / entry["dir"] / CELLS_FILE
        if not isinstance(section, dict) or entry["id"] not in files or not cells_file.is_file() or not Path(files[entry["id"]]).is_file():
            continue
        labels = pd.read_parquet(cells_file, columns=["cell_type_original"])["cell_type_original"]
        with np.load(files[entry["id"]], allow_pickle=False) as z:
            predicted = z["pred"]
        if len(predicted) != len(labels):  # not the cells written: say nothing rather than something wrong
            continue
        term_of = {str(m["label"]): m["term_id"] for m in section.get("mapped", [])}
        rows = []
        for label, ev in transfer_evidence(labels.astype(str).to_numpy(), predicted).items():
            verdict, text = judge_transfer(ev, term_of.get(label))
            info = ontologies().term(ev.term) if ev.term else None
            rows.append({"label": label, "n_cells": ev.n_cells, "term": ev.term, "term_label": info.label if info else None,
                         "share": ev.share, "verdict": verdict, "text": text})
        section["transfer"] = sorted(rows, key=lambda r: (-r["n_cells"], r["label"]))


def _write_vocabulary(b: _Build) -> dict:
    """The label transfer's predictions and the terms' closure written into the atlas; returns the
    root's ``vocabulary`` record."""
    from compute.vocabulary import ontologies, term_closure

    predicted_terms: set[str] = set()
    predictions_file = write_predictions(b.root, _prediction_chunks(b.transfer_files, predicted_terms))  # study by study
    all_terms = set().union(*(r["terms"] for r in b.ingested)) | predicted_terms
    vocab_file = write_vocabulary(b.root, term_closure(all_terms), ontologies().versions)
    return {"file": vocab_file, "predictions": predictions_file, "versions": ontologies().versions,
            "label_transfer": b.transfer_summary,
            "rule": "cell_type, disease and tissue hold the ontology term's label (the study's own label when no term "
                    "matched, kept as its own group); *_original the study's label; *_ontology_term_id the term; a filter "
                    "on a term selects its descendants; cell_type_predicted is the label transfer's term (never used by "
                    "filters or groupings)"}


def _method_record(manifest: Manifest, fitted: int, total_cells: int, embed_genes: Mapping | None = None) -> dict:
    """The root's ``method``: how the values were made, and where the build departs from SIGnature's."""
    spec_a = manifest.attribution
    return {
        "attribution": {"method": spec_a.method, "n_steps": spec_a.n_steps, "baseline": "zeros",
                        "rule": "Gauss-Legendre", "target": "sum_d |e_d * f(x')_d|, e = f(x) fixed",
                        "post": "abs, rows scaled to 1000", "implementation": "exact first-layer identity (method.md 3)"
                        if spec_a.method == "ig" else "captum"},
        "normalisation": "counts -> 1e4 per cell -> log1p",
        "score": "mean attribution over the signature genes the cell's study measured, zeros included, weights "
                 "renormalised over them (method.md 4, 6)",
        "panel_scale": "a partial-panel study's values x per-gene factors (studies/<id>/gene_scale.npy: for each gene, its "
                       "attribution summed over full-panel reference cells / the same with their input masked to the study's "
                       "panel, through this encoder); where the atlas has no full-panel study, values x the study's measured "
                       "share (the share of a cell's attribution its panel is estimated to carry, learned from the atlas); 1 "
                       "for a study that measured every gene; SIGnature's rows-to-1,000 values are the stored ones "
                       "(Atlas.score(..., scale='raw'))",
        "embedding_genes": {k: v for k, v in (embed_genes or {}).items() if k != "positions"},
        "umap": {"fit_cells": int(fitted), "total_cells": int(total_cells),
                 "rule": "fitted on a seeded sample drawn evenly from every study; the other cells transformed"}
        if manifest.embedding.umap else {"skipped": True, "rule": "embedding.umap: false in the manifest"},
        "departures": []
        if manifest.model.kind == "pretrained"
        else [f"encoder trained by SigAtlas on this atlas's {total_cells} cells with hidden sizes "
              f"{list(manifest.model.hidden_sizes)}, not SCimilarity's released 28,231-gene model",
              f"triplet weight {manifest.model.triplet_weight} (SCimilarity: 0.001, which left every study on its own island; "
              "README 'The method'), cells paired by Cell Ontology term"],
    }


def _write_root_and_modules(b: _Build, vocabulary: dict) -> None:
    """The root (atlas.json) with every file's checksum; then the gene modules, read from the
    written studies through the atlas reader, and the root again with them (no dashboard request
    ever computes them, issue 16); then the new version published."""

    entries = [w["entry"] for w in b.written]
    files = {f"studies/{e['id']}/{name}": rec for w, e in zip(b.written, entries, strict=True) for name, rec in w["files"].items()}
    files |= _checksums(b.root, ["genes.tsv", vocabulary["file"], vocabulary["predictions"],
                                 *(f"model/{p.name}" for p in sorted(b.model_out.iterdir()) if p.is_file())])
    b.log.timings["total_before_root"] = round(time.perf_counter() - b.t_start, 2)
    m = b.manifest
    root_doc = dict(
        name=m.atlas.name, gene_order=b.gene_order, entries=entries, model_card=b.model_card,
        build={"key": b.build_key, "manifest": str(m.path), "seed": m.seed,
               "pipeline_version": PIPELINE_VERSION, "source_keys": b.source_keys, "timings_s": b.log.timings,
               "ingest": asdict(m.ingest), "embedding": asdict(m.embedding), "scheduler": b.scheduler or "local"},
        method=_method_record(m, b.fitted, b.total_cells, b.embed_genes), files=files,
        report={"warnings": b.warnings, "integration": b.integration}, vocabulary=vocabulary,
    )
    write_root(b.root, **root_doc)
    b.log.peaks["before gene_modules"] = peak_rss()
    t_modules = time.perf_counter()
    modules_record, modules_files = store_gene_modules(b.root, b.work, files)
    b.log.timings["gene_modules"] = round(time.perf_counter() - t_modules, 2)
    b.log.peaks["gene_modules"] = peak_rss()
    write_root(b.root, **root_doc | {"files": files | modules_files, "gene_modules": modules_record})
    if b.versioned:
        publish_version(b.out, b.root)
    b.log.stage("write", b.write_t0)


def _expected_shares(ingested: list[dict], gene_order: list[str]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """compute.atlas.measured_shares on the mean normalised expression of each study's genes:
    (each study's share, each gene's expected share, each study's gene positions)."""
    pos = {g: i for i, g in enumerate(gene_order)}
    profiles, measured = [], []
    for r in ingested:
        idx = np.array([pos.get(g, -1) for g in r["var_names"]], dtype=np.int64)
        keep = idx >= 0
        p = np.zeros(len(gene_order))
        p[idx[keep]] = np.asarray(r["expr_means"], dtype=np.float64)[keep]
        profiles.append(p)
        measured.append(idx[keep])
    phi, pi = measured_shares(profiles, measured, len(gene_order), gene_shares=True)
    return phi, pi, measured


def input_shares(ingested: list[dict], gene_order: list[str], expected: tuple | None = None) -> dict[str, float]:
    """Each study's measured share of expression (compute.atlas.measured_shares on the mean
    normalised expression of its genes): its cells are normalised to 10,000 x share before the
    encoder, so a gene's input does not grow because the panel around it is small. Rounded
    to 6 digits: it enters the stage keys. ``expected``: :func:`_expected_shares` when the caller
    has it already."""

    phi = (expected or _expected_shares(ingested, gene_order))[0]
    return {r["id"]: round(float(v), 6) for r, v in zip(ingested, phi, strict=True)}


def embedding_genes(ingested: list[dict], gene_order: list[str], spec: EmbeddingSpec, spec_file: str | Path = "manifest", *,
                    expected: tuple | None = None) -> dict:
    """Which genes the stored embedding reads (manifest ``embedding.genes``; README "Across
    studies"): {"genes": "shared" or "all", "asked", "n_genes", "n_union", "positions" (sorted
    gene positions, shared only), "share" (the shared genes' expected share of a cell's
    expression, shared only), "reason"}.

    "shared": only the genes every study measured, each cell normalised again over them as a
    study measuring just those genes would be (compute.model.panel_input), so the same cells
    measured on two panels get one embedding. "auto" takes it when the studies' panels differ
    and share at least ``spec.min_shared_genes`` genes; otherwise every gene a cell's study
    measured, as the encoder reads cells for the attributions. Raises ManifestError (naming
    ``spec_file``) when "shared" is asked and the studies share no gene. ``expected``:
    :func:`_expected_shares` when the caller has it already."""
    _, pi, measured = expected or _expected_shares(ingested, gene_order)
    counts = np.zeros(len(gene_order), dtype=np.int64)
    for m in measured:
        counts[np.unique(m)] += 1
    shared = np.flatnonzero(counts == len(measured))
    n_union = int((counts > 0).sum())
    out = {"asked": spec.genes, "n_genes": int(shared.size), "n_union": n_union}
    if spec.genes == "all":
        return out | {"genes": "all", "reason": "embedding.genes: all in the manifest"}
    if spec.genes == "shared" and shared.size == 0:
        raise ManifestError(f"{spec_file}: embedding.genes: shared, but no gene was measured by every study "
                            f"({len(measured)} studies, {n_union:,} genes in all); use all or auto")
    if spec.genes == "auto":
        if shared.size == n_union:
            return out | {"genes": "all", "reason": "every study measured the same genes"}
        if shared.size < max(spec.min_shared_genes, 1):
            return out | {"genes": "all", "reason": f"the studies share only {shared.size:,} of {n_union:,} genes, fewer than "
                                                    f"embedding.min_shared_genes = {spec.min_shared_genes:,}; studies on "
                                                    "smaller panels may sit apart from the others in the embedding"}
    reason = ("embedding.genes: shared in the manifest" if spec.genes == "shared" else
              f"the studies' panels differ, and {shared.size:,} of {n_union:,} genes were measured by every study, at least "
              f"embedding.min_shared_genes = {spec.min_shared_genes:,}")
    return out | {"genes": "shared", "positions": shared, "share": round(float(pi[shared].sum()), 6), "reason": reason}


def panel_shares(root: Path, entries: list[dict], n_genes: int) -> None:
    """Add ``panel`` (genes measured, measured shares of attribution and expression) to every
    study entry, from the study files already written (compute.atlas.measured_shares)."""

    panels = [read_study_panel(root / e["dir"]) for e in entries]
    measured, means = [p[0] for p in panels], [p[1] for p in panels]
    attr = measured_shares([m[0] for m in means], measured, n_genes)
    expr = measured_shares([m[1] for m in means], measured, n_genes)
    for e, m, a, x in zip(entries, measured, attr, expr, strict=True):
        e["panel"] = {"n_genes_measured": int(m.size), "attr_share": round(float(a), 6), "expr_share": round(float(x), 6)}


def atlas_warnings(ingested: list[dict]) -> list[str]:
    """Warnings about the atlas as a whole, from the ingest results: cell types shared by no two
    studies leave the triplet loss (anchor and positive from different studies) without pairs."""
    studies_of: dict[str, set[str]] = {}
    for r in ingested:
        for ct in r.get("cell_types", ()):
            studies_of.setdefault(ct, set()).add(r["id"])
    out = []
    if len(ingested) > 1:
        shared = sorted(ct for ct, ids in studies_of.items() if len(ids) > 1)
        if not shared:
            out.append("no cell type label is shared by two studies, so the triplet loss (anchor and positive of one cell type "
                       "from different studies) never engages and the encoder only learns to reconstruct: map the labels to one "
                       "vocabulary (for example with columns.cell_type naming a harmonised column)")
        else:
            alone = sorted(r["id"] for r in ingested if not set(r.get("cell_types", ())) & set(shared))
            if alone:
                out.append(f"studies sharing no cell type label with any other study (the triplet loss has no pairs for them): {', '.join(alone)}")
    return out


def _transfer_settings() -> dict:
    """What the label transfer's results depend on besides the embeddings, labels and seed (in
    its cache key): compute.vocabulary's k and reference size, and the integration sample
    (integration_metrics' own default, 50,000 cells)."""
    from compute.vocabulary import MAX_REFERENCE, TRANSFER_K

    return {"version": 2, "k": TRANSFER_K, "max_reference": MAX_REFERENCE, "integration_cells": 50_000}


class StudyTerms(Mapping):
    """Each study's per-cell Cell Ontology terms ("" where the label matched none), in manifest
    order, from the ingest records' distinct terms and codes: ``terms[sid]`` decodes one study
    (an object array, one str object a distinct term), so nothing holds every cell's strings."""

    def __init__(self, ingested: list[dict]):
        self._parts = {r["id"]: (np.asarray(r["cell_type_term_names"], dtype=object), np.asarray(r["cell_type_term_codes"]))
                       for r in ingested}

    def names(self, sid: str) -> np.ndarray:
        """The study's distinct terms, sorted (str)."""
        return self._parts[sid][0].astype(str)

    def codes(self, sid: str) -> np.ndarray:
        """One index into :meth:`names` a cell."""
        return self._parts[sid][1]

    def __getitem__(self, sid: str) -> np.ndarray:
        names, codes = self._parts[sid]
        return names[codes]

    def __iter__(self):
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


def _label_transfer(client, manifest: Manifest, ingested: list[dict], embed_files: dict[str, str], folder: Path, seed: int,
                    force: bool, quiet: bool, threads: int | None, timings: dict | None = None) -> tuple[list[str], dict, list[dict]]:
    """Predicted cell-type terms for every cell (compute.vocabulary: a bounded reference of
    labelled cells, then one Dask task a study against it), the summary with the held-out
    accuracy and the integration metrics, and the tasks' peak memory. The build process holds
    the reference (at most 100,000 cells) and a 50,000-cell sample for the integration
    metrics, never every cell's embedding. Kept in ``folder`` (keyed by the embeddings, labels
    and seed): a file a study, reused after a crash. An atlas-level product: one study's
    change moves the reference, so the predictions are stored beside the studies, not in them
    (unchanged studies are not rewritten). Returns the per-study files in manifest order."""
    from compute.vocabulary import (
        accuracy_summary,
        make_reference,
        reference_positions,
        shared_terms,
        term_relation,
        transfer_summary,
    )

    ids = [s.id for s in manifest.studies]
    terms = StudyTerms(ingested)  # decoded a study at a time
    folder.mkdir(parents=True, exist_ok=True)
    out_files = [str(folder / f"{sid}.npz") for sid in ids]
    summary_file = folder / "summary.json"
    if force:
        for p in folder.iterdir():
            p.unlink()
    if summary_file.is_file():
        return out_files, json.loads(summary_file.read_text()), []
    ref_file = folder / "reference.npz"
    settings = _transfer_settings()
    picks = reference_positions(terms, settings["max_reference"], seed)
    if not ref_file.is_file():
        ref = make_reference({sid: np.load(embed_files[sid], mmap_mode="r")[picks[sid]] for sid in ids},
                             {sid: terms[sid][picks[sid]] for sid in ids})
        atomic_write(ref_file, lambda t: np.savez(t, embedding=ref.embedding, term_codes=ref.term_codes, terms=ref.terms,
                                                   studies=ref.studies))
    shared = shared_terms(terms)
    relation = term_relation(np.unique(np.concatenate([terms.names(sid) for sid in terms])))
    k = settings["k"]
    done = _run(client, tasks.transfer_study_task,
                [(sid, embed_files[sid], str(ref_file), terms.names(sid), terms.codes(sid), shared, relation, k, out, False, threads)
                 for sid, out in zip(ids, out_files, strict=True)], desc="label transfer", quiet=quiet, names=ids)
    summary = transfer_summary(k, sum(p.size for p in picks.values()), accuracy_summary([r["counts"] for r in done]))
    # how well the embedding integrates studies (scIB definitions), on the cell-type terms
    t0 = time.perf_counter()
    summary["integration"] = _integration(ids, embed_files, terms, seed, settings["integration_cells"])
    if timings is not None:  # part of the stage's time, shown apart by the build benchmark
        timings["integration metrics (in label transfer)"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(summary_file, summary)
    return out_files, summary, [dict(r, stage="label transfer") for r in done if r["computed"]]


def _integration(ids: list[str], embed_files: dict[str, str], terms: StudyTerms, seed: int, max_cells: int) -> dict:
    """compute.integration.integration_metrics on every labelled cell, reading only its seeded
    subsample of ``max_cells`` labelled cells from the embedding files (drawn as
    integration_metrics draws it, so the figures are those it gives on the whole embedding)."""

    from compute.integration import integration_metrics, missing_labels

    def labelled(sid: str) -> np.ndarray:  # missing_labels on the study's distinct terms, not on every cell
        uniq, inv = np.unique(terms[sid], return_inverse=True)
        return np.flatnonzero(~missing_labels(np.where(uniq == "", None, uniq).astype(object))[inv])

    counts = {sid: labelled(sid).size for sid in ids}  # one study's positions at a time, never every cell's
    n = sum(counts.values())
    chosen = np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False)) if n > max_cells else np.arange(n)
    parts, types, studies = [], [], []
    offset = 0
    for sid in ids:
        mine = chosen[(chosen >= offset) & (chosen < offset + counts[sid])] - offset
        offset += counts[sid]
        rows = labelled(sid)[mine]
        parts.append(np.asarray(np.load(embed_files[sid], mmap_mode="r")[rows], dtype=np.float32))
        types.append(terms[sid][rows])
        studies.append(np.full(rows.size, sid, dtype=object))
    dims = parts[0].shape[1] if parts else 1
    E = np.concatenate(parts) if parts else np.zeros((0, dims), np.float32)
    m = integration_metrics(E, np.concatenate(types) if types else np.zeros(0, object),
                            np.concatenate(studies).astype(str) if studies else np.zeros(0, str), seed=seed, max_cells=max_cells)
    n_cells = sum(len(terms.codes(sid)) for sid in ids)
    return replace(m, n_unlabelled=int(n_cells - n), subsampled=bool(n > max_cells)).as_dict()


def _prediction_chunks(files: list[str], terms: set[str]):
    """The per-study label-transfer files, one dict (term_id, confidence) a study in atlas order;
    each study's predicted terms are added to ``terms``."""
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            pred, conf = z["pred"], z["conf"].astype(np.float32)
        terms.update(t for t in np.unique(pred).tolist() if t)
        yield {"term_id": pred, "confidence": conf}


def _checksums(root: Path, names: list[str]) -> dict:

    return {n: file_record(root / n) for n in names}


def _train(manifest: Manifest, gene_order: list[str], ingested: list[dict], pieces: list[str], plan_dir: Path, model_key: str,
           quiet: bool, threads: int, train_workers: int, checkpoint_every: int | None, force: bool,
           shares: dict[str, float] | None = None):
    """Train the encoder on every study's piece -> (encoder, model card): in this process with
    ``threads`` torch threads, or on ``train_workers`` processes (torch.distributed, the threads
    shared among them). Nothing here holds cell values: the plan (one label and study code a
    cell, the panels) goes to ``plan_dir`` and the trainers memory-map the pieces. A checkpoint
    in ``plan_dir`` from an interrupted run of the same model key is resumed (``force`` drops it).
    ``shares``: each study's input share (:func:`input_shares`, as its piece was scaled), so that
    panel dropout shows a cell on another panel as ingest would give it (None: 1 for every study)."""
    import torch

    from compute.model import label_codes_and_relation, run_plan, train_distributed, write_plan
    from compute.vocabulary import term_relation

    if force:
        shutil.rmtree(plan_dir, ignore_errors=True)
    ids = [s.id for s in manifest.studies]
    code_of = {sid: i for i, sid in enumerate(sorted(ids))}  # the sorted order of the study ids, as the panels' rows
    terms = StudyTerms(ingested)
    # the triplet loss pairs cells by Cell Ontology term (the same term, or one a close ancestor of
    # the other); cells whose label matched no term take part in reconstruction only
    distinct = np.unique(np.concatenate([terms.names(sid) for sid in terms]))
    relation = term_relation(distinct)
    distinct_codes, relation_t = label_codes_and_relation(distinct, relation)
    # from each study's distinct terms and codes, written into one int32 array each (4 B a cell):
    # no per-cell string, and no int64 copy of every cell's code
    sizes = [len(terms.codes(sid)) for sid in terms]
    label_codes, study_codes = np.empty(sum(sizes), dtype=np.int32), np.empty(sum(sizes), dtype=np.int32)
    start = 0
    for sid, n in zip(terms, sizes, strict=True):
        label_codes[start:start + n] = distinct_codes[np.searchsorted(distinct, terms.names(sid))][terms.codes(sid)]
        study_codes[start:start + n] = code_of[sid]
        start += n
    pos = {g: i for i, g in enumerate(gene_order)}
    panels = np.zeros((len(ids), len(gene_order)), dtype=bool)
    for r in ingested:
        panels[code_of[r["id"]], [pos[g] for g in r["var_names"] if g in pos]] = True
    panel_shares = np.array([float((shares or {}).get(sid, 1.0)) for sid in sorted(ids)])
    fingerprint = _sha(model_key, TRAINING_VERSION)
    plan = write_plan(plan_dir, pieces=pieces, gene_order=gene_order, study_codes=study_codes, label_codes=label_codes,
                      spec=manifest.model, seed=manifest.seed, fingerprint=fingerprint, relation=relation_t.numpy(),
                      panels=panels, panel_shares=panel_shares, checkpoint_every=checkpoint_every)
    del terms, label_codes, study_codes
    workers = max(1, int(train_workers))
    if workers > 1:
        encoder, history = train_distributed(plan, workers, threads_per_worker=max(1, threads // workers), progress=not quiet)
    else:
        torch.set_num_threads(threads)
        encoder, history = run_plan(plan, progress=not quiet)
    card = {
        "source": "trained by SigAtlas",
        "architecture": "SCimilarity (Heimberg et al., Nature 2024): Dropout-Linear-BatchNorm1d-PReLU blocks, "
        "Linear to latent, L2 normalised",
        "parameters": asdict(manifest.model),
        "n_genes": len(gene_order),
        "seed": manifest.seed,
        "loss": f"{manifest.model.triplet_weight} x triplet (margin {manifest.model.margin}, semi-hard, across studies) "
        f"+ {1 - manifest.model.triplet_weight:.3f} x reconstruction MSE",
        "batches": "streamed from per-study pieces; half of each batch in cross-study groups of one cell type, the rest "
                   "study- and cell-type-balanced (sqrt weights), seeded by (seed, epoch, batch)",
        "training": history,
        "trained_on": {"n_cells": int(history["n_cells"]), "n_studies": len(ids), "cpu_threads": threads, "workers": workers},
    }
    return encoder, card

"""The build: manifest -> ingest -> encoder -> attributions -> embedding/UMAP -> atlas.

The per-study stages (ingest, training data, attributions and embedding, UMAP transform,
writing) run as Dask tasks (``compute._build_tasks``): on a LocalCluster by default, or on the
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from compute.atlas import FORMAT_VERSION, ROOT_FILE
from compute.errors import IngestError, SigAtlasError, StorageError
from compute.manifest import Manifest, StudySpec

__all__ = ["PIPELINE_VERSION", "StudyFailures", "build_atlas", "dask_client", "work_dir"]

# a failed study's traceback goes here (shown by `python -m compute build --verbose`)
log_exc = logging.getLogger("sigatlas.build")

# Bump when training gives other weights for the same inputs (2: streamed balanced batches, data
# parallel forward): invalidates the trained encoder and what depends on it, not ingest.
TRAINING_VERSION = "2"
# Bump when a stage's output for the same inputs changes: invalidates every cached stage.
PIPELINE_VERSION = "3"  # 2: values kinds, symbol harmonisation, species, ingest report; 3: ontology terms
# What the final write puts in the atlas; bumping it rewrites existing atlases from the cached
# stages (2: the expression store was added).
ATLAS_CONTENT_VERSION = "8"  # 3: file checksums in the root; 4: measured genes, gene means, ingest report;
# 5: vocabulary.json and the label transfer; 6: predictions in one atlas-level file;
# 7: gene modules precomputed and stored (gene_modules/); 8: partial panels calibrated gene by gene
# (studies/<id>/gene_scale.npy, compute._build_calibration)


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _file_sha(path: Path) -> str:
    from compute.files import file_sha256

    return file_sha256(path)


def _source_key(spec: StudySpec) -> str:
    if spec.source.kind == "scanpy-pbmc68k":
        from importlib.metadata import version

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
        from compute.process import peak_rss

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
    from compute import _build_tasks as tasks
    from compute._build_modules import store_gene_modules
    from compute.atlas import begin_atlas, publish_version, stage_version, write_root
    from compute.attribution import describe_path
    from compute.files import copy_tree_atomic
    from compute.model import load_encoder, save_encoder, seed_everything

    log = _Log(quiet)
    t_start = time.perf_counter()
    out = manifest.atlas.out
    work = work_dir(manifest)
    for sub in ("ingest", "model", "train", "attr", "embed", "umap", "transfer"):
        (work / sub).mkdir(parents=True, exist_ok=True)

    if any(s.source.kind == "census" for s in manifest.studies):
        from compute.census import expand_census

        # each census entry becomes one study per Census dataset: planned (once, kept in the work
        # folder) and downloaded here, one dataset at a time, before any study is read
        manifest = expand_census(manifest, work / "census", progress=not quiet, log=log)
    source_keys, missing = {}, {}
    for s in manifest.studies:
        try:
            source_keys[s.id] = _source_key(s)
        except IngestError as exc:
            missing[s.id] = exc
    if missing:
        raise StudyFailures("finding the source files", missing)
    build_key = _sha(PIPELINE_VERSION, ATLAS_CONTENT_VERSION, FORMAT_VERSION, manifest.fingerprint(), source_keys)
    root_file = out / ROOT_FILE
    if not (force or rewrite) and root_file.is_file():
        try:
            if json.loads(root_file.read_text()).get("build", {}).get("key") == build_key:
                log(f"atlas {out} is up to date (manifest and sources unchanged); nothing to do "
                    f"(`python -m compute verify {out}` checks its files)")
                return out
        except json.JSONDecodeError:
            pass
    peaks: list[dict] = []
    # training results depend on the thread count: set it explicitly ($SIGATLAS_THREADS, default
    # the CPU count), not from OMP_NUM_THREADS, which a Dask cluster sets to 1 in this process
    # for its workers; an interrupted and resumed build then trains exactly as an uninterrupted one
    train_threads = int(os.environ.get("SIGATLAS_THREADS") or os.cpu_count() or 1)

    with dask_client(scheduler, workers, verbose) as client:
        where = "in this process" if client is None else f"on {len(client.scheduler_info()['workers'])} Dask workers"
        # 1. ingest --------------------------------------------------------------------------
        t0 = time.perf_counter()
        log(f"[1/6] ingest {len(manifest.studies)} studies {where}")
        # what ingest reads: not the title or organism (written with the study), so renaming a
        # study rewrites its entry and files without recomputing anything
        ingest_keys = {s.id: _sha(PIPELINE_VERSION, {k: v for k, v in _study_dict(s).items() if k != "title"},
                                  asdict(manifest.ingest), source_keys[s.id])[:16] for s in manifest.studies}
        ingest_files = {s.id: str(work / "ingest" / f"{s.id}-{ingest_keys[s.id]}.h5ad") for s in manifest.studies}
        ingested = _run(client, tasks.ingest_task, [(s, manifest.ingest, ingest_files[s.id], force) for s in manifest.studies],
                        desc="ingest", quiet=quiet, names=[s.id for s in manifest.studies])
        peaks += [dict(r, stage="ingest") for r in ingested]
        n_obs = {r["id"]: r["n_obs"] for r in ingested}
        log.stage("ingest", t0)

        # 2. gene order ------------------------------------------------------------------------
        pretrained = None
        if manifest.model.kind == "pretrained":
            pretrained = load_encoder(manifest.model.path)
            gene_order = list(pretrained.gene_order)
        else:
            gene_order = sorted(set().union(*(set(r["var_names"]) for r in ingested)))
        min_overlap = manifest.ingest.min_gene_overlap
        total_cells = sum(n_obs.values())
        log(f"[2/6] gene order: {len(gene_order)} genes; {total_cells} cells pass QC")
        in_order = set(gene_order)
        short = {r["id"]: IngestError(
            f"only {n} of its {len(r['var_names'])} genes are in the model's gene order of {len(gene_order)} "
            f"(minimum {min_overlap}, 'ingest.min_gene_overlap')")
            for r in ingested if (n := len(in_order.intersection(r["var_names"]))) < min_overlap}
        if short:
            raise StudyFailures("gene alignment", short)
        shares = input_shares(ingested, gene_order)
        build_warnings = atlas_warnings(ingested)
        for w in build_warnings:
            log(f"  warning: {w}")

        # 3. encoder (one step, here) --------------------------------------------------------------
        t0 = time.perf_counter()
        seed_everything(manifest.seed)
        pieces = None  # each study's aligned cells on disk (training reads them; so do steps 4 and 6)
        if pretrained is not None:
            encoder = pretrained
            model_dir = manifest.model.path
            model_key = _sha("pretrained", _file_sha(model_dir / "encoder.ckpt"))[:16]
            model_card = {"source": "pretrained", "path": str(model_dir), "n_genes": encoder.n_genes,
                          "hidden_sizes": list(encoder.hidden_sizes), "latent_dim": encoder.latent_dim}
            card_file = model_dir / "model_card.json"
            if card_file.is_file():
                model_card["card"] = json.loads(card_file.read_text())
            log(f"[3/6] encoder: loaded {model_dir}")
        else:
            from compute.vocabulary import ontologies

            model_key = _sha(asdict(manifest.model), manifest.seed, gene_order, ingest_keys, shares, ontologies().versions,
                             TRAINING_VERSION)[:16]
            model_dir = work / "model" / model_key
            if (model_dir / "encoder.ckpt").is_file() and not force:
                encoder = load_encoder(model_dir)
                model_card = json.loads((model_dir / "model_card.json").read_text())
                log(f"[3/6] encoder: reused trained model {model_key}")
            else:
                log(f"[3/6] encoder: training {manifest.model.hidden_sizes} -> {manifest.model.latent_dim}")
                pieces, piece_peaks = _training_pieces(client, manifest, ingest_files, ingest_keys, gene_order, min_overlap, shares,
                                                       work / "train" / "pieces", force, quiet)
                peaks += piece_peaks
                plan_dir = work / "train" / model_key
                encoder, model_card = _train(manifest, gene_order, ingested, pieces, plan_dir, model_key, quiet, train_threads,
                                             train_workers, checkpoint_every, force)
                saving = model_dir.with_name(f".{model_dir.name}.{os.getpid()}.saving")
                save_encoder(encoder, saving, card=model_card)
                copy_tree_atomic(saving, model_dir)
                shutil.rmtree(saving, ignore_errors=True)
                shutil.rmtree(plan_dir, ignore_errors=True)  # the checkpoint: the model is saved
        log.stage("encoder", t0)

        # 4. attributions and embeddings, per study ------------------------------------------------
        t0 = time.perf_counter()
        spec_a = manifest.attribution
        log(f"[4/6] attributions ({describe_path(encoder, spec_a.method)}, {spec_a.n_steps} steps) and embeddings")
        del encoder
        if pieces is None:  # not trained here: the aligned cells are written (or reused) now
            pieces, piece_peaks = _training_pieces(client, manifest, ingest_files, ingest_keys, gene_order, min_overlap, shares,
                                                   work / "train" / "pieces", force, quiet)
            peaks += piece_peaks
        piece_of = dict(zip([s.id for s in manifest.studies], pieces, strict=True))
        # each study's attributions: a piece (compute.model.PieceWriter), written a block of rows at a time
        attr_files = {s.id: str(work / "attr" / f"{s.id}-{_sha(model_key, ingest_keys[s.id], asdict(spec_a), gene_order, shares[s.id])[:16]}")
                      for s in manifest.studies}
        embed_keys = {s.id: _sha(model_key, ingest_keys[s.id], gene_order, shares[s.id])[:16] for s in manifest.studies}
        embed_files = {s.id: str(work / "embed" / f"{s.id}-{embed_keys[s.id]}.npy") for s in manifest.studies}
        threads = 1 if client is not None and scheduler in (None, "local") else None  # one torch thread per local worker
        done = _run(client, tasks.cells_task, [
            (s.id, piece_of[s.id], str(model_dir), model_key, asdict(spec_a),
             attr_files[s.id], embed_files[s.id], force, threads) for s in manifest.studies], desc="attributions", quiet=quiet,
            names=[s.id for s in manifest.studies])
        peaks += [dict(r, stage="attributions+embedding") for r in done]
        log.stage("attributions+embedding", t0)

        # 4b. label transfer: a predicted cell-type term for every cell from other studies' labelled cells
        t0 = time.perf_counter()
        transfer_key = _sha(_transfer_settings(), [embed_keys[s.id] for s in manifest.studies],
                            [ingest_keys[s.id] for s in manifest.studies], manifest.seed)[:16]
        transfer_files, transfer_summary, transfer_peaks = _label_transfer(
            client, manifest, ingested, embed_files, work / "transfer" / transfer_key, manifest.seed, force, quiet,
            threads=1 if client is not None and scheduler in (None, "local") else None, timings=log.timings)
        peaks += transfer_peaks
        acc = transfer_summary["accuracy"]
        log(f"  label transfer: {acc['n_evaluated']:,} labelled cells held out, "
            + (f"exact {100 * acc['exact']:.1f}%" if "exact" in acc else "no cell type shared by two studies")
            + (f", same cell type {100 * acc['compatible']:.1f}%" if "compatible" in acc else ""))
        integration = transfer_summary.pop("integration", None)
        if integration:
            from compute.atlas import integration_line

            log(f"  {integration_line({'report': {'integration': integration}})}")
        log.stage("label transfer", t0)

        # 5. UMAP: fit on a stated subsample, transform the rest ---------------------------------------
        t0 = time.perf_counter()
        fit_cells = max(int(manifest.embedding.fit_cells), 10)
        umap_key = _sha([embed_keys[s.id] for s in manifest.studies], asdict(manifest.embedding), manifest.seed)[:16]
        umap_dir = work / "umap" / umap_key
        umap_files = {s.id: str(umap_dir / f"{s.id}.npy") for s in manifest.studies}
        fitted = min(fit_cells, total_cells) if manifest.embedding.umap else 0
        if not manifest.embedding.umap:
            umap_files = dict.fromkeys(umap_files, "")
            log("[5/6] UMAP: skipped (embedding.umap: false)")
        else:
            log(f"[5/6] UMAP: fit on {fitted:,} of {total_cells:,} cells" + (", the rest transformed" if fitted < total_cells else ""))
        if manifest.embedding.umap and (force or not all(Path(f).is_file() for f in umap_files.values())):
            params = {"n_neighbors": manifest.embedding.n_neighbors, "min_dist": manifest.embedding.min_dist}
            fit = _run(client, tasks.umap_fit_task, [(embed_files, n_obs, fit_cells, params, manifest.seed, str(umap_dir))],
                       desc="umap fit", quiet=True)
            peaks += [dict(r, stage="umap fit") for r in fit]
            if fit[0]["fit_cells"] < total_cells:
                peaks += [dict(r, stage="umap transform") for r in _run(
                    client, tasks.umap_study_task, [(s.id, embed_files[s.id], str(umap_dir)) for s in manifest.studies],
                    desc="umap transform", quiet=quiet, names=[s.id for s in manifest.studies])]
        log.stage("umap", t0)

        # 6. write: studies (tasks), then the model and genes, the root last -----------------------------
        t0 = time.perf_counter()
        log(f"[6/6] writing atlas to {out}")
        # a new version beside the one being served, switched to in one step at the end; a
        # rerun after a crash resumes the same version (its name is the build key)
        versioned = os.name != "nt"  # symbolic links need privileges on Windows: write in place there
        if versioned:
            name = build_key[:16] if not (force or rewrite) else f"{build_key[:16]}.{time.strftime('%Y%m%dT%H%M%S')}"
            root = begin_atlas(stage_version(out, name), gene_order)
        else:
            root = begin_atlas(out, gene_order)
        model_out = root / "model"
        if Path(model_dir).resolve() != model_out.resolve():
            copy_tree_atomic(Path(model_dir), model_out)
        written = _run(client, tasks.write_study_task, [
            (str(root), _study_meta(s),
             s.organism, ingest_files[s.id], gene_order, min_overlap, piece_of[s.id], attr_files[s.id], embed_files[s.id],
             umap_files[s.id] or None,
             _sha(ATLAS_CONTENT_VERSION, FORMAT_VERSION, _study_dict(s), piece_of[s.id], attr_files[s.id], embed_files[s.id],
                  umap_files[s.id], shares[s.id]),
             rewrite or force) for s in manifest.studies], desc="write", quiet=quiet, names=[s.id for s in manifest.studies])
        peaks += [dict(r, stage="write") for r in written if not r["skipped"]]

    entries = [w["entry"] for w in written]
    panel_shares(root, entries, len(gene_order))
    # partial panels: per-gene factors from the encoder's attributions of full-panel reference cells,
    # whole and masked to each panel (compute._build_calibration)
    from compute._build_calibration import calibrate_panels
    from compute.files import file_record

    t_cal = time.perf_counter()
    calibrated = calibrate_panels(root, entries, len(gene_order), asdict(manifest.attribution), shares, seed=manifest.seed)
    for w in written:
        for name, path in calibrated.get(w["entry"]["id"], {}).items():
            w["files"][name] = file_record(path)
    log.timings["panel calibration"] = round(time.perf_counter() - t_cal, 2)
    for e in entries:
        if e["panel"]["attr_share"] < 0.5:
            how = ("calibrated gene by gene against full-panel reference cells (README 'One scale across panels')"
                   if e["panel"].get("gene_scale") else "rescaled by that share (method.md section 6), an atlas-wide estimate")
            build_warnings.append(f"study '{e['id']}' measured {e['panel']['n_genes_measured']:,} of {len(gene_order):,} genes, "
                                  f"estimated to carry {100 * e['panel']['attr_share']:.0f}% of a cell's attribution: its values are "
                                  + how)
    from compute.atlas import write_predictions, write_vocabulary
    from compute.vocabulary import ontologies, term_closure

    predicted_terms: set[str] = set()
    predictions_file = write_predictions(root, _prediction_chunks(transfer_files, predicted_terms))  # study by study
    all_terms = set().union(*(r["terms"] for r in ingested)) | predicted_terms
    vocab_file = write_vocabulary(root, term_closure(all_terms), ontologies().versions)
    vocabulary = {"file": vocab_file, "predictions": predictions_file, "versions": ontologies().versions,
                  "label_transfer": transfer_summary,
                  "rule": "cell_type, disease and tissue hold the ontology term's label (the study's own label when no term "
                          "matched, kept as its own group); *_original the study's label; *_ontology_term_id the term; a filter "
                          "on a term selects its descendants; cell_type_predicted is the label transfer's term (never used by "
                          "filters or groupings)"}
    files = {f"studies/{e['id']}/{name}": rec for w, e in zip(written, entries, strict=True) for name, rec in w["files"].items()}
    files |= {k: v for k, v in _checksums(root, ["genes.tsv", vocab_file, predictions_file,
                                                 *(f"model/{p.name}" for p in sorted(model_out.iterdir()) if p.is_file())]).items()}
    method = {
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
    log.timings["total_before_root"] = round(time.perf_counter() - t_start, 2)
    root_doc = dict(
        name=manifest.atlas.name, gene_order=gene_order, entries=entries, model_card=model_card,
        build={"key": build_key, "manifest": str(manifest.path), "seed": manifest.seed,
               "pipeline_version": PIPELINE_VERSION, "source_keys": source_keys, "timings_s": log.timings,
               "ingest": asdict(manifest.ingest), "embedding": asdict(manifest.embedding),
               "scheduler": scheduler or "local"},
        method=method, files=files, report={"warnings": build_warnings, "integration": integration}, vocabulary=vocabulary,
    )
    write_root(root, **root_doc)
    # gene modules read the written studies through the atlas reader, then atlas.json is written
    # again with them: no dashboard request ever computes them (issue 16)
    from compute.process import peak_rss

    log.peaks["before gene_modules"] = peak_rss()
    t_modules = time.perf_counter()
    modules_record, modules_files = store_gene_modules(root, work, files)
    log.timings["gene_modules"] = round(time.perf_counter() - t_modules, 2)
    log.peaks["gene_modules"] = peak_rss()
    write_root(root, **root_doc | {"files": files | modules_files, "gene_modules": modules_record})
    if versioned:
        publish_version(out, root)
    log.stage("write", t0)
    if stats is not None:
        stats.update({"timings_s": dict(log.timings), "build_process_peak_bytes": dict(log.peaks), "tasks": peaks, "n_cells": total_cells,
                      "n_studies": len(manifest.studies),
                      "computed": [r["id"] for r in done if r["computed"]], "written": [w["entry"]["id"] for w in written if not w["skipped"]]})
    log(f"atlas written: {out} ({total_cells} cells, {len(manifest.studies)} studies) in {time.perf_counter() - t_start:.0f} s")
    return out


def input_shares(ingested: list[dict], gene_order: list[str]) -> dict[str, float]:
    """Each study's measured share of expression (compute.atlas.measured_shares on the mean
    normalised expression of its genes): its cells are normalised to 10,000 x share before the
    encoder, so a gene's input does not grow because the panel around it is small. Rounded
    to 6 digits: it enters the stage keys."""
    from compute.atlas import measured_shares

    pos = {g: i for i, g in enumerate(gene_order)}
    profiles, measured = [], []
    for r in ingested:
        idx = np.array([pos.get(g, -1) for g in r["var_names"]], dtype=np.int64)
        keep = idx >= 0
        p = np.zeros(len(gene_order))
        p[idx[keep]] = np.asarray(r["expr_means"], dtype=np.float64)[keep]
        profiles.append(p)
        measured.append(idx[keep])
    phi = measured_shares(profiles, measured, len(gene_order))
    return {r["id"]: round(float(v), 6) for r, v in zip(ingested, phi, strict=True)}


def panel_shares(root: Path, entries: list[dict], n_genes: int) -> None:
    """Add ``panel`` (genes measured, measured shares of attribution and expression) to every
    study entry, from the study files already written (compute.atlas.measured_shares)."""
    from compute.atlas import measured_shares, read_study_panel

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
    from compute import _build_tasks as tasks
    from compute.files import atomic_write, write_json_atomic
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
    from dataclasses import replace

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
    from compute.files import file_record

    return {n: file_record(root / n) for n in names}


def _training_pieces(client, manifest: Manifest, ingest_files: dict[str, str], ingest_keys: dict[str, str], gene_order: list[str],
                     min_overlap: int, shares: dict[str, float], folder: Path, force: bool, quiet: bool) -> tuple[list[str], list[dict]]:
    """Each study's cells aligned to ``gene_order`` as a training piece (compute.model.write_piece;
    one Dask task per study, reused when finished): the encoder reads them a batch at a time.
    Returns the piece folders in manifest order and the tasks' peak memory."""
    from compute import _build_tasks as tasks

    gene_key = _sha(gene_order)
    dirs = {s.id: str(folder / f"{s.id}-{_sha(ingest_keys[s.id], gene_key, shares[s.id])[:16]}") for s in manifest.studies}
    done = _run(client, tasks.train_piece_task, [(s.id, ingest_files[s.id], gene_order, min_overlap, shares[s.id], dirs[s.id], force)
                                                 for s in manifest.studies],
                desc="training data", quiet=quiet, names=[s.id for s in manifest.studies])
    return [dirs[s.id] for s in manifest.studies], [dict(r, stage="training data") for r in done]


def _train(manifest: Manifest, gene_order: list[str], ingested: list[dict], pieces: list[str], plan_dir: Path, model_key: str,
           quiet: bool, threads: int, train_workers: int, checkpoint_every: int | None, force: bool):
    """Train the encoder on every study's piece -> (encoder, model card): in this process with
    ``threads`` torch threads, or on ``train_workers`` processes (torch.distributed, the threads
    shared among them). Nothing here holds cell values: the plan (one label and study code a
    cell, the panels) goes to ``plan_dir`` and the trainers memory-map the pieces. A checkpoint
    in ``plan_dir`` from an interrupted run of the same model key is resumed (``force`` drops it)."""
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
    fingerprint = _sha(model_key, TRAINING_VERSION)
    plan = write_plan(plan_dir, pieces=pieces, gene_order=gene_order, study_codes=study_codes, label_codes=label_codes,
                      spec=manifest.model, seed=manifest.seed, fingerprint=fingerprint, relation=relation_t.numpy(),
                      panels=panels, checkpoint_every=checkpoint_every)
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

"""The build's per-study tasks, run on Dask workers (or in-process with ``scheduler="sync"``).

Each task takes paths and settings, reads its inputs from files, writes its outputs to
temporary names that are renamed into place, and returns a small dict (plus the worker's
peak memory). Nothing assumes a shared process: a worker on another machine needs only the
same paths (a shared file system) and the same SigAtlas version.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from compute.files import allocate, atomic_write, estimated_h5ad_bytes, file_record, reserved_space
from compute.process import peak_rss

__all__ = ["ROWS_PER_BLOCK", "aligned_blocks", "cells_task", "ingest_task", "train_piece_task", "transfer_study_task",
           "umap_fit_task", "umap_study_task", "write_study_task"]


def _peak() -> dict:
    """Which worker ran the task and that process's peak resident memory so far (bytes)."""
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "in-process"
    return {"worker": worker, "peak_rss": peak_rss()}


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# -- ingest ---------------------------------------------------------------------------------
def ingest_task(spec, ingest, out_file: str, force: bool) -> dict:
    """Read, QC and normalise one study into ``out_file`` (h5ad); reuse it when present. Raw
    counts in an h5ad are read and written a block of cells at a time
    (compute.ingest.ingest_h5ad_in_blocks); other studies are held whole."""
    import anndata as ad

    from compute.ingest import ingest_h5ad_in_blocks, qc_and_normalise, read_study

    path = Path(out_file)
    if (path.is_file() and not force) or ingest_h5ad_in_blocks(spec, ingest, path, ROWS_PER_BLOCK):
        a = ad.read_h5ad(path, backed="r")  # X stays on disk: the expression means below read it a block at a time
    else:  # not raw counts in an h5ad's CSR X: the whole study in memory
        a = qc_and_normalise(read_study(spec), spec, ingest)
        for c in a.obs.columns:  # as categories already: anndata would print a line for each conversion
            if a.obs[c].dtype == object:
                a.obs[c] = a.obs[c].astype("category")
        with reserved_space(path, estimated_h5ad_bytes(a.n_obs, int(sp.csr_matrix(a.X).nnz), a.n_vars)):
            atomic_write(path, lambda t: a.write_h5ad(t))
    sums = np.zeros(a.n_vars, dtype=np.float64)
    for start in range(0, a.n_obs, ROWS_PER_BLOCK):  # a block at a time: a float64 copy of the study was its largest array
        E = sp.csr_matrix(a.X[start : start + ROWS_PER_BLOCK], dtype=np.float64, copy=True)
        E.data = np.expm1(E.data)
        sums += np.asarray(E.sum(axis=0)).ravel()
    out = {"id": spec.id, "n_obs": int(a.n_obs), "var_names": [str(g) for g in a.var_names],
           "expr_means": sums / max(int(a.n_obs), 1),
           "cell_types": sorted(map(str, a.obs["cell_type"].unique())), "report": study_report(a),
           **_term_codes(a.obs["cell_type_ontology_term_id"].astype(str).to_numpy(dtype=object)),
           "terms": sorted({str(t) for c in ("cell_type", "disease", "tissue")
                            for t in a.obs[f"{c}_ontology_term_id"].astype(str).unique() if t})}
    if a.isbacked:
        a.file.close()
    return {**out, **_peak()}


def _term_codes(values: np.ndarray) -> dict:
    """Each cell's Cell Ontology term as the study's distinct terms and one code a cell (int16
    below 32,768 distinct terms): the build process keeps every study's, 2 B a cell (an
    object array would be 8, and its pickle more in transit). ``compute.build.StudyTerms``
    decodes them a study at a time."""
    uniq, inv = np.unique(values, return_inverse=True)
    return {"cell_type_term_names": [str(t) for t in uniq],
            "cell_type_term_codes": inv.astype(np.int16 if uniq.size < 2**15 else np.int32)}


def study_report(adata) -> dict:
    """The ingest report stored with an ingested study (empty for work files written before it)."""
    raw = adata.uns.get("sigatlas_report")
    return json.loads(raw) if isinstance(raw, str) else {}


ROWS_PER_BLOCK = 4096  # cells a per-study task holds at a time (aligned input, attributions): its memory is
# one block, whatever the study's size (about 300 MB at SCimilarity's 28,231 genes x 8% non-zero)


def aligned_blocks(ingest_file: str, gene_order: list[str], min_overlap: int, study_id: str, share: float = 1.0,
                   rows_per_block: int = ROWS_PER_BLOCK):
    """Yield (first row, rows aligned to ``gene_order``) of an ingested study, ``rows_per_block``
    rows at a time, read from the file (anndata's backed mode): never the whole study in memory.
    ``share``: the study's measured share of expression (method.md section 6); each cell is
    normalised to 10,000 x share instead of 10,000, so a gene has the same value whether the panel
    around it is large or small: log1p(expm1(x) * share). The gene overlap is checked before the
    first block."""
    import anndata as ad

    from compute.ingest import align_to_genes, gene_overlap

    a = ad.read_h5ad(ingest_file, backed="r")
    try:
        genes = [str(g) for g in a.var_names]
        gene_overlap(genes, gene_order, min_overlap=min_overlap, where=f"study '{study_id}'")  # raises before any work
        for start in range(0, a.n_obs, rows_per_block):
            X, _ = align_to_genes(a.X[start : start + rows_per_block], genes, gene_order, where=f"study '{study_id}'")
            if share != 1.0:
                X.data = np.log1p(np.expm1(X.data.astype(np.float64)) * share).astype(np.float32)
            yield start, X
    finally:
        a.file.close()


# -- training data ------------------------------------------------------------------------------
def train_piece_task(study_id: str, ingest_file: str, gene_order: list[str], min_overlap: int, share: float, folder: str,
                     force: bool) -> dict:
    """One study's cells aligned to ``gene_order`` (and scaled by its measured ``share``, as the
    encoder sees them) written as a piece in ``folder`` (compute.model.PieceWriter), a block of
    rows at a time; reused when finished. Training reads it a batch at a time; the attributions,
    embedding and the atlas's expression store read it a block at a time."""
    from compute.model import PieceWriter, piece_ready

    computed = force or not piece_ready(folder)
    if computed:
        with PieceWriter(folder, len(gene_order)) as w:
            for _, X in aligned_blocks(ingest_file, gene_order, min_overlap, study_id, share):
                w.append(X)
    return {"id": study_id, "computed": bool(computed), **_peak()}


@functools.lru_cache(maxsize=2)
def _encoder(model_dir: str, model_key: str):
    """The encoder, loaded once per worker process (``model_key`` names its content)."""
    from compute.model import load_encoder

    enc = load_encoder(model_dir)
    enc.eval()
    return enc


# -- attributions and embedding ----------------------------------------------------------------
def cells_task(study_id: str, piece: str, model_dir: str, model_key: str, attribution: dict, attr_dir: str, embed_file: str,
               force: bool, threads: int | None = None, embed_genes: list[int] | None = None, embed_ratio: float = 1.0) -> dict:
    """Attributions (``attr_dir``, a piece: compute.model.PieceWriter) and embedding (``embed_file``,
    npy) of one study, from its aligned cells (``piece``, :func:`train_piece_task`) a block of
    rows at a time (a whole number of attribution batches): one block in memory. The attributions
    read every gene; the embedding only ``embed_genes`` when given (compute.embedding.embed's
    ``keep``, with ``embed_ratio``; compute.build.embedding_genes)."""
    from compute.attribution import attribute
    from compute.embedding import embed
    from compute.model import PieceWriter, piece_blocks, piece_info, piece_ready, piece_rows

    need_attr = force or not piece_ready(attr_dir)
    need_embed = force or not Path(embed_file).is_file()
    if need_attr or need_embed:
        _threads(threads)
        encoder = _encoder(model_dir, model_key)
        keep = None
        if embed_genes is not None:
            keep = np.zeros(len(encoder.gene_order), dtype=bool)
            keep[np.asarray(embed_genes, dtype=np.int64)] = True
        n, batch = piece_rows(piece), int(attribution["batch_size"])
        rows = batch * max(1, ROWS_PER_BLOCK // batch)
        emb_tmp = Path(embed_file).with_name(f".{Path(embed_file).name}.tmp.npy")
        Path(embed_file).parent.mkdir(parents=True, exist_ok=True)
        E = np.lib.format.open_memmap(emb_tmp, mode="w+", dtype=np.float32, shape=(n, encoder.latent_dim)) if need_embed else None
        if E is not None:
            allocate(emb_tmp)  # a full disk: an error here, not SIGBUS when the map is written
        writer = None
        try:
            if need_attr:
                writer = PieceWriter(attr_dir, piece_info(piece)["n_genes"])
            for start, X in piece_blocks(piece, rows):
                if writer is not None:
                    writer.append(attribute(encoder, X, method=attribution["method"], n_steps=attribution["n_steps"],
                                            batch_size=batch))
                if E is not None:
                    E[start : start + X.shape[0]] = embed(encoder, X, keep=keep, ratio=embed_ratio)
            if writer is not None:
                writer.close()
                writer = None
            if E is not None:
                E.flush()
                del E
                os.replace(emb_tmp, embed_file)
        except BaseException:
            if writer is not None:
                writer.abort()
            emb_tmp.unlink(missing_ok=True)
            raise
    return {"id": study_id, "computed": bool(need_attr or need_embed), **_peak()}


# -- label transfer: one study's cells against the fixed reference ---------------------------------
@functools.lru_cache(maxsize=1)
def _transfer_reference(path: str):
    """The label transfer's reference (compute.vocabulary.TransferReference), read once per worker."""
    from compute.vocabulary import TransferReference

    with np.load(path, allow_pickle=False) as z:
        return TransferReference(embedding=z["embedding"], term_codes=z["term_codes"], terms=z["terms"], studies=z["studies"])


def transfer_study_task(study_id: str, embed_file: str, reference_file: str, term_names: np.ndarray, term_codes: np.ndarray,
                        shared: set[str], relation, k: int, out_file: str, force: bool, threads: int | None = None) -> dict:
    """Predicted cell-type terms of one study's cells (``out_file``, npz: ``pred``, ``conf`` and
    the study's held-out accuracy counts) from the reference's cells of other studies
    (compute.vocabulary.predict_study); reused when present. Holds one study's embedding and
    the bounded reference, never the atlas's. The study's labels come as its distinct terms
    and one code a cell (``compute.build.StudyTerms``), decoded here: the build process never
    holds, nor sends, every study's decoded labels at once."""
    from compute.vocabulary import accuracy_counts, predict_study

    path = Path(out_file)
    computed = force or not path.is_file()
    if computed:
        _threads(threads)
        pred, conf = predict_study(_transfer_reference(reference_file), np.load(embed_file), study_id, k=k)
        counts = accuracy_counts(np.asarray(term_names, dtype=object)[term_codes], pred, shared, relation)
        atomic_write(path, lambda t: np.savez(t, pred=pred.astype(str), conf=conf, counts=json.dumps(counts)))
    else:
        with np.load(path, allow_pickle=False) as z:
            counts = json.loads(str(z["counts"]))
    return {"id": study_id, "computed": bool(computed), "counts": counts, **_peak()}


# -- UMAP: fit on a stated subsample, transform the rest -------------------------------------------
def umap_fit_task(embed_files: dict[str, str], n_cells: dict[str, int], fit_cells: int, params: dict, seed: int, out_dir: str) -> dict:
    """Fit the layout on at most ``fit_cells`` cells drawn evenly from every study (seeded).
    When every cell is in the fit, each study's layout is written here directly; otherwise the
    fitted reducer and the fitted cells' coordinates are saved for :func:`umap_study_task`."""
    from compute.embedding import umap_fit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(n_cells.values())
    rng = np.random.default_rng(seed)
    picks: dict[str, np.ndarray] = {}
    for sid, n in n_cells.items():
        k = n if total <= fit_cells else int(round(fit_cells * n / total))
        picks[sid] = np.sort(rng.choice(n, size=min(k, n), replace=False)) if k < n else np.arange(n)
    parts = [np.load(embed_files[sid], mmap_mode="r")[picks[sid]] for sid in n_cells]
    reducer, layout = umap_fit(np.concatenate(parts) if parts else np.zeros((0, 1), np.float32), seed=seed, **params)
    fitted = sum(len(p) for p in picks.values())
    offset = 0
    for sid in n_cells:
        k = len(picks[sid])
        coords = layout[offset : offset + k]
        offset += k
        if fitted == total:
            atomic_write(out / f"{sid}.npy", lambda t, c=coords: np.save(t, c))
        else:
            atomic_write(out / f"{sid}.fit.npz", lambda t, c=coords, i=picks[sid]: np.savez(t, rows=i, coords=c))
    if fitted < total:
        atomic_write(out / "reducer.pkl", lambda t: t.write_bytes(pickle.dumps(reducer)))
    return {"fit_cells": int(fitted), "total_cells": int(total), **_peak()}


def umap_study_task(study_id: str, embed_file: str, out_dir: str) -> dict:
    """One study's layout: fitted cells keep their fitted coordinates, the rest are transformed."""
    out = Path(out_dir)
    target = out / f"{study_id}.npy"
    if not target.is_file():
        fit = np.load(out / f"{study_id}.fit.npz")
        emb = np.load(embed_file)
        layout = np.empty((emb.shape[0], 2), dtype=np.float32)
        rest = np.setdiff1d(np.arange(emb.shape[0]), fit["rows"])
        layout[fit["rows"]] = fit["coords"]
        if rest.size:
            reducer = _reducer(str(out / "reducer.pkl"))
            layout[rest] = reducer.transform(emb[rest]).astype(np.float32)
        atomic_write(target, lambda t: np.save(t, layout))
    return {"id": study_id, **_peak()}


@functools.lru_cache(maxsize=1)
def _reducer(path: str):
    return pickle.loads(Path(path).read_bytes())


# -- writing one study into the atlas ----------------------------------------------------------
MARKER = ".written.json"


def _study_files(study_dir: Path) -> list[Path]:
    return sorted(p for p in study_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def write_study_task(root: str, meta: dict, organism: str, ingest_file: str, gene_order: list[str], min_overlap: int,
                     piece: str, attr_dir: str, embed_file: str, umap_file: str | None, key: str, rewrite: bool) -> dict:
    """Write studies/<id>/ (every file atomically) and return its atlas.json entry and the
    checksums of its files. The expression (``piece``: the aligned cells, :func:`train_piece_task`)
    and the attributions (``attr_dir``, :func:`cells_task`) are read and stored a block of rows at
    a time (compute.atlas.write_study_blocks). Skipped when the study's marker records the same ``key`` (its
    inputs and settings) and every recorded file is present with its recorded size."""
    from compute.atlas import write_study_blocks

    study_dir = Path(root) / "studies" / meta["id"]
    marker = study_dir / MARKER
    if marker.is_file() and not rewrite:
        try:
            done = json.loads(marker.read_text())
        except json.JSONDecodeError:
            done = {}
        files = done.get("files", {})
        if done.get("key") == key and files and all(
            (study_dir / name).is_file() and (study_dir / name).stat().st_size == rec["bytes"] for name, rec in files.items()
        ):
            return {"entry": done["entry"], "files": files, "skipped": True, **_peak()}
    import anndata as ad

    from compute.ingest import gene_overlap
    from compute.model import piece_blocks

    a = ad.read_h5ad(ingest_file, backed="r")  # the cells' table and gene names; X is read from the pieces
    try:
        genes = [str(g) for g in a.var_names]
        cells = a.obs.reset_index(drop=True).copy()
        report = study_report(a)
    finally:
        a.file.close()
    ov = gene_overlap(genes, gene_order, min_overlap=min_overlap, where=f"study '{meta['id']}'")
    # the donor or sample metadata ingest carried (sex, age, ...), as its report lists them
    metadata_columns = [str(c) for c in ((report.get("metadata") or {}).get("columns") or {}) if c in cells.columns]
    cells["organism"] = organism
    pos = {g: i for i, g in enumerate(gene_order)}
    measured = np.array(sorted(pos[g] for g in genes if g in pos), dtype=np.int32)
    entry = write_study_blocks(
        Path(root), meta={**meta, "gene_overlap": ov.as_dict(), "report": report, "metadata_columns": metadata_columns},
        cells=cells,
        attributions=lambda: (X for _, X in piece_blocks(attr_dir, ROWS_PER_BLOCK)),
        expression=lambda: (X for _, X in piece_blocks(piece, ROWS_PER_BLOCK)),
        n_genes=len(gene_order), embedding=np.load(embed_file, mmap_mode="r"),
        umap=np.load(umap_file, mmap_mode="r") if umap_file else None, measured=measured,
    )
    files = {p.name: file_record(p) for p in _study_files(study_dir)}
    atomic_write(marker, lambda t: t.write_text(json.dumps({"key": key, "entry": entry, "files": files}, indent=1)))
    return {"entry": entry, "files": files, "skipped": False, **_peak()}

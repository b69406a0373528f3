"""The build: manifest -> ingest -> encoder -> attributions -> embedding/UMAP -> atlas.

Each stage's output is kept in a work folder beside the atlas (``.<name>.work``), keyed by a
hash of its inputs (source file contents, manifest settings, seed, upstream keys), so
re-running with an unchanged manifest reuses finished work, and changing one study redoes
only what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from compute.atlas._format import FORMAT_VERSION, ROOT_FILE
from compute.errors import IngestError
from compute.manifest import Manifest, StudySpec

__all__ = ["PIPELINE_VERSION", "build_atlas", "work_dir"]

# Bump when a stage's output for the same inputs changes: invalidates every cached stage.
PIPELINE_VERSION = "1"
# What the final write puts in the atlas; bumping it rewrites existing atlases from the cached
# stages (2: the expression store was added).
ATLAS_CONTENT_VERSION = "2"


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_key(spec: StudySpec) -> str:
    if spec.source.kind == "scanpy-pbmc68k":
        from importlib.metadata import version

        return f"scanpy-pbmc68k:{version('scanpy')}"
    if spec.source.path is None or not spec.source.path.is_file():
        raise IngestError(
            f"study '{spec.id}' ({spec.source.path}): file not found. For the demo data run "
            "`python -m compute simulate`; otherwise fix 'source.path' (relative to the manifest)."
        )
    return _file_sha(spec.source.path)


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

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            tqdm.write(msg)

    def stage(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 2)
        self(f"  {name}: {self.timings[name]:.1f} s")


def build_atlas(manifest: Manifest, *, force: bool = False, quiet: bool = False) -> Path:
    """Build (or bring up to date) the atlas described by ``manifest``; returns its path."""
    import anndata as ad

    from compute.atlas import StudyArrays, write_atlas
    from compute.attribution import attribute, describe_path
    from compute.embedding import embed, umap_layout
    from compute.ingest import align_to_genes, qc_and_normalise, read_study
    from compute.model import load_encoder, save_encoder, seed_everything, train_encoder

    log = _Log(quiet)
    t_start = time.perf_counter()
    out = manifest.atlas.out
    work = work_dir(manifest)
    for sub in ("ingest", "model", "attr", "embed", "umap"):
        (work / sub).mkdir(parents=True, exist_ok=True)

    source_keys = {s.id: _source_key(s) for s in manifest.studies}
    build_key = _sha(PIPELINE_VERSION, ATLAS_CONTENT_VERSION, FORMAT_VERSION, manifest.fingerprint(), source_keys)
    root_file = out / ROOT_FILE
    if not force and root_file.is_file():
        try:
            if json.loads(root_file.read_text()).get("build", {}).get("key") == build_key:
                log(f"atlas {out} is up to date (manifest and sources unchanged); nothing to do")
                return out
        except json.JSONDecodeError:
            pass

    # 1. ingest ------------------------------------------------------------------------
    t0 = time.perf_counter()
    log(f"[1/6] ingest {len(manifest.studies)} studies")
    ingested: dict[str, ad.AnnData] = {}
    ingest_keys: dict[str, str] = {}
    for spec in tqdm(manifest.studies, desc="ingest", unit="study", disable=quiet):
        key = _sha(PIPELINE_VERSION, _study_dict(spec), asdict(manifest.ingest), source_keys[spec.id])[:16]
        ingest_keys[spec.id] = key
        cached = work / "ingest" / f"{spec.id}-{key}.h5ad"
        if cached.is_file() and not force:
            ingested[spec.id] = ad.read_h5ad(cached)
            continue
        a = qc_and_normalise(read_study(spec), spec, manifest.ingest)
        a.write_h5ad(cached)
        ingested[spec.id] = a
    log.stage("ingest", t0)

    # 2. gene order, alignment -------------------------------------------------------------
    t0 = time.perf_counter()
    pretrained = None
    if manifest.model.kind == "pretrained":
        pretrained = load_encoder(manifest.model.path)
        gene_order = list(pretrained.gene_order)
    else:
        gene_order = sorted(set().union(*(set(a.var_names) for a in ingested.values())))
    aligned: dict[str, sp.csr_matrix] = {}
    overlaps = {}
    for spec in manifest.studies:
        a = ingested[spec.id]
        X, ov = align_to_genes(
            a.X, list(a.var_names), gene_order, min_overlap=manifest.ingest.min_gene_overlap, where=f"study '{spec.id}'"
        )
        aligned[spec.id] = X
        overlaps[spec.id] = ov.as_dict()
    log(f"[2/6] gene order: {len(gene_order)} genes; {sum(a.n_obs for a in ingested.values())} cells pass QC")
    log.stage("align", t0)

    # 3. encoder -----------------------------------------------------------------------
    t0 = time.perf_counter()
    seed_everything(manifest.seed)
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
        model_key = _sha(asdict(manifest.model), manifest.seed, gene_order, ingest_keys)[:16]
        model_dir = work / "model" / model_key
        if (model_dir / "encoder.ckpt").is_file() and not force:
            encoder = load_encoder(model_dir)
            model_card = json.loads((model_dir / "model_card.json").read_text())
            log(f"[3/6] encoder: reused trained model {model_key}")
        else:
            log(f"[3/6] encoder: training {manifest.model.hidden_sizes} -> {manifest.model.latent_dim}")
            X_all = sp.vstack([aligned[s.id] for s in manifest.studies]).tocsr()
            labels = np.concatenate([ingested[s.id].obs["cell_type"].astype(str).to_numpy() for s in manifest.studies])
            studies = np.concatenate([np.full(ingested[s.id].n_obs, s.id) for s in manifest.studies])
            encoder, history = train_encoder(X_all, labels, studies, gene_order, manifest.model, manifest.seed, progress=not quiet)
            model_card = {
                "source": "trained by SigAtlas",
                "architecture": "SCimilarity (Heimberg et al., Nature 2024): Dropout-Linear-BatchNorm1d-PReLU blocks, "
                "Linear to latent, L2 normalised",
                "parameters": asdict(manifest.model),
                "n_genes": len(gene_order),
                "seed": manifest.seed,
                "loss": f"{manifest.model.triplet_weight} x triplet (margin {manifest.model.margin}, semi-hard, across studies) "
                f"+ {1 - manifest.model.triplet_weight:.3f} x reconstruction MSE",
                "training": history,
                "trained_on": {"n_cells": int(X_all.shape[0]), "n_studies": len(manifest.studies)},
            }
            save_encoder(encoder, model_dir, card=model_card)
    encoder.eval()
    log.stage("encoder", t0)

    # 4. attributions --------------------------------------------------------------------
    t0 = time.perf_counter()
    spec_a = manifest.attribution
    log(f"[4/6] attributions: {describe_path(encoder, spec_a.method)}, {spec_a.n_steps} steps")
    attrs: dict[str, sp.csr_matrix] = {}
    for spec in tqdm(manifest.studies, desc="attributions", unit="study", disable=quiet):
        key = _sha(model_key, ingest_keys[spec.id], asdict(spec_a), gene_order)[:16]
        cached = work / "attr" / f"{spec.id}-{key}.npz"
        if cached.is_file() and not force:
            attrs[spec.id] = sp.load_npz(cached).tocsr()
            continue
        A = attribute(encoder, aligned[spec.id], method=spec_a.method, n_steps=spec_a.n_steps, batch_size=spec_a.batch_size)
        sp.save_npz(cached, A, compressed=False)
        attrs[spec.id] = A
    log.stage("attributions", t0)

    # 5. embeddings + UMAP ------------------------------------------------------------------
    t0 = time.perf_counter()
    log("[5/6] embeddings and UMAP")
    embs: dict[str, np.ndarray] = {}
    embed_keys = []
    for spec in manifest.studies:
        key = _sha(model_key, ingest_keys[spec.id], gene_order)[:16]
        embed_keys.append(key)
        cached = work / "embed" / f"{spec.id}-{key}.npy"
        if cached.is_file() and not force:
            embs[spec.id] = np.load(cached)
            continue
        embs[spec.id] = embed(encoder, aligned[spec.id])
        np.save(cached, embs[spec.id])
    umap_key = _sha(embed_keys, asdict(manifest.embedding), manifest.seed)[:16]
    umap_file = work / "umap" / f"umap-{umap_key}.npy"
    if umap_file.is_file() and not force:
        layout = np.load(umap_file)
    else:
        layout = umap_layout(
            np.concatenate([embs[s.id] for s in manifest.studies]),
            n_neighbors=manifest.embedding.n_neighbors,
            min_dist=manifest.embedding.min_dist,
            seed=manifest.seed,
        )
        np.save(umap_file, layout)
    log.stage("embedding+umap", t0)

    # 6. write ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    log(f"[6/6] writing atlas to {out}")
    arrays = []
    offset = 0
    for spec in manifest.studies:
        a = ingested[spec.id]
        n = a.n_obs
        cells = a.obs.reset_index(drop=True).copy()
        cells["organism"] = spec.organism
        arrays.append(
            StudyArrays(
                meta={"id": spec.id, "title": spec.title, "simulated": spec.simulated, "organism": spec.organism,
                      "source": spec.source.kind, "gene_overlap": overlaps[spec.id]},
                cells=cells,
                attributions=attrs[spec.id],
                expression=aligned[spec.id],
                embedding=embs[spec.id],
                umap=layout[offset : offset + n],
            )
        )
        offset += n
    method = {
        "attribution": {"method": spec_a.method, "n_steps": spec_a.n_steps, "baseline": "zeros",
                        "rule": "Gauss-Legendre", "target": "sum_d |e_d * f(x')_d|, e = f(x) fixed",
                        "post": "abs, rows scaled to 1000", "implementation": "exact first-layer identity (method.md 3)"
                        if spec_a.method == "ig" else "captum"},
        "normalisation": "counts -> 1e4 per cell -> log1p",
        "score": "mean attribution over the signature genes, zeros included (method.md 4)",
        "departures": []
        if manifest.model.kind == "pretrained"
        else [f"encoder trained by SigAtlas on this atlas's {offset} cells with hidden sizes "
              f"{list(manifest.model.hidden_sizes)}, not SCimilarity's released 28,231-gene model"],
    }
    log.timings["total_before_write"] = round(time.perf_counter() - t_start, 2)
    write_atlas(
        out,
        name=manifest.atlas.name,
        gene_order=gene_order,
        studies=arrays,
        model_dir=model_dir,
        model_card=model_card,
        build={"key": build_key, "manifest": str(manifest.path), "seed": manifest.seed,
               "pipeline_version": PIPELINE_VERSION, "source_keys": source_keys, "timings_s": log.timings,
               "ingest": asdict(manifest.ingest), "embedding": asdict(manifest.embedding)},
        method=method,
    )
    log.stage("write", t0)
    log(f"atlas written: {out} ({offset} cells, {len(manifest.studies)} studies) in {time.perf_counter() - t_start:.0f} s")
    return out

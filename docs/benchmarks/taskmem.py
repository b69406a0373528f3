"""Peak memory of each per-study build task on one SIMULATED 160,000-cell study, each task in a fresh process
(issue 22; figures in build-cpu.txt, 2026-12-01).

usage, from a checkout (PYTHONPATH=. ; MODE names which code it is: "old" runs the task signatures before commit
41c9114, "new" those after), stages in this order (each reads what the one before wrote under $TASKMEM_OUT):
    SIGATLAS_THREADS=1 PYTHONPATH=. python docs/benchmarks/taskmem.py MODE ingest|piece|cells|write
$TASKMEM_DATA: the corpus `python -m compute bench build --studies 25 --cells-per-study 160000 --genes 1000 --work W`
simulates (W/data); $TASKMEM_OUT: a scratch folder (default /tmp/tm)."""
import json, sys, os, time
from pathlib import Path
import numpy as np, yaml
mode, stage = sys.argv[1], sys.argv[2]
W = Path(os.environ.get("TASKMEM_OUT", "/tmp/tm")) / mode; W.mkdir(parents=True, exist_ok=True)
from compute.process import peak_rss
from compute.build import _tasks as tasks
from compute.manifest import parse_manifest
from compute.demo import SimulationConfig, demo_manifest_text
sim = SimulationConfig(n_studies=25, disease_donors=4, healthy_donors=1, cells_per_sample=(32000, 32001), max_genes=1000, seed=0)
doc = yaml.safe_load(demo_manifest_text(sim, data_dir=os.environ.get("TASKMEM_DATA", "/tmp/b29/big/data")))
doc["studies"] = [s for s in doc["studies"] if s.get("simulated")][:1]
m = parse_manifest(doc, W.parent / "manifest.yaml")
spec = m.studies[0]
ing = str(W.parent / "SIM01.ingest.h5ad")
genes_file = W.parent / "genes.json"
t0 = time.perf_counter()
if stage == "ingest":
    r = tasks.ingest_task(spec, m.ingest, ing, True)
    genes_file.write_text(json.dumps(sorted(r["var_names"])))
else:
    genes = json.loads(genes_file.read_text())
    piece, attr, emb = str(W / "piece"), str(W / "attr"), str(W / "embed.npy")
    if stage == "piece":
        tasks.train_piece_task(spec.id, ing, genes, 10, 1.0, piece, True)
    elif stage == "cells":
        import torch
        from compute.model import Encoder, save_encoder
        mdir = W.parent / "model"
        if not mdir.is_dir():
            torch.manual_seed(0); enc = Encoder(len(genes), hidden_sizes=(256, 128), latent_dim=64); enc.gene_order = genes
            save_encoder(enc, mdir)
        att = {"method": "ig", "n_steps": 10, "batch_size": 256}
        if mode == "old":
            tasks.cells_task(spec.id, ing, genes, 10, str(mdir), "k", att, attr + ".npz", emb, True, 1, 1.0)
        else:
            tasks.cells_task(spec.id, piece, str(mdir), "k", att, attr, emb, True, 1)
    elif stage == "write":
        root = W / "atlas"; root.mkdir(exist_ok=True)
        meta = {"id": spec.id, "title": "SIM01", "simulated": True}
        if mode == "old":
            tasks.write_study_task(str(root), meta, "human", ing, genes, 10, attr + ".npz", emb, None, "k", True, 1.0)
        else:
            tasks.write_study_task(str(root), meta, "human", ing, genes, 10, piece, attr, emb, None, "k", True)
print(f"{mode:4s} {stage:7s} peak {peak_rss() / 2**20:7,.0f} MB  {time.perf_counter() - t0:6.1f} s", flush=True)

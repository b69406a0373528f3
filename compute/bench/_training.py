"""``python -m compute bench training``: the encoder's training alone, at corpus scale, on
SIMULATED pieces (random sparse cells written straight as training pieces, no ingest).

For each corpus size, a fresh process memory-maps the pieces and trains ``batches`` batches
(compute.model.train_on_corpus, stopped there), and the benchmark prints cells per second, the
share of the time spent reading cells from the pieces, and the process's peak resident memory:
it should not grow with the corpus (the sampler's per-cell index arrays, 4 bytes a cell
each, are the only part that does). On a GPU it also times the attributions (exact IG) of the
trained encoder, the other GPU stage of a build.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TrainingBenchConfig", "run_training_bench"]


@dataclass(frozen=True)
class TrainingBenchConfig:
    cells: tuple[int, ...] = (250_000, 1_000_000, 4_000_000)
    cells_per_study: int = 10_000
    genes: int = 2000
    density: float = 0.05
    hidden: tuple[int, ...] = (256, 128)
    latent: int = 64
    batch_size: int = 512
    batches: int = 60
    device: str | None = None  # default: CUDA when present
    threads: int | None = None
    attribution_cells: int = 0  # cells attributed after training (0: skip), IG 50 steps
    work: str = "/tmp/sigatlas-bench-training"
    seed: int = 0


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def _write_corpus(folder: Path, cfg: TrainingBenchConfig, n_cells: int) -> list[str]:
    """Pieces of ``cells_per_study`` random cells each (reused when already written)."""
    import numpy as np
    import scipy.sparse as sp

    from compute.model import piece_ready, write_piece

    dirs = []
    rng = np.random.default_rng(cfg.seed)
    for k, start in enumerate(range(0, n_cells, cfg.cells_per_study)):
        n = min(cfg.cells_per_study, n_cells - start)
        d = folder / f"study{k:05d}-{n}"
        dirs.append(str(d))
        if not piece_ready(d):
            # the same number of values in every cell, at random genes (a repeat is summed): fast at any size
            per_cell = max(1, int(round(cfg.density * cfg.genes)))
            indices = np.sort(rng.integers(0, cfg.genes, size=(n, per_cell), dtype=np.int32), axis=1).ravel()
            data = np.log1p(rng.random(n * per_cell, dtype=np.float32) * 20)
            X = sp.csr_matrix((data, indices, np.arange(0, n * per_cell + 1, per_cell)), shape=(n, cfg.genes))
            X.sum_duplicates()
            write_piece(d, X)
    return dirs


def _one(cfg: dict, n_cells: int, out: str) -> None:
    """Child process: train ``batches`` batches on an ``n_cells`` corpus, write the figures."""
    import numpy as np
    import torch

    from compute.manifest import ModelSpec
    from compute.model import CellCorpus, TrainingStopped, train_on_corpus
    from compute.process import peak_rss

    c = TrainingBenchConfig(**{**cfg, "cells": tuple(cfg["cells"]), "hidden": tuple(cfg["hidden"])})
    if c.threads:
        torch.set_num_threads(c.threads)
    dirs = _write_corpus(Path(c.work) / f"corpus-{c.genes}-{c.density}", c, n_cells)
    corpus = CellCorpus.open(dirs, c.genes)
    rng = np.random.default_rng(c.seed)
    studies = np.repeat(np.arange(len(dirs), dtype=np.int32), np.diff(corpus.offsets))
    labels = rng.integers(0, 30, corpus.n_cells).astype(np.int32)
    read_s = 0.0
    rows = corpus.rows

    def timed_rows(idx):
        nonlocal read_s
        t = time.perf_counter()
        out = rows(idx)
        read_s += time.perf_counter() - t
        return out

    corpus.rows = timed_rows
    spec = ModelSpec(hidden_sizes=c.hidden, latent_dim=c.latent, epochs=1, batch_size=c.batch_size)
    device = c.device or ("cuda" if torch.cuda.is_available() else "cpu")
    warm = 5
    t0 = time.perf_counter()
    try:  # a few batches first: allocator and kernels warmed up before the timed ones
        train_on_corpus(corpus, studies, labels, [f"G{i}" for i in range(c.genes)], spec, c.seed, progress=False,
                        stop_after=warm, device=device)
    except TrainingStopped:
        pass
    read_s = 0.0
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    try:
        train_on_corpus(corpus, studies, labels, [f"G{i}" for i in range(c.genes)], spec, c.seed, progress=False,
                        stop_after=c.batches, device=device)
    except TrainingStopped:
        pass
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    result = {"cells": corpus.n_cells, "studies": len(dirs), "device": device, "threads": torch.get_num_threads(),
              "batches": c.batches, "wall_s": round(wall, 2), "train_cells_per_s": round(c.batches * c.batch_size / wall, 1),
              "read_share": round(read_s / wall, 3), "peak_rss_bytes": peak_rss(), "max_rows_read_at_once": corpus.max_rows_per_call}
    if c.attribution_cells:
        import scipy.sparse as sp

        from compute.attribution import attribute
        from compute.model import Encoder

        enc = Encoder(c.genes, c.hidden, c.latent).eval()
        enc.gene_order = [f"G{i}" for i in range(c.genes)]
        X = sp.csr_matrix(corpus.rows(np.arange(min(c.attribution_cells, corpus.n_cells))))
        attribute(enc, X[:512], n_steps=50, batch_size=512, device=device)  # warm-up
        t = time.perf_counter()
        attribute(enc, X, n_steps=50, batch_size=512, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        result["attribution_cells_per_s"] = round(X.shape[0] / (time.perf_counter() - t), 1)
    Path(out).write_text(json.dumps(result))


def run_training_bench(cfg: TrainingBenchConfig, json_path: str | None = None) -> dict:
    import multiprocessing as mp

    print(f"SigAtlas training benchmark on SIMULATED cells: {cfg.genes:,} genes, {100 * cfg.density:.0f}% non-zero, "
          f"{cfg.cells_per_study:,} cells a study; encoder {list(cfg.hidden)} -> {cfg.latent}, batch {cfg.batch_size}; "
          f"{cfg.batches} batches timed per corpus size, each size in a fresh process", flush=True)
    rows = []
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    for n in cfg.cells:
        out = Path(cfg.work) / f"result-{n}.json"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=_one, args=(asdict(cfg), n, str(out)))
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not out.is_file():
            raise RuntimeError(f"the training benchmark at {n:,} cells failed (exit code {proc.exitcode})")
        row = json.loads(out.read_text())
        row["total_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"  {row['cells']:>11,} cells ({row['studies']:,} pieces)  {row['device']} ({row['threads']} threads)  "
              f"{row['train_cells_per_s']:>9,.0f} cells/s trained  reading {100 * row['read_share']:.0f}% of the wall time (overlapped)  "
              f"peak {_mb(row['peak_rss_bytes'])}  rows read at once <= {row['max_rows_read_at_once']}"
              + (f"  IG {row['attribution_cells_per_s']:,.0f} cells/s" if "attribution_cells_per_s" in row else ""), flush=True)
    if len(rows) > 1:
        print(f"  {rows[-1]['cells'] / rows[0]['cells']:.0f}x the cells: peak memory x{rows[-1]['peak_rss_bytes'] / rows[0]['peak_rss_bytes']:.2f}")
    result = {"config": asdict(cfg), "rows": rows}
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1))
    return result

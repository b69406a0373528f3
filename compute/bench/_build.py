"""``python -m compute bench build``: the distributed build at scale, on SIMULATED studies.

For each study count, a fresh atlas is built from the same simulated corpus (the first N
studies) on a LocalCluster (or the scheduler given), each build in a fresh process of its own,
so every figure is that build's own peak. The benchmark prints the wall time, cells per second,
the time of each stage and the peak resident memory of every process: each Dask worker (the
largest resident set its tasks saw), the build process (the driver: gene order, the label
transfer's reference, the atlas root, the gene modules), also by the end of each stage, and the
process(es) that trained the encoder (the build process itself, or the ``--train-workers``
ranks). Memory should stay flat as the corpus grows: each task holds one study, training reads
the cells a batch at a time from memory-mapped pieces, and the label transfer predicts one
study at a time against a bounded reference.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BuildBenchConfig", "run_build_bench"]


@dataclass(frozen=True)
class BuildBenchConfig:
    studies: tuple[int, ...] = (25, 50, 100)
    cells_per_study: int = 10_000
    samples_per_study: int = 5  # 4 disease donors + 1 healthy
    max_genes: int = 2000
    hidden: tuple[int, ...] = (256, 128)
    latent: int = 64
    epochs: int = 1
    n_steps: int = 20
    fit_cells: int = 50_000
    workers: int | None = None
    train_workers: int = 1
    scheduler: str | None = None
    work: str | None = None  # folder for data and atlases (default: a temporary folder, removed after)
    seed: int = 0
    corpus_studies: int | None = None  # studies simulated (default: the largest of ``studies``); the corpus is reused when it matches


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def _one_build(manifest: str, cfg: dict, out: str) -> None:
    """Child process: build the atlas, write the stats, this process's peak and the trainer's."""
    from compute.build import build_atlas
    from compute.manifest import load_manifest
    from compute.process import peak_rss

    stats: dict = {}
    t0 = time.perf_counter()
    atlas = build_atlas(load_manifest(manifest), quiet=True, scheduler=cfg["scheduler"], workers=cfg["workers"], stats=stats,
                        train_workers=cfg["train_workers"])
    stats["build_s"] = round(time.perf_counter() - t0, 1)
    stats["driver_peak_bytes"] = peak_rss()
    root = json.loads((Path(atlas) / "atlas.json").read_text())
    stats["trainer_peak_bytes"] = int(root["model_card"]["training"].get("peak_rss_bytes", 0))
    stats["label_transfer"] = (root.get("vocabulary") or {}).get("label_transfer", {})
    Path(out).write_text(json.dumps(stats, default=str))


def _build_in_fresh_process(folder: Path, cfg: BuildBenchConfig) -> dict:
    """Run :func:`_one_build` in a spawned process (its peak memory is that build's alone)."""
    import multiprocessing as mp

    out = folder / "stats.json"
    proc = mp.get_context("spawn").Process(target=_one_build, args=(str(folder / "manifest.yaml"), asdict(cfg), str(out)))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or not out.is_file():
        raise RuntimeError(f"the benchmark build in {folder} failed (exit code {proc.exitcode}); run "
                           f"`python -m compute build {folder / 'manifest.yaml'}` to see why")
    return json.loads(out.read_text())


def run_build_bench(cfg: BuildBenchConfig, json_path: str | None = None) -> dict:
    import yaml

    from compute.demo import SimulationConfig, demo_manifest_text, simulate_studies

    base = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="sigatlas-bench-build-"))
    base.mkdir(parents=True, exist_ok=True)
    per_sample = max(1, cfg.cells_per_study // cfg.samples_per_study)
    if cfg.corpus_studies is not None and cfg.corpus_studies < max(cfg.studies):
        raise ValueError(f"--corpus-studies {cfg.corpus_studies} is below the largest of --studies ({max(cfg.studies)}): "
                         "simulate at least as many studies as a build uses")
    sim = SimulationConfig(n_studies=cfg.corpus_studies or max(cfg.studies), disease_donors=cfg.samples_per_study - 1, healthy_donors=1,
                           cells_per_sample=(per_sample, per_sample + 1), max_genes=cfg.max_genes, seed=cfg.seed)
    print(f"SigAtlas build benchmark on SIMULATED data: {sim.n_studies} studies x ~{cfg.cells_per_study:,} cells, "
          f"{cfg.max_genes} genes; encoder {list(cfg.hidden)} -> {cfg.latent}, {cfg.epochs} epoch(s); IG {cfg.n_steps} steps; "
          f"UMAP fitted on {cfg.fit_cells:,} cells", flush=True)
    t0 = time.perf_counter()
    simulate_studies(base / "data", sim)
    print(f"  simulated the corpus in {time.perf_counter() - t0:.0f} s ({base / 'data'})", flush=True)
    doc = yaml.safe_load(demo_manifest_text(sim, data_dir=str(base / "data")))
    simulated = [s for s in doc["studies"] if s.get("simulated")]
    rows = []
    try:
        for n in cfg.studies:
            folder = base / f"studies-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            doc_n = dict(doc, studies=simulated[:n], atlas={"name": f"bench-{n}", "out": str(folder / "atlas")},
                         model={"kind": "train", "hidden_sizes": list(cfg.hidden), "latent_dim": cfg.latent, "epochs": cfg.epochs,
                                "batch_size": 512},
                         attribution={"method": "ig", "n_steps": cfg.n_steps, "batch_size": 256},
                         embedding={"n_neighbors": 15, "min_dist": 0.3, "fit_cells": cfg.fit_cells})
            (folder / "manifest.yaml").write_text(yaml.safe_dump(doc_n, sort_keys=False))
            t0 = time.perf_counter()
            stats = _build_in_fresh_process(folder, cfg)
            wall = time.perf_counter() - t0
            by_worker: dict[str, int] = {}
            for task in stats["tasks"]:
                by_worker[task["worker"]] = max(by_worker.get(task["worker"], 0), task["peak_rss"])
            stage_peak: dict[str, int] = {}  # the largest worker's resident set by the end of each stage (cumulative)
            for task in stats["tasks"]:
                stage_peak[task["stage"]] = max(stage_peak.get(task["stage"], 0), task["peak_rss"])
            row = {"stage_worker_peak_bytes": stage_peak, "studies": n, "cells": stats["n_cells"], "wall_s": round(wall, 1),
                   "cells_per_s": round(stats["n_cells"] / wall, 1),
                   "stages_s": stats["timings_s"], "worker_peak_bytes": sorted(by_worker.values()),
                   "max_worker_peak_bytes": max(by_worker.values()), "driver_peak_bytes": stats["driver_peak_bytes"],
                   "trainer_peak_bytes": stats["trainer_peak_bytes"], "train_workers": cfg.train_workers,
                   "build_s": stats["build_s"], "build_process_peak_bytes": stats.get("build_process_peak_bytes", {}),
                   "label_transfer": stats.get("label_transfer", {})}
            rows.append(row)
            stages = ", ".join(f"{k} {v:.0f} s" for k, v in stats["timings_s"].items() if k != "total_before_root")
            print(f"  {n:4d} studies {row['cells']:>10,} cells  {wall:7.0f} s  {row['cells_per_s']:8,.0f} cells/s  "
                  f"worker peak {_mb(row['max_worker_peak_bytes'])} (all: {', '.join(_mb(b) for b in row['worker_peak_bytes'])})  "
                  f"build process {_mb(row['driver_peak_bytes'])}  trainer {_mb(row['trainer_peak_bytes'])}"
                  + (f" (rank 0 of {cfg.train_workers})" if cfg.train_workers > 1 else " (the build process)"), flush=True)
            print(f"       stages: {stages}", flush=True)
            print("       largest worker by the end of: " + ", ".join(f"{k} {_mb(v)}" for k, v in stage_peak.items()), flush=True)
            acc = row["label_transfer"].get("accuracy", {})
            if "exact" in acc:
                print(f"       label transfer: {acc['n_evaluated']:,} held-out cells, exact {100 * acc['exact']:.2f}%, against "
                      f"{row['label_transfer'].get('reference_cells', 0):,} reference cells", flush=True)
            print("       build process by the end of: " + ", ".join(f"{k} {_mb(v)}" for k, v in row["build_process_peak_bytes"].items()),
                  flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not cfg.work:
            shutil.rmtree(base, ignore_errors=True)
    if len(rows) > 1:
        first, last = min(rows, key=lambda r: r["studies"]), max(rows, key=lambda r: r["studies"])
        print(f"  {last['studies'] / first['studies']:.0f}x the studies: worker peak memory x"
              f"{last['max_worker_peak_bytes'] / first['max_worker_peak_bytes']:.2f}, build process x"
              f"{last['driver_peak_bytes'] / first['driver_peak_bytes']:.2f}, trainer x"
              f"{last['trainer_peak_bytes'] / first['trainer_peak_bytes']:.2f}, wall time x{last['wall_s'] / first['wall_s']:.2f}")
    result = {"config": asdict(cfg), "rows": rows}
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1))
    return result

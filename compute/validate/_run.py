"""The validation run: simulate corpora with planted programs, build an atlas of each, measure.

Scenarios (all SIMULATED studies, plus the real PBMC 68k study that every demo-style manifest
carries):
- effect: the planted fold change scaled by ``effect_levels`` at the demo's noise;
- batch / depth / dropout: at ``robustness_effect``, one noise source grown at a time;
- seed: the robustness base rebuilt with other encoder-training seeds (same data).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from compute.demo import SimulationConfig, demo_manifest_text, simulate_studies

__all__ = ["FULL", "QUICK", "Profile", "Scenario", "add_gene_ranking", "run_validation", "scenarios"]

BASE_BATCH, BASE_DEPTH, BASE_DROPOUT = 0.25, 0.35, (0.03, 0.12)


@dataclass(frozen=True)
class Profile:
    """Sizes and levels of one validation run."""

    name: str = "full"
    n_studies: int = 18
    disease_donors: int = 3
    healthy_donors: int = 2
    cells_per_sample: tuple[int, int] = (120, 161)
    max_genes: int = 1500
    # the demo manifest's encoder, so the figures describe the model `make demo` builds
    model: dict = field(default_factory=lambda: {"kind": "train", "hidden_sizes": [512, 256], "latent_dim": 128, "epochs": 12,
                                                 "batch_size": 512})
    effect_levels: tuple[float, ...] = (1.0, 0.5, 0.25, 0.12, 0.06)
    robustness_effect: float = 0.25
    batch_levels: tuple[float, ...] = (0.5, 1.0)
    depth_levels: tuple[float, ...] = (0.8, 1.5)
    dropout_levels: tuple[tuple[float, float], ...] = ((0.2, 0.3), (0.4, 0.5))
    seeds: tuple[int, ...] = (0, 1, 2)
    n_random: int = 40
    random_size: int = 20
    n_null: int = 199
    cell_min: int = 10
    samp_min: int = 3
    sim_seed: int = 0


FULL = Profile()
QUICK = Profile(name="quick", n_studies=9, disease_donors=3, healthy_donors=1, cells_per_sample=(170, 220), max_genes=900,
                model={"kind": "train", "hidden_sizes": [128, 64], "latent_dim": 32, "epochs": 4, "batch_size": 256},
                effect_levels=(1.0,), robustness_effect=1.0, batch_levels=(1.0,), depth_levels=(), dropout_levels=(), seeds=(0, 1),
                n_random=4, n_null=49)


@dataclass(frozen=True)
class Scenario:
    key: str
    axis: str  # effect, batch, depth, dropout, seed
    label: str
    sim: SimulationConfig
    model_seed: int = 0


def _sim(profile: Profile, **kw) -> SimulationConfig:
    return SimulationConfig(n_studies=profile.n_studies, disease_donors=profile.disease_donors, healthy_donors=profile.healthy_donors,
                            cells_per_sample=profile.cells_per_sample, max_genes=profile.max_genes, seed=profile.sim_seed, **kw)


def scenarios(profile: Profile) -> list[Scenario]:
    """Every atlas the run builds, in order; a condition shared by two axes is built once."""
    out: dict[str, Scenario] = {}

    def add(key, axis, label, model_seed=0, **kw):
        if key not in out:
            out[key] = Scenario(key, axis, label, _sim(profile, **kw), model_seed)

    for e in profile.effect_levels:
        add(f"effect-{e:g}", "effect", f"effect x{e:g}", effect_scale=e)
    r = profile.robustness_effect
    base = f"effect-{r:g}"
    add(base, "effect", f"effect x{r:g}", effect_scale=r)
    for b in profile.batch_levels:
        add(f"batch-{b:g}", "batch", f"batch sd {b:g}", effect_scale=r, batch_sd=b)
    for d in profile.depth_levels:
        add(f"depth-{d:g}", "depth", f"depth sd {d:g}", effect_scale=r, depth_sd=d)
    for lo, hi in profile.dropout_levels:
        add(f"dropout-{lo:g}-{hi:g}", "dropout", f"{lo:.0%}-{hi:.0%} genes missing per study", effect_scale=r,
            missing_gene_fraction=(lo, hi))
    for s in profile.seeds:
        if s != 0:
            add(f"seed-{s}", "seed", f"encoder seed {s}", model_seed=s, effect_scale=r)
    return list(out.values())


def _manifest(sc: Scenario, profile: Profile, work: Path) -> Path:
    data = work / "data" / sc.sim.fingerprint()
    simulate_studies(data, sc.sim)
    doc = yaml.safe_load(demo_manifest_text(sc.sim, data_dir=str(data)))
    doc["atlas"] = {"name": f"validate-{sc.key}", "out": str(work / "atlas" / sc.key)}
    doc["seed"] = sc.model_seed
    doc["model"] = dict(profile.model)
    doc["embedding"] = {"n_neighbors": 10, "min_dist": 0.3, "umap": False}  # no layout needed to measure rankings
    path = work / "manifests" / f"{sc.key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# SigAtlas validation manifest: SIMULATED studies (plus the real PBMC 68k study)\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path


_ONE_THREAD = {"SIGATLAS_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}


def _scenario_job(sc: Scenario, profile: Profile, work: str) -> tuple[dict, list[dict]]:
    """Simulate, build and measure one scenario (run in a worker process)."""
    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.integration import integration_report
    from compute.manifest import load_manifest
    from compute.validate import _metrics as m

    work = Path(work)
    t0 = time.perf_counter()
    manifest = load_manifest(_manifest(sc, profile, work))
    stats: dict = {}
    path = build_atlas(manifest, quiet=True, scheduler="sync", stats=stats)
    truth = json.loads((work / "data" / sc.sim.fingerprint() / "planted_truth.json").read_text())
    atlas = Atlas.open(path, cache=False)
    t1 = time.perf_counter()
    links = m.evaluate_links(atlas, truth, cell_min=profile.cell_min, samp_min=profile.samp_min)
    # how well the encoder put the same cell type from different studies together (issue 15)
    integration = integration_report(atlas.embedding(), atlas.cells).as_dict()
    for rec in links:
        rec.update(scenario=sc.key, axis=sc.axis, label=sc.label, effect_scale=sc.sim.effect_scale, batch_sd=sc.sim.batch_sd,
                   depth_sd=sc.sim.depth_sd, missing=list(sc.sim.missing_gene_fraction), model_seed=sc.model_seed)
    info = {"key": sc.key, "axis": sc.axis, "label": sc.label, "sim": asdict(sc.sim), "model_seed": sc.model_seed,
            "n_cells": atlas.n_cells, "build_s": round(t1 - t0, 1), "measure_s": round(time.perf_counter() - t1, 1),
            "integration": integration, "model": _loss_settings(atlas.meta.get("model_card") or {}),
            "stages_s": {k: round(v, 1) for k, v in (stats.get("timings_s") or {}).items() if isinstance(v, int | float)}}
    return info, links


def _loss_settings(card: dict) -> dict:
    """The encoder's training settings that decide integration, from an atlas's model card."""
    p = card.get("parameters") or {}
    out = {k: p[k] for k in ("triplet_weight", "margin", "epochs", "batch_size") if k in p}
    if "reconstruction_mse" in (card.get("training") or {}):
        out["reconstruction_mse"] = card["training"]["reconstruction_mse"]
    return out


def run_validation(*, report: str | Path | None = "docs/validation.md", work: str | Path = ".validation", profile: Profile = FULL,
                   reuse: bool = False, jobs: int | None = None, log=print) -> dict:
    """Build every scenario's atlas, measure, and write the report (with ``results.json`` and
    figures in a folder beside it). Returns the results.

    ``jobs``: scenarios built at once, each in its own process with one thread (default: one
    per core). Torch's and BLAS's thread pools spin while they wait; two builds of two threads
    each on two busy cores ran ten times slower than one thread each."""
    from compute.atlas import Atlas
    from compute.demo import CELL_TYPES
    from compute.reference import immune_markers
    from compute.validate import _metrics as m
    from compute.validate._generank import evaluate_gene_ranking

    t_start = time.perf_counter()
    work = Path(work).resolve()  # manifests name their data by absolute path
    if work.exists() and not reuse:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    plan = scenarios(profile)
    results: dict = {"profile": asdict(profile), "scenarios": [], "links": [], "timings": {}}
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(plan)))
    log(f"{len(plan)} atlases to build and measure, {jobs} at a time (one thread each)")
    done: dict[str, tuple[dict, list[dict]]] = {}
    if jobs == 1:
        for i, sc in enumerate(plan, 1):
            log(f"[{i}/{len(plan)}] {sc.key}: simulate, build, measure ({sc.label})")
            done[sc.key] = _scenario_job(sc, profile, str(work))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        saved = {k: os.environ.get(k) for k in _ONE_THREAD}
        os.environ.update(_ONE_THREAD)  # spawned workers start with one thread each: no oversubscription
        try:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_scenario_job, sc, profile, str(work)): sc for sc in plan}
                for n, fut in enumerate(as_completed(futures), 1):
                    sc = futures[fut]
                    done[sc.key] = fut.result()
                    log(f"[{n}/{len(plan)}] {sc.key} ({sc.label}): built in {done[sc.key][0]['build_s']:.0f} s")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    atlases, truths = {}, {}
    for sc in plan:
        info, links = done[sc.key]
        results["scenarios"].append(info)
        results["links"] += links
        atlases[sc.key] = Atlas.open(work / "atlas" / sc.key, cache=False)
        truths[sc.key] = json.loads((work / "data" / sc.sim.fingerprint() / "planted_truth.json").read_text())

    first = plan[0].key
    base = f"effect-{profile.robustness_effect:g}"
    t0 = time.perf_counter()
    log(f"calibration on {first}: {profile.n_random} random gene sets and cell-type marker sets, {profile.n_null} null draws each")
    markers = immune_markers()
    marker_sets = {f"{ct} markers": tuple(dict.fromkeys(g for e in entries for g in markers[e])) for ct, (entries, _) in CELL_TYPES.items()}
    cal = m.evaluate_calibration(atlases[first], truths[first], n_random=profile.n_random, size=profile.random_size,
                                 n_null=profile.n_null, cell_min=profile.cell_min, samp_min=profile.samp_min, marker_sets=marker_sets,
                                 seed=profile.sim_seed)
    results["calibration"] = {"rates": cal["rates"].to_dict("records"), "n_null": cal["n_null"], "p_floor": cal["p_floor"],
                              "p_values": cal["p_values"].to_dict("records"), "atlas": first}
    results["timings"]["calibration_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    log("stability across encoder seeds")
    seed_keys = {s: (base if s == 0 else f"seed-{s}") for s in profile.seeds}
    rankings, link_recs, cell_scores = {}, {}, {}
    for s, key in seed_keys.items():
        recs = [r for r in results["links"] if r["scenario"] == key]
        link_recs[s] = recs
        rankings[s] = {r["program"]: r["ranking"] for r in recs if r["method"] == "attribution"}
        cell_scores[s] = {p["name"]: atlases[key].score(list(p["genes"])) for p in truths[key]["programs"]}
    results["stability"] = m.stability(rankings, link_recs, cell_scores) if len(seed_keys) > 1 else []
    results["timings"]["stability_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    log("real data: PBMC 68k marker signatures")
    results["pbmc"] = m.evaluate_pbmc(atlases[first])
    results["timings"]["pbmc_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    log("gene modules against the planted programs")
    results["modules"] = m.evaluate_modules(atlases[first], truths[first], seed=profile.sim_seed)
    results["timings"]["modules_s"] = round(time.perf_counter() - t0, 1)

    log("genes ranked within each cell type: attribution vs expression (real PBMC study and the whole atlas)")
    results["gene_ranking"] = evaluate_gene_ranking(atlases[first], cell_min=profile.cell_min)
    results["timings"]["total_s"] = round(time.perf_counter() - t_start, 1)
    results["timings"]["builds_s"] = round(sum(s["build_s"] for s in results["scenarios"]), 1)
    results["timings"]["jobs"] = jobs
    results["base"] = {"first": first, "robustness": base}
    if report is not None:
        from compute.validate._report import write_report

        write_report(results, Path(report))
        log(f"report written: {report} (total {results['timings']['total_s']:.0f} s)")
    return results


def add_gene_ranking(results_path: str | Path, atlas_path: str | Path, report: str | Path = "docs/validation.md", *,
                     cell_min: int = 10, log=print) -> dict:
    """Measure only the gene-ranking section on the atlas at ``atlas_path`` (the demo atlas, say),
    put it into the run's ``results.json`` and rewrite ``report`` from it (the other sections as
    that run recorded them). Returns the updated results."""
    from compute.atlas import Atlas
    from compute.validate._generank import evaluate_gene_ranking
    from compute.validate._report import write_report

    results_path = Path(results_path)
    if not results_path.is_file():
        raise FileNotFoundError(f"no validation results at {results_path}: run `python -m compute validate` first")
    results = json.loads(results_path.read_text())
    log(f"genes ranked within each cell type of {atlas_path}: attribution vs expression")
    results["gene_ranking"] = evaluate_gene_ranking(Atlas.open(atlas_path), cell_min=cell_min)
    write_report(results, Path(report))
    log(f"report rewritten: {report} (gene ranking measured in {results['gene_ranking']['seconds']:.0f} s)")
    return results

"""Command line: ``python -m compute {build,census-plan,verify,simulate,info,import-signature,validate,modules,labels,genes,bench} ...``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from compute.errors import SigAtlasError


def _cmd_build(args) -> int:
    import logging

    from compute.build import build_atlas
    from compute.manifest import load_manifest

    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        logging.getLogger("sigatlas.build").setLevel(logging.DEBUG)
    manifest = load_manifest(args.manifest)
    out = build_atlas(manifest, force=args.force, quiet=args.quiet, scheduler=args.scheduler, workers=args.workers,
                      rewrite=args.rewrite, verbose=args.verbose, train_workers=args.train_workers,
                      checkpoint_every=args.checkpoint_every)
    if not args.quiet:
        from compute.atlas import Atlas, study_report_text

        print(study_report_text(Atlas.open(out, cache=False).meta))
    return 0


def _cmd_census_plan(args) -> int:
    from compute.build import work_dir
    from compute.census import census_entries, plan_json, plan_manifest, plan_text
    from compute.manifest import load_manifest

    if not args.bandwidth > 0:
        print(f"error: --bandwidth must be a positive number of MB/s, got {args.bandwidth}", file=sys.stderr)
        return 2
    manifest = load_manifest(args.manifest)
    if not census_entries(manifest):
        print(f"error: {manifest.path} has no study with source.kind 'census' (see README, 'The CELLxGENE Census')",
              file=sys.stderr)
        return 2
    log = (lambda _: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    plans = plan_manifest(manifest, work_dir(manifest) / "census", log=log)
    if args.json:
        print(json.dumps(plan_json(plans, manifest, args.bandwidth), indent=1, default=str))
    else:
        print(plan_text(plans, manifest, args.bandwidth))
    return 0


def _cmd_verify(args) -> int:
    from compute.atlas import verify_atlas

    report = verify_atlas(args.atlas, hashes=not args.sizes_only)
    print(report.text())
    return 0 if report.ok else 1


def _cmd_simulate(args) -> int:
    from compute.demo import SimulationConfig, demo_manifest_text, simulate_studies

    cfg = SimulationConfig(seed=args.seed, n_studies=args.studies)
    out = Path(args.out)
    print(f"simulating {cfg.n_studies} studies (SIMULATED data, seed {cfg.seed}) into {out} ...", flush=True)
    truth = simulate_studies(out, cfg)
    print(f"  {len(truth['studies'])} simulated studies; planted truth: {out / 'planted_truth.json'}")
    if args.write_manifest:
        Path(args.write_manifest).write_text(demo_manifest_text(cfg, data_dir=str(out)))
        print(f"  manifest written: {args.write_manifest}")
    return 0


def _cmd_info(args) -> int:
    from compute.atlas import Atlas, study_report_text

    atlas = Atlas.open(args.atlas, cache=False)
    meta = atlas.meta
    if args.json:  # only JSON on stdout, so it can be piped into jq or json.load
        keep = ("name", "format_version", "created", "n_cells", "n_genes", "method", "build", "report")
        doc = {k: meta.get(k) for k in keep}
        doc["studies"] = [{k: v for k, v in e.items() if k not in ("dir",)} for e in meta["studies"]]
        print(json.dumps(doc, indent=1, default=str))
        return 0
    print(repr(atlas))
    print(f"format_version {meta['format_version']}, created {meta.get('created')}")
    for s in atlas.studies:
        tag = " [SIMULATED]" if s.simulated else ""
        print(f"  {s.id:10s} {s.n_cells:7d} cells  {s.title}{tag}")
    print(study_report_text(meta))
    return 0


def _cmd_import_signature(args) -> int:
    from compute.atlas import import_signature

    import_signature(args.attributions, args.gene_order, args.out, name=args.name, block_cells=args.block_cells)
    print(f"atlas written: {args.out}  (open it with: python -m dashboard --atlas {args.out})")
    return 0


def _cmd_bench_attributions(args) -> int:
    from compute.bench import AttributionBenchConfig, run_attribution_bench

    cfg = AttributionBenchConfig(
        cells=args.cells,
        genes=args.genes,
        hidden=tuple(args.hidden),
        latent=args.latent,
        density=args.density,
        captum_cells=args.captum_cells,
        memory_cells=tuple(args.memory_cells),
        reference_cells=args.reference_cells,
        batch_size=args.batch_size,
        signature=not args.no_signature,
        seed=args.seed,
    )
    run_attribution_bench(cfg, json_path=args.json)
    return 0


def _cmd_bench_query(args) -> int:
    from compute.bench import (
        QueryBenchConfig,
        StudyScaleConfig,
        run_query_bench,
        run_study_scale_bench,
    )

    if args.atlas:
        from compute.bench import run_atlas_query_bench
        from compute.reference import ms1_signature

        genes = [g for g in " ".join(args.signature_genes).replace(",", " ").split()] if args.signature_genes else list(ms1_signature())
        run_atlas_query_bench(args.atlas, genes, cell_types=tuple(args.cell_types), n_null=args.null_draws,
                              repeats=args.repeats if args.repeats is not None else 5, json_path=args.json)
        return 0
    if args.studies or args.cells:
        scale = StudyScaleConfig()
        cfg = StudyScaleConfig(studies=tuple(args.studies or scale.studies), cells=args.cells or scale.cells,
                               genes=args.genes if args.genes is not None else scale.genes,
                               density=args.density if args.density is not None else scale.density,
                               repeats=args.repeats if args.repeats is not None else scale.repeats, n_null=args.null_draws,
                               compare_cells=args.compare_cells, signature=not args.no_signature, work=args.work, seed=args.seed)
        run_study_scale_bench(cfg, json_path=args.json)
        return 0
    base = QueryBenchConfig()
    cfg = QueryBenchConfig(sizes=tuple(args.sizes), genes=args.genes if args.genes is not None else base.genes,
                           density=args.density if args.density is not None else base.density,
                           repeats=args.repeats if args.repeats is not None else base.repeats,
                           tiledb_max_cells=args.tiledb_max_cells, signature=not args.no_signature, seed=args.seed)
    run_query_bench(cfg, json_path=args.json)
    return 0


def _cmd_bench_training(args) -> int:
    from compute.bench import TrainingBenchConfig, run_training_bench

    cfg = TrainingBenchConfig(cells=tuple(args.cells), genes=args.genes, density=args.density, hidden=tuple(args.hidden),
                              latent=args.latent, batch_size=args.batch_size, batches=args.batches, device=args.device,
                              threads=args.threads, attribution_cells=args.attribution_cells, work=args.work)
    run_training_bench(cfg, json_path=args.json)
    return 0


def _cmd_bench_build(args) -> int:
    from compute.bench import BuildBenchConfig, run_build_bench

    cfg = BuildBenchConfig(studies=tuple(args.studies), cells_per_study=args.cells_per_study, max_genes=args.genes,
                           epochs=args.epochs, n_steps=args.n_steps, fit_cells=args.fit_cells, workers=args.workers,
                           train_workers=args.train_workers,
                           scheduler=args.scheduler, work=args.work, seed=args.seed, corpus_studies=args.corpus_studies)
    run_build_bench(cfg, json_path=args.json)
    return 0


def _cmd_bench_panels(args) -> int:
    from compute.bench import PanelBenchConfig, run_panel_bench

    cfg = PanelBenchConfig(epochs=args.epochs, panel_dropout=args.panel_dropout, panel_consistency=args.panel_consistency,
                           threads=args.threads, work=args.work)
    run_panel_bench(cfg, json_path=args.json)
    return 0


def _cmd_validate(args) -> int:
    from compute.validate import FULL, QUICK, run_validation

    if args.from_results and args.gene_ranking:  # measure only the gene ranking, on the atlas given
        from compute.validate import add_gene_ranking

        add_gene_ranking(args.from_results, args.gene_ranking, args.report)
        return 0
    if args.from_results:
        from compute.validate import write_report

        write_report(json.loads(Path(args.from_results).read_text()), Path(args.report))
        print(f"report rewritten from {args.from_results}: {args.report} (figures and timings as recorded in that run)")
        return 0
    if args.real:
        from compute.validate import run_real_validation

        print(run_real_validation(report=args.report))
        return 0
    if args.evidence:
        from compute.validate import run_evidence_validation

        run_evidence_validation(report=args.report, work=Path(args.work) / "evidence")
        print(f"disease-evidence section written: {args.report}")
        return 0
    profile = QUICK if args.quick else FULL
    run_validation(report=args.report, work=args.work, profile=profile, reuse=args.reuse, jobs=args.jobs)
    if not args.quick:  # the full report includes the real-studies and the disease-evidence sections
        from compute.validate import run_evidence_validation, run_real_validation

        run_real_validation(report=args.report, work=Path(args.work) / "real")
        run_evidence_validation(report=args.report, work=Path(args.work) / "evidence")
    return 0


def _cmd_demo_numbers(args) -> int:
    from compute.atlas import Atlas
    from compute.demo import demo_numbers, numbers_markdown, update_readme, write_numbers

    numbers = demo_numbers(Atlas.open(args.atlas), n_null=args.draws)
    write_numbers(Path(args.json), numbers)
    print(numbers_markdown(numbers))
    if args.readme:
        changed = update_readme(Path(args.readme), numbers)
        print(f"{args.json} written; {args.readme} {'rewritten' if changed else 'already up to date'}")
    return 0


def _cmd_modules(args) -> int:
    from compute.atlas import Atlas
    from compute.genemodules import gene_modules, signature_modules
    from compute.query import parse_gene_list

    atlas = Atlas.open(args.atlas)
    gm = gene_modules(atlas, store=args.store)
    print(f"{len(gm.table)} modules over {len(gm.genes)} genes ({gm.method})")
    if args.genes:
        genes = [g for g, _ in parse_gene_list(args.genes)]
        sm = signature_modules(gm, genes)
        print(f"signature: {len(sm.considered)} of {len(genes)} genes among the module genes; coherence {sm.coherence:.3f} "
              f"(random sets {sm.null_mean:.3f} +- {sm.null_sd:.3f}), z = {sm.z:.1f}, p = {sm.p_value:.3g}")
        if sm.not_considered:
            print("  not among the module genes (absent from the gene order or detected in < 1% of cells): " + ", ".join(sm.not_considered))
        print("overlapping modules:")
        print(sm.overlaps.head(args.top).to_string(index=False) if len(sm.overlaps) else "  none")
        print("co-attributing genes missing from the signature:")
        print(sm.missing.head(args.top).to_string(index=False) if len(sm.missing) else "  none")
    else:
        print(gm.table.drop(columns="genes").head(args.top).to_string(index=False))
    return 0


def _cmd_labels(args) -> int:
    from compute.ingest import labels_json, labels_text, preview_labels
    from compute.manifest import load_manifest

    cells = None
    if args.atlas:
        from compute.atlas import Atlas
        from compute.errors import AtlasFormatError

        cells = Atlas.open(args.atlas, cache=False).cells
        if "cell_type_predicted_ontology_term_id" not in cells.columns:
            raise AtlasFormatError(f"{args.atlas}: the atlas has no label transfer; rebuild it with `python -m compute build`")
    previews = preview_labels(load_manifest(args.manifest), tuple(args.study or ()), markers=args.markers, atlas_cells=cells)
    if args.json:
        print(json.dumps(labels_json(previews), indent=1, ensure_ascii=False))
    else:
        print(labels_text(previews))
    failed = [p.study for p in previews if p.error]
    if failed:
        print(f"error: {len(failed)} of {len(previews)} studies could not be read: {', '.join(failed)} (see ERROR above)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_genes(args) -> int:
    from compute.atlas import Atlas
    from compute.query import RankingParams, gene_ranking

    atlas = Atlas.open(args.atlas)
    base = {"cell_types": tuple(args.cell_type or ()), "diseases": tuple(args.disease or ()), "studies": tuple(args.study or ()),
            "versus": tuple(args.versus or ()), "cell_min": args.cell_min, "top_n": args.top_n}
    ranks = {store: gene_ranking(atlas, RankingParams(store=store, **base)) for store in ("attr", "expr")
             if store == "attr" or atlas.has_expression}
    main_rank = ranks["attr"]
    table = main_rank.table.copy()
    if "expr" in ranks:
        table.insert(1, "expr_rank", ranks["expr"].table["rank"].reindex(table.index).astype("Int64"))
    if args.json:
        out = {"params": {k: list(v) if isinstance(v, tuple) else v for k, v in base.items()},
               "notes": main_rank.notes, "simulated": bool(main_rank.samples["simulated"].any()),
               "samples": main_rank.samples.to_dict(orient="records"),
               "genes": table.head(args.top).reset_index().replace({np.nan: None}).to_dict(orient="records")}
        print(json.dumps(out, default=str))
        return 0
    who = ", ".join(base["cell_types"]) or "all cell types"
    print(f"genes ranked by mean attribution in {who}" + (f" ({', '.join(base['diseases'])})" if base["diseases"] else "")
          + (f" versus {', '.join(base['versus'])}" if base["versus"] else ""))
    if main_rank.samples["simulated"].any():
        print("includes SIMULATED data")
    for note in main_rank.notes:
        print(f"  {note}")
    cols = [c for c in ("rank", "expr_rank", "mean", "top_share", "n_samples", "ref_mean", "log2fc", "p", "q") if c in table]
    print(table[cols].head(args.top).to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def _add_build(parent) -> None:
    """The `build` command and its options."""
    b = parent.add_parser("build", help="build (or bring up to date) the atlas a manifest describes")
    b.add_argument("manifest", help="path to data_manifest.yaml")
    b.add_argument("--force", action="store_true", help="redo every stage, ignoring cached work")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler for the per-study tasks: tcp://host:port (a real cluster; paths must be shared), "
                   "'local' (default: a LocalCluster on this machine) or 'sync' (in this process, no Dask)")
    b.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: CPU count, at most 4)")
    b.add_argument("--rewrite", action="store_true", help="rewrite every atlas file from the work folder (after `verify` found damage)")
    b.add_argument("--verbose", action="store_true", help="show the tracebacks of failing studies and the Dask cluster's log")
    b.add_argument("--train-workers", type=int, default=1, metavar="N",
                   help="train the encoder data parallel on N processes of this machine (torch.distributed: gloo on CPU, NCCL on "
                        "GPU; $SIGATLAS_THREADS shared among them); default 1, in the build process")
    b.add_argument("--checkpoint-every", type=int, default=1000, metavar="BATCHES",
                   help="checkpoint training every BATCHES batches, besides the end of every epoch (default 1000)")
    b.set_defaults(func=_cmd_build)


def _add_census_plan(parent) -> None:
    """The `census-plan` command and its options."""
    cp = parent.add_parser("census-plan", help="what a manifest's census entries bring in (datasets, cells, donors, diseases) "
                        "and the disk and time they need, read from the Census obs before any expression is downloaded")
    cp.add_argument("manifest", help="path to data_manifest.yaml")
    cp.add_argument("--bandwidth", type=float, default=10.0, metavar="MB_PER_S", help="download speed assumed by the time "
                    "estimate (default 10 MB/s)")
    cp.add_argument("--json", action="store_true", help="print only JSON: the plans and the estimate")
    cp.set_defaults(func=_cmd_census_plan)


def _add_verify(parent) -> None:
    """The `verify` command and its options."""
    v = parent.add_parser("verify", help="check every atlas file against the checksums recorded in its root")
    v.add_argument("atlas")
    v.add_argument("--sizes-only", action="store_true", help="compare sizes only (fast), not sha256")
    v.set_defaults(func=_cmd_verify)


def _add_simulate(parent) -> None:
    """The `simulate` command and its options."""
    s = parent.add_parser("simulate", help="write the simulated demo studies (offline, deterministic)")
    s.add_argument("--out", default="data/demo", help="folder for the h5ad files (default data/demo)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--studies", type=int, default=24, help="number of simulated studies (default 24)")
    s.add_argument("--write-manifest", metavar="PATH", help="also write a manifest listing them")
    s.set_defaults(func=_cmd_simulate)


def _add_info(parent) -> None:
    """The `info` command and its options."""
    i = parent.add_parser("info", help="describe an atlas")
    i.add_argument("atlas")
    i.add_argument("--json", action="store_true", help="print only JSON: the atlas's description, build record and per-study reports")
    i.set_defaults(func=_cmd_info)


def _add_import_signature(parent) -> None:
    """The `import-signature` command and its options."""
    im = parent.add_parser("import-signature", help="import SIGnature's precomputed attributions (TileDB per cell type) as an atlas")
    im.add_argument("--attributions", required=True, metavar="DIR",
                    help="folder of cell-type folders, each with attributions/ (TileDB) and cell_metadata.csv.gz")
    im.add_argument("--gene-order", required=True, metavar="FILE", help="the model's gene order, one symbol per line")
    im.add_argument("--out", required=True, metavar="ATLAS", help="atlas folder to write")
    im.add_argument("--name", default=None, help="atlas name shown in the dashboard (default: the folder name)")
    im.add_argument("--block-cells", type=int, default=100_000, help="cells read per block (memory use scales with it)")
    im.set_defaults(func=_cmd_import_signature)


def _add_validate(parent) -> None:
    """The `validate` command and its options."""
    va = parent.add_parser("validate", help="validation suite: planted truth on SIMULATED atlases and real PBMC data; writes docs/validation.md")
    va.add_argument("--report", default="docs/validation.md", help="the report to write (figures and results.json go to a folder beside it)")
    va.add_argument("--work", default=".validation", help="folder for the simulated data and atlases (emptied first unless --reuse)")
    va.add_argument("--reuse", action="store_true", help="keep the work folder: unchanged atlases are not rebuilt (the timing then is not a fresh run's)")
    va.add_argument("--jobs", type=int, default=None, help="atlases built at once, one thread each (default: one per core)")
    va.add_argument("--from-results", metavar="JSON", help="only rewrite the report from a run's results.json (no building)")
    va.add_argument("--gene-ranking", metavar="ATLAS", help="with --from-results: measure only the gene-ranking section on ATLAS "
                    "(e.g. atlas/demo), store it in that results.json and rewrite the report")
    va.add_argument("--quick", action="store_true", help="a small profile (minutes; for tests, not for conclusions)")
    va.add_argument("--real", action="store_true", help="only the real-studies section: the same real cells on two gene panels "
                    "(builds a small atlas of real cells, about a minute)")
    va.add_argument("--evidence", action="store_true", help="only the disease-evidence section: calibration of the pooled "
                    "within-study test and of the corrected gene-set null, power, a planted confound and heterogeneity (builds a "
                    "small SIMULATED atlas, minutes)")
    va.set_defaults(func=_cmd_validate)


def _add_demo_numbers(parent) -> None:
    """The `demo-numbers` command and its options."""
    dn = parent.add_parser("demo-numbers", help="the demo's MS1 result as the README quotes it, measured on the built demo atlas: "
                        "writes docs/demo-numbers.json and the README's generated paragraph")
    dn.add_argument("--atlas", default="atlas/demo", help="the built demo atlas (default atlas/demo)")
    dn.add_argument("--json", default="docs/demo-numbers.json", help="where the numbers go (default docs/demo-numbers.json)")
    dn.add_argument("--readme", default="README.md", help="the README whose generated paragraph is rewritten ('' for none)")
    dn.add_argument("--draws", type=int, default=1000, help="random gene sets for the specificity p (default 1,000)")
    dn.set_defaults(func=_cmd_demo_numbers)


def _add_modules(parent) -> None:
    """The `modules` command and its options."""
    mo = parent.add_parser("modules", help="gene modules from co-attribution; with --genes, where a signature sits among them")
    mo.add_argument("atlas")
    mo.add_argument("--genes", help="a gene list (symbols, comma/space separated)")
    mo.add_argument("--store", choices=("attr", "expr"), default="attr", help="co-attribution (default) or co-expression")
    mo.add_argument("--top", type=int, default=20)
    mo.set_defaults(func=_cmd_modules)


def _add_labels(parent) -> None:
    """The `labels` command and its options."""
    la = parent.add_parser("labels", help="before a build: every study's cell-type and disease labels with the term each "
                        "would get, how, and a proposal where none; prints ready-to-paste cell_type_map / disease_map")
    la.add_argument("manifest")
    la.add_argument("--study", action="append", help="only this study (repeatable)")
    la.add_argument("--markers", action="store_true", help="also weigh each cell-type label against its cells' marker "
                    "genes (reads the studies' values: slower); a text match the cells contradict is flagged CHECK")
    la.add_argument("--atlas", metavar="ATLAS", help="a built atlas of these studies: also show, per cell-type label, the "
                    "term its cells' neighbours in other studies carry (the label transfer's majority)")
    la.add_argument("--json", action="store_true", help="print only JSON")
    la.set_defaults(func=_cmd_labels)


def _add_genes(parent) -> None:
    """The `genes` command and its options."""
    ge = parent.add_parser("genes", help="genes of a cell population ranked by mean attribution (expression rank beside), "
                        "the sample as the unit; --versus tests against a reference")
    ge.add_argument("atlas")
    ge.add_argument("--cell-type", action="append", help="a cell type label or ontology term (repeatable; a term includes its descendants)")
    ge.add_argument("--disease", action="append", help="a disease of the population (repeatable)")
    ge.add_argument("--study", action="append", help="restrict to a study (repeatable)")
    ge.add_argument("--versus", action="append", help="reference diseases, for example normal (repeatable)")
    ge.add_argument("--cell-min", type=int, default=10, help="samples with fewer selected cells are left out (default 10)")
    ge.add_argument("--top-n", type=int, default=50, help="the per-sample top cut for top_share (default 50)")
    ge.add_argument("--top", type=int, default=30, help="rows to print (default 30)")
    ge.add_argument("--json", action="store_true", help="print JSON only")
    ge.set_defaults(func=_cmd_genes)


def _add_bench_attributions(parent) -> None:
    """The `bench attributions` command and its options."""
    ba = parent.add_parser("attributions", help="our exact IG vs Captum's generic IG (and sc-signature when installed)")
    ba.add_argument("--cells", type=int, default=2000)
    ba.add_argument("--genes", type=int, default=28231)
    ba.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    ba.add_argument("--latent", type=int, default=128)
    ba.add_argument("--density", type=float, default=0.08)
    ba.add_argument("--captum-cells", type=int, default=None, help="cells for the Captum runs (default: --cells)")
    ba.add_argument("--memory-cells", type=int, nargs="*", default=[500, 2000, 8000], help="cell counts for the memory-scaling runs")
    ba.add_argument("--reference-cells", type=int, default=32, help="cells compared with a float64 Captum reference")
    ba.add_argument("--batch-size", type=int, default=None)
    ba.add_argument("--no-signature", action="store_true", help="skip sc-signature even when installed")
    ba.add_argument("--seed", type=int, default=0)
    ba.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    ba.set_defaults(func=_cmd_bench_attributions)


def _add_bench_query(parent) -> None:
    """The `bench query` command and its options."""
    bq = parent.add_parser("query", help="the gene-major store vs SIGnature's TileDB array and the in-memory floor; with "
                              "--studies/--cells, whole queries on SIMULATED atlases at SIGnature's shape")
    bq.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    bq.add_argument("--studies", type=int, nargs="+", default=None,
                    help="study counts: one SIMULATED atlas of the same --cells split into each (default 20 100 400 with --cells)")
    bq.add_argument("--cells", type=int, default=None, help="cells of the SIMULATED atlases (default 1,000,000 with --studies)")
    bq.add_argument("--null-draws", type=int, default=1000, help="null draws of the whole query (with --studies or --atlas)")
    bq.add_argument("--atlas", default=None, help="time new queries on this atlas instead (MS1 unless --signature-genes)")
    bq.add_argument("--cell-types", nargs="*", default=[], help="with --atlas: the cell types queried (besides all cells)")
    bq.add_argument("--signature-genes", nargs="*", default=None, help="with --atlas: the genes queried (default: MS1)")
    bq.add_argument("--compare-cells", type=int, default=100_000,
                    help="Atlas.score on these cells as 20 studies, as one, and SIGnature's (with --studies; 0: skip)")
    bq.add_argument("--work", default=None, help="keep the SIMULATED atlases here (with --studies; default: a temporary folder)")
    bq.add_argument("--genes", type=int, default=None, help="genes (default 5,000)")
    bq.add_argument("--density", type=float, default=None, help="share of stored values (default 0.08; 0.02 with --studies)")
    bq.add_argument("--repeats", type=int, default=None, help="timed queries, each a new gene set (default 7; 5 with --studies)")
    bq.add_argument("--tiledb-max-cells", type=int, default=100_000, help="largest size written with SIGnature's create_tiledb")
    bq.add_argument("--no-signature", action="store_true")
    bq.add_argument("--seed", type=int, default=0)
    bq.add_argument("--json", metavar="PATH")
    bq.set_defaults(func=_cmd_bench_query)


def _add_bench_build(parent) -> None:
    """The `bench build` command and its options."""
    bb = parent.add_parser("build", help="the distributed build on SIMULATED studies: wall time, cells/s, memory per worker")
    bb.add_argument("--studies", type=int, nargs="+", default=[25, 50, 100], help="study counts, one fresh build each")
    bb.add_argument("--cells-per-study", type=int, default=10_000)
    bb.add_argument("--genes", type=int, default=2000)
    bb.add_argument("--epochs", type=int, default=1)
    bb.add_argument("--n-steps", type=int, default=20, help="integrated-gradient steps")
    bb.add_argument("--fit-cells", type=int, default=50_000, help="cells the UMAP is fitted on")
    bb.add_argument("--workers", type=int, default=None)
    bb.add_argument("--train-workers", type=int, default=1, help="processes training the encoder (torch.distributed)")
    bb.add_argument("--scheduler", default=None)
    bb.add_argument("--work", default=None, help="keep data and atlases here (default: a temporary folder)")
    bb.add_argument("--seed", type=int, default=0)
    bb.add_argument("--corpus-studies", type=int, default=None,
                    help="studies to simulate (default: the largest of --studies); with --work, a later run of fewer studies "
                         "reuses the same simulated corpus")
    bb.add_argument("--json", metavar="PATH")
    bb.set_defaults(func=_cmd_bench_build)


def _add_bench_training(parent) -> None:
    """The `bench training` command and its options."""
    bt = parent.add_parser("training", help="encoder training alone on SIMULATED pieces: cells/s and peak memory as the corpus grows")
    bt.add_argument("--cells", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000], help="corpus sizes, a fresh process each")
    bt.add_argument("--genes", type=int, default=2000)
    bt.add_argument("--density", type=float, default=0.05, help="share of non-zero values")
    bt.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    bt.add_argument("--latent", type=int, default=64)
    bt.add_argument("--batch-size", type=int, default=512)
    bt.add_argument("--batches", type=int, default=60, help="batches timed per size")
    bt.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    bt.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bt.add_argument("--attribution-cells", type=int, default=0, help="also time exact IG (50 steps) on this many cells")
    bt.add_argument("--work", default="/tmp/sigatlas-bench-training", help="folder for the simulated pieces (kept for reuse)")
    bt.add_argument("--json", metavar="PATH")
    bt.set_defaults(func=_cmd_bench_training)


def _add_bench_panels(parent) -> None:
    """The `bench panels` command and its options."""
    bp = parent.add_parser("panels", help="the real two-panel atlas with and without panel-aware training: mixing of the "
                              "two copies of the same cells, two-panel hit ratios, references, training time")
    bp.add_argument("--epochs", type=int, default=8)
    bp.add_argument("--panel-dropout", type=float, default=0.5, help="model.panel_dropout of the 'after' build")
    bp.add_argument("--panel-consistency", type=float, default=10.0, help="model.panel_consistency of the 'after' build")
    bp.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    bp.add_argument("--work", default="/tmp/sigatlas-bench-panels", help="folder for the two atlases (kept for reuse)")
    bp.add_argument("--json", metavar="PATH")
    bp.set_defaults(func=_cmd_bench_panels)


def _parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per task, ``bench`` holding the benchmarks."""
    p = argparse.ArgumentParser(prog="python -m compute", description="SigAtlas offline build")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_build, _add_census_plan, _add_verify, _add_simulate, _add_info, _add_import_signature, _add_validate,
                _add_demo_numbers, _add_modules, _add_labels, _add_genes):
        add(sub)
    bench = sub.add_parser("bench", help="benchmarks that print figures and ratios")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for add in (_add_bench_attributions, _add_bench_query, _add_bench_build, _add_bench_training, _add_bench_panels):
        add(bench_sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except SigAtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if _storage_failure(exc):
            _exit_now(2)
        return 2
    except OSError as exc:
        from compute.files import storage_error

        err = storage_error(exc.filename or "a file", exc)
        if err is exc:
            raise
        print(f"error: {err}", file=sys.stderr)  # disk full, read-only, no permission: one line, no traceback
        return 2


def _storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is, or gathers (compute.build.StudyFailures), a failed write (StorageError)."""
    from compute.errors import StorageError

    failures = getattr(exc, "failures", None) or {}
    return isinstance(exc, StorageError) or any(isinstance(e, StorageError) for e in failures.values())


def _exit_now(code: int) -> None:
    """Leave at once with ``code``, after the error is printed. An HDF5 file that met a full disk
    cannot be closed; the interpreter's clean-up then frees its objects and HDF5 crashes the
    process (a segmentation fault, exit 139) after the error was already said."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m compute bench query``: the gene-major store against SIGnature's TileDB array;
with ``--studies``/``--cells``, whole queries on SIMULATED atlases at SIGnature's shape (many
studies over the same cells: :func:`run_study_scale_bench`).

From one random attribution matrix per size (rows scaled to 1,000, about 8% non-zero,
5,000 genes) it writes a SigAtlas store and, when ``sc-signature`` and ``tiledb`` are installed
and the size is at most ``tiledb_max_cells`` (its writer is slow), SIGnature's TileDB array with
its own ``create_tiledb``; then times an 86-gene mean-score query (median of warm repeats) on
each, and the floor: a column gather from the same matrix held in memory as scipy CSC.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["QueryBenchConfig", "StudyScaleConfig", "random_attributions", "run_atlas_query_bench", "run_query_bench", "run_study_scale_bench",
           "simulated_cells", "sparse_rows", "write_simulated_atlas"]


@dataclass(frozen=True)
class QueryBenchConfig:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    genes: int = 5000
    density: float = 0.08
    signature_genes: int = 86
    repeats: int = 7
    tiledb_max_cells: int = 100_000
    signature: bool = True
    seed: int = 0


def random_attributions(n_cells: int, n_genes: int, density: float, seed: int) -> sp.csr_matrix:
    """Non-negative random attributions, rows scaled to 1,000, generated in row blocks."""
    rng = np.random.default_rng(seed)
    blocks = []
    step = max(1, 2_000_000 // max(1, int(n_genes * density)))
    for start in range(0, n_cells, step):
        rows = min(step, n_cells - start)
        nnz_per_row = rng.binomial(n_genes, density, size=rows)
        indptr = np.concatenate([[0], np.cumsum(nnz_per_row)])
        indices = np.concatenate([np.sort(rng.choice(n_genes, k, replace=False)) for k in nnz_per_row]) if rows else np.zeros(0, int)
        data = rng.exponential(1.0, size=indptr[-1]).astype(np.float32)
        sums = np.add.reduceat(data, indptr[:-1]) if data.size else np.zeros(rows, np.float32)
        data *= np.repeat((1000.0 / np.maximum(sums, 1e-12)).astype(np.float32), nnz_per_row)
        blocks.append(sp.csr_matrix((data, indices.astype(np.int32), indptr), shape=(rows, n_genes)))
    return sp.vstack(blocks, format="csr")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm: page cache, imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_query_bench(cfg: QueryBenchConfig, *, out=print, json_path: str | None = None) -> dict:
    from compute.atlas import GeneMajorStore, write_gene_major
    from compute.bench._memory import PeakMemory

    have_signature = False
    if cfg.signature:
        try:
            import tiledb  # noqa: F401
            from SIGnature import SIGnature

            have_signature = True
        except ImportError:
            out("  sc-signature / tiledb not installed: SIGnature's store is skipped (pip install -e '.[bench]')")
    rng = np.random.default_rng(cfg.seed + 1)
    genes = np.sort(rng.choice(cfg.genes, cfg.signature_genes, replace=False))
    gene_names = [f"GENE{i:05d}" for i in range(cfg.genes)]
    rows = []
    out(f"SigAtlas query benchmark: {cfg.genes:,} genes, {cfg.density:.0%} non-zero, rows scaled to 1,000; "
        f"an {cfg.signature_genes}-gene mean score; median of {cfg.repeats} warm queries")
    out(f"  {'cells':>10}{'write ours':>12}{'write TileDB':>14}{'query ours':>12}{'query SIGn.':>13}{'floor':>10}"
        f"{'SIGn./ours':>12}{'ours/floor':>12}{'query RSS+':>11}")
    for n in cfg.sizes:
        X = random_attributions(n, cfg.genes, cfg.density, cfg.seed)
        row: dict = {"cells": n, "nnz": int(X.nnz)}
        with tempfile.TemporaryDirectory(prefix="sigatlas-qbench-") as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            write_gene_major(tmp / "ours", "attr", X)
            row["write_ours_s"] = time.perf_counter() - t0
            store = GeneMajorStore(tmp / "ours", "attr", cfg.genes, n)
            ours = store.aggregate(genes, None, "mean")
            with PeakMemory() as mem:
                row["query_ours_s"] = _median_time(lambda store=store: store.aggregate(genes, None, "mean"), cfg.repeats)
            row["query_rss_above_start"] = mem.above_start
            csc = X.tocsc()
            row["floor_s"] = _median_time(lambda csc=csc: csc[:, genes], cfg.repeats)
            want = np.asarray(csc[:, genes].sum(axis=1)).ravel() / genes.size
            row["max_abs_diff_vs_dense"] = float(np.abs(ours - want).max())
            del csc
            if have_signature and n <= cfg.tiledb_max_cells:
                sp.save_npz(tmp / "attr.npz", X, compressed=False)
                sig = SIGnature(gene_order=gene_names, attribution_tiledb_uri=str(tmp / "tiledb"))
                t0 = time.perf_counter()
                _quiet(lambda sig=sig, npz=str(tmp / "attr.npz"): sig.create_tiledb(npz_path=npz))
                row["write_tiledb_s"] = time.perf_counter() - t0
                names = [gene_names[g] for g in genes]
                theirs = np.asarray(sig.query_attributions(names)).ravel()
                row["query_signature_s"] = _median_time(lambda sig=sig, names=names: sig.query_attributions(names), cfg.repeats)
                row["max_abs_diff_vs_signature"] = float(np.abs(ours - theirs).max())
        del X
        rows.append(row)
        fmt_s = lambda v: f"{v * 1000:,.1f} ms" if v is not None and v < 1 else (f"{v:,.1f} s" if v is not None else "-")  # noqa: E731
        sig_ratio = row.get("query_signature_s", np.nan) / row["query_ours_s"]
        out(f"  {n:>10,}{fmt_s(row['write_ours_s']):>12}{fmt_s(row.get('write_tiledb_s')):>14}{fmt_s(row['query_ours_s']):>12}"
            f"{fmt_s(row.get('query_signature_s')):>13}{fmt_s(row['floor_s']):>10}"
            f"{'-' if np.isnan(sig_ratio) else f'{sig_ratio:,.1f}x':>12}{row['query_ours_s'] / row['floor_s']:>11.2f}x"
            f"{row['query_rss_above_start'] / 2**20:>8.0f} MB")
    for row in rows:
        extra = f", vs SIGnature {row['max_abs_diff_vs_signature']:.2g}" if "max_abs_diff_vs_signature" in row else ""
        ratio = f"; TileDB write / ours {row['write_tiledb_s'] / row['write_ours_s']:.1f}x" if "write_tiledb_s" in row else ""
        out(f"  {row['cells']:>10,} cells: max |ours - dense reference| {row['max_abs_diff_vs_dense']:.2g}{extra}{ratio}")
    report = {"config": asdict(cfg), "rows": rows}
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
    return report


def _quiet(fn):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


# -- the query at SIGnature's shape: many studies over the same cells ------------------------------

@dataclass(frozen=True)
class StudyScaleConfig:
    """``python -m compute bench query --studies ... --cells ...``: SIMULATED atlases of the same
    ``cells`` split into each count of ``studies``, written through the atlas writer."""

    studies: tuple[int, ...] = (20, 100, 400)
    cells: int = 1_000_000
    genes: int = 5000
    density: float = 0.02  # stored values per cell: 100 of 5,000 genes
    samples_per_study: int = 10
    signature_genes: int = 86
    repeats: int = 5
    n_null: int = 1000
    compare_cells: int = 100_000  # Atlas.score on these cells as 20 studies, as one, and SIGnature's query_attributions
    compare_studies: int = 20
    signature: bool = True
    work: str | None = None  # keep the atlases here (default: a temporary folder, removed)
    seed: int = 0


N_DISEASES = 8
N_CELL_TYPES = 4


def sparse_rows(n_cells: int, n_genes: int, density: float, seed: int, block: int = 200_000) -> sp.csr_matrix:
    """SIMULATED non-negative attributions, rows scaled to 1,000: about ``density`` x ``n_genes``
    values per cell at uniformly random genes, made in vectorised blocks (fast at a million cells)."""
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_cells, block):
        rows = min(block, n_cells - start)
        per_row = rng.poisson(density * n_genes, size=rows)
        r = np.repeat(np.arange(rows), per_row)
        part = sp.csr_matrix((rng.exponential(1.0, r.size).astype(np.float32), (r, rng.integers(0, n_genes, r.size))),
                             shape=(rows, n_genes))
        part.sum_duplicates()
        sums = np.asarray(part.sum(axis=1)).ravel()
        part = sp.csr_matrix(sp.diags((1000.0 / np.maximum(sums, 1e-12)).astype(np.float32)) @ part, dtype=np.float32)
        parts.append(part)
    return sp.vstack(parts, format="csr")


def simulated_cells(n_cells: int, n_studies: int, samples_per_study: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """(cells table, study boundaries): ``n_studies`` contiguous blocks of cells, each with
    ``samples_per_study`` samples, one disease per study and a random cell type per cell.
    Every value is labelled SIMULATED."""
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n_cells, n_studies + 1).astype(np.int64)
    study = np.repeat(np.arange(n_studies), np.diff(bounds))
    within = np.arange(n_cells) - bounds[study]
    sample = within * samples_per_study // np.maximum(np.diff(bounds)[study], 1)
    cells = pd.DataFrame({
        "study": pd.Categorical([f"SIM{s:04d}" for s in study]),
        "sample": pd.Categorical([f"SIM{s:04d}_s{k}" for s, k in zip(study.tolist(), sample.tolist(), strict=True)]),
        "donor": pd.Categorical([f"SIM{s:04d}_d{k}" for s, k in zip(study.tolist(), sample.tolist(), strict=True)]),
        "cell_type": pd.Categorical(np.array([f"SIMULATED type {i}" for i in range(N_CELL_TYPES)])[rng.integers(0, N_CELL_TYPES, n_cells)]),
        "disease": pd.Categorical(np.array([f"SIMULATED disease {i}" for i in range(N_DISEASES)])[study % N_DISEASES]),
        "tissue": "SIMULATED blood",
        "simulated": True,
    })
    return cells, bounds


def write_simulated_atlas(out: Path, X: sp.csr_matrix, n_studies: int, samples_per_study: int, seed: int = 0) -> Path:
    """Write ``X`` (cells x genes) as a SIMULATED atlas of ``n_studies`` studies through the atlas
    writer (gene-major stores, cells tables, checksums in atlas.json); returns its path."""
    from compute.atlas import StudyArrays, begin_atlas, write_root, write_study

    genes = [f"SIMGENE{i:05d}" for i in range(X.shape[1])]
    cells, bounds = simulated_cells(X.shape[0], n_studies, samples_per_study, seed)
    root = begin_atlas(out, genes)
    entries = []
    for s in range(n_studies):
        a, b = int(bounds[s]), int(bounds[s + 1])
        sid = f"SIM{s:04d}"
        entries.append(write_study(root, StudyArrays(meta={"id": sid, "title": f"SIMULATED study {s}", "simulated": True},
                                                     cells=cells.iloc[a:b].reset_index(drop=True), attributions=X[a:b],
                                                     embedding=None, umap=None)))
    write_root(root, name=f"SIMULATED {X.shape[0]:,} cells in {n_studies} studies", gene_order=genes, entries=entries,
               model_card=None, build={"source": "bench query (SIMULATED)"},
               method={"attributions": "SIMULATED random sparse values, rows scaled to 1,000"},
               attributions={"row_sum": 1000.0, "source": "SIMULATED"})
    return root


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class _OpenCounter:
    """Counts the files memory-mapped (``np.load`` with ``mmap_mode``) while it is active."""

    def __enter__(self):
        self._load, self.count = np.load, 0

        def counting(*args, **kwargs):
            if kwargs.get("mmap_mode"):
                self.count += 1
            return self._load(*args, **kwargs)

        np.load = counting
        return self

    def __exit__(self, *exc):
        np.load = self._load


def _timings(fn, makers, repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of this process, last result) of ``fn(x)`` over
    ``repeats`` new inputs from ``makers(i)``, after one warm call. On a shared machine the CPU
    time is the better estimate of an idle machine's wall time (the query runs on one thread)."""
    last = fn(makers(-1))
    walls, cpus = [], []
    for i in range(repeats):
        x = makers(i)
        t0, c0 = time.perf_counter(), time.process_time()
        last = fn(x)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), last


def run_study_scale_bench(cfg: StudyScaleConfig, *, out=print, json_path: str | None = None) -> dict:
    """Write SIMULATED atlases of ``cfg.cells`` cells as each of ``cfg.studies`` study counts and
    time, on each, a new ``signature_genes``-gene set: ``Atlas.score`` (all cells), the ranking
    (``run_ranking``, all cells) and the whole query with ``n_null`` draws on one cell type; the
    first query after opening (checksums, memory maps) apart; and the store files opened by the
    timed queries (0: every store stays open). Then ``Atlas.score`` on ``compare_cells`` cells as
    ``compare_studies`` studies, as one study, and SIGnature's ``query_attributions`` on the same
    values when sc-signature and tiledb are installed. Returns every figure."""
    import shutil

    from compute.atlas import Atlas
    from compute.query import QueryParams, run_query, run_ranking

    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="sigatlas-qscale-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": asdict(cfg), "rows": [], "compare": {}}
    try:
        t0 = time.perf_counter()
        X = sparse_rows(cfg.cells, cfg.genes, cfg.density, cfg.seed)
        out(f"SigAtlas query at SIGnature's shape (SIMULATED values): {cfg.cells:,} cells x {cfg.genes:,} genes, "
            f"{X.nnz / max(cfg.cells, 1):.0f} values per cell ({X.nnz:,} in all, made in {time.perf_counter() - t0:.1f} s); "
            f"a new {cfg.signature_genes}-gene set per query, median of {cfg.repeats}")
        out("  times: wall (CPU of this process: the idle estimate on a shared machine); score: Atlas.score on all cells; "
            f"ranking: run_ranking on all cells; +null: run_query with {cfg.n_null:,} draws on one cell type (a quarter of the cells)")
        out(f"  {'studies':>8}{'write':>9}{'disk':>10}{'1st query':>11}{'score':>22}{'ranking':>22}"
            f"{'+null ' + str(cfg.n_null):>22}{'null cells':>12}{'opens':>7}")
        rng = np.random.default_rng(cfg.seed + 7)
        gene_sets = [np.sort(rng.choice(cfg.genes, cfg.signature_genes, replace=False)) for _ in range(cfg.repeats + 1)]
        for n_studies in cfg.studies:
            row = _scale_row(cfg, X, n_studies, work, gene_sets, Atlas, QueryParams, run_query, run_ranking)
            report["rows"].append(row)
            both = lambda k, row=row: f"{_ms(row[k + '_s'])} ({_ms(row[k + '_cpu_s'])})"  # noqa: E731
            out(f"  {n_studies:>8,}{row['write_s']:>8.1f}s{row['disk_bytes'] / 2**30:>8.2f}GB{_ms(row['first_query_s']):>11}"
                f"{both('score'):>22}{both('ranking'):>22}{both('query_null'):>22}{row['null_cells']:>12,}{row['store_opens']:>7}")
            if not cfg.work:
                shutil.rmtree(work / f"atlas-{n_studies}", ignore_errors=True)
        del X
        if cfg.compare_cells:
            report["compare"] = _compare_one_and_many(cfg, work, out)
    finally:
        if not cfg.work:
            shutil.rmtree(work, ignore_errors=True)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
    return report


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1000:,.1f} ms" if v < 1 else f"{v:,.2f} s")


def _scale_row(cfg, X, n_studies, work, gene_sets, Atlas, QueryParams, run_query, run_ranking) -> dict:
    path = work / f"atlas-{n_studies}"
    t0 = time.perf_counter()
    write_simulated_atlas(path, X, n_studies, cfg.samples_per_study, cfg.seed)
    row: dict = {"studies": n_studies, "cells": X.shape[0], "write_s": time.perf_counter() - t0, "disk_bytes": _disk_bytes(path)}
    atlas = Atlas.open(path, cache=False)
    names = atlas.genes
    as_genes = lambda i: [names[g] for g in gene_sets[i]]  # noqa: E731
    t0 = time.perf_counter()
    atlas.score(as_genes(-1))  # the first query: each study's checksums and memory maps
    row["first_query_s"] = time.perf_counter() - t0
    with _OpenCounter() as opens:
        row["score_s"], row["score_cpu_s"], _ = _timings(atlas.score, as_genes, cfg.repeats)
        row["ranking_s"], row["ranking_cpu_s"], _ = _timings(
            lambda g: run_ranking(atlas, QueryParams(genes=tuple((x, None) for x in g), cell_min=10, samp_min=2)), as_genes, cfg.repeats)
        cell_type = str(atlas.cells["cell_type"].cat.categories[0])
        row["query_null_s"], row["query_null_cpu_s"], last = _timings(
            lambda g: run_query(atlas, QueryParams(genes=tuple((x, None) for x in g), cell_types=(cell_type,), cell_min=10, samp_min=2,
                                                   n_null=cfg.n_null)), as_genes, max(1, min(cfg.repeats, 2)))
    row["null_cells"] = last.null["disease"].n_cells
    row["selected_cells"] = last.n_selected
    row["store_opens"] = opens.count
    return row


def _compare_one_and_many(cfg: StudyScaleConfig, work: Path, out) -> dict:
    from compute.atlas import Atlas

    X = sparse_rows(cfg.compare_cells, cfg.genes, 0.08, cfg.seed + 1)  # 8% non-zero like SIGnature's attributions
    rng = np.random.default_rng(cfg.seed + 11)
    sets = [np.sort(rng.choice(cfg.genes, cfg.signature_genes, replace=False)) for _ in range(cfg.repeats + 1)]
    result: dict = {"cells": cfg.compare_cells, "nnz": int(X.nnz)}
    scores = {}
    for n_studies in (cfg.compare_studies, 1):
        atlas = Atlas.open(write_simulated_atlas(work / f"compare-{n_studies}", X, n_studies, cfg.samples_per_study, cfg.seed), cache=False)
        names = atlas.genes
        atlas.score([names[g] for g in sets[-1]])
        wall, cpu, _ = _timings(atlas.score, lambda i, names=names: [names[g] for g in sets[i]], cfg.repeats)
        result[f"score_{n_studies}_studies_s"], result[f"score_{n_studies}_studies_cpu_s"] = wall, cpu
        scores[n_studies] = atlas.score([names[g] for g in sets[0]])
    if cfg.signature:
        try:
            import tiledb  # noqa: F401
            from SIGnature import SIGnature
        except ImportError:
            SIGnature = None
            out("  sc-signature / tiledb not installed: SIGnature's query_attributions is skipped (pip install -e '.[bench]')")
        if SIGnature is not None:
            names = [f"SIMGENE{i:05d}" for i in range(cfg.genes)]
            sp.save_npz(work / "compare.npz", X, compressed=False)
            sig = SIGnature(gene_order=names, attribution_tiledb_uri=str(work / "compare-tiledb"))
            _quiet(lambda: sig.create_tiledb(npz_path=str(work / "compare.npz")))
            theirs = np.asarray(sig.query_attributions([names[g] for g in sets[0]])).ravel()
            result["max_abs_diff_vs_signature"] = float(np.abs(theirs - scores[1]).max())
            result["signature_s"], result["signature_cpu_s"], _ = _timings(lambda g: sig.query_attributions(g),
                                                                          lambda i: [names[g] for g in sets[i]], cfg.repeats)
    many, one = result[f"score_{cfg.compare_studies}_studies_cpu_s"], result["score_1_studies_cpu_s"]
    result["many_over_one_cpu"] = many / one
    out(f"  Atlas.score, {cfg.compare_cells:,} cells (8% non-zero), a new {cfg.signature_genes}-gene set each time, wall (CPU): "
        f"{cfg.compare_studies} studies {_ms(result[f'score_{cfg.compare_studies}_studies_s'])} ({_ms(many)}), "
        f"one study {_ms(result['score_1_studies_s'])} ({_ms(one)}); {cfg.compare_studies} studies / one: {many / one:.2f}x (CPU)")
    if "signature_s" in result:
        theirs = result["signature_cpu_s"]
        out(f"  SIGnature query_attributions on the same values: {_ms(result['signature_s'])} ({_ms(theirs)}): "
            f"{theirs / many:.1f}x the {cfg.compare_studies}-study atlas, {theirs / one:.1f}x one study (CPU; "
            f"max |difference| {result['max_abs_diff_vs_signature']:.2g})")
    return result


# -- one atlas, one signature: the numbers a user waits for ----------------------------------------

def run_atlas_query_bench(path: str | Path, genes: list[str], *, cell_types: tuple[str, ...] = (), n_null: int = 1000, repeats: int = 5,
                          long_list: int = 5000, out=print, json_path: str | None = None) -> dict:
    """Time new queries of ``genes`` on the atlas at ``path`` (no result cache; each query drops
    a different gene, so none was asked before): ``prepare_atlas`` once, then the ranking
    (``run_ranking``), the p-values and null band (``add_evidence`` with ``n_null`` draws) and
    the whole ``run_query``, on ``cell_types`` and on all cells; then a ``long_list``-gene list
    (half the atlas's genes, the rest unknown names) on all cells. Medians of wall and CPU time."""
    from compute.atlas import Atlas
    from compute.query import QueryParams, add_evidence, prepare_atlas, run_query, run_ranking, with_effects

    atlas = Atlas.open(path, cache=False)
    t0 = time.perf_counter()
    prepare_atlas(atlas)
    report: dict = {"atlas": str(path), "n_cells": atlas.n_cells, "studies": len(atlas.studies), "prepare_s": time.perf_counter() - t0,
                    "rows": []}
    out(f"{atlas.name}: {atlas.n_cells:,} cells, {len(atlas.studies)} studies; prepare_atlas {report['prepare_s']:.1f} s (once per process)")
    out(f"  a new {len(genes)}-gene query each time, {n_null:,} null draws; median of {repeats}, wall (CPU)")

    def params(i, cts, null):
        kept = tuple((g, None) for j, g in enumerate(genes) if j != i % len(genes))
        return QueryParams(genes=kept, cell_types=cts, n_null=null, seed=100 + i)

    def both(fn, cts, null):
        wall, cpu, last = _timings(lambda i: fn(params(i, cts, null)), lambda i: i + 1, repeats)
        return wall, cpu, last

    for cts in ((cell_types, ()) if cell_types else ((),)):
        label = ", ".join(cts) or "all cells"
        rank = both(lambda p: run_ranking(atlas, p), cts, 0)
        evidence = both(lambda p: add_evidence(atlas, run_ranking(atlas, p)), cts, n_null)
        whole = both(lambda p: run_query(atlas, p), cts, n_null)
        # the disease evidence (per-donor effects and their meta-analysis) inside the ranking, alone
        last = rank[2]
        plain = last.diseases[[c for c in last.diseases.columns if c in ("group", "mean_hit_pct", "median_hit_pct", "sd_hit_pct",
                                                                          "n_samples", "n_studies", "n_cells", "n_simulated_samples",
                                                                          "rank")]]
        meta = _timings(lambda i, plain=plain, last=last: with_effects(plain, last.samples, last.reference_labels, last.params),
                        lambda i: i + 1, repeats)
        row = {"cells": label, "n_selected": rank[2].n_selected, "ranking_s": rank[0], "ranking_cpu_s": rank[1],
               "evidence_meta_s": meta[0], "evidence_meta_cpu_s": meta[1], "n_diseases": int(len(plain)),
               "ranking_then_null_s": evidence[0], "ranking_then_null_cpu_s": evidence[1], "query_s": whole[0], "query_cpu_s": whole[1]}
        report["rows"].append(row)
        out(f"  {label} ({row['n_selected']:,} cells): ranking {_ms(rank[0])} ({_ms(rank[1])}), of which the disease evidence "
            f"(within-study effects and their meta-analysis, {row['n_diseases']} diseases) {_ms(meta[0])} ({_ms(meta[1])}); "
            f"ranking + p-values and null band {_ms(evidence[0])} ({_ms(evidence[1])}); run_query {_ms(whole[0])} ({_ms(whole[1])})")
    if long_list:
        rng = np.random.default_rng(0)
        known = list(rng.choice(atlas.genes, min(long_list // 2, len(atlas.genes) // 2), replace=False))
        listed = tuple((g, None) for g in known + [f"NOTAGENE{i}" for i in range(long_list - len(known))])
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_query(atlas, QueryParams(genes=listed, n_null=n_null))
        report["long_list"] = {"genes": long_list, "matched": len(res.resolution.matched), "query_s": time.perf_counter() - t0,
                               "query_cpu_s": time.process_time() - c0, "null_cells": res.null["disease"].n_cells}
        out(f"  a {long_list:,}-gene list ({len(res.resolution.matched):,} in the atlas), all cells, {n_null:,} draws: "
            f"{_ms(report['long_list']['query_s'])} ({_ms(report['long_list']['query_cpu_s'])}), null on "
            f"{res.null['disease'].n_cells:,} cells")
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
    return report

"""``python -m compute bench query``: the gene-major store against SIGnature's TileDB array.

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
import scipy.sparse as sp

__all__ = ["QueryBenchConfig", "random_attributions", "run_query_bench"]


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

"""``python -m compute bench attributions``: our exact IG against Captum's generic IG.

One run, side by side, on the same SCimilarity-shaped model (random weights, BatchNorm
statistics calibrated on the benchmark cells as training would leave them) and the same
sparse log-normalised cells:
  - Captum's IntegratedGradients called as SIGnature calls it (wrapper returning two equal
    columns, target 0, zero baseline, 50 Gauss-Legendre steps, batches of 500, |.|, rows to
    1,000);
  - sc-signature's own ``SCimilarityWrapper.calculate_attributions`` when it is installed
    (``pip install -e '.[bench]'``);
  - ours (``compute.attribution.attribute``).
Each engine runs in its own child process, so the peak memory reported is its own.
Differences are taken after scaling (per row: max |ours - ref| / max |ref|), against Captum
float32 and against a float64 Captum reference on the first cells.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["AttributionBenchConfig", "make_cells", "make_model", "run_attribution_bench"]


@dataclass(frozen=True)
class AttributionBenchConfig:
    cells: int = 2000
    genes: int = 28231
    hidden: tuple[int, ...] = (1024, 1024)
    latent: int = 128
    density: float = 0.08
    captum_cells: int | None = None  # None: all ``cells``
    memory_cells: tuple[int, ...] = (500, 2000, 8000)
    reference_cells: int = 32
    batch_size: int | None = None
    signature: bool = True  # also run sc-signature when installed
    seed: int = 0
    extra: dict = field(default_factory=dict)


def make_cells(n_cells: int, n_genes: int, density: float, seed: int) -> sp.csr_matrix:
    """Log-normalised cells (1e4 per cell, log1p), about ``density`` non-zero: gene detection
    rates vary (Beta-distributed around ``density``), counts are 1 + Poisson with gene means."""
    rng = np.random.default_rng(seed)
    detect = rng.beta(0.5, 0.5 * (1 - density) / density, size=n_genes)
    detect *= density / detect.mean()
    detect = np.clip(detect, 0, 0.98)
    lam = rng.gamma(1.0, 2.0, size=n_genes)
    indptr, indices, data = [0], [], []
    for start in range(0, n_cells, 500):
        rows = min(500, n_cells - start)
        mask = rng.random((rows, n_genes)) < detect
        r, c = np.nonzero(mask)
        counts = 1 + rng.poisson(lam[c]).astype(np.float64)
        block = sp.csr_matrix((counts, (r, c)), shape=(rows, n_genes))
        totals = np.asarray(block.sum(axis=1)).ravel()
        block = sp.diags(1e4 / np.maximum(totals, 1)) @ block
        block.data = np.log1p(block.data)
        block = block.tocsr()
        indices.append(block.indices)
        data.append(block.data.astype(np.float32))
        indptr.extend((block.indptr[1:] + indptr[-1]).tolist())
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(n_cells, n_genes))


def make_model(cfg: AttributionBenchConfig, X: sp.csr_matrix):
    """An SCimilarity-shaped encoder, random weights, BatchNorm statistics from ``X``."""
    import torch

    from compute.model import Encoder

    torch.manual_seed(cfg.seed)
    enc = Encoder(cfg.genes, cfg.hidden, cfg.latent)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    enc.train()
    with torch.no_grad():
        for start in range(0, min(X.shape[0], 1024), 256):
            enc(torch.from_numpy(X[start : start + 256].toarray()))
    enc.eval()
    for bn in bns:
        bn.momentum = 0.1
    enc.gene_order = [f"GENE{i:05d}" for i in range(cfg.genes)]
    return enc


# --------------------------------------------------------------------------- child processes


def _child_main(spec_path: str) -> None:
    """Entry point of one engine's child process: runs it and writes its result JSON."""
    import torch

    from compute.bench._memory import PeakMemory

    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    X = sp.load_npz(work / "cells.npz").tocsr()
    X = sp.csr_matrix(X[spec["rows"]] if spec.get("rows") is not None else X[: spec["cells"]], dtype=np.float32)
    engine = spec["engine"]
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    out: dict = {"engine": engine, "cells": X.shape[0], "device": torch.cuda.get_device_name(0) if cuda else "cpu", "threads": torch.get_num_threads()}

    if engine == "sc-signature":
        from SIGnature.models.scimilarity import SCimilarityWrapper

        model = SCimilarityWrapper(str(work / "model"), use_gpu=cuda)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            A = model.calculate_attributions(X, method="ig", batch_size=500, disable_tqdm=True)
            wall = time.perf_counter() - t0
    else:
        from compute.model import load_encoder

        enc = load_encoder(work / "model", map_location=device)
        if spec.get("float64"):
            enc = enc.double()
        if engine == "ours":
            from compute.attribution import attribute, describe_path, iter_attributions

            out["path"] = describe_path(enc, "ig")
            kinks = bool(spec.get("float64_near_kinks"))
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                if spec.get("discard"):  # memory scaling: stream and drop, as a writer to disk would
                    checksum = 0.0
                    for _, _, vals in iter_attributions(enc, X, "ig", batch_size=spec.get("batch_size"), device=device, float64_near_kinks=kinks):
                        checksum += float(np.abs(vals).sum())
                    A = None
                else:
                    A = attribute(enc, X, "ig", batch_size=spec.get("batch_size"), device=device, float64_near_kinks=kinks)
                wall = time.perf_counter() - t0
        else:  # captum, as SIGnature calls it
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                A = _captum_signature_call(enc, X, device, batch_size=500)
                wall = time.perf_counter() - t0
    out.update(wall_s=wall, cells_per_s=X.shape[0] / wall, rss_start=mem.start, rss_peak=mem.peak, rss_above_start=mem.above_start)
    if cuda:
        out["gpu_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    if A is not None:
        sp.save_npz(work / f"{spec['name']}.npz", sp.csr_matrix(A, dtype=np.float32))
    Path(spec["result"]).write_text(json.dumps(out))


def _captum_signature_call(encoder, X: sp.csr_matrix, device: str, batch_size: int) -> sp.csr_matrix:
    """Captum's generic IG as sc-signature 1.0 calls it (``calculate_attributions``, method "ig")."""
    import torch
    from captum.attr import IntegratedGradients

    from compute.attribution import scale_rows

    class TwoColumn(torch.nn.Module):  # sc-signature returns [F, F] so DeepLift/GradientShap accept it
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, inputs, weights):
            s = torch.sum(torch.abs(weights * self.model(inputs)), dim=1, keepdim=True)
            return torch.cat([s, s], dim=-1)

    wrapper = TwoColumn(encoder).eval()
    ig = IntegratedGradients(wrapper, multiply_by_inputs=True)
    dtype = next(encoder.parameters()).dtype
    blocks = []
    for start in range(0, X.shape[0], batch_size):
        xb = torch.tensor(X[start : start + batch_size].toarray(), dtype=dtype, device=device).requires_grad_(True)
        with torch.no_grad():
            e = encoder(xb).detach()
        attrs = ig.attribute(inputs=xb, baselines=torch.zeros_like(xb), target=0, additional_forward_args=(e,))
        blocks.append(sp.csr_matrix(attrs.abs().detach().cpu().numpy()))
    return scale_rows(sp.vstack(blocks).tocsr())


def _run_child(work: Path, name: str, **spec) -> dict:
    spec.update(work=str(work), name=name, result=str(work / f"{name}.json"))
    spec_path = work / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    code = "import sys; from compute.bench._attributions import _child_main; _child_main(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(spec_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child '{name}' failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((work / f"{name}.json").read_text())


# --------------------------------------------------------------------------- comparison


def _canonical(A) -> sp.csr_matrix:
    """CSR float64 with sorted, summed indices (sc-signature's vstack leaves them unsorted,
    which scipy's row-wise max does not expect)."""
    A = sp.csr_matrix(A, dtype=np.float64, copy=True)
    A.sum_duplicates()
    A.sort_indices()
    return A


def row_relative_diff(A: sp.csr_matrix, B: sp.csr_matrix) -> np.ndarray:
    """Per row: max |a - b| / max |b| (0 for rows that are zero in both)."""
    A, B = _canonical(A), _canonical(B)
    D = abs(A - B).tocsr()
    num = np.asarray(D.max(axis=1).todense()).ravel()
    den = np.asarray(abs(B).max(axis=1).todense()).ravel()
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _compare(A: sp.csr_matrix, B: sp.csr_matrix) -> dict:
    A, B = _canonical(A), _canonical(B)
    rel = row_relative_diff(A, B)
    absdiff = abs(A - B)
    return {
        "max_abs": float(absdiff.max()) if absdiff.nnz else 0.0,
        "max_rel_row": float(rel.max()) if rel.size else 0.0,
        "median_rel_row": float(np.median(rel)) if rel.size else 0.0,
        "rows_over_1e-5": int((rel > 1e-5).sum()),
        "rows": int(rel.size),
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def run_attribution_bench(cfg: AttributionBenchConfig, *, out=print, json_path: str | None = None) -> dict:
    """Run the benchmark, print the table through ``out``; returns all figures as a dict."""
    from compute.model import save_encoder

    captum_cells = min(cfg.captum_cells or cfg.cells, cfg.cells)
    n_data = max(cfg.cells, *cfg.memory_cells) if cfg.memory_cells else cfg.cells
    report: dict = {"config": asdict(cfg)}
    with tempfile.TemporaryDirectory(prefix="sigatlas-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        X = make_cells(n_data, cfg.genes, cfg.density, cfg.seed)
        sp.save_npz(work / "cells.npz", X, compressed=False)
        enc = make_model(cfg, X)
        save_encoder(enc, work / "model", card={"note": "random weights for benchmarking (SIMULATED)"})
        # sc-signature's wrapper also reads a label table
        (work / "model" / "label_ints.csv").write_text(",0\n0,simulated\n")
        nnz = X[: cfg.cells].nnz / (cfg.cells * cfg.genes)
        out(f"SigAtlas attribution benchmark: model {cfg.genes:,} genes -> {'-'.join(map(str, cfg.hidden))} -> {cfg.latent} (random weights),")
        out(f"  {cfg.cells:,} simulated log-normalised cells, {nnz:.1%} non-zero; setup {time.perf_counter() - t0:.1f} s")

        ours = _run_child(work, "ours", engine="ours", cells=cfg.cells, batch_size=cfg.batch_size)
        out(f"  device: {ours['device']} ({ours['threads']} threads); our path: {ours['path']}")
        exact = _run_child(work, "ours-f64-kinks", engine="ours", cells=cfg.cells, batch_size=cfg.batch_size, float64_near_kinks=True)
        captum = _run_child(work, "captum", engine="captum", cells=captum_cells)
        runs = {"captum": captum, "ours": ours, "ours-f64-kinks": exact}
        if cfg.signature:
            try:
                import SIGnature  # noqa: F401
            except ImportError:
                out("  sc-signature: not installed (pip install -e '.[bench]' to include it)")
            else:
                runs["sc-signature"] = _run_child(work, "sc-signature", engine="sc-signature", cells=captum_cells)
        A = {name: sp.load_npz(work / f"{name}.npz").tocsr() for name in runs}
        A["ours"], A["ours-f64-kinks"] = A["ours"][:captum_cells], A["ours-f64-kinks"][:captum_cells]

        # float64 reference: the first cells, plus every cell where the float32 engines disagree
        disagree = np.flatnonzero(row_relative_diff(A["ours"], A["captum"]) > 1e-5)
        ref_rows = np.union1d(np.arange(min(cfg.reference_cells, captum_cells)), disagree)
        _run_child(work, "reference", engine="captum", cells=captum_cells, rows=ref_rows.tolist(), float64=True)
        A_ref = sp.load_npz(work / "reference.npz").tocsr()
        report["reference_rows"] = {"first": int(min(cfg.reference_cells, captum_cells)), "disagreeing": int(disagree.size)}
        report["diff_vs_captum"] = {name: _compare(A[name], A["captum"]) for name in runs if name != "captum"}
        report["diff_vs_float64"] = {name: _compare(A[name][ref_rows], A_ref) for name in runs}
        if disagree.size:
            pos = np.searchsorted(ref_rows, disagree)
            report["diff_vs_float64_on_disagreeing"] = {name: _compare(A[name][disagree], A_ref[pos]) for name in runs}

        out("")
        out(f"  {'engine':<38}{'cells':>7}{'cells/s':>10}{'wall s':>9}{'peak RSS':>11}{'above start':>13}{'vs Captum':>11}")
        names = {
            "captum": "Captum IG (SIGnature's call)",
            "sc-signature": "sc-signature calculate_attributions",
            "ours": "SigAtlas attribute('ig')",
            "ours-f64-kinks": "  same, float64_near_kinks=True",
        }
        for key in ("captum", "sc-signature", "ours", "ours-f64-kinks"):
            if key not in runs:
                continue
            r = runs[key]
            ratio = r["cells_per_s"] / captum["cells_per_s"]
            out(f"  {names[key]:<38}{r['cells']:>7,}{r['cells_per_s']:>10.1f}{r['wall_s']:>9.1f}{_mb(r['rss_peak']):>11}"
                f"{_mb(r['rss_above_start']):>13}{ratio:>10.1f}x")
            if "gpu_peak_bytes" in r:
                out(f"  {'':<38}GPU peak {_mb(r['gpu_peak_bytes'])}")
        report["runs"] = runs
        report["speedup_vs_captum"] = ours["cells_per_s"] / captum["cells_per_s"]
        out("")
        out("  differences after scaling rows to 1,000 (row-relative = max |a - b| / max |b| in the cell):")
        for name, d in report["diff_vs_captum"].items():
            out(f"    {names[name].strip():<38} vs Captum float32 ({d['rows']:,} cells): max abs {d['max_abs']:.3g}, "
                f"max row-relative {d['max_rel_row']:.3g}, median {d['median_rel_row']:.3g}, cells over 1e-5: {d['rows_over_1e-5']}")
        out(f"  against a float64 Captum reference on {ref_rows.size} cells (the first {report['reference_rows']['first']} "
            f"and the {disagree.size} where ours and Captum float32 differ by more than 1e-5):")
        for name, d in report["diff_vs_float64"].items():
            extra = ""
            if disagree.size:
                dd = report["diff_vs_float64_on_disagreeing"][name]
                extra = f"; on the {disagree.size} disputed cells: max {dd['max_rel_row']:.3g}, over 1e-5: {dd['rows_over_1e-5']}"
            out(f"    {names[name].strip():<38} max row-relative {d['max_rel_row']:.3g}, cells over 1e-5: {d['rows_over_1e-5']}{extra}")

        if cfg.memory_cells:
            out("")
            out("  our memory as the number of cells grows (attributions streamed and dropped, as the build writes them away):")
            scaling = []
            for n in cfg.memory_cells:
                r = _run_child(work, f"ours-mem-{n}", engine="ours", cells=n, batch_size=cfg.batch_size, discard=True)
                scaling.append(r)
                out(f"    {n:>7,} cells: {r['cells_per_s']:8.1f} cells/s, working memory {_mb(r['rss_above_start'])} above the loaded model and input")
            report["memory_scaling"] = scaling
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
        out(f"\n  figures written to {json_path}")
    return report

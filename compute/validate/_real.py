"""Real studies, compared fairly: the two-panel check (method.md section 6) on real cells.

celltypist's bundled sample (559 real cells, 32,786 genes, integer counts) is ingested twice,
once on its full panel and once restricted to the 765 genes of scanpy's PBMC 68k study (a real
panel of another study); scanpy's PBMC 68k cells join as a third study. The same cells should
give the same hit rate on both panels for a marker set measured in both: the table reports the
hit % of each copy on SigAtlas' panel-invariant scale, on SIGnature's raw rows-to-1,000 scale
and by expression (score_genes), and the ratio of the two copies.
"""

from __future__ import annotations

import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

__all__ = ["HSMM_FILES", "MARKER_SETS", "TWO_PANEL_IDS", "celltypist_sample", "held_out_ratios", "hsmm_fpkm", "oligodendroglioma_tpm", "two_panel_manifest",
           "two_panel_table"]

HSMM_FILES = ("HSMM_expr_matrix.rda", "HSMM_gene_annotation.rda", "HSMM_sample_sheet.rda")
# where `make test-data` puts Bioconductor's HSMMSingleCell data (from Debian's r-bioc-hsmmsinglecell)
HSMM_DIR = Path(__file__).resolve().parents[2] / ".cache" / "test-data" / "HSMMSingleCell"

# immune marker sets of the shipped marker tree, asked of both copies
MARKER_SETS = ("CD14+ Monocyte", "Natural killer cell", "B cell", "T cell", "Platelet")
# a marker set is compared across the two panels when at least this many of its genes are on both
# (PBMC 68k's 765 genes keep one of the platelet set's seven, CXCR4, a lymphocyte gene: no set)
MIN_SET_GENES = 2
FULL, PANEL = "CT_FULL", "CT_PANEL"
TWO_PANEL_IDS = (FULL, PANEL)  # the two copies' study ids: full panel, 765-gene panel


def celltypist_sample():
    """celltypist's bundled 559 real cells x 32,786 genes (integer counts) as AnnData."""
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        path = files("celltypist").joinpath("data", "samples", "sample_cell_by_gene.csv")
    with open(str(path), encoding="utf-8") as f:
        genes = f.readline().rstrip("\n").split(",")[1:]
        cells, rows = [], []
        for line in f:
            name, _, rest = line.rstrip("\n").partition(",")
            cells.append(name)
            rows.append(np.array(rest.split(","), dtype=np.float32))
    return ad.AnnData(X=sp.csr_matrix(np.vstack(rows)), obs=pd.DataFrame(index=pd.Index(cells)),
                      var=pd.DataFrame(index=pd.Index(genes)))


def oligodendroglioma_tpm():
    """infercnvpy's 184 Smart-seq oligodendroglioma cells (Tirosh et al. 2016) as TPM, or None
    when infercnvpy is not installed. infercnvpy 0.6 ships TPM / 10 (cells sum to about 1e5)."""
    try:
        import infercnvpy as cnv
    except ImportError:
        return None
    a = cnv.datasets.oligodendroglioma()
    out = a.copy()
    out.X = sp.csr_matrix(sp.csr_matrix(a.X, dtype=np.float64) * 10.0, dtype=np.float32)
    out.obs["disease"], out.obs["tissue"] = "oligodendroglioma", "brain"
    return out


def hsmm_fpkm(directory: str | Path = HSMM_DIR, index: str = "symbol"):
    """Bioconductor HSMMSingleCell: 271 human myoblasts x 47,192 genes of FPKM, or None when
    its .rda files (or pyreadr) are absent. ``index="symbol"``: var index = gene_short_name
    (duplicated names included); ``"ensembl"``: Ensembl ids, short names in var['gene_short_name']."""
    import anndata as ad

    directory = Path(directory)
    try:
        import pyreadr
    except ImportError:
        return None
    if not all((directory / f).is_file() for f in HSMM_FILES):
        return None
    expr, genes, samples = (next(iter(pyreadr.read_r(str(directory / f)).values())) for f in HSMM_FILES)
    obs = samples.loc[expr.columns].copy()
    for c in obs.columns:
        if isinstance(obs[c].dtype, pd.CategoricalDtype):
            obs[c] = obs[c].astype(str)
    obs["cell_type"], obs["disease"], obs["tissue"] = "myoblast", "normal", "skeletal muscle"
    short = genes.loc[expr.index, "gene_short_name"].astype(str).to_numpy()
    var = pd.DataFrame(index=pd.Index(short)) if index == "symbol" else pd.DataFrame({"gene_short_name": short}, index=pd.Index(expr.index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicated short names: ingest sums and reports them
        return ad.AnnData(X=sp.csr_matrix(expr.to_numpy(dtype=np.float64).T, dtype=np.float32), obs=obs, var=var)


def other_real_studies(work: str | Path) -> list[dict]:
    """Manifest entries (files written into ``work``) for the real non-count studies that are
    available here: the oligodendroglioma set (TPM) and HSMM (FPKM)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for sid, adata, values, title in (("OLIGO", oligodendroglioma_tpm(), "tpm", "Tirosh 2016 oligodendroglioma, Smart-seq (TPM)"),
                                      ("HSMM", hsmm_fpkm(), "fpkm", "HSMMSingleCell myoblast time course (FPKM)")):
        if adata is None:
            continue
        for c in adata.obs.columns:
            if adata.obs[c].dtype == object:
                adata.obs[c] = adata.obs[c].astype("category")
        adata.write_h5ad(work / f"{sid}.h5ad")
        out.append({"id": sid, "title": title, "source": {"kind": "h5ad", "path": f"{sid}.h5ad", "values": values},
                    "tissue": {"column": "tissue"}, "disease": {"column": "disease"},
                    "columns": {"cell_type": "cell_type", "sample": None, "donor": None}})
    return out


def two_panel_manifest(work: str | Path, *, epochs: int = 8, extra_studies: list[dict] | None = None, panel_dropout: float = 0.0,
                       panel_consistency: float = 0.0, embedding_genes: str = "auto") -> Path:
    """Write the two copies (h5ad) and a manifest for them plus PBMC 68k into ``work``;
    returns the manifest path (``embedding_genes``: the manifest's embedding.genes). Both copies label their cells 'PBMC' (the sample has no
    annotation), so the triplet loss pairs them; each copy is one sample."""
    import scanpy as sc

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    full = celltypist_sample()
    panel_genes = set(sc.datasets.pbmc68k_reduced().raw.var_names)
    for sid, adata, label in ((FULL, full, "full panel"), (PANEL, full[:, [g in panel_genes for g in full.var_names]].copy(), "765-gene panel")):
        adata.obs["cell_type"] = pd.Categorical(["PBMC"] * adata.n_obs)
        # one 'disease' per copy, so each ranking compares the copies
        adata.obs["disease"] = pd.Categorical([label] * adata.n_obs)
        adata.write_h5ad(work / f"{sid}.h5ad")
    studies = [
        {"id": sid, "title": f"celltypist sample, {label} (real cells)", "source": {"kind": "h5ad", "path": f"{sid}.h5ad"},
         "tissue": "blood", "disease": {"column": "disease"}, "columns": {"cell_type": "cell_type", "sample": None, "donor": None}}
        for sid, label in ((FULL, "full panel"), (PANEL, "765-gene panel"))
    ]
    studies.append({"id": "PBMC68K", "title": "10x PBMC 68k (reduced)", "source": {"kind": "scanpy-pbmc68k"},
                    "tissue": "blood", "disease": "normal", "columns": {"cell_type": "bulk_labels", "sample": None, "donor": None}})
    studies += extra_studies or []
    manifest = {
        "version": 1, "atlas": {"name": "real-two-panel", "out": "atlas"}, "seed": 0,
        "model": {"kind": "train", "hidden_sizes": [256, 128], "latent_dim": 64, "epochs": epochs, "batch_size": 256,
                  "panel_dropout": panel_dropout, "panel_consistency": panel_consistency},
        "ingest": {"min_genes": 200, "min_counts": 500, "min_gene_overlap": 300},
        "attribution": {"method": "ig", "n_steps": 50, "batch_size": 256},
        "embedding": {"umap": False, "genes": embedding_genes},
        "studies": studies,
    }
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def two_panel_table(atlas) -> pd.DataFrame:
    """Hit % of each copy (the 90th percentile of both copies' cells pooled), per marker set:
    panel-invariant attribution scale, SIGnature's raw scale, and score_genes; the ratios
    (larger / smaller copy; inf when one copy has no hit). ``twin ratio``: the median over the
    cells present in both copies of (score on the 765-gene panel / score on the full panel),
    among cells where both are above zero (for expression: the mean log expression of the set):
    a hit rate can agree only because both copies detect the same cells, the twin ratio shows
    the scale itself."""
    from compute.query import QueryParams, run_query
    from compute.reference import immune_markers

    markers = immune_markers()
    both = set(atlas.genes[i] for i in np.intersect1d(atlas.measured(FULL), atlas.measured(PANEL)))
    labels = {FULL: "full panel", PANEL: "765-gene panel"}
    twins = _twins(atlas)
    rows = []
    for name in MARKER_SETS:
        genes = [g for g in markers[name] if g in both]
        if len(genes) < MIN_SET_GENES:
            continue
        row = {"marker set": name, "genes": len(genes)}
        for scale in ("panel", "raw"):
            pct = _copy_hit_pct(atlas, genes, scale)
            row[f"attr {scale}: full"], row[f"attr {scale}: 765"] = pct[labels[FULL]], pct[labels[PANEL]]
        expr = atlas.gene_values(genes, store="expr")
        measured = ~np.isnan(expr)
        # mean log expression over the set's measured genes (NaN for cells of studies that measured none)
        expr_mean = np.divide(np.nansum(expr, axis=1), measured.sum(axis=1), out=np.full(len(expr), np.nan), where=measured.any(axis=1))
        for kind, values in (("attr panel", atlas.score(genes, studies=[FULL, PANEL])),
                             ("attr raw", atlas.score(genes, studies=[FULL, PANEL], scale="raw")),
                             ("expr", expr_mean)):
            a, b = values[twins[0]], values[twins[1]]
            ok = (a > 0) & (b > 0)
            row[f"{kind}: twin ratio"] = float(np.median(b[ok] / a[ok])) if ok.any() else float("nan")
        r = run_query(atlas, QueryParams(genes=tuple((g, None) for g in genes), studies=(FULL, PANEL), cell_min=1, samp_min=1,
                                         expression=True))
        expr = r.expression_diseases.set_index("group")["mean_hit_pct"]
        row["expr: full"], row["expr: 765"] = float(expr.get(labels[FULL], 0.0)), float(expr.get(labels[PANEL], 0.0))
        rows.append(row)
    table = pd.DataFrame(rows)
    for kind in ("attr panel", "attr raw", "expr"):
        a, b = table[f"{kind}: full"], table[f"{kind}: 765"]
        table[f"{kind}: ratio"] = np.where(np.minimum(a, b) > 0, np.maximum(a, b) / np.minimum(a, b).where(np.minimum(a, b) > 0, 1), np.inf)
    return table


def held_out_ratios(atlas, seed: int = 1, min_genes: int = MIN_SET_GENES) -> dict[str, float]:
    """The two-panel check on cells the calibration never saw: the 765-gene copy's factors computed
    (through the atlas's encoder, as the build computes them) from a seeded half of the full-panel
    cells, and the two copies of the other half compared: per marker set, the larger / smaller hit
    % above the 90th percentile of both copies' held-out cells pooled. Like :func:`two_panel_table`,
    only the sets with at least ``min_genes`` genes measured on both panels (``min_genes=1`` adds
    the sets the panel leaves with one gene: that gene's own tail, not a set's)."""
    from compute.build import factors_from_cells
    from compute.reference import immune_markers

    entries = atlas.meta["studies"]
    full_i = next(i for i, e in enumerate(entries) if e["id"] == FULL)
    n_full = entries[full_i]["n_cells"]  # every full-panel cell
    measured = atlas.measured(PANEL)
    twins_full, twins_panel = _twins(atlas)
    full_offset = next(s.offset for s in atlas.studies if s.id == FULL)
    fit = np.random.default_rng(seed).random(n_full) < 0.5  # the half the factors are computed on
    method = atlas.meta["method"]["attribution"]
    factors, _ = factors_from_cells(atlas.path, entries, len(atlas.genes), PANEL, (np.full(int(fit.sum()), full_i), np.flatnonzero(fit)),
                                    {"method": method["method"], "n_steps": method["n_steps"], "batch_size": 256})
    if factors is None:
        raise ValueError(f"{atlas.path}: too few full-panel cells would pass {PANEL}'s QC to calibrate it on half of them")
    held_out = ~fit[twins_full - full_offset]
    both = set(atlas.genes[i] for i in np.intersect1d(atlas.measured(FULL), measured))
    markers = immune_markers()
    ratios = {}
    for name in MARKER_SETS:
        genes = [g for g in markers[name] if g in both]
        if len(genes) < max(min_genes, 1):
            continue
        pos = np.array([atlas.genes.index(g) for g in genes])
        raw = atlas.gene_values(genes, scale="raw")
        full = raw[twins_full[held_out]].mean(axis=1)
        on_panel = (raw[twins_panel[held_out]] * factors[pos]).mean(axis=1)
        cut = np.quantile(np.concatenate([full, on_panel]), 0.9)
        hits = 100 * np.mean(full > cut), 100 * np.mean(on_panel > cut)
        ratios[name] = float(max(hits) / max(min(hits), 1e-9))
    return ratios


def _twins(atlas) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (in ``atlas.cells``) of the cells present in both copies: (full, panel)."""
    cells = atlas.cells
    ids = cells["cell_id"].astype(str).to_numpy()
    study = cells["study"].astype(str).to_numpy()
    full = {c: i for i, c in enumerate(ids) if study[i] == FULL}
    pairs = [(full[c], i) for i, c in enumerate(ids) if study[i] == PANEL and c in full]
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


def _copy_hit_pct(atlas, genes: list[str], scale: str) -> dict[str, float]:
    """{copy label: % of its cells above the pooled 90th percentile} on ``scale``."""
    scores = atlas.score(genes, studies=[FULL, PANEL], scale=scale)
    cells = atlas.cells
    sel = cells["study"].astype(str).isin([FULL, PANEL]).to_numpy()
    cut = np.quantile(scores[sel], 0.9)
    out = {}
    for label, part in cells[sel].groupby("disease", observed=True).groups.items():
        idx = cells.index.get_indexer(part)
        out[str(label)] = float(100.0 * np.mean(scores[idx] > cut))
    return out


def _two_panel_reading(table) -> str:
    """The two-panel table in words, from its own numbers (what holds depends on the encoder's
    training and the atlas's other studies, so no sentence is written in advance)."""

    def span(col: str) -> str:
        values = [float(v) for v in table[col] if np.isfinite(float(v))]
        return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"

    def within(kind: str) -> list[str]:
        return [str(m) for m, r in zip(table["marker set"], table[f"{kind}: ratio"], strict=True) if float(r) <= 1.5]

    n = len(table)
    lines = [f"Reading (from the table above): twin ratios on SIGnature's raw scale {span('attr raw: twin ratio')} (each "
             "cell's 1,000 spread over fewer genes lifts every gene of the small panel); by expression "
             f"{span('expr: twin ratio')}; on SigAtlas' panel scale {span('attr panel: twin ratio')}."]
    for kind, name in (("attr panel", "panel-scale attribution"), ("attr raw", "raw attribution"), ("expr", "expression")):
        ok = within(kind)
        lines.append(f"Hit rates within 1.5x by {name}: {len(ok)} of {n} marker sets" + (f" ({', '.join(ok)})" if ok else "") + ".")
    panel = [float(v) for v in table["attr panel: twin ratio"] if np.isfinite(float(v))]
    if panel and max(panel) / max(min(panel), 1e-12) > 1.5:
        lines.append("The panel-scale twin ratios still differ between marker sets by more than 1.5x: the calibration "
                     "(per-gene factors from full-panel reference cells, whole and masked to the panel) leaves a per-gene "
                     "shift of this encoder uncorrected.")
    lines.append("The goal (every set within 1.5x on the panel scale) is " + ("met." if len(within("attr panel")) == n else
                 "not met on this build."))
    return " ".join(lines)


def real_studies_section(atlas, command: str) -> str:
    """The validation report's "Real studies" section (markdown): the two-panel table and the
    build report of the real atlas."""
    from compute.atlas import study_report_text
    from compute.integration import integration_report

    table = two_panel_table(atlas)
    integration = integration_report(atlas.embedding(), atlas.cells).text()
    cols = ["marker set", "genes"] + [f"{k}: {c}" for k in ("attr panel", "attr raw", "expr") for c in ("full", "765", "ratio", "twin ratio")]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |\n"
                   for _, row in table.iterrows())
    return (
        "## Real studies: the same cells on two gene panels\n\n"
        f"Produced by `{command}`. Real cells only: celltypist's bundled sample (559 cells, 32,786 genes, counts) "
        "ingested twice, on its full panel (CT_FULL) and on the 765 genes of scanpy's PBMC 68k study (CT_PANEL), "
        "plus the 700 PBMC 68k cells, and the real non-count studies available to the build (infercnvpy's "
        "oligodendroglioma set as TPM, HSMMSingleCell as FPKM). Hit % of each copy above the 90th percentile of both copies pooled, for the "
        "immune marker sets measured in both: on SigAtlas' panel-invariant scale (attr panel: each partial-panel study's "
        "values times per-gene factors that the build calibrates through the encoder on the full-panel study's cells, "
        "README 'One scale across panels'), on SIGnature's "
        "rows-to-1,000 scale (attr raw) and by score_genes on the stored expression (expr); ratio = larger / "
        "smaller copy (inf: one copy has no hit); twin ratio = median over the cells in both copies of their "
        "score on the 765-gene panel / on the full panel (expression: mean log expression of the set), which "
        "shows the scale even where both copies simply detect the same cells. Goal: hit rates within 1.5x.\n\n"
        + head + body
        + "\n" + _two_panel_reading(table) + "\n\n"
        "Integration of the studies in the embedding (`compute.integration`; the two copies share the label 'PBMC', so "
        f"an embedding that ignored the panel would put about half of a copy's neighbours in the other copy): {integration}.\n\n"
        "### Per-study build report\n\n```\n" + study_report_text(atlas.meta) + "\n```\n"
    )


def run_real_validation(report: str | Path = "docs/validation.md", work: str | Path = ".validation/real", *, epochs: int = 8) -> str:
    """Build the real two-panel atlas in ``work`` (one process, 2 threads) and put its section
    into ``report`` (replacing an earlier one); returns the section."""
    import os

    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.manifest import load_manifest
    from compute.validate._report import replace_section

    os.environ.setdefault("SIGATLAS_THREADS", "2")
    manifest = two_panel_manifest(work, epochs=epochs, extra_studies=other_real_studies(work))
    build_atlas(load_manifest(manifest), scheduler="sync", quiet=True)
    section = real_studies_section(Atlas.open(Path(work) / "atlas", cache=False), "python -m compute validate --real")
    path = Path(report)
    replace_section(path, "## Real studies", section)
    return section

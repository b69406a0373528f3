"""Gene modules from co-attribution: groups of genes that carry attribution in the same cells.

How a module is found (``gene_modules``):
1. Metacells. Single-cell attributions are sparse (a gene not expressed in a cell has exactly
   zero attribution), so gene-gene correlations between single cells are weak. A metacell
   is the mean log1p attribution of ``k`` random cells of one study, sample and cell type
   (at most ``max_metacells``, seeded).
2. Within study and cell type. Every gene's metacell values are centred within the
   metacell's study x cell type, so a module is a set of genes that move together between
   samples and cells of one cell type in one study: not one cell type's markers, and not
   the genes one study happens to lack (those are zero in all its cells).
3. Correlation and clustering. Pearson correlation between genes (the genes detected in at
   least ``min_detection`` of cells, at most ``max_genes`` of them), average-linkage
   clustering on 1 - r, cut where the average correlation falls below ``r_cut``; clusters
   with at least ``min_size`` genes are modules.
4. Coherence. A gene set's coherence is the mean correlation over its pairs. Its z-score is
   against ``n_perm`` random sets of the same size, each gene replaced by a random gene of
   the same bin of mean attribution x detection (the query engine's null binning), with an
   empirical p-value (1 + #random >= observed) / (1 + n_perm).

``signature_modules`` places a pasted signature among them: the modules it overlaps
(hypergeometric p-value), its own coherence and z-score, and the genes that co-attribute
with it most but are missing from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.query import gene_bins, matched_draws

__all__ = ["MODULES_DIR", "GeneModules", "SignatureModules", "coherence_null", "default_params", "gene_modules", "read_gene_modules",
           "signature_modules", "stored_modules", "write_gene_modules"]

MODULES_VERSION = 1
MODULES_DIR = "gene_modules"  # the atlas's folder of its precomputed co-attribution modules
_CORR_FILE, _META_FILE = "corr.npy", "modules.json"
TABLE_COLUMNS = ["module", "name", "size", "coherence", "null_mean", "null_sd", "z", "p_value", "hub_genes", "genes"]


@dataclass
class GeneModules:
    """Modules of one atlas. ``genes``: the genes considered (gene-order symbols); ``corr``:
    their co-attribution correlation; ``labels``: module number per gene (0: in no module);
    ``table``: one row per module (module, name, size, coherence, null_mean, null_sd, z,
    p_value, hub_genes, genes), by decreasing z-score."""

    genes: list[str]
    corr: np.ndarray
    labels: np.ndarray
    bins: np.ndarray
    table: pd.DataFrame
    n_metacells: int
    params: dict = field(default_factory=dict)
    method: str = ""

    def module_genes(self, module: int) -> list[str]:
        return [g for g, lab in zip(self.genes, self.labels, strict=True) if lab == module]

    def index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}


@dataclass
class SignatureModules:
    """A signature among the modules.

    ``considered``: its genes among the module genes; ``not_considered``: its genes that are
    not (absent from the gene order, or detected in too few cells to correlate).
    ``overlaps``: module, name, size, overlap, overlap_genes, jaccard, p_value (hypergeometric,
    the chance of that many or more shared genes), module_z. ``missing``: gene, mean_r (mean
    correlation with the signature's genes), z (against all non-signature genes: (x - median)
    / (1.4826 MAD)), module.
    """

    considered: list[str]
    not_considered: list[str]
    coherence: float
    null_mean: float
    null_sd: float
    z: float
    p_value: float
    overlaps: pd.DataFrame
    missing: pd.DataFrame
    n_perm: int


_SEP = "\x1f"


def _study_groups(atlas) -> tuple[np.ndarray, list]:
    """(the sorted keys "study\x1fsample\x1fcell type" of the atlas's cell groups, and per study
    in atlas order (study, the global index of each of its groups, each cell's group among its
    own: uint16 below 65,536 groups)), read study by study: the build process never holds
    every cell's labels (at a million cells they made most of this stage's growth), only 2 B a
    cell."""
    parts = []
    for s in atlas.studies:
        df = atlas.study_cells(s.id, ["study", "sample", "cell_type"])
        key = (df["study"].astype(str) + _SEP + df["sample"].astype(str) + _SEP + df["cell_type"].astype(str)).to_numpy()
        keys, inv = np.unique(key, return_inverse=True)
        parts.append((s, keys, inv.astype(np.uint16 if keys.size < 2**16 else np.int32)))
    if not parts:
        return np.zeros(0, dtype=object), []
    all_keys = np.unique(np.concatenate([keys for _, keys, _ in parts]))
    return all_keys, [(s, np.searchsorted(all_keys, keys), inv) for s, keys, inv in parts]


def _group_codes(atlas) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted group keys, each cell's group index): the same numbers as np.unique over
    every cell's key at once."""
    all_keys, parts = _study_groups(atlas)
    if not parts:
        return all_keys, np.zeros(0, dtype=np.int64)
    return all_keys, np.concatenate([glob[inv] for _, glob, inv in parts]).astype(np.int64)


def _metacell_members(atlas, *, max_metacells: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(metacells x k cell rows, each metacell's group key). The cells of each group in a random
    order (one uniform draw a cell, in atlas order, ties by position), cut into metacells of
    ``k`` (leftover cells unused), groups in key order; at most ``max_metacells`` of them, drawn
    without replacement. Built study by study, holding only the metacells drawn: every cell's
    order and one array a metacell (about 112 B each: 45 MB at 4M cells) are never made."""
    all_keys, parts = _study_groups(atlas)
    sizes = np.zeros(all_keys.size, dtype=np.int64)
    for _, glob, inv in parts:
        sizes[glob] += np.bincount(inv, minlength=glob.size)
    cum = np.concatenate([[0], np.cumsum(sizes // k)])
    n_members = int(cum[-1])
    # the cells' uniform draws come first in the stream: skipped here, drawn again study by
    # study below from the saved state (each draw is one step of the generator)
    redo = np.random.Generator(type(rng.bit_generator)())
    redo.bit_generator.state = rng.bit_generator.state
    rng.bit_generator.advance(int(sizes.sum()))
    if n_members > max_metacells:
        pick = np.sort(rng.choice(n_members, size=max_metacells, replace=False))
    else:
        pick = np.arange(n_members)
    group_of = np.searchsorted(cum, pick, side="right") - 1
    nth = pick - cum[group_of]
    members = np.zeros((pick.size, k), dtype=np.int64)
    for s, glob, inv in parts:
        r = redo.random(inv.size)
        mine = np.flatnonzero(np.isin(group_of, glob))
        if not mine.size:
            continue
        order = np.lexsort((r, inv))  # the study's cells by group (key order), then by draw
        starts = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=glob.size))[:-1]])
        first = starts[np.searchsorted(glob, group_of[mine])] + nth[mine] * k
        members[mine] = s.offset + order[first[:, None] + np.arange(k)]
    return members, all_keys[group_of]


def _metacell_matrix(atlas, keep_genes: np.ndarray, *, max_metacells: int, k: int, seed: int, store: str = "attr"):
    """(metacells x kept genes) mean log1p attribution, each metacell's (study, cell type), and a method line.

    A metacell is ``k`` random cells of the same study, sample and cell type (leftover cells are
    not used); at most ``max_metacells`` of them, drawn at random (seeded: :func:`_metacell_members`)."""
    rng = np.random.default_rng(seed)
    groups, group_keys = _metacell_members(atlas, max_metacells=max_metacells, k=k, rng=rng)
    n_meta = len(groups)
    if n_meta == 0:
        return np.zeros((0, keep_genes.size), dtype=np.float32), np.zeros(0, dtype=object), "no metacells"
    rows = np.repeat(np.arange(n_meta), k)
    A = sp.csr_matrix((np.full(rows.size, 1.0 / k, dtype=np.float32), (rows, groups.ravel())), shape=(n_meta, atlas.n_cells))
    needed = np.zeros(atlas.n_cells, dtype=bool)
    needed[groups.ravel()] = True
    out = np.zeros((n_meta, keep_genes.size), dtype=np.float32)
    for s in atlas.studies:
        rows_s = needed[s.offset : s.offset + s.n_cells]
        if not rows_s.any():
            continue
        # a block of genes at a time: the build's memory does not grow with the study's size
        block = atlas.store(s.id, store, keep=False).rows_in_blocks(rows_s, keep_genes).tocsr().astype(np.float32)
        if store == "attr":
            block.data = np.log1p(block.data)  # the expression store is log1p-normalised already
        cols = s.offset + np.flatnonzero(rows_s)
        out += np.asarray((A[:, cols] @ block).todense(), dtype=np.float32)
    # a group's key is study, sample and cell type joined by \x1f: its stratum is study and cell type
    strata = np.array([f"{k.split(_SEP, 1)[0]}{_SEP}{k.rsplit(_SEP, 1)[1]}" for k in group_keys], dtype=object)
    method = (f"{n_meta:,} metacells of {k} cells each (same study, sample and cell type); values centred within "
              "study x cell type; Pearson correlation; average linkage")
    return out, strata, method


def _correlation(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    X = X.astype(np.float32, copy=True)
    for g in np.unique(groups):
        m = groups == g
        X[m] -= X[m].mean(axis=0)
    sd = np.sqrt((X**2).mean(axis=0))
    X /= np.where(sd > 0, sd, 1.0)
    R = (X.T @ X) / max(X.shape[0], 1)
    R[:, sd == 0] = 0.0
    R[sd == 0, :] = 0.0
    np.fill_diagonal(R, 1.0)
    return np.clip(R, -1.0, 1.0)


def _coherence(R: np.ndarray, idx: np.ndarray) -> float:
    idx = np.asarray(idx, dtype=np.int64)
    s = idx.size
    if s < 2:
        return float("nan")
    sub = R[np.ix_(idx, idx)]
    return float((sub.sum() - np.trace(sub)) / (s * (s - 1)))


def coherence_null(R: np.ndarray, bins: np.ndarray, idx: np.ndarray, n_perm: int, seed: int = 0) -> np.ndarray:
    """Coherence of ``n_perm`` bin-matched random sets the size of ``idx`` (never its genes)."""
    idx = np.asarray(idx, dtype=np.int64)
    s = idx.size
    if s < 2 or n_perm <= 0 or R.shape[0] - np.unique(idx).size < s:
        return np.zeros(0)  # too few other genes to draw random sets of this size from
    draws = matched_draws(idx, bins, n_perm, seed=seed)  # (n_perm, s)
    B = np.zeros((R.shape[0], n_perm), dtype=np.float32)
    np.add.at(B, (draws.ravel(), np.repeat(np.arange(n_perm), s)), 1.0)
    total = np.einsum("ij,ij->j", B, R @ B)  # 1' R_S 1 per draw, counting a repeated gene twice
    diag = np.einsum("ij,ij->j", B, B * np.diag(R)[:, None])
    return (total - diag) / (s * (s - 1))


def _z(obs: float, null: np.ndarray) -> tuple[float, float, float, float]:
    if null.size == 0 or not np.isfinite(obs):
        return float("nan"), float("nan"), float("nan"), float("nan")
    mu, sd = float(null.mean()), float(null.std(ddof=1)) if null.size > 1 else 0.0
    if not sd > 0:
        return mu, sd, float("nan"), float("nan")  # a degenerate null supports no p-value either
    z = (obs - mu) / sd
    p = (1 + int((null >= obs - 1e-12).sum())) / (1 + null.size)
    return mu, sd, z, p


def gene_modules(atlas, *, max_metacells: int = 8000, k: int = 10, min_detection: float = 0.01, max_genes: int = 4000,
                 r_cut: float = 0.05, min_size: int = 5, n_perm: int = 500, seed: int = 0, use_cache: bool = True,
                 store: str = "attr") -> GeneModules:
    """The atlas's gene modules (see the module docstring); kept in the atlas's result cache.

    ``store="expr"`` finds co-expression modules the same way on the stored log-normalised
    expression instead (for comparison; the validation suite reports both)."""
    if store not in ("attr", "expr"):
        raise ValueError(f"store must be 'attr' or 'expr', got {store!r}")
    if store == "expr" and not atlas.has_expression:
        raise ValueError(f"atlas '{atlas.name}' stores no expression: co-expression modules need it")
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    params = dict(max_metacells=max_metacells, k=k, min_detection=min_detection, max_genes=max_genes, r_cut=r_cut,
                  min_size=min_size, n_perm=n_perm, seed=seed, store=store)
    if use_cache and (stored := stored_modules(atlas, params)) is not None:
        return stored
    key = atlas.cache.key("gene_modules", MODULES_VERSION, params)
    if use_cache:
        hit = atlas.cache.get(key)
        if hit is not None:
            return hit
    sums, counts = np.zeros(len(atlas.genes)), np.zeros(len(atlas.genes))
    for s in atlas.studies:
        a, b = atlas.store(s.id, store, keep=False).gene_totals_in_blocks()  # a block of genes at a time
        sums += a
        counts += b
    detection = counts / max(atlas.n_cells, 1)
    keep = np.flatnonzero(detection >= min_detection)
    if keep.size > max_genes:
        keep = np.sort(keep[np.argsort(-detection[keep], kind="stable")[:max_genes]])
    genes = [atlas.genes[i] for i in keep]
    if keep.size < 2:
        empty = pd.DataFrame(columns=TABLE_COLUMNS)
        return GeneModules(genes, np.eye(keep.size, dtype=np.float32), np.zeros(keep.size, dtype=np.int64),
                           np.zeros(keep.size, dtype=np.int64), empty, 0, params, "too few detected genes")
    X, types, method = _metacell_matrix(atlas, keep, max_metacells=max_metacells, k=k, seed=seed, store=store)
    if X.shape[0] < 3:
        empty = pd.DataFrame(columns=TABLE_COLUMNS)
        return GeneModules(genes, np.eye(keep.size, dtype=np.float32), np.zeros(keep.size, dtype=np.int64),
                           np.zeros(keep.size, dtype=np.int64), empty, int(X.shape[0]), params,
                           f"too few metacells ({X.shape[0]}): every (study, sample, cell type) has fewer than {k} cells")
    R = _correlation(X, types)
    bins = gene_bins(sums[keep] / max(atlas.n_cells, 1), detection[keep])
    Z = linkage(squareform(1.0 - R, checks=False), method="average")
    raw = fcluster(Z, t=1.0 - r_cut, criterion="distance")
    sizes = np.bincount(raw)
    big = [c for c in np.unique(raw) if sizes[c] >= min_size]
    rows = []
    for c in big:
        idx = np.flatnonzero(raw == c)
        coh = _coherence(R, idx)
        mu, sd, z, p = _z(coh, coherence_null(R, bins, idx, n_perm, seed=seed + int(c)))
        hub = idx[np.argsort(-(R[np.ix_(idx, idx)].sum(axis=0)), kind="stable")]
        rows.append({"cluster": int(c), "size": int(idx.size), "coherence": coh, "null_mean": mu, "null_sd": sd, "z": z,
                     "p_value": p, "hub_genes": ", ".join(genes[i] for i in hub[:8]), "genes": [genes[i] for i in hub]})
    table = pd.DataFrame(rows)
    labels = np.zeros(keep.size, dtype=np.int64)
    if len(table):
        table = table.sort_values(["z", "size"], ascending=[False, False], na_position="last", kind="stable").reset_index(drop=True)
        table.insert(0, "module", np.arange(1, len(table) + 1))
        table.insert(1, "name", [f"M{m}" for m in table["module"]])
        for m, c in zip(table["module"], table["cluster"], strict=True):
            labels[raw == c] = m
        table = table.drop(columns="cluster")
    else:
        table = pd.DataFrame(columns=TABLE_COLUMNS)
    result = GeneModules(genes, R.astype(np.float32), labels, bins, table, int(X.shape[0]), params, method)
    if use_cache:
        atlas.cache.set(key, result)
    return result


def signature_modules(gm: GeneModules, genes, *, n_missing: int = 25, n_perm: int = 1000, seed: int = 0) -> SignatureModules:
    """Where a signature (``genes``: symbols) sits among the modules ``gm``."""
    from scipy.stats import hypergeom

    index = gm.index()
    seen: dict[str, None] = {}
    for g in genes:
        seen.setdefault(str(g), None)
    considered = [g for g in seen if g in index]
    not_considered = [g for g in seen if g not in index]
    idx = np.array([index[g] for g in considered], dtype=np.int64)
    R = gm.corr
    coh = _coherence(R, idx)
    mu, sd, z, p = _z(coh, coherence_null(R, gm.bins, idx, n_perm, seed=seed))
    N, n = len(gm.genes), idx.size
    sig_set = set(considered)
    rows = []
    for _, mod in gm.table.iterrows():
        mg = list(mod["genes"])
        shared = [g for g in mg if g in sig_set]
        if not shared:
            continue
        K = len(mg)
        rows.append({"module": int(mod["module"]), "name": mod["name"], "size": K, "overlap": len(shared),
                     "overlap_genes": ", ".join(shared), "jaccard": len(shared) / len(set(mg) | sig_set),
                     "p_value": float(hypergeom.sf(len(shared) - 1, N, K, n)), "module_z": float(mod["z"])})
    overlaps = pd.DataFrame(rows, columns=["module", "name", "size", "overlap", "overlap_genes", "jaccard", "p_value", "module_z"])
    if len(overlaps):
        overlaps = overlaps.sort_values(["p_value", "overlap"], ascending=[True, False], kind="stable").reset_index(drop=True)
    missing = pd.DataFrame(columns=["gene", "mean_r", "z", "module"])
    if n >= 1:
        others = np.setdiff1d(np.arange(N), idx)
        mean_r = R[np.ix_(others, idx)].mean(axis=1) if others.size else np.zeros(0)
        if others.size:
            med = float(np.median(mean_r))
            mad = float(np.median(np.abs(mean_r - med))) * 1.4826
            zs = (mean_r - med) / mad if mad > 0 else np.full(mean_r.size, np.nan)
            top = np.argsort(-mean_r, kind="stable")[:n_missing]
            names = dict(zip(gm.table["module"], gm.table["name"], strict=True)) if len(gm.table) else {}
            missing = pd.DataFrame({
                "gene": [gm.genes[others[i]] for i in top],
                "mean_r": mean_r[top].astype(float),
                "z": zs[top].astype(float),
                "module": [names.get(int(gm.labels[others[i]]), "") for i in top],
            })
    return SignatureModules(considered, not_considered, coh, mu, sd, z, p, overlaps, missing, n_perm)


def default_params() -> dict:
    """The parameters of :func:`gene_modules`'s defaults: the modules a build stores."""
    import inspect

    sig = inspect.signature(gene_modules)
    return {name: p.default for name, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and name != "use_cache"}


def write_gene_modules(gm: GeneModules, folder) -> list[str]:
    """Write ``gm`` into ``folder`` (the correlation matrix as .npy, memory-mapped when read; the
    rest as JSON), each file atomically. Returns the file names written."""
    import json
    from pathlib import Path

    from compute.files import atomic_write, save_npy_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(folder / _CORR_FILE, np.ascontiguousarray(gm.corr, dtype=np.float32))
    table = gm.table.astype(object).where(gm.table.notna(), None)
    doc = {"version": MODULES_VERSION, "genes": list(gm.genes), "labels": gm.labels.astype(int).tolist(),
           "bins": np.asarray(gm.bins).astype(int).tolist(), "n_metacells": int(gm.n_metacells), "params": gm.params,
           "method": gm.method, "table_columns": list(gm.table.columns), "table": table.to_dict(orient="records")}
    atomic_write(folder / _META_FILE, lambda t: t.write_text(json.dumps(doc, default=_plain)))
    return [_CORR_FILE, _META_FILE]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else list(value) if isinstance(value, np.ndarray) else str(value)


def read_gene_modules(folder) -> GeneModules:
    """The GeneModules written by :func:`write_gene_modules` in ``folder`` (the correlation matrix
    memory-mapped, read-only). Raises ValueError for another modules version."""
    import json
    from pathlib import Path

    folder = Path(folder)
    doc = json.loads((folder / _META_FILE).read_text())
    if doc.get("version") != MODULES_VERSION:
        raise ValueError(f"{folder}: gene modules of version {doc.get('version')}, this SigAtlas reads {MODULES_VERSION}")
    table = pd.DataFrame.from_records(doc["table"], columns=doc["table_columns"])
    for col in ("coherence", "null_mean", "null_sd", "z", "p_value"):
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return GeneModules(list(doc["genes"]), np.load(folder / _CORR_FILE, mmap_mode="r"), np.asarray(doc["labels"], dtype=np.int64),
                       np.asarray(doc["bins"], dtype=np.int64), table, int(doc["n_metacells"]), dict(doc["params"]), doc["method"])


def stored_modules(atlas, params: dict | None = None) -> GeneModules | None:
    """The modules the atlas's build stored (``params``: only when stored with these), or None when
    it stored none (atlases built before modules were stored, or with other parameters)."""
    record = (getattr(atlas, "meta", None) or {}).get("gene_modules")
    if not record or (params is not None and record.get("params") != params):
        return None
    return read_gene_modules(atlas.path / record["dir"])

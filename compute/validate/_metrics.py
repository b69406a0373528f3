"""What the validation measures, on one atlas at a time (planted truth from ``simulate_studies``).

Every function here takes a built atlas and returns plain records (lists of dicts), so the
report and the tests read the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from compute.query import HitRule, QueryParams, rank_groups, run_query, sample_hit_table

__all__ = [
    "PBMC_TYPES",
    "auroc",
    "evaluate_calibration",
    "evaluate_links",
    "evaluate_modules",
    "evaluate_pbmc",
    "precision_at_k",
    "stability",
]

METHODS = ("attribution", "expression")

# PBMC 68k's bulk labels -> (marker-tree entry in compute/assets/reference, lineage)
PBMC_TYPES: dict[str, tuple[str, str]] = {
    "CD14+ Monocyte": ("CD14+ Monocyte", "myeloid"),
    "Dendritic": ("CD1C+ dendritic cell", "myeloid"),
    "CD19+ B": ("B cell", "B"),
    "CD56+ NK": ("Natural killer cell", "NK"),
    "CD8+ Cytotoxic T": ("CD8 TEM", "T"),
    "CD8+/CD45RA+ Naive Cytotoxic": ("CD8 Naive T cell", "T"),
    "CD4+/CD25 T Reg": ("T regulatory cell", "T"),
    "CD4+/CD45RO+ Memory": ("CD4 TCM", "T"),
    "CD4+/CD45RA+/CD25- Naive T": ("CD4 Naive T cell", "T"),
    "CD34+": ("Hematopoietic stem cell", "progenitor"),
}


def auroc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at_k(scores, labels, k: int) -> float:
    """Share of positives among the ``k`` highest scores (ties broken by order given)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if k <= 0 or scores.size == 0:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def _rank_records(table: pd.DataFrame, positives: dict[str, float]) -> dict:
    groups = table["group"].astype(str).to_numpy()
    values = table["mean_hit_pct"].to_numpy(dtype=np.float64)
    labels = np.array([g in positives for g in groups])
    k = int(labels.sum())
    strength = np.array([positives.get(g, 0.0) for g in groups])
    rho = spearmanr(values, strength).statistic if len(groups) > 2 and np.ptp(strength) > 0 else float("nan")
    return {"auroc": auroc(values, labels), "precision_at_k": precision_at_k(values, labels, k), "k": k,
            "n_groups": len(groups), "spearman_strength": float(rho), "top": groups[0] if len(groups) else "",
            "ranking": dict(zip(groups, np.round(values, 3), strict=True))}


def evaluate_links(atlas, truth: dict, *, cell_min: int, samp_min: int, percentile: float = 90.0) -> list[dict]:
    """For each planted program: query its genes on its planted cell types (simulated studies
    only) and score the disease ranking against the planted links, for attribution and for
    expression (``score_genes``) scores under the same hit rule.

    Disease level: AUROC and precision at k (k = the number of planted diseases) of the mean
    sample hit %, Spearman with the planted strength. Sample level: AUROC of each sample's hit
    % for "its disease carries the program" (samples with >= ``cell_min`` cells)."""
    out = []
    rule = HitRule("percentile", percentile)
    for prog in truth["programs"]:
        positives = {d: float(s) for d, s in prog["strength"].items() if s > 0}
        params = QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]), data="simulated",
                             rule=rule, cell_min=cell_min, samp_min=samp_min, expression=True)
        r = run_query(atlas, params)
        expr = r.expression_scores
        expr_cut = rule.threshold(expr[r.selection])
        samples = {"attribution": r.samples, "expression": sample_hit_table(atlas.cells, expr, r.selection, expr_cut)}
        tables = {"attribution": r.diseases,
                  "expression": rank_groups(samples["expression"], "disease", cell_min, samp_min)}
        for method in METHODS:
            rec = {"program": prog["name"], "method": method, "n_genes": len(r.resolution.matched), "n_cells": r.n_selected}
            rec |= _rank_records(tables[method], positives)
            s = samples[method]
            s = s[s["n_cells"] >= cell_min]
            rec["sample_auroc"] = auroc(s["hit_pct"], s["disease"].astype(str).isin(positives))
            rec["n_samples"] = len(s)
            out.append(rec)
    return out


def gene_pool(atlas, truth: dict | None = None) -> list[str]:
    """The genes random test sets are drawn from: detected in the atlas and measured by every
    simulated study (a set is then scored on the same genes everywhere), without the genes of
    ``truth``'s planted programs when it is given."""
    planted = {g for p in truth["programs"] for g in p["genes"]} if truth else set()
    detected = np.zeros(len(atlas.genes))
    everywhere = np.ones(len(atlas.genes), dtype=bool)
    for s in atlas.studies:
        detected += atlas.store(s.id).gene_totals()[1]
        if s.simulated:
            everywhere &= atlas.measured_mask(s.id)
    return [g for g, c, m in zip(atlas.genes, detected, everywhere, strict=True) if c > 0 and m and g not in planted]


def evaluate_calibration(atlas, truth: dict, *, n_random: int, size: int, n_null: int, cell_min: int, samp_min: int,
                         marker_sets: dict[str, tuple[str, ...]] | None = None, seed: int = 0,
                         alphas=(0.01, 0.05, 0.10)) -> dict:
    """How often the query engine's null calls a disease significant for signatures with no
    planted effect: ``n_random`` random gene sets (``size`` genes, no planted-program gene) and
    cell-type marker sets (no disease effect planted on them). Returns the p-values and the
    observed rate at each nominal ``alphas`` (per disease test)."""
    pool = gene_pool(atlas, truth)
    rng = np.random.default_rng(seed)
    sets = {f"random {i + 1}": tuple(rng.choice(pool, size=min(size, len(pool)), replace=False)) for i in range(n_random)}
    kinds = dict.fromkeys(sets, "random genes")
    in_pool = set(pool)
    for name, genes in (marker_sets or {}).items():
        genes = tuple(g for g in genes if g in in_pool)  # measured everywhere, detected, not planted
        if genes:
            sets[name] = genes
            kinds[name] = "cell-type markers"
    rows = []
    for name, genes in sets.items():
        params = QueryParams(genes=tuple((g, None) for g in genes), data="simulated", cell_min=cell_min, samp_min=samp_min,
                             n_null=n_null, seed=int(rng.integers(1 << 30)))
        r = run_query(atlas, params)
        for group, p in r.null["disease"].p_values().items():
            rows.append({"signature": name, "kind": kinds[name], "disease": group, "p_value": p})
    frame = pd.DataFrame(rows)
    rates = []
    for kind in ("random genes", "cell-type markers", "all"):
        sub = frame if kind == "all" else frame[frame["kind"] == kind]
        if sub.empty:
            continue
        for a in alphas:
            rates.append({"signatures": kind, "alpha": a, "tests": len(sub), "n_signatures": sub["signature"].nunique(),
                          "false_positive_rate": float((sub["p_value"] <= a + 1e-12).mean())})
    return {"p_values": frame, "rates": pd.DataFrame(rates), "n_null": n_null, "p_floor": 1.0 / (n_null + 1)}


def stability(rankings: dict[int, dict[str, dict[str, float]]], link_records: dict[int, list[dict]],
              cell_scores: dict[int, dict[str, np.ndarray]]) -> list[dict]:
    """Across encoder-training seeds: per program, the mean pairwise Spearman of the disease
    hit %, how often the top disease agrees, the AUROC's spread, and the mean pairwise
    Spearman of per-cell scores. ``rankings[seed][program]``: {disease: mean hit %}."""
    seeds = sorted(rankings)
    out = []
    programs = list(rankings[seeds[0]])
    for prog in programs:
        rhos, tops, cell_rhos = [], [], []
        for i, a in enumerate(seeds):
            for b in seeds[i + 1 :]:
                ra, rb = rankings[a][prog], rankings[b][prog]
                common = sorted(set(ra) & set(rb))
                if len(common) > 2:
                    rhos.append(spearmanr([ra[g] for g in common], [rb[g] for g in common]).statistic)
                tops.append(max(ra, key=ra.get) == max(rb, key=rb.get))
                ca, cb = cell_scores[a][prog], cell_scores[b][prog]
                cell_rhos.append(spearmanr(ca, cb).statistic)
        aurocs = [next(r["auroc"] for r in link_records[s] if r["program"] == prog and r["method"] == "attribution") for s in seeds]
        out.append({"program": prog, "seeds": len(seeds), "disease_spearman": float(np.mean(rhos)) if rhos else float("nan"),
                    "top_agreement": float(np.mean(tops)) if tops else float("nan"),
                    "auroc_mean": float(np.mean(aurocs)), "auroc_min": float(np.min(aurocs)), "auroc_max": float(np.max(aurocs)),
                    "cell_spearman": float(np.mean(cell_rhos)) if cell_rhos else float("nan")})
    return out


def evaluate_pbmc(atlas, study: str = "PBMC68K", percentile: float = 90.0) -> list[dict]:
    """Real data: each PBMC cell type's marker set (compute/assets/reference) scored on the real
    study; the share of hit cells (above the ``percentile``-th score of the study's cells) that
    carry that label, and that lineage, for attribution and expression scores."""
    from compute.reference import immune_markers

    markers = immune_markers()
    cells = atlas.cells
    sel = (cells["study"].astype(str) == study).to_numpy()
    if not sel.any():
        return []
    # the study's own bulk labels (cell_type holds their ontology terms, several labels per term)
    column = "cell_type_original" if "cell_type_original" in cells else "cell_type"
    labels = cells[column].astype(str).to_numpy()
    lineage_of = {lab: lin for lab, (_, lin) in PBMC_TYPES.items()}
    lineages = np.array([lineage_of.get(lab, "other") for lab in labels])
    out = []
    rule = HitRule("percentile", percentile)
    for label, (entry, lineage) in PBMC_TYPES.items():
        in_type = sel & (labels == label)
        if not in_type.any():
            continue
        genes = markers[entry]
        measured = {atlas.genes[i] for i in atlas.measured(study)}
        used = [g for g in atlas.resolve(list(genes)).matched if g in measured]  # the markers this study measured
        if not used:
            out.append({"cell_type": label, "markers": entry, "n_markers": len(genes), "n_matched": 0})
            continue
        r = run_query(atlas, QueryParams(genes=tuple((g, None) for g in used), studies=(study,), rule=rule, cell_min=1,
                                         samp_min=1, expression=True))
        rec = {"cell_type": label, "markers": entry, "n_markers": len(genes), "n_matched": len(used),
               "matched": ", ".join(used), "n_cells": int(in_type.sum()), "share_of_cells": float(in_type.sum() / sel.sum()),
               "lineage": lineage}
        for method, scores in (("attribution", r.scores), ("expression", r.expression_scores)):
            cut = rule.threshold(scores[sel])
            hits = sel & (scores > cut)
            n_hits = int(hits.sum())
            rec[f"{method}_hits"] = n_hits
            rec[f"{method}_best_possible"] = min(1.0, float(in_type.sum()) / n_hits) if n_hits else float("nan")
            rec[f"{method}_right_type"] = float((hits & (labels == label)).sum() / n_hits) if n_hits else float("nan")
            rec[f"{method}_right_lineage"] = float((hits & (lineages == lineage)).sum() / n_hits) if n_hits else float("nan")
            rec[f"{method}_auroc"] = auroc(scores[sel], labels[sel] == label)
        out.append(rec)
    return out


def evaluate_modules(atlas, truth: dict, *, n_missing: int = 10, seed: int = 0) -> list[dict]:
    """Gene modules against the planted programs, from attributions and from expression.

    Per program: the best-matching module (Jaccard), the program's coherence z-score, and a
    hold-out: give half of the program's genes as the signature and count how many of the top
    ``n_missing`` co-attributing missing genes are the held-out half (chance: the held-out
    share of the candidate genes)."""
    from compute.genemodules import gene_modules, signature_modules

    out = []
    rng = np.random.default_rng(seed)
    for store, method in (("attr", "attribution"), ("expr", "expression")):
        if store == "expr" and not atlas.has_expression:
            continue
        gm = gene_modules(atlas, store=store, use_cache=False, seed=seed)
        universe = set(gm.genes)
        for prog in truth["programs"]:
            genes = [g for g in prog["genes"] if g in universe]
            if len(genes) < 4:
                continue
            best = (0.0, "", 0, 0)
            for _, mod in gm.table.iterrows():
                mg = set(mod["genes"])
                shared = len(mg & set(genes))
                jac = shared / len(mg | set(genes))
                if jac > best[0]:
                    best = (jac, mod["name"], int(mod["size"]), shared)
            whole = signature_modules(gm, genes, n_missing=0, n_perm=200, seed=seed)
            order = rng.permutation(len(genes))
            given = [genes[i] for i in order[: len(genes) // 2]]
            held = {genes[i] for i in order[len(genes) // 2 :]}
            sm = signature_modules(gm, given, n_missing=n_missing, n_perm=0, seed=seed)
            found = sum(g in held for g in sm.missing["gene"])
            out.append({"method": method, "program": prog["name"], "n_genes": len(genes), "n_modules": len(gm.table),
                        "best_module": best[1], "best_module_size": best[2], "best_shared": best[3], "best_jaccard": best[0],
                        "coherence": whole.coherence, "coherence_z": whole.z, "holdout_found": found, "holdout_asked": n_missing,
                        "holdout_chance": len(held) / max(len(gm.genes) - len(given), 1)})
    return out

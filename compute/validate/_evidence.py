"""Validation of the disease evidence (method.md section 7; ``python -m compute validate --evidence``).

One SIMULATED corpus, built once: every disease in two studies with its own healthy donors,
plus planted studies that test what the evidence says:
- a study of ulcerative colitis with no healthy donors and the MS1 genes captured 2x (a batch
  artifact, no biology): the disease must never be reported as a link and must be named as
  confounded;
- two psoriasis studies with their own controls and the same 2x artifact on both sides: the
  within-study contrast must see no effect;
- a third sepsis study in which the MS1 program is absent: heterogeneity and a wide
  leave-one-study-out range must show.
Measured on it: the calibration of the pooled test and of the corrected gene-set null on
no-effect signatures (random genes, cell-type marker sets), the power of the pooled effect
against the mean hit % (SIGnature's rule), attribution and expression, and the planted cases.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from compute.demo import PlantedStudy, SimulationConfig
from compute.query import HitRule, QueryParams, run_query

__all__ = ["EVIDENCE_MODEL", "EVIDENCE_SIM", "evaluate_evidence", "evidence_section", "run_evidence_validation"]

EVIDENCE_SIM = SimulationConfig(
    n_studies=18, disease_donors=3, healthy_donors=2, cells_per_sample=(90, 131), max_genes=900, seed=11,
    planted_studies=(
        PlantedStudy("SIMUC1", "ulcerative colitis", disease_donors=4, healthy_donors=0, artifact_program="MS1"),
        PlantedStudy("SIMPS1", "psoriasis", disease_donors=3, healthy_donors=2, artifact_program="MS1"),
        PlantedStudy("SIMPS2", "psoriasis", disease_donors=3, healthy_donors=2, artifact_program="MS1"),
        PlantedStudy("SIMSE3", "sepsis", disease_donors=3, healthy_donors=2, program_absent=True),
    ),
)
EVIDENCE_MODEL = {"kind": "train", "hidden_sizes": [128, 64], "latent_dim": 32, "epochs": 6, "batch_size": 256}
ALPHAS = (0.01, 0.05, 0.10)
ANY_SETS_PER_RANDOM = 4  # random sets drawn from every gene (the gene-set null's hypothesis) per never-planted set
CONFOUNDED, ARTIFACT_WITH_CONTROLS, HETEROGENEOUS = "ulcerative colitis", "psoriasis", "infectious disease with sepsis"


def _binomial_interval(n: int, alpha: float) -> tuple[float, float]:
    """The central 95% range of the observed rate of n independent tests at nominal ``alpha``."""
    lo, hi = stats.binom.ppf([0.025, 0.975], n, alpha)
    return float(lo / n), float(hi / n)


def _rates(frame: pd.DataFrame, column: str, label: str) -> list[dict]:
    """The share of ``frame``'s p-values (``column``) at or below each alpha, against the binomial
    range of nominal, and its own 95% interval with the signatures resampled (a signature's tests
    share its genes and donors, so they are not independent: the binomial range assumes they are)."""
    keep = np.isfinite(frame[column].to_numpy(dtype=float))
    p = frame[column].to_numpy(dtype=float)[keep]
    groups = pd.factorize(frame["signature"].to_numpy()[keep])[0]
    rng = np.random.default_rng(0)
    out = []
    for a in ALPHAS:
        if p.size == 0:
            continue
        lo, hi = _binomial_interval(p.size, a)
        called = p <= a + 1e-12
        rate = float(called.mean())
        hits, counts = np.bincount(groups, weights=called), np.bincount(groups)
        pick = rng.integers(counts.size, size=(2000, counts.size))
        boot = hits[pick].sum(axis=1) / np.maximum(counts[pick].sum(axis=1), 1)
        ci_lo, ci_hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        out.append({"test": label, "alpha": a, "tests": int(p.size), "n_signatures": int(counts.size), "rate": rate, "lo": lo,
                    "hi": hi, "inside": lo <= rate <= hi, "ci_lo": ci_lo, "ci_hi": ci_hi})
    return out


def _no_effect_sets(atlas, truth: dict, *, n_random: int, size: int, seed: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{name: (kind, genes)}: random detected genes measured by every simulated study, never a
    planted program's, and the immune cell-type marker sets among those genes."""
    from compute.demo import CELL_TYPES
    from compute.reference import immune_markers
    from compute.validate._metrics import gene_pool

    pool, anywhere = gene_pool(atlas, truth), gene_pool(atlas)
    rng = np.random.default_rng(seed)
    sets = {f"random {i + 1}": ("random genes", tuple(rng.choice(pool, size=min(size, len(pool)), replace=False)))
            for i in range(n_random)}
    # the gene-set null's own hypothesis: a set drawn like its random sets, from every gene
    # (planted programs included, so not a no-effect set for the within-study test); ANY_SETS_PER_RANDOM
    # times as many, as its verdict rests on them (150 sets gave 4.0% at 0.05 where 1,200 gave 5.3%)
    sets |= {f"any genes {i + 1}": ("random genes, any", tuple(rng.choice(anywhere, size=min(size, len(anywhere)), replace=False)))
             for i in range(ANY_SETS_PER_RANDOM * n_random)}
    markers = immune_markers()
    in_pool = set(pool)
    for ct, (entries, _) in CELL_TYPES.items():
        genes = tuple(g for g in dict.fromkeys(g for e in entries for g in markers[e]) if g in in_pool)
        if len(genes) >= 3:
            sets[f"{ct} markers"] = ("cell-type markers", genes)
    return sets


def _calibration(atlas, truth: dict, *, n_random: int, size: int, n_null: int, cell_min: int, samp_min: int, seed: int):
    from compute.demo import CELL_TYPES

    rows, runs = [], []
    for name, (kind, genes) in _no_effect_sets(atlas, truth, n_random=n_random, size=size, seed=seed).items():
        runs.append((name, kind, genes, ()))
        if kind == "cell-type markers":  # few sets: each also on every cell type alone, for more (correlated-gene) tests
            runs += [(f"{name} on {ct}", kind, genes, (ct,)) for ct in CELL_TYPES]
    for i, (name, kind, genes, cell_types) in enumerate(runs):
        params = QueryParams(genes=tuple((g, None) for g in genes), data="simulated", cell_types=cell_types, cell_min=cell_min,
                             samp_min=samp_min, n_null=n_null, seed=i + seed)
        r = run_query(atlas, params)
        null = r.null["disease"].groups.set_index("group")
        for d in r.diseases.itertuples():
            rows.append({"signature": name, "kind": kind, "disease": d.group, "evidence": d.evidence, "effect_p": d.effect_p,
                         "effect_z_p": d.effect_z_p, "null_p": null.loc[d.group, "p_value"],
                         "null_p_uncorrected": null.loc[d.group, "p_value_uncorrected"],
                         "null_p_plain": null.loc[d.group, "p_value_plain"], "vif": r.null["disease"].vif,
                         "vif_null": r.null["disease"].vif_null})
    frame = pd.DataFrame(rows)
    no_effect = frame[frame["kind"] != "random genes, any"]
    pooled = no_effect[no_effect["evidence"] == "pooled"]
    rates = []
    for kind in ("random genes", "cell-type markers", "no-effect sets"):
        sub = pooled if kind == "no-effect sets" else pooled[pooled["kind"] == kind]
        for column, label in (("effect_p", "pooled effect, permutation p"), ("effect_z_p", "pooled effect, z-test p")):
            rates += [r | {"signatures": kind} for r in _rates(sub, column, label)]
    for kind in ("random genes, any", "cell-type markers", "random genes"):
        sub = frame[frame["kind"] == kind]
        for column, label in (("null_p", "gene-set null, corrected"), ("null_p_uncorrected", "gene-set null, without the VIF"),
                              ("null_p_plain", "gene-set null as before (mean hit %, no correction)")):
            rates += [r | {"signatures": kind} for r in _rates(sub, column, label)]
    return frame, pd.DataFrame(rates)


def _within_study(samples: pd.DataFrame, every: pd.DataFrame, reference: tuple[str, ...], cell_min: int) -> np.ndarray:
    """Each of ``samples``' hit % minus the mean of its own study's reference donors among
    ``every`` sample (NaN: the study has no reference donor)."""
    from compute.query import donor_table

    donors = donor_table(every, cell_min)
    ref = donors[donors["disease"].isin(reference)].groupby("study")["hit_pct"].mean()
    return samples["hit_pct"].to_numpy(dtype=float) - samples["study"].astype(str).map(ref).to_numpy(dtype=float)


def _power(atlas, truth: dict, *, cell_min: int, samp_min: int) -> list[dict]:
    """Per planted program, attribution and expression: disease AUROC of the pooled effect
    (diseases without one rank last) and of the mean hit %; sample AUROC of the within-study
    hit % (the sample's hit % minus its study's reference donors' mean) and of the raw hit %.
    Positives: diseases planted with the program; samples whose donor carries it (truth)."""
    from compute.query import sample_hit_table
    from compute.validate._metrics import auroc

    active = {(s["id"], smp["sample"], name) for s in truth["studies"] for smp in s["samples"]
              for name, prog in smp["programs"].items() if prog["strength"] > 0}
    out = []
    for prog in truth["programs"]:
        positives = {d for d, s in prog["strength"].items() if s > 0}
        rule = HitRule("percentile", 90.0)
        r = run_query(atlas, QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]),
                                         data="simulated", rule=rule, cell_min=cell_min, samp_min=samp_min, expression=True))
        expr = r.expression_scores
        expr_samples = sample_hit_table(atlas.cells, expr, r.selection, rule.threshold(expr[r.selection]))
        for method, table, samples in (("attribution", r.diseases, r.samples),
                                       ("expression", r.expression_diseases, expr_samples)):
            if table is None:
                continue
            table = table[~table["group"].isin(r.reference_labels)]
            labels = table["group"].isin(positives).to_numpy()
            effect = table["effect"].to_numpy(dtype=float)
            kept = samples[(samples["n_cells"] >= cell_min) & ~samples["disease"].isin(r.reference_labels)]
            sample_labels = np.array([(s, smp, prog["name"]) in active for s, smp in zip(kept["study"], kept["sample"], strict=True)])
            within = _within_study(kept, samples, r.reference_labels, cell_min)
            has_within = np.isfinite(within)
            out.append({
                "program": prog["name"], "method": method, "n_diseases": int(len(table)), "n_positive": int(labels.sum()),
                "disease_auroc_effect": auroc(np.where(np.isfinite(effect), effect, -np.inf), labels),
                "disease_auroc_hit_pct": auroc(table["mean_hit_pct"].to_numpy(dtype=float), labels),
                "sample_auroc_within_study": auroc(within[has_within], sample_labels[has_within]),
                "sample_auroc_hit_pct": auroc(kept["hit_pct"].to_numpy(dtype=float)[has_within], sample_labels[has_within]),
                "n_samples": int(has_within.sum()),
                "significant_q05": sorted(table.loc[table["effect_q"] <= 0.05, "group"].astype(str)),
            })
    return out


def _planted_cases(atlas, truth: dict, *, cell_min: int, samp_min: int) -> dict:
    """The MS1 query on classical monocytes: the rows and per-study effects of the confounded,
    the artifact-with-controls and the heterogeneous disease."""
    prog = next(p for p in truth["programs"] if p["name"] == "MS1")
    r = run_query(atlas, QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]),
                                     data="simulated", cell_min=cell_min, samp_min=samp_min, n_null=199))
    d = r.diseases.set_index("group")
    ints = ("rank", "n_studies_positive", "n_studies_with_reference", "n_donors", "n_reference_donors")
    cols = ["mean_hit_pct", "rank", "evidence", "effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "tau2", "i2",
            "heterogeneity_p", "loo_lo", "loo_hi", "n_studies_positive", "n_studies_with_reference", "n_donors",
            "n_reference_donors"]
    null = r.null["disease"].groups.set_index("group")
    def plain(row) -> dict:
        return {c: (int(v) if c in ints else None if isinstance(v, float) and not np.isfinite(v) else v) for c, v in row.items()}

    out = {"ranking": [{"disease": g, **plain(d.loc[g, cols]),
                        "null_p": float(null.loc[g, "p_value"])} for g in d.index]}
    effects = r.study_effects[r.study_effects["measure"] == "hit_pct"]
    for key, disease in (("confounded", CONFOUNDED), ("artifact_with_controls", ARTIFACT_WITH_CONTROLS),
                         ("heterogeneous", HETEROGENEOUS)):
        row = d.loc[disease] if disease in d.index else None
        out[key] = {"disease": disease, "present": row is not None,
                    "row": None if row is None else plain(row[cols]),
                    "studies": effects[effects["disease"] == disease][["study", "g", "g_lo", "g_hi", "weight", "n_donors",
                                                                       "n_reference_donors", "reason"]].to_dict("records")}
    return out


def evaluate_evidence(atlas, truth: dict, *, n_random: int = 150, size: int = 20, n_null: int = 199, cell_min: int = 10,
                      samp_min: int = 3, seed: int = 0) -> dict:
    """Everything the evidence section reports, as plain records (see the module docstring)."""
    t0 = time.perf_counter()
    frame, rates = _calibration(atlas, truth, n_random=n_random, size=size, n_null=n_null, cell_min=cell_min,
                                samp_min=samp_min, seed=seed)
    t1 = time.perf_counter()
    power = _power(atlas, truth, cell_min=cell_min, samp_min=samp_min)
    cases = _planted_cases(atlas, truth, cell_min=cell_min, samp_min=samp_min)
    return {"rates": rates.to_dict("records"), "n_signatures": int(frame["signature"].nunique()),
            "n_tests": int(len(frame)),
            "vif_median": float(frame.groupby("signature")["vif"].first().median()),
            "vif_markers_median": float(frame[frame["kind"] == "cell-type markers"].groupby("signature")["vif"].first().median())
            if (frame["kind"] == "cell-type markers").any() else float("nan"),
            "vif_null_median": float(frame.groupby("signature")["vif_null"].first().median()),
            "power": power, "cases": cases, "n_null": n_null, "cell_min": cell_min, "samp_min": samp_min,
            "n_cells": int(atlas.n_cells), "n_studies": len(atlas.studies), "n_genes": len(atlas.genes),
            "seconds": {"calibration": round(t1 - t0, 1), "power_and_cases": round(time.perf_counter() - t1, 1)}}


def _f(x, nd=2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{nd}f}"


def _calibration_reading(rates: list[dict]) -> str:
    """The calibration table in a sentence: which tests stay inside the nominal range at 0.05."""
    def at(test, kind, alpha=0.05):
        return next((r for r in rates if r["test"] == test and r["signatures"] == kind and r["alpha"] == alpha), None)

    pooled = [r for r in rates if r["test"] == "pooled effect, permutation p"]
    ok = all(r["inside"] or r["rate"] < r["lo"] for r in pooled)
    words = [("The pooled within-study test (the disease-against-reference p-value a clinician reads) is "
              + ("calibrated at every alpha on both kinds of no-effect sets" if ok else "NOT calibrated on every kind of no-effect set")
              + ".")]
    for kind in ("random genes, any", "random genes", "cell-type markers"):
        new, old = at("gene-set null, corrected", kind), at("gene-set null as before (mean hit %, no correction)", kind)
        if new and old:
            ci = f", its interval {new['ci_lo']:.1%}-{new['ci_hi']:.1%}" if "ci_lo" in new else ""
            words.append(f"Gene-set null on {kind}: {new['rate']:.1%} of tests at p <= 0.05 after the corrections{ci} "
                         f"({old['rate']:.1%} before; nominal range {new['lo']:.1%}-{new['hi']:.1%}): "
                         + ("calibrated." if new["inside"] else "still too many." if new["rate"] > new["hi"] else "conservative."))
    own = [r for r in rates if r["test"] == "gene-set null, corrected" and r["signatures"] == "random genes, any"]
    fewer = [r for r in rates if r["test"] == "gene-set null, corrected" and r["signatures"] != "random genes, any"
             and not r["inside"] and r["rate"] < r["lo"]]
    if own and all(r["inside"] for r in own) and fewer:
        words.append("The gene-set null holds every alpha on sets drawn as its hypothesis states (random genes from every "
                     "gene). Its random sets may hold a planted program's genes, so a set built to hold none (the never-planted "
                     "random genes, the marker sets) meets random sets that sometimes carry a disease's program, and fewer "
                     "calls than nominal there answer the null's own question (would a random gene set like this one score as "
                     "high?); they never add false calls. Whether a disease differs from its reference is the pooled "
                     "within-study test's question, calibrated above.")
    return " ".join(words)


def evidence_section(res: dict, command: str) -> str:
    """The report's "Disease evidence" section (markdown) from :func:`evaluate_evidence`'s records."""
    L = ["## Disease evidence: within studies, pooled across studies", "",
         f"Produced by `{command}`. One SIMULATED corpus ({res['n_cells']:,} cells, {res['n_studies']} studies, "
         f"{res['n_genes']:,} genes; the real PBMC 68k study included but left out of every query here by `data=simulated`): "
         "every disease in two studies with 3 disease and 2 healthy donors each, plus planted studies: ulcerative colitis "
         "in one study with no healthy donors and the MS1 genes captured 2x (a batch artifact, no biology); psoriasis in two "
         "studies with their own controls and the same artifact on both sides; a third sepsis study without the MS1 program. "
         "The donor is the unit; the effect is Hedges' g of per-donor hit % against the same study's healthy donors, pooled by "
         "random effects (DerSimonian-Laird); its p-value permutes the disease and healthy labels among each study's donors.",
         "", "### Calibration", "",
         f"{res['n_signatures']} queries (each signature over all simulated cells; each marker set also on every cell type "
         f"alone), each with {res['n_null']} null draws "
         f"({res['n_tests']} disease tests). The **pooled within-study test** is checked on sets with no effect: random genes "
         "never planted, and immune cell-type marker sets (correlated genes), on the diseases with pooled evidence (2+ studies "
         "with their own healthy donors). The **gene-set null** asks whether the signature beats random matched gene sets; "
         "its hypothesis is a signature drawn like those sets, so it is checked on random genes drawn from every gene "
         "('random genes, any', planted programs included), on the marker sets, and, for comparison, on the never-planted "
         "genes. A test is calibrated when the share of p-values at or below alpha lies inside the central 95% range of a "
         "binomial at alpha. That range treats every test as independent; a signature's tests share its genes and donors, "
         "so the observed rate's own 95% interval, with the signatures resampled (2,000 bootstrap draws), is shown beside it "
         "and should hold alpha.", "",
         "| signatures | test | alpha | tests (signatures) | observed rate | its 95% interval (signatures resampled) | "
         "95% range of nominal | calibrated |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rates"]:
        ci = f"{r['ci_lo']:.3f}-{r['ci_hi']:.3f}" if "ci_lo" in r else "-"
        L.append(f"| {r['signatures']} | {r['test']} | {r['alpha']:.2f} | {r['tests']} ({r.get('n_signatures', '-')}) | "
                 f"{r['rate']:.3f} | {ci} | {r['lo']:.3f}-{r['hi']:.3f} | "
                 f"{'yes' if r['inside'] else ('conservative' if r['rate'] < r['lo'] else 'NO: too many')} |")
    L += ["", _calibration_reading(res["rates"])]
    L += ["", f"The signatures' variance inflation factor (CAMERA: 1 + (m - 1) x mean correlation of their genes across the "
          f"selected cells): median {_f(res['vif_median'])} (marker sets {_f(res['vif_markers_median'])}), random draws "
          f"{_f(res['vif_null_median'])}; the gene-set null's spread is scaled by sqrt(VIF / VIF of the draws).", ""]
    L += ["### Power: pooled effect against mean hit %", "",
          "Per planted program (its genes on its planted cell types): disease AUROC of the pooled effect (diseases without one "
          "rank last) and of the mean sample hit % (SIGnature's rule); sample AUROC of the within-study hit % (a sample's hit % "
          "minus its study's healthy donors' mean) and of the raw hit %, positives being the samples whose donor carries the "
          "program.", "",
          "| program | scores | disease AUROC, effect | disease AUROC, hit % | sample AUROC, within study | sample AUROC, hit % | "
          "diseases with q <= 0.05 |", "|---|---|---|---|---|---|---|"]
    for p in res["power"]:
        L.append(f"| {p['program']} | {p['method']} | {_f(p['disease_auroc_effect'])} | {_f(p['disease_auroc_hit_pct'])} | "
                 f"{_f(p['sample_auroc_within_study'])} | {_f(p['sample_auroc_hit_pct'])} | {', '.join(p['significant_q05']) or 'none'} |")
    cases = res["cases"]
    L += ["", "### The planted cases (MS1 on classical monocytes)", ""]
    c = cases["confounded"]
    row = c["row"] or {}
    L.append(f"- **Confounded** ({c['disease']}: one study, no healthy donors, MS1 genes captured 2x): mean hit % "
             f"{_f(row.get('mean_hit_pct'), 1)} (rank {row.get('rank', '-')}), evidence `{row.get('evidence', '-')}`, effect p "
             f"{_f(row.get('effect_p'), 3)}: "
             + ("never reported as a link, named as confounded." if row.get("evidence") == "no_within_study_reference"
                and row.get("effect_p") is None else "NOT as intended: see the table."))
    c = cases["artifact_with_controls"]
    row = c["row"] or {}
    q = row.get("effect_q")
    L.append(f"- **Same artifact with its own controls** ({c['disease']}, 2 studies): pooled g {_f(row.get('effect'))} "
             f"[{_f(row.get('effect_lo'))}, {_f(row.get('effect_hi'))}], p {_f(row.get('effect_p'), 3)}, q {_f(q, 3)}, mean hit % "
             f"{_f(row.get('mean_hit_pct'), 1)}: "
             + ("no link is reported (q > 0.05)" if q is not None and q > 0.05 else "a link was reported (q <= 0.05): see the table")
             + ("; its p alone is below 0.05, which no-effect tests do at their nominal rate (the calibration above)."
                if (row.get("effect_p") or 1) <= 0.05 else "."))
    c = cases["heterogeneous"]
    row = c["row"] or {}
    per_study = "; ".join(f"{s['study']} g {_f(s['g'])}" for s in c["studies"] if not s["reason"])
    L.append(f"- **Heterogeneous** ({c['disease']}: MS1 planted in two studies, absent from a third): pooled g "
             f"{_f(row.get('effect'))} [{_f(row.get('effect_lo'))}, {_f(row.get('effect_hi'))}], I^2 {_f(row.get('i2'))}, "
             f"tau^2 {_f(row.get('tau2'))}, Q p {_f(row.get('heterogeneity_p'), 3)}, leave-one-out range "
             f"{_f(row.get('loo_lo'))} to {_f(row.get('loo_hi'))}, {row.get('n_studies_positive', '-')} of "
             f"{row.get('n_studies_with_reference', '-')} studies with g > 0 ({per_study}).")
    L += ["", "| disease | mean hit % | evidence | g [95% CI] | p (permutation) | q | I^2 | specificity vs random sets p |",
          "|---|---|---|---|---|---|---|---|"]
    for r in cases["ranking"]:
        L.append(f"| {r['disease']} | {_f(r['mean_hit_pct'], 1)} | {r['evidence']} | {_f(r['effect'])} [{_f(r['effect_lo'])}, "
                 f"{_f(r['effect_hi'])}] | {_f(r['effect_p'], 3)} | {_f(r['effect_q'], 3)} | {_f(r['i2'])} | {_f(r['null_p'], 3)} |")
    L += ["", f"Measured in {res['seconds']['calibration']:.0f} s (calibration) and {res['seconds']['power_and_cases']:.0f} s "
          "(power and planted cases).", ""]
    return "\n".join(L)


def run_evidence_validation(report: str | Path = "docs/validation.md", work: str | Path = ".validation/evidence", *,
                            n_random: int = 150, log=print) -> dict:
    """Simulate and build the evidence corpus in ``work`` (one process), measure, and put the
    section into ``report`` (replacing an earlier one; results in ``evidence.json`` beside it)."""
    import os

    import yaml

    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.demo import demo_manifest_text, simulate_studies
    from compute.manifest import load_manifest
    from compute.validate._report import replace_section

    os.environ.setdefault("SIGATLAS_THREADS", "2")
    work = Path(work).resolve()
    data = work / "data"
    truth = simulate_studies(data, EVIDENCE_SIM)
    doc = yaml.safe_load(demo_manifest_text(EVIDENCE_SIM, data_dir=str(data)))
    doc["atlas"] = {"name": "validate-evidence", "out": str(work / "atlas")}
    doc["model"] = dict(EVIDENCE_MODEL)
    doc["embedding"] = {"n_neighbors": 10, "min_dist": 0.3, "umap": False}
    manifest = work / "manifest.yaml"
    manifest.write_text("# SigAtlas validation manifest: SIMULATED studies (plus the real PBMC 68k study)\n"
                        + yaml.safe_dump(doc, sort_keys=False))
    t0 = time.perf_counter()
    log(f"evidence corpus: simulate and build in {work}")
    build_atlas(load_manifest(manifest), scheduler="sync", quiet=True)
    log(f"built in {time.perf_counter() - t0:.0f} s; measuring")
    res = evaluate_evidence(Atlas.open(work / "atlas", cache=False), truth, n_random=n_random)
    res["build_s"] = round(time.perf_counter() - t0, 1)
    path = Path(report)
    (path.parent / "validation").mkdir(parents=True, exist_ok=True)
    (path.parent / "validation" / "evidence.json").write_text(json.dumps(res, indent=1, default=float))
    section = evidence_section(res, "python -m compute validate --evidence")
    replace_section(path, "## Disease evidence", section)
    return res

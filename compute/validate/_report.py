"""docs/validation.md from a validation run's results (tables, plain verdicts, figures)."""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from compute.integration import GOAL_MIXING, GOAL_PURITY

__all__ = ["gene_ranking_section", "gene_ranking_verdict", "headline", "integration_table", "verdicts", "write_report"]

TIE = 0.01  # a difference in AUROC smaller than this is reported as a tie
DROP = 0.05  # "degrades" = falls this far below its own value at the axis's base level
AXES = (("batch", "batch effects (sd of log gene capture per study)", "batch_sd", 0.25),
        ("depth", "depth differences (sd of log sequencing depth per study)", "depth_sd", 0.35),
        ("dropout", "gene dropout between studies (share of genes missing per study)", "missing", None))


def _f(x, nd=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _means(links: pd.DataFrame) -> pd.DataFrame:
    """Mean over programs per (scenario, method)."""
    cols = ["auroc", "precision_at_k", "sample_auroc", "spearman_strength"]
    g = links.groupby(["scenario", "method"], sort=False)[cols].mean().reset_index()
    meta = links.drop_duplicates("scenario").set_index("scenario")[["axis", "label", "effect_scale"]]
    return g.join(meta, on="scenario")


def _wide(means: pd.DataFrame) -> pd.DataFrame:
    w = means.pivot(index="scenario", columns="method", values=["auroc", "precision_at_k", "sample_auroc"])
    w.columns = [f"{a}_{b}" for a, b in w.columns]
    order = list(dict.fromkeys(means["scenario"]))
    return w.loc[order].join(means.drop_duplicates("scenario").set_index("scenario")[["axis", "label", "effect_scale"]])


def _winner(a: float, e: float) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (a, e)):
        return "n/a"
    if a - e > TIE:
        return "attribution"
    if e - a > TIE:
        return "expression"
    return "tie"


def headline(results: dict) -> pd.DataFrame:
    """One row per condition: disease AUROC, precision@k and sample AUROC (mean over the
    planted programs) for attribution and expression scores, and which is ahead."""
    links = pd.DataFrame(results["links"])
    links = links[links["axis"] != "seed"]
    w = _wide(_means(links))
    rows = []
    for key, r in w.iterrows():
        rows.append({"condition": r["label"], "scenario": key,
                     "disease AUROC (attr / expr)": f"{_f(r['auroc_attribution'])} / {_f(r['auroc_expression'])}",
                     "precision@k (attr / expr)": f"{_f(r['precision_at_k_attribution'])} / {_f(r['precision_at_k_expression'])}",
                     "sample AUROC (attr / expr)": f"{_f(r['sample_auroc_attribution'], 3)} / {_f(r['sample_auroc_expression'], 3)}",
                     "ahead (sample AUROC)": _winner(r["sample_auroc_attribution"], r["sample_auroc_expression"]),
                     "_a": r["sample_auroc_attribution"], "_e": r["sample_auroc_expression"],
                     "_da": r["auroc_attribution"], "_de": r["auroc_expression"]})
    return pd.DataFrame(rows)


def integration_table(results: dict) -> pd.DataFrame:
    """One row per atlas of the run: how well its embedding integrates the studies
    (compute.integration; empty for a run recorded before they were measured)."""
    rows = []
    for sc in results.get("scenarios", []):
        m = sc.get("integration")
        if not m:
            continue
        mixing, purity = m.get("mixing"), m.get("purity")
        rows.append({"condition": sc["label"], "scenario": sc["key"], "cross-study share": m["cross_study_share"],
                     "perfect mixing": m["perfect_share"], "share / perfect": mixing, "purity": purity,
                     "cell-type ASW": m["celltype_asw"], "batch ASW": m["batch_asw"], "iLISI within type": m["ilisi"],
                     "goal met": mixing is not None and purity is not None and mixing >= GOAL_MIXING and purity >= GOAL_PURITY,
                     # what integration costs: the encoder's eval reconstruction MSE (model card)
                     "reconstruction MSE": (sc.get("model") or {}).get("reconstruction_mse")})
    return pd.DataFrame(rows)


def _integration_verdict(results: dict) -> str | None:
    t = integration_table(results)
    if t.empty:
        return None
    mix = t["share / perfect"].astype(float)
    return (f"Integration of studies (goal: same-type neighbours from other studies at least {GOAL_MIXING:.0%} of perfect mixing, "
            f"neighbourhood purity >= {GOAL_PURITY}): met in {int(t['goal met'].sum())} of {len(t)} atlases; share / perfect "
            f"{_f(mix.min())}-{_f(mix.max())}, purity {_f(t['purity'].min())}-{_f(t['purity'].max())}.")


def _axis_stats(means: pd.DataFrame, base_key: str, axis: str) -> dict[str, dict] | None:
    """Per method along one robustness axis: base value, the (label, sample AUROC) levels, the
    largest drop below base and the last (noisiest) level's value. None when the axis was not run."""
    sub = means[means["axis"] == axis]
    if sub.empty:
        return None
    out = {}
    for method in ("attribution", "expression"):
        base = float(means[(means["scenario"] == base_key) & (means["method"] == method)]["sample_auroc"].iloc[0])
        seq = [(r["label"], float(r["sample_auroc"])) for _, r in sub[sub["method"] == method].iterrows()]
        out[method] = {"base": base, "seq": seq, "drop": base - min(v for _, v in seq), "last": seq[-1][1]}
    return out


def _degrade_level(values: list[tuple[str, float]], base: float) -> str | None:
    for label, v in values:
        if base - v >= DROP:
            return label
    return None


def verdicts(results: dict) -> list[str]:
    """Plain sentences: where attributions beat expression and where they do not."""
    h = headline(results)
    out = []
    counts = h["ahead (sample AUROC)"].value_counts()
    n = len(h)
    out.append(f"Sample-level recovery (AUROC, mean over the planted programs): attribution scores are ahead in "
               f"{counts.get('attribution', 0)} of {n} conditions, expression scores (score_genes) in {counts.get('expression', 0)}, "
               f"and the two are within {TIE} in {counts.get('tie', 0)}.")
    dis = [_winner(a, e) for a, e in zip(h["_da"], h["_de"], strict=True)]
    out.append(f"Disease-level recovery (AUROC of the disease ranking): attribution ahead in {dis.count('attribution')}, "
               f"expression ahead in {dis.count('expression')}, tied in {dis.count('tie')} of {n} conditions.")
    disease_ahead = [f"{r['condition']} ({_f(r['_da'])} vs {_f(r['_de'])})" for (_, r), w in zip(h.iterrows(), dis, strict=True)
                     if w == "attribution"]
    if disease_ahead:
        out.append("Where attributions are ahead on the disease ranking: " + "; ".join(disease_ahead) + ".")
    for _, r in h.iterrows():
        if r["ahead (sample AUROC)"] == "attribution":
            out.append(f"Attributions beat expression at **{r['condition']}** (sample AUROC {_f(r['_a'], 3)} vs {_f(r['_e'], 3)}).")
        elif r["ahead (sample AUROC)"] == "expression":
            out.append(f"Attributions do **not** beat expression at **{r['condition']}** (sample AUROC {_f(r['_a'], 3)} vs "
                       f"{_f(r['_e'], 3)}).")
    integration = _integration_verdict(results)
    if integration:
        out.append(integration)
    links = pd.DataFrame(results["links"])
    means = _means(links)
    base_key = results["base"]["robustness"]
    seeds = means[(means["method"] == "attribution") & ((means["axis"] == "seed") | (means["scenario"] == base_key))]
    if len(seeds) > 1:
        lo, hi = float(seeds["sample_auroc"].min()), float(seeds["sample_auroc"].max())
        out.append(f"Training noise: retraining the encoder with another seed on the same data moves the attribution sample AUROC "
                   f"at the robustness base between {_f(lo, 3)} and {_f(hi, 3)} ({len(seeds)} seeds); differences between "
                   "conditions smaller than that spread are within training noise. Expression scores do not depend on the encoder.")
    for axis, words, _, _ in AXES:
        st = _axis_stats(means, base_key, axis)
        if st is None:
            continue
        parts, firsts = [], {}
        for method, m in st.items():
            lvl = firsts[method] = _degrade_level(m["seq"], m["base"])
            parts.append(f"{method} {_f(m['base'], 3)} -> {_f(m['last'], 3)}"
                         + (f" (drops >= {DROP} first at {lvl})" if lvl else f" (never drops >= {DROP})"))
        labels = [label for label, _ in st["attribution"]["seq"]]
        a, e = firsts["attribution"], firsts["expression"]
        if a is None and e is None:
            first = "neither degrades by the stated margin"
        elif a is not None and (e is None or labels.index(a) < labels.index(e)):
            first = "attribution scores degrade first"
        elif e is not None and (a is None or labels.index(e) < labels.index(a)):
            first = "expression scores degrade first"
        else:
            first = "both degrade at the same level"
        a_last, e_last = st["attribution"]["last"], st["expression"]["last"]
        ahead = _winner(a_last, e_last)
        first += ("; at the noisiest level the two are tied" if ahead == "tie" else
                  f"; at the noisiest level {ahead} scores are still ahead ({_f(a_last, 3)} vs {_f(e_last, 3)})")
        out.append(f"With more {words}: {first}; sample AUROC " + "; ".join(parts) + ".")
    return out


def null_sentence(rate: float, tests: int) -> str:
    """The bottom line's sentence on the engine's null: its no-effect call rate at p <= 0.05 against
    the nominal 5%, with the rate's Wilson interval deciding consistent, conservative or too many."""
    lo, hi = _wilson(int(round(rate * tests)), int(tests))
    said = ("(consistent with the nominal 5%)." if lo <= 0.05 <= hi else
            f"(conservative: fewer false calls than the nominal 5%, interval {lo:.1%}-{hi:.1%}; the random sets here never "
            "carry a planted program, while the null's own random sets sometimes do: see the disease-evidence section)."
            if hi < 0.05 else f"(too many calls: more than the nominal 5%, interval {lo:.1%}-{hi:.1%}).")
    return f"The query engine's null calls {rate:.1%} of no-effect tests significant at p <= 0.05 {said}"


def bottom_line(results: dict) -> str:
    """The report's first paragraph: the verdicts in three sentences."""
    h = headline(results)
    n = len(h)
    won = h["ahead (sample AUROC)"].value_counts()
    a, e, t = won.get("attribution", 0), won.get("expression", 0), won.get("tie", 0)
    text = [f"On these SIMULATED corpora, attribution scores are ahead of expression scores (score_genes) at recovering planted "
            f"disease links in {a} of {n} conditions (sample-level AUROC), behind in {e} and tied in {t}."]
    means = _means(pd.DataFrame(results["links"]))
    base_key = results["base"]["robustness"]
    less, overtakes = [], []
    for axis, words, _, _ in AXES:
        st = _axis_stats(means, base_key, axis)
        if st is None:
            continue
        if st["expression"]["drop"] - st["attribution"]["drop"] > TIE:
            less.append(words.split(" (")[0])
        if _winner(st["attribution"]["last"], st["expression"]["last"]) == "attribution":
            overtakes.append(st["attribution"]["seq"][-1][0])
    if less:
        text.append(f"Attributions lose less than expression as {' and '.join(less)} grow, which is SIGnature's argument; "
                    + (f"at {', '.join(overtakes)} they overtake expression." if overtakes else
                       "here that narrows the gap but does not reverse it."))
    pb = pd.DataFrame(results.get("pbmc") or [])
    if len(pb):
        d = pb["attribution_right_type"].mean() - pb["expression_right_type"].mean()
        text.append("On real PBMC cells, marker signatures hit their own cell type " +
                    ("more often with attributions." if d > TIE else "less often with attributions." if d < -TIE else
                     "equally often with either score."))
    rates = pd.DataFrame(results["calibration"]["rates"])
    row = rates[(rates["signatures"] == "all") & (np.isclose(rates["alpha"], 0.05))]
    if len(row):
        r = row.iloc[0]
        text.append(null_sentence(float(r["false_positive_rate"]), int(r["tests"])))
    return " ".join(text)


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put ``section`` into the report at ``path`` in place of the section whose heading starts
    with ``heading`` (up to the next "## " heading), or at its end when there is none."""
    text = path.read_text() if path.is_file() else ""
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _figures(results: dict, folder: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    means = _means(pd.DataFrame(results["links"]))
    figs = []
    eff = means[means["axis"] == "effect"].sort_values("effect_scale", ascending=False)
    if len(eff):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, col, title in ((axes[0], "sample_auroc", "sample AUROC"), (axes[1], "auroc", "disease AUROC")):
            for method, style in (("attribution", "o-"), ("expression", "s--")):
                d = eff[eff["method"] == method]
                ax.plot(d["effect_scale"], d[col], style, label=method)
            ax.set_xscale("log")
            ax.set_xlabel("planted effect (x the demo's fold change)")
            ax.set_ylabel(title)
            ax.set_ylim(0.4, 1.02)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.legend(loc="lower right", fontsize=8)
        fig.suptitle("SIMULATED: recovery of planted disease links as the effect shrinks", fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / "recovery.png", dpi=110)
        plt.close(fig)
        figs.append(("recovery.png", "Recovery as the planted effect shrinks (SIMULATED)"))
    base_key = results["base"]["robustness"]
    present = [a for a in AXES if (means["axis"] == a[0]).any()]
    if present:
        fig, axes = plt.subplots(1, len(present), figsize=(3.3 * len(present), 3.4), squeeze=False)
        for ax, (axis, words, _, _) in zip(axes[0], present, strict=True):
            for method, style in (("attribution", "o-"), ("expression", "s--")):
                d = pd.concat([means[(means["scenario"] == base_key) & (means["method"] == method)],
                               means[(means["axis"] == axis) & (means["method"] == method)]])
                ax.plot(range(len(d)), d["sample_auroc"], style, label=method)
                ax.set_xticks(range(len(d)), ["base", *[lbl.split(" genes")[0] for lbl in d["label"].iloc[1:]]], fontsize=7)
            ax.set_title(words.split(" (")[0], fontsize=9)
            ax.set_ylabel("sample AUROC")
            ax.set_ylim(0.4, 1.02)
            ax.legend(loc="lower left", fontsize=7)
        fig.suptitle("SIMULATED: robustness to technical noise between studies", fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / "robustness.png", dpi=110)
        plt.close(fig)
        figs.append(("robustness.png", "Robustness to batch, depth and dropout (SIMULATED)"))
    return figs


# (column prefix, table heading, words, whether more is better); TFs: more is what SIGnature claims
# (regulatory genes stand out), though the list is partial
_GR_KINDS = (("markers", "markers", "known markers in the top {top}", True),
             ("TF", "TFs", "transcription factors (JASPAR CORE) in the top {top}", True),
             ("ribosomal", "ribosomal", "ribosomal genes in the top {top}", False),
             ("mitochondrial", "mitochondrial", "mitochondrial genes in the top {top}", False))


def _gr_kinds(t: pd.DataFrame):
    # results recorded before the TF share existed have no TF columns: show what they have
    return [k for k in _GR_KINDS if f"{k[0]} attribution" in t]


def _gr_winner(attr: float, expr: float, higher_better: bool) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (attr, expr)) or abs(attr - expr) < 1e-9:
        return "tie"
    return "attribution" if (attr > expr) == higher_better else "expression"


def gene_ranking_verdict(rows: list[dict], top: int, where: str) -> list[str]:
    """Plain sentences: per measure, in how many cell types each ranking does better (more known
    markers and transcription factors; fewer ribosomal and mitochondrial genes in the top ``top``)
    and the mean shares; for TFs also the share a top list would hold by chance."""
    if not rows:
        return []
    t = pd.DataFrame(rows)
    out = []
    for kind, _, words, higher in _gr_kinds(t):
        a, e = t[f"{kind} attribution"].astype(float), t[f"{kind} expression"].astype(float)
        won = [_gr_winner(x, y, higher) for x, y in zip(a, e, strict=True)]
        n = len(won)
        lead = ("attribution ranks better" if won.count("attribution") > won.count("expression") else
                "expression ranks better" if won.count("expression") > won.count("attribution") else "neither ranking is ahead")
        few = ""
        if not higher and f"{kind} measured" in t:
            most = int(t[f"{kind} measured"].max())
            if most < 10:  # a handful of such genes cannot fill a top 50 whichever way it ranks
                few = (f" Only {most} {kind} gene{'s' if most != 1 else ''} {'were' if most != 1 else 'was'} measured at most, "
                       "so this comparison says little here.")
        if kind == "TF" and {"TF measured", "genes measured"} <= set(t):
            # the list is partial, so the share a top list would hold by chance is the yardstick
            chance = (t["TF measured"] / t["genes measured"].where(t["genes measured"] > 0)).mean()
            few = (f" By chance (listed TFs among the genes measured) a top {top} would hold a share of about {_f(chance)}"
                   f" ({int(t['TF measured'].max())} listed TFs measured at most).")
        out.append(f"{where}, {words.format(top=top)} ({'more' if higher else 'fewer'} is better): {lead}: attribution ahead in "
                   f"{won.count('attribution')} of {n} cell types, expression in {won.count('expression')}, tied in "
                   f"{won.count('tie')}; mean share {_f(a.mean())} by attribution vs {_f(e.mean())} by expression.{few}")
    return out


def _gene_ranking_table(rows: list[dict]) -> str:
    t = pd.DataFrame(rows)
    measured = t["markers measured"] if "markers measured" in t else t["known markers"]
    shown = pd.DataFrame({"cell type": t["cell type"], "cells": t["cells"], "samples": t["samples"],
                          "known markers (measured)": [f"{k} ({m})" for k, m in zip(t["known markers"], measured, strict=True)]})
    for kind, heading, _, _ in _gr_kinds(t):
        shown[f"{heading} (attr / expr)"] = [f"{_f(a)} / {_f(e)}" for a, e in zip(t[f"{kind} attribution"], t[f"{kind} expression"], strict=True)]
        if kind != "markers" and f"{kind} measured" in t:
            shown[f"{heading} measured"] = t[f"{kind} measured"]
    return _md(shown)


def _tf_words(tfs: dict | None, top: int) -> str:
    """The report's description of the TF list (``results["gene_ranking"]["tf_list"]``)."""
    if not tfs:
        return ""
    unmapped = tfs.get("unmapped") or []
    left = (f"; {len(unmapped)} JASPAR name{'s' if len(unmapped) != 1 else ''} with no single current HGNC symbol left out "
            f"({', '.join(unmapped)}{', a fusion protein' if unmapped == ['EWSR1-FLI1'] else ''})") if unmapped else ""
    renamed = tfs.get("renamed") or {}
    moved = (f"; renamed to current symbols: {', '.join(f'{a} -> {b}' for a, b in renamed.items())}") if renamed else ""
    return (f"*Transcription factors* (TFs): the {tfs['count']:,} human genes with a CORE binding profile in "
            f"{tfs['release'].replace('JASPAR', 'JASPAR ')} (read offline from the pyjaspar package's database; a dimer "
            f"\"A::B\" counts as both genes; {tfs['n_names']:,} JASPAR names{left}{moved}), their share of the top {top} and how "
            "many the population measured (TFs measured). This is a curated but partial TF list, TFs with a known motif "
            "only: Lambert et al. (Cell 2018) count about 1,600 human TFs, so every TF share here is a lower bound. ")


def gene_ranking_section(gr: dict | None) -> list[str]:
    """The report's "Genes ranked within a cell type" section (issue 21) from ``results["gene_ranking"]``."""
    L = ["## Genes ranked within a cell type\n"]
    if not gr:
        L.append("Not measured in this run (recorded before the gene ranking existed): re-run `python -m compute validate`, or "
                 "`python -m compute validate --from-results docs/validation/results.json --gene-ranking ATLAS` to add it.\n")
        return L
    top = gr["top"]
    L.append(f"SIGnature's first claim: ranking genes by mean attribution within a cell type puts the type's functionally "
             f"important genes first and highly expressed housekeeping genes lower than a ranking by mean expression. On atlas "
             f"`{gr['atlas']}`, every cell type with at least {gr['min_cells']} cells and known markers was ranked both ways "
             f"(`compute.query.gene_ranking`: each sample's mean over its cells, then the mean over samples with "
             f">= {gr['cell_min']} cells; all {top} top genes counted). *Known markers*: the shipped immune marker sets "
             "(`compute/assets/reference/human_immune_cell_markers.json`) of the type's Cell Ontology term or an ancestor, among the "
             f"atlas's genes (in brackets: how many the population's studies measured); the share of them in the top {top}. "
             f"{_tf_words(gr.get('tf_list'), top)}"
             f"*Ribosomal* (RPL*/RPS*) and *mitochondrial* (MT-*): their share of the top {top}, and how many the population "
             "measured at all. Each share is \"attribution / expression\".\n")
    real = gr.get("real") or {}
    if real.get("rows"):
        L.append(f"**Real cells only** (studies {', '.join(real['studies'])}: 10x PBMC 68k, 700 cells bundled with scanpy; a "
                 "single sample, so each row rests on one sample's cells):\n")
        L.append(_gene_ranking_table(real["rows"]))
        L.append("")
    else:
        L.append("This atlas holds no real study.\n")
    every = gr.get("all") or {}
    if every.get("rows"):
        sim = gr.get("n_simulated", 0)
        L.append(f"**Every study of the atlas** ({len(every['studies'])} studies" + (f", {sim} of them SIMULATED: their cell types' "
                 "expression is simulated, so these rows partly measure the simulation" if sim else "") + "):\n")
        L.append(_gene_ranking_table(every["rows"]))
        L.append("")
    L.append("**In plain words.**\n")
    L += [f"- {v}" for v in gene_ranking_verdict(real.get("rows") or [], top, "On real PBMC cells")]
    L += [f"- {v}" for v in gene_ranking_verdict(every.get("rows") or [], top, "On the whole atlas" + (" (mostly SIMULATED)" if gr.get("n_simulated") else ""))]
    if gr.get("tf_note"):  # results recorded before the TF list existed say why they have no TF share
        L.append(f"- {gr['tf_note']}")
    L.append(f"\nRanked in {gr.get('seconds', float('nan')):.0f} s.\n")
    return L


def write_report(results: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    figs = _figures(results, folder)
    prof = results["profile"]
    t = results["timings"]
    h = headline(results)
    L = []
    L.append("# SigAtlas validation report\n")
    L.append("Generated by `python -m compute validate` "
             f"({'quick profile, for tests only' if prof['name'] == 'quick' else 'full profile'}) on "
             f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {platform.machine()}, "
             f"in **{t['total_s'] / 60:.1f} minutes** wall time ({len(results['scenarios'])} atlases simulated, built and measured, "
             f"{t.get('jobs', 1)} at a time; {t['builds_s'] / 60:.1f} build-minutes in all). "
             "Do not edit by hand: re-run the command.\n")
    L.append("> **SIMULATED data.** Every recovery, robustness, calibration and stability figure below comes from simulated "
             "studies with planted programs (`compute/demo`), built and queried by the real pipeline. Only the PBMC section "
             "uses real cells (10x PBMC 68k, 700 cells bundled with scanpy).\n")
    L.append("## Headline\n")
    L.append(f"**Bottom line.** {bottom_line(results)}\n")
    L.append("Mean over the three planted programs (MS1 in classical monocytes; interferon-alpha response in all cells; "
             "TNF-alpha/NF-kB in monocytes). Each program is queried with its own genes on its planted cell types, "
             "hits above the 90th percentile, the same rule for both scorings.\n")
    L.append(_md(h[[c for c in h.columns if not c.startswith("_") and c != "scenario"]]))
    L.append("")
    L.append("**In plain words.**\n")
    L += [f"- {v}" for v in verdicts(results)]
    L.append("")
    for name, caption in figs:
        L.append(f"![{caption}]({folder.name}/{name})\n")
    L.append("## How it was measured\n")
    L.append(f"- Corpus per condition: {prof['n_studies']} simulated studies ({prof['disease_donors']} disease and "
             f"{prof['healthy_donors']} healthy donors each, {prof['cells_per_sample'][0]}-{prof['cells_per_sample'][1] - 1} cells per "
             f"sample, {prof['max_genes']} genes plus the PBMC 68k genes), plus the real PBMC 68k study. Planted programs and their "
             "strengths per disease are in each corpus's `planted_truth.json`.")
    L.append(f"- Encoder per condition: trained from scratch, hidden sizes {prof['model']['hidden_sizes']}, latent "
             f"{prof['model']['latent_dim']}, {prof['model']['epochs']} epochs; attributions by Integrated Gradients (50 steps), "
             "as in every SigAtlas build.")
    L.append(f"- Query: the program's genes, its planted cell types, simulated studies; samples with >= {prof['cell_min']} selected "
             f"cells (SIGnature uses 25-50; these corpora are smaller), diseases with >= {prof['samp_min']} samples.")
    L.append("- Disease AUROC: the disease ranking (mean sample hit %) against \"the program is planted in this disease\"; "
             "precision@k: the share of planted diseases among the top k, k = the number planted (2-3 of 10 groups). "
             "Sample AUROC: every sample's hit % against \"its disease carries the program\" (about 90 samples): finer than "
             "the disease ranking, which saturates at 1.0 when the effect is clear.")
    L.append("- Expression: `scanpy.tl.score_genes` on the stored log-normalised expression of the same cells, same hit rule.")
    L.append("- What this simulation can and cannot show: the planted programs raise expression directly, so an expression score "
             "is close to the ideal statistic by construction; the technical noise simulated is gene-specific capture, sequencing "
             "depth and genes missing per study, not ambient RNA or cell-type-specific batch programs; each encoder is small and "
             "trained on about 13,000 cells, not SCimilarity's 23.4 million. A foundation model's attributions could behave "
             "differently on real corpora; the PBMC section is the only real-data check here.")
    L.append(f"- A difference under {TIE} AUROC is called a tie; \"degrades\" means a drop of {DROP} or more below the method's "
             "own value at the base level of that axis.\n")
    L.append("## Recovery as the planted effect shrinks\n")
    links = pd.DataFrame(results["links"])
    eff = links[links["axis"] == "effect"].copy()
    eff = eff.sort_values(["effect_scale", "program", "method"], ascending=[False, True, True])
    tab = eff[["label", "program", "method", "auroc", "precision_at_k", "sample_auroc", "spearman_strength", "top"]].copy()
    for c in ("auroc", "precision_at_k", "spearman_strength"):
        tab[c] = tab[c].map(_f)
    tab["sample_auroc"] = tab["sample_auroc"].map(lambda x: _f(x, 3))
    L.append(_md(tab.rename(columns={"label": "condition", "auroc": "disease AUROC", "precision_at_k": "precision@k",
                                     "sample_auroc": "sample AUROC", "spearman_strength": "Spearman vs planted strength",
                                     "top": "top disease"})))
    L.append("")
    L.append("## Robustness to technical noise between studies\n")
    base_key = results["base"]["robustness"]
    rob = links[(links["scenario"] == base_key) | links["axis"].isin([a[0] for a in AXES])].copy()
    rob = rob.groupby(["scenario", "method"], sort=False)[["auroc", "precision_at_k", "sample_auroc"]].mean().reset_index()
    rob = rob.join(links.drop_duplicates("scenario").set_index("scenario")[["axis", "label"]], on="scenario")
    rob["condition"] = np.where(rob["scenario"] == base_key, rob["label"] + " (base)", rob["label"])
    rt = rob[["condition", "method", "auroc", "precision_at_k", "sample_auroc"]].copy()
    for c in ("auroc", "precision_at_k"):
        rt[c] = rt[c].map(_f)
    rt["sample_auroc"] = rt["sample_auroc"].map(lambda x: _f(x, 3))
    L.append(f"All at the robustness effect level (x{prof['robustness_effect']:g}); base noise: batch sd 0.25, depth sd 0.35, "
             "3-12% of genes missing per study. Means over the three programs.\n")
    L.append(_md(rt.rename(columns={"auroc": "disease AUROC", "precision_at_k": "precision@k", "sample_auroc": "sample AUROC"})))
    L.append("")
    L.append("## Integration of studies in the embedding\n")
    it = integration_table(results)
    if it.empty:
        L.append("Not measured in this run (recorded before the integration metrics existed): re-run `python -m compute validate`.\n")
    else:
        loss = results["scenarios"][0].get("model") or {}
        L.append("For each cell, its 15 nearest neighbours in the encoder's embedding (`compute.integration`, scIB definitions): "
                 "*cross-study share*, the share that carry its cell type and come from another study; *perfect mixing*, that "
                 "share if its same-type neighbours were drawn at random from all studies; *purity*, the share that carry its "
                 "cell type; *cell-type ASW*, (silhouette on cell types + 1) / 2; *batch ASW*, 1 - |silhouette on studies| within "
                 "each cell type; *iLISI within type*, the effective number of studies among a cell's 90 nearest cells of its type, "
                 "scaled to [0, 1]. A cell whose type no other study has cannot have a cross-study partner (perfect mixing "
                 "counts it as 0). Goal (issue 15): "
                 f"share / perfect >= {GOAL_MIXING} with purity >= {GOAL_PURITY}"
                 + (f". Encoder loss: {loss['triplet_weight']} x triplet (margin {loss['margin']}) + "
                    f"{1 - loss['triplet_weight']:.3f} x reconstruction, {loss.get('epochs')} epochs.\n" if "triplet_weight" in loss else ".\n"))
        shown = it.drop(columns=["scenario"]).copy()
        for c in ("cross-study share", "perfect mixing", "share / perfect", "purity", "cell-type ASW", "batch ASW", "iLISI within type"):
            shown[c] = shown[c].map(lambda x: _f(float("nan") if x is None else float(x)))
        shown["goal met"] = shown["goal met"].map({True: "yes", False: "no"})
        shown["reconstruction MSE"] = shown["reconstruction MSE"].map(lambda x: _f(float("nan") if x is None else float(x), 3))
        L.append(_md(shown))
    L.append("")
    L.append("## Calibration of the null\n")
    cal = results["calibration"]
    L.append(f"On the `{cal['atlas']}` atlas, signatures with no planted effect: {prof['n_random']} random sets of "
             f"{prof['random_size']} genes (no planted-program gene) and the simulated cell types' marker sets (composition "
             f"varies by donor, no disease effect). Each query ran the engine's null with {cal['n_null']} bin-matched random gene "
             f"sets (p-value floor {cal['p_floor']:.3f}); every disease (and healthy) in the ranking is one test. These "
             "figures are of the run recorded here; the disease-evidence section below measures the within-study test a "
             "disease link now rests on, and the gene-set null as corrected since (`python -m compute validate --evidence`).\n")
    rates = pd.DataFrame(cal["rates"])
    if len(rates):
        rows = []
        for _, r in rates.iterrows():
            k = int(round(r["false_positive_rate"] * r["tests"]))
            lo, hi = _wilson(k, int(r["tests"]))
            ok = "yes" if lo <= r["alpha"] <= hi else ("no: too many calls" if r["alpha"] < lo else "no: conservative")
            rows.append({"signatures": r["signatures"], "nominal": f"{r['alpha']:.2f}", "observed": f"{r['false_positive_rate']:.3f}",
                         "95% interval": f"{lo:.3f}-{hi:.3f}", "tests": int(r["tests"]), "matches nominal": ok})
        L.append(_md(pd.DataFrame(rows)))
    L.append("")
    L.append("## Stability across encoder-training seeds\n")
    if results["stability"]:
        st = pd.DataFrame(results["stability"])
        for c in ("disease_spearman", "top_agreement", "auroc_mean", "auroc_min", "auroc_max", "cell_spearman"):
            st[c] = st[c].map(_f)
        L.append(f"The robustness base corpus rebuilt with encoder seeds {list(prof['seeds'])}: same data, new training. Expression "
                 "scores do not depend on the encoder, so only attribution scores can move.\n")
        L.append(_md(st.rename(columns={"disease_spearman": "disease hit % Spearman (mean pairwise)", "top_agreement": "same top disease",
                                        "auroc_mean": "disease AUROC mean", "auroc_min": "min", "auroc_max": "max",
                                        "cell_spearman": "per-cell score Spearman"})))
    L.append("")
    L.append("## Real data: PBMC 68k marker signatures\n")
    pb = pd.DataFrame(results["pbmc"])
    if len(pb):
        L.append("Each labelled PBMC 68k cell type's markers (`compute/assets/reference/human_immune_cell_markers.json`) scored on the "
                 "700 real cells; hits are the cells above the 90th percentile of the study. *Right type*: share of hits carrying "
                 "that label; *best possible*: the label's cells / hits (a small type cannot fill the top 10%). *Lineage*: T, NK, "
                 "B, myeloid, progenitor.\n")
        cols = {"cell_type": "cell type", "n_matched": "markers found", "n_cells": "cells", "attribution_right_type": "right type (attr)",
                "expression_right_type": "right type (expr)", "attribution_best_possible": "best possible",
                "attribution_right_lineage": "right lineage (attr)", "expression_right_lineage": "right lineage (expr)",
                "attribution_auroc": "AUROC (attr)", "expression_auroc": "AUROC (expr)"}
        pt = pb[[c for c in cols if c in pb.columns]].copy()
        for c in pt.columns[3:]:
            pt[c] = pt[c].map(_f)
        L.append(_md(pt.rename(columns=cols)))
        a, e = pb["attribution_right_type"].mean(), pb["expression_right_type"].mean()
        al, el = pb["attribution_right_lineage"].mean(), pb["expression_right_lineage"].mean()
        L.append(f"\nMean share of hits in the right type: attribution {_f(a)}, expression {_f(e)}; right lineage: attribution {_f(al)}, "
                 f"expression {_f(el)}. " + ("Attributions are ahead on real cells." if a - e > TIE else
                                             "Attributions are not ahead on real cells." if e - a > TIE else
                                             "The two are tied on real cells."))
    L.append("")
    L.append("## Gene modules against the planted programs\n")
    mo = pd.DataFrame(results["modules"])
    if len(mo):
        L.append("Modules from co-attribution (and, for comparison, co-expression by the same procedure: metacells of 10 cells "
                 "of one study, sample and cell type, centred within study x cell type, average linkage at r = 0.05). *Best "
                 "module*: the module with the highest Jaccard index with the program. *Coherence z*: the program's mean "
                 "pairwise correlation against 200 bin-matched random sets. *Hold-out*: half the program's genes given as the "
                 "signature; how many of the 10 top co-attributing missing genes are the other half (chance: the held-out share "
                 "of candidates x 10).\n")
        mt = mo.copy()
        mt["best module (shared/size)"] = mt.apply(lambda r: f"{r['best_module']} ({r['best_shared']}/{r['best_module_size']})", axis=1)
        mt["best_jaccard"] = mt["best_jaccard"].map(_f)
        mt["coherence_z"] = mt["coherence_z"].map(lambda x: _f(x, 1))
        mt["hold-out found"] = mt.apply(lambda r: f"{r['holdout_found']}/{r['holdout_asked']} (chance {r['holdout_chance'] * r['holdout_asked']:.1f})", axis=1)
        L.append(_md(mt[["method", "program", "n_genes", "n_modules", "best module (shared/size)", "best_jaccard", "coherence_z",
                         "hold-out found"]].rename(columns={"n_genes": "program genes", "n_modules": "modules", "best_jaccard": "Jaccard",
                                                             "coherence_z": "coherence z"})))
    L.append("")
    L += gene_ranking_section(results.get("gene_ranking"))
    L.append("## Run\n")
    sc = pd.DataFrame(results["scenarios"])
    if "stages_s" in sc:
        sc["encoder s"] = [d.get("encoder", float("nan")) for d in sc["stages_s"]]
    sc = sc[[c for c in ("key", "label", "n_cells", "build_s", "encoder s", "measure_s") if c in sc]]
    L.append(_md(sc.rename(columns={"key": "atlas", "n_cells": "cells", "build_s": "build s", "measure_s": "measure s"})))
    L.append(f"\nCalibration {t['calibration_s']:.0f} s, stability {t['stability_s']:.0f} s, PBMC {t['pbmc_s']:.0f} s, modules "
             f"{t['modules_s']:.0f} s. Every number above is in `{folder.name}/results.json`.\n")
    # the real-studies and disease-evidence sections come from their own runs (`validate --real`,
    # `validate --evidence`): kept when rewriting the rest
    old = path.read_text() if path.is_file() else ""
    for heading in ("## Real studies", "## Disease evidence"):
        start = old.find(heading)
        if start >= 0:
            end = old.find("\n## ", start + 1)
            L.append(old[start:] if end < 0 else old[start:end + 1])
    path.write_text("\n".join(L) + "\n")

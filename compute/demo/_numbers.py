"""The demo's headline numbers, measured on a built demo atlas and never typed by hand (issue 36,
item 12): the MS1 preset on the term monocyte, with 1,000 gene-set draws, as the README quotes it.
``demo_numbers`` measures them (a JSON-ready dict), ``numbers_markdown`` writes the README's
paragraph from them, and ``update_readme`` puts that paragraph between the README's markers;
``python -m compute demo-numbers`` does all three after ``make demo`` builds the atlas."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

__all__ = ["README_BEGIN", "README_END", "build_environment", "demo_numbers", "numbers_markdown", "readme_block", "update_readme", "write_numbers"]

README_BEGIN = "<!-- demo-numbers: written by `python -m compute demo-numbers` from docs/demo-numbers.json; do not edit -->"
README_END = "<!-- /demo-numbers -->"
MONOCYTE = "CL:0000576"  # the term monocyte: classical and non-classical monocytes of every study


def _num(value, digits: int = 1) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def demo_numbers(atlas, *, n_null: int = 1000, seed: int = 0) -> dict:
    """The MS1 preset's result on ``atlas`` (the demo): the diseases in ranked order with their
    mean hit %, specificity p and, where they have one, the within-study effect (pooled Hedges' g,
    95% CI, q); the p floor; the ranking without the top gene; the expression scores' hit %."""
    from compute.query import QueryParams, run_query
    from compute.reference import ms1_signature

    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=(MONOCYTE,), n_null=n_null, seed=seed,
                         evidence=True, expression=atlas.has_expression)
    result = run_query(atlas, params)
    null = result.null.get("disease")
    p = null.p_values() if null is not None else {}
    rows = []
    for _, row in result.diseases.iterrows():
        group = str(row["group"])
        effect = {}
        if "effect" in row and not math.isnan(float(row["effect"])):
            effect = {"g": _num(row["effect"], 2), "g_lo": _num(row["effect_lo"], 2), "g_hi": _num(row["effect_hi"], 2),
                      "q": _num(row["effect_q"], 3), "n_studies": int(row.get("n_studies_with_reference", 0) or 0)}
        rows.append({"disease": group, "hit_pct": _num(row["mean_hit_pct"]), "p": _num(p[group], 4) if group in p else None, **effect})
    evidence = result.evidence
    without = []
    if evidence is not None and evidence.top_gene is not None and len(evidence.without_top_gene):
        without = [{"disease": str(r["group"]), "hit_pct": _num(r["mean_hit_pct"])} for _, r in evidence.without_top_gene.head(3).iterrows()]
    expression = []
    if result.expression_diseases is not None:
        expression = [{"disease": str(r["group"]), "hit_pct": _num(r["mean_hit_pct"])} for _, r in result.expression_diseases.head(3).iterrows()]
    left_out = []
    if result.coverage is not None and len(result.coverage):
        cov = result.coverage
        left_out = [{"study": str(study), "coverage": _num(row["coverage"], 3), "reason": str(row.get("reason") or "")}
                    for study, row in cov[~cov["included"].astype(bool)].iterrows()]
    return {"atlas": atlas.name, "built_on": build_environment(atlas),
            "left_out": left_out, "query": {"preset": "ms1", "cell_types": [MONOCYTE], "n_null": n_null, "seed": seed},
            "n_cells": result.n_selected, "p_floor": _num(null.p_floor, 4) if null is not None else None,
            "diseases": rows, "top_gene": evidence.top_gene if evidence is not None else None,
            "top_survives": evidence.top_survives if evidence is not None else None,
            "without_top_gene": without, "expression": expression}


def build_environment(atlas) -> dict:
    """What a build's floating-point results depend on beyond its inputs and seed: the torch
    version, the CPU instruction set its kernels use, the machine, and the threads and processes
    that trained the encoder (the atlas's model card). Two builds of the demo with the same
    environment give the same encoder, bit for bit, and the same numbers; another environment may
    differ in the last digits of a sum, which training can carry into the first decimal of a hit %."""
    import platform

    import torch

    trained = (atlas.meta.get("model_card") or {}).get("trained_on") or {}
    return {"torch": torch.__version__, "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "machine": platform.machine(), "train_threads": trained.get("cpu_threads"), "train_workers": trained.get("workers")}


def _name(disease: str) -> str:
    return "sepsis (MONDO's \"infectious disease with sepsis\")" if disease == "infectious disease with sepsis" else disease


def _p(value: float | None, floor: float | None) -> str:
    if value is None:
        return "no p"
    if floor is not None and value <= floor + 1e-12:
        return f"p ≤ {floor:g}"
    return f"p = {value:.2g}"


def numbers_markdown(numbers: dict) -> str:
    """The README's paragraph on the demo's MS1 result, every figure taken from ``numbers``."""
    d = numbers["diseases"]
    top = d[:3]
    hits = ", ".join(f"{_name(r['disease'])} {r['hit_pct']:.1f}%" for r in top)
    pvals = "; ".join(f"{r['disease']} {_p(r['p'], numbers['p_floor'])}" for r in top)
    others = [r["p"] for r in d[3:] if r["p"] is not None]
    rest = f"; every other disease p ≥ {min(others):.2g}" if others else ""
    lines = [f"On the demo atlas the MS1 preset (the term monocyte: {numbers['n_cells']:,} classical and non-classical monocytes "
             f"of every study, {numbers['query']['n_null']:,} random gene sets) ranks {hits} "
             f"({pvals}{rest}; the p floor with these draws is {numbers['p_floor']:g})."]
    if numbers.get("top_gene") and numbers.get("without_top_gene"):
        order = ", ".join(f"{r['disease']} {r['hit_pct']:.1f}%" for r in numbers["without_top_gene"])
        verdict = "stays first" if numbers.get("top_survives") else "does not stay first"
        lines.append(f"Without its top gene ({numbers['top_gene']}) the ranking reads {order}: the top disease {verdict}.")
    if numbers.get("expression"):
        order = ", ".join(f"{r['disease']} {r['hit_pct']:.1f}%" for r in numbers["expression"])
        lines.append(f"Expression scores (same cells, same rule) give {order}.")
    effects = [r for r in top if r.get("g") is not None]
    if effects:
        text = "; ".join(f"{r['disease']} g = {r['g']:.2f} [{r['g_lo']:.2f}, {r['g_hi']:.2f}], q = {r['q']:.2g}" for r in effects)
        lines.append(f"Within their own studies, against those studies' healthy donors (pooled Hedges' g, 95% CI): {text}.")
    for study in numbers.get("left_out", []):
        lines.append(f"Study {study['study']} measured {study['coverage']:.0%} of the signature's weight and is left out of this "
                     f"ranking, with the reason shown (min_coverage 0.5).")
    return textwrap.fill(" ".join(lines), width=100, break_long_words=False, break_on_hyphens=False)


def readme_block(numbers: dict) -> str:
    """The README's generated section: the markers around ``numbers_markdown``."""
    return f"{README_BEGIN}\n{numbers_markdown(numbers)}\n{README_END}"


def update_readme(readme: Path, numbers: dict) -> bool:
    """Rewrite the generated section of ``readme`` from ``numbers``; True when it changed.
    Raises ValueError naming the file when its markers are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no demo-numbers section (the lines {README_BEGIN!r} ... {README_END!r}) to rewrite")
    new = text[:start] + readme_block(numbers) + text[end + len(README_END):]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def write_numbers(path: Path, numbers: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(numbers, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

"""What a query leaves behind for a paper or lab notebook: safe CSVs, a methods paragraph and a
snapshot zip that records everything needed to rerun the query. Pure functions, no Dash."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import re
import zipfile
from datetime import datetime
from importlib import metadata

import numpy as np
import pandas as pd

from compute.atlas import atlas_warnings, embedding_genes_text, measured_share, study_warnings
from compute.errors import SigAtlasError
from compute.query import N_DETECTION_BINS, N_MEAN_BINS
from dashboard.markup import markdown_text

__all__ = ["ExportError", "decode_images", "methods_paragraph", "params_dict", "resolution_table", "safe_csv", "snapshot_zip"]

SIGNATURE_CITATION = "SIGnature (Gold et al., Nat Biotechnol 2026)"
SCIMILARITY_CITATION = "SCimilarity (Heimberg et al., Nature 2025)"

# Spreadsheets treat a cell starting with one of these as a formula (CSV injection, OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Text that is only a number ("-1.5", "+2e3") is read as that number, never run; leaving it
# alone keeps negative values typed as text (e.g. in mixed columns) numeric.
_PLAIN_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

_ATTRIBUTION_NAMES = {
    "ig": "Integrated Gradients",
    "ig-captum": "Integrated Gradients (Captum implementation)",
    "deeplift": "DeepLIFT",
    "ixg": "Input x Gradient",
}
_RESOLUTION_COLUMNS = ["token", "status", "gene", "weight", "note"]
_RESERVED = ("genes_resolved", "parameters", "atlas", "methods", "README")


class ExportError(SigAtlasError, ValueError):
    """An image the browser sent for the snapshot cannot be read (not an SVG or PNG data URL)."""


# -- CSV ------------------------------------------------------------------------------------
def _neutralise(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    if isinstance(value, tuple):  # MultiIndex labels
        return tuple(_neutralise(v) for v in value)
    return value


def safe_csv(df: pd.DataFrame) -> str:
    """CSV text of ``df`` (RFC 4180, CRLF line ends) in which every string cell and header that a
    spreadsheet would run as a formula starts with an apostrophe; numeric and boolean columns
    are written unchanged. The index is written only when it is named."""
    named_index = any(name is not None for name in df.index.names)
    out = df.reset_index(allow_duplicates=True) if named_index else df.copy()
    out.columns = [_neutralise(c) for c in out.columns]
    for j in range(out.shape[1]):
        col = out.iloc[:, j]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        # object() first: a categorical column would refuse the new, prefixed labels
        out.isetitem(j, col.astype(object).map(_neutralise))
    # CRLF line ends (RFC 4180) also make the writer quote any cell holding a lone "\r" or "\n"
    return out.to_csv(index=False, lineterminator="\r\n")


# -- gene resolution ------------------------------------------------------------------------
def _decision_row(d) -> dict:
    if isinstance(d, dict):
        return {k: d.get(k) for k in _RESOLUTION_COLUMNS}
    if hasattr(d, "token"):
        return {k: getattr(d, k, None) for k in _RESOLUTION_COLUMNS}
    return dict(zip(_RESOLUTION_COLUMNS, tuple(d) + (None,) * (5 - len(d)), strict=False))


def resolution_table(resolution) -> pd.DataFrame:
    """One row per requested token, in input order, with columns token, status, gene, weight
    and note, from ``resolution.decisions``."""
    rows = [_decision_row(d) for d in resolution.decisions]
    return pd.DataFrame(rows, columns=_RESOLUTION_COLUMNS)


# -- JSON -----------------------------------------------------------------------------------
def _json_safe(value):
    """Plain JSON types for ``value`` (tuples to lists, numpy scalars to numbers, NaN/inf to None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def params_dict(params) -> dict:
    """Every QueryParams field as plain JSON types: genes as [gene, weight or null] pairs and the
    hit rule as {"kind", "value"}, so ``QueryParams(**d)`` rebuilds it once the rule and tuples
    are restored."""
    return _json_safe(params)


# -- methods paragraph ----------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _listing(items, limit: int = 20) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _atlas_sentences(atlas, label=str) -> list[str]:
    meta = atlas.meta
    n_cells = sum(s.n_cells for s in atlas.studies)
    out = [f"Signature activity was measured with SigAtlas over the atlas '{label(atlas.name)}' (atlas format version "
           f"{meta.get('format_version', 'unknown')}, built {meta.get('created', 'at an unrecorded time')}, fingerprint "
           f"{atlas.fingerprint}), which holds {_plural(n_cells, 'cell')} from {_plural(len(atlas.studies), 'study', 'studies')}."]
    sim = [s for s in atlas.studies if s.simulated]
    if sim:
        n_sim = sum(s.n_cells for s in sim)
        out.append(f"{len(sim)} of these studies ({n_sim:,} cells: {_listing(label(s.id) for s in sim)}) "
                   f"{'is' if len(sim) == 1 else 'are'} SIMULATED data with "
                   "planted expression programs, not measurements of real samples; results that rest on them "
                   "demonstrate the method and are not biological findings.")
    else:
        out.append("No study in the atlas is simulated.")
    return out


def _model_sentences(atlas) -> list[str]:
    card = atlas.meta.get("model_card")
    if not card:
        return []
    source = str(card.get("source", ""))
    n_genes = card.get("n_genes")
    genes = f"{n_genes:,} input genes" if isinstance(n_genes, int) else "an unrecorded number of input genes"
    params = card.get("parameters") or {}
    hidden = card.get("hidden_sizes", params.get("hidden_sizes"))
    latent = card.get("latent_dim", params.get("latent_dim"))
    shape = f"hidden layers {list(hidden)} and a {latent}-dimensional latent space" if hidden and latent else ""
    # the card's architecture reads "SCimilarity (citation): layers"; keep the layers and cite once, here
    layers = str(card.get("architecture", "")).split(": ", 1)[-1]
    if source == "pretrained":
        s = f"The encoder was a pretrained {SCIMILARITY_CITATION} model loaded from {card.get('path', 'an unrecorded path')}, with {genes}"
    else:
        s = (f"The encoder was {source or 'of unrecorded origin'}, with the architecture of {SCIMILARITY_CITATION}"
             + (f" ({layers})" if layers else "") + f", {genes}")
    s += f", {shape}" if shape else ""
    trained = card.get("trained_on") or {}
    if isinstance(trained.get("n_cells"), int):
        s += f"; it was trained on {trained['n_cells']:,} cells from {trained.get('n_studies', 'an unrecorded number of')} studies"
    if card.get("loss"):
        s += f" with loss {card['loss']}"
    if card.get("seed") is not None:
        s += f" (seed {card['seed']})"
    return [s + "."]


def _attribution_sentences(atlas) -> list[str]:
    meta = atlas.meta
    method = meta.get("method") or {}
    row_sum = (meta.get("elements") or {}).get("attributions", {}).get("row_sum")
    imported = (meta.get("build") or {}).get("source") == "import-signature" or "attribution" not in method
    out = []
    if imported:
        scaled = f"each cell's row scaled to sum to {row_sum:,g}" if row_sum else "row sums not rescaled"
        out.append(f"Per-cell gene attributions were imported from the precomputed arrays of {SIGNATURE_CITATION} "
                   f"with their values unchanged ({scaled}); the atlas carries no encoder, so no attribution was "
                   "recomputed here.")
    else:
        a = method["attribution"]
        kind = str(a.get("method", "ig"))
        name = _ATTRIBUTION_NAMES.get(kind, kind)
        s = f"Per-cell gene attributions were computed with {name}"
        if kind.startswith("ig"):
            s += f" ({a.get('n_steps', '?')} steps"
            s += f", {a['rule']} quadrature" if a.get("rule") else ""
            baseline = a.get("baseline", "zeros")
            s += ") from " + ("an all-zero" if baseline == "zeros" else f"a {baseline}") + " baseline"
        if a.get("target"):
            s += f", target {a['target']}"
        if a.get("implementation"):
            s += f", implementation: {a['implementation']}"
        stored = "|IG x input|" if kind.startswith("ig") else f"|{name} attribution|"
        s += (f"; the stored value per gene is {stored}, " + (f"each cell's row scaled to sum to {row_sum:,g}" if row_sum else "not rescaled")
              + f", as in {SIGNATURE_CITATION}.")
        out.append(s)
        if method.get("normalisation"):
            out.append(f"Expression input was normalised as {method['normalisation']}.")
        if method.get("embedding_genes"):
            out.append(embedding_genes_text(method["embedding_genes"]))
    departures = method.get("departures") or []
    if departures:
        out.append("Departures from the published method: " + "; ".join(map(str, departures)) + ".")
    return out


def _query_sentences(atlas, result, label=str) -> list[str]:
    p, res = result.params, result.resolution
    n_req = len(res.matched) + len(res.missing) + len(res.ambiguous)
    s = (f"The query signature listed {_plural(len(res.requested), 'gene token')}; {len(res.matched):,} of its {n_req:,} distinct "
         f"genes matched the atlas gene order ({res.coverage:.0%})")
    if res.renamed:
        # renamed covers case fixes, previous symbols, aliases and Ensembl ids (HGNC table)
        s += (f"; {_plural(len(res.renamed), 'gene')} matched after renaming (case, previous symbol, alias or Ensembl id: "
              f"{_listing(f'{label(a)} -> {label(b)}' for a, b in res.renamed)})")
    if res.missing:
        s += (f"; {_plural(len(res.missing), 'gene')} not in the model {'was' if len(res.missing) == 1 else 'were'} left out "
              f"({_listing(map(label, res.missing))})")
    if res.not_genes:
        s += (f"; {_plural(len(res.not_genes), 'token')} read as no gene (words, numbers) "
              f"{'was' if len(res.not_genes) == 1 else 'were'} not used ({_listing(map(label, res.not_genes))})")
    if res.duplicates:
        s += f"; {_plural(len(res.duplicates), 'duplicate token')} counted once"
    ambiguous = res.ambiguous
    if ambiguous:
        s += f"; {len(ambiguous):,} ambiguous ({_listing(map(label, ambiguous))})"
    out = [s + "."]
    agg = ("the weighted mean of the signature genes' attributions (sum w·a / sum w)" if res.weighted
           else "the mean attribution over the signature genes")
    if atlas.has_element("measured"):
        agg = ("the weighted mean of the attributions of the signature genes its study measured (sum w·a / sum w over them)"
               if res.weighted else "the mean attribution over the signature genes its study measured")
        out.append(f"Each cell's score was {agg}, a measured gene without "
                   "attribution in the cell counting as zero (aggregate: mean); a gene a study never measured was treated as "
                   "missing, not zero, and the weights were renormalised over the measured genes. "
                   + ("The values of studies measured on a partial gene panel were multiplied gene by gene by factors "
                      "calibrated through the encoder (each gene's attribution over full-panel reference cells, whole and "
                      "masked to the study's panel), so studies measured on different gene panels share one scale."
                      if any(atlas.gene_scale(s.id) is not None for s in atlas.studies) else
                      "Each study's values were multiplied by its measured share (the share of a cell's attribution its gene "
                      "panel is estimated to carry, learned from the atlas), so studies measured on different gene panels "
                      "share one scale."))
    else:
        out.append(f"Each cell's score was {agg}, zeros included (aggregate: mean); this atlas records no per-study gene "
                   "panels, so every gene counted as measured in every study.")
    out.append(_coverage_sentence(result, label))
    filters = [(kind, values) for kind, values in (("cell types", p.cell_types), ("diseases", p.diseases),
                                                       ("studies", p.studies), ("tissues", p.tissues)) if values]
    where = [f"{kind}: {_listing(label(x) for x in sorted(map(str, v)))}" for kind, v in filters]
    data = p.data
    if data != "all":
        where.append(f"{data} studies only")
    kept = " in the studies kept" if len(result.excluded_studies) else ""
    out.append(f"The selection ({'; '.join(where) if where else 'all cells, no filter'}) held {result.n_selected:,} cells{kept}.")
    out += _vocabulary_sentences(atlas, p, label)
    out.append(f"A cell counted as a hit by the rule '{p.rule.describe()}' (cut-off {result.threshold:.4g} here). For every sample "
               f"(study x sample x disease) with at least cell_min = {p.cell_min} selected cells the hit percentage was "
               f"computed; diseases with at least samp_min = {p.samp_min} such samples were ranked by the mean of their "
               "samples' hit percentages, and studies likewise with at least one sample.")
    return out


def _vocabulary_sentences(atlas, p, label=str) -> list[str]:
    """Which labels the filters and the ranking used: the ontologies (with versions), the rule
    for terms, and the disease groups with what each pooled."""
    vocab = atlas.meta.get("vocabulary") or {}
    if not atlas.vocabulary.terms:
        return ["Cell types, diseases and tissues were the studies' own labels (this atlas records no ontology terms)."]
    versions = vocab.get("versions") or {}

    def named(key: str, name: str) -> str:
        return f"{name} ({versions[key]})" if versions.get(key) else name

    out = [f"Cell types, diseases and tissues were the studies' annotations harmonised to {named('CL', 'Cell Ontology')}, "
           f"{named('MONDO', 'MONDO')} and {named('UBERON', 'UBERON')} terms (healthy donors: {named('PATO', 'PATO')} 'normal'); "
           "a label that matched no term was kept as its own group, and a filter on a term included every descendant term. "
           "Predicted cell types from label transfer were not used."]
    if p.disease_groups:
        mapping = atlas.disease_grouping(p.disease_groups)
        pooled = [f"{label(g)} ({_listing(label(d) for d in sorted(d for d, grp in mapping.items() if grp == g)) or 'no disease'})"
              for g in p.disease_groups]
        out.append("Diseases were ranked at parent terms, each disease under one counting as that term (the first that applies): "
                   + "; ".join(pooled) + ".")
    return out


def _coverage_sentence(result, label=str) -> str:
    """The coverage rule and the studies it left out, with their reasons."""
    p = result.params
    s = (f"A study's coverage is the share of the signature's weight carried by the signature genes it measured; studies "
         f"with coverage below min_coverage = {p.min_coverage:.0%} were left out of the rankings and of the null")
    excluded = result.excluded_studies
    if not len(excluded):
        return s + "; no study with cells in the selection fell below it."
    left = [f"{label(study)} {reason}" for study, reason in excluded["reason"].items()]
    return (s + f": {_plural(len(excluded), 'study', 'studies')} {'was' if len(excluded) == 1 else 'were'} left out, "
            + "; ".join(left) + ".")


def _effect_sentences(result, label=str) -> list[str]:
    """What the within-study effect is and what it was compared with (compute.query's
    meta-analysis), and how many diseases rest on each level of evidence."""
    diseases = result.diseases
    if "evidence" not in diseases.columns:
        return []
    p = result.params
    labels = [str(v) for v in getattr(result, "reference_labels", ()) or ()]
    counted = f" (the labels counted: {_listing([label(v) for v in labels])})" if labels and labels != [str(p.reference)] else ""
    out = [f"Each disease was compared with the reference donors, '{label(str(p.reference))}'{counted}, within its own studies, the donor "
           "as the unit: a donor's value was the mean over its samples with at least cell_min selected cells of their hit "
           "percentage. Per study holding both the disease's donors and reference donors (at least one of each and four in "
           "all), the effect was Hedges' g of the donors' hit percentages (disease minus reference, bias-corrected "
           "standardised mean difference); the studies' effects were pooled by a random-effects meta-analysis "
           "(DerSimonian-Laird, with tau^2, I^2, Cochran's Q and the leave-one-study-out range; Paule-Mandel as a check; "
           "statsmodels). Its p-value came from permuting the disease and reference labels among each study's donors "
           "(every arrangement when there were at most 5,000; otherwise 2,000 random ones), and q-values by "
           "Benjamini-Hochberg over the diseases tested. The same was computed on the donors' mean scores."]
    counts = diseases["evidence"].astype(str).value_counts()
    words = {"pooled": "two or more studies with their own reference donors (pooled)",
             "one_study": "one study with its own reference donors (its effect and CI; no heterogeneity)",
             "no_within_study_reference": "no within-study reference (seen only in studies without reference donors, so the "
                                          "disease cannot be told apart from its study's batch; no p-value, hit % descriptive only)",
             "no_reference": "no reference donors to compare with"}
    parts = [f"{_plural(int(counts[k]), 'disease')} on {w}" for k, w in words.items() if counts.get(k, 0)]
    if parts:
        out.append("Of the diseases ranked, " + "; ".join(parts) + ".")
    return out


def _null_sentences(result, label=str) -> list[str]:
    if not result.null:
        return ["No null distribution was computed, so the ranking carries no p-values."]
    null = result.null.get("disease") or next(iter(result.null.values()))
    p = result.params
    sub = (f" ({null.n_cells:,} cells, a per-sample stratified subsample of the {result.n_selected:,} selected because "
           f"the selection exceeds {p.null_max_cells:,}" if null.n_cells and null.n_cells < result.n_selected
           else f" (all {null.n_cells or result.n_selected:,} selected cells")
    inflation = getattr(null, "inflation", 1.0)
    vif = (f" The null's spread around its median was scaled by {inflation:.2f}, the square root of the signature genes' "
           f"variance inflation factor ({getattr(null, 'vif', float('nan')):.2f}) over the random sets' "
           f"({getattr(null, 'vif_null', float('nan')):.2f}) (CAMERA), for the correlation among the signature's genes."
           if inflation and math.isfinite(inflation) else "")
    return [f"As a second question, specificity against random gene sets, {null.n_draws:,} random gene sets were drawn, "
            "each signature gene replaced by a random gene from "
            f"its bin of mean attribution x detection rate in the selection (up to {N_MEAN_BINS} x {N_DETECTION_BINS} bins, "
            "cut among the genes measured by every study that measured it, at least 10 genes a bin) with "
            f"its weight kept, rerunning the whole query on each draw{sub}; seed {p.seed}). "
            + (f"A disease's statistic is its mean hit % minus that of the reference ({', '.join(label(str(v)) for v in null.relative_to)}), draw by "
               "draw, so that a draw carrying another disease's program, which lowers every other group's hit % under the "
               "pooled percentile cut-off, does not count as evidence; the reference gets no p-value. "
               if getattr(null, "relative_to", ()) else "")
            + f"A group's empirical p-value is (1 + draws with a statistic at least the observed) / (1 + {null.n_draws:,}), so "
            f"it cannot be below 1/(1 + {null.n_draws:,}) = {null.p_floor:.2g}; the null band is the "
            f"{null.band[0]:g}-{null.band[1]:g} percentile range of the draws" + (", drawn at the reference's observed hit %"
                                                                              if getattr(null, "relative_to", ()) else "")
            + ". The p-values were adjusted for testing every ranked disease at once by the Benjamini-Hochberg procedure "
            "(false discovery rate, the q-values); a q made from a p at its floor is an upper bound likewise." + vif]


def _software_sentence() -> str:
    parts = []
    for dist, label in (("sigatlas", "SigAtlas"), ("dash", "Dash"), ("numpy", "NumPy"), ("scanpy", "Scanpy")):
        v = _version(dist)
        if v is not None:
            parts.append(f"{label} {v}")
        elif dist == "sigatlas":
            parts.append("SigAtlas (version not installed as a package)")
    return "Software: " + ", ".join(parts) + "."


def methods_paragraph(atlas, result, *, markdown: bool = False) -> str:
    """One paragraph (plain text; ``markdown``: for a Markdown document, every label from the atlas
    or the query (atlas, study, cell type, disease, tissue, gene token) written by
    markup.markdown_text so that it shows as written, never as Markdown) describing how ``result`` was computed on
    ``atlas``: the atlas and how many of its studies are SIMULATED, the encoder, the attribution
    method, the query (genes, filters, hit rule, cell_min, samp_min, aggregate, how unmeasured genes
    count, min_coverage and the studies it left out with their reasons), the null and
    its p-value floor, software versions, and the SIGnature and SCimilarity citations."""
    label = markdown_text if markdown else str
    parts = [*_atlas_sentences(atlas, label), *_model_sentences(atlas), *_attribution_sentences(atlas),
             *_query_sentences(atlas, result, label), *_effect_sentences(result, label), *_null_sentences(result, label)]
    if result.evidence is not None:
        parts.append("Robustness was checked by rerunning the disease ranking at the 80th, 90th, 95th and 99th percentiles "
                     "and without the gene that carries most of the top disease's score.")
    if result.expression_diseases is not None:
        parts.append("For comparison, diseases were also ranked on expression scores (scanpy.tl.score_genes) with the same rule.")
    parts.append(_software_sentence())
    if atlas.meta.get("model_card"):
        parts.append(f"Method after {SIGNATURE_CITATION}; encoder architecture after {SCIMILARITY_CITATION}.")
    else:
        parts.append(f"Method after {SIGNATURE_CITATION}, whose attributions come from the {SCIMILARITY_CITATION} encoder.")
    return " ".join(parts)


# -- images ---------------------------------------------------------------------------------
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 20 * 2**20  # far above any figure's PNG; a larger payload is not one


def _data_url_bytes(url: str, kind: str) -> bytes:
    """The bytes of a ``data:`` URL as Plotly.toImage writes them (SVG: URL-encoded text; PNG: base64)."""
    from urllib.parse import unquote_to_bytes

    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise ExportError(f"the {kind} image is not a data URL (data:image/...); export it again from the dashboard")
    head, _, body = url.partition(",")
    raw = base64.b64decode(body, validate=False) if head.endswith(";base64") else unquote_to_bytes(body)
    if len(raw) > MAX_IMAGE_BYTES:
        raise ExportError(f"the {kind} image is {len(raw):,} bytes, over the {MAX_IMAGE_BYTES:,} accepted")
    if kind == "png" and not raw.startswith(_PNG_MAGIC):
        raise ExportError("the png image does not start with PNG's signature")
    if kind == "svg" and b"<svg" not in raw[:4096]:
        raise ExportError("the svg image holds no <svg> element")
    return raw


def decode_images(images: dict) -> dict[str, dict]:
    """The browser's figure images ({view: {"svg", "png" (data URLs), "width", "height"} or
    {"error": why it could not be drawn}}) as {view: {"svg": bytes, "png": bytes, "width",
    "height"} or {"error": text}}; an image that cannot be read becomes an error entry naming why."""
    out: dict[str, dict] = {}
    for name, entry in (images or {}).items():
        if not isinstance(entry, dict):
            continue
        if entry.get("error"):
            out[str(name)] = {"error": str(entry["error"])[:300]}
            continue
        try:
            out[str(name)] = {"svg": _data_url_bytes(entry.get("svg"), "svg"), "png": _data_url_bytes(entry.get("png"), "png"),
                              "width": int(entry.get("width") or 0), "height": int(entry.get("height") or 0)}
        except (ExportError, ValueError, TypeError) as exc:
            out[str(name)] = {"error": str(exc)}
    return out


# -- snapshot -------------------------------------------------------------------------------
def _atlas_record(atlas) -> dict:
    meta = atlas.meta
    build = meta.get("build") or {}
    return _json_safe({
        "name": atlas.name,
        "format_version": meta.get("format_version"),
        "created": meta.get("created"),
        "fingerprint": atlas.fingerprint,
        "n_cells": sum(s.n_cells for s in atlas.studies),
        "model_card": meta.get("model_card"),
        "build": {k: build[k] for k in ("key", "seed", "source") if k in build},
        "elements": meta.get("elements"),
        "studies": [{"id": s.id, "title": s.title, "n_cells": s.n_cells, "simulated": s.simulated,
                     "measured_share": measured_share(s.meta), "warnings": study_warnings(s.meta)} for s in atlas.studies],
        "warnings": atlas_warnings(meta),
        # which labels the atlas's cells carry: ontology versions and the label transfer's held-out accuracy
        "vocabulary": {k: v for k, v in (meta.get("vocabulary") or {}).items() if k in ("versions", "label_transfer", "rule")},
    })


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "table"
    if stem in _RESERVED:
        raise ValueError(f"'{name}' is a reserved snapshot file name; pick another table or figure name")
    return stem


def _figure_json(fig) -> str:
    import plotly.utils  # local: only snapshots with figures need plotly's encoder

    if hasattr(fig, "to_plotly_json"):
        fig = fig.to_plotly_json()
    # plotly's encoder turns numpy arrays and dates inside a figure dict into JSON
    return json.dumps(fig, cls=plotly.utils.PlotlyJSONEncoder)


def _zip_time(atlas) -> tuple[int, int, int, int, int, int]:
    """The atlas's build time for every entry, so the same query on the same atlas gives the same bytes."""
    try:
        t = datetime.fromisoformat(str(atlas.meta.get("created")))
        return (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)
    except ValueError:
        return (1980, 1, 1, 0, 0, 0)


def _readme(atlas, result, files: list[tuple[str, str]], url: str | None, notes: list[str] = ()) -> str:
    lines = [f"SigAtlas query snapshot: atlas '{atlas.name}' (fingerprint {atlas.fingerprint})", ""]
    if atlas.has_simulated:
        sim = [s.id for s in atlas.studies if s.simulated]
        lines += [f"This atlas includes SIMULATED data: {len(sim)} of {len(atlas.studies)} studies "
                  f"({_listing(sim)}) carry planted programs and are not real samples.", ""]
    lines += [f"Link to this view: {url}" if url else "Link to this view: not recorded", ""]
    res = result.resolution
    lines += [f"Genes matched: {len(res.matched)} of {len(res.matched) + len(res.missing) + len(res.ambiguous)}"
              + (f" ({len(res.not_genes)} other entries no gene)" if res.not_genes else "") + "; "
              f"hit rule: {result.params.rule.describe()} (cut-off {result.threshold:.6g}); "
              f"{result.n_selected:,} cells selected.", ""]
    excluded = result.excluded_studies
    lines += [f"Studies left out (signature coverage below min_coverage {result.params.min_coverage:.0%}): "
              + ("; ".join(f"{study} {reason}" for study, reason in excluded["reason"].items()) if len(excluded) else "none"), ""]
    lines += ["Contents:"]
    width = max(len(name) for name, _ in files)
    lines += [f"  {name.ljust(width)}  {what}" for name, what in files]
    if notes:
        lines += ["", "Notes:", *[f"  {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def snapshot_zip(atlas, result, tables: dict[str, pd.DataFrame], *, url: str | None = None,
                 figures: dict[str, dict] | None = None, images: dict[str, dict] | None = None) -> bytes:
    """The bytes of a zip archive recording ``result`` on ``atlas``: genes_resolved.csv,
    parameters.json (every QueryParams field), atlas.json (identity, model card, build key and
    seed, elements), methods.md, one ``<name>.csv`` per table (formula-safe), one
    ``figures/<name>.json`` per Plotly figure dict, ``figures/<name>.svg`` and ``.png`` per image
    of ``images`` (decode_images' form; one that could not be drawn is named in the README), and
    README.txt listing them with ``url``. A table whose CSV is byte for byte one already written
    (the resolution, the cells behind the UMAP and the scatter) is written once; the README says
    which file holds it. Raises ValueError for a table or figure name that would overwrite a fixed file."""
    files: list[tuple[str, str | bytes, str]] = [  # (archive name, content, description)
        ("genes_resolved.csv", safe_csv(resolution_table(result.resolution)), "what happened to every requested gene"),
        ("parameters.json", json.dumps(params_dict(result.params), indent=1) + "\n", "every query parameter (rerun with these)"),
        ("atlas.json", json.dumps(_atlas_record(atlas), indent=1) + "\n", "the atlas queried: identity, model card, build"),
        ("methods.md", "# Methods\n\n" + methods_paragraph(atlas, result, markdown=True) + "\n", "a methods paragraph for a paper or notebook"),
    ]
    written = {content: name for name, content, _ in files}
    same: list[tuple[str, str]] = []  # (table, the file that holds it)
    for name, df in tables.items():
        text = safe_csv(df)
        file = f"{_file_stem(name)}.csv"
        if text in written:
            same.append((name, written[text]))
            continue
        written[text] = file
        files.append((file, text, f"table '{name}'"))
    for name, fig in (figures or {}).items():
        files.append((f"figures/{_file_stem(name)}.json", _figure_json(fig), f"Plotly figure '{name}' (plotly.io.from_json)"))
    not_drawn = []
    for name, entry in (images or {}).items():
        if "error" in entry:
            not_drawn.append(f"{name} ({entry['error']})")
            continue
        size = f"{entry.get('width', '?')} x {entry.get('height', '?')} px, as on screen"
        files.append((f"figures/{_file_stem(name)}.svg", entry["svg"], f"figure '{name}' as SVG ({size})"))
        files.append((f"figures/{_file_stem(name)}.png", entry["png"], f"figure '{name}' as PNG ({size})"))
    names = [n for n, _, _ in files]
    if len(set(names)) != len(names):
        raise ValueError(f"two tables or figures map to the same file name: {sorted({n for n in names if names.count(n) > 1})}")
    notes = [f"table '{name}' is the same as {file} (written once)" for name, file in same]
    notes += [f"figure not drawn as an image: {what}" for what in not_drawn]
    readme = _readme(atlas, result, [("README.txt", "this file"), *[(n, d) for n, _, d in files]], url, notes)
    when = _zip_time(atlas)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in [("README.txt", readme), *[(n, t) for n, t, _ in files]]:
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # a readable file when unpacked, whatever the umask
            zf.writestr(info, text if isinstance(text, bytes) else text.encode("utf-8"))
    return buf.getvalue()

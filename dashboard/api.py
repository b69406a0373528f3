"""``/api/v1/query``: signature queries as JSON, for scripts and the load test.

``GET /api/v1/query?genes=CD14,LYZ&cell_types=monocyte&null_draws=100``, or ``POST`` a JSON
object with the same keys, answers with the gene decisions, the disease ranking and each study's
signature coverage (``studies``: min_coverage, per study requested / measured / coverage /
included / reason, and the ids of the studies left out), through the dashboard's own query path:
the parameters are a link's query settings, checked by the same rules (``dashboard.state``;
the older names ``data``, ``cut`` and ``null`` still read), then ``DashboardData.query``, results
kept in the shared disk cache. Cell types, diseases and tissues are the studies' annotations harmonised to
ontology terms: a filter value is a term label or id ("monocyte", "CL:0000576": the term and its
subtypes), a label that matched no term, or a study's own label; ``disease_groups`` names parent
disease terms ("autoimmune disease") to rank at, each disease under one counting as it (the
first that applies); ``reference`` (default "normal") names the donors each disease is compared
with within its own studies. Each disease row carries that comparison: ``evidence`` (pooled,
one_study, no_within_study_reference, no_reference) and ``evidence_words``, ``effect`` (pooled
Hedges' g of per-donor hit % against the reference donors of the same studies, random effects),
``effect_lo`` / ``effect_hi`` (95% CI), ``effect_p`` (labels permuted within studies), ``effect_q``
(BH), ``tau2``, ``i2``, the donor counts and the same on per-donor mean score; ``study_effects``
lists each disease's effect in each study (or why a study gave none). ``p_value`` is the second
question, specificity against random gene sets (corrected for the signature genes' correlation).
A missing number is null. ``GET /api/v1/atlas`` describes the atlas: the values the filters accept,
the term hierarchies with cell counts, the disease groups, studies and genes. Bad input gets
HTTP 400 and ``{"error": "..."}`` naming the problem. No parameter names a file or an atlas: the
atlas is fixed when the server starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from compute.atlas import atlas_warnings, label_transfer_line, measured_share, study_warnings
from compute.errors import CacheError, QueryError, SigAtlasError
from compute.query import QueryParams, evidence_words
from dashboard.data import DashboardData
from dashboard.state import (
    DEFAULTS,
    LEGACY_KEYS,
    LIST_KEYS,
    LIST_SEP,
    QUERY_KEYS,
    query_params,
    read_state,
)
from dashboard.views.filters import FILTER_KINDS, disease_group_choices, known_values

__all__ = ["API_PREFIX", "MAX_BODY_BYTES", "MAX_NULL", "PARAMETERS", "ApiInputError", "answer", "atlas_info", "parse_query", "register"]

API_PREFIX = "/api/v1"
# a gene text of MAX_GENES_TEXT characters plus the filters fits many times over
MAX_BODY_BYTES = 1_000_000
MAX_JSON_DEPTH = 8  # the API's parameters are at most a list inside the object
# an API answer is computed inside the request, within the server's worker timeout: 1,000 draws
# (p-value floor 0.001) take under 2 s on the demo atlas; the dashboard's background jobs go to 10,000
MAX_NULL = 1000
# the settings of a query, as a link names them, and the older names links and clients still use
PARAMETERS = (*QUERY_KEYS, *(old for old, key in LEGACY_KEYS.items() if key in QUERY_KEYS))
# unlike a link's, an API query computes no null unless asked
_API_DEFAULTS = DEFAULTS | {"null_draws": 0}
_log = logging.getLogger(__name__)


class ApiInputError(SigAtlasError, ValueError):
    """A request is malformed (not a JSON object, an unknown parameter, no gene); the message says which."""


def _items(value):
    """A list setting as sent: one string separated by "|", or a list of such strings; items
    stripped. Anything else is passed on for the state's check to name."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(LIST_SEP) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [item for v in value for item in _items(v)]
    return value


def parse_query(values: Mapping[str, object], known: Mapping[str, object]) -> QueryParams:
    """The query that request ``values`` ask for (parameter -> str, number or list of strings; a
    GET's repeated keys as a list), checked by the dashboard's own rules (``dashboard.state``) with
    ``known`` (``dashboard.views.filters.known_values``: a term id reads as the term's label). Unlike a shared
    link, which falls back to defaults, every problem raises an error naming the parameter
    (ApiInputError, or dashboard.state.StateError, a QueryError); null_draws defaults to 0 (no
    p-values) and is capped at MAX_NULL. The older names data, cut and null are accepted."""
    unknown = [k for k in values if k not in PARAMETERS]
    if unknown:
        raise ApiInputError(f"unknown parameter '{unknown[0][:40]}'; accepted: {', '.join(PARAMETERS)}")
    pairs = [(k, _items(v) if LEGACY_KEYS.get(k, k) in LIST_KEYS else v) for k, v in values.items()]
    state, _ = read_state(pairs, known, strict=True, defaults=_API_DEFAULTS, null_max=MAX_NULL)
    params = query_params(state, expression=False)
    if params is None:
        raise ApiInputError("genes is empty: give gene symbols, aliases or Ensembl ids (any separators)")
    # the ranking only: the robustness, driver-gene and expression rankings the dashboard also
    # draws make a query about 15 times slower (0.08 s against 1.2 s on the demo atlas), so API
    # answers are cached under keys of their own
    return dataclasses.replace(params, evidence=False)


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# the within-study evidence of each disease (compute.query's meta-analysis columns), by kind
_EFFECT_NUMBERS = ("effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "effect_z_p", "effect_pm", "tau2", "i2",
                   "heterogeneity_p", "loo_lo", "loo_hi", "effect_score", "effect_score_lo", "effect_score_hi", "effect_score_p",
                   "effect_score_q")
_EFFECT_COUNTS = ("n_studies_positive", "n_studies_with_reference", "n_donors", "n_reference_donors", "n_permutations")
_STUDY_NUMBERS = ("g", "variance", "g_lo", "g_hi", "weight", "mean", "reference_mean")


def _effect_fields(row: Mapping) -> dict:
    """A disease row's within-study evidence as JSON values (NaN as null); {} for a row without it."""
    if "evidence" not in row:
        return {}
    return ({c: _num(row.get(c)) for c in _EFFECT_NUMBERS} | {c: int(row.get(c) or 0) for c in _EFFECT_COUNTS}
            | {"evidence": str(row["evidence"]), "evidence_words": evidence_words(row)})


def _study_effects(effects) -> list[dict]:
    """Each (disease, study, measure)'s effect against the study's own reference donors, or why there is none."""
    if effects is None:
        return []
    return [{"disease": str(r["disease"]), "study": str(r["study"]), "measure": str(r["measure"]),
             **{c: _num(r[c]) for c in _STUDY_NUMBERS}, "n_donors": int(r["n_donors"]),
             "n_reference_donors": int(r["n_reference_donors"]), "included": bool(r["included"]), "reason": str(r["reason"])}
            for r in effects.to_dict("records")]


def answer(data: DashboardData, params: QueryParams) -> dict:
    """The JSON answer to ``params`` (as parse_query returns them). Raises QueryError for a query
    that cannot be answered (too many genes, none matched, no cells in the filters)."""
    cached = data.stored_result(data.result_key(params)) is not None
    result = data.query(params)
    res = result.resolution
    null = result.null.get("disease")
    p = null.p_values() if null is not None else {}
    rows = [{"rank": int(r["rank"]), "group": str(r["group"]), "mean_hit_pct": _num(r["mean_hit_pct"]),
             "median_hit_pct": _num(r["median_hit_pct"]), "n_samples": int(r["n_samples"]), "n_studies": int(r["n_studies"]),
             "n_cells": int(r["n_cells"]), "p_value": _num(p[r["group"]]) if r["group"] in p else None, **_effect_fields(r)}
            for r in result.diseases.to_dict("records")]
    return {
        "atlas": data.atlas.name,
        "resolution": {
            "n_requested": len(res.matched) + len(res.missing) + len(res.ambiguous),
            "n_matched": len(res.matched), "n_missing": len(res.missing), "n_renamed": len(res.renamed),
            "n_ambiguous": len(res.ambiguous), "n_duplicates": len(res.duplicates), "coverage": round(res.coverage, 4),
            "matched": list(res.matched), "missing": list(res.missing), "renamed": [list(pair) for pair in res.renamed],
            "ambiguous": list(res.ambiguous), "duplicates": list(res.duplicates),
            "not_genes": list(res.not_genes), "recognised": round(res.recognised, 4),
        },
        "n_selected": result.n_selected,
        "threshold": _num(result.threshold),
        "hit_rule": params.rule.describe(),
        # the second question: specificity against random gene sets (p_value of each disease)
        "null": {"draws": null.n_draws, "p_floor": null.p_floor, "vif": _num(null.vif), "vif_null": _num(null.vif_null),
                 "inflation": _num(null.inflation)} if null is not None else None,
        "reference": params.reference,
        "reference_labels": [str(v) for v in result.reference_labels],
        "diseases": rows,
        "study_effects": _study_effects(result.study_effects),
        "disease_groups": {"groups": list(params.disease_groups), "pooled": data.disease_grouping(params.disease_groups)},
        "labels": _LABELS if data.has_vocabulary else _LABELS_OLD,
        "studies": _study_coverage(result),
        "cached": cached,
    }


_LABELS = ("cell types, diseases and tissues are the studies' annotations harmonised to Cell Ontology, MONDO and UBERON terms "
           "(a term includes its subtypes; a label without a term is its own group); never the label transfer's prediction")
_LABELS_OLD = "the studies' own labels (this atlas records no ontology terms)"


def _study_coverage(result) -> dict:
    """min_coverage, each study's signature coverage (whether it was included, and why not) and
    the ids of the studies with cells in the filters that were left out."""
    rows = []
    if result.coverage is not None:
        rows = [{"study": str(study), "requested": int(r["requested"]), "measured": int(r["measured"]), "coverage": _num(r["coverage"]),
                 "n_selected": int(r["n_selected"]), "included": bool(r["included"]), "reason": str(r["reason"])}
                for study, r in result.coverage.iterrows()]
    return {"min_coverage": result.params.min_coverage, "coverage": rows, "excluded": [str(s) for s in result.excluded_studies.index]}


def atlas_info(data: DashboardData) -> dict:
    """The atlas's summary and the values its filters accept (``GET /api/v1/atlas``)."""
    vocab = data.atlas.meta.get("vocabulary") or {}
    return data.summary | {
        "cell_types": data.cell_types, "diseases": data.diseases, "tissues": data.tissues,
        # the terms as trees with the cells at or below each, and the labels without a term
        "hierarchy": {kind: data.atlas.term_hierarchy(kind) for kind in FILTER_KINDS.values()},
        "disease_groups": disease_group_choices(data).option_values,
        "vocabulary": {"versions": vocab.get("versions") or {}, "label_transfer": vocab.get("label_transfer"),
                       "label_transfer_text": label_transfer_line(data.atlas.meta), "labels": _LABELS if data.has_vocabulary else _LABELS_OLD},
        "studies": [{"id": s.id, "title": s.title, "simulated": bool(s.simulated), "measured_share": measured_share(s.meta),
                     "warnings": study_warnings(s.meta)} for s in data.atlas.studies],
        "warnings": atlas_warnings(data.atlas.meta),
        "genes": [str(g) for g in data.atlas.genes], "max_null": MAX_NULL, "parameters": list(PARAMETERS),
    }


def _request_values() -> dict:
    """Parameters of the current request: the query string (GET) or a JSON object or form (POST)."""
    req = flask.request
    if req.method == "GET":
        return {k: (v[0] if len(v) == 1 else v) for k, v in req.args.lists()}
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge(f"the request body is {req.content_length:,} bytes; at most {MAX_BODY_BYTES:,} are accepted")
    if req.is_json:
        # read at most the limit from the stream: a chunked body has no Content-Length to check
        raw = req.stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise RequestEntityTooLarge(f"the request body is over {MAX_BODY_BYTES:,} bytes, the most accepted")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise ApiInputError(f"the JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiInputError("the body must be a JSON object such as {\"genes\": \"CD14 LYZ\", \"null_draws\": 100}")
        if _depth(body) > MAX_JSON_DEPTH:
            raise ApiInputError(f"the JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        return body
    return {k: (v[0] if len(v) == 1 else v) for k, v in req.form.lists()}


def _depth(obj, level: int = 1) -> int:
    """Nesting depth of a parsed JSON value (stops counting past MAX_JSON_DEPTH + 1)."""
    if level > MAX_JSON_DEPTH or not isinstance(obj, dict | list):
        return level
    items = obj.values() if isinstance(obj, dict) else obj
    return max((_depth(v, level + 1) for v in items), default=level)


def _error(message: str, status: int):
    return flask.jsonify({"error": message}), status


def register(server: flask.Flask, data: DashboardData) -> None:
    """Add ``GET/POST /api/v1/query`` and ``GET /api/v1/atlas`` to ``server``, answering from ``data``."""

    def query():
        try:
            params = parse_query(_request_values(), known_values(data))
            return flask.jsonify(answer(data, params))
        except (ApiInputError, QueryError) as exc:
            return _error(str(exc), 400)
        except (HTTPException, CacheError):
            raise  # CacheError: 503 naming the cache folder (dashboard.serving.cache_unavailable)
        except Exception:  # noqa: BLE001 - a bug must still answer JSON, and leave its traceback in the log
            _log.exception("API request failed: %s", flask.request.full_path)
            return _error("internal error answering the query; the server log has the details", 500)

    server.add_url_rule(f"{API_PREFIX}/query", "sigatlas_api_query", query, methods=["GET", "POST"])
    server.add_url_rule(f"{API_PREFIX}/atlas", "sigatlas_api_atlas", lambda: flask.jsonify(atlas_info(data)), methods=["GET"])

    def unknown(rest: str):
        # more specific than Dash's catch-all page route: an API client gets JSON, not the app's HTML
        if f"/api/{rest}".rstrip("/") in (f"{API_PREFIX}/query", f"{API_PREFIX}/atlas"):
            return _error(f"Method Not Allowed: {flask.request.method} /api/{rest}", 405)
        return _error(f"no API route /api/{rest}: the API is {API_PREFIX}/query (GET or POST) and {API_PREFIX}/atlas (GET)", 404)

    server.add_url_rule("/api/<path:rest>", "sigatlas_api_unknown", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])

    @server.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # JSON for API clients (413 body too large, 405 wrong method, 404); other paths as Flask has them
        if not flask.request.path.startswith(API_PREFIX + "/"):
            return exc
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

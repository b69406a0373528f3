"""``/api/v1/query``: signature queries as JSON, for scripts and the load test.

``GET /api/v1/query?genes=CD14,LYZ&cell_types=monocyte&null=100``, or ``POST`` a JSON
object with the same keys, answers with the gene decisions, the disease ranking and each study's
signature coverage (``studies``: min_coverage, per study requested / measured / coverage /
included / reason, and the ids of the studies left out), through the
dashboard's own query path (``params_from_state`` -> ``DashboardData.query``, results kept in the
shared disk cache). Cell types, diseases and tissues are the studies' annotations harmonised to
ontology terms: a filter value is a term label or id ("monocyte", "CL:0000576": the term and its
subtypes), a label that matched no term, or a study's own label; ``disease_groups`` names parent
disease terms ("autoimmune disease") to rank at, each disease under one counting as it (the
first that applies). ``GET /api/v1/atlas`` describes the atlas: the values the filters accept,
the term hierarchies with cell counts, the disease groups, studies and genes. Bad input gets
HTTP 400 and ``{"error": "..."}`` naming the problem. No parameter names a file or an atlas: the
atlas is fixed when the server starts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from compute.atlas import atlas_warnings, label_transfer_line, measured_share, study_warnings
from compute.errors import QueryError
from compute.query import parse_gene_list
from dashboard.data import FILTER_KINDS, DashboardData
from dashboard.state import (
    CHOICES,
    CUT_RANGES,
    DEFAULTS,
    FRACTION_RANGES,
    INT_RANGES,
    LIST_SEP,
    MAX_GENES_TEXT,
    NULL_RANGE,
)

__all__ = ["API_PREFIX", "MAX_BODY_BYTES", "MAX_NULL", "PARAMETERS", "ApiInputError", "answer", "atlas_info", "parse_query", "register"]

API_PREFIX = "/api/v1"
# a gene text of MAX_GENES_TEXT characters plus the filters fits many times over
MAX_BODY_BYTES = 1_000_000
# an API answer is computed inside the request, within the server's worker timeout: 1,000 draws
# (p-value floor 0.001) take under 2 s on the demo atlas; the dashboard's background jobs go to 10,000
MAX_NULL = 1000
_LIST_KEYS = {"cell_types": "cell type", "diseases": "disease", "tissues": "tissue", "studies": "study",
              "disease_groups": "disease group"}
_CHOICE_KEYS = ("data", "rule")
_INT_KEYS = ("cell_min", "samp_min")
PARAMETERS = ("genes", *_LIST_KEYS, *_CHOICE_KEYS, "cut", *_INT_KEYS, *FRACTION_RANGES, "null")
_log = logging.getLogger(__name__)


class ApiInputError(ValueError):
    """A request parameter is missing, malformed or out of range; the message names it."""


def _text(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise ApiInputError(f"{key} must be text or a list of strings, got {type(value).__name__}")


def _items(key: str, value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(LIST_SEP) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for item in value for v in _items(key, item)]
    raise ApiInputError(f"{key} must be a list of strings or one string separated by '{LIST_SEP}', got {type(value).__name__}")


def _number(key: str, value, *, whole: bool) -> float:
    if isinstance(value, bool):  # JSON true/false are ints to Python
        raise ApiInputError(f"{key} must be a number, got {str(value).lower()}")
    if isinstance(value, int | float):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            raise ApiInputError(f"{key} must be a number, got '{value[:40]}'") from None
    else:
        raise ApiInputError(f"{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(v):
        raise ApiInputError(f"{key} must be a finite number, got {value}")
    if whole and not v.is_integer():
        raise ApiInputError(f"{key} must be a whole number, got {value}")
    return v


def _known_list(key: str, name: str, items: list[str], known) -> list[str]:
    """``items`` checked against ``known`` (a list of values, or a mapping from each accepted
    value to the form the dashboard shows, which replaces it); ApiInputError naming the unknown."""
    unknown = [v for v in items if v not in known]
    if unknown:
        shown = ", ".join(f"'{v[:60]}'" for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        listed = list(getattr(known, "option_values", known))
        choices = ", ".join(listed[:30]) + (f" ... ({len(listed)} in all)" if len(listed) > 30 else "")
        if key == "disease_groups":
            raise ApiInputError(f"unknown {name}{'s' if len(unknown) > 1 else ''} {shown}: name a parent term of at least two of "
                                f"this atlas's diseases (a MONDO label or id); this atlas has: {choices or 'none'}")
        what = " (an ontology term label or id, a label without a term, or a study's own label)" if key in FILTER_KINDS else ""
        raise ApiInputError(f"unknown {name}{'s' if len(unknown) > 1 else ''} {shown}{what}; this atlas has: {choices}")
    values = [known[v] for v in items] if isinstance(known, Mapping) else items
    if key == "disease_groups":
        return list(dict.fromkeys(values))  # the order counts: a disease under two groups goes to the first
    return sorted(set(values))


def parse_query(values: Mapping[str, object], known: Mapping[str, list[str]]) -> dict:
    """The dashboard state (``dashboard.state.DEFAULTS`` keys) that request ``values`` ask for.

    ``values``: parameter -> str, number or list of strings (a GET's repeated keys as a list);
    ``known``: "cell_types", "diseases", "tissues", "studies", "disease_groups" -> the values the
    atlas accepts (a list, or a mapping to the form the dashboard shows, as
    ``dashboard.app.link_vocabulary`` gives them: a term id becomes the term's label). Unlike a
    shared link, which falls back to defaults, every problem raises ApiInputError naming the
    parameter; null defaults to 0 (no p-values) and is capped at MAX_NULL; min_coverage is a share, 0-1."""
    unknown = [k for k in values if k not in PARAMETERS]
    if unknown:
        raise ApiInputError(f"unknown parameter '{unknown[0][:40]}'; accepted: {', '.join(PARAMETERS)}")
    state = dict(DEFAULTS) | {"null": 0}
    genes = _text("genes", values.get("genes", ""))
    if len(genes) > MAX_GENES_TEXT:
        raise ApiInputError(f"genes is {len(genes):,} characters long; at most {MAX_GENES_TEXT:,} are accepted")
    if not parse_gene_list(genes):
        raise ApiInputError("genes is empty: give gene symbols, aliases or Ensembl ids (any separators)")
    state["genes"] = genes
    for key, name in _LIST_KEYS.items():
        if key in values:
            state[key] = _known_list(key, name, _items(key, values[key]), known[key])
    for key in _CHOICE_KEYS:
        if key in values:
            value = values[key]
            if value not in CHOICES[key]:
                raise ApiInputError(f"{key} must be one of {', '.join(CHOICES[key])}, got '{str(value)[:40]}'")
            state[key] = value
    if "cut" in values:
        lo, hi = CUT_RANGES[state["rule"]]
        cut = _number("cut", values["cut"], whole=False)
        if not lo <= cut <= hi:
            raise ApiInputError(f"cut must be within {lo:g}-{hi:g} for the {state['rule']} rule, got {cut:g}")
        state["cut"] = cut
    elif state["rule"] == "quantile":
        state["cut"] = 0.9  # the default 90 suits the percentile and value rules only
    for key in _INT_KEYS:
        if key in values:
            lo, hi = INT_RANGES[key]
            v = int(_number(key, values[key], whole=True))
            if not lo <= v <= hi:
                raise ApiInputError(f"{key} must be within {lo:,}-{hi:,}, got {v:,}")
            state[key] = v
    for key, (lo, hi) in FRACTION_RANGES.items():
        if key in values:
            v = _number(key, values[key], whole=False)
            if not lo <= v <= hi:
                raise ApiInputError(f"{key} must be within {lo:g}-{hi:g}, got {v:g}")
            state[key] = v
    if "null" in values:
        v = int(_number("null", values["null"], whole=True))
        if v != 0 and not NULL_RANGE[0] <= v <= MAX_NULL:
            raise ApiInputError(f"null must be 0 (no p-values) or {NULL_RANGE[0]}-{MAX_NULL:,} draws, got {v:,}")
        state["null"] = v
    return state


def _num(v):
    v = float(v)
    return v if math.isfinite(v) else None


def answer(data: DashboardData, state: dict) -> dict:
    """The JSON answer to ``state`` (as parse_query returns it). Raises QueryError for a query
    that cannot be answered (too many genes, none matched, no cells in the filters)."""
    from dashboard.app import params_from_state

    # the ranking only: the robustness, driver-gene and expression rankings the dashboard also
    # draws make a query about 15 times slower (0.08 s against 1.2 s on the demo atlas), so API
    # answers are cached under keys of their own
    params = dataclasses.replace(params_from_state(state, expression=False), evidence=False)
    cached = data.stored_result(data.result_key(params)) is not None
    result = data.query(params)
    res = result.resolution
    null = result.null.get("disease")
    p = null.p_values() if null is not None else {}
    rows = [{"rank": int(r.rank), "group": str(r.group), "mean_hit_pct": _num(r.mean_hit_pct), "median_hit_pct": _num(r.median_hit_pct),
             "n_samples": int(r.n_samples), "n_studies": int(r.n_studies), "n_cells": int(r.n_cells),
             "p_value": _num(p[r.group]) if r.group in p else None}
            for r in result.diseases.itertuples()]
    return {
        "atlas": data.atlas.name,
        "resolution": {
            "n_requested": len(res.matched) + len(res.missing) + len(res.ambiguous),
            "n_matched": len(res.matched), "n_missing": len(res.missing), "n_renamed": len(res.renamed),
            "n_ambiguous": len(res.ambiguous), "n_duplicates": len(res.duplicates), "coverage": round(res.coverage, 4),
            "matched": list(res.matched), "missing": list(res.missing), "renamed": [list(pair) for pair in res.renamed],
            "ambiguous": list(res.ambiguous), "duplicates": list(res.duplicates),
        },
        "n_selected": result.n_selected,
        "threshold": _num(result.threshold),
        "hit_rule": params.rule.describe(),
        "null": {"draws": null.n_draws, "p_floor": null.p_floor} if null is not None else None,
        "diseases": rows,
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
        "disease_groups": data.disease_group_choices.option_values,
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
        body = req.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiInputError("the body must be a JSON object such as {\"genes\": \"CD14 LYZ\", \"null\": 100}")
        return body
    return {k: (v[0] if len(v) == 1 else v) for k, v in req.form.lists()}


def _error(message: str, status: int):
    return flask.jsonify({"error": message}), status


def register(server: flask.Flask, data: DashboardData) -> None:
    """Add ``GET/POST /api/v1/query`` to ``server``, answering from ``data``."""
    from dashboard.app import link_vocabulary

    known = link_vocabulary(data)

    def query():
        try:
            state = parse_query(_request_values(), known)
            return flask.jsonify(answer(data, state))
        except (ApiInputError, QueryError) as exc:
            return _error(str(exc), 400)
        except HTTPException:
            raise
        except Exception:  # noqa: BLE001 - a bug must still answer JSON, and leave its traceback in the log
            _log.exception("API request failed: %s", flask.request.full_path)
            return _error("internal error answering the query; the server log has the details", 500)

    server.add_url_rule(f"{API_PREFIX}/query", "sigatlas_api_query", query, methods=["GET", "POST"])
    server.add_url_rule(f"{API_PREFIX}/atlas", "sigatlas_api_atlas", lambda: flask.jsonify(atlas_info(data)), methods=["GET"])

    @server.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # JSON for API clients (413 body too large, 405 wrong method, 404); other paths as Flask has them
        if not flask.request.path.startswith(API_PREFIX + "/"):
            return exc
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

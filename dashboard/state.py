"""The dashboard state: its settings, their defaults and rules, and the link that carries them.

One owner for every setting. ``read_state`` checks settings from any source (a link, the
controls, an API request) against the same rules: a link falls back to the default with a message
per problem (a shared link must never crash the page); the controls and the API get a
``StateError`` naming the setting. ``encode_state`` writes a link, ``decode_state`` reads one,
``query_params`` is the one conversion of a state into compute's ``QueryParams`` (the gene text is
parsed there, once). The hit rule's kinds, ranges and default are compute's (``HitRule``). Pure
functions, no Dash.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Collection, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode

from compute.errors import QueryError
from compute.query import (
    DATA_KINDS,
    DEFAULT_HIT_RULE,
    HIT_KINDS,
    HIT_RANGES,
    HitRule,
    QueryParams,
    parse_gene_list,
)

__all__ = ["CHOICES", "DEFAULTS", "FRACTION_RANGES", "INT_RANGES", "LEGACY_KEYS", "LIST_KEYS", "LIST_SEP", "MAX_FIELDS",
           "MAX_GENES_TEXT", "MAX_REFERENCE_CHARS", "NULL_RANGE", "QUERY_KEYS", "RANKING_KEYS", "RANKING_LISTS", "TABS", "VIEW_KEYS", "StateError",
           "UnknownValues", "append_genes",
           "check_setting", "decode_state", "default_cutoff", "encode_state", "normalise_genes", "query_params", "read_state"]

_QUERY_DEFAULTS = {f.name: f.default for f in dataclasses.fields(QueryParams)}

DEFAULTS: dict = {
    "genes": "",  # the pasted gene text
    "preset": "",
    "cell_types": [],
    "diseases": [],
    "tissues": [],
    "studies": [],
    # disease terms to rank at: each disease under one of them counts as that term (QueryParams.disease_groups)
    "disease_groups": [],
    "data_kind": _QUERY_DEFAULTS["data"],  # real, simulated or all studies
    "rule": DEFAULT_HIT_RULE[0],  # the hit rule's kind; rule before cutoff: the cutoff is checked against it
    "cutoff": float(DEFAULT_HIT_RULE[1]),  # the hit rule's value
    "cell_min": _QUERY_DEFAULTS["cell_min"],
    "samp_min": _QUERY_DEFAULTS["samp_min"],
    # studies that measured less of the signature (share of its weight) are left out
    "min_coverage": _QUERY_DEFAULTS["min_coverage"],
    "top_n": 0,  # 0: all groups
    "group_by": "disease",
    "heat": "heatmap",
    "order": "cluster",
    "color": "score",
    "genes_shown": "top",  # the gene views: the top GENE_VIEW_TOP genes, or all (up to GENE_VIEW_CAP)
    "null_draws": 1000,  # matched random gene sets for p-values (0: none; otherwise 100-10000 draws)
    # the donors each disease is compared with within its own studies (QueryParams.reference):
    # a disease term (label or id; its descendants count), by default the healthy donors
    "reference": _QUERY_DEFAULTS["reference"],
    # the disease ranking's order: SIGnature's mean hit % per sample, or the pooled within-study effect
    "disease_order": "hit",
    "tab": "diseases",
    # the "Genes in a cell type" tab: its population, its reference diseases and the gene whose spread shows
    "rank_cell_types": [],
    "rank_diseases": [],
    "rank_studies": [],
    "rank_versus": [],
    "rank_gene": "",
}
# names older links (and API clients) use for a setting: still read, never written
LEGACY_KEYS = {"data": "data_kind", "cut": "cutoff", "null": "null_draws"}
# the settings that define a query; the others only change how its result is shown
QUERY_KEYS = ("genes", "cell_types", "diseases", "tissues", "studies", "disease_groups", "data_kind", "rule", "cutoff",
              "cell_min", "samp_min", "min_coverage", "null_draws", "reference")
VIEW_KEYS = ("top_n", "group_by", "heat", "order", "color", "genes_shown", "tab", "rank_cell_types", "rank_diseases", "rank_studies", "rank_versus",
             "rank_gene", "disease_order")
# the view settings of the "Genes in a cell type" tab: they choose a gene ranking, not how a query's result shows
RANKING_KEYS = ("rank_cell_types", "rank_diseases", "rank_studies", "rank_versus", "rank_gene")
# each ranking filter accepts what the query filter of the same cells accepts
RANKING_LISTS = {"rank_cell_types": "cell_types", "rank_diseases": "diseases", "rank_studies": "studies", "rank_versus": "diseases"}

CHOICES: dict[str, tuple[str, ...]] = {
    "data_kind": DATA_KINDS,
    "rule": HIT_KINDS,
    "group_by": ("disease", "cell_type", "study"),
    "heat": ("heatmap", "dotplot"),
    "order": ("cluster", "score"),
    # cell_type: the studies' annotations harmonised to the Cell Ontology; cell_type_predicted: label transfer
    "color": ("score", "cell_type", "cell_type_predicted", "disease", "study"),
    "genes_shown": ("top", "all"),
    # hit: mean hit % over a disease's samples (SIGnature's rule); effect: the pooled Hedges' g
    # against the reference donors within each study (diseases without one follow, by hit %)
    "disease_order": ("hit", "effect"),
}

# the results tabs, in display order; a tab is only ever added, so every shared link stays valid
TABS = ("diseases", "studies", "cells", "genes", "cell_genes", "modules")
LIST_KEYS = ("cell_types", "diseases", "tissues", "studies", "disease_groups", *RANKING_LISTS)
_LIST_NAMES = {"cell_types": "cell type", "diseases": "disease", "tissues": "tissue", "studies": "study",
               "disease_groups": "disease group", "rank_cell_types": "cell type", "rank_diseases": "disease",
               "rank_studies": "study", "rank_versus": "reference disease"}
_TERM_FILTERS = ("cell_types", "diseases", "tissues", "rank_cell_types", "rank_diseases", "rank_versus")
# lists are joined with "|" because cell type and disease names contain commas and spaces
LIST_SEP = "|"
# (lowest, highest) whole numbers accepted
INT_RANGES = {"cell_min": (1, 1_000_000), "samp_min": (1, 100_000), "top_n": (0, 100_000)}
NULL_RANGE = (100, 10_000)  # null draws besides 0 (none)
# (lowest, highest) shares accepted: the share of the signature's weight a study must have measured
FRACTION_RANGES = {"min_coverage": (0.0, 1.0)}
# preset keys and tab ids are short identifiers chosen by the app, never free text
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_REFERENCE_CHARS = 200  # a disease term's label or id; far above the longest MONDO label
MAX_GENES_TEXT = 100_000  # characters; far above MAX_GENES symbols, far below what breaks a server
MAX_FIELDS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


class StateError(QueryError):
    """A setting is invalid. ``key``: the setting as it was named; ``reason``: what it must be;
    ``given``: the value. The message reads "cutoff must be within 0-100 for the percentile rule, got 150"."""

    def __init__(self, key: str, reason: str, given, message: str | None = None):
        self.key, self.reason, self.given = key, reason, given
        super().__init__(message or f"{key} {reason}, got {_shown_value(given)}")


class UnknownValues(StateError):
    """Items of a list setting the atlas does not have: ``unknown``; ``kept``: the others, in the
    form their control shows."""

    def __init__(self, key: str, list_key: str, unknown: list[str], kept: list[str], names):
        self.unknown, self.kept = unknown, kept
        shown = ", ".join(f"'{v[:60]}'" for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        listed = list(getattr(names, "option_values", names))
        choices = ", ".join(listed[:30]) + (f" ... ({len(listed)} in all)" if len(listed) > 30 else "")
        what = f"unknown {_LIST_NAMES[list_key]}{'s' if len(unknown) > 1 else ''} {shown}"
        if list_key == "disease_groups":
            message = (f"{what}: name a parent term of at least two of this atlas's diseases (a MONDO label or id); "
                       f"this atlas has: {choices or 'none'}")
        else:
            hint = " (an ontology term label or id, a label without a term, or a study's own label)" if list_key in _TERM_FILTERS else ""
            message = f"{what}{hint}; this atlas has: {choices}"
        super().__init__(key, "names values this atlas does not have", unknown, message)


def normalise_genes(text: str) -> str:
    """``text`` on one line: '#' comments dropped, each line stripped, blank lines dropped and
    the rest joined with commas (parse_gene_list reads the same genes and weights from it)."""
    lines = (ln.split("#", 1)[0].strip() for ln in (text or "").splitlines())
    return ",".join(ln for ln in lines if ln)


def append_genes(text: str | None, genes: list[str]) -> str:
    """``text`` (the gene box) with ``genes`` added on new lines, leaving out those already in it."""
    have = {g.upper() for g, _ in parse_gene_list(text or "")}
    new = [g for g in dict.fromkeys(genes) if g.upper() not in have]
    text = (text or "").rstrip()
    return "\n".join([text, *new] if text else new)


def default_cutoff(rule: str) -> float:
    """The cut-off of hit rule ``rule`` when none is given: the default rule's, in ``rule``'s units
    (90th percentile, 0.9 quantile; a score value of 90)."""
    return float(HitRule.default(rule).value)


# -- checking one setting ---------------------------------------------------------------------
def _fmt_num(v) -> str:
    """Shortest text that reads back as the same number ("90", not "90.0")."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _show(raw: str) -> str:
    return raw if len(raw) <= 40 else raw[:37] + "..."


def _shown_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f"'{_show(value)}'"
    return type(value).__name__


def _number(key: str, value, *, whole: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):  # JSON true/false are ints to Python
        raise StateError(key, "must be a number", value)
    try:
        v = float(value)
    except (ValueError, OverflowError):  # not a number; an integer of hundreds of digits
        raise StateError(key, "must be a number", value) from None
    if not math.isfinite(v):
        raise StateError(key, "must be a finite number", value)
    if whole:
        if not v.is_integer():
            raise StateError(key, "must be a whole number", value)
        return int(v)
    return v


def _within(key: str, v, lo, hi, value, what: str = ""):
    if not lo <= v <= hi:
        raise StateError(key, f"must be within {lo:,}-{hi:,}{what}" if isinstance(lo, int) else
                         f"must be within {_fmt_num(lo)}-{_fmt_num(hi)}{what}", value)
    return v


def _check_list(key: str, name: str, value, names) -> list[str]:
    if isinstance(value, str):
        items = value.split(LIST_SEP)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise StateError(name, f"must be a list of strings or one string separated by '{LIST_SEP}'", value)
    items = list(dict.fromkeys(v for v in items if v))  # unique, in the order given
    if names is None:
        return items
    # a hand-edited link that joins values with "," instead of "|": an unknown item whose
    # comma-separated parts are all known is read as those parts (names may hold commas themselves)
    items = list(dict.fromkeys(part for v in items for part in _comma_parts(v, names)))
    unknown = [v for v in items if v not in names]
    # a mapping names the form the control shows (a term id read as its label): the same cells
    kept = list(dict.fromkeys(names[v] if isinstance(names, Mapping) else v for v in items if v in names))
    if unknown:
        raise UnknownValues(name, key, unknown, kept, names)
    return kept


def _comma_parts(value: str, names) -> list[str]:
    """``value`` split at its commas when it is not a known name and every part is one, else [value]."""
    if value in names or "," not in value:
        return [value]
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts if parts and all(p in names for p in parts) else [value]


def check_setting(key: str, value, state: Mapping, known: Mapping[str, Collection[str]] | None = None, *,
                  name: str | None = None, null_max: int = NULL_RANGE[1]):
    """``value`` of setting ``key`` in its canonical form (numbers as int or float, lists unique in
    the order given, the gene text on one line), checked against the setting's rule; ``state``:
    the settings checked before it (the cutoff is checked against ``state["rule"]``). ``known``
    optionally maps list settings, "preset" and "tab" to the values that exist (a mapping: each
    accepted value to the form its control shows). Raises StateError (UnknownValues for unknown
    list items) naming the setting as ``name`` (default ``key``)."""
    name = name or key
    known = known or {}
    if key == "genes":
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise StateError(name, "must be text or a list of strings", value)
        if len(value) > MAX_GENES_TEXT:
            raise StateError(name, f"must be at most {MAX_GENES_TEXT:,} characters long", value)
        return normalise_genes(value)
    if key in LIST_KEYS:
        # a ranking filter names what its query filter names (a term id read as its label, the same cells)
        return _check_list(key, name, value, known.get(key, known.get(RANKING_LISTS.get(key, ""))))
    if key == "rank_gene":
        return _check_gene(name, value, known.get(key))
    if key == "reference":
        return _check_reference(name, value, known.get(key))
    if key in CHOICES:
        if not isinstance(value, str) or value not in CHOICES[key]:
            raise StateError(name, f"must be one of {', '.join(CHOICES[key])}", value)
        return value
    if key in ("preset", "tab"):
        if value in ("", None):
            return DEFAULTS[key]
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):  # match() would let a trailing newline through
            raise StateError(name, "is not a valid name", value)
        allowed = known.get(key)
        if allowed is not None and value not in allowed:
            raise StateError(name, "is not available", value)
        return value
    if key == "cutoff":
        rule = state.get("rule", DEFAULTS["rule"])
        v = _number(name, value, whole=False)
        lo, hi = HIT_RANGES[rule]
        return v if lo is None else _within(name, v, float(lo), float(hi), value, f" for the {rule} rule")
    if key in FRACTION_RANGES:
        return _within(name, _number(name, value, whole=False), *FRACTION_RANGES[key], value)
    if key == "null_draws":
        v = _number(name, value, whole=True)
        if v != 0 and not NULL_RANGE[0] <= v <= null_max:
            raise StateError(name, f"must be 0 (no p-values) or {NULL_RANGE[0]}-{null_max:,} draws", value)
        return v
    if key in INT_RANGES:
        return _within(name, _number(name, value, whole=True), *INT_RANGES[key], value)
    raise StateError(name, "is not a setting", value)


def _check_reference(name: str, value, terms) -> str:
    """One disease term (label or id) the reference donors are drawn from; ``terms``: the values
    accepted, a mapping giving the form the control shows (a term id read as its label)."""
    if value in ("", None):
        return DEFAULTS["reference"]
    if not isinstance(value, str) or len(value) > MAX_REFERENCE_CHARS or not value.strip() or any(c in value for c in "\r\n\t"):
        raise StateError(name, f"must be one disease term's label or id (at most {MAX_REFERENCE_CHARS} characters), such as 'normal'",
                         value)
    value = value.strip()
    if terms is None:
        return value
    if value not in terms and value.casefold() == str(DEFAULTS["reference"]).casefold():
        return DEFAULTS["reference"]  # an atlas without healthy donors: compute answers with "no reference" for every disease
    if value not in terms:
        raise StateError(name, "is not a disease of this atlas or a term above one (the reference donors' disease; "
                         "default 'normal', the healthy donors)", value)
    return terms[value] if isinstance(terms, Mapping) else value


def _check_gene(name: str, value, genes) -> str:
    """One gene of the gene order (``genes``: the symbols that exist), or "" for none."""
    if value in ("", None):
        return ""
    if not isinstance(value, str) or len(value) > 100 or any(c.isspace() for c in value):
        raise StateError(name, "must be one gene symbol", value)
    if genes is not None and value not in genes:
        raise StateError(name, "is not a gene of this atlas's gene order", value)
    return value


# -- reading and writing a whole state ------------------------------------------------------------
def read_state(pairs: Iterable[tuple[str, object]], known: Mapping[str, Collection[str]] | None = None, *, strict: bool,
               defaults: Mapping = DEFAULTS, null_max: int = NULL_RANGE[1]) -> tuple[dict, list[str]]:
    """(state, notes): the state with every key of DEFAULTS that the settings ``pairs`` ((name,
    value) in order; older names of LEGACY_KEYS accepted) ask for, missing ones taking ``defaults``.

    ``strict``: the first invalid setting raises StateError (the controls, the API). Otherwise
    (a link) an invalid setting takes its default, unknown list items are dropped and unknown
    names ignored, each with a note such as "cutoff=abc must be a number; using 90"."""
    notes: list[str] = []
    given: dict[str, tuple[str, object]] = {}
    for name, value in pairs:
        key = LEGACY_KEYS.get(name, name)
        if key not in DEFAULTS:
            if strict:
                raise StateError(name, "is not a setting", value)
            notes.append(f"unknown setting '{_show(name)}' in the link; ignored")
            continue
        if key in given:
            if strict and given[key][0] != name:
                raise StateError(name, f"is given twice (also as {given[key][0]})", value)
            notes.append(f"{name} is given more than once; using the last ({_show(str(value))})")
        given[key] = (name, value)
    state: dict = {}
    for key, default in defaults.items():  # DEFAULTS' order puts rule before cutoff, which is checked against it
        if key not in given:
            state[key] = copy.copy(default)
            continue
        name, value = given[key]
        try:
            state[key] = check_setting(key, value, state, known, name=name, null_max=null_max)
        except UnknownValues as exc:
            if strict:
                raise
            notes += [f"{name}: '{_show(v)}' is not in this atlas; dropped" for v in exc.unknown]
            state[key] = exc.kept
        except StateError as exc:
            if strict:
                raise
            fallback = default_cutoff(state["rule"]) if key == "cutoff" else copy.copy(default)
            shown = _fmt_num(fallback) if isinstance(fallback, float) else (fallback if fallback != "" else "none")
            raw = value if isinstance(value, str) else _shown_value(value)
            notes.append(f"{name}={_show(raw)} {exc.reason}; using {shown}")
            state[key] = fallback
    if "cutoff" not in given and "rule" in given:
        lo, hi = HIT_RANGES[state["rule"]]
        if lo is not None and not lo <= state["cutoff"] <= hi:  # the default cut-off (90) does not suit a quantile
            state["cutoff"] = default_cutoff(state["rule"])
            notes.append(f"no cutoff for the {state['rule']} rule; using {_fmt_num(state['cutoff'])}")
    return state, notes


def _canonical(key: str, value):
    """``value`` in the form decode_state returns it (None means the default)."""
    if value is None:
        return copy.copy(DEFAULTS[key])
    if key == "genes":
        return normalise_genes(str(value))
    if key in LIST_KEYS:
        return [value] if isinstance(value, str) else [str(v) for v in value]
    return value


def encode_state(state: Mapping) -> str:
    """"?key=value&..." for the settings of ``state`` that differ from DEFAULTS (in DEFAULTS'
    order), lists joined by "|", the gene text on one line; "" when everything is default.
    Keys not in DEFAULTS are ignored."""
    pairs = []
    for key, default in DEFAULTS.items():
        value = _canonical(key, state.get(key))
        if value == default:
            continue
        if key in LIST_KEYS:
            text = LIST_SEP.join(value)
        elif isinstance(value, float | int) and not isinstance(value, bool):
            text = _fmt_num(value) if isinstance(value, float) else str(value)
        else:
            text = str(value)
        pairs.append((key, text))
    # "|" and "," stay literal: the link is easier to read and parse_qsl decodes them either way
    return "?" + urlencode(pairs, safe="|,") if pairs else ""


def decode_state(search: str | None, known: Mapping[str, Collection[str]] | None = None) -> tuple[dict, list[str]]:
    """(state, notes) for the query string ``search`` (with or without its leading "?"): as
    ``read_state(..., strict=False)`` (every key of DEFAULTS; invalid settings take their default
    with a note; older names such as ``cut`` and ``null`` read as ``cutoff`` and ``null_draws``).
    decode_state(encode_state(s)) == (s, []) for every valid state s."""
    notes: list[str] = []
    search = search or ""
    if _SURROGATE.search(search):  # only a hand-made request holds them, and no link can be written with them
        search = _SURROGATE.sub("\ufffd", search)
        notes.append("the link holds characters that are not text (lone surrogates); each was replaced by \ufffd")
    try:
        pairs = parse_qsl(search.lstrip("?"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return copy.deepcopy(DEFAULTS), [*notes, f"the link has more than {MAX_FIELDS} settings; all were ignored"]
    state, more = read_state(pairs, known, strict=False)
    return state, notes + more


def query_params(state: Mapping, *, expression: bool = True) -> QueryParams | None:
    """The query a checked state (``read_state``'s) asks for, or None when its gene text names no
    gene; ``expression``: also rank by expression scores (only for atlases that store expression).
    Raises QueryError for a query compute cannot form."""
    genes = tuple(parse_gene_list(state["genes"] or ""))
    if not genes:
        return None
    return QueryParams(
        genes=genes,
        cell_types=tuple(sorted(state["cell_types"] or ())),
        diseases=tuple(sorted(state["diseases"] or ())),
        tissues=tuple(sorted(state["tissues"] or ())),
        studies=tuple(sorted(state["studies"] or ())),
        # in the order chosen: a disease under two of them counts in the first
        disease_groups=tuple(dict.fromkeys(state["disease_groups"] or ())),
        data=state["data_kind"],
        rule=HitRule(state["rule"], state["cutoff"]),
        # plain Python numbers: the parameters' repr is the result's cache key (no np.float64)
        cell_min=int(state["cell_min"]),
        samp_min=int(state["samp_min"]),
        min_coverage=float(state["min_coverage"]),
        n_null=int(state["null_draws"]),
        reference=str(state["reference"]),
        evidence=True,
        expression=expression,
    )

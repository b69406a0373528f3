"""The whole dashboard state as a URL query string, so a view can be bookmarked and shared.

``encode_state`` writes only the settings that differ from ``DEFAULTS``; ``decode_state`` reads
any link back, replacing every invalid value by its default with a message saying so (a shared
link must never crash the page). Pure functions, no Dash.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Collection, Mapping
from urllib.parse import parse_qsl, urlencode

__all__ = ["CHOICES", "DEFAULTS", "FRACTION_RANGES", "TABS", "decode_state", "encode_state", "normalise_genes"]

DEFAULTS: dict = {
    "genes": "",  # the pasted gene text
    "preset": "",
    "cell_types": [],
    "diseases": [],
    "tissues": [],
    "studies": [],
    # disease terms to rank at: each disease under one of them counts as that term (QueryParams.disease_groups)
    "disease_groups": [],
    "data": "all",
    "rule": "percentile",
    "cut": 90.0,
    "cell_min": 25,
    "samp_min": 3,
    "min_coverage": 0.5,  # studies that measured less of the signature (share of its weight) are left out
    "top_n": 0,  # 0: all groups
    "group_by": "disease",
    "heat": "heatmap",
    "order": "cluster",
    "color": "score",
    "null": 1000,  # matched random gene sets for p-values (0: none; otherwise 100-10000 draws)
    "tab": "diseases",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "data": ("all", "real", "simulated"),
    "rule": ("percentile", "quantile", "value"),
    "group_by": ("disease", "cell_type", "study"),
    "heat": ("heatmap", "dotplot"),
    "order": ("cluster", "score"),
    # cell_type: the studies' annotations harmonised to the Cell Ontology; cell_type_predicted: label transfer
    "color": ("score", "cell_type", "cell_type_predicted", "disease", "study"),
}

# the results tabs, in display order; a tab is only ever added, so every shared link stays valid
TABS = ("diseases", "studies", "cells", "genes", "modules")
LIST_KEYS = ("cell_types", "diseases", "tissues", "studies", "disease_groups")
# lists are joined with "|" because cell type and disease names contain commas and spaces
LIST_SEP = "|"
# (lowest, highest) whole numbers accepted
INT_RANGES = {"cell_min": (1, 1_000_000), "samp_min": (1, 100_000), "top_n": (0, 100_000)}
NULL_RANGE = (100, 10_000)
# (lowest, highest) shares accepted: the share of the signature's weight a study must have measured
FRACTION_RANGES = {"min_coverage": (0.0, 1.0)}
# the cut-off's range and, when the given one is invalid, its default under each hit rule
CUT_RANGES = {"percentile": (0.0, 100.0), "quantile": (0.0, 1.0), "value": (-math.inf, math.inf)}
CUT_DEFAULTS = {"percentile": 90.0, "quantile": 0.9, "value": 90.0}
# preset keys and tab ids are short identifiers chosen by the app, never free text
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_GENES_TEXT = 100_000  # characters; far above MAX_GENES symbols, far below what breaks a server
MAX_FIELDS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


def normalise_genes(text: str) -> str:
    """``text`` on one line: '#' comments dropped, each line stripped, blank lines dropped and
    the rest joined with commas (parse_gene_list reads the same genes and weights from it)."""
    lines = (ln.split("#", 1)[0].strip() for ln in (text or "").splitlines())
    return ",".join(ln for ln in lines if ln)


def _fmt_num(v) -> str:
    """Shortest text that reads back as the same number ("90", not "90.0")."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _canonical(key: str, value):
    """``value`` in the form decode_state returns it (None means the default)."""
    if value is None:
        return copy.copy(DEFAULTS[key])
    if key == "genes":
        return normalise_genes(str(value))
    if key in LIST_KEYS:
        return [value] if isinstance(value, str) else [str(v) for v in value]
    return value


def encode_state(state: dict) -> str:
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


def _show(raw: str) -> str:
    return raw if len(raw) <= 40 else raw[:37] + "..."


def _parse_float(raw: str) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _parse_int(raw: str) -> int | None:
    v = _parse_float(raw)
    return int(v) if v is not None and v.is_integer() else None


def _decode_list(key: str, raw: str, known: Collection[str] | None, messages: list[str]) -> list[str]:
    items = list(dict.fromkeys(v for v in raw.split(LIST_SEP) if v))  # unique, in link order
    if known is None:
        return items
    kept = []
    for v in items:
        if v not in known:
            messages.append(f"{key}: '{_show(v)}' is not in this atlas; dropped")
        else:  # a mapping names the form the control shows (a term id read as its label): same cells
            kept.append(known[v] if isinstance(known, Mapping) else v)
    return list(dict.fromkeys(kept))


def _decode_value(key: str, raw: str, state: dict, known: Mapping[str, Collection[str]], messages: list[str]):
    """The value of setting ``key`` read from ``raw``, or its default with a message."""
    default = DEFAULTS[key]

    def bad(reason: str, fallback=default):
        shown = fallback if not isinstance(fallback, float) else _fmt_num(fallback)
        messages.append(f"{key}={_show(raw)} {reason}; using {shown if shown != '' else 'none'}")
        return copy.copy(fallback)

    if key == "genes":
        if len(raw) > MAX_GENES_TEXT:
            messages.append(f"genes: the gene text is longer than {MAX_GENES_TEXT:,} characters; ignored")
            return default
        return normalise_genes(raw)
    if key in LIST_KEYS:
        return _decode_list(key, raw, known.get(key), messages)
    if key in CHOICES:
        return raw if raw in CHOICES[key] else bad(f"is not one of {', '.join(CHOICES[key])}")
    if key in ("preset", "tab"):
        if raw == "":
            return default
        if not _IDENTIFIER.fullmatch(raw):  # match() would let a trailing newline through
            return bad("is not a valid name")
        allowed = known.get(key)
        return raw if allowed is None or raw in allowed else bad("is not available")
    if key == "cut":
        rule = state["rule"]
        fallback = CUT_DEFAULTS[rule]
        v = _parse_float(raw)
        if v is None:
            return bad("is not a number", fallback)
        lo, hi = CUT_RANGES[rule]
        if not lo <= v <= hi:
            return bad(f"is outside {_fmt_num(lo)}-{_fmt_num(hi)} for the {rule} rule", fallback)
        return v
    if key in FRACTION_RANGES:
        v = _parse_float(raw)
        if v is None:
            return bad("is not a number")
        lo, hi = FRACTION_RANGES[key]
        return v if lo <= v <= hi else bad(f"is outside {_fmt_num(lo)}-{_fmt_num(hi)}")
    v = _parse_int(raw)
    if v is None:
        return bad("is not a whole number")
    if key == "null":
        lo, hi = NULL_RANGE
        return v if v == 0 or lo <= v <= hi else bad(f"must be 0 (no null) or {lo}-{hi:,} draws")
    lo, hi = INT_RANGES[key]
    if v < lo:
        return bad(f"must be at least {lo}")
    return v if v <= hi else bad(f"must be at most {hi:,}")


def decode_state(search: str, known: Mapping[str, Collection[str]] | None = None) -> tuple[dict, list[str]]:
    """(state, messages) for the query string ``search`` (with or without its leading "?").

    The state has every key of DEFAULTS; a setting missing from the link takes its default, and
    an invalid one (not a number, out of range, not a choice) takes its default with a message
    such as "cut=abc is not a number; using 90". Unknown settings are ignored with a message.
    ``known`` optionally maps "cell_types", "diseases", "tissues", "studies", "disease_groups",
    "preset" and "tab" to the values that exist: other list items are dropped and other names
    replaced, each with a message. Where a list key's values are a mapping, each accepted value is
    replaced by the one it maps to (an ontology term id by the term's label, as the filter shows it).
    decode_state(encode_state(s)) == s for every valid state s.
    """
    known = known or {}
    messages: list[str] = []
    search = search or ""
    if _SURROGATE.search(search):  # only a hand-made request holds them, and no link can be written with them
        search = _SURROGATE.sub("\ufffd", search)
        messages.append("the link holds characters that are not text (lone surrogates); each was replaced by \ufffd")
    try:
        pairs = parse_qsl(search.lstrip("?"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return copy.deepcopy(DEFAULTS), [*messages, f"the link has more than {MAX_FIELDS} settings; all were ignored"]
    raw: dict[str, str] = {}
    for key, value in pairs:
        if key not in DEFAULTS:
            messages.append(f"unknown setting '{_show(key)}' in the link; ignored")
            continue
        if key in raw:
            messages.append(f"{key} is given more than once; using the last ({_show(value)})")
        raw[key] = value
    state: dict = {}
    # DEFAULTS' order puts rule before cut, which is checked against it
    for key, default in DEFAULTS.items():
        state[key] = _decode_value(key, raw[key], state, known, messages) if key in raw else copy.copy(default)
    if "cut" not in raw and "rule" in raw:
        # the default cut-off (90) only suits the percentile and value rules
        lo, hi = CUT_RANGES[state["rule"]]
        if not lo <= state["cut"] <= hi:
            state["cut"] = CUT_DEFAULTS[state["rule"]]
            messages.append(f"no cut for the {state['rule']} rule; using {_fmt_num(state['cut'])}")
    return state, messages

"""Fuzzing what users and links control: gene lists, uploaded files, URL state, manifests and
the dashboard's answer path. Nothing may crash, and every rejection must say why.

The examples are derandomized, so CI runs the same ones every time. For a deeper local search
with fresh examples: ``SIGATLAS_FUZZ_SCALE=20 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import base64
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from urllib.parse import parse_qsl, urlencode

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compute.errors import ManifestError, QueryError
from compute.genes import STATUSES
from compute.manifest import (
    AttributionSpec,
    EmbeddingSpec,
    IngestSpec,
    Manifest,
    ModelSpec,
    load_manifest,
)
from compute.query import HIT_RANGES, parse_gene_list, resolve_genes
from dashboard.state import (
    CHOICES,
    DEFAULTS,
    INT_RANGES,
    LEGACY_KEYS,
    LIST_KEYS,
    MAX_FIELDS,
    MAX_GENES_TEXT,
    NULL_RANGE,
    decode_state,
    encode_state,
    normalise_genes,
)
from dashboard.upload import MAX_BYTES, GeneFileError, decode_upload, parse_gene_file
from dashboard.views.filters import disease_group_choices, filter_choices

_SCALE = int(os.environ.get("SIGATLAS_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples * _SCALE,
        deadline=None,
        derandomize=_SCALE == 1,
        database=None if _SCALE == 1 else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- building blocks --------------------------------------------------------------------------
# text a UTF-8 page or file can hold (lone surrogates cannot be encoded; they get their own test)
_CHARS = st.characters(blacklist_categories=("Cs",))
_TEXT = st.text(_CHARS, max_size=30)
# numbers as people and programs write them, and the texts that only look like numbers
_NUMBER_TEXT = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(repr),  # "nan", "inf", "1e+300", "-0.0", "5e-324"
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "0", "-0",
                     ".5", "5.", "+2", "2e", "1e5", "1_000", "0x10", "١٢", "٣.5", "1,5", "", " "]),
)
# real symbols, ones the symbol table renames or finds ambiguous, Ensembl ids, and near-misses
_GENE_POOL = ["CD14", "LYZ", "VCAN", "S100A8", "S100A9", "FCN1", "MS4A1", "GAPDH", "HLA-DRA", "MT-CO1",
              "RIPOR2", "FAM65B", "C6orf32", "FCGR3A", "FCGR3B", "CD16", "PD-L1", "CD274", "NDUFA2",
              "ENSG00000170458", "ENSG00000170458.14", "AC243772.2", "RP11-196G18.3", "X1", "NOPE"]
_LONG = st.builds(lambda c, n: c * n, st.sampled_from(["A", "é", "#", "1", "CD14,", "\x00", "|", " "]), st.integers(300, 5000))
_SEPARATORS = st.sampled_from([" ", ",", ";", "|", "\t", "\n", "\r\n", "\r", ", ", "  ", "\u00a0", "\u2028",
                               "\x0b", "\x0c", "\x1c", "\x85", "\u3000", ""])


def _gene_tokens(pool: list[str]) -> st.SearchStrategy[str]:
    named = st.sampled_from(pool)
    return st.one_of(
        named,
        named.map(str.lower),
        st.from_regex(r"[A-Za-z][A-Za-z0-9.\-]{0,10}", fullmatch=True),
        st.text(_CHARS, min_size=1, max_size=12),
        named.map(lambda g: f"'{g}'"),
        named.map(lambda g: f'"{g}"'),
    )


def gene_texts(pool: list[str] = _GENE_POOL) -> st.SearchStrategy[str]:
    """Pasted gene lists: genes, weights in every spelling, stray numbers, quotes, comments,
    any separators, very long tokens, and plain random text."""
    gene = _gene_tokens(pool)
    weighted = st.builds(lambda g, sep, w: f"{g}{sep}{w}", gene, st.sampled_from([":", "=", " ", "\t", ": ", "\n"]), _NUMBER_TEXT)
    piece = st.one_of(gene, weighted, _NUMBER_TEXT, _LONG,
                      st.sampled_from(["#", "# a comment", "'", '"', "''", "#CD14", "GENE#2", "::", "=", ":1"]))
    joined = st.lists(st.tuples(piece, _SEPARATORS), max_size=15).map(lambda ps: "".join(p + s for p, s in ps))
    return st.one_of(joined, st.text(_CHARS, max_size=60))


_OPENING = "([{<\"'\u201c\u2018\u00ab"
_CLOSING = ")]}>\"'\u201d\u2019\u00bb.,:;!?*\u2020\u2021\u00a7\u00b6"


def _tokens_as_read(text: str) -> list[str]:
    """The tokens the documented format holds: '#' starts a comment, then any run of
    whitespace, ',', ';' or '|' separates; brackets, quotes and punctuation around a token are
    not part of it, and a token of nothing else is none."""
    lines = " ".join(ln.split("#", 1)[0] for ln in text.splitlines())
    cleaned = (t.lstrip(_OPENING).rstrip(_CLOSING) for t in re.split(r"[\s,;|]+", lines))
    return [t for t in cleaned if any(c.isalnum() for c in t)]


def _same_number(text: str, weight: float) -> bool:
    try:
        return float(text) == weight
    except ValueError:
        return False


def _consumed(entry: tuple[str, float | None], tokens: list[str], j: int) -> int:
    """How many tokens from ``tokens[j]`` spell ``entry`` ("G", "G:w", "G=w" or "G w"); 0: none."""
    gene, weight = entry
    tok = tokens[j]
    pair = re.fullmatch(r"(\S+) \((\S+)\)", gene)
    if pair:  # "GENE (OTHER)": the two tokens, or "GENE(OTHER)" in one
        a, b = pair.groups()
        step = 1 if tok == f"{a}({b}" else 2 if tok == a and tokens[j + 1:j + 2] == [b] else 0
        if weight is None or not step:
            return step
        return step + 1 if j + step < len(tokens) and _same_number(tokens[j + step], weight) else 0
    if weight is None:
        return int(tok == gene)
    if any(tok.startswith(gene + sep) and _same_number(tok[len(gene) + 1:], weight) for sep in ":="):
        return 1
    return 2 if tok == gene and j + 1 < len(tokens) and _same_number(tokens[j + 1], weight) else 0


def _assert_every_token_read(text: str, parsed: list[tuple[str, float | None]]) -> None:
    """Walk the tokens of ``text`` alongside ``parsed``: each entry spells the next one or two
    tokens, and the walk ends exactly at the last token, so no token was dropped or invented."""
    tokens = _tokens_as_read(text)
    j = 0
    for entry in parsed:
        assert j < len(tokens), f"{entry} does not come from the text"
        step = _consumed(entry, tokens, j)
        assert step, f"{entry} does not spell token {tokens[j]!r}"
        j += step
    assert j == len(tokens), f"tokens dropped silently: {tokens[j:]}"


USED = STATUSES[:5]  # the statuses that put a token's gene into the score


def _assert_resolution_explains(res, items, order) -> None:
    """One decision per token, in order; rejections carry a reason; weights are finite."""
    assert res.requested == tuple(g for g, _ in items)
    assert tuple(d.token for d in res.decisions) == res.requested
    genes = set(order)
    used = []
    for d, (_, w) in zip(res.decisions, items, strict=True):
        assert d.status in STATUSES
        if d.status in USED:
            assert d.gene in genes and d.weight == (1.0 if w is None else w)
            used.append(d)
        else:
            assert d.note, f"{d.token!r} was rejected ({d.status}) without a reason"
            assert d.weight is None
    assert tuple(d.gene for d in used) == res.matched
    assert tuple(d.weight for d in used) == res.weights
    assert all(math.isfinite(w) for w in res.weights)


# -- gene lists -------------------------------------------------------------------------------
@fuzz(400)
@given(gene_texts())
def test_gene_list_reads_every_token(text):
    parsed = parse_gene_list(text)
    for gene, weight in parsed:
        assert gene and not re.search(r"[,;|#]", gene)
        assert " " not in gene or re.fullmatch(r"\S+ \(\S+\)", gene), gene
        assert weight is None or math.isfinite(weight)
    _assert_every_token_read(text, parsed)
    # the one-line form a link keeps reads back the same, and is already one line
    one_line = normalise_genes(text)
    assert parse_gene_list(one_line) == parsed
    assert normalise_genes(one_line) == one_line and len(one_line.splitlines()) <= 1


_ORDERS = st.lists(st.sampled_from(_GENE_POOL + ["cd14", "Lyz"]), unique=True, max_size=12)


@fuzz(150)
@given(gene_texts(), _ORDERS)
def test_resolution_gives_every_token_one_decision(text, order):
    items = parse_gene_list(text)
    _assert_resolution_explains(resolve_genes(items, order), items, order)


_NOT_FINITE = st.sampled_from(["inf", "-inf", "nan", "NaN", "Infinity", "1e999", "-1e400"])


@fuzz(60)
@given(st.sampled_from(_GENE_POOL), st.sampled_from([":", "="]), _NOT_FINITE, st.integers(-5, 5))
def test_unusable_weights_and_stray_numbers_are_named(gene, sep, bad, stray):
    res = resolve_genes(parse_gene_list(f"{gene}{sep}{bad} CD14 {bad} LYZ 2 {stray}"), ["CD14", "LYZ"])
    by_token = {d.token: d for d in res.decisions}
    assert len(res.decisions) == 5
    assert by_token[f"{gene}{sep}{bad}"].status == "not_gene" and f"weight '{bad}'" in by_token[f"{gene}{sep}{bad}"].note
    if bad[-1].isdigit():  # "CD14 1e999": not CD14's weight; a word like "inf" may be a gene name (an alias of CBLIF)
        assert by_token[bad].status == "not_gene" and "finite" in by_token[bad].note
    assert by_token["CD14"].weight == 1.0 and by_token["LYZ"].weight == 2.0
    assert by_token[str(stray)].status == "not_gene" and "a number, not a gene" in by_token[str(stray)].note


@fuzz(40)
@given(st.data())
def test_atlas_resolves_and_scores_pasted_text(tiny_atlas, data):
    genes = list(tiny_atlas.genes)
    text = data.draw(gene_texts(genes[:50] + _GENE_POOL))
    items = parse_gene_list(text)
    _assert_resolution_explains(tiny_atlas.resolve(items), items, genes)
    if not items:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SignatureWarning naming missing genes is expected
        try:
            scores = tiny_atlas.score(items)
        except QueryError as exc:
            assert str(exc)
            return
    assert scores.shape == (tiny_atlas.n_cells,)


# -- uploads ----------------------------------------------------------------------------------
_B64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())


@fuzz(200)
@given(st.one_of(
    st.none(),
    st.text(max_size=50),
    st.builds(lambda kind, data: f"data:{kind};base64,{data}", st.sampled_from(["text/csv", "", "x;y"]),
              st.one_of(_B64, _TEXT, _B64.map(lambda s: s[:-1]), _B64.map(lambda s: s + "é"))),
    st.lists(st.text(max_size=5), max_size=2),  # a multi-file upload sends a list
))
def test_damaged_uploads_are_rejected_with_a_reason(contents):
    try:
        raw = decode_upload(contents, "sig.csv")
    except GeneFileError as exc:
        assert str(exc).startswith("sig.csv: ") and "damaged" in str(exc)
        with pytest.raises(GeneFileError, match="^the upload arrived damaged"):
            decode_upload(contents)  # the same without a file name
        return
    assert isinstance(raw, bytes)


@fuzz(100)
@given(st.binary(max_size=300), st.sampled_from(["text/csv", "application/octet-stream", ""]))
def test_intact_uploads_decode_to_their_bytes(raw, kind):
    assert decode_upload(f"data:{kind};base64,{base64.b64encode(raw).decode()}") == raw


_EXTENSIONS = [".gmt", ".GMT", ".csv", ".tsv", ".txt", "", ".xlsx", ".csv.gz"]
_FILENAMES = st.builds(lambda stem, ext: stem + ext, st.one_of(st.just("genes"), st.text(_CHARS, min_size=1, max_size=12)),
                       st.sampled_from(_EXTENSIONS))


def _assert_sets(sets) -> None:
    assert isinstance(sets, dict) and sets
    for name, text in sets.items():
        assert isinstance(name, str) and name
        assert parse_gene_list(text), f"set {name!r} gives the gene box no gene: {text!r}"


def _assert_names_file(exc: GeneFileError, filename: str, raw: bytes) -> None:
    msg = str(exc)
    assert msg.startswith(filename), msg
    line = re.match(re.escape(filename) + r", line (\d+):", msg)
    if line:
        text = raw.decode("utf-8-sig")
        assert 1 <= int(line.group(1)) <= max(len(text.splitlines()), text.count("\n") + text.count("\r")) + 1


def _parse_file(filename: str, raw: bytes):
    try:
        sets = parse_gene_file(filename, raw)
    except GeneFileError as exc:
        _assert_names_file(exc, filename, raw)
        return None
    _assert_sets(sets)
    return sets


_TABLE_CHARS = st.sampled_from(list("ABCD019,\t ;:#-.\"'\r\n") + ["nan", "inf", "1e999", "\ufeff", "é", "\x00", "\xa0"])


@fuzz(300)
@given(_FILENAMES, st.one_of(
    st.binary(max_size=400),
    st.text(_CHARS, max_size=200).map(str.encode),
    st.lists(_TABLE_CHARS, max_size=120).map(lambda cs: "".join(cs).encode()),
    st.builds(lambda c, n: c * n, st.sampled_from([b"A", b"A,", b'"', b"\t"]), st.integers(131_000, 140_000)),
))
def test_any_file_gives_gene_sets_or_says_why(filename, raw):
    _parse_file(filename, raw)


_SYMBOL = st.from_regex(r"[A-Z][A-Z0-9]{0,6}(-[A-Z0-9]{1,3})?", fullmatch=True)
# a set name or description: any text on one line without tabs
_ONE_LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=15)
_SET_NAME = _ONE_LINE.map(str.strip).filter(lambda s: s and not s.startswith("#"))
_WEIGHT_TEXT = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers(-1000, 1000).map(str),
                         st.floats(-100, 100).map(lambda w: f"{w:.3f}"))


def _file_text(lines: list[str], extras: dict) -> bytes:
    """``lines`` with comments and blank lines between them, CRLF or LF, and maybe a BOM."""
    out = []
    for i, line in enumerate(lines):
        if i in extras["comments"]:
            out.append("# " + extras["comment"])
        if i in extras["blanks"]:
            out.append("")
        out.append(line)
    text = extras["newline"].join(out) + (extras["newline"] if extras["trailing"] else "")
    return (("\ufeff" if extras["bom"] else "") + text).encode()


_EXTRAS = st.fixed_dictionaries({
    "comments": st.sets(st.integers(1, 6), max_size=2),
    "comment": _ONE_LINE,
    "blanks": st.sets(st.integers(1, 6), max_size=2),
    "newline": st.sampled_from(["\n", "\r\n"]),
    "trailing": st.booleans(),
    "bom": st.booleans(),
})


@fuzz(150)
@given(st.lists(st.tuples(st.one_of(_SET_NAME, st.sampled_from(["A", "A (line 3)"])), _ONE_LINE,
                          st.lists(_SYMBOL, min_size=1, max_size=6)), min_size=1, max_size=5),
       st.booleans(), _EXTRAS)
def test_valid_gmt_round_trips(sets, trailing_tab, extras):
    lines = [f"{name}\t{desc}\t" + "\t".join(genes) + ("\t" if trailing_tab else "") for name, desc, genes in sets]
    out = parse_gene_file("sets.gmt", _file_text(lines, extras))
    # every line is a set, a repeated name included (renamed after its line)
    assert list(out.values()) == ["\n".join(genes) for _, _, genes in sets]
    names = [name for name, _, _ in sets]
    assert all(key == name or key.startswith(f"{name} (line ") for key, name in zip(out, names, strict=True))
    if len(set(names)) == len(names):
        assert list(out) == names


@fuzz(150)
@given(st.lists(st.tuples(_SYMBOL, st.one_of(st.none(), _WEIGHT_TEXT)), min_size=1, max_size=8),
       st.sampled_from([",", "\t", " "]), st.sampled_from([".csv", ".tsv", ".txt"]), st.booleans(), _EXTRAS)
def test_valid_tables_round_trip(rows, delimiter, ext, header, extras):
    lines = [f"gene{delimiter}weight"] if header else []
    lines += [gene if w is None else f"{gene}{delimiter}{w}" for gene, w in rows]
    sets = parse_gene_file("my.sig" + ext, _file_text(lines, extras))
    assert list(sets) == ["my.sig"]
    assert parse_gene_list(sets["my.sig"]) == [(gene, None if w is None else float(w)) for gene, w in rows]


@fuzz(100)
@given(st.lists(st.tuples(_SET_NAME, st.lists(_SYMBOL, min_size=1, max_size=3)), min_size=1, max_size=4, unique_by=lambda s: s[0]),
       st.integers(0, 4), st.sampled_from(["", "name only", "name\tdescription"]))
def test_gmt_line_without_genes_is_named(sets, at, broken):
    lines = [f"{name}\tdesc\t" + "\t".join(genes) for name, genes in sets]
    at = min(at, len(lines))
    lines.insert(at, broken.replace("name", "X"))
    raw = "\n".join(lines).encode()
    if broken == "":  # a blank line is allowed
        assert len(parse_gene_file("s.gmt", raw)) == len(sets)
        return
    # the valid sets are kept, the bad line named (issue 36, item 10)
    kept = parse_gene_file("s.gmt", raw)
    assert len(kept) == len(sets) and len(kept.skipped) == 1
    assert kept.skipped[0].startswith(f"s.gmt, line {at + 1}: a GMT line needs")
    with pytest.raises(GeneFileError, match=r"^s\.gmt, line 1: a GMT line needs"):
        parse_gene_file("s.gmt", broken.replace("name", "X").encode())


@fuzz(100)
@given(st.lists(st.tuples(_SYMBOL, _WEIGHT_TEXT), min_size=1, max_size=5), st.integers(1, 5),
       st.sampled_from(["high", "n/a", "nan", "inf", "-inf", "1e999", "x1", "1.2.3"]), st.sampled_from([",", "\t"]))
def test_non_numeric_weight_is_named_with_its_line(rows, at, bad, delimiter):
    lines = [f"{g}{delimiter}{w}" for g, w in rows]
    at = min(at, len(lines))  # after the first row, which could be a header
    lines.insert(at, f"BADW{delimiter}{bad}")
    with pytest.raises(GeneFileError, match=rf"^w\.csv, line {at + 1}: the weight '{re.escape(bad)}' of BADW is not"):
        parse_gene_file("w.csv", "\n".join(lines).encode())


@fuzz(50)
@given(st.binary(min_size=1, max_size=40), st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80"]))
def test_non_utf8_file_is_named(prefix, bad):
    with pytest.raises(GeneFileError, match=r"^up\.csv: not UTF-8 text"):
        parse_gene_file("up.csv", prefix.decode("utf-8", "ignore").encode() + bad)


@fuzz(5)
@given(st.integers(1, 10_000), st.sampled_from(["big.gmt", "big.csv"]))
def test_oversize_file_is_named(extra, filename):
    raw = b"CD14\n" * ((MAX_BYTES + extra) // 5 + 1)
    with pytest.raises(GeneFileError, match=rf"^{re.escape(filename)}: .* larger than the 5 MB accepted"):
        parse_gene_file(filename, raw)


# -- URL state --------------------------------------------------------------------------------
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,40}")
# the settings, the older names links still use for some, and anything else
_STATE_KEYS = st.one_of(st.sampled_from([*DEFAULTS, *LEGACY_KEYS]), st.text(_CHARS, max_size=10))
_STATE_VALUES = st.one_of(
    st.sampled_from(sorted({v for c in CHOICES.values() for v in c})),
    _NUMBER_TEXT,
    _TEXT,
    st.lists(st.text(_CHARS, max_size=8), max_size=4).map("|".join),
    gene_texts(),
    st.builds(lambda c, n: c * n, st.sampled_from(["A", "A,", "|", "%", "9"]), st.integers(1000, 120_000)),
    st.sampled_from(["", "%", "%zz", "%ff", "%ED%A0%80", "%00", "%C3", "+", "&", "=", "%26", "%3D", "ms1%0A", "ms1\n",
                     "diseases\n", "%20value", "1e5", "10%0A"]),
    # names an atlas's vocabulary reads in another form (a term id, a study's label) or not at all
    st.lists(st.sampled_from(["CL:0000576", "monocyte", "Monocyte", "healthy", "normal", "sepsis", "CD14+ Monocyte"]),
             max_size=4).map("|".join),
)
_PAIRS = st.lists(st.tuples(_STATE_KEYS, _STATE_VALUES), max_size=12)
_QUERIES = st.builds(
    lambda q, mark: mark + q,
    st.one_of(
        _PAIRS.map(urlencode),
        _PAIRS.map(lambda ps: "&".join(f"{k}={v}" for k, v in ps)),  # not encoded at all
        st.text(_CHARS, max_size=80),
        st.text(st.sampled_from("%&=?+|;#0123456789abcdefABCDEF xé"), max_size=80),
        st.integers(MAX_FIELDS - 2, MAX_FIELDS + 2).map(lambda n: "&".join(["cutoff=5"] * n)),
    ),
    st.sampled_from(["?", ""]),
)
# as dashboard.views.filters.FilterChoices: each accepted value -> the form the control shows
_TERMS = {"CL:0000576": "monocyte", "monocyte": "monocyte", "CD14+ Monocyte": "CD14+ Monocyte", "classical monocyte": "classical monocyte"}
_KNOWN = st.one_of(st.none(), st.fixed_dictionaries({
    "cell_types": st.one_of(st.lists(st.text(_CHARS, min_size=1, max_size=6), max_size=3), st.just(_TERMS)),
    "diseases": st.one_of(st.just(["sepsis", "healthy"]), st.just({"healthy": "normal", "normal": "normal", "sepsis": "sepsis"})),
    "disease_groups": st.just({"MONDO:0005550": "infectious disease", "infectious disease": "infectious disease"}),
    "preset": st.just(["ms1"]),
    "tab": st.just(["diseases", "studies", "genes"]),
}))


def _assert_valid_state(state: dict, known) -> None:
    assert list(state) == list(DEFAULTS)
    for key, choices in CHOICES.items():
        assert state[key] in choices
    lo, hi = HIT_RANGES[state["rule"]]
    assert isinstance(state["cutoff"], float) and math.isfinite(state["cutoff"]) and (lo is None or lo <= state["cutoff"] <= hi)
    for key, (lo, hi) in INT_RANGES.items():
        assert type(state[key]) is int and lo <= state[key] <= hi
    assert type(state["null_draws"]) is int and (state["null_draws"] == 0 or NULL_RANGE[0] <= state["null_draws"] <= NULL_RANGE[1])
    genes = state["genes"]
    assert isinstance(genes, str) and len(genes) <= MAX_GENES_TEXT and len(genes.splitlines()) <= 1 and "#" not in genes
    for key in LIST_KEYS:
        values = state[key]
        assert isinstance(values, list) and len(set(values)) == len(values)
        assert all(isinstance(v, str) and v and "|" not in v for v in values)
        if known and key in known:
            assert set(values) <= set(known[key])
            if isinstance(known[key], Mapping):  # shown in the canonical form, which maps to itself
                assert all(known[key][v] == v for v in values)
    for key in ("preset", "tab"):
        assert state[key] == DEFAULTS[key] or _IDENTIFIER.fullmatch(state[key])
        if known and state[key] != DEFAULTS[key]:
            assert state[key] in known[key]


def _taken_as_written(key: str, raw: str, value, known=None) -> bool:
    """Whether ``value`` is what the link's text ``raw`` for ``key`` says, read plainly (values
    a mapping in ``known`` names in another form read in that form)."""
    if key == "genes":
        return value == normalise_genes(raw)
    if key in LIST_KEYS:
        items = list(dict.fromkeys(v for v in raw.split("|") if v))
        names = (known or {}).get(key)
        if isinstance(names, Mapping):
            items = list(dict.fromkeys(names.get(v, v) for v in items))
        return value == items
    if isinstance(DEFAULTS[key], int | float):
        return _same_number(raw, value)
    if key in ("preset", "tab") and raw == "":
        return value == DEFAULTS[key]  # an empty name is no name: the default, as when missing
    return value == raw


@fuzz(400)
@given(_QUERIES, _KNOWN)
def test_any_link_decodes_to_a_valid_state_with_reasons(search, known):
    state, notes = decode_state(search, known)
    _assert_valid_state(state, known)
    assert all(isinstance(n, str) and n for n in notes)
    try:
        pairs = parse_qsl(search.lstrip("?"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        assert state == DEFAULTS and len(notes) == 1 and str(MAX_FIELDS) in notes[0]
        return
    # an older name reads as the setting it names: the last of either counts
    canonical = [(LEGACY_KEYS.get(k, k), k, v) for k, v in pairs]
    given_ = {key: (name, raw) for key, name, raw in canonical}
    for key, (name, raw) in given_.items():
        if key not in DEFAULTS:
            assert any(f"'{key[:37]}" in n for n in notes), f"unknown setting {key!r} ignored without a note"
        elif not _taken_as_written(key, raw, state[key], known):
            assert any(name in n for n in notes), f"{name}={raw!r} became {state[key]!r} without a note"
    if "rule" in given_ and "cutoff" not in given_ and state["cutoff"] != DEFAULTS["cutoff"]:
        assert any("cutoff" in n for n in notes)
    keys = [key for key, _, _ in canonical]
    for key, name, _ in canonical:
        if key in DEFAULTS and keys.count(key) > 1 and name == given_[key][0]:
            assert any(f"{name} is given more than once" in n for n in notes)
    # the link written for the decoded state is canonical: it reads back exactly, with no notes
    link = encode_state(state)
    assert decode_state(link, known) == (state, [])
    assert encode_state(decode_state(link, known)[0]) == link


# any str a client can send in JSON, lone surrogates included
_WITH_SURROGATES = st.lists(st.one_of(_CHARS, st.characters(categories=["Cs"])), max_size=10).map("".join)


@fuzz(100)
@given(st.one_of(
    _WITH_SURROGATES,
    st.builds(lambda key, value: f"?{key}={value}", st.sampled_from(list(DEFAULTS)), _WITH_SURROGATES),
))
def test_links_with_lone_surrogates(search):
    state, notes = decode_state(search)
    _assert_valid_state(state, None)
    if re.search("[\ud800-\udfff]", search):
        assert any("surrogates" in n for n in notes)
    link = encode_state(state)
    assert decode_state(link) == (state, [])


# -- manifests --------------------------------------------------------------------------------
@cache
def _valid_manifest() -> dict:
    from compute.demo import SimulationConfig, demo_manifest_text

    return yaml.safe_load(demo_manifest_text(SimulationConfig(n_studies=3), data_dir="data/sim"))


def _paths(node, prefix=()):
    """Every (path to a value) in a YAML document, parents first."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


_YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), st.floats(), _TEXT,
    st.sampled_from(["", "train", "pretrained", "h5ad", "scanpy-pbmc68k", "ig", "human", "..", "/", "a\x00b", "x\n", "-1"]),
)
_YAML_VALUES = st.recursive(
    _YAML_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(_TEXT, st.integers(), st.booleans(), st.none()), inner, max_size=3)),
    max_leaves=8,
)
_MANIFEST_KEYS = ["version", "atlas", "seed", "model", "ingest", "attribution", "embedding", "studies"]


def _load(path, text: bytes):
    """load_manifest of ``text``: a Manifest, or None after checking the ManifestError names the file."""
    path.write_bytes(text)
    try:
        return load_manifest(path)
    except ManifestError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return exc


def _assert_sound(m: Manifest) -> None:
    """What the build relies on in an accepted manifest."""
    floats = [m.model.input_dropout, m.model.dropout, m.model.learning_rate, m.model.triplet_weight, m.model.margin,
              m.embedding.min_dist]
    assert all(isinstance(v, float) and math.isfinite(v) for v in floats)
    ints = [m.seed, m.model.latent_dim, m.model.epochs, m.model.batch_size, *m.model.hidden_sizes, m.ingest.min_genes,
            m.ingest.min_counts, m.ingest.min_gene_overlap, m.attribution.n_steps, m.attribution.batch_size,
            m.embedding.n_neighbors]
    assert all(type(v) is int and v >= 0 for v in ints)
    ids = [s.id for s in m.studies]
    assert ids and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", i) for i in ids)
    assert m.atlas.out.is_absolute() and all(s.source.path is None or s.source.path.is_absolute() for s in m.studies)
    assert len(m.fingerprint()) == 64


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-manifest") / "data_manifest.yaml"


def test_the_unmutated_manifest_loads(manifest_path):
    _assert_sound(_load(manifest_path, yaml.safe_dump(_valid_manifest()).encode()))


# values of the wrong type or out of range, and the ones a path or a number cannot hold
_HOSTILE = st.sampled_from([None, True, False, 0, -1, 2**70, -(2**70), 0.5, math.nan, math.inf, -math.inf, "", "1",
                            "a\x00b", "x\n", "ig-captum", "pretrained", [], [0], {}, {"column": 1}])
# the keys each mapping of a manifest allows, by the name of the key that holds it
_ALLOWED = {
    None: _MANIFEST_KEYS,
    "atlas": ["name", "out"],
    "model": [f.name for f in fields(ModelSpec)],
    "ingest": [f.name for f in fields(IngestSpec)],
    "attribution": [f.name for f in fields(AttributionSpec)],
    "embedding": [f.name for f in fields(EmbeddingSpec)],
    "studies": ["id", "title", "source", "organism", "tissue", "disease", "columns", "simulated"],
    "source": ["kind", "path"],
    "columns": ["cell_type", "sample", "donor", "cell_type_map", "disease_map", "tissue_map"],
    # a label map's keys are the study's labels: any text
    "cell_type_map": ["CD14+ Monocyte", "CD34+", "a label of no term", ""],
    "tissue": ["column"],
    "disease": ["column"],
}


@fuzz(250)
@given(st.data())
def test_mutated_manifest_is_loaded_or_the_key_is_named(manifest_path, data):
    """Drop a key, replace a value, add an unknown key or set an allowed one, anywhere in a
    valid manifest: it loads, or the error names the file and the key (or the study)."""
    doc = yaml.safe_load(yaml.safe_dump(_valid_manifest()))  # a fresh copy
    path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
    node = _get(doc, path)
    actions = ["drop", "replace"] if path else []
    actions += ["add", "set"] if isinstance(node, dict) else []
    action = data.draw(st.sampled_from(actions), label="action")
    named = [str(p) for p in path if isinstance(p, str)]
    study = None  # inside a study, naming the study and any key of it is enough
    if path[:1] == ("studies",):
        study = ((f"study '{doc['studies'][path[1]]['id']}'", f"study '#{path[1] + 1}'", f"entry {path[1] + 1} ")
                 if len(path) > 1 else ("study '",))
    value = data.draw(st.one_of(_HOSTILE, _YAML_VALUES), label="value")
    if action == "drop":
        del _get(doc, path[:-1])[path[-1]]
    elif action == "replace":
        _get(doc, path[:-1])[path[-1]] = value
    elif action == "set":
        holder = next((p for p in reversed(path) if isinstance(p, str)), None)
        key = data.draw(st.sampled_from(_ALLOWED[holder]), label="key")
        node[key] = value
        named.append(key)
    else:
        # a key YAML reads back as written (it folds some line breaks into spaces)
        key = data.draw(st.one_of(_TEXT, st.integers()).filter(
            lambda k: k not in node and yaml.safe_load(yaml.safe_dump({k: 0}, allow_unicode=True)) == {k: 0}), label="key")
        node[key] = value
        named = [str(key)]
    out = _load(manifest_path, yaml.safe_dump(doc, allow_unicode=True).encode())
    if isinstance(out, ManifestError):
        key = re.search(r"key '(.*)': ", str(out))
        assert key, f"{str(out)!r} names no key"
        variants = {v for n in named for v in (n, n.encode("unicode_escape").decode("ascii"))}
        assert any(v in key.group(1) for v in variants) or (study and any(w in str(out) for w in study)), (
            f"{str(out)!r} names none of {named} ({study})")
    else:
        _assert_sound(out)


_MAPPING_PATHS = [p for p in _paths(_valid_manifest()) if p and isinstance(_get(_valid_manifest(), p), dict)
                  and not isinstance(p[-1], int)]


@fuzz(100)
@given(st.sampled_from(_MAPPING_PATHS), st.one_of(_HOSTILE, _YAML_VALUES).filter(lambda v: v is not None and not isinstance(v, dict)))
def test_a_mapping_of_the_wrong_type_is_named(manifest_path, path, value):
    doc = yaml.safe_load(yaml.safe_dump(_valid_manifest()))
    _get(doc, path[:-1])[path[-1]] = value
    if path[-1] in ("tissue", "disease") and isinstance(value, str):
        return  # a constant is the other allowed form
    out = _load(manifest_path, yaml.safe_dump(doc, allow_unicode=True).encode())
    assert isinstance(out, ManifestError), f"{path} = {value!r} was accepted"
    assert f"key '{path[-1]}'" in str(out) or f".{path[-1]}'" in str(out) or f"key '{path[-1]}." in str(out), str(out)


_YAML_TEXT = st.sampled_from(list("[]{}:-,&*!|>'\"#\n ?%@`") + ["version", "atlas", "studies", "abc", "1", "\t", "é", "\x00"])


@fuzz(200)
@given(st.one_of(
    st.text(_CHARS, max_size=100).map(str.encode),
    st.lists(_YAML_TEXT, max_size=60).map(lambda cs: "".join(cs).encode()),
    st.binary(max_size=100),
    _YAML_VALUES.map(lambda v: yaml.safe_dump(v).encode()),
    st.dictionaries(st.sampled_from(_MANIFEST_KEYS), _YAML_VALUES, max_size=8).map(lambda d: yaml.safe_dump(d).encode()),
    st.builds(lambda c, n: c * n, st.sampled_from([b"[", b"{a: ", b"- ", b"&a [*a, "]), st.integers(100, 3000)),
))
def test_any_yaml_gives_a_manifest_or_names_the_file(manifest_path, text):
    out = _load(manifest_path, text)
    if isinstance(out, Manifest):
        _assert_sound(out)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        load_manifest(tmp_path / "absent.yaml")


# -- the dashboard's answer path --------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard_data(tiny_build):
    from dashboard.data import DashboardData

    return DashboardData(tiny_build[1])


def _signatures(genes: list[str]) -> st.SearchStrategy[str]:
    """A few genes of the atlas, some weighted, joined by any separators."""
    entry = st.builds(lambda g, w: g if w is None else f"{g}:{w}", st.sampled_from(genes),
                      st.one_of(st.none(), _NUMBER_TEXT))
    return st.lists(st.tuples(entry, _SEPARATORS.filter(bool)), min_size=1, max_size=8).map(
        lambda es: "".join(e + s for e, s in es))


@pytest.mark.slow
@fuzz(15)
@given(st.data())
def test_answer_query_shows_errors_never_raises(dashboard_data, data):
    from dashboard.app import answer_query

    vocab = {"cell_types": filter_choices(dashboard_data, "cell_types").option_values, "diseases": dashboard_data.diseases,
             "tissues": dashboard_data.tissues, "studies": [s.id for s in dashboard_data.atlas.studies],
             "disease_groups": disease_group_choices(dashboard_data).option_values}
    genes = list(dashboard_data.atlas.genes)
    pairs = [("genes", data.draw(st.one_of(gene_texts(genes[:60]), _signatures(genes)), label="genes"))]
    for key, names in vocab.items():
        # mostly no filter or one that exists: four random filters rarely leave any cell
        none, one = st.just([]), st.lists(st.sampled_from(names), max_size=1)
        any_ = st.lists(st.one_of(st.sampled_from(names), _TEXT), max_size=3)
        pairs.append((key, "|".join(data.draw(st.one_of(none, none, none, one, any_), label=key))))
    pairs += data.draw(st.lists(st.tuples(st.sampled_from(["rule", "cutoff", "cut", "cell_min", "samp_min", "data_kind", "data", "top_n",
                                                          "group_by", "heat", "order", "color"]), _STATE_VALUES),
                                max_size=6), label="settings")
    pairs.append(("null_draws", data.draw(st.sampled_from(["0", "100"]), label="null")))  # more draws: too slow here
    state, _ = decode_state(urlencode(pairs))
    out = answer_query(dashboard_data, state)
    assert isinstance(out, dict) and {"status", "resolution", "disease_fig"} <= set(out)
    if parse_gene_list(state["genes"]) and "result" not in out:
        status = getattr(out["status"], "children", out["status"])
        assert isinstance(status, str) and status.strip(), "a query without a result must say why"
    event("answered" if "result" in out else "no genes" if not parse_gene_list(state["genes"]) else "error shown")

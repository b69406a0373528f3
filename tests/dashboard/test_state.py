"""The dashboard state as a URL: round trips, and bad links fall back to defaults with messages."""

from __future__ import annotations

import copy
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compute.query import parse_gene_list
from dashboard.state import (
    CHOICES,
    DEFAULTS,
    LEGACY_KEYS,
    MAX_FIELDS,
    MAX_GENES_TEXT,
    TABS,
    StateError,
    decode_state,
    encode_state,
    normalise_genes,
    read_state,
)

# any character a browser can put in a URL (no lone surrogates: they are not encodable)
_CHARS = st.characters(blacklist_categories=("Cs",))
_NAME = st.text(_CHARS, min_size=1, max_size=12).filter(lambda s: "|" not in s)
_IDENT = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)


@st.composite
def valid_states(draw):
    rule = draw(st.sampled_from(CHOICES["rule"]))
    cut = {
        "percentile": st.floats(0, 100),
        "quantile": st.floats(0, 1),
        "value": st.floats(allow_nan=False, allow_infinity=False),
    }[rule]
    # settings this generator does not draw (those of other tabs) keep their defaults
    return copy.deepcopy(DEFAULTS) | {
        # whatever was pasted (newlines, comments, any text), in the one-line form the link keeps
        "genes": draw(st.text(_CHARS, max_size=60).map(normalise_genes)),
        "preset": draw(st.one_of(st.just(""), _IDENT)),
        **{k: draw(st.lists(_NAME, max_size=4, unique=True)) for k in ("cell_types", "diseases", "tissues", "studies", "disease_groups")},
        # the "Genes in a cell type" tab's population and gene
        **{k: draw(st.lists(_NAME, max_size=4, unique=True)) for k in ("rank_cell_types", "rank_diseases", "rank_studies", "rank_versus")},
        "rank_gene": draw(st.one_of(st.just(""), _IDENT)),
        **{k: draw(st.sampled_from(v)) for k, v in CHOICES.items() if k != "rule"},
        "rule": rule,
        "cutoff": draw(cut),
        "cell_min": draw(st.integers(1, 1_000_000)),
        "samp_min": draw(st.integers(1, 100_000)),
        "min_coverage": draw(st.floats(0, 1)),
        "top_n": draw(st.integers(0, 100_000)),
        "null_draws": draw(st.one_of(st.just(0), st.integers(100, 10_000))),
        "tab": draw(_IDENT),
    }


@settings(max_examples=300, deadline=None)
@given(valid_states())
def test_round_trip(state):
    search = encode_state(state)
    assert decode_state(search) == (state, [])
    assert encode_state(decode_state(search)[0]) == search  # the link is canonical


def test_defaults_encode_to_nothing_and_decode_from_nothing():
    assert encode_state(DEFAULTS) == "" and encode_state({}) == ""
    for search in ("", "?", None):
        assert decode_state(search) == (DEFAULTS, [])
    state, _ = decode_state("")
    state["cell_types"].append("x")  # the defaults are copied, never shared
    assert DEFAULTS["cell_types"] == []


def test_only_changed_keys_in_a_fixed_order_lists_joined_by_bar():
    state = copy.deepcopy(DEFAULTS) | {"null_draws": 200, "cell_types": ["CD14+ Monocyte", "B cell, naive"], "cutoff": 95.0}
    search = encode_state(state)
    assert search.startswith("?")
    assert [k for k, _ in parse_qsl(search[1:])] == ["cell_types", "cutoff", "null_draws"]
    assert dict(parse_qsl(search[1:]))["cell_types"] == "CD14+ Monocyte|B cell, naive"
    assert "cutoff=95&" in search  # no trailing ".0"
    assert encode_state({"null_draws": 200, "tab": "studies"}) == encode_state(copy.deepcopy(DEFAULTS) | {"tab": "studies", "null_draws": 200})


def test_gene_text_on_one_line_keeps_the_genes_and_weights():
    text = "CD14 2.0\n# monocyte markers\nLYZ:3  # strongest\n\ns100a8, VCAN\r\n"
    state, msgs = decode_state(encode_state({"genes": text}))
    assert "\n" not in state["genes"] and msgs == []
    assert parse_gene_list(state["genes"]) == parse_gene_list(text)


def test_bad_values_fall_back_with_a_message_each():
    state, msgs = decode_state("?cutoff=abc&cell_min=0&samp_min=x&top_n=2.5&null_draws=50&rule=median&group_by=tissue&data_kind=none")
    assert state == DEFAULTS
    # one note per bad value, in the order of the settings, each naming the value and the default used
    assert msgs == [
        "data_kind=none must be one of all, real, simulated; using all",
        "rule=median must be one of percentile, quantile, value; using percentile",
        "cutoff=abc must be a number; using 90",
        "cell_min=0 must be within 1-1,000,000; using 25",
        "samp_min=x must be a number; using 3",
        "top_n=2.5 must be a whole number; using 0",
        "group_by=tissue must be one of disease, cell_type, study; using disease",
        f"null_draws=50 must be 0 (no p-values) or 100-10,000 draws; using {DEFAULTS['null_draws']}",
    ]


def test_cut_is_checked_against_its_rule():
    state, msgs = decode_state("?rule=quantile&cutoff=90")
    assert state["rule"] == "quantile" and state["cutoff"] == 0.9
    assert msgs == ["cutoff=90 must be within 0-1 for the quantile rule; using 0.9"]
    state, msgs = decode_state("?cutoff=101")
    assert state["cutoff"] == 90.0 and msgs == ["cutoff=101 must be within 0-100 for the percentile rule; using 90"]
    for bad in ("nan", "inf", "-inf"):
        assert decode_state(f"?rule=value&cutoff={bad}") == (DEFAULTS | {"rule": "value"}, [f"cutoff={bad} must be a finite number; using 90"])
    assert decode_state("?rule=value&cutoff=-3.5") == (DEFAULTS | {"rule": "value", "cutoff": -3.5}, [])
    state, msgs = decode_state("?rule=quantile")  # the default cut-off does not fit the quantile rule
    assert state["cutoff"] == 0.9 and msgs == ["no cutoff for the quantile rule; using 0.9"]


def test_unknown_and_repeated_keys_and_known_names():
    state, msgs = decode_state("?foo=1&cell_min=30&cell_min=40&tab=studies")
    assert state == DEFAULTS | {"cell_min": 40, "tab": "studies"}
    assert any("foo" in m and "ignored" in m for m in msgs) and any("more than once" in m for m in msgs)
    known = {"cell_types": ["CD14+ Monocyte"], "preset": ["ms1"], "tab": ["diseases", "studies"]}
    state, msgs = decode_state("?cell_types=CD14%2B+Monocyte|Martian&preset=nope&tab=plots", known=known)
    assert state["cell_types"] == ["CD14+ Monocyte"] and state["preset"] == "" and state["tab"] == "diseases"
    assert len(msgs) == 3 and any("Martian" in m for m in msgs)
    assert decode_state("?preset=ms1", known=known) == (DEFAULTS | {"preset": "ms1"}, [])


def test_every_tab_opens_from_a_link_and_old_links_stay_valid():
    assert TABS[:4] == ("diseases", "studies", "cells", "genes") and TABS[-1] == "modules"
    for tab in TABS:  # the four older tabs keep their names: links shared before the Modules tab still open
        assert decode_state(encode_state({"tab": tab}), {"tab": TABS}) == (DEFAULTS | {"tab": tab}, [])
    assert encode_state({"tab": "modules", "genes": "CD14"}) == "?genes=CD14&tab=modules"
    state, msgs = decode_state("?tab=module", {"tab": TABS})
    assert state["tab"] == "diseases" and msgs == ["tab=module is not available; using diseases"]


def test_hostile_links_never_raise():
    """Each hostile link reads as the defaults (what it could not spoil), each problem said."""
    cases = {
        "?genes=" + "A," * 60_000: (DEFAULTS, [f"genes=A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A... must be at most {MAX_GENES_TEXT:,} "
                                               "characters long; using none"]),
        "?" + "&".join(f"k{i}=1" for i in range(500)): (DEFAULTS, [f"the link has more than {MAX_FIELDS} settings; all were ignored"]),
        "?%zz=%ff&cutoff=%00": (DEFAULTS, ["unknown setting '%zz' in the link; ignored", "cutoff=\x00 must be a number; using 90"]),
        "?tab=<script>&preset=a%20b": (DEFAULTS, ["preset=a b is not a valid name; using none",
                                                   "tab=<script> is not a valid name; using diseases"]),
        "?cell_types=||": (DEFAULTS, []),  # no name between the separators: no filter
    }
    for search, (state, msgs) in cases.items():
        assert decode_state(search) == (state, msgs), search[:40]


def test_min_coverage_is_a_share_checked_against_0_to_1():
    assert encode_state({"min_coverage": 0.8}) == "?min_coverage=0.8" and encode_state({"min_coverage": 0.5}) == ""
    assert decode_state("?min_coverage=0") == (DEFAULTS | {"min_coverage": 0.0}, [])
    assert decode_state("?min_coverage=1")[0]["min_coverage"] == 1.0
    for bad, why in (("1.5", "must be within 0-1"), ("-0.1", "must be within 0-1"), ("abc", "must be a number"),
                     ("nan", "must be a finite number"), ("50%", "must be a number")):
        state, msgs = decode_state(f"?min_coverage={bad}")
        assert state["min_coverage"] == 0.5 and msgs == [f"min_coverage={bad} {why}; using 0.5"]


def test_disease_groups_keep_their_order_in_the_link():
    state = DEFAULTS | {"disease_groups": ["infectious disease", "autoimmune disease"]}
    search = encode_state(state)
    assert search == "?disease_groups=infectious+disease|autoimmune+disease"
    assert decode_state(search) == (state, [])
    assert decode_state("?disease_groups=b|a|b")[0]["disease_groups"] == ["b", "a"]  # unique, in link order


def test_known_values_as_a_mapping_are_shown_in_their_canonical_form():
    """An ontology term id or a study's label that names one term alone reads as the term's label
    (the filter shows it; it selects the same cells); the link written back is canonical."""
    known = {"cell_types": {"CL:0000576": "monocyte", "monocyte": "monocyte", "classical monocyte": "classical monocyte",
                            "CD14+ Monocyte": "CD14+ Monocyte"},
             "diseases": {"healthy": "normal", "normal": "normal"}}
    state, msgs = decode_state("?cell_types=CL:0000576|monocyte|CD14%2B+Monocyte|Martian&diseases=healthy", known)
    assert state["cell_types"] == ["monocyte", "CD14+ Monocyte"] and state["diseases"] == ["normal"]
    assert msgs == ["cell_types: 'Martian' is not in this atlas; dropped"]
    assert decode_state(encode_state(state), known) == (state, [])
    assert encode_state(state) == "?cell_types=monocyte|CD14%2B+Monocyte&diseases=normal"


def test_old_links_name_settings_as_they_used_to():
    """data, cut and null were renamed data_kind, cutoff and null_draws: links written before read
    the same, and a link written now uses the new names."""
    assert LEGACY_KEYS == {"data": "data_kind", "cut": "cutoff", "null": "null_draws"}
    old = decode_state("?data=simulated&rule=quantile&cut=0.95&null=200")
    new = decode_state("?data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=200")
    assert old == new == (DEFAULTS | {"data_kind": "simulated", "rule": "quantile", "cutoff": 0.95, "null_draws": 200}, [])
    assert encode_state(old[0]) == "?data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=200"
    # a bad old value is named as the link wrote it; both names given: the last one counts
    assert decode_state("?null=50")[1] == ["null=50 must be 0 (no p-values) or 100-10,000 draws; using 1000"]
    state, msgs = decode_state("?cut=80&cutoff=70")
    assert state["cutoff"] == 70.0 and msgs == ["cutoff is given more than once; using the last (70)"]


def test_strict_reading_names_the_first_bad_setting():
    """The controls and the API read a state strictly: the first bad setting raises, by name."""
    with pytest.raises(StateError, match=r"^cell_min must be a whole number, got 2\.5$") as exc:
        read_state([("genes", "CD14"), ("cell_min", 2.5), ("null_draws", 1)], strict=True)
    assert (exc.value.key, exc.value.reason, exc.value.given) == ("cell_min", "must be a whole number", 2.5)
    with pytest.raises(StateError, match="^null must be 0 \\(no p-values\\) or 100-1,000 draws, got 5,000$"):
        read_state([("null", 5000)], strict=True, null_max=1000)
    with pytest.raises(StateError, match="^cutoff is given twice \\(also as cut\\)"):
        read_state([("cut", 80), ("cutoff", 70)], strict=True)
    with pytest.raises(StateError, match="^zzz is not a setting"):
        read_state([("zzz", 1)], strict=True)
    state, notes = read_state([("genes", "CD14\nLYZ # markers"), ("cell_types", ["a", "b", "a"]), ("min_coverage", "0.25")], strict=True)
    assert (state["genes"], state["cell_types"], state["min_coverage"], notes) == ("CD14,LYZ", ["a", "b"], 0.25, [])

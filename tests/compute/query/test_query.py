"""Query statistics against hand computations; gene-list parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.errors import QueryError
from compute.genes import MIN_RECOGNISED
from compute.query import HitRule, parse_gene_list, rank_groups, resolve_genes, sample_hit_table


def test_parse_any_separators_case_and_weights():
    text = "CD14, s100a8;LYZ\tVCAN|FCN1\n# a comment line\nIL1B:2 TNF=0.5\nCXCL8 3.0"
    assert parse_gene_list(text) == [("CD14", None), ("s100a8", None), ("LYZ", None), ("VCAN", None), ("FCN1", None),
                                     ("IL1B", 2.0), ("TNF", 0.5), ("CXCL8", 3.0)]
    assert parse_gene_list("") == [] and parse_gene_list(" ,; \n") == []


def test_resolve_reports_every_decision():
    res = resolve_genes([("cd14", None), ("CD14", 3.0), ("LYZ", 2.0), ("NOPE", None)], ["CD14", "LYZ", "VCAN"])
    assert res.matched == ("CD14", "LYZ") and res.weights == (1.0, 2.0)
    assert res.renamed == (("cd14", "CD14"),) and res.missing == ("NOPE",) and res.duplicates == ("CD14",)
    assert res.coverage == pytest.approx(2 / 3) and res.weighted


def _cells():
    # study A: samples a1 (4 cells), a2 (2 cells); study B: b1 (4 cells); diseases X (A) and Y (B)
    return pd.DataFrame({
        "study": ["A"] * 6 + ["B"] * 4,
        "sample": ["a1"] * 4 + ["a2"] * 2 + ["b1"] * 4,
        "disease": ["X"] * 6 + ["Y"] * 4,
        "tissue": "blood",
        "simulated": [True] * 6 + [False] * 4,
    })


def test_hits_per_sample_and_ranking_by_hand():
    scores = np.array([0, 5, 6, 7, 1, 9, 0, 0, 8, 0], dtype=float)
    rule = HitRule("value", 4.5)
    table = sample_hit_table(_cells(), scores, np.ones(10, bool), rule.threshold(scores))
    got = table.set_index("sample")
    assert got.loc["a1", "n_hits"] == 3 and got.loc["a1", "hit_pct"] == 75.0
    assert got.loc["a2", "hit_pct"] == 50.0 and got.loc["b1", "hit_pct"] == 25.0
    r = rank_groups(table, "disease", cell_min=1, samp_min=1)
    assert list(r["group"]) == ["X", "Y"]
    assert r.iloc[0]["mean_hit_pct"] == 62.5 and r.iloc[0]["n_samples"] == 2 and r.iloc[0]["n_studies"] == 1
    # cell_min drops a2 (2 cells); samp_min 2 then drops both diseases
    r2 = rank_groups(table, "disease", cell_min=3, samp_min=1)
    assert r2.set_index("group").loc["X", "mean_hit_pct"] == 75.0
    assert rank_groups(table, "disease", cell_min=3, samp_min=2).empty


def test_percentile_hits_are_strictly_above():
    scores = np.arange(10, dtype=float)
    assert HitRule("percentile", 90).threshold(scores) == pytest.approx(8.1)
    assert HitRule("quantile", 0.5).threshold(scores) == pytest.approx(4.5)
    sel = np.zeros(10, bool)
    sel[:4] = True  # the cut-off is taken over the selection only
    assert HitRule("percentile", 50).threshold(scores[sel]) == pytest.approx(1.5)
    with pytest.raises(QueryError, match="percentile must be within 0-100"):
        HitRule("percentile", 120)
    with pytest.raises(QueryError, match="no cells in the selection"):
        HitRule().threshold(np.array([]))


# -- a gene list pasted from a paper (issue 36, item 1) ---------------------------------------
_PAPER_ORDER = ["IFI27", "RSAD2", "SIGLEC1", "ADGRE3", "CD44", "WAS", "CD14", "IFI44L", "LYZ"]


def test_parse_strips_brackets_and_punctuation_and_keeps_gene_with_alias():
    text = 'upregulated (IFI27, RSAD2 and SIGLEC1). ADGRE3 (EMR3), IFI44L(IFI44) "CD14"; LYZ* – &'
    genes = [g for g, _ in parse_gene_list(text)]
    assert genes == ["upregulated", "IFI27", "RSAD2", "and", "SIGLEC1", "ADGRE3 (EMR3)", "IFI44L (IFI44)", "CD14", "LYZ"]
    # weights still follow their gene, also after a bracketed name
    assert parse_gene_list("ADGRE3 (EMR3) 2.5, CD14:2") == [("ADGRE3 (EMR3)", 2.5), ("CD14", 2.0)]


def test_paper_sentence_reads_only_its_genes():
    text = "Monocytes of these patients expressed IFI27 (ISG12), RSAD2 and SIGLEC1, and the level was high in (IFI44L."
    res = resolve_genes(parse_gene_list(text), _PAPER_ORDER)
    assert res.matched == ("IFI27", "RSAD2", "SIGLEC1", "IFI44L")
    # "in" (an alias of CD44) and "was" (the symbol WAS) are words here, not genes
    assert "CD44" not in res.matched and "WAS" not in res.matched
    assert res.missing == () and res.ambiguous == ()
    assert {"and", "was", "in", "the", "Monocytes", "expressed"} <= set(res.not_genes)
    assert all(d.note for d in res.decisions if d.status == "not_gene")
    by_token = {d.token: d for d in res.decisions}
    assert by_token["IFI27 (ISG12)"].gene == "IFI27"
    # few of the entries are genes: below the share at which the page asks before running
    assert res.recognised < MIN_RECOGNISED and res.few_genes


def test_gene_with_alias_falls_back_to_the_name_in_brackets():
    res = resolve_genes(parse_gene_list("EMR3 (ADGRE3)"), ["ADGRE3"])
    (d,) = res.decisions
    assert (d.token, d.status, d.gene) == ("EMR3 (ADGRE3)", "matched", "ADGRE3") or (d.status, d.gene) == ("previous", "ADGRE3")
    res = resolve_genes(parse_gene_list("NOTAGENE9 (ADGRE3)"), ["ADGRE3"])
    assert res.matched == ("ADGRE3",) and res.decisions[0].note.startswith("read as ADGRE3")


def test_words_are_not_genes_but_capitals_and_lowercase_lists_are():
    # a lower-case gene list (no prose) still matches by case; capitals mean the gene
    assert resolve_genes(parse_gene_list("cd14, lyz, ifi27"), _PAPER_ORDER).matched == ("CD14", "LYZ", "IFI27")
    assert resolve_genes(parse_gene_list("WAS CD14"), _PAPER_ORDER).matched == ("WAS", "CD14")
    res = resolve_genes(parse_gene_list("was, and, in, The"), _PAPER_ORDER)
    assert res.matched == () and res.not_genes == ("was", "and", "in", "The") and res.recognised == 0.0
    # a lower-case word is never read through an alias, even outside prose ("in" would be CD44)
    res = resolve_genes(parse_gene_list("CD14 in"), _PAPER_ORDER)
    assert res.matched == ("CD14",) and res.not_genes == ("in",)


def test_a_gene_this_atlas_lacks_is_told_apart_from_not_a_gene():
    res = resolve_genes(parse_gene_list("42, CD14, GAPDH, FAM65B, NOTAGENE1, and"), ["CD14"])
    assert res.missing == ("GAPDH", "FAM65B")
    assert res.not_genes == ("42", "NOTAGENE1", "and")
    assert res.coverage == 1 / 3 and res.recognised == 1 / 6


def test_random_english_words_match_no_gene():
    words = ("the results of this study were consistent with a role for interferon in severe disease and we found that "
             "cells from patients was also in line with our model set impact rest map can spring star tank cat").split()
    res = resolve_genes(parse_gene_list(" ".join(words)), _PAPER_ORDER + ["SET", "REST", "CAT", "STAR", "TANK", "IMPACT"])
    assert res.matched == () and res.recognised == 0.0

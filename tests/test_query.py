"""Query statistics against hand computations; gene-list parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.errors import QueryError
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

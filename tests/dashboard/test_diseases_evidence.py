"""The within-study evidence as the dashboard shows it (issue 32): the forest plot on its data, the
ranking table and the reading sentence with a disease of each evidence level, the disease order,
the state's reference and order, the API's fields and the exports. The atlas-free tests build
their disease table with compute's own meta-analysis on a donor table made to hold each level."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from compute.query import HitRule, donor_table, meta_analyse
from dashboard import figures as F
from dashboard.figures.diseases import disease_ranking_figure

NO_REF_WORDS = "no within-study reference: seen only in studies without reference donors, so this disease cannot be told apart from its study's batch"


def _samples() -> pd.DataFrame:
    """Per-sample hits of four studies: lupus in S1 and S2 with healthy donors (pooled), asthma in
    S3 with healthy donors (one study), gout only in S4, which has no healthy donors."""
    rng = np.random.default_rng(3)
    rows = []

    def add(study, disease, n, level):
        for i in range(n):
            rows.append({"study": study, "sample": f"{study}-{disease}-{i}", "donor": f"{study}-{disease}-{i}", "disease": disease,
                         "hit_pct": level + rng.normal(0, 5), "mean_score": level / 100 + rng.normal(0, 0.05),
                         "n_cells": 100, "n_hits": int(level), "simulated": False})

    for study, shift in (("S1", 0.0), ("S2", 4.0)):
        add(study, "lupus", 4, 30 + shift)
        add(study, "normal", 3, 10 + shift)
    add("S3", "asthma", 3, 18)
    add("S3", "normal", 2, 12)
    add("S4", "gout", 4, 40)
    return pd.DataFrame(rows)


def _result(expression: bool = False, reference: str = "normal"):
    samples = _samples()
    diseases = (samples.groupby("disease", sort=False).agg(mean_hit_pct=("hit_pct", "mean"), median_hit_pct=("hit_pct", "median"),
                                                            n_samples=("hit_pct", "size"), n_studies=("study", "nunique"),
                                                            n_cells=("n_cells", "sum"))
                .reset_index(names="group"))
    diseases = diseases[diseases["group"] != "normal"].sort_values("mean_hit_pct", ascending=False).reset_index(drop=True)
    diseases.insert(1, "rank", range(1, len(diseases) + 1))
    meta = meta_analyse(donor_table(samples, 25), diseases["group"].tolist(), ["normal"], seed=0)
    table = diseases.join(meta.diseases, on="group")
    params = SimpleNamespace(rule=HitRule("percentile", 90), cell_types=("monocyte",), diseases=(), tissues=(), studies=(), data="all",
                             reference=reference, disease_groups=(), min_coverage=0.5)
    out = SimpleNamespace(params=params, diseases=table, samples=samples, n_selected=1800, study_effects=meta.studies,
                          chance_pct=10.0, threshold=0.5,
                          reference_labels=("normal",), resolution=SimpleNamespace(matched=["G"] * 20), null={},
                          expression_diseases=None, expression_study_effects=None)
    if expression:
        # the expression score: lupus reversed in both studies (a disagreement the table must name)
        flipped = samples.assign(hit_pct=np.where(samples["disease"] == "lupus", 5.0 + np.arange(len(samples)) % 3, samples["hit_pct"]))
        meta_e = meta_analyse(donor_table(flipped, 25), diseases["group"].tolist(), ["normal"], seed=0)
        out.expression_diseases = diseases.join(meta_e.diseases, on="group")
        out.expression_study_effects = meta_e.studies
    return out


def test_the_fixture_holds_each_evidence_level():
    levels = _result().diseases.set_index("group")["evidence"].to_dict()
    assert levels == {"gout": "no_within_study_reference", "lupus": "pooled", "asthma": "one_study"}


# -- the forest plot ----------------------------------------------------------------------------
def _forest(result, disease: str):
    from dashboard.views.diseases import forest_view

    return forest_view(result, disease)


def test_forest_plot_has_a_row_per_study_its_ci_the_weights_and_the_pooled_diamond():
    result = _result()
    fig, note = _forest(result, "lupus")
    d = fig.to_dict()
    row = result.diseases.set_index("group").loc["lupus"]
    effects = result.study_effects[(result.study_effects["disease"] == "lupus") & (result.study_effects["measure"] == "hit_pct")]
    studies, diamond = d["data"][0], d["data"][1]
    # one marker per study with its g and its 95% CI as error bars
    assert sorted(d["layout"]["meta"]["studies"]) == ["S1", "S2"] and len(studies["x"]) == 2
    for i, (s, x, y, plus, minus) in enumerate(zip(d["layout"]["meta"]["studies"], studies["x"], studies["y"], studies["error_x"]["array"],
                                                   studies["error_x"]["arrayminus"], strict=True)):
        assert y == 2 - i  # a row per study, top to bottom, the pooled diamond under them at 0
        e = effects.set_index("study").loc[s]
        assert x == pytest.approx(e["g"]) and x + plus == pytest.approx(e["g_hi"]) and x - minus == pytest.approx(e["g_lo"])
    # marker size grows with the random-effects weight
    w = effects.set_index("study").loc[d["layout"]["meta"]["studies"], "weight"].to_numpy()
    assert np.argsort(studies["marker"]["size"]).tolist() == np.argsort(w).tolist()
    assert d["layout"]["meta"]["weights"] == pytest.approx(w.tolist())
    # the pooled diamond spans the CI at y = 0 and peaks at the pooled g
    assert diamond["fill"] == "toself" and min(diamond["x"]) == pytest.approx(row["effect_lo"])
    assert max(diamond["x"]) == pytest.approx(row["effect_hi"]) and diamond["x"][1] == pytest.approx(row["effect"])
    title = d["layout"]["title"]["text"]
    assert "lupus: 2 studies with their own reference donors" in title
    assert f"pooled g = {row['effect']:.2f} [{row['effect_lo']:.2f}, {row['effect_hi']:.2f}]" in title
    assert f"I² = {100 * row['i2']:.0f}%" in title and f"τ² = {row['tau2']:.2f}" in title
    assert f"leave one study out: {row['loo_lo']:.2f} to {row['loo_hi']:.2f}" in title
    assert note is None  # both studies gave an effect


def test_forest_plot_of_one_study_shows_no_heterogeneity_and_lists_studies_without_reference():
    fig, _ = _forest(_result(), "asthma")
    title = fig.to_dict()["layout"]["title"]["text"]
    assert "asthma: 1 study with its own reference donors" in title and "I²" not in title and "leave one study out" not in title
    fig, note = _forest(_result(), "gout")
    d = fig.to_dict()
    assert not d["data"] and "no within-study reference" in d["layout"]["meta"]["empty"]
    from tests.dashboard.helpers import text_of

    assert "S4: no reference donors in this study" in text_of(note)


def test_forest_plot_puts_the_expression_score_beside_the_attribution():
    fig, _ = _forest(_result(expression=True), "lupus")
    names = [t["name"] for t in fig.to_dict()["data"]]
    assert names == ["attribution hit %: a study's g (95% CI; size: weight)", "attribution hit %: pooled g (95% CI)",
                     "expression score hit %: a study's g (95% CI; size: weight)", "expression score hit %: pooled g (95% CI)"]


def test_forest_plot_labels_are_text_not_markup():
    result = _result()
    result.diseases["group"] = result.diseases["group"].replace({"lupus": "<b>lupus</b>"})
    result.study_effects["disease"] = result.study_effects["disease"].replace({"lupus": "<b>lupus</b>"})
    title = _forest(result, "<b>lupus</b>")[0].to_dict()["layout"]["title"]["text"]
    assert "&lt;b&gt;lupus&lt;/b&gt;" in title and "<b>lupus</b>" not in title


# -- the ranking table and the sentence ---------------------------------------------------------
def test_ranking_table_names_the_evidence_and_gives_no_p_without_a_within_study_reference():
    from dashboard.views.results import SPECIFICITY_P, ranking_table_rows

    result = _result()
    head, rows = ranking_table_rows(result.diseases, None, {})
    names = [h for h, _ in head]
    assert names[2:6] == ["evidence", "g vs reference [95% CI]", "p (vs reference)", "q (vs reference)"]
    assert SPECIFICITY_P in names and "p (null)" not in names
    by = {r[1]: dict(zip(names, r, strict=True)) for r in rows}
    assert by["lupus"]["evidence"] == "2 studies with their own reference donors"
    assert by["asthma"]["evidence"] == "1 study with its own reference donors" and by["asthma"]["I² · τ²"] == "–"
    assert by["gout"]["evidence"] == "⚠ " + NO_REF_WORDS
    assert by["gout"]["p (vs reference)"] == "none: no within-study reference" and by["gout"]["g vs reference [95% CI]"] == "–"
    assert by["gout"]["mean hit %"] != "–"  # its hit % stays, descriptively
    lupus = result.diseases.set_index("group").loc["lupus"]
    assert by["lupus"]["p (vs reference)"] == F.format_value(lupus["effect_p"], "p")
    assert by["lupus"]["I² · τ²"] == f"{100 * lupus['i2']:.0f}% · {lupus['tau2']:.2f}"
    assert by["lupus"]["donors (disease / reference)"] == "8 / 6"


def test_the_drawn_table_marks_a_disease_without_a_within_study_reference():
    from dashboard.views.results import _ranking_table

    html = _ranking_table(_result().diseases, None, {}).children
    gout = html.split("<tr")[[i for i, part in enumerate(html.split("<tr")) if ">gout<" in part][0]]
    assert gout.startswith(' class="no-ref">')
    assert html.count('class="no-ref"') == 1


def test_ranking_table_says_where_attribution_and_expression_disagree():
    from dashboard.views.results import ranking_table_rows

    result = _result(expression=True)
    head, rows = ranking_table_rows(result.diseases, None, {}, expression=result.expression_diseases)
    names = [h for h, _ in head]
    by = {r[1]: dict(zip(names, r, strict=True)) for r in rows}
    assert by["lupus"]["attribution vs expression"].startswith("disagree: attribution g +")
    assert by["asthma"]["attribution vs expression"] == "agree"
    assert by["gout"]["attribution vs expression"] == "–"


def test_reading_sentence_leads_with_the_evidence_level():
    from dashboard.views.results import reading_sentence

    result = _result()
    by_hit = reading_sentence(result)  # gout has the highest hit %: it leads, and says it has no reference
    assert by_hit.startswith("Reading: gout, the top disease, has no within-study reference: it is seen only in studies without "
                             "normal donors, so it cannot be told apart from its study's batch")
    assert "no disease-vs-reference p-value" in by_hit and "p =" not in by_hit.split(". In ")[0]
    from dashboard.views.diseases import ordered_ranking

    by_effect = reading_sentence(result, ranking=ordered_ranking(result.diseases, "effect"))
    lupus = result.diseases.set_index("group").loc["lupus"]
    assert by_effect.startswith("Reading: lupus, the top disease, is seen in 2 studies with their own reference donors: its donors' "
                                f"hit % lies above the normal donors' of the same studies by g = {lupus['effect']:.2f}")
    assert f"I² = {100 * lupus['i2']:.0f}%" in by_effect and "2 of 2 studies above 0" in by_effect
    one = reading_sentence(result, ranking=result.diseases[result.diseases["group"] == "asthma"])
    assert "asthma, the top disease, is seen in 1 study with its own reference donors" in one and "one study" in one


def test_ordering_by_effect_puts_diseases_without_one_last():
    from dashboard.views.diseases import ordered_ranking

    result = _result()
    assert result.diseases["group"].tolist()[0] == "gout"  # by hit %
    table = result.diseases.set_index("group")
    assert table.loc["lupus", "effect"] > table.loc["asthma", "effect"]
    assert ordered_ranking(result.diseases, "effect")["group"].tolist() == ["lupus", "asthma", "gout"]
    assert ordered_ranking(result.diseases, "hit")["group"].tolist() == result.diseases["group"].tolist()


def test_study_effect_rows_say_the_evidence_and_why_a_study_gave_none():
    from dashboard.views.diseases import study_effect_rows

    rows = study_effect_rows(_result())
    json.dumps(rows, allow_nan=False)  # no NaN reaches the grid
    gout = [r for r in rows if r["disease"] == "gout"]
    assert gout == [{"disease": "gout", "evidence": "⚠ " + NO_REF_WORDS, "study": "S4", "g": None, "g_lo": None, "g_hi": None,
                     "weight": None, "n_donors": 4, "n_reference_donors": 0, "mean_hit_pct": gout[0]["mean_hit_pct"],
                     "reference_hit_pct": None, "included": False, "reason": "no reference donors in this study"}]
    assert {r["study"] for r in rows if r["disease"] == "lupus"} == {"S1", "S2"}


def test_api_fields_of_each_evidence_level_are_valid_json():
    from dashboard.api import _effect_fields, _study_effects

    result = _result()
    rows = {r["group"]: _effect_fields(r) for r in result.diseases.to_dict("records")}
    text = json.dumps({"diseases": rows, "study_effects": _study_effects(result.study_effects)}, allow_nan=False)
    back = _strict_json(text)["diseases"]
    assert back["gout"]["evidence"] == "no_within_study_reference" and back["gout"]["effect"] is None and back["gout"]["effect_p"] is None
    assert back["gout"]["evidence_words"] == NO_REF_WORDS
    lupus = result.diseases.set_index("group").loc["lupus"]
    assert back["lupus"]["effect"] == pytest.approx(lupus["effect"]) and back["lupus"]["n_studies_with_reference"] == 2
    assert back["asthma"]["tau2"] is None and back["asthma"]["evidence_words"] == "1 study with its own reference donors"


def test_the_ranking_figure_marks_a_disease_without_a_within_study_reference():
    result = _result()
    ticks = dict(zip(result.diseases["group"], disease_ranking_figure(result.samples, result.diseases, base_rate=10, title="t")
                     .to_dict()["layout"]["xaxis"]["ticktext"], strict=True))
    assert "⚠ no within-study reference" in ticks["gout"].replace("</span><br><span style='color:#D55E00'>", " ")
    assert "⚠" not in ticks["lupus"] and "⚠" not in ticks["asthma"]


def test_agreement_words():
    from dashboard.views.diseases import agreement

    assert agreement({"effect": 1.0, "effect_lo": 0.2, "effect_hi": 1.8}, {"effect": 0.8, "effect_lo": 0.1, "effect_hi": 1.5}) == "agree"
    assert agreement({"effect": 1.0, "effect_lo": 0.2, "effect_hi": 1.8},
                     {"effect": 0.5, "effect_lo": -0.3, "effect_hi": 1.3}) == "disagree: only the attribution score's 95% CI excludes 0"
    assert agreement({"effect": 1.0, "effect_lo": 0.2, "effect_hi": 1.8}, {"effect": math.nan}) == "–"


# -- the state: the reference and the disease order ---------------------------------------------
def test_state_round_trip_of_the_reference_and_the_disease_order():
    from dashboard.state import (
        DEFAULTS,
        StateError,
        decode_state,
        encode_state,
        query_params,
        read_state,
    )

    state = dict(DEFAULTS) | {"genes": "CD14", "reference": "asthma", "disease_order": "effect"}
    link = encode_state(state)
    assert "reference=asthma" in link and "disease_order=effect" in link
    back, notes = decode_state(link)
    assert notes == [] and back == state
    assert query_params(back).reference == "asthma"
    assert encode_state(dict(DEFAULTS)) == "" and query_params(dict(DEFAULTS) | {"genes": "CD14"}).reference == "normal"
    # a link with a bad value falls back to the default with a note; the controls and the API are told which
    bad, notes = decode_state("?genes=CD14&disease_order=size&reference=")
    assert bad["disease_order"] == "hit" and bad["reference"] == "normal" and len(notes) == 1 and "disease_order" in notes[0]
    known = {"reference": {"normal": "normal", "MONDO:0007915": "systemic lupus erythematosus",
                           "systemic lupus erythematosus": "systemic lupus erythematosus"}}
    state, _ = read_state([("genes", "CD14"), ("reference", "MONDO:0007915")], known, strict=True)
    assert state["reference"] == "systemic lupus erythematosus"  # an id reads as the term's label
    with pytest.raises(StateError, match="reference .*not a disease of this atlas"):
        read_state([("genes", "CD14"), ("reference", "no such disease")], known, strict=True)
    with pytest.raises(StateError, match="disease_order must be one of hit, effect"):
        read_state([("disease_order", "size")], strict=True)


# -- through the app, on the tiny atlas ---------------------------------------------------------
def _strict_json(text: str):
    """``text`` parsed as JSON that a strict parser accepts (no NaN or Infinity)."""
    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON: not valid JSON")

    return json.loads(text, parse_constant=refuse)


def test_api_rows_carry_the_within_study_evidence_as_valid_json(tiny_build):
    from urllib.parse import urlencode

    from compute.reference import ms1_signature
    from dashboard.app import create_app

    client = create_app(tiny_build[1]).server.test_client()
    args = {"genes": ",".join(ms1_signature()), "cell_types": "monocyte", "min_coverage": 0}
    reply = client.get("/api/v1/query?" + urlencode(args))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    answer = _strict_json(reply.get_data(as_text=True))
    assert answer["reference"] == "normal" and answer["reference_labels"] == ["normal"]
    fields = {"effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "tau2", "i2", "n_studies_with_reference", "n_donors",
              "n_reference_donors", "evidence", "evidence_words", "effect_score", "heterogeneity_p", "loo_lo", "loo_hi"}
    # the tiny atlas has one healthy donor per study: whether such a study gives an effect is
    # compute's rule; either way a disease has an effect with its CI and p, or neither (null)
    for row in answer["diseases"]:
        assert fields <= set(row), fields - set(row)
        if row["evidence"] in ("pooled", "one_study"):
            assert row["effect_lo"] <= row["effect"] <= row["effect_hi"] and 0 < row["effect_p"] <= 1
        else:
            assert row["effect"] is None and row["effect_p"] is None and row["effect_q"] is None
    effects = answer["study_effects"]
    assert all((e["g"] is not None and not e["reason"]) if e["included"] else (e["g"] is None and e["reason"]) for e in effects)
    assert effects and {"disease", "study", "measure", "g", "g_lo", "g_hi", "weight", "n_donors", "n_reference_donors", "included",
                        "reason"} <= set(effects[0])
    ranked = {row["group"] for row in answer["diseases"]}
    assert {e["disease"] for e in effects} <= ranked and {e["measure"] for e in effects} == {"hit_pct", "mean_score"}
    # another reference, and one the atlas does not have (named in the error)
    other = client.get("/api/v1/query?" + urlencode(args | {"reference": "infectious disease"}))
    assert other.status_code == 200 and _strict_json(other.get_data(as_text=True))["reference"] == "infectious disease"
    bad = client.get("/api/v1/query?" + urlencode(args | {"reference": "no such disease"}))
    assert bad.status_code == 400 and "reference" in _strict_json(bad.get_data(as_text=True))["error"]


def test_the_page_shows_the_evidence_and_the_forest_plot_of_a_picked_disease(tiny_build):
    from compute.reference import ms1_signature
    from dashboard.app import answer_query
    from dashboard.callbacks import diseases
    from dashboard.data import DashboardData
    from dashboard.state import DEFAULTS

    data = DashboardData(tiny_build[1])
    state = dict(DEFAULTS) | {"genes": "\n".join(ms1_signature()), "cell_types": ["monocyte"], "min_coverage": 0.0, "null_draws": 0,
                              "disease_order": "effect"}
    out = answer_query(data, state)
    result = out["result"]
    shown = [str(g) for g in result.diseases.sort_values("effect", ascending=False, na_position="last")["group"]]
    assert out["forest_groups"] == shown  # the picker lists the diseases in the order shown
    # the forest plot of the first disease shown, or, when no study gave it an effect, a message
    # naming it and, under the plot, each study's reason
    from tests.dashboard.helpers import text_of

    first = out["forest_fig"].to_dict()["layout"]["meta"]
    effects = result.study_effects[(result.study_effects["disease"] == shown[0]) & (result.study_effects["measure"] == "hit_pct")]
    if effects["included"].any():
        assert first["disease"] == shown[0] and sorted(first["studies"]) == sorted(effects.loc[effects["included"], "study"])
    else:
        assert first["empty"].startswith(f"{shown[0]}: ") and "No study gave a within-study effect" in first["empty"]
    for r in effects[~effects["included"]].itertuples():
        assert f"{r.study}: {r.reason}" in text_of(out["forest_note"])
    assert out["reading"].startswith(f"Reading: {shown[0]}, the top disease, ")
    assert out["study_effect_rows"] and {r["disease"] for r in out["study_effect_rows"]} <= set(shown)
    assert {"evidence", "evidence_words", "effect", "effect_lo", "effect_hi", "effect_p", "effect_q", "tau2", "i2"} <= set(
        out["tables"]["diseases"].columns)
    assert {"score", "disease", "evidence", "study", "g", "g_lo", "g_hi", "weight", "reason"} <= set(out["tables"]["study_effects"].columns)
    assert out["tables"]["diseases"]["reference"].eq("normal").all()
    from dashboard.export import methods_paragraph

    methods = methods_paragraph(data.atlas, result)
    for words in ("compared with the reference donors, 'normal'", "Hedges' g of the donors' hit percentages", "the donor as the unit",
                  "random-effects meta-analysis (DerSimonian-Laird", "permuting the disease and reference labels among each study's donors",
                  "Benjamini-Hochberg over the diseases tested", "Of the diseases ranked, "):
        assert words in methods, words
    # a click on another disease in the ranking figure picks it; its forest plot is drawn
    click = {"points": [{"x": f"{shown[-1]}<br>3 samples · 1 study"}]}
    picked = diseases.pick_forest_disease(data, click, out["forest_groups"])["group"]
    assert picked == shown[-1]
    key = data.result_key(result.params)
    views = diseases.render_forest(data, picked, key, False, "effect")
    meta = views["forest_fig"].to_dict()["layout"]["meta"]
    assert meta.get("disease") == picked or meta["empty"].startswith(f"{picked}: ")
    import dash

    with pytest.raises(dash.exceptions.PreventUpdate):
        diseases.pick_forest_disease(data, {"points": [{"x": "not a disease<br>1 sample"}]}, out["forest_groups"])

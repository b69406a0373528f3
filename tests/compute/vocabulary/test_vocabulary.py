"""One vocabulary (issue 15): labels -> Cell Ontology / MONDO / UBERON terms with the real
ontology files bundled by cellxgene-ontology-guide, descendants in filters, the manifest map,
unmapped labels reported, and label transfer through the embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from compute.atlas import TermTree
from compute.atlas._vocab import filter_mask
from compute.errors import IngestError, ManifestError, QueryError
from compute.vocabulary import (
    HEALTHY,
    accuracy_counts,
    accuracy_summary,
    harmonise,
    make_reference,
    match_label,
    normalise_label,
    ontologies,
    predict_study,
    reference_positions,
    shared_terms,
    term_closure,
    term_relation,
    transfer_labels,
)

MONOCYTE, CLASSICAL, NONCLASSICAL, CD14_POS, B_CELL = "CL:0000576", "CL:0000860", "CL:0000875", "CL:0001054", "CL:0000236"


@pytest.mark.parametrize(("label", "kind", "term", "how"), [
    ("CD14+ Monocyte", "cell_type", CD14_POS, "label"),  # "+" -> "-positive", case
    ("classical monocyte", "cell_type", CLASSICAL, "label"),
    ("NK cell", "cell_type", "CL:0000623", "synonym"),  # natural killer cell
    ("B cells", "cell_type", B_CELL, "label"),  # plural
    ("Dendritic", "cell_type", "CL:0000451", "label"),  # "X" -> "X cell"
    ("CL:0000860", "cell_type", CLASSICAL, "id"),
    ("healthy", "disease", HEALTHY, "healthy"),
    ("Healthy Control", "disease", HEALTHY, "healthy"),
    ("COVID-19", "disease", "MONDO:0100096", "label"),
    ("Kawasaki disease", "disease", "MONDO:0012727", "label"),
    ("blood", "tissue", "UBERON:0000178", "label"),
])
def test_labels_match_terms_by_label_synonym_and_id(label, kind, term, how):
    m = match_label(label, kind)
    assert (m.term_id, m.how) == (term, how)
    assert m.term_label == ("normal" if term == HEALTHY else ontologies().term(term).label)


def test_normalising_makes_marker_spellings_meet():
    assert normalise_label("CD14+ Monocyte") == normalise_label("CD14-positive monocyte") == "cd14 positive monocyte"
    assert normalise_label("CD4+/CD25- T reg") == "cd4 positive cd25 negative t reg"


def test_unmatched_and_empty_labels_are_reported_not_guessed():
    assert not match_label("CD34+", "cell_type").mapped
    assert "no term" in match_label("CD34+", "cell_type").reason
    assert match_label("unknown", "cell_type").reason == "no annotation"
    # an id of the wrong ontology is not a cell type
    assert not match_label("MONDO:0100096", "cell_type").mapped
    # a synonym several terms share is not picked at random
    _, synonyms = ontologies().text_index("cell_type")
    shared = next(s for s, ids in synonyms.items() if len(ids) > 1 and s not in ontologies().text_index("cell_type")[0])
    m = match_label(shared, "cell_type")
    assert not m.mapped and "ambiguous" in m.reason


def test_manifest_map_wins_and_unmapped_labels_keep_their_own_group():
    values = ["CD14+ Monocyte"] * 3 + ["CD34+"] * 2 + ["T helper"]
    h = harmonise(values, "cell_type", {"CD14+ Monocyte": CLASSICAL, "T helper": "CD4-positive, alpha-beta T cell"})
    assert list(h.term_ids) == [CLASSICAL] * 3 + ["", ""] + ["CL:0000624"]
    assert list(h.labels) == ["classical monocyte"] * 3 + ["CD34+"] * 2 + ["CD4-positive, alpha-beta T cell"]
    rep = h.report()
    assert rep["unmapped"] == [{"label": "CD34+", "reason": "no term with this label or synonym", "n_cells": 2}]
    assert {m["label"]: m["how"] for m in rep["mapped"]} == {"CD14+ Monocyte": "map", "T helper": "map"}
    with pytest.raises(IngestError, match="not a CL term id or exact term label"):
        harmonise(["x"], "cell_type", {"x": "not a cell"})


def test_schema_term_ids_win_over_labels_and_bad_ids_fall_back():
    h = harmonise(["mono", "B cell", "B cell"], "cell_type", ids=[CLASSICAL, "CL:9999999", B_CELL])
    assert list(h.term_ids) == [CLASSICAL, B_CELL, B_CELL]
    assert list(h.labels) == ["classical monocyte", "B cell", "B cell"]


def _manifest(tmp_path, columns):
    doc = {"version": 1, "atlas": {"name": "t", "out": "out"},
           "studies": [{"id": "S1", "source": {"kind": "scanpy-pbmc68k"}, "disease": "healthy", "tissue": "blood",
                        "columns": columns}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_manifest_maps_inline_or_from_a_file(tmp_path):
    from compute.manifest import load_manifest

    m = load_manifest(_manifest(tmp_path, {"cell_type": "bulk_labels", "cell_type_map": {"CD34+": None, "CD56+ NK": "CL:0000623"}}))
    assert m.studies[0].label_map("cell_type") == {"CD34+": None, "CD56+ NK": "CL:0000623"}
    (tmp_path / "map.csv").write_text("label,term\nCD56+ NK,natural killer cell\nCD34+,\n")
    m = load_manifest(_manifest(tmp_path, {"cell_type": "bulk_labels", "cell_type_map": "map.csv"}))
    assert m.studies[0].label_map("cell_type") == {"CD34+": None, "CD56+ NK": "natural killer cell"}
    (tmp_path / "map.yaml").write_text("healthy: normal\n")
    m = load_manifest(_manifest(tmp_path, {"disease_map": "map.yaml"}))
    assert m.studies[0].label_map("disease") == {"healthy": "normal"}
    with pytest.raises(ManifestError, match="columns.cell_type_map"):
        load_manifest(_manifest(tmp_path, {"cell_type_map": "missing.csv"}))
    (tmp_path / "bad.csv").write_text("name,id\nx,y\n")
    with pytest.raises(ManifestError, match="needs columns 'label' and 'term'"):
        load_manifest(_manifest(tmp_path, {"cell_type_map": "bad.csv"}))
    with pytest.raises(ManifestError, match="expected a term id"):
        load_manifest(_manifest(tmp_path, {"cell_type_map": {"x": 3}}))


def test_ingest_applies_the_map_and_reports_unmapped_labels(tmp_path):
    from compute.ingest import read_study
    from compute.manifest import load_manifest

    m = load_manifest(_manifest(tmp_path, {"cell_type": "bulk_labels", "cell_type_map": {"CD56+ NK": "CL:0000623"}}))
    a = read_study(m.studies[0])
    import json

    vocab = json.loads(a.uns["sigatlas_report"])["vocabulary"]["cell_type"]
    assert {u["label"] for u in vocab["unmapped"]} >= {"CD34+"}
    nk = a.obs["cell_type_original"] == "CD56+ NK"
    assert nk.sum() == 31 and (a.obs.loc[nk, "cell_type"] == "natural killer cell").all()
    assert (a.obs.loc[a.obs["cell_type_original"] == "CD34+", "cell_type"] == "CD34+").all()  # its own group
    bad = load_manifest(_manifest(tmp_path, {"cell_type": "bulk_labels", "cell_type_map": {"CD56+ NK": "CL:notaterm"}}))
    with pytest.raises(IngestError, match=r"study 'S1'.*columns.cell_type_map.*CD56\+ NK"):
        read_study(bad.studies[0])


def _cells():
    ids = [CLASSICAL] * 4 + [NONCLASSICAL] * 2 + [CD14_POS] * 3 + [B_CELL] * 5 + [""] * 2
    labels = [ontologies().term(t).label if t else "CD34+" for t in ids]
    return pd.DataFrame({"cell_type": labels, "cell_type_ontology_term_id": ids, "cell_type_original": labels,
                         "study": ["A"] * 8 + ["B"] * 8}), TermTree(terms=term_closure(set(ids)))


def test_a_term_filter_selects_its_descendants():
    cells, tree = _cells()
    monos = filter_mask(cells, tree, {"cell_type": ["monocyte"]})
    assert monos.sum() == 9 and not monos[9:].any()
    assert (filter_mask(cells, tree, {"cell_type": [MONOCYTE]}) == monos).all()
    assert filter_mask(cells, tree, {"cell_type": ["classical monocyte"]}).sum() == 4
    assert filter_mask(cells, tree, {"cell_type": ["CD34+"]}).sum() == 2  # an unmapped label is its own group
    assert filter_mask(cells, tree, {"cell_type": ["leukocyte"]}).sum() == 14
    with pytest.raises(QueryError, match="no cell_type called 'neuron'"):
        filter_mask(cells, tree, {"cell_type": ["neuron"]})


def test_hierarchy_groups_present_terms_under_shared_ancestors_with_counts():
    cells, tree = _cells()
    counts = cells["cell_type_ontology_term_id"].value_counts().to_dict()
    counts.pop("")

    def walk(nodes):
        for n in nodes:
            yield n
            yield from walk(n["children"])

    nodes = {n["label"]: n for n in walk(tree.hierarchy(counts))}
    assert nodes["monocyte"]["n_cells"] == 9 and not nodes["monocyte"]["present"]
    assert {c["label"] for c in nodes["monocyte"]["children"]} >= {"classical monocyte", "non-classical monocyte"}
    assert nodes["B cell"]["n_cells"] == 5 and nodes["B cell"]["present"]


def test_relation_pairs_close_terms_and_never_distant_ancestors():
    rel = term_relation([CLASSICAL, NONCLASSICAL, MONOCYTE, B_CELL, "CL:0000738"])  # 0000738: leukocyte
    assert rel.at[CLASSICAL, CLASSICAL] == 1 and rel.at[CLASSICAL, MONOCYTE] == 1 == rel.at[MONOCYTE, CLASSICAL]
    assert rel.at[CLASSICAL, NONCLASSICAL] == 0 and rel.at[CLASSICAL, B_CELL] == 0
    assert rel.at[CLASSICAL, "CL:0000738"] == -1  # a leukocyte is not a negative of a monocyte
    assert (rel.to_numpy() == rel.to_numpy().T).all()


def _embedding(noise: float, study_shift: float, seed=0):
    rng = np.random.default_rng(seed)
    types = [CLASSICAL, B_CELL, "CL:0000623"]
    centres = rng.normal(size=(3, 16)) * 3
    shifts = rng.normal(size=(3, 16)) * study_shift
    E, t, s = [], [], []
    for si in range(3):
        for ti, term in enumerate(types):
            E.append(centres[ti] + shifts[si] + rng.normal(size=(40, 16)) * noise)
            t += [term] * 40
            s += [f"S{si}"] * 40
    return np.vstack(E), np.array(t, dtype=object), np.array(s)


def test_label_transfer_recovers_held_out_labels_and_never_votes_within_a_study():
    E, terms, studies = _embedding(noise=0.5, study_shift=0.5)
    res = transfer_labels(E, terms, studies, k=10, relation=term_relation(terms))
    assert res.accuracy["n_evaluated"] == len(terms) and res.accuracy["exact"] > 0.95
    assert res.accuracy["compatible"] >= res.accuracy["exact"]
    assert (res.confidence > 0.5).mean() > 0.9
    # unlabelled cells get a prediction; a type annotated in one study only is never predicted for it
    terms2 = terms.copy()
    terms2[:40] = ""  # S0's monocytes lose their label
    only_s1 = (studies == "S1") & (terms == "CL:0000623")
    terms2[(terms == "CL:0000623") & ~only_s1] = ""
    res2 = transfer_labels(E, terms2, studies, k=10)
    assert (res2.term_ids[:40] == CLASSICAL).mean() > 0.9
    assert not (res2.term_ids[only_s1] == "CL:0000623").any()
    # islands: when studies dominate the embedding, accuracy drops and the measure shows it
    E3, t3, s3 = _embedding(noise=0.5, study_shift=20.0)
    assert transfer_labels(E3, t3, s3, k=10).accuracy["exact"] < res.accuracy["exact"]


def test_label_transfer_one_study_at_a_time_gives_the_whole_atlas_result_from_a_bounded_reference():
    """Issue 22: the build predicts study by study against a bounded reference (no process holds
    every cell's embedding); the predictions, confidences and accuracy are those of the
    whole-atlas call, and the reference is a seeded, even sample whatever the studies' order."""
    E, terms, studies = _embedding(noise=4.0, study_shift=0.5, seed=4)  # noisy: some cells are mispredicted
    relation = term_relation(terms)
    whole = transfer_labels(E, terms, studies, k=10, max_reference=60, seed=1, relation=relation)
    by = {sid: terms[studies == sid] for sid in ("S2", "S0", "S1")}
    picks = reference_positions(by, 60, seed=1)
    assert {sid: p.size for sid, p in picks.items()} == {"S0": 20, "S1": 20, "S2": 20}
    reordered = reference_positions(dict(reversed(by.items())), 60, seed=1)
    assert all(np.array_equal(picks[sid], reordered[sid]) for sid in by)
    assert not np.array_equal(picks["S0"], reference_positions(by, 60, seed=2)["S0"])  # the seed draws them
    ref = make_reference({sid: E[studies == sid][p] for sid, p in picks.items()}, {sid: by[sid][p] for sid, p in picks.items()})
    assert ref.size == whole.reference == 60 and list(ref.studies[::20]) == ["S0", "S1", "S2"]
    shared, counts = shared_terms(by), []
    for sid in by:
        pred, conf = predict_study(ref, E[studies == sid], sid, k=10)
        np.testing.assert_array_equal(pred, whole.term_ids[studies == sid])
        np.testing.assert_array_equal(conf, whole.confidence[studies == sid])
        counts.append(accuracy_counts(by[sid], pred, shared, relation))
    assert accuracy_summary(counts) == whole.accuracy and 0.5 < whole.accuracy["exact"] < 1
    # every labelled cell votes when there are no more than max_reference of them
    assert transfer_labels(E, terms, studies, k=10, relation=relation).reference == len(terms)
    # a study alone has no other study to vote: no prediction, confidence 0
    pred, conf = predict_study(make_reference({"S0": E[:5]}, {"S0": terms[:5]}), E[:3], "S0")
    assert list(pred) == ["", "", ""] and not conf.any()


def test_the_built_atlas_speaks_one_vocabulary(tiny_atlas, tiny_build):
    cells = tiny_atlas.cells
    for kind in ("cell_type", "disease", "tissue"):
        assert {f"{kind}_original", f"{kind}_ontology_term_id"} <= set(cells.columns)
    assert set(cells["disease"].astype(str)) >= {"normal", "infectious disease with sepsis", "COVID-19"}
    # the real PBMC monocytes and the simulated ones meet in one term
    pbmc = cells["study"] == "PBMC68K"
    assert set(cells.loc[pbmc & (cells["cell_type_original"] == "CD14+ Monocyte"), "cell_type"]) == {"classical monocyte"}
    monos = tiny_atlas.select(cell_types="monocyte")
    expected = cells["cell_type"].isin(["classical monocyte", "non-classical monocyte"]).to_numpy()
    assert (monos == expected).all() and monos[pbmc.to_numpy()].any()
    assert (tiny_atlas.select(diseases="healthy") == (cells["disease"] == "normal").to_numpy()).all()
    # unmapped labels are in the report and kept
    entry = next(s.meta for s in tiny_atlas.studies if s.id == "PBMC68K")
    assert [u["label"] for u in entry["report"]["vocabulary"]["cell_type"]["unmapped"]] == ["CD34+"]
    assert (cells.loc[pbmc, "cell_type"] == "CD34+").sum() > 0
    # label transfer: every cell has a prediction and a confidence; accuracy on held-out cells recorded
    lt = tiny_atlas.meta["vocabulary"]["label_transfer"]
    assert lt["accuracy"]["n_evaluated"] > 0 and 0 <= lt["accuracy"]["exact"] <= 1
    assert cells["cell_type_prediction_confidence"].between(0, 1).all()
    cd34 = pbmc & (cells["cell_type"] == "CD34+")
    assert (cells.loc[cd34, "cell_type_predicted_ontology_term_id"].astype(str) != "").all()
    assert (tiny_atlas.path / "vocabulary.json").is_file()


def test_diseases_rank_at_a_parent_term(tiny_atlas):
    from compute.query import QueryParams, run_query
    from compute.reference import ms1_signature

    ms1 = tuple((g, None) for g in ms1_signature())
    params = QueryParams(genes=ms1, cell_types=("monocyte",), samp_min=1)
    plain = run_query(tiny_atlas, params)
    grouped = run_query(tiny_atlas, QueryParams(genes=ms1, cell_types=("monocyte",), samp_min=1,
                                                          disease_groups=("viral infectious disease",)))
    groups = set(grouped.diseases["group"])
    assert "viral infectious disease" in groups and "COVID-19" not in groups
    assert "COVID-19" in set(plain.diseases["group"])
    # the pooled group holds exactly the samples of the diseases under it
    viral = grouped.samples[grouped.samples["disease"] == "viral infectious disease"]
    assert len(viral) == len(plain.samples[plain.samples["disease"].isin(["COVID-19", "influenza"])])
    with pytest.raises(QueryError, match="no disease term called 'not a disease'"):
        run_query(tiny_atlas, QueryParams(genes=(("S100A8", None),), disease_groups=("not a disease",)))


def test_the_build_records_integration_and_label_transfer_in_its_report(tiny_atlas):
    from compute.atlas import integration_line, label_transfer_line, study_report_text

    m = tiny_atlas.meta["report"]["integration"]
    assert m["n_studies"] == len(tiny_atlas.studies) and 0 <= m["purity"] <= 1 and 0 <= m["cross_study_share"] <= m["perfect_share"]
    text = study_report_text(tiny_atlas.meta)
    assert integration_line(tiny_atlas.meta) in text and label_transfer_line(tiny_atlas.meta) in text
    assert f"{m['cross_study_share']:.2f} are its cell type from another study" in text
    departures = " ".join(tiny_atlas.meta["method"]["departures"])
    assert "triplet weight" in departures and "0.001" in departures

"""The disease evidence end to end (issue 32): a SIMULATED corpus built by the real pipeline with
planted studies: a batch artifact confounded with a disease (no reference donors), the same
artifact in a study with its own controls, and a planted within-study effect."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from compute.demo import PlantedStudy, SimulationConfig
from compute.errors import QueryError
from compute.query import QueryParams, evidence_words, run_query

pytestmark = pytest.mark.slow  # builds an atlas (or several processes) end to end

# sepsis (MS1 planted, strength 1) in SIM01 and SIM10 with 3 disease and 2 healthy donors each
PLANTED = SimulationConfig(
    n_studies=10, disease_donors=3, healthy_donors=2, cells_per_sample=(150, 201), max_genes=700, seed=3,
    planted_studies=(
        # MS1 genes captured 2x, no healthy donors: batch and disease are one
        PlantedStudy("SIMUC1", "ulcerative colitis", disease_donors=4, healthy_donors=0, artifact_program="MS1", artifact_fold=4.0),
        # the same artifact on both sides of a study with its own controls
        PlantedStudy("SIMPS1", "psoriasis", disease_donors=4, healthy_donors=4, artifact_program="MS1", artifact_fold=4.0),
    ),
)
SEPSIS, UC, PSORIASIS = "infectious disease with sepsis", "ulcerative colitis", "psoriasis"


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.demo import demo_manifest_text, simulate_studies
    from compute.manifest import load_manifest

    folder = tmp_path_factory.mktemp("planted")
    truth = simulate_studies(folder / "data", PLANTED)
    doc = yaml.safe_load(demo_manifest_text(PLANTED, data_dir=str(folder / "data")))
    doc["atlas"] = {"name": "planted", "out": str(folder / "atlas")}
    doc["model"] = {"kind": "train", "hidden_sizes": [128, 64], "latent_dim": 32, "epochs": 4, "batch_size": 256}
    doc["embedding"] = {"n_neighbors": 10, "min_dist": 0.3, "umap": False}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return Atlas.open(build_atlas(load_manifest(path), quiet=True, scheduler="sync")), truth


def _ms1(truth):
    return next(p for p in truth["programs"] if p["name"] == "MS1")


@pytest.fixture(scope="session")
def ms1_result(planted):
    atlas, truth = planted
    prog = _ms1(truth)
    params = QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]), data="simulated",
                         cell_min=10, samp_min=3, expression=True)
    return run_query(atlas, params)


@pytest.fixture(scope="session")
def ms1_regular(planted):
    """MS1 on the regular studies only: the artifact studies' cells, strong in MS1's genes, would
    otherwise fill the top decile that sets the hit rule and leave the planted diseases few hits."""
    atlas, truth = planted
    prog = _ms1(truth)
    params = QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]),
                         studies=tuple(f"SIM{i:02d}" for i in range(1, 11)), cell_min=10, samp_min=3, expression=True)
    return run_query(atlas, params)


def test_the_planted_studies_are_in_the_corpus(planted):
    atlas, truth = planted
    titles = {s.id: s.title for s in atlas.studies}
    assert "batch artifact" in titles["SIMUC1"] and "SIMULATED" in titles["SIMUC1"]
    cells = atlas.cells
    uc = cells[cells["study"] == "SIMUC1"]
    assert set(uc["disease"].astype(str)) == {UC}  # no reference donors in the confounded study


def test_a_batch_artifact_confounded_with_a_disease_is_never_a_link(ms1_result):
    d = ms1_result.diseases.set_index("group")
    row = d.loc[UC]
    # the artifact alone lifts the disease's hit % far above the healthy donors': a naive ranking would call it
    assert row["mean_hit_pct"] > 2 * d.loc["normal", "mean_hit_pct"]
    assert row["evidence"] == "no_within_study_reference"
    assert np.isnan(row["effect"]) and np.isnan(row["effect_p"]) and np.isnan(row["effect_q"])
    assert "cannot be told apart from its study's batch" in evidence_words(row)
    reasons = ms1_result.study_effects.query("disease == @UC")["reason"]
    assert len(reasons) and reasons.str.contains("no reference donors").all()


def test_the_same_artifact_with_its_own_controls_shows_no_effect(ms1_result):
    row = ms1_result.diseases.set_index("group").loc[PSORIASIS]
    assert row["evidence"] == "one_study" and row["n_donors"] == 4 and row["n_reference_donors"] == 4
    assert row["effect_p"] > 0.05
    assert row["effect_lo"] < 0 < row["effect_hi"]


def test_a_planted_within_study_effect_is_found_and_pooled(ms1_regular):
    ms1_result = ms1_regular
    row = ms1_result.diseases.set_index("group").loc[SEPSIS]
    assert row["evidence"] == "pooled" and row["n_studies_with_reference"] == 2
    assert row["n_donors"] == 6 and row["n_reference_donors"] == 4
    # with 3 patients and 2 controls a study's normal-theory interval is wide; the exact test decides
    assert row["effect"] > 1 and row["effect_hi"] > row["effect"] > row["effect_lo"]
    assert row["effect_p"] <= 0.05  # 100 arrangements of the donor labels: the planted one among the 5 most extreme
    assert row["n_studies_positive"] == 2 and np.isfinite(row["i2"]) and row["loo_lo"] <= row["effect"] <= row["loo_hi"]
    effects = ms1_result.study_effects.query("disease == @SEPSIS and measure == 'hit_pct'")
    assert set(effects["study"]) == {"SIM01", "SIM10"} and effects["included"].all()
    assert effects["weight"].sum() == pytest.approx(1.0)


def test_expression_scores_get_the_same_evidence(ms1_result, ms1_regular):
    expr = ms1_result.expression_diseases.set_index("group")
    assert expr.loc[UC, "evidence"] == "no_within_study_reference" and np.isnan(expr.loc[UC, "effect_p"])
    # the artifact lifts expression scores too: a naive expression ranking would call it
    assert expr.loc[UC, "mean_hit_pct"] > 2 * expr.loc["normal", "mean_hit_pct"]
    regular = ms1_regular.expression_diseases.set_index("group")
    assert regular.loc[SEPSIS, "evidence"] == "pooled" and regular.loc[SEPSIS, "effect"] > 0
    assert ms1_result.expression_study_effects is not None and len(ms1_result.expression_study_effects)


def test_another_reference_and_an_unknown_one(planted):
    atlas, truth = planted
    prog = _ms1(truth)
    base = dict(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]), data="simulated",
                cell_min=10, samp_min=3)
    r = run_query(atlas, QueryParams(**base, reference="influenza"))
    d = r.diseases.set_index("group")
    assert r.reference_labels == ("influenza",)
    # COVID-19 and influenza never share a study here: nothing within a study to compare
    assert d.loc["COVID-19", "evidence"] == "no_within_study_reference"
    assert d.loc["influenza", "evidence"] == "no_reference"
    with pytest.raises(QueryError, match="not a disease of this atlas"):
        run_query(atlas, QueryParams(**base, reference="no such disease"))


def test_the_gene_set_null_reports_its_correlation_correction(planted):
    atlas, truth = planted
    prog = _ms1(truth)
    r = run_query(atlas, QueryParams(genes=tuple((g, None) for g in prog["genes"]), cell_types=tuple(prog["cell_types"]),
                                     data="simulated", cell_min=10, samp_min=3, n_null=49))
    null = r.null["disease"]
    # MS1's genes move together in the cells carrying the program; random matched genes hardly do
    assert null.vif > null.vif_null and null.inflation > 1
    g = null.groups.dropna(subset=["p_value"])  # the reference has none
    upper = g["p_value_uncorrected"] < 0.5  # above the null's median, widening it can only make a p larger
    assert upper.any() and (g.loc[upper, "p_value"] >= g.loc[upper, "p_value_uncorrected"] - 1e-12).all()
    assert np.isnan(null.groups.set_index("group").loc["normal", "p_value"])  # the reference against itself: no question

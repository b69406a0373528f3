"""Integration metrics (compute.integration) on constructed embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.integration import (
    IntegrationMetrics,
    batch_asw,
    celltype_asw,
    ilisi_within_type,
    integration_metrics,
    integration_report,
    knn_shares,
    missing_labels,
    perfect_mixing_share,
)


def _corpus(study_offset: float, n_types=3, n_studies=4, per=30, seed=0):
    """Cell types as tight clusters 10 apart; every study shifts its cells by ``study_offset``
    along its own axis (0: studies perfectly mixed; large: each study x type an island)."""
    rng = np.random.default_rng(seed)
    dims = n_types + n_studies
    X, types, studies = [], [], []
    for t in range(n_types):
        for s in range(n_studies):
            centre = np.zeros(dims)
            centre[t] = 10.0
            centre[n_types + s] = study_offset
            X.append(centre + rng.normal(0, 0.3, size=(per, dims)))
            types += [f"type{t}"] * per
            studies += [f"study{s}"] * per
    return np.vstack(X), np.array(types), np.array(studies)


def test_mixed_studies_score_as_mixed_and_islands_as_islands():
    mixed = integration_metrics(*_corpus(0.0), k=15)
    islands = integration_metrics(*_corpus(5.0), k=15)
    # 4 equal studies: a random same-type neighbour is from another study 90 / 119 of the time
    assert mixed.perfect_share == pytest.approx(90 / 119)
    assert islands.perfect_share == pytest.approx(90 / 119)
    assert mixed.purity == pytest.approx(1.0) and islands.purity == pytest.approx(1.0)
    assert mixed.mixing > 0.9 and mixed.meets_goal()
    assert islands.cross_study_share < 0.02 and not islands.meets_goal()
    assert mixed.ilisi > 0.8 and islands.ilisi < 0.05
    assert mixed.batch_asw > 0.9 and islands.batch_asw < 0.5
    # types stay apart in both, so cell-type ASW is high in both, higher without the study split
    assert mixed.celltype_asw > 0.9 and islands.celltype_asw > 0.6 and mixed.celltype_asw > islands.celltype_asw


def test_types_mixed_together_lose_purity_and_asw():
    X, types, studies = _corpus(0.0)
    rng = np.random.default_rng(1)
    m = integration_metrics(X, rng.permutation(types), studies, k=15)  # labels no longer follow the clusters
    assert m.purity < 0.5 and m.celltype_asw < 0.55


def test_knn_shares_and_perfect_mixing_by_hand():
    types = np.array([0, 0, 0, 1])
    studies = np.array([0, 1, 1, 0])
    nbrs = np.array([[1, 3], [2, 0], [1, 3], [0, 1]])
    cross, same = knn_shares(nbrs, types, studies)
    np.testing.assert_allclose(cross, [0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(same, [0.5, 1.0, 0.5, 0.0])
    # type "a": 2 cells in s1, 3 in s2 -> (5 - 2) / 4 and (5 - 3) / 4; type "b": one cell -> 0
    perfect = perfect_mixing_share(np.array(["a"] * 5 + ["b"]), np.array(["s1", "s1", "s2", "s2", "s2", "s1"]))
    np.testing.assert_allclose(perfect, [0.75, 0.75, 0.5, 0.5, 0.5, 0.0])


def test_ilisi_equal_weights_gives_the_inverse_simpson_index():
    # one type, 4 studies x 5 cells all on one point: every cell's 19 neighbours weigh the same,
    # 4 from its own study and 5 from each other -> LISI = 361 / 91, scaled by 4 - 1 studies
    X = np.zeros((20, 3))
    studies = np.repeat(["s1", "s2", "s3", "s4"], 5)
    assert ilisi_within_type(X, np.array(["t"] * 20), studies) == pytest.approx((361 / 91 - 1) / 3)
    # a type seen in one study only has nothing to mix: no value
    assert np.isnan(ilisi_within_type(X, np.array(["t"] * 20), np.array(["s1"] * 20)))


def test_asw_on_separated_and_on_shuffled_labels():
    X, types, studies = _corpus(0.0)
    assert celltype_asw(X, types) > 0.9
    rng = np.random.default_rng(0)
    assert abs(celltype_asw(X, rng.permutation(types)) - 0.5) < 0.05
    # subsample: seeded, so the same number twice
    assert celltype_asw(X, types, max_cells=50, seed=3) == celltype_asw(X, types, max_cells=50, seed=3)
    assert batch_asw(*_corpus(5.0)) < batch_asw(X, types, studies)


def test_unlabelled_cells_are_neither_queries_nor_neighbours():
    X, types, studies = _corpus(5.0)
    base = integration_metrics(X, types, studies)
    # unlabelled cells placed on the clusters of another study would pull neighbours across studies
    extra = X[: len(X) // 2] + 0.01
    labels = np.concatenate([types.astype(object), np.array([None, np.nan, "unknown", " Unknown ", ""] * (len(extra) // 5), dtype=object)])
    m = integration_metrics(np.vstack([X, extra]), labels, np.concatenate([studies, np.array(["study9"] * len(extra))]))
    assert m.n_unlabelled == len(extra) and m.n_cells == base.n_cells
    assert m.cross_study_share == pytest.approx(base.cross_study_share) and m.purity == pytest.approx(base.purity)
    assert missing_labels(["B cell", None, float("nan"), "NaN", "unassigned", "monocyte"]).tolist() == [False, True, True, True, True, False]


def test_report_reads_an_atlas_cells_frame_and_renders():
    X, types, studies = _corpus(0.0)
    cells = pd.DataFrame({"study": pd.Categorical(studies), "cell_type": pd.Categorical(types), "term": types})
    m = integration_report(X, cells)
    assert isinstance(m, IntegrationMetrics) and m.n_studies == 4 and m.n_cell_types == 3
    assert integration_report(X, cells, label_column="term").as_dict() == m.as_dict()
    line = m.text()
    assert "\n" not in line and f"{m.cross_study_share:.2f}" in line and f"{m.purity:.2f}" in line
    with pytest.raises(KeyError, match="no column 'cell_ontology_term_id'"):
        integration_report(X, cells, label_column="cell_ontology_term_id")
    with pytest.raises(ValueError, match="embedding has 360 cells but 2 cell types"):
        integration_metrics(X, types[:2], studies[:2])


def test_one_study_has_no_mixing_reference():
    X, types, _ = _corpus(0.0)
    m = integration_metrics(X, types, np.array(["only"] * len(types)))
    assert m.perfect_share == 0 and np.isnan(m.mixing) and np.isnan(m.ilisi) and m.as_dict()["mixing"] is None
    assert not m.meets_goal()


def test_large_inputs_are_subsampled_with_a_seed():
    X, types, studies = _corpus(0.0)
    a = integration_metrics(X, types, studies, max_cells=200, seed=1)
    b = integration_metrics(X, types, studies, max_cells=200, seed=1)
    assert a.subsampled and a.n_cells == 200 and a.as_dict() == b.as_dict()

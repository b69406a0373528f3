"""The Cells tab without a browser: the UMAP says which cell-type labels it shows."""

from __future__ import annotations

import numpy as np

from dashboard import ids
from dashboard.app import answer_query, create_app
from dashboard.data import DashboardData
from dashboard.state import (
    decode_state,
)
from dashboard.views.filters import apply_preset
from tests.dashboard.helpers import find, state_with


def test_umap_says_which_cell_type_labels_it_shows(tiny_build):

    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    text, cell_types = apply_preset(data, "ms1")
    state = state_with(genes=text, cell_types=cell_types, null_draws=0, min_coverage=0.0)
    out = answer_query(data, state | {"color": "cell_type_predicted"})
    fig = out["umap_fig"].to_dict()
    assert "cell type (predicted by label transfer" in fig["layout"]["title"]["text"] and "SIMULATED" in fig["layout"]["title"]["text"]
    assert fig["layout"]["legend"]["title"]["text"] == "cell type (predicted)"
    sel = out["result"].selection
    shown = {t["name"] for t in fig["data"] if t["name"] != "not selected" and not t["name"].startswith("other (")}
    assert shown and shown <= set(cells.loc[sel, "cell_type_predicted"].astype(str))
    hovers = [c for t in fig["data"] if t.get("customdata") is not None for c in np.asarray(t["customdata"], dtype=object)]
    assert hovers and all("predicted: " in c[6] and "(confidence " in c[6] for c in hovers)
    acc = data.atlas.meta["vocabulary"]["label_transfer"]["accuracy"]
    assert f"{100 * acc['exact']:.1f}% got their own term" in out["umap_labels"] and "never the prediction" in out["umap_labels"]
    # the annotated labels: the study's own label in the hover where the term differs
    out = answer_query(data, state | {"color": "cell_type"})
    fig = out["umap_fig"].to_dict()
    assert "cell type (annotated" in fig["layout"]["title"]["text"] and fig["layout"]["legend"]["title"]["text"] == "cell type (annotated)"
    hovers = [c for t in fig["data"] if t.get("customdata") is not None for c in np.asarray(t["customdata"], dtype=object)]
    assert any("study's label: CD14+ Monocyte" in c[6] for c in hovers)
    assert "Filters and rankings use these labels" in out["umap_labels"]
    table = out["tables"]["umap"]
    assert {"cell_type_original", "cell_type_ontology_term_id", "cell_type_predicted", "cell_type_prediction_confidence"} <= set(table)
    # the UMAP CSV holds the coordinates the figure draws (issue 36, item 9)
    assert list(table.columns[:2]) == ["umap_1", "umap_2"]
    np.testing.assert_allclose(table[["umap_1", "umap_2"]].to_numpy(), data.umap[out["result"].selection])
    # the control offers both, and a link keeps the choice
    control = find(create_app(tiny_build[1]).layout, ids.UMAP_COLOR)
    labels = {d["value"]: d["label"] for d in control.data}
    assert labels["cell_type"] == "cell type (annotated)" and labels["cell_type_predicted"] == "cell type (predicted)"
    assert decode_state("?color=cell_type_predicted")[0]["color"] == "cell_type_predicted"

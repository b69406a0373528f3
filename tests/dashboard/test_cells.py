"""The Cells tab without a browser: the UMAP says which cell-type labels it shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def test_the_explorer_offers_the_donors_sex_and_age(tiny_build):
    """Issue 36 item 13: the studies' donor metadata (the simulated donors' sex and age) reaches the
    atlas; a study that does not carry it (PBMC68K, real) reads "unknown"; the explorer colours
    and splits by both, an age in ordered bins; the UMAP CSV carries them."""
    from dashboard.callbacks import cells as cs

    data = DashboardData(tiny_build[1])
    atlas = data.atlas
    assert atlas.metadata_columns[:2] == ["sex", "age"]
    cells = atlas.cells
    real = cells["study"].astype(str) == "PBMC68K"
    assert set(cells.loc[real, "sex"].astype(str)) == {"unknown"} == set(cells.loc[real, "age"].astype(str))
    assert set(cells.loc[~real, "sex"].astype(str)) == {"female", "male"}
    assert cells.loc[~real].groupby("donor", observed=True)[["sex", "age"]].nunique().max().max() == 1
    # offered for colour and split, by name
    control = find(create_app(tiny_build[1]).layout, ids.CELLS_COLOR)
    labels = {d["value"]: d["label"] for d in control.data}
    assert labels["sex"] == "sex" and labels["age"] == "age"
    assert {d["value"] for d in find(create_app(tiny_build[1]).layout, ids.CELLS_SPLIT).data} >= {"sex", "age"}
    assert "sex, age) is simulated too" in find(create_app(tiny_build[1]).layout, ids.CELLS_SIMULATED_NOTE).children
    by_sex = cs.draw_cells(data, "cells", "sex", None, "attr", None, None)["figure"].to_dict()
    assert [t["name"] for t in by_sex["data"]][-1] == "unknown" and {t["name"] for t in by_sex["data"]} == {"female", "male", "unknown"}
    assert sum(len(t["customdata"]) for t in by_sex["data"]) == atlas.n_cells
    # the age in round bins, young to old, then unknown (grey)
    by_age = cs.draw_cells(data, "cells", "age", None, "attr", "sex", None)["figure"].to_dict()
    legend = list(dict.fromkeys(t["name"] for t in by_age["data"]))
    assert legend[-1] == "unknown" and [int(b.split("-")[0]) for b in legend[:-1]] == sorted(int(b.split("-")[0]) for b in legend[:-1])
    assert all(t["marker"]["color"] == "#bdbdbd" for t in by_age["data"] if t["name"] == "unknown")
    assert by_age["layout"]["meta"]["panels"] == ["female", "male", "unknown"] and "age (bins of" in by_age["layout"]["title"]["text"]
    # the UMAP CSV holds each cell's donor, sex and exact age
    text, cell_types = apply_preset(data, "ms1")
    table = answer_query(data, state_with(genes=text, cell_types=cell_types, null_draws=0, min_coverage=0.0))["tables"]["umap"]
    assert {"donor", "sex", "age"} <= set(table.columns)
    sel = table["study"].astype(str) != "PBMC68K"
    assert table.loc[sel, "age"].astype(str).str.fullmatch(r"\d+").all()


def test_an_age_is_shown_in_order_and_in_round_bins():
    from dashboard.views.cells import column_values, explore_figure

    ages = ["34", "35", "41", "58", "63", "70", "7", "77", "80", "29", "45", "unknown"]
    cells = pd.DataFrame({"study": "S", "sample": [f"s{i}" for i in range(12)], "age": ages, "sex": ["female", "male"] * 6})
    shown = column_values(cells, "age")
    assert shown.order == ["0-9", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "unknown"]
    assert list(shown.labels[:3]) == ["30-39", "30-39", "40-49"] and shown.what == "age (bins of 10)"
    assert shown.colours["unknown"] == "#bdbdbd" and len(set(shown.colours.values())) == len(shown.order)
    few = column_values(cells.iloc[:4], "age")  # a handful of donors: each age its own
    assert few.order == ["34", "35", "41", "58"] and few.what == "age"
    # not an age: labels by frequency, never binned
    assert column_values(cells, "sex").colours is None and set(column_values(cells, "sex").order) == {"female", "male"}
    fig = explore_figure(np.zeros((12, 2)), cells, color="age", split="age").to_dict()
    assert fig["layout"]["meta"]["panels"] == shown.order

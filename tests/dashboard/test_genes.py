"""The Genes tab without a browser: every grouping and gene view renders."""

from __future__ import annotations

import pytest

from dashboard.app import answer_query
from dashboard.data import DashboardData
from dashboard.views.filters import apply_preset
from tests.dashboard.helpers import state_with


@pytest.mark.parametrize("by", ["disease", "cell_type", "study"])
@pytest.mark.parametrize("heat", ["heatmap", "dotplot"])
def test_every_grouping_and_gene_view_renders(tiny_build, by, heat):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    out = answer_query(data, state_with(genes=text, group_by=by, heat=heat, order="score", color="disease"))
    fig = out["heatmap_fig"].to_dict()
    values = set(data.atlas.cells[by].astype(str))
    labels = {str(x) for t in fig["data"] for x in ([] if t.get("x") is None else list(t["x"]))}
    assert labels and labels <= values | {""}, labels - values
    assert fig["data"][0]["type"] == ("heatmap" if heat == "heatmap" else "scatter")

"""Issue 36 items 6 and 9: study-level views that tell studies apart (a colour per study, group
names that do not run together, white explained) and exports that wait for a result. Figures are
tested on their data; the browser checks are in tests/test_browser_cells.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard import figures
from dashboard.figures.cells import umap_figure
from dashboard.figures.genes import NOT_MEASURED_NOTE, heatmap_figure


def test_every_label_gets_its_own_colour_beyond_the_palette():
    studies = [f"SIM{i:02d}" for i in range(1, 41)]
    colours = figures.label_colours(studies)
    assert len(set(colours.values())) == 40
    assert [colours[s] for s in studies[: len(figures.LABEL_PALETTE)]] == figures.LABEL_PALETTE
    assert figures.label_colours(studies) == colours  # stable across calls
    assert all(len(c) == 7 and c.startswith("#") for c in colours.values())


def test_a_umap_by_study_has_no_grey_other():
    n = 25 * 20
    labels = np.repeat([f"S{i:02d}" for i in range(25)], 20)
    hover = pd.DataFrame({"study": labels, "sample": labels, "cell_type": "t", "disease": "d"})
    fig = umap_figure(np.random.default_rng(0).normal(size=(n, 2)), np.ones(n), hover, np.ones(n, bool), color_by="study")
    names = [t.name for t in fig.data]
    assert not any(str(name).startswith("other") for name in names) and len(names) == 25
    assert len({t.marker.color for t in fig.data}) == 25


def test_many_short_group_names_are_angled_and_white_is_explained():
    genes = [f"G{i}" for i in range(12)]
    table = pd.DataFrame(np.random.default_rng(1).random((12, 25)), index=genes, columns=[f"SIM{i:02d}" for i in range(25)])
    table.iloc[0, 3] = np.nan  # a study that did not measure the gene
    fig = heatmap_figure(table, group_label="study").to_dict()["layout"]
    assert fig["xaxis"]["tickangle"] != 0
    assert any(a["text"] == NOT_MEASURED_NOTE for a in fig.get("annotations", []))
    few = heatmap_figure(table.iloc[:, :3].fillna(0), group_label="study").to_dict()["layout"]
    assert few["xaxis"]["tickangle"] == 0 and not any(a["text"] == NOT_MEASURED_NOTE for a in few.get("annotations", []))


def test_a_placeholder_figure_offers_no_image_download():
    fig = figures.empty_figure("Appears after a query").to_dict()["layout"]
    assert "toImage" in fig["modebar"]["remove"] and fig["meta"]["empty"]


def test_exports_wait_for_a_result():
    from dashboard import ids
    from dashboard.callbacks.export import EXPORT_BUTTONS, export_ready

    assert ids.SNAPSHOT in EXPORT_BUTTONS and any(b.startswith(ids.IMG_PREFIX) for b in EXPORT_BUTTONS)
    assert export_ready(None, None)["disabled"] == [True] * len(EXPORT_BUTTONS)
    assert export_ready(None, "key")["disabled"] == [False] * len(EXPORT_BUTTONS)

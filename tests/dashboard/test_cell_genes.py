"""The "Genes in a cell type" tab on the tiny atlas: its callbacks called as plain functions (the
same functions the browser reaches), its figures tested on their data, its settings in the link."""

from __future__ import annotations

import dash
import numpy as np
import pytest

from compute.query import gene_ranking
from dashboard import ids
from dashboard.app import create_app
from dashboard.callbacks import cell_genes as cg
from dashboard.callbacks.render import RENDER_SETTINGS
from dashboard.data import DashboardData
from dashboard.state import DEFAULTS, RANKING_KEYS, TABS, decode_state, encode_state
from dashboard.views.cell_genes import FIGURE_TOP, MAX_SEND, rank_rank_figure, spread_figure
from dashboard.views.filters import known_values

MONO = "classical monocyte"
MONO_ID = "CL:0000860"


def _settings(**kw) -> dict:
    return {"rank_cell_types": [], "rank_diseases": [], "rank_studies": [], "rank_versus": [], "rank_gene": None} | kw


def _find(component, id_):
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children] if children is not None else []:
        if hasattr(child, "children") or hasattr(child, "id"):
            hit = _find(child, id_)
            if hit is not None:
                return hit
    return None


@pytest.fixture(scope="module")
def data(tiny_build):
    return DashboardData(tiny_build[1])


@pytest.fixture(scope="module")
def mono(data):
    """The tab for classical monocytes, and the two rankings computed directly by compute."""
    out = cg.rank_genes(data, **_settings(rank_cell_types=[MONO]))
    attr = gene_ranking(data.atlas, cell_types=MONO, store="attr")
    expr = gene_ranking(data.atlas, cell_types=MONO, store="expr")
    return out, attr, expr


def test_both_rankings_every_gene_and_the_simulated_badge(mono):
    out, attr, expr = mono
    rows = out["rows"]
    # every gene the population measured, in compute's attribution order, with its expression rank beside it
    assert [r["gene"] for r in rows] == list(attr.table.index)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    by_gene = {r["gene"]: r for r in rows}
    for gene in list(expr.table.index[:20]) + list(attr.table.index[:20]):
        assert by_gene[gene]["expr_rank"] == int(expr.table.loc[gene, "rank"])
        assert by_gene[gene]["mean_attr"] == pytest.approx(attr.table.loc[gene, "mean"], rel=1e-3)
    assert "q" not in rows[0]  # no reference, no test
    # the rank-rank plot: the union of both top 50s, split into both / attribution only / expression only
    meta = out["figure"].to_dict()["layout"]["meta"]
    top_a, top_e = set(attr.table.index[:FIGURE_TOP]), set(expr.table.index[:FIGURE_TOP])
    assert set(meta["genes"]) == top_a | top_e
    assert set(meta["both"]) == top_a & top_e and set(meta["attribution_only"]) == top_a - top_e
    assert set(meta["expression_only"]) == top_e - top_a
    # the tiny atlas is simulated: the badge and the figure say so
    assert out["sim"].startswith("Includes SIMULATED data") and out["sim_style"] is None
    assert "SIMULATED" in out["figure"].layout.title.text
    assert out["gene"] == attr.table.index[0] and out["gene_options"][0] == attr.table.index[0]
    # the browser holds the checked population, never a gene list
    assert out["store"] == {"rank_cell_types": [MONO], "rank_diseases": [], "rank_studies": [], "rank_versus": []}
    assert out["send_disabled"] is False


def test_a_term_id_reads_as_its_label_and_bad_input_is_shown(data, mono):
    by_id = cg.rank_genes(data, **_settings(rank_cell_types=[MONO_ID], rank_gene="NOT_A_GENE"))
    assert by_id["store"]["rank_cell_types"] == [MONO] and by_id["rows"] == mono[0]["rows"]
    bad = cg.rank_genes(data, **_settings(rank_cell_types=["no such cell"]))
    assert bad["rows"] == [] and bad["store"] is None and "unknown cell type 'no such cell'" in bad["note"].children
    none = cg.rank_genes(data, **_settings())
    assert none["rows"] == [] and none["note"] == "Choose a cell type to rank its genes." and none["send_disabled"] is True
    # a population that is its reference is refused (compute's reason shown); one that holds it loses it (issue 36)
    overlap = cg.rank_genes(data, **_settings(rank_cell_types=[MONO], rank_versus=["normal"], rank_diseases=["normal"]))
    assert overlap["rows"] == [] and "is its reference" in overlap["note"].children


def test_a_reference_adds_the_test_and_the_spread_shows_every_sample(data):
    disease = next(d for d in data.diseases if d != "normal")
    out = cg.rank_genes(data, **_settings(rank_cell_types=[MONO], rank_diseases=[disease], rank_versus=["normal"]))
    ref = gene_ranking(data.atlas, cell_types=MONO, diseases=disease, versus="normal")
    assert {"ref_mean", "diff", "log2fc", "p", "q"} <= set(out["rows"][0])
    assert [c["field"] for c in out["columns"]][-1] == "q"
    row = out["rows"][0]
    gene = row["gene"]
    assert row["q"] == pytest.approx(ref.table.loc[gene, "q"], rel=1e-2, nan_ok=True)
    fig = cg.show_spread(data, gene, out["store"])["spread"]
    meta = fig.to_dict()["layout"]["meta"]
    assert meta["gene"] == gene
    # one point per sample that measured the gene, population and reference apart, for both stores
    measured = ref.per_sample.loc[gene].dropna()
    assert sorted(meta["panels"]["attribution"]["population"]) == pytest.approx(sorted(measured.to_numpy()))
    assert len(meta["panels"]["attribution"]["reference"]) == int(ref.ref_per_sample.loc[gene].notna().sum())
    assert set(meta["panels"]) == {"attribution", "expression"}
    # simulated samples are open circles
    symbols = {t["marker"]["symbol"] for t in fig.to_dict()["data"] if t["type"] == "scatter"}
    assert "circle-open" in symbols


def test_send_the_top_genes_or_the_selected_rows(data, mono):
    out, attr, _ = mono
    store = out["store"]
    sent = cg.send_top(data, 1, 10, store)
    assert sent["genes"].split("\n") == list(attr.table.index[:10]) and sent["sent"].startswith("10 genes")
    assert cg.send_top(data, 1, MAX_SEND + 1, store)["genes"] is dash.no_update
    with pytest.raises(dash.exceptions.PreventUpdate):
        cg.send_top(data, None, 10, store)
    # selected rows: in the ranking's order, and rows the server's ranking does not hold are ignored
    picked = [{"gene": attr.table.index[5]}, {"gene": "<script>"}, {"gene": attr.table.index[2]}]
    sel = cg.send_selected(data, 1, picked, store)
    assert sel["genes"].split("\n") == [attr.table.index[2], attr.table.index[5]]
    assert cg.send_selected(data, 1, [], store)["genes"] is dash.no_update
    # a tampered store is checked again on the server
    tampered = store | {"rank_cell_types": ["not a cell type"]}
    assert cg.send_top(data, 1, 10, tampered)["sent"].startswith("Nothing sent: ")


def test_a_click_picks_a_gene(data, mono):
    gene = mono[1].table.index[3]
    click = {"points": [{"customdata": [gene, "4", "9", "1.0", "2.0"]}]}
    assert cg.pick_gene(data, click, None, trigger=ids.RANK_FIG) == {"gene": gene}
    assert cg.pick_gene(data, None, {"colId": "gene", "value": gene}, trigger=ids.RANK_GRID) == {"gene": gene}
    for click, cell, trigger in ((None, {"colId": "rank", "value": 4}, ids.RANK_GRID),
                                 ({"points": [{"customdata": ["NOT_A_GENE"]}]}, None, ids.RANK_FIG)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            cg.pick_gene(data, click, cell, trigger=trigger)


def test_the_ranking_is_cached_by_the_data_layer(data):
    first = data.gene_ranking(cell_types=(MONO,), store="attr")
    assert data.gene_ranking(cell_types=(MONO,), store="attr") is first  # from memory, not recomputed


def test_the_tab_in_the_layout_and_the_link(data, tiny_build):
    layout = create_app(tiny_build[1]).layout()
    tabs = _find(layout, ids.TABS)
    assert "cell_genes" in [t.value for t in tabs.children[0].children] and "cell_genes" in TABS
    for id_ in (ids.RANK_CELL_TYPES, ids.RANK_VERSUS, ids.RANK_FIG, ids.RANK_GRID, ids.SPREAD_FIG, ids.SEND_TOP, ids.RANK_CSV):
        assert _find(layout, id_) is not None, id_
    # the tab's settings go through the one state validator: a term id reads as its label, an unknown gene is dropped
    state, notes = decode_state(f"?tab=cell_genes&rank_cell_types={MONO_ID}&rank_versus=normal&rank_gene=NOT_A_GENE",
                                known_values(data))
    assert state["tab"] == "cell_genes" and state["rank_cell_types"] == [MONO] and state["rank_versus"] == ["normal"]
    assert state["rank_gene"] == "" and notes == ["rank_gene=NOT_A_GENE is not a gene of this atlas's gene order; using none"]
    gene = data.atlas.genes[0]
    kept = state | {"rank_gene": gene}
    assert decode_state(encode_state(kept), known_values(data)) == (kept, [])
    # links written before the tab read as before, and its settings never re-render a query's views
    old, old_notes = decode_state("?genes=CD14&tab=modules", known_values(data))
    assert not old_notes and all(old[k] == DEFAULTS[k] for k in RANKING_KEYS)
    assert not set(RANKING_KEYS) & set(RENDER_SETTINGS)


def test_figures_without_expression_or_a_gene():
    import pandas as pd

    attr = pd.DataFrame({"rank": [1, 2, 3], "mean": [3.0, 2.0, 1.0]}, index=["A", "B", "C"])
    fig = rank_rank_figure(attr, None, top=2)
    assert fig.to_dict()["data"][0]["type"] == "bar" and "stores no expression" in fig.layout.title.text
    assert list(fig.to_dict()["data"][0]["y"]) == ["A", "B"]
    expr = pd.DataFrame({"rank": [1, 2], "mean": [5.0, 4.0]}, index=["C", "D"])  # A and B not measured there
    meta = rank_rank_figure(attr, expr, top=2).to_dict()["layout"]["meta"]
    assert meta["attribution_only"] == ["A", "B"] and meta["expression_only"] == ["C", "D"] and meta["both"] == []
    assert "empty" in spread_figure("A", None).to_dict()["layout"]["meta"]
    assert np.isfinite(rank_rank_figure(attr, expr, top=2).to_dict()["layout"]["xaxis"]["range"]).all()


def _texts(component) -> str:
    """Every string inside a component tree, joined."""
    if isinstance(component, str):
        return component
    children = getattr(component, "children", None)
    items = children if isinstance(children, list | tuple) else [children] if children is not None else []
    return " ".join(_texts(c) for c in items)


def test_versus_normal_takes_the_reference_out_and_sends_the_versus_ranking(data):
    """Issue 36 item 5: "classical monocyte versus normal" works (the normal monocytes leave the
    population, and the view says so); "send the top N" sends the versus test's top genes and
    the gene box's resolution panel shows the sent genes, not the last query's."""
    out = cg.rank_genes(data, **_settings(rank_cell_types=[MONO], rank_versus=["normal"]))
    assert out["store"] is not None and "q" in [c["field"] for c in out["columns"]]
    assert "taken out of the population" in _texts(out["note"]) and "every disease but normal" in _texts(out["note"])
    assert out["send_label"] == cg.SEND_VERSUS_LABEL
    ranking = gene_ranking(data.atlas, cell_types=MONO, versus="normal")
    assert "normal" not in set(ranking.samples["disease"])
    sent = cg.send_top(data, 1, 5, out["store"])
    genes = sent["genes"].split("\n")
    table = ranking.table
    up = table[(table["diff"] > 0) & table["p"].notna()]
    assert genes == list(up.sort_values(["p", "diff"], ascending=[True, False]).index[:5])
    assert genes != list(table.index[:5]) or up.index[:5].equals(table.index[:5])
    assert (table.loc[genes, "diff"] > 0).all() and "versus" in sent["sent"] or "reference" in sent["sent"]
    panel = _texts(sent["resolution"])
    assert f"{len(genes)} of {len(genes)} genes matched" in panel and "not run yet" in panel
    # without a reference, the button and the send are the attribution ranking's
    plain = cg.rank_genes(data, **_settings(rank_cell_types=[MONO]))
    assert plain["send_label"] == cg.SEND_TOP_LABEL


def test_the_spread_plot_titles_fit():
    """Issue 36 item 5: the per-sample spread names each panel's unit above it (two y-axis titles
    side by side ran into each other) and leaves room for its two title lines."""
    import pandas as pd

    from compute.query import GeneRanking, RankingParams

    samples = pd.DataFrame({"study": ["S1", "S2"], "sample": ["a", "b"], "disease": ["x", "x"], "n_cells": [5, 6],
                            "simulated": [False, True]}, index=["S1/a", "S2/b"])
    per = pd.DataFrame({"S1/a": [1.0], "S2/b": [2.0]}, index=["G"])
    table = pd.DataFrame({"rank": [1], "mean": [1.5]}, index=["G"])
    r = GeneRanking(params=RankingParams(), table=table, samples=samples, per_sample=per)
    fig = spread_figure("G", r, r, title="<b>G</b> in<br>a long population label").to_dict()["layout"]
    assert not fig["yaxis"].get("title", {}).get("text") and not fig["yaxis2"].get("title", {}).get("text")
    assert [a["text"] for a in fig["annotations"]][:2] == ["attribution<br>(mean per sample)", "log expression<br>(mean per sample)"]
    assert fig["margin"]["t"] >= 100


def test_two_groups_of_cells_compared_donors_as_the_unit(data):
    """Issue 36 item 13: two groups picked on the UMAP (a lasso's points carry their cell
    positions) are compared in the Genes in a cell type view, each sample counting once."""
    from compute.query import compare_cell_groups, differential, sample_gene_means
    from dashboard.callbacks import cells as cs

    cells = data.atlas.cells
    mono = (cells["cell_type"] == MONO).to_numpy()
    normal = (cells["disease"] == "normal").to_numpy()
    a, b = np.flatnonzero(mono & ~normal), np.flatnonzero(mono & normal)
    lasso = lambda idx: {"points": [{"customdata": int(i), "x": 0, "y": 0} for i in idx] + [{"customdata": -5}, {"customdata": "x"}]}  # noqa: E731
    with pytest.raises(dash.exceptions.PreventUpdate):
        cs.set_group_a(data, None, lasso(a), None)
    empty = cs.set_group(data, "a", {"points": []}, None)
    assert empty["groups"] is dash.no_update and "No cell selected" in empty["note"]
    g = cs.set_group_a(data, 1, lasso(a), None)
    assert g["groups"]["a"] == cs.bit_set(sorted(map(int, a)), data.atlas.n_cells) and g["compare_disabled"] is True
    # the page sends the selection as a bit set (a list of 23,000 positions was refused)
    assert cs.set_group_a(data, 1, cs.bit_set(a, data.atlas.n_cells), None)["groups"] == g["groups"]
    g = cs.set_group_b(data, 1, lasso(b), g["groups"])
    assert g["compare_disabled"] is False and f"group B: {len(b):,} cells" in g["note"]
    out = cs.compare_groups(data, 1, g["groups"])
    assert out["tab"] == "cell_genes" and out["store"]["lasso"].startswith(cg.LASSO_PREFIX)
    assert "group B" in _texts(out["note"]) and out["cells_note"] is None
    # the same numbers as the per-sample means of each group, tested over samples
    ref = compare_cell_groups(data.atlas, a, b, cell_min=cs.GROUP_CELL_MIN)
    s_a, m_a = sample_gene_means(data.atlas, mono & ~normal, cell_min=cs.GROUP_CELL_MIN)
    s_b, m_b = sample_gene_means(data.atlas, mono & normal, cell_min=cs.GROUP_CELL_MIN)
    gene = out["rows"][0]["gene"]
    assert out["rows"][0]["mean_attr"] == pytest.approx(m_a[gene].mean(), rel=1e-3)
    assert out["rows"][0]["ref_mean"] == pytest.approx(m_b[gene].mean(), rel=1e-3, nan_ok=True)
    assert ref.table.loc[gene, "p"] == pytest.approx(differential(m_a[[gene]], m_b[[gene]]).loc[gene, "p"], nan_ok=True)
    assert len(ref.samples) == len(s_a) and len(ref.ref_samples) == len(s_b)
    # the spread and the send answer from the stored comparison
    spread = cg.show_spread(data, gene, out["store"])["spread"].to_dict()["layout"]
    assert spread["meta"]["gene"] == gene and "picked on the UMAP" in spread["title"]["text"]
    assert cg.send_top(data, 1, 3, out["store"])["genes"].count("\n") == 2
    # a tampered store, or a group of positions outside the atlas, is said, not raised
    assert cg.send_top(data, 1, 3, {"lasso": "nope", "label": "x"})["sent"].startswith("Nothing sent")
    bad = cs.compare_groups(data, 1, {"a": [data.atlas.n_cells + 3], "b": list(map(int, b))})
    assert bad["tab"] is dash.no_update and "Pick group A and group B first" in str(bad["cells_note"])
    assert bad["note"] is dash.no_update  # the ranking's own note is another output (the two once shared a name)


def test_the_cells_explorer_colours_splits_and_paints(data):
    """Issue 36 item 13: colour by any sample or donor column the cells carry, split by one,
    and one gene painted (unmeasured cells apart); every point names its cell."""
    from dashboard.callbacks import cells as cs
    from dashboard.views.cells import sample_columns

    cells = data.atlas.cells
    columns = sample_columns(cells)
    assert {"study", "sample", "donor", "disease"} <= set(columns) and "cell_id" not in columns and "n_counts" not in columns
    # a donor column the atlas had (sex) is offered as soon as the cells carry it
    with_sex = cells.assign(sex=np.where(cells["sample"].astype(str).str.len() % 2 == 0, "female", "male"))
    assert "sex" in sample_columns(with_sex)
    with pytest.raises(dash.exceptions.PreventUpdate):
        cs.draw_cells(data, "diseases", "study", None, "attr", None, None)
    fig = cs.draw_cells(data, "cells", "study", None, "attr", None, None)["figure"].to_dict()
    names = [t["name"] for t in fig["data"]]
    assert sorted(names) == sorted(cells["study"].astype(str).unique())
    colours = [t["marker"]["color"] for t in fig["data"]]
    assert len(set(colours)) == len(colours)  # every study its own colour
    assert sum(_values(t["customdata"]).size for t in fig["data"]) == data.atlas.n_cells
    split = cs.draw_cells(data, "cells", "cell_type", None, "attr", "disease", None)["figure"].to_dict()
    assert split["layout"]["meta"]["panels"] == sorted(cells["disease"].astype(str).unique())
    gene = data.atlas.genes[0]
    painted = cs.draw_cells(data, "cells", "study", gene, "expr", None, None)
    values = data.atlas.gene_values([gene], store="expr")[:, 0]
    drawn = {t["name"]: t for t in painted["figure"].to_dict()["data"]}
    cells_drawn = _values(drawn[gene]["customdata"])
    assert cells_drawn.size == int(np.isfinite(values).sum())
    np.testing.assert_allclose(_values(drawn[gene]["marker"]["color"]), values[cells_drawn], rtol=1e-6)
    assert cs.draw_cells(data, "cells", "no_such_column", "NOT_A_GENE", "attr", None, None)["note"]


def _values(v) -> np.ndarray:
    """A figure array as numbers (Plotly writes long arrays as {"dtype", "bdata"}: base64)."""
    import base64

    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def test_presenter_mode_draws_the_tab_in_large_type_and_keeps_names_apart(data, mono):
    """Issue 36, item 7: the rank-rank plot's names stayed 11 px and the spread's ticks 12 px in
    presenter mode, and switching it on did not draw them again. Now the ranking (with the switch
    as a State), a switch while a population shows (its own callback, from the stored population,
    two groups compared included) and the spread draw in presenter type; the names kept on the
    larger plot do not run into each other by the same estimate that places them."""
    from dashboard.views.cell_genes import _PRESENTER_PLOT, PRESENTER_LABEL_PX, _labels_apart
    from dashboard.views.results import PRESENTER_FONT

    out, attr, expr = mono
    big = cg.rank_genes(data, presenter=True, **_settings(rank_cell_types=[MONO]))["figure"]
    switched = cg.present_ranking(data, True, out["store"])["figure"]
    back = cg.present_ranking(data, False, out["store"])["figure"]
    for fig in (big, switched):
        assert fig.layout.font.size == PRESENTER_FONT["size"]
        named = [t for t in fig.data if t.mode == "markers+text"]
        assert named and all(t.textfont.size == PRESENTER_LABEL_PX for t in named)
    assert back.layout.font.size != PRESENTER_FONT["size"] and back.to_json() == out["figure"].to_json()
    shown = {str(g) for t in big.data if t.mode == "markers+text" for g in t.text if g}
    assert len(shown) >= 3
    # the kept names pass the estimate again on their own: none would have been dropped for another kept one
    at = {g: (float(x), float(y)) for t in big.data if t.mode == "markers+text" for g, x, y in zip(t.customdata[:, 0], t.x, t.y, strict=True)}
    far = float(max(len(attr.table), len(expr.table)) + 1)
    assert _labels_apart(sorted(shown), at, far, font_px=PRESENTER_LABEL_PX, **_PRESENTER_PLOT) == shown
    spread = cg.show_spread(data, out["gene"], out["store"], True)["spread"]
    assert spread.layout.font.size == PRESENTER_FONT["size"]
    assert all(ax.tickfont.size >= PRESENTER_FONT["size"] for ax in (spread.layout.xaxis, spread.layout.yaxis))
    with pytest.raises(dash.exceptions.PreventUpdate):
        cg.present_ranking(data, True, None)  # nothing ranked yet: nothing to draw

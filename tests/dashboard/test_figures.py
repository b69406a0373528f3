"""Figure functions on their ``fig.to_dict()`` data (trace types, values, order, labels), and the
genes x groups summary behind the heatmap and dot plot. No browser, no pixels."""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from compute.query import QueryParams, gene_by_group, gene_group_summary, run_query
from compute.reference import ms1_signature
from dashboard import figures as F
from dashboard.figures.cells import umap_figure
from dashboard.figures.diseases import disease_ranking_figure, driver_genes_figure, robustness_figure, score_comparison_figure, score_scatter_figure
from dashboard.figures.genes import dotplot_figure, heatmap_figure
from dashboard.figures.modules import coattribution_heatmap


def arr(value) -> np.ndarray:
    """A trace array from ``to_dict()``: plotly writes numpy arrays as base64 typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):  # 2-D arrays carry their shape as "rows, cols"
            shape = tuple(int(n) for n in shape.split(","))
        return out.reshape(shape) if shape is not None else out
    return np.asarray(value)


def traces(fig, kind=None) -> list[dict]:
    data = fig.to_dict()["data"]
    return [t for t in data if kind is None or t["type"] == kind]


def is_empty(fig) -> bool:
    return "empty" in (fig.to_dict()["layout"].get("meta") or {})


@pytest.fixture(scope="module")
def query(tiny_atlas):
    cts = tuple(c for c in tiny_atlas.cells["cell_type"].astype(str).unique() if "monocyte" in c.lower())
    # min_coverage 0: the one real study measured few MS1 genes, and the figures must show real and simulated samples
    params = QueryParams(genes=tuple((g, None) for g in ms1_signature()), cell_types=cts, n_null=200, evidence=True, expression=True,
                         min_coverage=0.0)
    return run_query(tiny_atlas, params)


# -- disease ranking -----------------------------------------------------------------------------

def test_format_p_reports_the_floor_as_an_upper_bound():
    assert F.format_p(0.012) == "p = 0.012"
    assert F.format_p(0.5, 1 / 1001) == "p = 0.5"
    assert F.format_p(1 / 1001, 1 / 1001) == "p ≤ 0.001"
    assert F.format_p(1 / 201, 1 / 201) == "p ≤ 0.005"
    assert F.format_p(float("nan")) == "p n/a"


def test_ranking_boxes_and_points_follow_the_ranking_with_counts(query):
    fig = disease_ranking_figure(query.samples, query.diseases, base_rate=10.0, title="t")
    layout = fig.to_dict()["layout"]
    keys = layout["xaxis"]["categoryarray"]
    assert [k.split("<br>")[0] for k in keys] == list(query.diseases["group"])
    for key, r in zip(keys, query.diseases.itertuples(), strict=True):
        counts = key.split("<br>")[1]
        assert counts.startswith(f"{r.n_samples} sample") and f"{r.n_studies} stud" in counts
    assert layout["xaxis"]["tickvals"] == keys and len(layout["xaxis"]["ticktext"]) == len(keys)
    assert not traces(fig, "bar")  # no null given: no band
    boxes = traces(fig, "box")
    assert [b["name"] for b in boxes] == list(query.diseases["group"])
    points = [t for t in traces(fig, "scatter") if t.get("x") and t["x"][0] is not None]
    for key, group in zip(keys, query.diseases["group"], strict=True):
        mine = [t for t in points if t["x"][0] == key]
        got = np.sort(np.concatenate([arr(t["y"]) for t in mine]))
        want = np.sort(query.samples.loc[query.samples["disease"] == group, "hit_pct"].to_numpy())
        np.testing.assert_allclose(got, want)
        for t in mine:  # open circles exactly for the samples of simulated studies
            assert all(c[4] == ("SIMULATED" if t["marker"]["symbol"] == "circle-open" else "real") for c in t["customdata"])
    legend = {t["name"] for t in traces(fig) if t.get("showlegend")}
    assert {"sample (real study)", "sample (SIMULATED study)"} <= legend  # the tiny atlas has both
    assert layout["shapes"][0]["y0"] == 10.0  # base rate line


def test_ranking_draws_the_null_band_behind_each_box_and_p_under_the_label(query):
    null = query.null["disease"]
    fig = disease_ranking_figure(query.samples, query.diseases, base_rate=10.0, title="t", null=null.groups, p_floor=null.p_floor)
    data = traces(fig)
    keys = fig.to_dict()["layout"]["xaxis"]["categoryarray"]
    table = null.groups.set_index("group").loc[list(query.diseases["group"])]
    (band,) = traces(fig, "bar")
    assert band["x"] == keys
    np.testing.assert_allclose(arr(band["base"]), table["null_lo"])
    np.testing.assert_allclose(arr(band["y"]), table["null_hi"] - table["null_lo"])
    assert "95%" in band["name"] and band["showlegend"]
    # bars sit in plotly's layer under boxes; and the band trace comes first as well
    assert data.index(band) < min(i for i, t in enumerate(data) if t["type"] == "box")
    median = next(t for t in data if t.get("name") == "null median")
    np.testing.assert_allclose(arr(median["y"]), table["null_median"])
    p_lines = [k.split("<br>")[2] for k in keys]
    for line, p in zip(p_lines, table["p_value"], strict=True):
        # the reference (normal) is compared with itself: it has no p-value
        assert line == ("p n/a" if np.isnan(p) else f"p ≤ {null.p_floor:.2g}" if p <= null.p_floor else f"p = {p:.2g}")
    assert p_lines[0] == "p ≤ 0.005"  # the planted disease sits at the floor of 200 draws
    assert fig.to_dict()["layout"]["meta"]["p_values"] == pytest.approx(table["p_value"].to_dict(), nan_ok=True)
    # every scatter trace carries a marker symbol (open circles mark simulated samples)
    assert all("symbol" in t["marker"] for t in data if t["type"] == "scatter")


def test_ranking_empty():
    fig = disease_ranking_figure(pd.DataFrame(), pd.DataFrame(), base_rate=10, title="t")
    assert is_empty(fig) and "cell_min" in fig.to_dict()["layout"]["annotations"][0]["text"]


# -- UMAP ------------------------------------------------------------------------------------------

def _cells(n=500, seed=0):
    rng = np.random.default_rng(seed)
    hover = pd.DataFrame({
        "study": rng.choice(["S1", "S2"], n), "sample": [f"s{i % 20}" for i in range(n)],
        "cell_type": rng.choice(["mono", "T", "B"], n), "disease": rng.choice([f"d{i}" for i in range(10)], n),
        "simulated": rng.random(n) < 0.5,
    })
    return rng.normal(size=(n, 2)), rng.random(n), hover, rng.random(n) < 0.6


def test_umap_score_mode_subsamples_deterministically_and_greys_the_rest():
    coords, values, hover, sel = _cells()
    fig = umap_figure(coords, values, hover, sel, max_points=200, seed=1)
    layout = fig.to_dict()["layout"]
    assert layout["meta"]["shown"] == 200 and layout["meta"]["total"] == 500
    assert any("200 of 500 cells shown" in a["text"] for a in layout["annotations"])
    grey, scored = traces(fig)
    assert grey["type"] == scored["type"] == "scattergl" and grey["name"] == "not selected"
    assert arr(grey["x"]).size + arr(scored["x"]).size == 200
    colours = arr(scored["marker"]["color"])
    assert np.all(np.diff(colours) >= 0)  # highest scores drawn last, on top
    idx = F.subsample_indices(500, 200, seed=1)
    np.testing.assert_allclose(np.sort(colours), np.sort(values[idx][sel[idx]]))
    again = umap_figure(coords, values, hover, sel, max_points=200, seed=1)
    np.testing.assert_array_equal(arr(traces(again)[1]["x"]), arr(scored["x"]))
    other = umap_figure(coords, values, hover, sel, max_points=200, seed=2)
    assert not np.array_equal(arr(traces(other)[1]["x"]), arr(scored["x"]))
    # hover: study, sample, cell type, disease, score; SIMULATED exactly for simulated cells
    template = scored["hovertemplate"]
    assert all(f"customdata[{j}]" in template for j in range(6)) and "score" in template
    custom = np.asarray(scored["customdata"], dtype=object)
    by_position = {(round(x, 9), round(y, 9)): s for (x, y), s in zip(coords.tolist(), hover["simulated"], strict=True)}
    for x, y, c in zip(arr(scored["x"]), arr(scored["y"]), custom, strict=True):
        assert ("SIMULATED" in c[5]) == by_position[(round(x, 9), round(y, 9))]


def test_umap_below_max_points_shows_everything():
    coords, values, hover, sel = _cells(n=50)
    meta = umap_figure(coords, values, hover, sel).to_dict()["layout"]["meta"]
    assert meta["shown"] == meta["total"] == 50


def test_umap_categorical_one_trace_per_category_largest_first():
    coords, values, hover, sel = _cells()
    fig = umap_figure(coords, values, hover, sel, color_by="disease")
    grey, *cats = traces(fig)
    assert grey["name"] == "not selected" and all(t["type"] == "scattergl" for t in cats)
    named = cats
    counts = hover.loc[sel, "disease"].value_counts()
    # every category named, none in a grey "other" (issue 36 item 6): the palette, then more distinct colours
    assert [t["name"] for t in named] == sorted(counts.index, key=lambda c: (-counts[c], c))
    assert [t["marker"]["color"] for t in named][:7] == [c for c in F.PALETTE if c != "#F0E442"]
    assert len({t["marker"]["color"] for t in named}) == len(named) == 10
    assert grey["marker"]["color"] not in {t["marker"]["color"] for t in named}
    for t in named:
        assert {c[3] for c in t["customdata"]} == {t["name"]}
    assert sum(arr(t["x"]).size for t in cats) == sel.sum()
    assert fig.to_dict()["layout"]["meta"]["color_by"] == "disease"


def test_umap_on_the_tiny_atlas(tiny_atlas, query):
    fig = umap_figure(tiny_atlas.umap(), query.scores, tiny_atlas.cells, query.selection, color_by="cell_type")
    cats = traces(fig)[1:]
    assert sum(arr(t["x"]).size for t in cats) == query.n_selected
    assert {t["name"] for t in cats} == set(tiny_atlas.cells["cell_type"].astype(str)[query.selection])
    assert fig.to_dict()["layout"]["meta"]["simulated"] is True


def test_umap_rejects_unknown_colouring_and_handles_no_coordinates():
    coords, values, hover, sel = _cells(n=20)
    with pytest.raises(ValueError, match="color_by"):
        umap_figure(coords, values, hover, sel, color_by="nope")
    assert is_empty(umap_figure(np.zeros((0, 2)), values[:0], hover[:0], sel[:0]))


# -- heatmap and dot plot ------------------------------------------------------------------------

def _blocks() -> pd.DataFrame:
    """Genes in two interleaved blocks, the columns interleaved too: g0, g2, g4 high in A and B;
    g1, g3, g5 high in C and D."""
    high = np.array([[5, 0, 4, 0], [0, 3, 0, 3.5]], dtype=float)
    rows = [high[i % 2] + 0.1 * i for i in range(6)]
    return pd.DataFrame(rows, index=[f"g{i}" for i in range(6)], columns=["A", "C", "B", "D"])


def test_heatmap_score_order():
    table = _blocks()
    heat = traces(heatmap_figure(table, order="score"), "heatmap")[0]
    assert heat["y"] == list(table.mean(axis=1).sort_values(ascending=False).index)
    assert heat["x"] == list(table.mean(axis=0).sort_values(ascending=False).index)
    np.testing.assert_allclose(arr(heat["z"]), table.loc[heat["y"], heat["x"]].to_numpy())


def test_heatmap_cluster_order_keeps_blocks_together():
    table = _blocks()
    fig = heatmap_figure(table, order="cluster", group_label="study")
    heat = traces(fig, "heatmap")[0]
    blocks = [int(g[1]) % 2 for g in heat["y"]]
    assert blocks in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    assert {frozenset(heat["x"][:2]), frozenset(heat["x"][2:])} == {frozenset("AB"), frozenset("CD")}
    np.testing.assert_allclose(arr(heat["z"]), table.loc[heat["y"], heat["x"]].to_numpy())
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"] == "study" and layout["meta"]["genes"] == heat["y"]
    assert "attribution" in heat["colorbar"]["title"]["text"]


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 2), (3, 1)])
def test_heatmap_clustering_is_guarded_for_tiny_tables(shape):
    table = pd.DataFrame(np.arange(np.prod(shape), dtype=float).reshape(shape),
                         index=[f"g{i}" for i in range(shape[0])], columns=[f"c{j}" for j in range(shape[1])])
    heat = traces(heatmap_figure(table, order="cluster"), "heatmap")[0]
    assert sorted(heat["y"]) == list(table.index) and sorted(heat["x"]) == list(table.columns)


def test_heatmap_bad_order_and_empty():
    with pytest.raises(ValueError, match="order"):
        heatmap_figure(_blocks(), order="alphabet")
    assert is_empty(heatmap_figure(pd.DataFrame()))
    assert is_empty(heatmap_figure(pd.DataFrame(index=["a", "b"])))


def test_dotplot_colour_is_the_mean_and_area_the_percentage():
    mean = _blocks()
    pct = pd.DataFrame(np.tile([100.0, 25.0, 0.0, np.nan], (6, 1)), index=mean.index, columns=mean.columns)
    fig = dotplot_figure(mean, pct, group_label="disease", order="score")
    (dots,) = traces(fig)
    layout = fig.to_dict()["layout"]
    meta = layout["meta"]
    assert meta["genes"] == traces(heatmap_figure(mean, order="score"))[0]["y"]
    colour, size = arr(dots["marker"]["color"]), arr(dots["marker"]["size"])
    assert len(dots["x"]) == len(dots["y"]) == size.size == mean.size
    for xi, yi, c, s, text in zip(dots["x"], dots["y"], colour, size, dots["customdata"], strict=True):
        assert c == mean.at[yi, xi]
        p = pct.at[yi, xi]
        assert s == pytest.approx(0.0 if np.isnan(p) else meta["max_size"] * np.sqrt(p / 100))
        assert text == ("no hit cells in this group" if np.isnan(p) else f"non-zero in {p:.0f}% of hit cells")
    key = [sh for sh in layout["shapes"] if sh["type"] == "circle"]
    assert [sh["name"] for sh in key] == ["25%", "50%", "100%"]
    assert [sh["x1"] - sh["x0"] for sh in key] == pytest.approx([meta["max_size"] * f for f in (0.5, np.sqrt(0.5), 1.0)])
    assert is_empty(dotplot_figure(pd.DataFrame(), pd.DataFrame(), group_label="disease"))


def test_dotplot_on_the_query(tiny_atlas, query):
    mean, pct = gene_group_summary(tiny_atlas, query, "disease", max_genes=20)
    fig = dotplot_figure(mean, pct, group_label="disease")
    dots = traces(fig)[0]
    assert set(dots["y"]) == set(mean.index) and set(dots["x"]) == set(mean.columns)
    assert arr(dots["marker"]["size"]).size == mean.size


# -- gene x group summary ------------------------------------------------------------------------

def test_gene_group_summary_matches_a_direct_computation(tiny_atlas, query):
    mean, pct = gene_group_summary(tiny_atlas, query, "disease", max_genes=25)
    assert mean.shape == pct.shape == (25, mean.shape[1])
    assert list(mean.index) == list(pct.index) and list(mean.columns) == list(pct.columns)
    genes = list(query.resolution.matched)
    values = tiny_atlas.gene_values(genes)
    labels = tiny_atlas.cells["disease"].astype(str).to_numpy()
    sel = query.selection
    hit = sel & (np.nan_to_num(query.scores, nan=-np.inf) > query.threshold)
    groups = sorted(set(labels[sel]))
    assert list(mean.columns) == groups
    # a gene a cell's study did not measure is NaN: missing, left out of the means and percentages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a gene no study of a group measured: all-NaN
        direct_mean = np.stack([np.nanmean(values[sel & (labels == g)], axis=0) for g in groups], axis=1)
        present = np.where(np.isnan(values), np.nan, values != 0)
        direct_pct = np.stack([100 * np.nanmean(present[hit & (labels == g)], axis=0) for g in groups], axis=1)
        top = np.argsort(-np.nan_to_num(np.nanmean(direct_mean, axis=1), nan=0.0), kind="stable")[:25]
    assert list(mean.index) == [genes[i] for i in top]
    np.testing.assert_allclose(mean.to_numpy(), direct_mean[top], rtol=1e-5)
    np.testing.assert_allclose(pct.to_numpy(), direct_pct[top], rtol=1e-9)
    # the same genes and means as the heatmap's table
    pd.testing.assert_frame_equal(mean, gene_by_group(tiny_atlas, query, "disease", max_genes=25).loc[mean.index], rtol=1e-6)


def test_gene_group_summary_by_study_and_unknown_column(tiny_atlas, query):
    from compute.errors import QueryError

    mean, pct = gene_group_summary(tiny_atlas, query, "study")
    assert set(mean.columns) == set(tiny_atlas.cells["study"].astype(str)[query.selection])
    assert ((pct.fillna(0) >= 0) & (pct.fillna(0) <= 100)).all().all()
    with pytest.raises(QueryError, match="no such column"):
        gene_group_summary(tiny_atlas, query, "nope")


# -- evidence --------------------------------------------------------------------------------------

def test_driver_genes_bars_in_share_order(query):
    shares = query.evidence.gene_shares
    top = query.diseases["group"].iloc[0]
    fig = driver_genes_figure(shares, top, top=10)
    (bar,) = traces(fig, "bar")
    want = shares[top].sort_values(ascending=False).iloc[:10]
    assert bar["orientation"] == "h" and bar["y"] == list(want.index)
    np.testing.assert_allclose(arr(bar["x"]), want.to_numpy())
    assert bar["text"][0] == f"{want.iloc[0]:.1f}%"
    meta = fig.to_dict()["layout"]["meta"]
    assert meta["rest_pct"] == pytest.approx(100 - want.sum())
    assert fig.to_dict()["layout"]["yaxis"]["autorange"] == "reversed"  # largest on top
    assert is_empty(driver_genes_figure(shares, "not a disease"))
    assert is_empty(driver_genes_figure(pd.DataFrame(), top))
    assert is_empty(driver_genes_figure(pd.DataFrame({"x": [0.0, 0.0]}, index=["a", "b"]), "x"))


def test_robustness_one_line_per_disease_with_labels_and_highlight(query):
    th = query.evidence.thresholds
    top = query.diseases["group"].iloc[0]
    fig = robustness_figure(th, highlight=top)
    base, *lines = traces(fig, "scatter")
    assert base["name"].startswith("chance level")
    np.testing.assert_allclose(arr(base["y"]), 100 - np.array([80.0, 90.0, 95.0, 99.0]))
    # given the chance levels the plot's rule met (ties at a cut-off lower them), the line is at them, named
    chance = pd.Series([15.0, 6.0, 4.0, 1.0], index=[80, 90, 95, 99])
    tied = robustness_figure(th, highlight=top, chance=chance)
    np.testing.assert_allclose(arr(traces(tied, "scatter")[0]["y"]), chance.to_numpy())
    assert "chance (dashed)" in [a["text"] for a in tied.to_dict()["layout"]["annotations"]]
    assert {t["name"] for t in lines} == set(th.index)
    for t in lines:
        np.testing.assert_allclose(arr(t["x"]), [80, 90, 95, 99])
        np.testing.assert_allclose(arr(t["y"]), th.loc[t["name"]].to_numpy(), equal_nan=True)
        assert t["line"]["width"] == (5 if t["name"] == top else 2)
    layout = fig.to_dict()["layout"]
    texts = [a["text"] for a in layout["annotations"]]
    assert all(any(str(g) in s for s in texts) for g in th.index) and f"<b>{top}</b>" in texts and "chance (dashed)" in texts
    # lines ordered by the mean hit % across thresholds (the top disease at the query's rule need not lead there)
    by_mean = th.mean(axis=1, skipna=True).sort_values(ascending=False, kind="stable")
    assert layout["meta"]["highlight"] == top and layout["meta"]["order"] == [str(g) for g in by_mean.index if th.loc[g].notna().any()]
    assert layout["yaxis"]["title"]["text"] == "mean sample hit %"


def test_robustness_keeps_gaps_and_handles_empty():
    th = pd.DataFrame({80.0: [30.0, 10.0], 90.0: [20.0, np.nan], 99.0: [5.0, np.nan]}, index=["a", "b"])
    fig = robustness_figure(th)
    b = next(t for t in traces(fig) if t["name"] == "b")
    assert np.isnan(arr(b["y"])[1:]).all()
    assert all(t["line"]["width"] == 2 for t in traces(fig)[1:])  # no highlight
    assert is_empty(robustness_figure(pd.DataFrame()))
    assert is_empty(robustness_figure(th * np.nan))


def test_score_comparison_pairs_diseases_with_both_ranks(query):
    attr, expr = query.diseases, query.expression_diseases
    fig = score_comparison_figure(attr, expr)
    meta = fig.to_dict()["layout"]["meta"]
    assert meta["order"] == list(attr["group"])
    e_rank = expr.set_index("group")["rank"]
    for r in attr.itertuples():
        assert meta["ranks"][r.group] == [r.rank, int(e_rank[r.group])]
    a_trace = next(t for t in traces(fig) if t["name"] == "attribution score")
    e_trace = next(t for t in traces(fig) if t["name"].startswith("expression score"))
    np.testing.assert_allclose(arr(a_trace["x"]), attr["mean_hit_pct"])
    np.testing.assert_allclose(arr(e_trace["x"]), expr.set_index("group").loc[attr["group"], "mean_hit_pct"])
    assert a_trace["y"][0].startswith(attr["group"].iloc[0]) and "#1 / #" in a_trace["y"][0]
    assert fig.to_dict()["layout"]["xaxis"]["title"]["text"] == "mean sample hit %"
    # open markers exactly for diseases whose samples are all simulated
    sim = (attr["n_simulated_samples"] >= attr["n_samples"]).to_numpy()
    assert [s.endswith("-open") for s in a_trace["marker"]["symbol"]] == list(sim)


def test_score_comparison_with_a_disease_ranked_under_one_score_only(query):
    attr = query.diseases.iloc[1:]
    fig = score_comparison_figure(attr, query.expression_diseases)
    meta = fig.to_dict()["layout"]["meta"]
    missing = query.diseases["group"].iloc[0]
    assert meta["order"][-1] == missing and meta["ranks"][missing][0] is None
    assert is_empty(score_comparison_figure(attr, None))
    assert is_empty(score_comparison_figure(pd.DataFrame(), pd.DataFrame()))


def test_score_scatter_on_the_query(tiny_atlas, query):
    sel = query.selection
    a, e = query.scores[sel], query.expression_scores[sel]
    labels = tiny_atlas.cells["disease"].astype(str).to_numpy()[sel]
    simulated = tiny_atlas.cells["simulated"].to_numpy()[sel]
    fig = score_scatter_figure(a, e, labels, simulated=simulated, max_points=500, seed=3)
    meta = fig.to_dict()["layout"]["meta"]
    assert meta["shown"] == 500 and meta["total"] == sel.sum()
    assert meta["spearman"] == pytest.approx(spearmanr(a, e).statistic)
    data = traces(fig)
    assert all(t["type"] == "scattergl" for t in data)
    assert sum(arr(t["x"]).size for t in data) == 500
    idx = F.subsample_indices(sel.sum(), 500, 3)
    np.testing.assert_allclose(np.sort(np.concatenate([arr(t["x"]) for t in data])), np.sort(a[idx]))
    for t in data:  # open circles and the SIMULATED hover exactly for simulated cells
        sim = t["marker"]["symbol"] == "circle-open"
        assert ("SIMULATED" in t["hovertemplate"]) == sim
        if t["name"].startswith("other"):  # its points' own labels
            assert set(t["customdata"]) <= set(labels) and "%{customdata}" in t["hovertemplate"]
        else:  # one label: the trace's name
            assert t["name"] in set(labels) and "customdata" not in t and "%{fullData.name}" in t["hovertemplate"]
    again = score_scatter_figure(a, e, labels, simulated=simulated, max_points=500, seed=3)
    assert again.to_dict() == fig.to_dict()
    titles = fig.to_dict()["layout"]
    assert "attribution" in titles["xaxis"]["title"]["text"] and "expression" in titles["yaxis"]["title"]["text"]


def test_score_scatter_drops_non_finite_and_handles_empty():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    e = np.array([1.0, np.nan, 3.0, 2.0])
    fig = score_scatter_figure(a, e, np.array(["x", "x", "y", "y"]))
    assert fig.to_dict()["layout"]["meta"]["total"] == 2
    assert is_empty(score_scatter_figure(np.zeros(0), np.zeros(0), np.zeros(0)))
    assert is_empty(score_scatter_figure(a, None, np.array(["x"] * 4)))
    assert is_empty(score_scatter_figure(np.array([np.nan]), np.array([1.0]), np.array(["x"])))


# -- gene modules --------------------------------------------------------------------------------

def _coattribution_input():
    """Six genes: four signature genes (two of M2, one of M1, one in no module), then two missing
    genes (one in no module, one of M1), with distinct correlations to check the reordering."""
    genes = ["A", "B", "C", "D", "E", "F"]
    modules = ["M2", "", "M1", "M2", "", "M1"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 6))
    corr = np.corrcoef(x @ x.T)
    return corr, genes, modules


def test_coattribution_heatmap_orders_each_block_by_module_and_marks_the_split():
    corr, genes, modules = _coattribution_input()
    fig = coattribution_heatmap(corr, genes, 4, modules=modules, title="t", simulated=True)
    layout = fig.to_dict()["layout"]
    meta = layout["meta"]
    # signature block first: M2 (two genes, input order kept), then M1, then no module; then the
    # missing block: M1, then no module
    assert meta["genes"] == ["A", "D", "C", "B", "F", "E"]
    assert meta["modules"] == ["M2", "M2", "M1", "", "M1", ""]
    assert meta["n_signature"] == 4 and meta["split"] == 3.5
    (heat,) = traces(fig, "heatmap")
    z = arr(heat["z"]).astype(float)
    assert z.shape == (6, 6)
    order = [genes.index(g) for g in meta["genes"]]
    expected = corr[np.ix_(order, order)]
    off = ~np.eye(6, dtype=bool)
    np.testing.assert_allclose(z[off], expected[off])
    assert np.isnan(np.diag(z)).all()  # r = 1 by definition: left blank
    assert list(heat["x"]) == list(heat["y"]) == meta["genes"]
    assert heat["zmid"] == 0 and heat["zmax"] == pytest.approx(np.abs(expected[off]).max()) and heat["zmin"] == -heat["zmax"]
    assert layout["yaxis"]["range"] == [5.5, -0.5] and layout["xaxis"]["range"] == [-0.5, 5.5]  # the signature block top left
    assert layout["xaxis"]["ticktext"] == ["A · M2", "D · M2", "C · M1", "B", "F · M1", "E"]
    lines = [s for s in layout["shapes"] if s["type"] == "line"]
    assert len(lines) == 2
    assert {(s["x0"], s["x1"]) for s in lines} == {(3.5, 3.5), (-0.5, 5.5)}
    assert {(s["y0"], s["y1"]) for s in lines} == {(-0.5, 5.5), (3.5, 3.5)}
    notes = [a["text"] for a in layout["annotations"]]
    assert "<b>signature (4) ◂</b>" in notes and "<b>▸ missing from the signature (2)</b>" in notes
    # the narrow block (2 of 6 genes): its name on a line of its own, held at the plot's right end, never
    # past the figure's edge (issue 36: cut at 1280 px); the wide block's name reads away from the split
    placed = {a["text"]: a for a in layout["annotations"]}
    missing, signature = placed["<b>▸ missing from the signature (2)</b>"], placed["<b>signature (4) ◂</b>"]
    assert (missing["x"], missing["xanchor"], missing["yshift"]) == (5.5, "right", 20)
    assert (signature["x"], signature["xanchor"], signature.get("yshift")) == (3.5, "right", None)
    # the SIMULATED note is the title's last line: in the title it cannot sit on the block names
    assert not any("SIMULATED" in n for n in notes)
    title = layout["title"]["text"].split("<br>")
    assert title[0] == "t" and "includes SIMULATED data" in title[-1]


def test_coattribution_heatmap_edge_cases():
    corr, genes, modules = _coattribution_input()
    only_signature = coattribution_heatmap(corr, genes, 6, modules=modules).to_dict()["layout"]
    assert only_signature["meta"]["split"] is None and not only_signature.get("shapes")
    assert "SIMULATED" not in (only_signature["title"]["text"] or "")
    no_modules = coattribution_heatmap(corr, genes, 2).to_dict()["layout"]["meta"]
    assert no_modules["genes"] == genes and no_modules["modules"] == [""] * 6  # no modules: order kept
    assert is_empty(coattribution_heatmap(np.zeros((0, 0)), [], 0))
    with pytest.raises(ValueError, match="6 x 6"):
        coattribution_heatmap(corr[:5, :5], genes, 2)
    with pytest.raises(ValueError, match="n_signature"):
        coattribution_heatmap(corr, genes, 7)
    with pytest.raises(ValueError, match="one module per gene"):
        coattribution_heatmap(corr, genes, 2, modules=modules[:3])


@pytest.mark.parametrize("n", [6, 24, 75, 200])
def test_coattribution_heatmap_in_presenter_mode_names_rows_apart_in_large_type(n):
    """Issue 36, item 7: in presenter mode the modules heatmap's names were 9 px. Now every name
    is 20 px and the rows named are at least a line apart on the plot (every k-th row when all
    would collide, said in the title), the columns by hover; the plot stays under 640 px tall."""
    from dashboard.figures.modules import _PRESENTER_LINE_PX, _PRESENTER_PLOT_PX, PRESENTER_LABEL_PX

    rng = np.random.default_rng(n)
    genes = [f"G{i}" for i in range(n)]
    corr = np.corrcoef(rng.normal(size=(n, 30)))
    modules = [f"M{i % 4 + 1}" if i % 3 else "" for i in range(n)]
    layout = coattribution_heatmap(corr, genes, n // 2, modules=modules, title="t", presenter=True).to_dict()["layout"]
    y, x = layout["yaxis"], layout["xaxis"]
    assert y["tickfont"]["size"] == PRESENTER_LABEL_PX and x["showticklabels"] is False
    assert all(a["font"]["size"] >= PRESENTER_LABEL_PX for a in layout["annotations"])
    drawn = layout["meta"]["genes"]
    named = [drawn.index(g) for g in y["tickvals"]]
    assert named == list(range(0, n, named[1] - named[0] if len(named) > 1 else 1)) and layout["meta"]["named"] == y["tickvals"]
    step = named[1] - named[0]
    plot = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    assert plot <= _PRESENTER_PLOT_PX + 1 and step * plot / n >= _PRESENTER_LINE_PX - 1e-9
    assert step == 1 or step * (plot / n) < 2 * _PRESENTER_LINE_PX + plot / n  # no more rows skipped than needed
    assert (f"every {step}" in layout["title"]["text"]) == (step > 1)
    plain = coattribution_heatmap(corr, genes, n // 2, modules=modules, title="t").to_dict()["layout"]
    assert plain["yaxis"]["tickvals"] == drawn and plain["yaxis"]["tickfont"]["size"] in (9, 11)


# -- issue 18: numbers one way, titles and labels that fit, the reading sentence ------------------
def _plain(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text)


def test_numbers_are_formatted_one_way():
    fmt = F.format_value
    assert [fmt(38.46, "pct"), fmt(0.0437, "p"), fmt(0.00329, "q"), fmt(8709, "count"), fmt(0.885, "share")] == \
        ["38.5", "0.044", "0.0033", "8,709", "88%"]
    assert fmt(1 / 1001, "p", floor=1 / 1001) == "≤ 0.001" and fmt(0.5, "p", floor=1 / 1001) == "0.5"
    assert fmt(None, "p") == fmt(float("nan"), "q") == "–"
    with pytest.raises(ValueError, match="kind must be one of"):
        fmt(1, "percent")
    # the grid says the same with d3-format: one decimal for hit %, two significant digits for p and q
    assert F.GRID_FORMATS["pct"] == "d3.format('.1f')" and F.GRID_FORMATS["p"] == F.GRID_FORMATS["q"] == "d3.format('.2~g')"


def test_bh_q_values_by_hand():
    q = F.bh_q_values({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5, "e": None})
    # sorted p 0.01, 0.03, 0.04, 0.5 over m = 4: q = min over j >= i of p_j * m / j
    assert q == pytest.approx({"a": 0.04, "b": 0.04 * 4 / 3, "c": 0.04 * 4 / 3, "d": 0.5})
    assert F.bh_q_values({}) == {} and F.bh_q_values({"x": float("nan")}) == {}


def test_titles_wrap_and_carry_the_simulated_note_below_the_toolbar():
    long = "Mean attribution: genes x disease in every monocyte of every study that measured the signature well enough"
    fig = heatmap_figure(_blocks(), title=long, simulated=True)
    layout = fig.to_dict()["layout"]
    lines = layout["title"]["text"].split("<br>")
    assert len(lines) == 3 and all(len(_plain(line)) <= 78 for line in lines)
    assert "includes SIMULATED data" in lines[-1] and not layout.get("annotations")
    # the title starts below the toolbar's band and the plot below the title's lines
    assert layout["title"]["pad"]["t"] >= 30 and layout["margin"]["t"] >= layout["title"]["pad"]["t"] + 22 * len(lines)
    short = heatmap_figure(_blocks(), title="t").to_dict()["layout"]
    assert short["margin"]["t"] < layout["margin"]["t"] and short["height"] < layout["height"]


def test_heatmap_and_dotplot_name_the_groups_on_top():
    heat = heatmap_figure(_blocks(), title="t").to_dict()["layout"]
    assert heat["xaxis"]["side"] == "top"
    mean = _blocks()
    pct = mean * 0 + 50
    dot = dotplot_figure(mean, pct, group_label="disease", title="t").to_dict()["layout"]
    assert dot["xaxis"]["side"] == "top"
    # the dot-size key moved below the plot, out of the group names' way
    assert all(s["yanchor"] == 0 and s["y1"] < 0 for s in dot["shapes"])
    assert all(a["y"] == 0 and a["yshift"] < 0 for a in dot["annotations"])
    assert dot["margin"]["b"] >= 45


def test_ranking_labels_wrap_to_fit_and_stand_at_an_angle_when_many():
    def ranking(names):
        n = len(names)
        table = pd.DataFrame({"group": names, "rank": range(1, n + 1), "n_samples": 3, "n_studies": 1, "mean_hit_pct": 10.0,
                              "median_hit_pct": 10.0, "n_cells": 100})
        samples = pd.DataFrame({"disease": names, "hit_pct": 10.0, "simulated": True, "study": "S", "sample": "s",
                                "n_cells": 100, "n_hits": 10})
        return samples, table

    names = [f"systemic lupus erythematosus {i}" for i in range(10)]
    layout = disease_ranking_figure(*ranking(names), base_rate=10, title="t").to_dict()["layout"]
    width = int(780 / 10 / 6.8 - 1)
    for tick in layout["xaxis"]["ticktext"]:
        name_lines = tick.split("<br>")[:-2]  # the name, then samples and studies
        assert all(len(line) <= width for line in name_lines), tick
    assert "erythemat-" in layout["xaxis"]["ticktext"][0]  # a word too long for its column is hyphenated
    assert layout["xaxis"]["tickangle"] == 0
    many = [f"disease {i}" for i in range(20)]
    angled = disease_ranking_figure(*ranking(many), base_rate=10, title="t").to_dict()["layout"]
    assert angled["xaxis"]["tickangle"] == -45 and angled["xaxis"]["ticktext"] == many


def test_scatter_and_comparison_keep_notes_out_of_the_plot(query):
    sel = query.selection
    fig = score_scatter_figure(query.scores[sel], query.expression_scores[sel], np.array(["a"] * int(sel.sum())),
                               simulated=np.ones(int(sel.sum()), bool), title="t").to_dict()["layout"]
    assert fig["legend"]["orientation"] == "h" and fig["legend"]["yanchor"] == "bottom"  # below, not squeezing the plot
    assert "Spearman" in fig["title"]["text"] and "SIMULATED" in fig["title"]["text"] and not fig.get("annotations")


class _Null:
    def __init__(self, p: dict, draws: int = 1000):
        self._p, self.n_draws, self.p_floor = p, draws, 1 / (1 + draws)

    def p_values(self):
        return dict(self._p)


def _result(null=True, p=None, chance=10.0, rule=None):
    from types import SimpleNamespace

    from compute.query import HitRule

    diseases = pd.DataFrame({"group": ["sepsis", "COVID-19", "Kawasaki disease", "asthma"], "rank": [1, 2, 3, 4],
                             "mean_hit_pct": [38.46, 33.1, 18.6, 3.5], "n_samples": [9, 9, 9, 6]})
    samples = pd.DataFrame({"study": ["S1", "S2", "S3", "S4"], "simulated": [True, True, True, False]})
    p = p or {"sepsis": 0.001, "COVID-19": 0.001, "Kawasaki disease": 0.001, "asthma": 0.9}
    params = SimpleNamespace(rule=rule or HitRule("percentile", 90), cell_types=("monocyte",), diseases=(), tissues=(), studies=(),
                             data="all")
    return SimpleNamespace(params=params, diseases=diseases, samples=samples, n_selected=8709, chance_pct=chance, threshold=0.0,
                           resolution=SimpleNamespace(matched=["G"] * 88), null={"disease": _Null(p)} if null else {})


def test_reading_sentence_says_what_where_the_top_diseases_and_how_sure():
    from dashboard.views.results import reading_sentence

    text = reading_sentence(_result(), simulated_share=0.75)
    assert text.startswith("Reading: In 8,709 cells (monocyte; 4 samples from 4 studies, 75% SIMULATED), the 88-gene signature")
    assert "top 10% of scores (10% of a sample's cells expected by chance)" in text
    assert "sepsis (38.5% of cells per sample), COVID-19 (33.1% of cells per sample) and Kawasaki disease (18.6%" in text
    assert "3 of the 4 diseases tested (sepsis, COVID-19, Kawasaki disease) stand above" in text and "q ≤ 0.05" in text
    assert text.count(".") - text.count("38.5") - text.count("33.1") - text.count("18.6") - text.count("0.05") == 1  # one sentence
    none = reading_sentence(_result(p={"sepsis": 0.3, "COVID-19": 0.5, "Kawasaki disease": 0.6, "asthma": 0.9}))
    assert "none of the 4 diseases tested stands above" in none and "no evidence of a disease-specific signal" in none
    assert "not judged: no random gene sets were drawn" in reading_sentence(_result(null=False))


def test_chance_level_is_the_actual_share_of_hits_with_ties_at_the_cut_off():
    """Issue 36, item 2: a sparse signature scores 0 in most cells, so its 90th percentile is 0
    and only the cells above 0 are hits: the chance level is that share, never "10%"."""
    from compute.query import HitRule
    from compute.query._stats import hit_share
    from dashboard.views.results import reading_sentence

    scores = np.r_[np.zeros(94), np.linspace(1, 2, 6)]
    rule = HitRule("percentile", 90)
    assert rule.threshold(scores) == 0.0 and hit_share(scores, 0.0) == pytest.approx(6.0)
    assert hit_share(np.arange(100.0), rule.threshold(np.arange(100.0))) == pytest.approx(10.0)
    text = reading_sentence(_result(chance=6.0))
    assert "10% of a sample's cells expected by chance" not in text and "top 10%" not in text
    assert "only 6% of the cells pass as many tie at it (6% of a sample's cells expected by chance, not 10%)" in text
    # a fixed cut-off states the real share too
    fixed = reading_sentence(_result(chance=3.2, rule=HitRule("value", 0.5)))
    assert "is a hit when score > 0.5 (3.2% of all selected cells are: the share a sample shows by chance)" in fixed


def test_query_result_chance_pct_counts_hits_as_the_ranking_does(query):
    sel = query.selection
    assert query.chance_pct == pytest.approx(100 * np.mean(query.scores[sel] > query.threshold))
    # the ranking figure's dashed line is at that share, named as the chance level
    layout = disease_ranking_figure(query.samples, query.diseases, base_rate=query.chance_pct, title="t").to_dict()["layout"]
    assert layout["shapes"][0]["y0"] == pytest.approx(query.chance_pct)
    assert any(a["text"].startswith("chance level ") for a in layout["annotations"])
    # every percentile of the robustness plot has its own chance level, ties counted
    chance = query.evidence.chance
    assert list(chance.index) == [80, 90, 95, 99] and ((chance > 0) & (chance <= 20 + 1e-9)).all()


def test_genes_note_says_how_many_genes_the_view_shows():
    from dashboard.views.results import GENE_VIEW_CAP, genes_note

    assert genes_note(60, 88, "top").startswith("Top 60 of 88 matched genes by mean attribution")
    assert "the CSV export holds all 88" in genes_note(60, 88, "top")
    assert genes_note(88, 88, "all").startswith("All 88 matched genes shown")
    assert f"the view's cap is {GENE_VIEW_CAP}" in genes_note(GENE_VIEW_CAP, 500, "all")


def test_presenter_figure_enlarges_type_and_fits_the_screen():
    from dashboard.views.results import PRESENTER_TITLE, presenter_figure

    fig = heatmap_figure(_blocks(), title="t")
    top = fig.layout.margin.t
    big = presenter_figure(fig).to_dict()["layout"]
    assert big["title"]["font"]["size"] == PRESENTER_TITLE and big["font"]["size"] >= 20
    assert "height" not in big and big["autosize"] is True and big["margin"]["t"] > top


def test_presenter_figure_keeps_every_text_large_and_in_its_margins():
    """Issue 36, item 7: a figure with no top margin of its own keeps Plotly's (a top margin of
    only the larger title's extra put the title over the plot), a note below the plot gets the
    room its larger type needs, a title line in its own small type (the SIMULATED note) and the
    names drawn by points are enlarged, and ``keep_height`` keeps the plot's height."""
    import plotly.graph_objects as go

    from dashboard.views.results import PRESENTER_FONT, presenter_figure

    least = PRESENTER_FONT["size"]
    fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], mode="markers+text", text=["A", "B"], textfont=dict(size=11)))
    fig.update_layout(title_text="two<br><span style='font-size:13px;color:#D55E00'><b>includes SIMULATED data</b></span>",
                      margin=dict(b=80))
    fig.add_annotation(text="a note below", xref="paper", yref="paper", x=1, y=0, yshift=-44, yanchor="top", showarrow=False,
                       font=dict(size=12))
    big = presenter_figure(fig).to_dict()["layout"]
    assert big["margin"]["t"] > 100  # Plotly's 100 and the title's two larger lines
    note = big["annotations"][0]
    assert note["font"]["size"] == least and big["margin"]["b"] >= -note["yshift"] + 1.5 * least
    assert "font-size:13px" not in big["title"]["text"] and f"font-size:{least}px" in big["title"]["text"]
    assert fig.data[0].textfont.size == least
    # a log axis keeps its decades only (Plotly draws its 2s and 5s in 3/4 of the type); a title hung
    # from the top is lowered by its first line's growth, and the top margin holds it
    logged = go.Figure(go.Scatter(x=[1, 1000], y=[1, 2])).update_layout(
        xaxis_type="log", title=dict(text="a<br>b", yanchor="top", y=1, pad_t=18, font_size=14), margin=dict(t=110))
    out = presenter_figure(logged).to_dict()["layout"]
    assert out["xaxis"]["dtick"] == 1 and "dtick" not in out["yaxis"]
    assert out["title"]["pad"]["t"] == 18 + 30 - 14 and out["margin"]["t"] == 110 + 3 * (30 - 14)
    kept = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])).update_layout(title_text="t", height=700, margin=dict(t=60))
    out = presenter_figure(kept, keep_height=True).to_dict()["layout"]
    assert out["height"] - out["margin"]["t"] == 700 - 60  # the plot keeps its height; the figure grows by the title


def test_the_figures_template_is_plotly_white_for_what_they_draw():
    import plotly.graph_objects as go
    import plotly.io as pio

    from dashboard.figures import TEMPLATE

    white = pio.templates["plotly_white"].to_plotly_json()
    light = TEMPLATE.to_plotly_json()
    assert light["layout"] == {k: v for k, v in white["layout"].items() if k not in ("polar", "ternary", "scene", "geo", "mapbox")}
    assert light["data"] == {k: white["data"][k] for k in ("bar", "scatter", "scattergl", "heatmap")}
    # the default of every new figure (applied without a second check), the same as one assigned the usual way
    assert pio.templates.default is TEMPLATE
    fig = go.Figure(go.Bar(x=[1], y=[2]))
    assert fig.to_json() == go.Figure(go.Bar(x=[1], y=[2])).update_layout(template=TEMPLATE).to_json()
    assert F.empty_figure("nothing").to_dict()["layout"]["template"] == light


def test_score_comparison_shows_both_scores_pooled_effects_beside_the_hit_pct(query):
    """Issue 32, item 5: attribution and expression scores' meta-analyses side by side."""
    attr, expr = query.diseases, query.expression_diseases
    fig = score_comparison_figure(attr, expr).to_dict()
    meta = fig["layout"]["meta"]
    assert "domain" in fig["layout"]["xaxis"] and fig["layout"]["xaxis2"]["title"]["text"].startswith("pooled g")
    effect_traces = [t for t in traces(score_comparison_figure(attr, expr)) if t.get("xaxis") == "x2"]
    assert {t["name"] for t in effect_traces} == {"attribution score: effect", "expression score (score_genes): effect"}
    for t, table in zip(effect_traces, (attr, expr), strict=True):
        rows = table.set_index("group")
        names = [c[0] for c in t["customdata"]]
        np.testing.assert_allclose(arr(t["x"]), rows.loc[names, "effect"].to_numpy(dtype=float))
        np.testing.assert_allclose(arr(t["error_x"]["array"]), (rows.loc[names, "effect_hi"] - rows.loc[names, "effect"]).to_numpy(dtype=float))
    with_effect = attr.dropna(subset=["effect"])
    assert len(with_effect) and all(meta["effects"][g][0] == pytest.approx(v) for g, v in zip(with_effect["group"], with_effect["effect"], strict=True))
    # without evidence columns the figure is the hit % panel alone
    plain = score_comparison_figure(attr.drop(columns=["effect"]), expr.drop(columns=["effect"])).to_dict()
    assert "xaxis2" not in plain["layout"] and plain["layout"]["meta"]["effects"] == {}


def test_one_colour_per_label_for_the_whole_atlas(query):
    """Issue 36, item 4: a disease's colour comes from the atlas's sorted vocabulary, not its
    rank: the same in the ranking, the thresholds plot and the per-cell scatter, whichever
    disease leads, and no two diseases of one figure share one (within the palette's size)."""
    vocabulary = sorted(set(query.diseases["group"].astype(str)) | set(query.samples["disease"].astype(str)))
    colours = F.label_colours(reversed(vocabulary))
    assert colours == F.label_colours(vocabulary) and list(colours) == vocabulary
    assert len(set(colours.values())) == min(len(vocabulary), len(F.LABEL_PALETTE))
    assert F.label_colours(["b", "a"], extra=["group", "a"]) == {"a": F.LABEL_PALETTE[0], "b": F.LABEL_PALETTE[1],
                                                                 "group": F.LABEL_PALETTE[2]}
    ranking = disease_ranking_figure(query.samples, query.diseases, base_rate=10.0, title="t", colours=colours)
    shown = ranking.to_dict()["layout"]["meta"]["colours"]
    assert shown == {g: colours[g] for g in shown}
    # the same diseases ranked in reverse order keep their colours
    flipped = query.diseases.iloc[::-1].reset_index(drop=True)
    assert disease_ranking_figure(query.samples, flipped, base_rate=10.0, title="t", colours=colours).to_dict()["layout"]["meta"][
        "colours"] == shown
    boxes = {t["name"]: t["marker"]["color"] for t in traces(ranking, "box")}
    assert boxes == shown
    robust = robustness_figure(query.evidence.thresholds, colours=colours)
    lines = [t for t in traces(robust, "scatter")[1:]]
    assert all(t["line"]["color"] == colours[t["name"]] and t["line"]["dash"] == "solid" for t in lines)
    # the only dashed line is the chance level, and it is named on the plot
    assert traces(robust, "scatter")[0]["line"]["dash"] == "dash"
    sel = query.selection
    labels = query.samples["disease"].astype(str)
    cells = np.resize(labels.to_numpy(), int(sel.sum()))
    scatter = score_scatter_figure(query.scores[sel], query.expression_scores[sel], cells, colours=colours)
    assert all(t["marker"]["color"] == colours[t["name"]] for t in traces(scatter, "scattergl"))

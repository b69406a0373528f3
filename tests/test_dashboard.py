"""Dashboard without a browser: callbacks as plain functions, figures on their data, no torch."""

from __future__ import annotations

import subprocess
import sys

import dash
import numpy as np
import pandas as pd
import pytest

from compute.errors import SigAtlasError
from compute.query import parse_gene_list
from dashboard import ids
from dashboard.app import answer_query, create_app
from dashboard.callbacks import cells, controls, diseases, link, modules, render, studies
from dashboard.data import DashboardData
from dashboard.presets import PRESETS, preset_options
from dashboard.state import (
    DEFAULTS,
    QUERY_KEYS,
    TABS,
    append_genes,
    decode_state,
    encode_state,
    normalise_genes,
    query_params,
    read_state,
)
from dashboard.upload import GeneFileError, parse_gene_file
from dashboard.views.components import label_colours
from dashboard.views.filters import apply_preset, disease_group_choices, filter_choices, known_values
from dashboard.views.modules import modules_table, modules_view
from dashboard.views.results import RESULT_VIEWS, UMAP_VIEWS, driver_figure

from .conftest import REPO


def _state(**kw) -> dict:
    return dict(DEFAULTS) | kw


def _text(component) -> str:
    """All the text a Dash component tree shows (children, recursively)."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return "".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _table_rows(component) -> list[list[str]]:
    """The body rows (cell texts) of a table drawn as HTML in a dcc.Markdown (the disease ranking)."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.body, self.cell = [], False, None

        def handle_starttag(self, tag, attrs):
            if tag == "tbody":
                self.body = True
            elif tag == "tr" and self.body:
                self.rows.append([])
            elif tag == "td" and self.body:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(component.children)
    return parser.rows


def _find(component, id_):
    """The component with ``id_`` inside a Dash component tree, or None."""
    if isinstance(component, list | tuple):
        return next((hit for c in component if (hit := _find(c, id_)) is not None), None)
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    return _find(children, id_) if children is not None and not isinstance(children, str) else None


def test_dashboard_never_imports_torch(tiny_build):
    code = (
        "import sys; from dashboard.app import create_app; create_app(sys.argv[1]);"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('compute.model', 'compute.attribution', 'captum'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_build[1])], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ms1_preset_answer(tiny_build):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    # one value, the Cell Ontology term: the filter expands it to every monocyte subtype
    assert "S100A8" in text and cell_types == ["monocyte"]
    out = answer_query(data, _state(genes=text, cell_types=cell_types, null_draws=200))
    fig = out["disease_fig"].to_dict()
    order = [c.split("<br>")[0] for c in fig["layout"]["xaxis"]["categoryarray"]]
    assert order[0] == "infectious disease with sepsis"  # the MONDO term of the simulated "sepsis"
    assert "SIMULATED" in fig["layout"]["title"]["text"]
    symbols = {t["marker"]["symbol"] for t in fig["data"] if t["type"] == "scatter" and "marker" in t and "symbol" in t["marker"]}
    assert "circle-open" in symbols  # simulated samples drawn open
    assert any(r["data"] == "SIMULATED" for r in out["study_rows"])
    assert all(r["p_value"] is not None for r in out["study_rows"])
    assert "null: 200 matched gene sets" in out["status"]
    for name in ("diseases", "samples", "studies", "genes", "resolution", "robustness", "drivers", "comparison", "umap"):
        assert len(out["tables"][name]) > 0, name
    assert "p_value" in out["tables"]["diseases"].columns
    # the p floor in the diseases CSV, as in the studies' (issue 36, item 3); q beside p in the figure
    table = out["tables"]["diseases"]
    assert (table["p_floor"] == 1 / 201).all() and (table["p_at_floor"] == (table["p_value"] <= 1 / 201 + 1e-12)).all()
    ticks = [c for c in fig["layout"]["xaxis"]["categoryarray"] if "p = " in c or "p ≤ " in c]
    assert ticks and all(" · q " in c for c in ticks)
    # the chance level, the actual share of hits, stated in the status line and drawn
    assert "% of cells above it: the chance level" in out["status"]
    umap = out["umap_fig"].to_dict()
    assert umap["data"][-1]["type"] == "scattergl"
    assert out["umap_badge"].endswith("cells shown")


def test_driver_genes_of_a_chosen_group(tiny_build):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    result = data.query(query_params(_state(genes=text, cell_types=cell_types, null_draws=0)))
    top, second = (str(g) for g in result.diseases["group"].iloc[:2])
    default = driver_figure(data, result, None).to_dict()
    chosen = driver_figure(data, result, second).to_dict()
    assert default["layout"]["title"]["text"].startswith(f"Driver genes in {top}")
    assert chosen["layout"]["title"]["text"].startswith(f"Driver genes in {second}")
    assert default["data"][0]["x"] != chosen["data"][0]["x"]  # shares differ between the two groups
    assert "appear once" in driver_figure(data, result, "no such disease").to_dict()["layout"]["meta"]["empty"]


@pytest.mark.parametrize("by", ["disease", "cell_type", "study"])
@pytest.mark.parametrize("heat", ["heatmap", "dotplot"])
def test_every_grouping_and_gene_view_renders(tiny_build, by, heat):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    out = answer_query(data, _state(genes=text, group_by=by, heat=heat, order="score", color="disease"))
    fig = out["heatmap_fig"].to_dict()
    values = set(data.atlas.cells[by].astype(str))
    labels = {str(x) for t in fig["data"] for x in ([] if t.get("x") is None else list(t["x"]))}
    assert labels and labels <= values | {""}, labels - values
    assert fig["data"][0]["type"] == ("heatmap" if heat == "heatmap" else "scatter")


def test_top_n_and_filters(tiny_build):
    data = DashboardData(tiny_build[1])
    text, _ = apply_preset(data, "ms1")
    full = answer_query(data, _state(genes=text))
    top2 = answer_query(data, _state(genes=text, top_n=2))
    assert len(top2["tables"]["diseases"]) == 2
    assert list(top2["tables"]["diseases"]["group"]) == list(full["tables"]["diseases"]["group"][:2])
    # the one real study measured too little of MS1 for the default min_coverage: said, not scored
    assert "lower min_coverage" in str(answer_query(data, _state(genes=text, data_kind="real"))["status"])
    # with every study kept, the real data alone is ranked: only real cells, and at least one
    real = answer_query(data, _state(genes=text, data_kind="real", min_coverage=0.0))
    cells = real["tables"]["umap"]
    assert len(cells) == real["result"].n_selected > 0 and not cells["simulated"].any()
    assert len(cells) == int((~data.atlas.cells["simulated"].astype(bool)).sum())
    # the studies' own labels select their terms' cells
    sim = answer_query(data, _state(genes=text, data_kind="simulated", diseases=["sepsis", "healthy"]))
    assert set(sim["tables"]["umap"]["disease"]) <= {"infectious disease with sepsis", "normal"}


def test_bad_input_is_shown_not_raised(tiny_build):
    data = DashboardData(tiny_build[1])
    out = answer_query(data, _state(genes="NOT_A_GENE ALSO_NOT"))
    assert "none of the 2 requested genes" in out["status"].children and out["status"].className == "error"
    assert "result" not in out and out["study_rows"] == [] and "NOT_A_GENE" in _text(out["resolution"])
    # a filter value the atlas does not have: named by the state's check, with what the atlas has
    out = answer_query(data, _state(genes="S100A8", cell_types=["no such cell type"]))
    assert out["status"].children.startswith("unknown cell type 'no such cell type' (an ontology term label or id")
    assert "this atlas has: " in out["status"].children and "result" not in out
    # an emptied or out-of-range number: the same rule as a link's, named
    out = answer_query(data, _state(genes="S100A8", cell_min=0))
    assert out["status"].children == "cell_min must be within 1-1,000,000, got 0"
    out = answer_query(data, _state(genes=""))
    assert out["study_rows"] == [] and out["status"] == "Paste genes (any separators) or pick a preset, then Run"
    # a link's bad values fall back to their defaults, each said; the query still runs
    state, notes = decode_state("?cut=abc&cell_min=-5&group_by=nonsense&zzz=1")
    assert notes == ["unknown setting 'zzz' in the link; ignored", "cut=abc must be a number; using 90",
                     "cell_min=-5 must be within 1-1,000,000; using 25", "group_by=nonsense must be one of disease, cell_type, study; using disease"]
    assert (state["cutoff"], state["cell_min"], state["group_by"]) == (90.0, 25, "disease")
    out = answer_query(data, state | {"genes": "S100A8 VCAN"})
    assert "cells selected" in out["status"] and out["result"].params.cell_min == 25


def test_state_round_trip_gives_the_same_query(tiny_build):
    state = _state(genes="S100A8:2, VCAN\nCD14", cell_types=["classical monocyte"], rule="quantile", cutoff=0.95, null_draws=100, tab="genes")
    again, notes = decode_state(encode_state(state))
    assert not notes
    assert query_params(again) == query_params(state)


def test_presets_and_uploads():
    assert len(PRESETS) > 50 and {g["group"] for g in preset_options()} == {"Signatures", "Hallmark gene sets", "Immune cell-type markers"}
    assert parse_gene_file("sig.csv", b"gene,weight\nCD14,2\nVCAN,1.5\n") == {"sig": "CD14:2\nVCAN:1.5"}
    assert parse_gene_file("sets.gmt", b"A\tdesc\tCD14\tVCAN\nB\tdesc\tMS4A1\n") == {"A": "CD14\nVCAN", "B": "MS4A1"}
    assert parse_gene_file("list.txt", b"CD14\n\nVCAN\n") == {"list": "CD14\nVCAN"}
    with pytest.raises(GeneFileError, match="line 3: the weight 'high' of VCAN"):
        parse_gene_file("w.csv", b"gene,weight\nCD14,2\nVCAN,high\n")
    with pytest.raises(GeneFileError, match="line 1: a GMT line needs"):
        parse_gene_file("bad.gmt", b"only-a-name\n")
    kept = parse_gene_file("mixed.gmt", b"A\tdesc\tCD14\nbroken line\nB\tdesc\tMS4A1\n")
    assert kept == {"A": "CD14", "B": "MS4A1"}
    assert kept.skipped == ["mixed.gmt, line 2: a GMT line needs a name, a description and genes, separated by tabs"]
    with pytest.raises(GeneFileError, match="not UTF-8"):
        parse_gene_file("bin.txt", b"\xff\xfe\x00bad")
    assert issubclass(GeneFileError, SigAtlasError)  # the command line prints it as one line


def test_create_app_rejects_missing_atlas(tmp_path):
    from compute.errors import AtlasFormatError

    with pytest.raises(AtlasFormatError, match="python -m compute build"):
        create_app(tmp_path)


# -- the Modules tab ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def modules_app(tiny_build):
    """(data, program genes, result key) for a planted program's genes plus one unknown gene."""
    data = DashboardData(tiny_build[1])
    program = next(p for p in tiny_build[2]["programs"] if p["name"] == "interferon alpha response")
    genes = list(program["genes"])
    params = query_params(_state(genes="\n".join([*genes, "NOT_A_GENE"]), null_draws=0))
    data.query(params)
    return data, genes, data.result_key(params)


def test_modules_tab_places_a_planted_program(modules_app):
    from compute.genemodules import gene_modules

    data, genes, key = modules_app
    out = modules.render_modules(data, key, None, "modules", None, False)
    summary, overlap, missing, fig, options, value, method, store = (
        out[k] for k in ("summary", "overlap_rows", "missing_rows", "figure", "module_options", "module_value", "method", "store"))
    gm = gene_modules(data.atlas)
    considered = [g for g in genes if g in set(gm.genes)]
    head = _text(_find(summary, ids.MODULES_HEAD))
    assert head.startswith(f"{len(genes)} of {len(genes)} signature genes matched the atlas; {len(considered)} of these {len(genes)} "
                           f"are among the {len(gm.genes):,} genes the modules were built from; coherence r̄ = ")
    assert "random gene sets of the same size" in head and "z = " in head and "p ≤ 0.001" in head  # 1,000 draws: the floor
    assert "more than random gene sets" in _text(_find(summary, ids.MODULES_READING))
    skipped = _text(_find(summary, ids.MODULES_NOT_CONSIDERED))
    assert "NOT_A_GENE – not a gene" in skipped  # no gene has the name (issue 36): told apart from genes the model lacks
    for g in set(genes) - set(considered):
        assert g in skipped and "detected in < 1% of cells" in skipped
    # overlapping modules: the planted program sits mostly in one module
    assert overlap and [r["p_value"] for r in overlap] == sorted(r["p_value"] for r in overlap)
    best = overlap[0]
    assert best["overlap"] >= 0.5 * best["size"] and best["p_value"] < 1e-10 and best["module_z"] > 5
    assert set(best["overlap_genes"].split(", ")) <= set(genes) and len(best["overlap_genes"].split(", ")) == best["overlap"]
    assert value == str(gm.table.loc[gm.table["name"] == best["module"], "module"].iloc[0])  # the browser opens on it
    # co-attributing genes missing from the signature, strongest first
    assert len(missing) == 25 and not {r["gene"] for r in missing} & set(genes)
    assert [r["mean_r"] for r in missing] == sorted((r["mean_r"] for r in missing), reverse=True)
    assert store["key"] == key and store["top_missing"] == [r["gene"] for r in missing[:10]] and out["add_disabled"] is False
    # the heatmap: the considered signature genes, then the top 10 missing genes, split between them
    meta = fig.to_dict()["layout"]["meta"]
    assert meta["n_signature"] == len(considered) and meta["split"] == len(considered) - 0.5
    assert set(meta["genes"][: len(considered)]) == set(considered) and meta["genes"][len(considered):] != []
    assert set(meta["genes"][len(considered):]) == set(store["top_missing"])
    assert "SIMULATED" in fig.to_dict()["layout"]["title"]["text"]  # the tiny atlas is simulated: said in the title
    assert len(options) == len(gm.table) and options[0]["label"].startswith("M1 · ")
    assert gm.method in method and "permutation z-score against 500 bin-matched random gene sets" in method
    # shown once per result, and computed only for the Modules tab
    for again in ((key, None, "modules", store, False), (key, None, "diseases", None, False)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            modules.render_modules(data, *again)


def test_add_the_top_10_and_use_a_module(modules_app):
    from compute.query import parse_gene_list

    data, genes, key = modules_app
    store = modules.render_modules(data, key, None, "modules", None, False)["store"]
    text = "\n".join(genes)
    added = modules.add_missing(data, 1, text, store, 3)
    assert added["request"] == 4  # the query reruns
    assert [g for g, _ in parse_gene_list(added["genes"])] == [*genes, *store["top_missing"]]
    assert len(store["top_missing"]) == 10
    with pytest.raises(dash.exceptions.PreventUpdate):
        modules.add_missing(data, None, text, store, 3)
    # the module browser
    module = str(next(iter(store["modules"])))
    shown = modules.show_module(data, module, store)
    detail = shown["detail"]
    info = store["modules"][module]
    assert shown["use_disabled"] is False and info["hub_genes"] == _text(_find(detail, ids.MODULE_HUBS))
    assert _text(_find(detail, ids.MODULE_GENES)).split(", ") == info["genes"]
    assert f"{info['name']}: {info['size']} genes" in _text(detail)
    assert modules.show_module(data, "no such module", store)["use_disabled"] is True
    assert modules.show_module(data, module, None) == {"detail": [], "use_disabled": True}
    used = modules.use_module(data, 1, module, store, 7)
    assert [g for g, _ in parse_gene_list(used["genes"])] == info["genes"] and used["request"] == 8
    from compute.genemodules import gene_modules

    assert sorted(info["genes"]) == sorted(gene_modules(data.atlas).module_genes(int(module)))
    with pytest.raises(dash.exceptions.PreventUpdate):
        modules.use_module(data, 1, None, store, 7)


def test_modules_heatmap_csv_is_the_drawn_matrix(modules_app):
    import numpy as np

    from compute.genemodules import gene_modules

    data, genes, key = modules_app
    result = data.stored_result(key)
    gm = gene_modules(data.atlas)
    table = modules_table(data, result, gm)
    meta = modules_view(data, result, gm)["figure"].to_dict()["layout"]["meta"]
    assert list(table["gene"]) == meta["genes"] and list(table.columns) == ["gene", "set", "module", *meta["genes"]]
    assert (table["set"] == "signature").sum() == meta["n_signature"] and set(table["set"]) == {"signature", "missing"}
    r = table[meta["genes"]].to_numpy()
    np.testing.assert_allclose(r, r.T)
    np.testing.assert_allclose(np.diag(r), 1.0)
    i, j = (gm.index()[g] for g in meta["genes"][:2])
    assert r[0, 1] == pytest.approx(gm.corr[i, j], abs=1e-4)


def test_append_genes_keeps_the_text_and_skips_repeats():
    assert append_genes("CD14, VCAN", ["LYZ", "vcan", "S100A8", "LYZ"]) == "CD14, VCAN\nLYZ\nS100A8"
    assert append_genes("", ["LYZ"]) == "LYZ" and append_genes(None, []) == ""


class _ModulesFail(DashboardData):
    """The atlas's data, whose gene modules cannot be computed."""

    def gene_modules(self):
        raise MemoryError("no room for the correlation matrix")


class _ModulesDamaged(DashboardData):
    """The atlas's data, whose gene modules hold no correlations: placing a signature fails."""

    def gene_modules(self):
        import dataclasses

        import numpy as np

        return dataclasses.replace(super().gene_modules(), corr=np.zeros((0, 0)))


def test_modules_tab_without_modules_a_query_or_success(modules_app, tiny_build):
    from compute.genemodules import gene_modules

    data, genes, key = modules_app
    # an atlas with too few genes for modules: an empty table, said in words
    few = gene_modules(data.atlas, max_genes=1, use_cache=False)
    assert len(few.table) == 0
    out = modules_view(data, data.stored_result(key), few)
    text = _text(out["summary"])
    assert "This atlas has no gene modules: only 1 gene qualifies" in text
    assert "Too few of the signature's genes" in text and out["overlap_rows"] == [] and out["module_options"] == []
    assert "empty" in out["figure"].to_dict()["layout"]["meta"]
    # no query yet: the browser alone
    out = modules_view(data, None, gene_modules(data.atlas))
    assert "appears once a query has run" in _text(out["summary"]) and out["module_options"] and out["top_missing"] == []
    # the query failed: said in the tab, the browser still works
    out = modules.render_modules(data, None, {"error": "no cells match the filters", "genes": "CD14"}, "modules", None, False)
    assert _text(out["summary"]) == "The query failed: no cells match the filters" and out["module_options"]
    assert out["store"]["error"] == {"error": "no cells match the filters", "genes": "CD14"} and out["store"]["key"] is None
    # a failure inside the modules computation: a message in the tab, not a traceback
    damaged = _ModulesDamaged(tiny_build[1])
    damaged.query(data.stored_result(key).params)
    out = modules.render_modules(damaged, key, None, "modules", None, False)
    assert _text(out["summary"]).startswith("This signature could not be placed among the gene modules: IndexError: ")
    assert out["store"] is None
    out = modules.render_modules(_ModulesFail(tiny_build[1]), key, None, "modules", None, False)
    assert _text(out["summary"]) == "Gene modules could not be computed for this atlas: MemoryError: no room for the correlation matrix"
    assert out["store"] is None and out["overlap_rows"] == out["missing_rows"] == [] and out["add_disabled"] is True
    assert "empty" in out["figure"].to_dict()["layout"]["meta"]


def test_modules_tab_is_in_the_layout_and_the_link(tiny_build):
    app = create_app(tiny_build[1])
    layout = app.layout
    tabs = _find(layout, ids.TABS)
    assert [t.value for t in tabs.children[0].children][-3:] == ["genes", "cell_genes", "modules"]
    assert "SIMULATED" in _text(_find(layout, ids.MODULES_SIM))
    state, notes = decode_state("?tab=modules", {"tab": TABS})
    assert state["tab"] == "modules" and not notes


# -- per-study coverage and the ingest reports ---------------------------------------------------
def _left_out_query(data: DashboardData) -> tuple[dict, str]:
    """(state, study id): the MS1 genes with a min_coverage just above the lowest study coverage,
    so that study (and only those as low) is left out and the rest are ranked."""
    text, _ = apply_preset(data, "ms1")
    coverage = data.atlas.study_coverage(list(parse_gene_list(text)))["coverage"].sort_values()
    assert coverage.iloc[0] < coverage.iloc[-1], "the tiny atlas's panels should differ in MS1 coverage"
    above = coverage[coverage > coverage.iloc[0]].iloc[0]
    return _state(genes=text, min_coverage=round((coverage.iloc[0] + above) / 2, 4)), str(coverage.index[0])


def test_min_coverage_is_one_setting_from_the_link_to_the_query(tiny_build):
    state, notes = decode_state("?genes=CD14,LYZ&min_coverage=0.8")
    assert not notes and state["min_coverage"] == 0.8
    assert query_params(state).min_coverage == 0.8
    assert query_params(_state(genes="CD14")).min_coverage == DEFAULTS["min_coverage"] == 0.5
    app = create_app(tiny_build[1])
    control = _find(app.layout, ids.MIN_COVERAGE)
    assert control.value == 0.5 and (control.min, control.max) == (0, 1) and "Min. study coverage" in control.label
    # the link restores it, and the query reruns with it
    data = DashboardData(tiny_build[1])
    restored = link.restore(data, "?genes=CD14&min_coverage=0.9", 0)
    assert restored["min_coverage"] == 0.9 and restored["genes"] == "CD14" and restored["request"] == 1 and restored["notes"] is None
    # an emptied or out-of-range control is a message, not a crash
    assert answer_query(data, _state(genes="CD14 LYZ", min_coverage=""))["status"].children == "min_coverage must be a number, got ''"
    assert answer_query(data, _state(genes="CD14 LYZ", min_coverage=1.5))["status"].children == "min_coverage must be within 0-1, got 1.5"


def test_a_study_below_min_coverage_is_left_out_with_its_reason(tiny_build):
    data = DashboardData(tiny_build[1])
    state, low = _left_out_query(data)
    out = answer_query(data, state)
    result = out["result"]
    assert low in result.excluded_studies.index
    n = len(result.excluded_studies)
    reason = result.excluded_studies.loc[low, "reason"]
    # under the disease ranking (and in the Studies tab): each left-out study with its reason
    shown = _text(out["excluded_diseases"])
    assert f"Left out: {low} measured " in shown and reason in shown and "missing, not zero" in shown
    assert _text(out["excluded_studies"]) == shown
    assert out["excluded_diseases"].title.startswith(f"{n} {'study' if n == 1 else 'studies'} left out of the ranking")
    assert f"{n} {'study' if n == 1 else 'studies'} left out (signature coverage below" in out["status"]
    assert "left out" in out["disease_fig"].to_dict()["layout"]["title"]["text"]
    # the ranked studies carry their coverage; the left-out one is not ranked
    assert low not in {r["study"] for r in out["study_rows"]}
    for r in out["study_rows"]:
        cov = result.coverage.loc[r["study"]]
        assert (r["measured"], r["requested"]) == (cov["measured"], cov["requested"]) and r["coverage"] >= state["min_coverage"]
        assert 0 < r["measured_share"] <= 1 and isinstance(r["notes"], str)
    # the studies CSV: ranked studies, then those left out, each with the reason
    table = out["tables"]["studies"]
    assert {"measured", "requested", "coverage", "measured_share", "notes", "included", "reason"} <= set(table.columns)
    row = table.set_index("study").loc[low]
    assert not row["included"] and row["reason"] == reason and pd.isna(row["rank"]) and row["cells"] > 0
    assert table["included"].tolist() == [True] * len(out["study_rows"]) + [False] * n
    assert set(out["tables"]["coverage"]["study"]) == {s.id for s in data.atlas.studies}
    # the rendering callback fills both lists
    key = data.result_key(query_params(state, expression=data.atlas.has_expression))
    views = render.render(data, key, None, False, top_n=0, group_by="disease", heat="heatmap", order="cluster", color="score")
    for name in ("excluded_diseases", "excluded_studies"):
        assert views[name].className == "excluded" and f"Left out: {low} measured" in _text(views[name])
    assert views["study_rows"] == out["study_rows"]
    # nothing left out at min_coverage 0: no list
    none = answer_query(data, state | {"min_coverage": 0.0})
    assert none["excluded_diseases"] is None and none["excluded_studies"] is None and "left out" not in none["status"]


def test_every_study_below_min_coverage_is_a_message_not_a_crash(tiny_build):
    data = DashboardData(tiny_build[1])
    text, _ = apply_preset(data, "ms1")
    coverage = data.atlas.study_coverage(list(parse_gene_list(text)))["coverage"]
    if coverage.max() >= 1:
        pytest.skip("a study measured every MS1 gene: min_coverage cannot leave out all")
    out = answer_query(data, _state(genes=text, min_coverage=min(1.0, round(coverage.max() + 0.01, 4))))
    assert "lower min_coverage" in str(out["status"])


def test_studies_table_columns_and_help(tiny_build):
    app = create_app(tiny_build[1])
    grid = _find(app.layout, ids.STUDY_GRID)
    headers = {c.get("headerName", c["field"]): c for c in grid.columnDefs}
    for name in ("Genes measured", "Coverage", "Measured share", "Notes"):
        assert name in headers, name
    assert "' / ' + params.data.requested" in headers["Genes measured"]["valueFormatter"]["function"]
    assert "not recorded" in headers["Measured share"]["valueFormatter"]["function"]
    help_text = _text(_find(app.layout, ids.COVERAGE_HELP))
    assert "missing, not zero" in help_text and "one scale" in help_text and "Min. study coverage" in help_text


def test_study_reports_in_plain_words(tiny_build):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(tiny_build[1])
    panel = study_reports_panel(data)
    text = _text(panel)
    assert text.count("Values: raw counts") == len(data.atlas.studies)
    assert "QC: " in text and " cells in, " in text and "Genes measured: " in text and "Measured share: " in text
    assert "Species: human" in text and "Gene symbols: " in text
    for s in data.atlas.studies:
        assert f"{s.id} · {s.title}" in text
    # simulated studies keep their label; the atlas's build warnings are shown
    sim = next(s for s in data.atlas.studies if s.simulated)
    assert f"{sim.id} · {sim.title} · {sim.n_cells:,} cells · SIMULATED" in text
    warnings = data.atlas.meta["report"]["warnings"]
    assert warnings and all(w in _text(_find(panel, ids.ATLAS_WARNINGS)) for w in warnings)
    # it is in the Studies tab, while that tab shows
    assert _find(create_app(tiny_build[1]).layout, ids.STUDY_REPORTS_SLOT) is not None
    assert _find(studies.show_study_reports(data, "studies")["reports"], ids.STUDY_REPORTS) is not None
    assert studies.show_study_reports(data, "diseases") == {"reports": []}


def test_report_lines_for_tpm_mouse_and_qc_drops():
    from compute.atlas import study_report_lines, study_warnings

    entry = {"report": {
        "values": {"kind": "tpm", "source": "X", "note": "approximation: TPM/FPKM rescaled per cell to 10,000, not counts"},
        "species": {"organism": "mouse", "detected": "mouse", "human_share": 0.01, "mouse_share": 0.93,
                    "orthologs": {"table": "Ensembl 105", "mouse_genes_in": 1200, "mapped": 1100, "n_no_human_ortholog": 80,
                                  "n_several_human_orthologs": 20, "n_summed_into_one_human_gene": 3}},
        "symbols": {"n_renamed": 4, "renamed_by": {"alias": 3, "case": 1}, "n_merged": 2, "n_duplicates_summed": 1, "unknown": 0},
        "qc": {"cells_in": 500, "cells_kept": 470, "min_genes": 40, "min_counts": None, "scaled_for_panel": False,
               "min_counts_note": "min_counts not applied: tpm values carry no library size",
               "dropped": {"min_genes": 30, "min_counts": 0, "both": 0},
               "by_cell_type": {"T": {"in": 300, "kept": 290, "dropped": 10}, "B": {"in": 200, "kept": 180, "dropped": 20}}},
        "n_genes_measured": 1097, "warnings": ["QC dropped 10% of the 'B' cells (20 of 200)."]},
        "panel": {"n_genes_measured": 1000, "attr_share": 0.61}}
    lines = study_report_lines(entry)
    text = "\n".join(lines)
    assert "Values: TPM, read from X (approximation: TPM/FPKM rescaled per cell to 10,000, not counts)." in lines
    assert "Species: mouse" in text and "1,100 of 1,200 mouse genes mapped to their one human ortholog (Ensembl 105)" in text
    assert "80 without a human ortholog" in text and "20 with several human orthologs" in text
    assert "4 names renamed to the current HGNC symbol (3 alias, 1 case fixed)" in text and "2 symbols named by several columns" in text
    assert "QC: 500 cells in, 470 kept, 30 dropped (30 too few genes)" in text and "min_counts not applied" in text
    assert "most dropped: B 20 of 200, T 10 of 300" in text
    assert "Genes measured: 1,097, 1,000 of them in the model's gene order." in lines and "Measured share: 61%" in text
    assert study_warnings(entry) == ["QC dropped 10% of the 'B' cells (20 of 200)."]
    # malformed or missing sections never raise
    assert study_report_lines({"report": {"values": "x", "qc": {"cells_in": "?"}, "symbols": []}}) == []
    assert study_report_lines({"report": "nonsense", "panel": {"attr_share": True}})[0].startswith("Ingest report: not recorded")


@pytest.fixture(scope="module")
def old_atlas(tiny_build, tmp_path_factory):
    """The tiny atlas as an older build wrote it: no ingest reports, panels, measured genes or build warnings."""
    import json

    src = tiny_build[1]
    dst = tmp_path_factory.mktemp("old") / "atlas"
    dst.mkdir()
    for item in src.iterdir():  # the study files are shared, only the root differs
        if item.name != "atlas.json":
            (dst / item.name).symlink_to(item)
    root = json.loads((src / "atlas.json").read_text())
    root.pop("report", None)
    root["elements"] = {k: v for k, v in root["elements"].items() if k not in ("measured", "gene_means")}
    for s in root["studies"]:
        for key in ("report", "panel", "has_measured", "n_genes_measured"):
            s.pop(key, None)
    (dst / "atlas.json").write_text(json.dumps(root))
    return dst


def test_an_atlas_without_reports_or_panels_still_renders(old_atlas):
    from compute.atlas import NOT_RECORDED
    from dashboard import export
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(old_atlas)
    text, cell_types = apply_preset(data, "ms1")
    out = answer_query(data, _state(genes=text, cell_types=cell_types))
    assert out["study_rows"] and out["excluded_diseases"] is None
    for r in out["study_rows"]:
        assert r["measured"] == r["requested"] and r["coverage"] == 1.0 and r["measured_share"] is None and r["notes"] == ""
    panel = study_reports_panel(data)
    assert _text(panel).count(NOT_RECORDED) == len(data.atlas.studies) and _find(panel, ids.ATLAS_WARNINGS) is None
    assert "records no per-study gene panels" in export.methods_paragraph(data.atlas, out["result"])
    app = create_app(old_atlas)
    assert _find(app.layout, ids.STUDY_REPORTS_SLOT) is not None


# -- one vocabulary: ontology terms in the filters, disease groups, presets, label transfer ------
def _options(choices) -> dict[str, str]:
    """{value: label} of grouped select data."""
    return {item["value"]: item["label"] for group in choices.options for item in group["items"]}


def _depth(label: str) -> int:
    return len(label) - len(label.lstrip("\u00a0"))


def test_cell_type_filter_is_the_term_tree_with_cell_counts(tiny_build):
    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    n = cells["cell_type"].astype(str).value_counts()
    choices = filter_choices(data, "cell_types")
    options = _options(choices)
    # the parent term above classical and non-classical monocytes, with their summed cells
    assert options["monocyte"].strip("\u00a0") == f"monocyte ({n['classical monocyte'] + n['non-classical monocyte']:,})"
    assert options["classical monocyte"].strip("\u00a0") == f"classical monocyte ({n['classical monocyte']:,})"
    assert _depth(options["classical monocyte"]) > _depth(options["monocyte"])  # a subtype sits under its parent
    values = choices.option_values
    assert values.index("monocyte") < values.index("classical monocyte") < values.index("non-classical monocyte")
    # every label of the cells is an option; a label that matched no term is its own group, said so
    assert set(n.index) <= set(options)
    unmapped = sorted(set(cells.loc[cells["cell_type_ontology_term_id"].astype(str) == "", "cell_type"].astype(str)))
    assert unmapped, "the tiny atlas's real study keeps an unmapped label (CD34+)"
    last = choices.options[-1]
    assert last["group"].startswith("No ontology term") and sorted(i["value"] for i in last["items"]) == unmapped
    assert options[unmapped[0]] == f"{unmapped[0]} (no ontology term) ({n[unmapped[0]]:,})"
    # the same for diseases (healthy donors: normal) and tissues; the layout shows these options
    diseases = _options(filter_choices(data, "diseases"))
    assert {"normal", "infectious disease with sepsis", "infectious disease"} <= set(diseases)
    layout = create_app(tiny_build[1]).layout
    for id_, key in ((ids.CELL_TYPES, "cell_types"), (ids.DISEASES, "diseases"), (ids.TISSUES, "tissues")):
        control = _find(layout, id_)
        assert control.data == filter_choices(data, key).options and "a term includes its" in control.description


def test_picking_monocyte_selects_every_monocyte_subtype(tiny_build):
    from urllib.parse import quote

    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    text, _ = apply_preset(data, "ms1")
    out = answer_query(data, _state(genes=text, cell_types=["monocyte"], min_coverage=0.0, null_draws=0))
    subtypes = {"classical monocyte", "non-classical monocyte"}
    assert set(out["tables"]["umap"]["cell_type"].astype(str)) == subtypes
    assert out["result"].n_selected == int(cells["cell_type"].astype(str).isin(subtypes).sum())
    assert "monocyte · hit" in out["disease_fig"].to_dict()["layout"]["title"]["text"]
    # in a link: the term's id, another case or an equivalent ancestor all mean the term, shown as it
    known = known_values(data)
    for raw in ("monocyte", "CL:0000576", "Monocyte", "myeloid leukocyte"):
        if raw == "myeloid leukocyte" and raw not in known["cell_types"]:
            continue  # the ancestor is not in this atlas's vocabulary
        state, notes = decode_state(f"?cell_types={quote(raw)}", known)
        assert state["cell_types"] == ["monocyte"] and not notes, raw
        assert decode_state(encode_state(state), known) == (state, [])


def test_old_links_with_study_labels_still_work(tiny_build):
    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    restored = link.restore(data, "?genes=CD14&cell_types=CD14%2B+Monocyte|CL:0000576|Martian&diseases=healthy|sepsis", 0)
    # a study's label that names its term alone becomes the term; one that shares it stays as written
    assert restored["cell_types"] == ["CD14+ Monocyte", "monocyte"] and restored["diseases"] == ["normal", "infectious disease with sepsis"]
    assert _text(restored["notes"]) == "cell_types: 'Martian' is not in this atlas; dropped"
    # the filters' options: the study's own label is added to the cell types, nothing to the others
    extra = restored["cell_types_options"][-1]
    assert extra["group"].startswith("From the link") and extra["items"] == [{"value": "CD14+ Monocyte", "label": "CD14+ Monocyte (study label)"}]
    assert restored["cell_types_options"][:-1] == filter_choices(data, "cell_types").options
    assert restored["diseases_options"] == filter_choices(data, "diseases").options
    assert restored["tissues_options"] == filter_choices(data, "tissues").options
    # the study's label selects exactly its cells, as before the vocabulary
    text, _ = apply_preset(data, "ms1")
    out = answer_query(data, _state(genes=text, cell_types=["CD14+ Monocyte"], min_coverage=0.0, null_draws=0))
    assert out["result"].n_selected == int((cells["cell_type_original"].astype(str) == "CD14+ Monocyte").sum()) > 0
    healthy = answer_query(data, _state(genes=text, diseases=["healthy"], null_draws=0))["result"]
    normal = answer_query(data, _state(genes=text, diseases=["normal"], null_draws=0))["result"]
    assert healthy.n_selected == normal.n_selected > 0


def test_a_link_with_commas_for_bars_is_read_or_not_run(tiny_build):
    """Issue 36, item 10: a hand-edited link that joins values with "," instead of "|" is read
    when every part is known, and otherwise never runs on all cells: it says so and waits."""
    data = DashboardData(tiny_build[1])
    read = link.restore(data, "?genes=CD14&diseases=normal,infectious%20disease%20with%20sepsis", 0)
    assert read["diseases"] == ["normal", "infectious disease with sepsis"] and read["request"] == 1 and read["notes"] is None
    refused = link.restore(data, "?genes=CD14&diseases=normal,Martian%20flu", 0)
    assert refused["diseases"] == [] and refused["request"] is dash.no_update
    assert "diseases: none of the link's values is in this atlas, so the query was not run" in _text(refused["notes"])
    assert "separate several with '|'" in _text(refused["notes"])
    # one value known, one not: the known one is kept and the query runs on it, the other named
    part = link.restore(data, "?genes=CD14&diseases=normal|Martian", 0)
    assert part["diseases"] == ["normal"] and part["request"] == 1


def test_disease_groups_from_the_link_to_the_ranking(tiny_build):
    from dashboard import export
    from dashboard.views.studies import disease_groups_note

    data = DashboardData(tiny_build[1])
    known = known_values(data)
    options = _options(disease_group_choices(data))
    assert {"infectious disease", "autoimmune disease"} <= set(options) and "COVID-19" not in options  # parent terms only
    # a term id and a label in a link; a disease that groups nothing is dropped with a note
    state, notes = decode_state("?disease_groups=infectious+disease|MONDO:0007179|asthma", known)
    assert state["disease_groups"] == ["infectious disease", "autoimmune disease"]
    assert notes == ["disease_groups: 'asthma' is not in this atlas; dropped"]
    assert encode_state(state) == "?disease_groups=infectious+disease|autoimmune+disease"
    assert decode_state(encode_state(state), known) == (state, [])
    text, cell_types = apply_preset(data, "ms1")
    state |= {"genes": text, "cell_types": cell_types, "null_draws": 0}
    params = query_params(state)
    assert params.disease_groups == ("infectious disease", "autoimmune disease")  # in the order chosen
    pooled = data.disease_grouping(params.disease_groups)
    members = {g: sorted(d for d, grp in pooled.items() if grp == g) for g in params.disease_groups}
    assert all(len(m) >= 2 for m in members.values()) and "COVID-19" in members["infectious disease"]
    out = answer_query(data, state)
    ranking = out["tables"]["diseases"]
    assert ranking["group"].iloc[0] == "infectious disease"  # it pools the planted sepsis and COVID-19
    assert not set(pooled) & set(ranking["group"])  # no pooled disease is ranked on its own
    plain = answer_query(data, state | {"disease_groups": []})["result"]
    samples = plain.samples[plain.samples["disease"].astype(str).isin(members["infectious disease"])]
    assert int(ranking.set_index("group").loc["infectious disease", "n_samples"]) == len(samples)
    # every view says so: the title, the table, the cells CSV, the note under the control, the methods
    assert "diseases grouped by infectious disease, autoimmune disease" in out["disease_fig"].to_dict()["layout"]["title"]["text"]
    assert "disease (MONDO term or group)" in _text(out["disease_table"])
    umap = out["tables"]["umap"]
    assert (umap["disease_group"] == umap["disease"].astype(str).map(lambda d: pooled.get(d, d))).all()
    note = disease_groups_note(data, params.disease_groups)
    assert note.startswith("Ranked as one: infectious disease: ") and ", ".join(members["autoimmune disease"]) in note
    methods = export.methods_paragraph(data.atlas, out["result"])
    assert "ranked at parent terms" in methods and f"infectious disease ({', '.join(members['infectious disease'])})" in methods
    # the control: in the layout, in the link, with the note's callback
    app = create_app(tiny_build[1])
    control = _find(app.layout, ids.DISEASE_GROUPS)
    assert control.data == disease_group_choices(data).options and control.value == []
    assert controls.show_disease_groups(data, ["infectious disease"])["note"].startswith("Ranked as one: infectious disease: ")
    assert controls.show_disease_groups(data, []) == {"note": ""}
    assert link.restore(data, "?genes=CD14&disease_groups=MONDO:0005550", 0)["disease_groups"] == ["infectious disease"]


def test_ms1_preset_selects_the_monocyte_term(tiny_build):
    from dashboard.presets import MARKER_TERMS

    data = DashboardData(tiny_build[1])
    assert PRESETS["ms1"].cell_type_term == "CL:0000576" and "monocyte (CL:0000576)" in PRESETS["ms1"].source
    assert apply_preset(data, "ms1")[1] == ["monocyte"]
    assert apply_preset(data, "h-interferon-alpha-response")[1] == []  # a gene set of no cell type selects none
    # opening a link with the preset fills the filter with the one term
    restored = link.restore(data, "?preset=ms1", 0)
    assert restored["cell_types"] == ["monocyte"] and restored["request"] == 1
    assert [g for g, _ in parse_gene_list(restored["genes"])] == list(PRESETS["ms1"].genes)
    # marker sets name their term in the source (never selected: markers are run over all cells)
    b_cell = PRESETS["m-b-cell"]
    assert b_cell.marker_of == ("CL:0000236", "B cell") and "markers of B cell (CL:0000236)" in b_cell.source
    assert apply_preset(data, "m-b-cell")[1] == []
    assert all(p.marker_of is None for p in PRESETS.values() if p.group == "Immune cell-type markers"
               and p.label.removesuffix(" markers") not in MARKER_TERMS)


def test_marker_terms_are_the_cell_ontology_terms_they_name():
    from compute.vocabulary import ontologies
    from dashboard.presets import MARKER_TERMS

    onto = ontologies()
    for name, (term_id, label) in MARKER_TERMS.items():
        term = onto.term(term_id)
        assert term is not None and term.label == label and not term.deprecated, name


def test_umap_says_which_cell_type_labels_it_shows(tiny_build):
    import numpy as np

    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    text, cell_types = apply_preset(data, "ms1")
    state = _state(genes=text, cell_types=cell_types, null_draws=0, min_coverage=0.0)
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
    control = _find(create_app(tiny_build[1]).layout, ids.UMAP_COLOR)
    labels = {d["value"]: d["label"] for d in control.data}
    assert labels["cell_type"] == "cell type (annotated)" and labels["cell_type_predicted"] == "cell type (predicted)"
    assert decode_state("?color=cell_type_predicted")[0]["color"] == "cell_type_predicted"


def test_study_reports_show_each_study_vocabulary_and_the_label_transfer(tiny_build):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(tiny_build[1])
    panel = study_reports_panel(data)
    vocab = data.atlas.meta["vocabulary"]
    note = _text(_find(panel, ids.VOCABULARY_NOTE))
    assert "Cell Ontology" in note and "MONDO" in note and "UBERON" in note and f"CL {vocab['versions']['CL']}" in note
    assert f"{100 * vocab['label_transfer']['accuracy']['exact']:.1f}% get their own term" in note
    real = next(s for s in data.atlas.studies if not s.simulated)
    table = _find(panel, f"{ids.STUDY_VOCABULARY_PREFIX}{real.id}")
    text = _text(table)
    report = real.meta["report"]["vocabulary"]
    for m in report["cell_type"]["mapped"]:
        assert m["label"] in text and m["term_label"] in text and m["term_id"] in text
    assert "by the manifest's map" in text and "healthy -> normal (PATO)" in text
    for m in report["cell_type"]["unmapped"]:
        assert m["label"] in text and m["reason"] in text and "kept as its own group" in text
    # the sentence that sums the table up is not repeated beside it; simulated studies stay labelled
    assert "labels matched to Cell Ontology terms" not in _text(panel)
    assert _text(panel).count("SIMULATED data: planted expression programs") == sum(s.simulated for s in data.atlas.studies)


@pytest.fixture(scope="module")
def pre_vocabulary_atlas(tiny_build, tmp_path_factory):
    """The tiny atlas as a build before the vocabulary wrote it: no vocabulary, no term ids, no
    original labels, no label transfer."""
    import json

    src = tiny_build[1]
    dst = tmp_path_factory.mktemp("pre-vocabulary") / "atlas"
    dst.mkdir()
    for item in src.iterdir():
        if item.name not in ("atlas.json", "studies", "vocabulary.json"):
            (dst / item.name).symlink_to(item)
    for study in (src / "studies").iterdir():
        out = dst / "studies" / study.name
        out.mkdir(parents=True)
        for f in study.iterdir():
            if f.name == "cells.parquet":
                cells = pd.read_parquet(f)
                drop = [c for c in cells if c.endswith(("_original", "_ontology_term_id")) or c.startswith("cell_type_predict")]
                cells.drop(columns=drop).to_parquet(out / f.name)
            else:
                (out / f.name).symlink_to(f)
    root = json.loads((src / "atlas.json").read_text())
    root.pop("vocabulary", None)
    for s in root["studies"]:
        (s.get("report") or {}).pop("vocabulary", None)
    # a consistent old atlas: its root records the files it has (Atlas.open checks them)
    from compute.files import file_record

    root["files"] = {rel: (file_record(dst / rel) if rel.endswith("cells.parquet") else rec)
                     for rel, rec in root["files"].items() if (dst / rel).exists()}
    (dst / "atlas.json").write_text(json.dumps(root))
    return dst


def test_an_atlas_without_a_vocabulary_uses_the_studies_labels(pre_vocabulary_atlas):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(pre_vocabulary_atlas)
    assert not data.has_vocabulary
    choices = filter_choices(data, "cell_types")
    assert [g["group"] for g in choices.options] == ["Labels as the studies gave them (this atlas records no ontology terms)"]
    assert choices.option_values == data.cell_types
    # the MS1 preset falls back to the cell types named like its term
    text, cell_types = apply_preset(data, "ms1")
    assert cell_types == [c for c in data.cell_types if "monocyte" in c]
    state, notes = decode_state("?cell_types=CL:0000576&disease_groups=infectious+disease", known_values(data))
    assert state["cell_types"] == state["disease_groups"] == [] and len(notes) == 2
    out = answer_query(data, _state(genes=text, cell_types=cell_types, null_draws=0, color="cell_type_predicted"))
    assert out["tables"]["diseases"]["group"].iloc[0] == "infectious disease with sepsis"
    assert "no predicted cell types" in out["umap_fig"].to_dict()["layout"]["meta"]["empty"]
    assert "records no ontology terms" in _text(_find(study_reports_panel(data), ids.VOCABULARY_NOTE))
    app = create_app(pre_vocabulary_atlas)
    assert _find(app.layout, ids.DISEASE_GROUPS).disabled is True


# -- every callback, called directly -------------------------------------------------------------
def test_every_callback_is_a_top_level_function_of_a_callbacks_module(tiny_build):
    """What Dash calls is a top-level function of dashboard.callbacks.* (given the data), with its
    outputs named: the tests below call the same functions."""
    import importlib

    app = create_app(tiny_build[1])
    found = set()
    for spec in app.callback_map.values():
        fn = spec["callback"]
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        module = importlib.import_module(fn.__module__)
        assert fn.__module__.startswith("dashboard.callbacks.") and getattr(module, fn.__name__) is fn, fn.__qualname__
        assert "<locals>" not in fn.__qualname__
        # its outputs and inputs are named (a dict), none matched by position
        assert isinstance(spec["outputs_indices"], dict) and isinstance(spec["inputs_state_indices"], dict), fn.__qualname__
        found.add(f"{fn.__module__.rsplit('.', 1)[1]}.{fn.__name__}")
    assert found == {"link.restore", "link.write_link", "controls.on_preset", "controls.on_upload", "controls.on_upload_set",
                     "controls.show_disease_groups", "studies.show_study_reports", "query.run_query", "query.run_anyway", "query.rank_now",
                     "query.finish_now", "query.on_cancel", "query.stale_note", "render.render", "render.render_partial",
                     "cells.render_umap", "diseases.render_drivers", "diseases.render_forest", "diseases.pick_forest_disease",
                     "modules.render_modules", "modules.show_module", "modules.add_missing", "modules.use_module",
                     "export.download", "presenter.set_presenter", "presenter.save_view", "presenter.step",
                     "cell_genes.rank_genes", "cell_genes.show_spread", "cell_genes.pick_gene",
                     "cell_genes.send_top", "cell_genes.send_selected"}


@pytest.fixture(scope="module")
def ms1_key(tiny_build):
    """(data, state, result key) of the MS1 preset's query, run through the query callback."""
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    state = _state(genes=text, cell_types=cell_types, null_draws=0)
    progress = []
    ran = query_run(data, progress.append, state)
    assert ran["query_error"] is None and ran["status"] is dash.no_update and progress[-1][0] == 100
    return data, state, ran["result_key"]


def query_run(data, set_progress, state):
    from dashboard.callbacks import query

    return query.run_query(data, set_progress, 1, None, **{k: state[k] for k in QUERY_KEYS})


def test_the_query_callback_stores_a_result_or_says_why_not(ms1_key):
    data, state, key = ms1_key
    assert data.stored_result(key).params == query_params(read_state(state.items(), known_values(data), strict=True)[0],
                                                          expression=data.atlas.has_expression)
    progress = []
    again = query_run(data, progress.append, state)
    assert again == {"result_key": key, "query_error": None, "status": dash.no_update, "resolution": dash.no_update,
                     "ask": {"display": "none"}, "ask_text": dash.no_update}
    assert progress == [(100, "answered from the cache")]
    # a query compute cannot answer: its error and the gene text, for the views to show
    failed = query_run(data, progress.append, state | {"genes": "NOT_A_GENE"})
    assert failed["result_key"] is None and failed["query_error"]["genes"] == "NOT_A_GENE"
    assert "none of the 1 requested genes" in failed["query_error"]["error"]
    assert progress[-1] == (0, "failed: see the message above the tabs")  # never left on a step (issue 18)
    # settings that form no query: said in the status, nothing stored; the views keep the last
    # result (no update: the out-of-date marker says so) and the old gene decisions go
    assert query_run(data, progress.append, state | {"genes": " , "}) == {
        "result_key": dash.no_update, "query_error": dash.no_update, "status": "Paste genes (any separators) or pick a preset, then Run",
        "resolution": [], "ask": {"display": "none"}, "ask_text": dash.no_update}
    assert progress[-1] == (0, "")
    bad = query_run(data, progress.append, state | {"cutoff": 150})
    assert bad["result_key"] is dash.no_update and bad["status"].children == "cutoff must be within 0-100 for the percentile rule, got 150"
    # an emptied control (None) takes its default (here the value it had: the same, cached query;
    # a new one with 1,000 null draws would also be the browser tests' first, which must run)
    assert state["samp_min"] == DEFAULTS["samp_min"]
    assert query_run(data, progress.append, state | {"samp_min": None})["result_key"] == key


def test_few_genes_among_the_entries_asks_before_running(ms1_key):
    """A paper's sentence with few genes among its words (issue 36, item 1): the query is not run
    and the page asks, with the gene decisions; 'Run anyway' accepts that text and runs it."""
    from dashboard.callbacks import query

    data, state, key = ms1_key
    genes = list(data.atlas.genes[:2])
    text = f"Monocytes of these patients expressed {genes[0]} and {genes[1]} at a higher level than in controls (was it 2 fold)."
    progress = []
    asked = query_run(data, progress.append, state | {"genes": text})
    assert asked["result_key"] is dash.no_update and asked["ask"] == {} and asked["status"].children == query.NOT_RUN_FEW_GENES
    assert asked["ask_text"].startswith("Only 2 of the ") and "no gene (words, numbers)" in asked["ask_text"]
    assert progress[-1] == (0, "not run: few of the entries are genes (see above)")
    assert "2 of 2 genes matched" in _text(asked["resolution"]) and "Not genes, not used" in _text(asked["resolution"])
    # nor does Run's own request rank it
    view = {k: state[k] for k in render.RENDER_SETTINGS}
    with pytest.raises(dash.exceptions.PreventUpdate):
        query.rank_now(data, 1, None, False, None, **{k: (state | {"genes": text})[k] for k in QUERY_KEYS}, **view)
    # 'Run anyway': the text accepted, a new request; then the query runs on the two genes
    anyway = query.run_anyway(data, 1, text, 4)
    assert anyway["request"] == 5 and anyway["ask"] == {"display": "none"}
    ran = query.run_query(data, progress.append, None, 5, accepted=anyway["accepted"],
                          **{k: (state | {"genes": text})[k] for k in QUERY_KEYS})
    assert ran["query_error"] is None and ran["ask"] == {"display": "none"}
    assert data.stored_result(ran["result_key"]).resolution.matched == tuple(genes)
    # a list that is mostly genes runs without asking
    assert query_run(data, progress.append, state)["ask"] == {"display": "none"}


def test_the_run_request_draws_the_ranking_before_the_job(ms1_key, monkeypatch):
    """Run's own request ranks a new query and returns its ranking views (the job adds the
    p-values); nothing for a stored result, settings that form no query, or a busy server."""
    from dashboard.callbacks import query

    data, state, key = ms1_key
    view = {k: state[k] for k in render.RENDER_SETTINGS}

    def rank(st):
        return query.rank_now(data, 1, None, False, None, **{k: st[k] for k in QUERY_KEYS}, **view)

    new = state | {"genes": "\n".join(state["genes"].split("\n")[:-1])}  # one gene less: never asked
    params = query_params(read_state(new.items(), known_values(data), strict=True)[0], expression=data.atlas.has_expression)
    assert data.stored_result(data.result_key(params)) is None
    views = rank(new)
    assert views["status"].id == ids.PARTIAL_NOTE and views["robust_fig"] is dash.no_update
    ranked = data.stored_result(data.partial_key(data.result_key(params)))
    assert ranked is not None and ranked.null == {} and len(_text(views["disease_table"])) > 0
    assert _text(views["disease_table"]).count(str(ranked.diseases["group"].iloc[0])) >= 1
    # the job completes that ranking: the same scores, now with p-values
    full = data.query(params)
    np.testing.assert_array_equal(full.scores, ranked.scores)
    for no_update in (state, state | {"genes": " , "}, state | {"cutoff": 150}):
        with pytest.raises(dash.exceptions.PreventUpdate):
            rank(no_update)
    monkeypatch.setattr(type(data.job_slots), "busy", lambda self: self.limit)
    with pytest.raises(dash.exceptions.PreventUpdate):  # every slot taken: the job ranks it in its turn
        rank(state | {"genes": "\n".join(state["genes"].split("\n")[:-2])})


def test_the_render_callbacks_show_a_result_an_error_or_nothing(ms1_key):
    data, state, key = ms1_key
    view = {"top_n": 2, "group_by": "study", "heat": "dotplot", "order": "score", "color": "disease"}
    views = render.render(data, key, None, False, None, **view)
    # every view but the Cells tab's, which render_umap draws while that tab shows
    assert set(views) - {"drawn"} == set(RESULT_VIEWS) - set(UMAP_VIEWS) and tuple(render.RENDER_OUTPUTS) == tuple(
        v for v in RESULT_VIEWS if v not in UMAP_VIEWS)
    # what the drawing shows: drawn again with the same settings, nothing is sent; another setting redraws
    assert views["drawn"] == render.views_signature(key, False, None, view)
    with pytest.raises(dash.exceptions.PreventUpdate):
        render.render(data, key, None, False, None, drawn=views["drawn"], **view)
    assert render.render(data, key, None, False, None, drawn=views["drawn"], **(view | {"top_n": 3}))["drawn"] != views["drawn"]
    assert len(_table_rows(views["disease_table"])) == 2  # top 2
    result = data.stored_result(key)
    assert views["heatmap_fig"].to_dict()["data"][0]["type"] == "scatter" and "study" in views["heatmap_fig"].layout.title.text
    assert views["driver_groups"] == [str(g) for g in result.diseases["group"]]
    big = render.render(data, key, None, True, None, **view)
    assert big["disease_fig"].layout.font.size == 20 and views["disease_fig"].layout.font.size < 20
    assert big["disease_fig"].layout.height is None  # fitted to the screen by the page's CSS
    # a bad view setting takes its default, as in a link
    rows = _table_rows(render.render(data, key, None, False, None, **(view | {"top_n": ""}))["disease_table"])
    assert len(rows) == len(result.diseases) > 2 and [r[1] for r in rows] == [str(g) for g in result.diseases["group"]]
    failed = render.render(data, None, {"error": "no cells match the filters", "genes": "CD14 NOPE"}, False, None, **view)
    assert failed["status"].children == "no cells match the filters" and failed["study_rows"] == []
    assert "NOPE" in _text(failed["resolution"]) and failed["disease_fig"].to_dict()["layout"]["meta"]["empty"] == "no cells match the filters"
    for no_result in ((None, None), ("not-a-key", None)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            render.render(data, *no_result, False, None, **view)
    # the UMAP: only while its tab shows, once per result, colour and presenter mode
    with pytest.raises(dash.exceptions.PreventUpdate):
        cells.render_umap(data, key, None, "diseases", "disease", False, None)
    umap = cells.render_umap(data, key, None, "cells", "disease", False, None)
    assert set(umap) == {*UMAP_VIEWS, "drawn"} and umap["drawn"].startswith(f"{key}|")
    assert umap["umap_fig"].layout.meta["color_by"] == "disease" and umap["umap_badge"].endswith("cells shown")
    with pytest.raises(dash.exceptions.PreventUpdate):
        cells.render_umap(data, key, None, "cells", "disease", False, umap["drawn"])
    assert cells.render_umap(data, key, None, "cells", "score", True, umap["drawn"])["umap_fig"].layout.font.size == 20
    gone = cells.render_umap(data, None, {"error": "no cells match the filters", "genes": ""}, "cells", "score", False, umap["drawn"])
    assert gone["umap_fig"].to_dict()["layout"]["meta"]["empty"] == "no cells match the filters"
    second = views["driver_groups"][1]
    drivers = diseases.render_drivers(data, second, key, True)["driver_fig"]
    assert drivers.layout.title.text.startswith(f"Driver genes in {second}") and drivers.layout.font.size == 20
    with pytest.raises(dash.exceptions.PreventUpdate):
        diseases.render_drivers(data, second, None, False)


def test_the_link_is_written_once_a_query_ran(ms1_key):
    data, state, key = ms1_key
    settings = {k: state[k] for k in state if k != "preset"} | {"tab": "genes", "null_draws": None}
    search = link.write_link(data, key, None, **settings)["search"]
    written = state | {"genes": normalise_genes(state["genes"]), "tab": "genes", "null_draws": DEFAULTS["null_draws"]}
    assert decode_state(search, known_values(data)) == (written, [])
    assert "null_draws" not in search and "tab=genes" in search  # an emptied control is its default
    assert link.write_link(data, None, {"error": "x", "genes": "CD14"}, **settings)["search"] == search
    with pytest.raises(dash.exceptions.PreventUpdate):
        link.write_link(data, None, None, **settings)


def test_out_of_date_marker_cancel_and_short_links(ms1_key, tiny_atlas):
    """Issue 18: settings that no longer ask for the result shown are said, Cancel says what the
    views show, a list too long for an address gets a short link that reopens it line by line."""
    from dashboard.callbacks import query
    from dashboard.callbacks.wiring import CONTROLS

    data, state, key = ms1_key
    asked = {k: state[k] for k in QUERY_KEYS}
    assert query.stale_note(data, key, None, **asked) == {"note": None}
    assert query.stale_note(data, None, None, **asked) == {"note": None}  # no result shown
    for change, why in (({"cutoff": 95}, "the genes, filters or hit settings changed"), ({"genes": ""}, "the gene box is empty"),
                        ({"cutoff": 150}, "a setting is invalid")):
        note = query.stale_note(data, key, None, **(asked | change))["note"]
        assert note.title == "Out of date: run again" and why in _text(note), change
    # the gene text in another layout (one gene a line, as a link restores it) is the same query
    lines = "\n".join(g.strip() for g in asked["genes"].split(","))
    assert query.stale_note(data, key, None, **(asked | {"genes": lines})) == {"note": None}
    cancelled = query.on_cancel(data, 1, key, **(asked | {"cutoff": 95}))
    assert cancelled["status"].children == query.CANCELLED and (cancelled["progress"], cancelled["progress_text"]) == (0, "cancelled")
    # the query controls ask for another query than the result drawn again: it is marked out of date again (issue 36)
    assert cancelled["stale"].title == "Out of date: run again"
    assert query.on_cancel(data, 1, key, **asked)["stale"] is None
    # the previous result's views drawn again (the cancelled query's ranking may be on screen)
    previous = render.render(data, key, None, False, None)
    assert set(cancelled) == set(render.RENDER_OUTPUTS) | {"progress", "progress_text", "drawn", "stale"} and cancelled["drawn"] is None
    assert _text(cancelled["disease_table"]) == _text(previous["disease_table"]) != ""
    assert "Nothing was run" in query.on_cancel(data, 1, None)["status"].children
    with pytest.raises(dash.exceptions.PreventUpdate):
        query.on_cancel(data, None, key)
    # the real/simulated switch named when it is why no cell matches
    simulated = next(s.id for s in tiny_atlas.studies if s.simulated)
    status = answer_query(data, _state(genes="CD14 LYZ", studies=[simulated], data_kind="real", null_draws=0))["status"]
    assert status.children.startswith("No cells match: the filters select cells only in simulated studies, and the Data switch")
    # a long list: a short link in the shared store, which restores the box one gene a line
    long = state | {"genes": "\n".join([*lines.split("\n"), *(f"NOTAGENE{i:04d}" for i in range(700))])}
    search = link.write_link(data, key, None, **{k: long[k] for k in CONTROLS if k in long})["search"]
    assert search.startswith("?s=") and len(search) < 40
    restored = link.restore(data, search, 3)
    assert restored["genes"] == long["genes"] and restored["request"] == 4 and restored["notes"] is None
    lost = link.restore(data, "?s=0123456789abcdef", 0)
    assert "not known to this server" in _text(lost["notes"]) and lost["genes"] == ""
    assert link.gene_box_text("CD14,LYZ 2.0,, VCAN:3") == "CD14\nLYZ 2.0\nVCAN:3"


def test_presets_and_uploads_fill_the_gene_box(ms1_key):
    import base64

    data = ms1_key[0]
    picked = controls.on_preset(data, [None, 1, None], None, 4, trigger={"type": "preset", "key": "ms1"})
    # the preset list is emptied after use: it names no state the gene box keeps
    assert picked == {"genes": apply_preset(data, "ms1")[0], "cell_types": ["monocyte"], "request": 5, "selected": None}
    example = controls.on_preset(data, [None] * 3, None, 1, trigger={"type": ids.EXAMPLE_TYPE, "key": "ms1"}, examples=[1, None])
    assert example["genes"] == picked["genes"] and example["request"] == 2
    assert controls.on_preset(data, [None, None, None], "ms1", None, trigger=ids.PRESET_SELECT)["request"] == 1
    for clicks, selected, trigger in (([None] * 3, None, {"type": "preset", "key": "ms1"}), ([None] * 3, "nope", ids.PRESET_SELECT)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            controls.on_preset(data, clicks, selected, 0, trigger=trigger)
    gmt = "data:text/plain;base64," + base64.b64encode(b"A\tdesc\tCD14\tVCAN\nB\tdesc\tMS4A1\n").decode()
    up = controls.on_upload(data, gmt, "sets.gmt")
    assert up == {"genes": "CD14\nVCAN", "set_options": ["A", "B"], "set_value": "A", "set_style": {}, "sets": {"A": "CD14\nVCAN", "B": "MS4A1"},
                  "note": "sets.gmt: 2 gene sets; showing 'A'"}
    assert controls.on_upload_set(data, "B", up["sets"]) == {"genes": "MS4A1"}
    with pytest.raises(dash.exceptions.PreventUpdate):
        controls.on_upload_set(data, "C", up["sets"])
    bad = controls.on_upload(data, "not a data url", "x.csv")
    assert bad["genes"] is dash.no_update and bad["sets"] is None and bad["note"].children == "x.csv: the upload arrived damaged; try again"
    # a GMT with one malformed line keeps its valid sets and names the line (issue 36, item 10)
    mixed = "data:text/plain;base64," + base64.b64encode(b"A\tdesc\tCD14\nbroken line\nB\tdesc\tMS4A1\n").decode()
    up = controls.on_upload(data, mixed, "mixed.gmt")
    assert up["sets"] == {"A": "CD14", "B": "MS4A1"} and up["genes"] == "CD14"
    assert "mixed.gmt, line 2: a GMT line needs a name, a description and genes" in _text(up["note"])
    assert "2 gene sets" in _text(up["note"])


def test_downloads_are_the_views_data(ms1_key):
    import base64
    import io
    import zipfile

    from dashboard.callbacks import export as export_callbacks
    from dashboard.views.results import view_tables

    data, state, key = ms1_key
    view = {k: state[k] for k in ("top_n", "group_by", "heat", "order", "color", "tab")}
    buttons = list(export_callbacks.CSV_BUTTONS)

    def csv_of(name):
        clicks = [1 if b == f"{ids.CSV_PREFIX}{name}" else None for b in buttons]
        return export_callbacks.download(data, None, clicks, key, None, trigger=f"{ids.CSV_PREFIX}{name}", **view)["file"]

    diseases = csv_of("diseases")
    expected = view_tables(data, data.stored_result(key), state)["diseases"]
    assert diseases["filename"] == "sigatlas-diseases.csv" and diseases["type"] == "text/csv"
    assert pd.read_csv(io.StringIO(diseases["content"]))["group"].tolist() == expected["group"].tolist()
    assert csv_of("modules")["content"].startswith("gene,set,module,")
    # the snapshot: its images drawn in the browser (one figure here, one that could not be drawn)
    svg = "data:image/svg+xml," + "%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%3E%3C%2Fsvg%3E"
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    images = {"images": {"diseases": {"svg": svg, "png": png, "width": 900, "height": 600}, "umap": {"error": "no WebGL"}}}
    snap = export_callbacks.download(data, images, [None] * len(buttons), key, "http://x/?genes=CD14", trigger=ids.SNAPSHOT_IMAGES,
                                     **view)["file"]
    assert snap["filename"] == f"sigatlas-snapshot-{data.atlas.name}.zip"
    zf = zipfile.ZipFile(io.BytesIO(base64_bytes(snap)))
    names = zf.namelist()
    assert "genes_resolved.csv" in names and any(n.endswith(".json") for n in names)
    assert {"figures/diseases.svg", "figures/diseases.png"} <= set(names) and "figures/umap.svg" not in names
    assert "resolution.csv" not in names and "scatter.csv" not in names  # the same bytes as genes_resolved.csv and umap.csv
    readme = zf.read("README.txt").decode()
    assert "figure not drawn as an image: umap (no WebGL)" in readme and "table 'scatter' is the same as umap.csv" in readme
    # no click (a button appearing) or no result: nothing to download
    for clicks, result_key in (([None] * len(buttons), key), ([1] * len(buttons), None)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            export_callbacks.download(data, None, clicks, result_key, None, trigger=f"{ids.CSV_PREFIX}diseases", **view)


def base64_bytes(payload: dict) -> bytes:
    import base64

    assert payload["base64"] is True
    return base64.b64decode(payload["content"])


def test_presenter_mode_and_saved_views(ms1_key):
    from dashboard.callbacks import presenter

    data = ms1_key[0]
    assert presenter.set_presenter(data, True) == {"class_name": "app presenter"}
    assert presenter.set_presenter(data, None) == {"class_name": "app"}
    saved = presenter.save_view(data, 1, "?genes=CD14,LYZ,S100A8,VCAN", [], "CD14, LYZ\nS100A8 VCAN")["saved"]
    assert saved == [{"search": "?genes=CD14,LYZ,S100A8,VCAN", "label": "CD14, LYZ, S100A8…"}]
    saved = presenter.save_view(data, 2, "?genes=MS4A1", saved, "MS4A1")["saved"]
    # saving a view again moves it last
    assert [v["search"] for v in presenter.save_view(data, 3, "?genes=CD14,LYZ,S100A8,VCAN", saved, "CD14")["saved"]] == [
        "?genes=MS4A1", "?genes=CD14,LYZ,S100A8,VCAN"]
    with pytest.raises(dash.exceptions.PreventUpdate):
        presenter.save_view(data, 1, None, saved, "CD14")
    assert presenter.step(data, 1, None, saved, "?genes=MS4A1", trigger=ids.NEXT_VIEW) == {
        "search": "?genes=CD14,LYZ,S100A8,VCAN", "position": "view 1 of 2: CD14, LYZ, S100A8…"}
    assert presenter.step(data, 1, None, saved, "?genes=CD14,LYZ,S100A8,VCAN", trigger=ids.PREV_VIEW)["search"] == "?genes=MS4A1"
    assert presenter.step(data, None, None, saved, "?genes=MS4A1", trigger=ids.SAVED_VIEWS) == {"search": dash.no_update,
                                                                                                   "position": "view 2 of 2"}
    assert presenter.step(data, None, None, [], None, trigger=ids.SAVED_VIEWS)["position"] == "no saved views yet: use 'Save view'"


def test_one_rule_for_a_setting_in_the_link_the_controls_and_the_api(ms1_key):
    """The same bad value: a link falls back with a note, the controls and the API name it; the
    same reason each time (dashboard.state owns it)."""
    from compute.query import HIT_RANGES
    from dashboard.api import ApiInputError, parse_query

    data, state, _ = ms1_key
    assert HIT_RANGES["quantile"] == (0.0, 1.0)
    for new, old in (("cutoff", "cut"), ("null_draws", "null")):
        value = 1.5 if new == "cutoff" else 50
        base = {"rule": "quantile"} if new == "cutoff" else {}
        for name in (new, old):
            _, notes = decode_state(f"?{'rule=quantile&' if base else ''}{name}={value}", known_values(data))
            reason = "must be within 0-1 for the quantile rule" if new == "cutoff" else "must be 0 (no p-values) or 100-10,000 draws"
            assert notes == [f"{name}={value} {reason}; using {0.9 if new == 'cutoff' else 1000}"]
            out = answer_query(data, state | base | {new: value})
            assert out["status"].children == f"{new} {reason}, got {value:g}"
            with pytest.raises(SigAtlasError, match=f"^{name} must be "):
                parse_query({"genes": "CD14", **base, name: value}, known_values(data))
    with pytest.raises(ApiInputError, match="genes is empty"):
        parse_query({"genes": " ; "}, known_values(data))
    assert issubclass(ApiInputError, SigAtlasError)
    # an old link opens the same view as the new one
    old, _ = decode_state("?genes=CD14&data=simulated&rule=quantile&cut=0.95&null=100", known_values(data))
    assert old == decode_state("?genes=CD14&data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=100", known_values(data))[0]
    assert encode_state(old) == "?genes=CD14&data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=100"


def test_the_disease_table_escapes_what_it_shows():
    from dashboard.views.results import _ranking_table

    name = "<img src=x onerror=alert(1)> & co"
    ranking = pd.DataFrame({"rank": [1], "group": [name], "mean_hit_pct": [12.5], "median_hit_pct": [10.0], "n_samples": [3],
                            "n_studies": [1], "n_cells": [1234]})
    table = _ranking_table(ranking, None, {})
    assert table.id == ids.DISEASE_TABLE and table.dangerously_allow_html
    # written as character references (dashboard.markup.html_text; tests/test_markup.py renders hostile labels)
    assert "<img" not in table.children and "&#60;img src=x onerror=alert(1)&#62; &#38; co" in table.children
    assert _table_rows(table) == [["1", name, "12.5", "10.0", "3", "1", "1,234", "–", "–"]]


def test_a_disease_keeps_its_colour_across_queries(ms1_key):
    """Issue 36, item 4: two queries that rank the diseases differently colour each disease alike
    in every figure (the atlas's sorted vocabulary gives the colours, not the rank)."""
    from dashboard.views.results import render_views

    data, state, key = ms1_key
    first = data.stored_result(key)
    other = data.query(query_params(read_state((state | {"genes": "\n".join(list(data.atlas.genes[-40:]))}).items(),
                                               known_values(data), strict=True)[0], expression=data.atlas.has_expression))
    colours = label_colours(data, "disease")
    seen = {}
    for result in (first, other):
        views = render_views(data, result, state | {"color": "disease"})
        for name in ("disease_fig", "robust_fig"):
            meta = views[name].to_dict()["layout"]["meta"]
            for disease, colour in meta["colours"].items():
                assert colour == colours[disease], (name, disease)
                assert seen.setdefault(disease, colour) == colour
        umap = [t for t in views["umap_fig"].to_dict()["data"] if t["name"] in colours]
        assert umap and all(t["marker"]["color"] == colours[t["name"]] for t in umap)
    assert len(seen) >= 2

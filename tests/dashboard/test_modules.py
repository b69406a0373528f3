"""The Modules tab without a browser: a planted program placed, the top 10 missing genes added and a
module used as the signature, the heatmap's CSV, the tab without modules, a query or success, the
tab in the layout and the link."""

from __future__ import annotations

import dash
import numpy as np
import pytest

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.app import create_app
from dashboard.callbacks import modules
from dashboard.data import DashboardData
from dashboard.state import (
    TABS,
    append_genes,
    decode_state,
)
from dashboard.views.modules import modules_table, modules_view
from tests.dashboard.helpers import find, text_of


def test_modules_tab_places_a_planted_program(modules_app):
    from compute.genemodules import gene_modules

    data, genes, key = modules_app
    out = modules.render_modules(data, key, None, "modules", None, False)
    summary, overlap, missing, fig, options, value, method, store = (
        out[k] for k in ("summary", "overlap_rows", "missing_rows", "figure", "module_options", "module_value", "method", "store"))
    gm = gene_modules(data.atlas)
    considered = [g for g in genes if g in set(gm.genes)]
    head = text_of(find(summary, ids.MODULES_HEAD))
    assert head.startswith(f"{len(genes)} of {len(genes)} signature genes matched the atlas; {len(considered)} of these {len(genes)} "
                           f"are among the {len(gm.genes):,} genes the modules were built from; coherence r̄ = ")
    assert "random gene sets of the same size" in head and "z = " in head and "p ≤ 0.001" in head  # 1,000 draws: the floor
    assert "more than random gene sets" in text_of(find(summary, ids.MODULES_READING))
    skipped = text_of(find(summary, ids.MODULES_NOT_CONSIDERED))
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

def test_presenter_mode_draws_the_modules_again_in_large_type(modules_app):
    """Issue 36, item 7: presenter mode was read only when the tab first drew a result, and only
    the figure's base type changed (its gene names stayed 9-11 px). Now a switch draws the tab
    again (the store records the type it was drawn in), names in presenter type."""
    from dashboard.figures.modules import PRESENTER_LABEL_PX
    from dashboard.views.results import PRESENTER_FONT

    data, genes, key = modules_app
    plain = modules.render_modules(data, key, None, "modules", None, False)
    big = modules.render_modules(data, key, None, "modules", plain["store"], True)
    layout = big["figure"].to_dict()["layout"]
    assert big["store"]["presenter"] is True and plain["store"]["presenter"] is False
    assert layout["font"]["size"] == PRESENTER_FONT["size"] and layout["yaxis"]["tickfont"]["size"] == PRESENTER_LABEL_PX
    assert layout.get("height", 0) > 0 and not layout.get("autosize")  # its own height, not left to the screen
    for shown, presenter in ((big["store"], True), (plain["store"], False)):  # drawn in this type already
        with pytest.raises(dash.exceptions.PreventUpdate):
            modules.render_modules(data, key, None, "modules", shown, presenter)


def test_add_the_top_10_and_use_a_module(modules_app):

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
    assert shown["use_disabled"] is False and info["hub_genes"] == text_of(find(detail, ids.MODULE_HUBS))
    assert text_of(find(detail, ids.MODULE_GENES)).split(", ") == info["genes"]
    assert f"{info['name']}: {info['size']} genes" in text_of(detail)
    assert modules.show_module(data, "no such module", store)["use_disabled"] is True
    assert modules.show_module(data, module, None) == {"detail": [], "use_disabled": True}
    used = modules.use_module(data, 1, module, store, 7)
    assert [g for g, _ in parse_gene_list(used["genes"])] == info["genes"] and used["request"] == 8
    from compute.genemodules import gene_modules

    assert sorted(info["genes"]) == sorted(gene_modules(data.atlas).module_genes(int(module)))
    with pytest.raises(dash.exceptions.PreventUpdate):
        modules.use_module(data, 1, None, store, 7)

def test_modules_heatmap_csv_is_the_drawn_matrix(modules_app):

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
    text = text_of(out["summary"])
    assert "This atlas has no gene modules: only 1 gene qualifies" in text
    assert "Too few of the signature's genes" in text and out["overlap_rows"] == [] and out["module_options"] == []
    assert "empty" in out["figure"].to_dict()["layout"]["meta"]
    # no query yet: the browser alone
    out = modules_view(data, None, gene_modules(data.atlas))
    assert "appears once a query has run" in text_of(out["summary"]) and out["module_options"] and out["top_missing"] == []
    # the query failed: said in the tab, the browser still works
    out = modules.render_modules(data, None, {"error": "no cells match the filters", "genes": "CD14"}, "modules", None, False)
    assert text_of(out["summary"]) == "The query failed: no cells match the filters" and out["module_options"]
    assert out["store"]["error"] == {"error": "no cells match the filters", "genes": "CD14"} and out["store"]["key"] is None
    # a failure inside the modules computation: a message in the tab, not a traceback
    damaged = _ModulesDamaged(tiny_build[1])
    damaged.query(data.stored_result(key).params)
    out = modules.render_modules(damaged, key, None, "modules", None, False)
    assert text_of(out["summary"]).startswith("This signature could not be placed among the gene modules: IndexError: ")
    assert out["store"] is None
    out = modules.render_modules(_ModulesFail(tiny_build[1]), key, None, "modules", None, False)
    assert text_of(out["summary"]) == "Gene modules could not be computed for this atlas: MemoryError: no room for the correlation matrix"
    assert out["store"] is None and out["overlap_rows"] == out["missing_rows"] == [] and out["add_disabled"] is True
    assert "empty" in out["figure"].to_dict()["layout"]["meta"]

def test_modules_tab_is_in_the_layout_and_the_link(tiny_build):
    app = create_app(tiny_build[1])
    layout = app.layout()
    tabs = find(layout, ids.TABS)
    assert [t.value for t in tabs.children[0].children][-3:] == ["genes", "cell_genes", "modules"]
    assert "SIMULATED" in text_of(find(layout, ids.MODULES_SIM))
    state, notes = decode_state("?tab=modules", {"tab": TABS})
    assert state["tab"] == "modules" and not notes

"""Running a query from the page, without a browser: the query callback stores a result or says why
not, asks before running few genes, draws the ranking in Run's request, marks out-of-date views,
Cancel, short links; the render callback draws a result, an error or nothing."""

from __future__ import annotations

import dash
import numpy as np
import pytest

from dashboard import ids
from dashboard.app import answer_query
from dashboard.callbacks import cells, diseases, link, render
from dashboard.data import DashboardData
from dashboard.state import (
    DEFAULTS,
    QUERY_KEYS,
    decode_state,
    query_params,
    read_state,
)
from dashboard.views.filters import known_values
from dashboard.views.results import RESULT_VIEWS, UMAP_VIEWS
from tests.dashboard.helpers import query_run, state_with, table_rows, text_of


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
    # the Data switch keeping only the real study, which holds healthy donors alone: one message, nothing
    # computed (no result stored, no null drawn: issue 36, item 8)
    real = state | {"data_kind": "real", "cell_types": [], "min_coverage": 0.0}
    real_params = query_params(read_state(real.items(), known_values(data), strict=True)[0], expression=data.atlas.has_expression)
    nothing = query_run(data, progress.append, real)
    assert nothing["result_key"] is None and nothing["query_error"]["error"].startswith("Nothing to rank: ")
    assert "no null was drawn" in nothing["query_error"]["error"] and "1 samples" not in nothing["query_error"]["error"]
    assert progress[-1] == (0, "not run: nothing to rank (see the message above the tabs)")
    assert data.stored_result(data.result_key(real_params)) is None
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
    assert "2 of 2 genes matched" in text_of(asked["resolution"]) and "Not genes, not used" in text_of(asked["resolution"])
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
    assert ranked is not None and ranked.null == {} and len(text_of(views["disease_table"])) > 0
    assert text_of(views["disease_table"]).count(str(ranked.diseases["group"].iloc[0])) >= 1
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
    from dashboard.views.results import NO_RESULT_NOTE

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
    assert len(table_rows(views["disease_table"])) == 2  # top 2
    result = data.stored_result(key)
    assert views["heatmap_fig"].to_dict()["data"][0]["type"] == "scatter" and "study" in views["heatmap_fig"].layout.title.text
    assert views["driver_groups"] == [str(g) for g in result.diseases["group"]]
    big = render.render(data, key, None, True, None, **view)
    assert big["disease_fig"].layout.font.size == 20 and views["disease_fig"].layout.font.size < 20
    assert big["disease_fig"].layout.height is None  # fitted to the screen by the page's CSS
    # a bad view setting takes its default, as in a link
    rows = table_rows(render.render(data, key, None, False, None, **(view | {"top_n": ""}))["disease_table"])
    assert len(rows) == len(result.diseases) > 2 and [r[1] for r in rows] == [str(g) for g in result.diseases["group"]]
    failed = render.render(data, None, {"error": "no cells match the filters", "genes": "CD14 NOPE"}, False, None, **view)
    assert failed["status"].children == "no cells match the filters" and failed["study_rows"] == []
    assert "NOPE" in text_of(failed["resolution"]) and failed["disease_fig"].to_dict()["layout"]["meta"]["empty"] == NO_RESULT_NOTE
    # the message shows once, in the status; the figures only point to it (issue 36, item 8)
    assert "no cells match the filters" in text_of(failed["status"])
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
    assert gone["umap_fig"].to_dict()["layout"]["meta"]["empty"] == NO_RESULT_NOTE
    second = views["driver_groups"][1]
    drivers = diseases.render_drivers(data, second, key, True)["driver_fig"]
    assert drivers.layout.title.text.startswith(f"Driver genes in {second}") and drivers.layout.font.size == 20
    with pytest.raises(dash.exceptions.PreventUpdate):
        diseases.render_drivers(data, second, None, False)

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
        assert note.title == "Out of date: run again" and why in text_of(note), change
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
    assert text_of(cancelled["disease_table"]) == text_of(previous["disease_table"]) != ""
    assert "Nothing was run" in query.on_cancel(data, 1, None)["status"].children
    with pytest.raises(dash.exceptions.PreventUpdate):
        query.on_cancel(data, None, key)
    # the real/simulated switch named when it is why no cell matches
    simulated = next(s.id for s in tiny_atlas.studies if s.simulated)
    status = answer_query(data, state_with(genes="CD14 LYZ", studies=[simulated], data_kind="real", null_draws=0))["status"]
    assert status.children.startswith("No cells match: the filters select cells only in simulated studies, and the Data switch")
    # a long list: a short link in the shared store, which restores the box one gene a line
    long = state | {"genes": "\n".join([*lines.split("\n"), *(f"NOTAGENE{i:04d}" for i in range(700))])}
    search = link.write_link(data, key, None, **{k: long[k] for k in CONTROLS if k in long})["search"]
    assert search.startswith("?s=") and len(search) < 40
    restored = link.restore(data, search, 3)
    assert restored["genes"] == long["genes"] and restored["request"] == 4 and restored["notes"] is None
    # the short link opens its view without asking again: the server wrote it once the list ran (run anyway)
    from dashboard.state import normalise_genes

    assert restored["accepted"] == normalise_genes(long["genes"])
    assert link.restore(data, "?genes=CD14", 0)["accepted"] is dash.no_update
    lost = link.restore(data, "?s=0123456789abcdef", 0)
    assert "not known to this server" in text_of(lost["notes"]) and lost["genes"] == ""
    assert link.gene_box_text("CD14,LYZ 2.0,, VCAN:3") == "CD14\nLYZ 2.0\nVCAN:3"

def test_bad_input_is_shown_not_raised(tiny_build):
    data = DashboardData(tiny_build[1])
    out = answer_query(data, state_with(genes="NOT_A_GENE ALSO_NOT"))
    assert "none of the 2 requested genes" in out["status"].children and out["status"].className == "error"
    assert "result" not in out and out["study_rows"] == [] and "NOT_A_GENE" in text_of(out["resolution"])
    # a filter value the atlas does not have: named by the state's check, with what the atlas has
    out = answer_query(data, state_with(genes="S100A8", cell_types=["no such cell type"]))
    assert out["status"].children.startswith("unknown cell type 'no such cell type' (an ontology term label or id")
    assert "this atlas has: " in out["status"].children and "result" not in out
    # an emptied or out-of-range number: the same rule as a link's, named
    out = answer_query(data, state_with(genes="S100A8", cell_min=0))
    assert out["status"].children == "cell_min must be within 1-1,000,000, got 0"
    out = answer_query(data, state_with(genes=""))
    assert out["study_rows"] == [] and out["status"] == "Paste genes (any separators) or pick a preset, then Run"
    # a link's bad values fall back to their defaults, each said; the query still runs
    state, notes = decode_state("?cut=abc&cell_min=-5&group_by=nonsense&zzz=1")
    assert notes == ["unknown setting 'zzz' in the link; ignored", "cut=abc must be a number; using 90",
                     "cell_min=-5 must be within 1-1,000,000; using 25", "group_by=nonsense must be one of disease, cell_type, study; using disease"]
    assert (state["cutoff"], state["cell_min"], state["group_by"]) == (90.0, 25, "disease")
    out = answer_query(data, state | {"genes": "S100A8 VCAN"})
    assert "cells selected" in out["status"] and out["result"].params.cell_min == 25

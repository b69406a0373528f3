"""The Cells tab's callback: the UMAP of a stored result, drawn only while the tab shows (its
figure is most of a result's bytes, so another tab never waits for it).

The Cells tab's explorer: draw every cell coloured by a column or painted by a gene (split by
a column), keep two groups of cells picked with the lasso or the box, and compare them gene by
gene in the "Genes in a cell type" view (compute's compare_cell_groups: donors as the unit).

The browser holds the groups' cell positions; the server re-checks them (whole numbers within
the atlas) before it ranks anything."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import dash
import dash_mantine_components as dmc
import numpy as np
from dash import Input, Output, State, clientside_callback

from compute.errors import QueryError
from compute.query import compare_cell_groups
from dashboard import figures, ids
from dashboard.callbacks.cell_genes import LASSO_PREFIX, RANK_OUTPUTS, ranked_views
from dashboard.callbacks.wiring import bind, control_pairs
from dashboard.state import read_state
from dashboard.views.cells import GENE_STORES, explore_figure, groups_note, offered_columns, selected_cells
from dashboard.views.components import label_colours
from dashboard.views.filters import known_values
from dashboard.views.results import UMAP_VIEWS, error_views, presenter_figure, umap_views

__all__ = ["CELLS_TAB", "GROUP_CELL_MIN", "UMAP_OUTPUTS", "UMAP_TAB", "bit_set", "compare_groups", "draw_cells", "group_key", "register",
           "render_umap", "set_group", "set_group_a", "set_group_b"]

# the Cells tab's views: their own callback, run while that tab shows (render_umap)
UMAP_OUTPUTS = {
    "umap_fig": Output(ids.UMAP_FIG, "figure"),
    "umap_badge": Output(ids.UMAP_BADGE, "children"),
    "umap_labels": Output(ids.UMAP_LABELS, "children"),
    "drawn": Output(ids.UMAP_DRAWN, "data"),
}
UMAP_TAB = "cells"


def render_umap(data, result_key: str | None, query_error: dict | None, tab: str | None, color: str | None, presenter: bool | None,
                drawn: str | None) -> dict:
    """The Cells tab's views (UMAP_OUTPUTS) of the stored result ``result_key`` coloured by
    ``color``, when that tab shows (``tab``) and they do not show it already (``drawn``: what
    was drawn last). Its figure is most of a result's bytes, so another tab never waits for it."""
    if tab != UMAP_TAB:
        raise dash.exceptions.PreventUpdate
    want = f"{result_key}|{color}|{bool(presenter)}|{query_error is not None}"
    if want == drawn:
        raise dash.exceptions.PreventUpdate
    if query_error is not None:
        views = error_views(data, query_error["error"], "")
        return {name: views[name] for name in UMAP_VIEWS} | {"drawn": want}
    result = data.stored_result(result_key) if result_key is not None else None
    if result is None:
        raise dash.exceptions.PreventUpdate
    state, _ = read_state(control_pairs({"color": color}), strict=False)
    views = umap_views(data, result, state)
    if presenter:
        presenter_figure(views["umap_fig"])
    return views | {"drawn": want}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output=UMAP_OUTPUTS,
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                "tab": Input(ids.TABS, "value"), "color": Input(ids.UMAP_COLOR, "value"), "presenter": Input(ids.PRESENTER, "checked")},
        state={"drawn": State(ids.UMAP_DRAWN, "data")},
        prevent_initial_call=True,
    )(bind(render_umap, data))
    register_explorer(app, data)


# -- the explorer ----------------------------------------------------------------------
CELLS_TAB = "cells"
GROUP_CELL_MIN = 3  # a sample enters a group's comparison with 3+ of the group's cells (a lasso picks few)
_MAX_GROUP = 2_000_000  # more positions than any atlas this serves holds: a tampered store


def _positions(value, n_cells: int) -> list[int]:
    """Cell positions from a list of whole numbers or a bit set (base64 of the bits, cell 0 the
    lowest bit of the first byte: what the page sends, 4 kB for 32,000 cells where a list of a
    lasso's 23,000 positions was refused by the server), kept within the atlas, sorted, unique."""
    if isinstance(value, str):
        try:
            bits = np.unpackbits(np.frombuffer(base64.b64decode(value, validate=True), dtype=np.uint8), bitorder="little")
        except (ValueError, binascii.Error):
            return []
        return [int(i) for i in np.flatnonzero(bits[:n_cells])]
    if not isinstance(value, list) or len(value) > _MAX_GROUP:
        return []
    return sorted({int(v) for v in value if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_cells})


def bit_set(positions, n_cells: int) -> str:
    """The base64 bit set of ``positions`` (see :func:`_positions`)."""
    bits = np.zeros(n_cells, dtype=np.uint8)
    bits[np.asarray(positions, dtype=np.int64)] = 1
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode("ascii")


def _clean(groups: dict | None, n_cells: int) -> dict:
    """{"a": positions, "b": positions}: whole numbers within the atlas, sorted and unique."""
    groups = groups if isinstance(groups, dict) else {}
    return {key: _positions(groups.get(key), n_cells) for key in ("a", "b")}


def draw_cells(data, tab: str | None, color: str | None, gene: str | None, store: str | None, split: str | None,
               groups: dict | None = None) -> dict:
    """{"figure", "note"}: the explorer's UMAP under the chosen colour column or painted gene
    (``store``: attr or expr), split by ``split``, the groups outlined; drawn while the Cells tab
    shows (``tab``). A column or gene the atlas lacks is said in the note, not raised."""
    if tab != CELLS_TAB:
        raise dash.exceptions.PreventUpdate
    if data.umap is None:
        return {"figure": figures.empty_figure("This atlas has no UMAP (imported attributions carry no embedding)"), "note": None}
    cells = data.atlas.cells
    columns = offered_columns(data)
    note = None
    if color not in columns:
        note, color = (f"'{color}' is not a column of this atlas's cells: coloured by cell type" if color else None), columns[0]
    if split is not None and split not in columns:
        note, split = f"'{split}' is not a column of this atlas's cells: not split", None
    store = store if store in GENE_STORES and (store == "attr" or data.atlas.has_expression) else "attr"
    values = None
    if gene:
        if gene not in known_values(data)["rank_gene"]:
            note, gene = f"'{gene}' is not a gene of this atlas", None
        else:
            values = data.atlas.gene_values([gene], store=store)[:, 0]
    colours = label_colours(data, "cell_type" if color == "cell_type_predicted" else color) if color in (
        "cell_type", "cell_type_predicted", "disease", "study") else None
    fig = explore_figure(data.umap, cells, color=color, gene=gene, gene_values=values, store=store, split=split, colours=colours,
                         groups=_clean(groups, data.atlas.n_cells))
    return {"figure": fig, "note": note}


def set_group(data, which: str, selection: dict | None, groups: dict | None) -> dict:
    """{"groups", "note", "compare_disabled"}: group ``which`` ("a" or "b") set to the cells of the
    lasso or box ``selection`` (Plotly's selection event, or the cell positions the page took from
    it); nothing selected says so."""
    n = data.atlas.n_cells
    groups = _clean(groups, n)
    if isinstance(selection, dict):  # a selection event as Plotly gives it
        picked = selected_cells(selection, n)
    else:  # the cell positions the page took from it (ids.CELLS_PICKED: a bit set)
        picked = _positions(selection, n)
    if not picked:
        return {"groups": dash.no_update, "note": "No cell selected: draw a lasso or a box around cells on the UMAP first.",
                "compare_disabled": not (groups["a"] and groups["b"])}
    groups[which] = picked
    return {"groups": {key: bit_set(groups[key], n) for key in ("a", "b")}, "note": groups_note(groups),
            "compare_disabled": not (groups["a"] and groups["b"])}


def set_group_a(data, clicks: int | None, selection: dict | None, groups: dict | None) -> dict:
    """:func:`set_group` for group A, on a click."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    return set_group(data, "a", selection, groups)


def set_group_b(data, clicks: int | None, selection: dict | None, groups: dict | None) -> dict:
    """:func:`set_group` for group B, on a click."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    return set_group(data, "b", selection, groups)


def group_key(data, groups: dict) -> str:
    """The cache key of the comparison of ``groups`` (the same groups give the same key)."""
    digest = hashlib.sha256(json.dumps(groups, sort_keys=True).encode()).hexdigest()[:24]
    return f"{LASSO_PREFIX}-{data.atlas.fingerprint[:12]}-{digest}"


def compare_groups(data, clicks: int | None, groups: dict | None, presenter: bool | None = False) -> dict:
    """The "Genes in a cell type" view (RANK_OUTPUTS, by name) for group A against group B (its
    figure for a projector when ``presenter``), and ``tab`` (that view shows) and ``cells_note``
    (the explorer's); bad or empty groups are said there."""
    if not clicks:
        raise dash.exceptions.PreventUpdate
    groups = _clean(groups, data.atlas.n_cells)
    if not groups["a"] or not groups["b"]:
        return {name: dash.no_update for name in RANK_OUTPUTS} | {
            "tab": dash.no_update, "cells_note": dmc.Alert("Pick group A and group B first.", color="orange", p="xs")}
    key = group_key(data, groups)
    names = (f"group A ({len(groups['a']):,} cells)", f"group B ({len(groups['b']):,} cells)")
    stores = ("attr", "expr") if data.atlas.has_expression else ("attr",)
    try:
        # the two stores side by side: the sparse products release the GIL (0.47 -> 0.30 s on the demo)
        with ThreadPoolExecutor(max_workers=len(stores)) as pool:
            found = pool.map(lambda store: compare_cell_groups(data.atlas, groups["a"], groups["b"], store=store,
                                                               cell_min=GROUP_CELL_MIN, names=names), stores)
            rankings = dict(zip(stores, found, strict=True))
        for store, ranking in rankings.items():
            data.store_result(f"{key}|{store}", ranking)
    except QueryError as exc:
        return {name: dash.no_update for name in RANK_OUTPUTS} | {
            "tab": dash.no_update, "cells_note": dmc.Alert(f"These groups cannot be compared: {exc}", color="red", p="xs",
                                                           id="cells-error")}
    label = f"{names[0]} vs {names[1]} (picked on the UMAP)"
    pop = {"rank_gene": None, "lasso": key, "label": label}
    views = ranked_views(data, pop, rankings["attr"], rankings.get("expr"), label, presenter=bool(presenter))
    return views | {"tab": CELLS_TAB_TARGET, "cells_note": None}


CELLS_TAB_TARGET = "cell_genes"  # the "Genes in a cell type" tab


def register_explorer(app: dash.Dash, data) -> None:
    """The explorer's callbacks (called by :func:`register`)."""
    app.callback(
        output={"figure": Output(ids.CELLS_FIG, "figure"), "note": Output(ids.CELLS_NOTE, "children")},
        inputs={"tab": Input(ids.TABS, "value"), "color": Input(ids.CELLS_COLOR, "value"), "gene": Input(ids.CELLS_GENE, "value"),
                "store": Input(ids.CELLS_GENE_STORE, "value"), "split": Input(ids.CELLS_SPLIT, "value")},
    )(bind(draw_cells, data))
    # the selection's cell positions taken in the page, as a bit set: a lasso around 23,000 cells made a
    # 3 MB selection (a dict per point), and their positions as a list a 200 kB request, both refused
    clientside_callback(
        """function(sel) {
            const cells = [];
            for (const p of ((sel || {}).points || [])) {
                const c = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
                if (Number.isInteger(c) && c >= 0) { cells.push(c); }
            }
            if (!cells.length) { return ''; }
            const bytes = new Uint8Array(Math.floor(Math.max(...cells) / 8) + 1);
            for (const c of cells) { bytes[c >> 3] |= 1 << (c & 7); }
            let text = '';
            for (let i = 0; i < bytes.length; i += 8192) { text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192)); }
            return btoa(text);
        }""",
        Output(ids.CELLS_PICKED, "data"), Input(ids.CELLS_FIG, "selectedData"))
    for fn, button in ((set_group_a, ids.CELLS_SET_A), (set_group_b, ids.CELLS_SET_B)):
        app.callback(
            output={"groups": Output(ids.CELLS_GROUPS, "data", allow_duplicate=True),
                    "note": Output(ids.CELLS_GROUPS_NOTE, "children", allow_duplicate=True),
                    "compare_disabled": Output(ids.CELLS_COMPARE, "disabled", allow_duplicate=True)},
            inputs={"clicks": Input(button, "n_clicks")},
            state={"selection": State(ids.CELLS_PICKED, "data"), "groups": State(ids.CELLS_GROUPS, "data")},
            prevent_initial_call=True,
        )(bind(fn, data))
    app.callback(
        output={**{name: Output(out.component_id, out.component_property, allow_duplicate=True) for name, out in RANK_OUTPUTS.items()},
                "tab": Output(ids.TABS, "value", allow_duplicate=True),
                "cells_note": Output(ids.CELLS_NOTE, "children", allow_duplicate=True)},
        inputs={"clicks": Input(ids.CELLS_COMPARE, "n_clicks")},
        state={"groups": State(ids.CELLS_GROUPS, "data"), "presenter": State(ids.PRESENTER, "checked")},
        prevent_initial_call=True,
    )(bind(compare_groups, data))

"""The link: opening one fills the controls (and runs its query); later changes are written to the
address bar in the browser (``history.replaceState``), never fed back through the Location, so a
quick second click is not held behind a round trip that could reset the controls."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, clientside_callback, html

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.callbacks.wiring import CONTROLS, QUERY_CONTROLS, VIEW_CONTROLS, bind, controls
from dashboard.presets import PRESETS
from dashboard.state import DEFAULTS, LEGACY_KEYS, LIST_SEP, TABS, decode_state, encode_state, normalise_genes
from dashboard.views.filters import apply_preset, filter_choices, known_values

__all__ = ["MAX_LINK_CHARS", "PANEL_CLASS", "SHORT_LINK_KEY", "gene_box_text", "register", "restore", "write_link"]

# the filters whose options a link can extend (a study's own label from an older link)
_FILTER_OPTIONS = {"cell_types": ids.CELL_TYPES, "diseases": ids.DISEASES, "tissues": ids.TISSUES}
# a query string longer than this becomes a short link ("?s=<key>"): the whole request line
# (method, path, host-less URL, protocol) must stay under gunicorn's 8,190 bytes
# (dashboard.wsgi.limit_request_line), with room for the path and a proxy's additions
MAX_LINK_CHARS = 6000
SHORT_LINK_KEY = "s"
# each tab panel's class, set once as the page opens: see register's fresh-panels callback
PANEL_CLASS = "tab-panel"


def gene_box_text(genes: str) -> str:
    """The gene box's text for a link's one-line gene list: one entry (a gene, with its weight) a
    line, as a pasted list reads, instead of one comma-joined blob that wraps mid-symbol."""
    return "\n".join(part.strip() for part in (genes or "").split(",") if part.strip())


# the query filters a link names, and what one of them selects when it is empty
_FILTER_WORDS = {"cell_types": "cell type", "diseases": "disease", "tissues": "tissue", "studies": "study",
                 "disease_groups": "disease, ungrouped"}


def _emptied_filters(search: str, state: dict) -> list[str]:
    """The query filters the link ``search`` names values for of which none was read (all unknown:
    the filter is empty, which selects every cell)."""
    named = set()
    for name, value in parse_qsl((search or "").lstrip("?"), keep_blank_values=True):
        key = LEGACY_KEYS.get(name, name)
        if key in _FILTER_WORDS and any(v.strip() for v in value.split(LIST_SEP)):
            named.add(key)
    return [key for key in _FILTER_WORDS if key in named and not state.get(key)]


def _expand(data, search: str) -> tuple[str, list[str]]:
    """The full query string of a short link ("?s=<key>"), with a note when the key is unknown;
    any other ``search`` as it is."""
    pairs = parse_qsl((search or "").lstrip("?"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != SHORT_LINK_KEY:
        return search, []
    stored = data.stored_link(pairs[0][1])
    if stored is None:
        return "", [f"the short link '{pairs[0][1][:20]}' is not known to this server (its store was cleared, or the link is "
                    "from another server): paste the genes again"]
    return stored, []


def _is_short(search: str) -> bool:
    """Whether ``search`` is a short link ("?s=<key>")."""
    pairs = parse_qsl((search or "").lstrip("?"), keep_blank_values=True)
    return len(pairs) == 1 and pairs[0][0] == SHORT_LINK_KEY


def restore(data, search: str | None, request: int | None) -> dict:
    """Every control as the link's query string ``search`` sets it (dashboard.state.decode_state:
    invalid values take their default, said in ``notes``), a preset's genes and cell types when
    the link names one, the filters' options (with a study's own label from an older link), and
    the query request counter advanced when there are genes to run, and not when a query filter
    the link names reads as empty (none of its values known: it would run on every cell)."""
    # the Location's search changes only when a page opens (a link), on back/forward and on a
    # presenter step: our own state changes go to the address bar without it (write_link)
    short = _is_short(search or "")
    search, lost = _expand(data, search or "")
    state, notes = decode_state(search, known_values(data))
    notes = lost + notes
    if state["preset"] in PRESETS and not state["genes"]:
        state["genes"], cell_types = apply_preset(data, state["preset"])
        state["cell_types"] = state["cell_types"] or cell_types
    emptied = _emptied_filters(search, state)
    if emptied:  # never run on all cells what the link meant to run on some
        notes = notes + [f"{key}: none of the link's values is in this atlas, so the query was not run (it would have run on "
                         f"every {_FILTER_WORDS.get(key, key)}); choose them in the filter, or separate several with '|', "
                         "then press Run query" for key in emptied]
    note = dmc.Alert([html.Div(n) for n in notes], title="Some link values were not understood", color="orange",
                     id="state-alert") if notes else None
    run = bool(parse_gene_list(state["genes"])) and not emptied
    # a study's own label from an older link is kept (it selects exactly its cells) and shown
    options = {f"{key}_options": filter_choices(data, key).with_extra(state[key]) for key in _FILTER_OPTIONS}
    # a short link is written by this server once its query ran (run anyway, when few of its entries
    # were genes): it opens that view, without asking again (issue 36's open bug: the reopened
    # 799-entry list was asked about and not run)
    accepted = normalise_genes(gene_box_text(state["genes"])) if short and not lost and run else dash.no_update
    return {**{key: state[key] for key in CONTROLS}, "genes": gene_box_text(state["genes"]), **options, "notes": note,
            "request": (request or 0) + 1 if run else dash.no_update, "accepted": accepted}


def write_link(data, result_key: str | None, query_error: dict | None, **settings) -> dict:
    """The link (``search``: "?key=value...") for the controls' ``settings``, once a query has run;
    one longer than MAX_LINK_CHARS is kept in the server's store and given as "?s=<key>", which
    opens the same view (on any worker: the store is the shared disk cache)."""
    if result_key is None and query_error is None:
        raise dash.exceptions.PreventUpdate
    state = dict(DEFAULTS) | {key: value for key, value in settings.items() if value is not None}
    search = encode_state(state)
    if len(search) > MAX_LINK_CHARS:
        search = "?" + urlencode([(SHORT_LINK_KEY, data.store_link(search))])
    return {"search": search}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={**controls(Output), **{f"{key}_options": Output(cid, "data") for key, cid in _FILTER_OPTIONS.items()},
                "notes": Output(ids.STATE_NOTES, "children"), "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
                "accepted": Output(ids.GENES_ACCEPTED, "data", allow_duplicate=True)},
        inputs={"search": Input(ids.URL, "search")},
        state={"request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call="initial_duplicate",
    )(bind(restore, data))
    app.callback(
        output={"search": Output(ids.STATE_SEARCH, "data")},
        inputs={"result_key": Input(ids.RESULT_KEY, "data"), "query_error": Input(ids.QUERY_ERROR, "data"),
                **controls(Input, VIEW_CONTROLS)},
        state=controls(State, QUERY_CONTROLS),
        prevent_initial_call=True,
    )(bind(write_link, data))
    # the state goes to the address bar in the browser: writing the Location's search instead
    # would trigger restore, whose outputs are every control, and Dash holds a view switch made
    # meanwhile behind that chain (two quick clicks were both lost)
    clientside_callback(
        """function(search) {
            if (typeof search !== 'string') { return window.dash_clientside.no_update; }
            window.history.replaceState(window.history.state, '', window.location.pathname + search);
            return window.location.origin + window.location.pathname + search;
        }""",
        Output(ids.SHARE_LINK, "value"),
        Input(ids.STATE_SEARCH, "data"),
    )
    # Only the tab that shows is mounted (dashboard.layout). Dash's renderer builds a component that
    # mounts later from its parent panel's copy of the layout, taken when the panel last changed, and
    # keeps showing that copy until the component itself changes again: a panel never changed showed
    # the page's first props (every export button of a tab opened after a query stayed disabled:
    # test_browser.py::test_grouping_switch_export_and_copied_link). One change to each panel as the page opens makes its
    # children read their own props from the store when they mount.
    clientside_callback(
        f"function(_) {{ return Array({len(TABS)}).fill({PANEL_CLASS!r}); }}",
        [Output(f"{ids.TAB_PANEL_PREFIX}{tab}", "className") for tab in TABS],
        Input(ids.URL, "pathname"),
    )

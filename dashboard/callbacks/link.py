"""The link: opening one fills the controls (and runs its query); later changes are written to the
address bar in the browser (``history.replaceState``), never fed back through the Location, so a
quick second click is not held behind a round trip that could reset the controls.

A link is applied where the page is built when it can be (``opened_page``: the controls arrive
with the page, and its query starts as the page opens); ``restore`` applies it otherwise, and on
back/forward and presenter steps."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, clientside_callback, html

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.callbacks.wiring import CONTROLS, QUERY_CONTROLS, VIEW_CONTROLS, bind, controls
from dashboard.presets import PRESETS
from dashboard.state import DEFAULTS, LEGACY_KEYS, LIST_SEP, TABS, decode_state, encode_state, normalise_genes
from dashboard.views.filters import apply_preset, filter_choices, known_values

__all__ = ["MAX_LINK_CHARS", "PANEL_CLASS", "SHORT_LINK_KEY", "gene_box_text", "link_search", "opened_page", "register", "restore",
           "write_link"]

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


def _same_link(a: str | None, b: str | None) -> bool:
    """Whether two query strings hold the same settings (the same pairs, in order)."""
    return parse_qsl((a or "").lstrip("?"), keep_blank_values=True) == parse_qsl((b or "").lstrip("?"), keep_blank_values=True)


def restore(data, search: str | None, request: int | None, applied: str | None = None) -> dict:
    """Every control as the link's query string ``search`` sets it (dashboard.state.decode_state:
    invalid values take their default, said in ``notes``), a preset's genes and cell types when
    the link names one, the filters' options (with a study's own label from an older link), and
    the query request counter advanced when there are genes to run, and not when a query filter
    the link names reads as empty (none of its values known: it would run on every cell)."""
    # the Location's search changes only when a page opens (a link), on back/forward and on a
    # presenter step: our own state changes go to the address bar without it (write_link)
    # the page was built with this link applied (opened_page), its query started: only the controls
    # are set again, unchanged, for the callbacks that follow a control (a tab's own view: the
    # "Genes in a cell type" ranking of a link to it), nothing is run a second time; later Location
    # changes (back/forward, presenter steps) are restored in full
    built_with = applied is not None and _same_link(applied, search)
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
    values = {**{key: state[key] for key in CONTROLS}, "genes": gene_box_text(state["genes"])}
    if built_with:
        return {name: values.get(name, dash.no_update) for name in _restore_outputs()} | {"applied": None}
    return values | {**options, "notes": note, "request": (request or 0) + 1 if run else dash.no_update, "accepted": accepted,
                     "applied": None if applied else dash.no_update}


def _restore_outputs() -> dict[str, Output]:
    """What ``restore`` sets, by name."""
    return {**controls(Output), **{f"{key}_options": Output(cid, "data") for key, cid in _FILTER_OPTIONS.items()},
            "notes": Output(ids.STATE_NOTES, "children"), "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True),
            "accepted": Output(ids.GENES_ACCEPTED, "data", allow_duplicate=True), "applied": Output(ids.LINK_APPLIED, "data")}


def link_search() -> str | None:
    """The query string of the page whose layout is being served: Dash's renderer asks for the
    layout from the page itself, so the request's Referer is the page's address. Only this app's
    own page counts (the same host, the path the layout route hangs under); else None, as outside
    a request and for a page without a query string."""
    import flask

    if not flask.has_request_context() or not flask.request.referrer:
        return None
    page = urlsplit(flask.request.referrer)
    own_path = flask.request.path.removesuffix("_dash-layout")
    return f"?{page.query}" if page.netloc == flask.request.host and page.path == own_path and page.query else None


def opened_page(data, page, search: str):
    """``page`` (a fresh layout) for the link ``search``: every control as ``restore`` sets it and
    ids.LINK_APPLIED holding the link, so that ``restore`` skips it. A link that runs comes with its
    ranking drawn (query.rank_now, as Run's request draws it), ids.LINK_RUN "job": the query's job
    starts as the page opens and query.finish_now draws the rest. When the ranking cannot be drawn
    here (the server is busy, the page asks first), ids.LINK_RUN "query": the query starts as the
    page opens, as Run starts it. Either is a round trip or more sooner than through ``restore``."""
    from dashboard.callbacks import query
    from dashboard.callbacks.render import RENDER_OUTPUTS, RENDER_SETTINGS
    from dashboard.payloads import walk

    values = restore(data, search, 0)
    by_id = {comp.id: comp for comp in walk(page) if isinstance(getattr(comp, "id", None), str)}

    def put(outputs: dict[str, Output], views: dict) -> None:
        for name, out in outputs.items():
            if views.get(name, dash.no_update) is not dash.no_update:
                setattr(by_id[out.component_id], out.component_property, views[name])

    put({name: out for name, out in _restore_outputs().items() if name not in ("request", "applied")}, values)
    by_id[ids.LINK_APPLIED].data = search
    if values["request"] is dash.no_update:
        return page
    settings = {key: values[key] for key in (*QUERY_CONTROLS, *RENDER_SETTINGS)}
    accepted = values["accepted"] if values["accepted"] is not dash.no_update else None
    try:
        views = query.rank_now(data, None, 1, False, None, accepted, values["tab"], **settings)
    except dash.exceptions.PreventUpdate:
        by_id[ids.LINK_RUN].data = "query"
        return page
    put(RENDER_OUTPUTS, views)
    by_id[ids.RANKED].data, by_id[ids.VIEWS_DRAWN].data = views["ranked"], views["drawn"]
    by_id[ids.LINK_RUN].data = "job"
    query.start_evidence(data, **settings)
    return page


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
        output=_restore_outputs(),
        inputs={"search": Input(ids.URL, "search")},
        state={"request": State(ids.QUERY_REQUEST, "data"), "applied": State(ids.LINK_APPLIED, "data")},
        prevent_initial_call="initial_duplicate",
    )(bind(restore, data))
    # a page served with its link applied (opened_page) runs the link's query as it opens
    clientside_callback(
        """function(run, request, job) {
            const none = window.dash_clientside.no_update;
            if (run === 'query') { return [(request || 0) + 1, none]; }
            if (run === 'job') { return [none, (job || 0) + 1]; }
            return [none, none];
        }""",
        [Output(ids.QUERY_REQUEST, "data", allow_duplicate=True), Output(ids.JOB_REQUEST, "data")],
        Input(ids.LINK_RUN, "data"),
        [State(ids.QUERY_REQUEST, "data"), State(ids.JOB_REQUEST, "data")],
        prevent_initial_call="initial_duplicate",
    )
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

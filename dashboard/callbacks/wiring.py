"""How the callbacks reach the page: which control carries which setting of the state, and how a
top-level callback gets the atlas's data when Dash calls it."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from dash import Input, Output, State

from dashboard import ids
from dashboard.state import QUERY_KEYS, VIEW_KEYS, query_params, read_state
from dashboard.views.filters import known_values

__all__ = ["CONTROLS", "QUERY_CONTROLS", "VIEW_CONTROLS", "bind", "control_pairs", "controls", "read_query"]

# setting of the state -> (component id, property) of the control that shows it
QUERY_CONTROLS: dict[str, tuple[str, str]] = {
    "genes": (ids.GENES, "value"),
    "cell_types": (ids.CELL_TYPES, "value"),
    "diseases": (ids.DISEASES, "value"),
    "tissues": (ids.TISSUES, "value"),
    "studies": (ids.STUDIES, "value"),
    "disease_groups": (ids.DISEASE_GROUPS, "value"),
    "data_kind": (ids.DATA_KIND, "value"),
    "rule": (ids.RULE, "value"),
    "cutoff": (ids.CUT, "value"),
    "cell_min": (ids.CELL_MIN, "value"),
    "samp_min": (ids.SAMP_MIN, "value"),
    "min_coverage": (ids.MIN_COVERAGE, "value"),
    "null_draws": (ids.NULL_DRAWS, "value"),
    "reference": (ids.REFERENCE, "value"),
}
# view-only settings: changing them re-renders the stored result
VIEW_CONTROLS: dict[str, tuple[str, str]] = {
    "top_n": (ids.TOP_N, "value"),
    "group_by": (ids.GROUP_BY, "value"),
    "heat": (ids.HEAT_MODE, "value"),
    "order": (ids.HEAT_ORDER, "value"),
    "color": (ids.UMAP_COLOR, "value"),
    "genes_shown": (ids.GENES_SHOWN, "value"),
    "tab": (ids.TABS, "value"),
    # the "Genes in a cell type" tab
    "rank_cell_types": (ids.RANK_CELL_TYPES, "value"),
    "rank_diseases": (ids.RANK_DISEASES, "value"),
    "rank_studies": (ids.RANK_STUDIES, "value"),
    "rank_versus": (ids.RANK_VERSUS, "value"),
    "rank_gene": (ids.RANK_GENE, "value"),
    "disease_order": (ids.DISEASE_ORDER, "value"),
}
CONTROLS = QUERY_CONTROLS | VIEW_CONTROLS
assert tuple(QUERY_CONTROLS) == QUERY_KEYS and tuple(VIEW_CONTROLS) == VIEW_KEYS


def controls(kind: type[Input] | type[State] | type[Output], keys=CONTROLS, **kw) -> dict:
    """{setting: kind(component id, property)} for the controls of ``keys``, for a callback's
    named inputs, states or outputs."""
    return {key: kind(*CONTROLS[key], **kw) for key in keys}


def control_pairs(values: Mapping) -> list[tuple[str, object]]:
    """The settings that controls hold, as ``read_state`` takes them: an empty control (None)
    is left out, so it takes its default."""
    return [(key, value) for key, value in values.items() if value is not None]


def read_query(data, settings: Mapping):
    """(state, params): the state the query controls' ``settings`` hold, checked against what
    ``data``'s atlas knows (dashboard.state.read_state, strict), and the query it asks for
    (dashboard.state.query_params; None when the gene box is empty). Raises QueryError (a
    StateError) naming the setting that is out of its range. The one reading of the settings that
    Run, the ranking drawn at once and the out-of-date marker share."""
    state, _ = read_state(control_pairs(settings), known_values(data), strict=True)
    return state, query_params(state, expression=data.atlas.has_expression)


def bind(fn, data):
    """``fn`` (a top-level callback taking ``data`` first) as Dash calls it, with ``data`` given.
    Dash hashes the source of a background callback: ``inspect`` finds ``fn``'s through the wrapper."""

    @functools.wraps(fn)
    def callback(*args, **kwargs):
        return fn(data, *args, **kwargs)

    return callback

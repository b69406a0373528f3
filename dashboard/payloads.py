"""What a callback request may carry: every input and state value of a request to Dash's callback
route is checked against the kind of the component it claims to come from, before any callback
runs. A value of the wrong kind (a list where the page sends text, a number of 400 digits, a
result key that no server wrote) is answered 400 naming the input; the callbacks then only ever
see values of the shape the page itself sends, which they check further by the same code as the
API (``dashboard.state``).

A component's kind follows from its class and property (a Textarea's ``value`` is text, a
MultiSelect's a list of texts, ``n_clicks`` a count); a ``dcc.Store`` holds what the server
wrote into it, so each store's shape is declared here (STORE_SHAPES), and a store not declared
takes bounded JSON.

Before the values, the request's structure is checked against the app's registered callbacks
(CallbackShape, from ``app.callback_map``): the ``output`` names a callback of this app, its
``outputs``, ``inputs`` and ``state`` are that callback's, entry by entry (ids and properties; a
pattern-matching input as a list of matching ids), and ``changedPropIds`` names only its inputs.
A request built by hand with an unknown output id, a missing input, an extra state, forged
outputs or no ``output`` is answered 400 naming what does not match, never dispatched (issue 33:
each reached a callback with the wrong arguments, a 500).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dashboard import ids
from dashboard.data import is_result_key
from dashboard.state import RANKING_KEYS
from dashboard.views.components import FIGURE_GRAPHS

__all__ = ["MAX_DEPTH", "MAX_TEXT", "CallbackShape", "PayloadError", "STORE_SHAPES", "callback_shapes", "check_callback_body",
           "check_callback_structure", "input_kinds", "install", "walk"]

MAX_TEXT = 2 * 2**20  # characters in one text value (the gene box holds at most MAX_GENES_TEXT; uploads are base64)
MAX_ITEMS = 20_000  # entries of one list or mapping
MAX_DEPTH = 8
MAX_INT = 2**53  # what a browser's number can hold exactly
_TOKEN = re.compile(r"[0-9a-f]{1,32}")


class PayloadError(ValueError):
    """A callback request value of the wrong kind; the message names the input."""


# -- kinds: each a function (value, where) -> None that raises PayloadError --------------------
Kind = Callable[[object, str], None]


def _fail(where: str, expected: str, value) -> None:
    shown = type(value).__name__ if not isinstance(value, (str, int, float, bool)) else repr(value)[:40]
    raise PayloadError(f"callback input {where}: expected {expected}, got {shown}")


def text(value, where: str) -> None:
    if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT):
        _fail(where, f"text of at most {MAX_TEXT:,} characters", value)


def upload_text(value, where: str) -> None:
    """An uploaded file's contents as the page sends them (base64): up to the server's body limit."""
    from dashboard.serving import MAX_REQUEST_BYTES

    if value is not None and not (isinstance(value, str) and len(value) <= MAX_REQUEST_BYTES):
        _fail(where, f"an upload of at most {MAX_REQUEST_BYTES:,} characters", value)


def texts(value, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        _fail(where, f"a list of at most {MAX_ITEMS:,} texts", value)
    for v in value:
        if not isinstance(v, str) or len(v) > MAX_TEXT:
            _fail(where, "a list of texts", v)


def count(value, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT):
        _fail(where, "a whole number of clicks", value)


def flag(value, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        _fail(where, "true or false", value)


def number(value, where: str) -> None:
    """A number box: a finite number within a browser's exact range, or short text (the box as typed)."""
    if value is None or (isinstance(value, str) and len(value) <= 64):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, "a number", value)
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_INT:
        _fail(where, f"a finite number within +-{MAX_INT}", value)


def key(value, where: str) -> None:
    """A query result's key as the server writes it (dashboard.data.is_result_key): not a short
    link's key or any other cache entry's."""
    if value is not None and not is_result_key(value):
        _fail(where, "a query result's key written by this server", value)


def ranking_key(value, where: str) -> None:
    """The key of a query's ranking alone (DashboardData.partial_key)."""
    if value is not None and not is_result_key(value, ranking=True):
        _fail(where, "a ranking's key written by this server", value)


def ranked_key(value, where: str) -> None:
    """ids.RANKED as query.rank_now writes it: a ranking's key, "_" and a hexadecimal token."""
    partial, _, token = value.rpartition("_") if isinstance(value, str) else ("", "", "")
    if value is not None and not (is_result_key(partial, ranking=True) and _TOKEN.fullmatch(token)):
        _fail(where, "a ranking's key written by this server", value)


def json_value(value, where: str, depth: int = 0) -> None:
    """Any JSON value within the size limits (undeclared stores)."""
    if depth > MAX_DEPTH:
        _fail(where, f"JSON nested at most {MAX_DEPTH} deep", value)
    if isinstance(value, str):
        text(value, where)
    elif isinstance(value, float):
        number(value, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        number(value, where)
    elif isinstance(value, list):
        if len(value) > MAX_ITEMS:
            _fail(where, f"at most {MAX_ITEMS:,} entries", value)
        for v in value:
            json_value(v, where, depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            _fail(where, f"at most {MAX_ITEMS:,} entries", value)
        for v in value.values():
            json_value(v, where, depth + 1)


def record(required: tuple[str, ...] = (), **fields: Kind) -> Kind:
    """A mapping whose keys are among ``fields`` (the ``required`` ones present), each value of its kind."""

    def check(value, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            _fail(where, "a mapping", value)
        for k in required:
            if k not in value:
                _fail(where, f"a mapping with the key {k!r}", value)
        for k, v in value.items():
            if k not in fields:
                _fail(where, f"a mapping with keys among {sorted(fields)}", k)
            fields[k](v, f"{where}[{k!r}]")

    return check


def _each(kind: Kind, *, mapping: bool) -> Kind:
    """A list (``mapping``: a mapping) of at most MAX_ITEMS values, none of them null, each of ``kind``."""
    container, name = (dict, "mapping") if mapping else (list, "list")

    def check(value, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, container) or len(value) > MAX_ITEMS:
            _fail(where, f"a {name} of at most {MAX_ITEMS:,} entries", value)
        for k, v in value.items() if mapping else enumerate(value):
            label = f"{where}[{k!r}]" if mapping else f"{where}[{k}]"
            if v is None:
                _fail(label, "a value", v)
            kind(v, label)

    return check


def list_of(kind: Kind) -> Kind:
    return _each(kind, mapping=False)


def mapping_of(kind: Kind, keys: tuple[str, ...] | None = None) -> Kind:
    """A mapping of values of ``kind``; ``keys``: the keys it may have (else any)."""
    each = _each(kind, mapping=True)
    if keys is None:
        return each

    def check(value, where: str) -> None:
        each(value, where)
        for k in value or {}:
            if k not in keys:
                _fail(where, f"a mapping with keys among {sorted(keys)}", k)

    return check


_QUERY_ERROR = record(required=("error",), error=text, genes=text)
_MODULE_INFO = record(name=text, size=number, genes=texts, hub_genes=text, coherence=number, z=number, p_value=number,
                      null_mean=number, null_sd=number, module=number, overlap=number, overlap_genes=texts)
# what the server writes into each store (dashboard.callbacks); a store not named here takes bounded JSON
STORE_SHAPES: dict[str, Kind] = {
    ids.STATE_SEARCH: text,
    ids.QUERY_REQUEST: count,
    ids.GENES_ACCEPTED: text,
    ids.LINK_APPLIED: text,
    ids.LINK_RUN: text,
    ids.JOB_REQUEST: count,
    ids.RESULT_KEY: key,
    ids.PARTIAL_KEY: ranking_key,
    ids.RANKED: ranked_key,
    ids.UMAP_DRAWN: text,
    ids.VIEWS_DRAWN: text,
    ids.QUERY_ERROR: _QUERY_ERROR,
    ids.UPLOAD_STORE: mapping_of(text),
    ids.SAVED_VIEWS: list_of(record(required=("search", "label"), search=text, label=text)),
    ids.MODULES_STORE: record(key=key, error=_QUERY_ERROR, top_missing=texts, modules=mapping_of(json_value), n_perm=count,
                              presenter=flag),
    # the checked population of the ranking shown (cell_genes.rank_genes): its filters, never its
    # genes; or two groups of cells compared on the UMAP (cells.compare_groups): the comparison's
    # cache key (cell_genes.lasso_rankings checks its form) and its title
    ids.RANK_STORE: record(**{k: texts for k in RANKING_KEYS if k != "rank_gene"}, lasso=text, label=text),
    # the snapshot's images, drawn in the browser (callbacks.export): one per figure, by its view name
    ids.SNAPSHOT_IMAGES: record(clicks=count, images=mapping_of(
        record(svg=upload_text, png=upload_text, width=number, height=number, error=text), keys=tuple(FIGURE_GRAPHS))),
}

# (component class name, property) -> kind
_CLASS_KINDS: dict[tuple[str, str], Kind] = {
    ("Textarea", "value"): text, ("TextInput", "value"): text, ("Input", "value"): text,
    ("MultiSelect", "value"): texts, ("TagsInput", "value"): texts, ("Checklist", "value"): texts,
    ("Select", "value"): text, ("SegmentedControl", "value"): text, ("Tabs", "value"): text, ("RadioGroup", "value"): text,
    ("Dropdown", "value"): json_value, ("NumberInput", "value"): number, ("Slider", "value"): number,
    ("Switch", "checked"): flag, ("Checkbox", "checked"): flag,
    ("Location", "search"): text, ("Location", "pathname"): text, ("Location", "hash"): text,
    ("Upload", "contents"): upload_text, ("Upload", "filename"): text,
    ("AgGrid", "selectedRows"): list_of(mapping_of(json_value)), ("AgGrid", "cellClicked"): mapping_of(json_value),
    ("Graph", "clickData"): record(required=("points",), points=list_of(mapping_of(json_value))),
    ("Graph", "selectedData"): record(points=list_of(mapping_of(json_value)), range=json_value, lassoPoints=json_value),
}
_PROPERTY_KINDS: dict[str, Kind] = {"n_clicks": count, "checked": flag, "search": text, "children": json_value}


def _props(component) -> dict:
    """The properties a component was given ({name: value}), through Dash's public serialisation."""
    return {k: v for k, v in component.to_plotly_json().get("props", {}).items()}


def _prop_names(component) -> list[str]:
    # every property the component's class declares (given or not): its serialisation lists the
    # given ones; the class's declared names come from its constructor's signature
    import inspect

    return [p for p in inspect.signature(type(component).__init__).parameters if p not in ("self", "args", "kwargs")]


def walk(component):
    """``component`` and every component under it (children, and components held by other properties)."""
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from walk(child)
    for name, value in _props(component).items():  # components held by other properties (labels, tabs)
        if name != "children" and hasattr(value, "to_plotly_json"):
            yield from walk(value)


def _id_key(ident) -> str:
    # a pattern-matching id is known by its "type"
    return ident.get("type", json.dumps(ident, sort_keys=True)) if isinstance(ident, dict) else str(ident)


def input_kinds(layout) -> dict[tuple[str, str], Kind]:
    """(component id, property) -> kind, for every property of every component of ``layout`` that
    has an id (pattern-matching ids by their "type")."""
    kinds: dict[tuple[str, str], Kind] = {}
    for comp in walk(layout):
        ident = getattr(comp, "id", None)
        if ident is None:
            continue
        name = _id_key(ident)
        cls = type(comp).__name__
        for prop in _prop_names(comp):
            if cls == "Store" and prop == "data":
                kinds[(name, prop)] = STORE_SHAPES.get(name, json_value)
            elif (cls, prop) in _CLASS_KINDS:
                kinds[(name, prop)] = _CLASS_KINDS[(cls, prop)]
            elif prop in _PROPERTY_KINDS:
                kinds[(name, prop)] = _PROPERTY_KINDS[prop]
    return kinds


def _entries(items):
    for item in items or []:
        if isinstance(item, list):  # a pattern-matching input: one entry per matching component
            yield from _entries(item)
        elif isinstance(item, dict):
            yield item
        else:
            raise PayloadError(f"callback request: an input entry must be an object, got {type(item).__name__}")


def check_callback_body(body, kinds: Mapping[tuple[str, str], Kind]) -> None:
    """Raise PayloadError naming the first input or state of the callback request ``body`` whose
    value is not of its component's kind (a component the layout lacks takes bounded JSON)."""
    if not isinstance(body, dict):
        raise PayloadError("callback request: the body must be a JSON object")
    for part in ("inputs", "state"):
        if not isinstance(body.get(part, []), list):
            raise PayloadError(f"callback request: '{part}' must be a list")
        for entry in _entries(body.get(part)):
            ident, prop = entry.get("id"), entry.get("property")
            if not isinstance(prop, str) or not isinstance(ident, (str, dict)):
                raise PayloadError(f"callback request: an entry of '{part}' lacks an id or property")
            name = _id_key(ident)
            kinds.get((name, prop), json_value)(entry.get("value"), f"{name}.{prop}")


# -- structure: the request against the app's registered callbacks ----------------------------
_WILDCARDS = (["ALL"], ["MATCH"], ["ALLSMALLER"])


@dataclass(frozen=True)
class CallbackShape:
    """One registered callback as a request must name it: ``output`` (the callback map's key),
    its ``outputs``, ``inputs`` and ``state`` as (id, property) pairs in order (a pattern-matching
    id as its dict, wildcards as Dash writes them: ["ALL"]), and whether it has no output."""

    output: str
    outputs: tuple[tuple[str | dict, str], ...]
    multi_output: bool
    inputs: tuple[tuple[str | dict, str], ...]
    state: tuple[tuple[str | dict, str], ...]
    no_output: bool = False


def _spec_id(ident: str) -> str | dict:
    return json.loads(ident) if ident.startswith("{") else ident


def _split_output(spec: str) -> tuple[str | dict, str]:
    ident, _, prop = spec.rpartition(".")
    return _spec_id(ident), prop


def callback_shapes(callback_map: Mapping[str, Mapping]) -> dict[str, CallbackShape]:
    """{output key: CallbackShape} of every server-side callback of a Dash app's ``callback_map``
    (a clientside callback, which the map holds without a function, runs in the browser: a
    request for it names no callback of the server)."""
    shapes = {}
    for output, cb in callback_map.items():
        if cb.get("callback") is None:
            continue
        multi = output.startswith("..") and output.endswith("..")
        outputs = tuple(_split_output(o) for o in (output[2:-2].split("...") if multi else [output]))
        shapes[output] = CallbackShape(
            output=output, outputs=outputs, multi_output=multi,
            inputs=tuple((_spec_id(d["id"]), d["property"]) for d in cb.get("inputs", [])),
            state=tuple((_spec_id(d["id"]), d["property"]) for d in cb.get("state", [])),
            no_output=bool(cb.get("no_output")))
    return shapes


def _shown(ident, prop: str = "") -> str:
    text = json.dumps(ident, sort_keys=True, separators=(",", ":")) if isinstance(ident, dict) else str(ident)
    return f"{text}.{prop}" if prop else text


def _is_multi(ident) -> bool:
    return isinstance(ident, dict) and any(v in (["ALL"], ["ALLSMALLER"]) for v in ident.values())


def _id_matches(ident, spec) -> bool:
    """Whether the id a request sent is the spec's (a pattern's: same keys, its fixed values, any
    plain value where it has a wildcard)."""
    if isinstance(spec, str):
        return ident == spec
    if not isinstance(ident, dict) or set(ident) != set(spec):
        return False
    return all((isinstance(ident[k], (str, int, float, bool)) if v in _WILDCARDS else ident[k] == v) for k, v in spec.items())


def _prop_matches(prop, spec: str) -> bool:
    # an output's property may carry Dash's "@<hash>" (allow_duplicate) or not
    return isinstance(prop, str) and (prop == spec or prop == spec.partition("@")[0])


def _entry_matches(entry, spec_id, spec_prop: str, *, output: bool = False) -> bool:
    if not isinstance(entry, dict):
        return False
    prop_ok = _prop_matches(entry.get("property"), spec_prop) if output else entry.get("property") == spec_prop
    return prop_ok and _id_matches(entry.get("id"), spec_id)


def _where(shape: CallbackShape) -> str:
    named = shape.output if len(shape.output) <= 60 else shape.output[:57] + "..."
    return f"callback request for '{named}'"


def _check_entries(part: str, items, specs, shape: CallbackShape) -> None:
    where = _where(shape)
    if items is None and not specs:
        return
    if not isinstance(items, list):
        raise PayloadError(f"{where}: '{part}' must be a list of {len(specs)} entries")
    if len(items) != len(specs):
        expected = ", ".join(_shown(i, p) for i, p in specs) or "none"
        raise PayloadError(f"{where}: '{part}' has {len(items)} entries; the callback takes {len(specs)} ({expected})")
    for n, (item, (spec_id, spec_prop)) in enumerate(zip(items, specs, strict=True)):
        if _is_multi(spec_id):
            ok = isinstance(item, list) and all(_entry_matches(e, spec_id, spec_prop) for e in item)
        else:
            ok = _entry_matches(item, spec_id, spec_prop)
        if not ok:
            sent = _shown(item.get("id"), str(item.get("property"))) if isinstance(item, dict) else type(item).__name__
            raise PayloadError(f"{where}: entry {n} of '{part}' is {sent[:80]}; the callback takes {_shown(spec_id, spec_prop)} there")


def _check_outputs(outputs, shape: CallbackShape) -> None:
    where = _where(shape)
    if shape.no_output:
        return
    expected = ", ".join(_shown(i, p) for i, p in shape.outputs)
    items = outputs if shape.multi_output else [outputs]
    if not isinstance(items, list) or len(items) != len(shape.outputs) or not all(
            _entry_matches(e, i, p, output=True) for e, (i, p) in zip(items, shape.outputs, strict=True)):
        raise PayloadError(f"{where}: 'outputs' are not the callback's outputs ({expected[:200]})")


def _changed_id(prop_id: str) -> tuple[object, str]:
    if prop_id.startswith("{"):
        ident, _, prop = prop_id.rpartition("}.")
        try:
            return json.loads(ident + "}"), prop
        except ValueError:
            return None, prop
    ident, _, prop = prop_id.rpartition(".")
    return ident, prop


def _check_changed(changed, shape: CallbackShape) -> None:
    where = _where(shape)
    if changed is None:
        return
    if not isinstance(changed, list) or len(changed) > len(shape.inputs) * MAX_ITEMS:
        raise PayloadError(f"{where}: 'changedPropIds' must be a list of the callback's inputs that changed")
    for prop_id in changed:
        ident, prop = _changed_id(prop_id) if isinstance(prop_id, str) else (None, "")
        if not any(prop == p and _id_matches(ident, i) for i, p in shape.inputs):
            inputs = ", ".join(_shown(i, p) for i, p in shape.inputs)
            raise PayloadError(f"{where}: 'changedPropIds' names {str(prop_id)[:80]!r}, not an input of the callback ({inputs[:200]})")


def check_callback_structure(body, shapes: Mapping[str, CallbackShape]) -> CallbackShape:
    """The CallbackShape the callback request ``body`` names; raises PayloadError naming the first
    thing in it that is not that callback's: no or an unknown ``output``, ``outputs`` other than
    the callback's, missing or extra ``inputs`` or ``state`` entries, or entries of other
    components or properties, ``changedPropIds`` that are not its inputs."""
    if not isinstance(body, dict):
        raise PayloadError("callback request: the body must be a JSON object")
    output = body.get("output")
    if not isinstance(output, str):
        raise PayloadError("callback request: no 'output' (the callback's outputs as the page names them, a text)")
    shape = shapes.get(output)
    if shape is None:
        raise PayloadError(f"callback request: no callback of this server has the output {output[:80]!r}")
    _check_outputs(body.get("outputs"), shape)
    _check_entries("inputs", body.get("inputs"), shape.inputs, shape)
    _check_entries("state", body.get("state"), shape.state, shape)
    _check_changed(body.get("changedPropIds"), shape)
    return shape


def install(app, route_suffix: str = "_dash-update-component") -> None:
    """Check every callback request to the Dash ``app`` (its callbacks registered) for its
    structure (check_callback_structure, against ``app.callback_map``) and its values (against the
    kinds of ``app.layout``'s components: a layout function's page without a link); a wrong one is
    answered 400 with the message (JSON error bodies are the API's; Dash's route answers text)."""
    import flask

    kinds = input_kinds(app.layout() if callable(app.layout) else app.layout)
    # Dash adds callbacks of its own when it serves its first request (one per background
    # callback's cancel input, "cancel.id"): the shapes are read again whenever the map has grown
    shapes: dict[int, dict[str, CallbackShape]] = {}

    def current_shapes() -> dict[str, CallbackShape]:
        n = len(app.callback_map)
        if n not in shapes:
            shapes.clear()
            shapes[n] = callback_shapes(app.callback_map)
        return shapes[n]

    def check():
        request = flask.request
        if request.method != "POST" or not request.path.endswith(route_suffix):
            return None
        try:
            body = json.loads(request.get_data(cache=True) or b"null", parse_constant=lambda c: float("nan"))
            check_callback_structure(body, current_shapes())
            check_callback_body(body, kinds)
        except (PayloadError, ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, PayloadError) else f"callback request: not valid JSON ({type(exc).__name__})"
            return flask.Response(message + "\n", 400, {"Content-Type": "text/plain"})
        return None

    app.server.before_request_funcs.setdefault(None, []).append(check)

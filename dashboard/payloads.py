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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping

from dashboard import ids

__all__ = ["MAX_DEPTH", "MAX_TEXT", "PayloadError", "STORE_SHAPES", "check_callback_body", "input_kinds", "install"]

MAX_TEXT = 2 * 2**20  # characters in one text value (the gene box holds at most MAX_GENES_TEXT; uploads are base64)
MAX_ITEMS = 20_000  # entries of one list or mapping
MAX_DEPTH = 8
MAX_INT = 2**53  # what a browser's number can hold exactly
_KEY = re.compile(r"^[0-9a-zA-Z_-]{8,128}$")


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
    if value is not None and not (isinstance(value, str) and _KEY.match(value)):
        _fail(where, "a result key written by this server", value)


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


def mapping_of(kind: Kind) -> Kind:
    return _each(kind, mapping=True)


_QUERY_ERROR = record(required=("error",), error=text, genes=text)
_MODULE_INFO = record(name=text, size=number, genes=texts, hub_genes=text, coherence=number, z=number, p_value=number,
                      null_mean=number, null_sd=number, module=number, overlap=number, overlap_genes=texts)
# what the server writes into each store (dashboard.callbacks); a store not named here takes bounded JSON
STORE_SHAPES: dict[str, Kind] = {
    ids.STATE_SEARCH: text,
    ids.QUERY_REQUEST: count,
    ids.RESULT_KEY: key,
    ids.PARTIAL_KEY: key,
    ids.RANKED: key,
    ids.UMAP_DRAWN: text,
    ids.VIEWS_DRAWN: text,
    ids.QUERY_ERROR: _QUERY_ERROR,
    ids.UPLOAD_STORE: mapping_of(text),
    ids.SAVED_VIEWS: list_of(record(required=("search", "label"), search=text, label=text)),
    ids.MODULES_STORE: record(key=key, error=_QUERY_ERROR, top_missing=texts, modules=mapping_of(json_value), n_perm=count),
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


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)
    for name, value in _props(component).items():  # components held by other properties (labels, tabs)
        if name != "children" and hasattr(value, "to_plotly_json"):
            yield from _walk(value)


def _id_key(ident) -> str:
    # a pattern-matching id is known by its "type"
    return ident.get("type", json.dumps(ident, sort_keys=True)) if isinstance(ident, dict) else str(ident)


def input_kinds(layout) -> dict[tuple[str, str], Kind]:
    """(component id, property) -> kind, for every property of every component of ``layout`` that
    has an id (pattern-matching ids by their "type")."""
    kinds: dict[tuple[str, str], Kind] = {}
    for comp in _walk(layout):
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


def install(server, layout, route_suffix: str = "_dash-update-component") -> None:
    """Check every callback request to ``server`` against the kinds of ``layout``'s components;
    a wrong one is answered 400 with the message (JSON error bodies are the API's; Dash's route
    answers text)."""
    import flask

    kinds = input_kinds(layout)

    def check():
        request = flask.request
        if request.method != "POST" or not request.path.endswith(route_suffix):
            return None
        try:
            body = json.loads(request.get_data(cache=True) or b"null", parse_constant=lambda c: float("nan"))
            check_callback_body(body, kinds)
        except (PayloadError, ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, PayloadError) else f"callback request: not valid JSON ({type(exc).__name__})"
            return flask.Response(message + "\n", 400, {"Content-Type": "text/plain"})
        return None

    server.before_request_funcs.setdefault(None, []).append(check)

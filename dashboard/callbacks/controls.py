"""Callbacks that fill the sidebar's controls or explain them: presets, uploaded gene files, and
what the chosen disease groups pool."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, clientside_callback, html

from dashboard import ids
from dashboard.callbacks.wiring import bind
from dashboard.presets import PRESETS
from dashboard.upload import MAX_BYTES, GeneFileError, decode_upload, parse_gene_file
from dashboard.views.filters import apply_preset
from dashboard.views.studies import disease_groups_note

__all__ = ["on_preset", "on_upload", "on_upload_set", "register", "show_disease_groups"]


def on_preset(data, clicks: list, selected: str | None, request: int | None, trigger=None, examples: list | None = None) -> dict:
    """The preset's genes and cell types, the query request advanced (the query runs) and the
    preset list emptied (it is an action, not a state: the gene box may change after it).
    ``trigger``: what was used (a preset button's id {"type": "preset", "key": ...}, a landing
    example's {"type": "example", "key": ...}, or the preset list's id, whose value is
    ``selected``); default: Dash's triggered id. ``examples``: the landing examples' clicks."""
    trigger = dash.ctx.triggered_id if trigger is None else trigger
    button = isinstance(trigger, dict)
    key = trigger["key"] if button else selected
    pressed = clicks if not button or trigger.get("type") == "preset" else (examples or [])
    if key not in PRESETS or (button and not any(c for c in pressed if c)):
        raise dash.exceptions.PreventUpdate
    text, cell_types = apply_preset(data, key)
    return {"genes": text, "cell_types": cell_types, "request": (request or 0) + 1, "selected": None}


def on_upload(data, contents: str | None, filename: str | None) -> dict:
    """The gene sets of an uploaded file (GMT, CSV, TSV, text): the first in the gene box, a
    chooser when there are several, and a note; a file that cannot be read is named in the note."""
    try:
        sets = parse_gene_file(filename or "upload.txt", decode_upload(contents, filename))
    except GeneFileError as exc:
        return {"genes": dash.no_update, "set_options": [], "set_value": None, "set_style": {"display": "none"}, "sets": None,
                "note": html.Span(str(exc), className="error")}
    first = next(iter(sets))
    many = len(sets) > 1
    note = f"{filename}: {len(sets)} gene sets; showing '{first}'" if many else f"{filename}: loaded '{first}'"
    skipped = getattr(sets, "skipped", [])
    if skipped:  # the valid sets are kept; each line left out is named
        note = html.Span([note, html.Div(f"{len(skipped)} line{'s' if len(skipped) > 1 else ''} left out:", className="error"),
                          *(html.Div(line, className="error") for line in skipped[:10])], id="upload-skipped")
    return {"genes": sets[first], "set_options": list(sets), "set_value": first, "set_style": {} if many else {"display": "none"},
            "sets": dict(sets), "note": note}


def on_upload_set(data, name: str | None, sets: dict | None) -> dict:
    """The chosen gene set of the uploaded file in the gene box."""
    if not sets or name not in sets:
        raise dash.exceptions.PreventUpdate
    return {"genes": sets[name]}


def show_disease_groups(data, groups: list | None) -> dict:
    """Under the disease-groups control: what each chosen group pools."""
    return {"note": disease_groups_note(data, groups)}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={"genes": Output(ids.GENES, "value", allow_duplicate=True), "cell_types": Output(ids.CELL_TYPES, "value", allow_duplicate=True),
                "request": Output(ids.QUERY_REQUEST, "data", allow_duplicate=True), "selected": Output(ids.PRESET_SELECT, "value")},
        inputs={"clicks": Input({"type": "preset", "key": ALL}, "n_clicks"), "selected": Input(ids.PRESET_SELECT, "value"),
                "examples": Input({"type": ids.EXAMPLE_TYPE, "key": ALL}, "n_clicks")},
        state={"request": State(ids.QUERY_REQUEST, "data")},
        prevent_initial_call=True,
    )(bind(on_preset, data))
    app.callback(
        output={"genes": Output(ids.GENES, "value", allow_duplicate=True), "set_options": Output(ids.UPLOAD_SETS, "data"),
                "set_value": Output(ids.UPLOAD_SETS, "value"), "set_style": Output(ids.UPLOAD_SETS, "style"),
                "sets": Output(ids.UPLOAD_STORE, "data"), "note": Output(ids.UPLOAD_NOTE, "children")},
        inputs={"contents": Input(ids.UPLOAD, "contents")},
        state={"filename": State(ids.UPLOAD, "filename")},
        prevent_initial_call=True,
    )(bind(on_upload, data))
    # a file over the limit is named in the browser at once: its upload request may exceed
    # serving.MAX_REQUEST_BYTES, which the server refuses (413) before on_upload could say why
    clientside_callback(
        f"""function(contents, filename) {{
            if (typeof contents !== 'string') {{ return window.dash_clientside.no_update; }}
            const bytes = Math.floor((contents.length - contents.indexOf(',') - 1) * 3 / 4);
            if (bytes <= {MAX_BYTES}) {{ return window.dash_clientside.no_update; }}
            const msg = (filename || 'the file') + ': ' + (bytes / 1e6).toFixed(1) + ' MB is larger than the {MAX_BYTES / 1e6:.0f} MB accepted';
            return {{namespace: 'dash_html_components', type: 'Span', props: {{children: msg, className: 'error'}}}};
        }}""",
        Output(ids.UPLOAD_NOTE, "children", allow_duplicate=True),
        Input(ids.UPLOAD, "contents"),
        State(ids.UPLOAD, "filename"),
        prevent_initial_call=True,
    )
    app.callback(
        output={"genes": Output(ids.GENES, "value", allow_duplicate=True)},
        inputs={"name": Input(ids.UPLOAD_SETS, "value")},
        state={"sets": State(ids.UPLOAD_STORE, "data")},
        prevent_initial_call=True,
    )(bind(on_upload_set, data))
    app.callback(
        output={"note": Output(ids.DISEASE_GROUPS_NOTE, "children")},
        inputs={"groups": Input(ids.DISEASE_GROUPS, "value")},
    )(bind(show_disease_groups, data))

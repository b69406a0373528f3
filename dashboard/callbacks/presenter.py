"""Presenter mode: large type, and stepping through saved views (kept in the browser's local storage)."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from compute.query import parse_gene_list
from dashboard import ids
from dashboard.callbacks.wiring import bind

__all__ = ["MAX_VIEW_NAME", "open_saved_view", "register", "save_view", "saved_view_options", "set_presenter", "step", "view_label"]


def set_presenter(data, on: bool | None) -> dict:
    """The page's class: "app presenter" (large type) when ``on``."""
    return {"class_name": "app presenter" if on else "app"}


MAX_VIEW_NAME = 80  # characters of a saved view's name


def view_label(name: str | None, genes: str | None) -> str:
    """What a saved view is listed under: the name typed for it (trimmed, one line, at most
    MAX_VIEW_NAME characters), else its first three genes."""
    name = " ".join((name or "").split())[:MAX_VIEW_NAME]
    if name:
        return name
    first = [g for g, _ in parse_gene_list(genes or "")][:3]
    return ", ".join(first) + ("…" if len(first) == 3 else "")


def save_view(data, clicks: int | None, search: str | None, saved: list | None, genes: str | None, name: str | None = None) -> dict:
    """The saved views with the current one (its link ``search``) added last, labelled by the
    ``name`` typed for it, else by its first three genes; a view saved before moves to the end."""
    if not search:
        raise dash.exceptions.PreventUpdate
    saved = [v for v in (saved or []) if v.get("search") != search]
    return {"saved": [*saved, {"search": search, "label": view_label(name, genes)}]}


def saved_view_options(data, saved: list | None, search: str | None) -> dict:
    """The saved views as the presenter bar lists them (by name, in the order saved), and the
    one shown now picked."""
    saved = saved or []
    options = [{"value": v["search"], "label": f"{i + 1}. {v.get('label') or v['search']}"} for i, v in enumerate(saved)]
    return {"options": options, "value": search if any(v["search"] == search for v in saved) else None}


def open_saved_view(data, picked: str | None, search: str | None) -> dict:
    """The saved view picked from the list, opened through the Location (as "next view" does)."""
    if not picked or picked == search:
        raise dash.exceptions.PreventUpdate
    return {"search": picked}


def step(data, prev: int | None, next_: int | None, saved: list | None, search: str | None, trigger=None) -> dict:
    """On "previous" / "next" (``trigger``; default: Dash's triggered id): the saved view before or
    after the current one, opened through the Location (so that the link's restore applies it), and
    where it is; otherwise only where the current view is among the saved ones."""
    trigger = dash.ctx.triggered_id if trigger is None else trigger
    saved = saved or []
    if not saved:
        return {"search": dash.no_update, "position": "no saved views yet: use 'Save view'"}
    searches = [v["search"] for v in saved]
    pos = searches.index(search) if search in searches else -1
    if trigger in (ids.PREV_VIEW, ids.NEXT_VIEW):
        pos = (pos + (1 if trigger == ids.NEXT_VIEW else -1)) % len(saved)
        return {"search": searches[pos], "position": f"view {pos + 1} of {len(saved)}: {saved[pos]['label']}"}
    where = f"view {pos + 1} of {len(saved)}: {saved[pos]['label']}" if pos >= 0 else f"{len(saved)} saved views"
    return {"search": dash.no_update, "position": where}


def register(app: dash.Dash, data) -> None:
    app.callback(output={"class_name": Output(ids.ROOT, "className")}, inputs={"on": Input(ids.PRESENTER, "checked")})(
        bind(set_presenter, data))
    app.callback(
        output={"saved": Output(ids.SAVED_VIEWS, "data")},
        inputs={"clicks": Input(ids.SAVE_VIEW, "n_clicks")},
        state={"search": State(ids.STATE_SEARCH, "data"), "saved": State(ids.SAVED_VIEWS, "data"), "genes": State(ids.GENES, "value"),
               "name": State(ids.VIEW_NAME, "value")},
        prevent_initial_call=True,
    )(bind(save_view, data))
    app.callback(
        output={"search": Output(ids.URL, "search", allow_duplicate=True), "position": Output(ids.VIEW_POS, "children")},
        inputs={"prev": Input(ids.PREV_VIEW, "n_clicks"), "next_": Input(ids.NEXT_VIEW, "n_clicks"),
                "saved": Input(ids.SAVED_VIEWS, "data")},
        state={"search": State(ids.STATE_SEARCH, "data")},
        prevent_initial_call="initial_duplicate",
    )(bind(step, data))
    app.callback(
        output={"options": Output(ids.SAVED_VIEW_PICK, "data"), "value": Output(ids.SAVED_VIEW_PICK, "value")},
        inputs={"saved": Input(ids.SAVED_VIEWS, "data"), "search": Input(ids.STATE_SEARCH, "data")},
    )(bind(saved_view_options, data))
    app.callback(
        output={"search": Output(ids.URL, "search", allow_duplicate=True)},
        inputs={"picked": Input(ids.SAVED_VIEW_PICK, "value")},
        state={"search": State(ids.STATE_SEARCH, "data")},
        prevent_initial_call=True,
    )(bind(open_saved_view, data))

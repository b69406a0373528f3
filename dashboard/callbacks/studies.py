"""The Studies tab's own callback: how each study was read, drawn only while the tab shows. Its
tables are drawn with the result by ``callbacks.render``."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard import ids
from dashboard.callbacks.wiring import bind
from dashboard.views.components import HtmlBlock, static_html
from dashboard.views.studies import study_reports_panel

__all__ = ["register", "show_study_reports"]


def show_study_reports(data, tab: str | None) -> dict:
    """{"reports": how each study was read (dashboard.views.studies.study_reports_panel) while
    the Studies tab shows, else nothing}, drawn as one HtmlBlock (views.components.static_html).
    As components (2,500 on the demo) the panel held the page's script for 10 s when a link
    opened on the Studies tab, before it drew the query's result: Dash's renderer does work for
    every component on the page at every update, and an element of an HtmlBlock is none."""
    if tab != "studies":
        return {"reports": []}
    panel = study_reports_panel(data)
    return {"reports": HtmlBlock(static_html(panel.children), id=panel.id, className=panel.className)}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={"reports": Output(ids.STUDY_REPORTS_SLOT, "children")},
        inputs={"tab": Input(ids.TABS, "value")},
    )(bind(show_study_reports, data))

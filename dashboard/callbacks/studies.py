"""The Studies tab's own callback: how each study was read, drawn only while the tab shows. Its
tables are drawn with the result by ``callbacks.render``."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard import ids
from dashboard.callbacks.wiring import bind
from dashboard.views.studies import study_reports_panel

__all__ = ["register", "show_study_reports"]


def show_study_reports(data, tab: str | None) -> dict:
    """{"reports": how each study was read (dashboard.views.studies.study_reports_panel) while
    the Studies tab shows, else nothing}: the page keeps its component count low elsewhere."""
    return {"reports": study_reports_panel(data) if tab == "studies" else []}


def register(app: dash.Dash, data) -> None:
    app.callback(
        output={"reports": Output(ids.STUDY_REPORTS_SLOT, "children")},
        inputs={"tab": Input(ids.TABS, "value")},
    )(bind(show_study_reports, data))

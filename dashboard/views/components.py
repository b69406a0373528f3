"""The parts every tab's layout is built from: a figure panel with its export buttons, a paged
table, a segmented switch, the simulated-data badge, one colour per label across the figures. Shared by the tabs (``dashboard.views.<tab>``)
and the page shell (``dashboard.layout``); no tab's own components."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import dcc, html
from dash.development.base_component import Component

from dashboard import figures, ids
from dashboard.views.filters import disease_group_choices

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["CSV_ONLY_VIEWS", "EXPORT_WAITS", "FIGURE_GRAPHS", "HtmlBlock", "csv_button", "export_bar", "graph", "grid", "grid_title", "label_colours",
           "segmented", "sim_badge", "static_html"]

FIGURE_GRAPHS = {  # view name -> graph id (each has CSV, SVG and PNG export)
    "diseases": ids.DISEASE_FIG, "forest": ids.FOREST_FIG, "robustness": ids.ROBUST_FIG, "drivers": ids.DRIVER_FIG,
    "comparison": ids.COMPARE_FIG, "scatter": ids.SCATTER_FIG, "umap": ids.UMAP_FIG, "genes": ids.HEATMAP_FIG,
    "modules": ids.MODULES_FIG,
}
CSV_ONLY_VIEWS = ("studies", "study_effects")  # views with a CSV export and no figure


EXPORT_WAITS = "Exports are ready once a query has run"  # a disabled export button's tooltip (callbacks.export.export_ready)


# HtmlBlock: HTML the server wrote, drawn by the page in one element as soon as the page mounts.
# The disease ranking is one HTML table (views.results._ranking_table): as a hundred html.Td
# components it was a quarter of the page's components. dcc.Markdown drew it, and Dash loads
# Markdown lazily: on a link's page the table came with the page yet showed only after Plotly had
# loaded and drawn, 0.6-1.5 s later. HtmlBlock is a plain element whose inner HTML is its children
# (dashboard/assets/html_block.js, loaded before Dash's renderer), drawn in the page's first render.
# Only text the server escaped goes in: every label passes through markup.html_text (issue 33).
class HtmlBlock(Component):
    """A ``<div id=... class=...>`` whose content is ``children``, a string of HTML written by the
    server with every label escaped (:func:`dashboard.markup.html_text`)."""

    _children_props: list[str] = []
    _base_nodes = ["children"]
    _namespace = "sigatlas"  # window.sigatlas.HtmlBlock, defined in dashboard/assets/html_block.js
    _type = "HtmlBlock"

    def __init__(self, children: str = "", id: str | None = None, className: str | None = None):  # noqa: A002 (Dash's prop name)
        self._prop_names = ["children", "id", "className"]
        self._valid_wildcard_attributes = []
        self.available_properties = list(self._prop_names)
        self.available_wildcard_properties = []
        props = {"id": id, "className": className}
        super().__init__(children=children, **{k: v for k, v in props.items() if v is not None})


# the attributes of a static component that its HTML keeps (Dash's name: HTML's)
_STATIC_ATTRIBUTES = {"id": "id", "className": "class", "title": "title"}
_MANTINE_COLOURS = {"blue", "gray", "orange", "red", "yellow", "green"}


def static_html(node) -> str:
    """``node``, a tree of static components (dash.html elements, dmc.Text, dmc.Alert, strings and
    numbers: no callback reads or writes anything inside it), as one string of HTML for an
    HtmlBlock, every text and attribute escaped by markup.html_text. For panels of hundreds of
    elements that only show text (the Studies tab's reports: 2,500 components): each component is
    work for Dash's renderer on every update of the page, an element of an HtmlBlock is not. Raises
    TypeError for a component with no static form (an input, a figure, a grid)."""
    from dashboard.markup import html_text

    if node is None or isinstance(node, bool):
        return ""
    if isinstance(node, str | int | float):
        return html_text(node)
    if isinstance(node, list | tuple):
        return "".join(static_html(child) for child in node)
    if not isinstance(node, Component):
        raise TypeError(f"static_html: {type(node).__name__} is not a component")
    props = node.to_plotly_json()["props"]
    attrs = {html_name: props[name] for name, html_name in _STATIC_ATTRIBUTES.items() if props.get(name) is not None}
    children = static_html(props.get("children"))
    if node._namespace == "dash_html_components":
        tag = node._type.lower()
        if props.get("open"):
            attrs["open"] = "open"
    elif (node._namespace, node._type) == ("dash_mantine_components", "Text"):
        tag = "div"
        attrs["class"] = " ".join(filter(None, ["static-text", f"static-text-{props.get('size') or 'sm'}",
                                                "static-text-bold" if props.get("fw") == 700 else "", attrs.get("class")]))
    elif (node._namespace, node._type) == ("dash_mantine_components", "Alert"):
        tag = "div"
        colour = props.get("color") if props.get("color") in _MANTINE_COLOURS else "gray"
        attrs["class"] = " ".join(filter(None, ["static-alert", f"static-alert-{colour}", attrs.get("class")]))
        title = attrs.pop("title", None)  # the alert's heading, not a tooltip
        children = (f'<div class="static-alert-title">{static_html(title)}</div>' if title is not None else "") + children
    else:
        raise TypeError(f"static_html: {node._namespace}.{node._type} has no static HTML form")
    written = "".join(f' {name}="{html_text(value)}"' for name, value in attrs.items())
    return f"<{tag}{written}>{children}</{tag}>"


def export_bar(view: str) -> dmc.Group:
    # disabled until a result exists: the landing page's placeholders are no figure to export
    wait = {"disabled": True, "attributes": {"root": {"title": EXPORT_WAITS}}}
    buttons = [dmc.Button("CSV", id=f"{ids.CSV_PREFIX}{view}", size="compact-xs", variant="default", className="export", **wait)]
    if view not in CSV_ONLY_VIEWS:
        buttons += [dmc.Button("SVG", id=f"{ids.IMG_PREFIX}{view}-svg", size="compact-xs", variant="default", className="export", **wait),
                    dmc.Button("PNG", id=f"{ids.IMG_PREFIX}{view}-png", size="compact-xs", variant="default", className="export", **wait)]
    return dmc.Group(buttons, gap=4, justify="flex-end", className="export-bar")


def graph(view: str, height: int | None = None) -> html.Div:
    # the figure sets its own height (long gene lists make tall heatmaps); ``height`` is the floor
    style = {"minHeight": f"{height}px"} if height else None
    # an empty figure that says when it fills: a graph without one draws bare axes
    return html.Div([export_bar(view), dcc.Graph(id=FIGURE_GRAPHS[view], style=style, figure=figures.empty_figure("Appears after a query"),
                                                  config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": f"sigatlas-{view}"}})],
                    className="panel")


def segmented(id_, options: dict, value) -> dmc.SegmentedControl:
    return dmc.SegmentedControl(id=id_, data=[{"value": k, "label": v} for k, v in options.items()], value=value, size="xs")


def sim_badge(summary: dict, id_: str, note: str = "") -> dmc.Badge:
    """The orange badge that labels views of an atlas holding simulated studies."""
    return dmc.Badge(f"Includes SIMULATED data: {summary['n_simulated']} of {summary['n_studies']} studies{note}", id=id_, color="orange",
                     variant="outline", size="lg")


def grid(id_: str, columns: list[dict], page_size: int = 10, csv_name: str | None = None, compact_headers: bool = False) -> dag.AgGrid:
    """A sortable, filterable, paged table; ``csv_name``: the file its CSV export (all rows) is saved as;
    ``compact_headers``: no filter icon in the headers (a column's filter stays in its header menu) and
    8 px of padding either side of a cell (the ``compact-grid`` class), for a table whose many narrow
    columns must fit at 1280 px."""
    extra = {"csvExportParams": {"fileName": csv_name}} if csv_name else {}
    # headers wrap instead of shrinking to "Ra...": a column's name must stay readable at 1280 px
    columns_default = {"sortable": True, "filter": True, "resizable": True, "wrapHeaderText": True, "autoHeaderHeight": True}
    if compact_headers:  # the icon took ~30 px of an 80 px column: "mean hit %" read "h / it / %"
        columns_default["suppressHeaderFilterButton"] = True
    return dag.AgGrid(id=id_, columnDefs=columns, rowData=[], defaultColDef=columns_default,
                      dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": page_size,
                                       "paginationPageSizeSelector": False},
                      className="ag-theme-alpine compact-grid" if compact_headers else "ag-theme-alpine", **extra)


def grid_title(text: str, *buttons) -> dmc.Group:
    return dmc.Group([dmc.Text(text, fw=700, size="sm"), dmc.Group(list(buttons), gap=6)], justify="space-between", className="grid-title")


def csv_button(id_: str) -> dmc.Button:
    return dmc.Button("CSV", id=id_, size="compact-xs", variant="default", className="export")


def label_colours(data: DashboardData, kind: str) -> dict[str, str]:
    """One colour per label of the cells' ``kind`` column ("disease", "study", "cell_type",
    "cell_type_predicted"; a disease's groups too) for the whole atlas (figures.label_colours):
    the same in every figure and every query."""

    def build() -> dict[str, str]:
        cells = data.atlas.cells
        labels = data.column_values(kind) if kind in cells.columns else []
        extra = ()
        if kind == "disease":  # a ranking's disease groups too
            extra = [item["value"] for option in disease_group_choices(data).options for item in option["items"]]
        elif kind == "cell_type" and "cell_type_predicted" in cells.columns:  # a predicted type as its annotated namesake
            extra = data.column_values("cell_type_predicted")
        return figures.label_colours(labels, extra)

    return data.memo(f"label_colours:{kind}", build)

"""Helpers the dashboard's tests share: component-tree readers, a state, the query as the page runs
it."""

from __future__ import annotations

from compute.query import parse_gene_list
from dashboard.data import DashboardData
from dashboard.state import (
    DEFAULTS,
    QUERY_KEYS,
)
from dashboard.views.filters import apply_preset


def state_with(**kw) -> dict:
    return dict(DEFAULTS) | kw


def text_of(component) -> str:
    """All the text a Dash component tree shows (children, recursively)."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return "".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def table_rows(component) -> list[list[str]]:
    """The body rows (cell texts) of a table drawn as HTML in a dcc.Markdown (the disease ranking)."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.body, self.cell = [], False, None

        def handle_starttag(self, tag, attrs):
            if tag == "tbody":
                self.body = True
            elif tag == "tr" and self.body:
                self.rows.append([])
            elif tag == "td" and self.body:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(component.children)
    return parser.rows


def find(component, id_):
    """The component with ``id_`` inside a Dash component tree (an app's layout function: the page
    it serves without a link), or None."""
    if callable(component) and not hasattr(component, "to_plotly_json"):
        component = component()
    if isinstance(component, list | tuple):
        return next((hit for c in component if (hit := find(c, id_)) is not None), None)
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    return find(children, id_) if children is not None and not isinstance(children, str) else None


# -- one vocabulary: ontology terms in the filters, disease groups, presets, label transfer ------
def options_of(choices) -> dict[str, str]:
    """{value: label} of grouped select data."""
    return {item["value"]: item["label"] for group in choices.options for item in group["items"]}


def depth_of(label: str) -> int:
    return len(label) - len(label.lstrip("\u00a0"))


def base64_bytes(payload: dict) -> bytes:
    import base64

    assert payload["base64"] is True
    return base64.b64decode(payload["content"])


def query_run(data, set_progress, state):
    from dashboard.callbacks import query

    return query.run_query(data, set_progress, 1, None, **{k: state[k] for k in QUERY_KEYS})


# -- per-study coverage and the ingest reports ---------------------------------------------------
def left_out_query(data: DashboardData) -> tuple[dict, str]:
    """(state, study id): the MS1 genes with a min_coverage just above the lowest study coverage,
    so that study (and only those as low) is left out and the rest are ranked."""
    text, _ = apply_preset(data, "ms1")
    coverage = data.atlas.study_coverage(list(parse_gene_list(text)))["coverage"].sort_values()
    assert coverage.iloc[0] < coverage.iloc[-1], "the tiny atlas's panels should differ in MS1 coverage"
    above = coverage[coverage > coverage.iloc[0]].iloc[0]
    return state_with(genes=text, min_coverage=round((coverage.iloc[0] + above) / 2, 4)), str(coverage.index[0])

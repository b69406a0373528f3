"""Labels as text wherever the dashboard writes markup (issue 33, failure 5): a disease label
with a blank line and Markdown broke out of the ranking table (HTML that ``dcc.Markdown`` renders):
the page fetched an outside image on every view, showed a link, and the table lost its header.

Every place a label (disease, study, cell type, tissue, gene) goes into Markdown is rendered here
by a CommonMark parser with raw HTML allowed (markdown-it-py, as ``dcc.Markdown`` with
``dangerously_allow_html`` does) and read back: only the markup the dashboard wrote, and every
label shown as written (its line breaks as spaces)."""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from html.parser import HTMLParser

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from dashboard.markup import HTML_SPECIAL, MARKDOWN_SPECIAL, html_text, markdown_text

HOSTILE_LABELS = [
    "lupus\n\n![x](http://evil/img.png)",
    "[link](http://x)",
    "a | b | c\n|---|---|---|\n| d | e | f |",
    '<img src="http://evil/i.png" onerror="alert(1)">',
    "`code` and ``more``",
    "*bold* **strong** _em_ __em__",
    "# heading",
    "- list\n1. item\n> quote",
    "crohn\r\n\r\n<script>alert(1)</script>",
    "&amp; &lt; &#60; &copy",
    "<http://autolink.example> http://bare.example",
    "trailing backslash \\",
    "---",
    "=====",
    "~~strike~~ ^sup^",
    "under_score_word * star",
    "\u2028line\u2029separators\x85",
]
_BREAKS = re.compile(r"[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def _shown(label: str) -> str:
    """What a browser shows of ``label``: its line breaks as spaces, runs of spaces as one."""
    return " ".join(_BREAKS.sub(" ", label).split())


def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


class _Read(HTMLParser):
    """The tags of an HTML text, and the text of each element of class ``grp`` (table cells) or tag ``p``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.cells: list[str] = []
        self.paragraphs: list[str] = []
        self._open: list | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if dict(attrs).get("class") == "grp":
            self._open = self.cells
            self.cells.append("")
        elif tag == "p":
            self._open = self.paragraphs
            self.paragraphs.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "p"):
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open[-1] += data


def _read(html: str) -> _Read:
    reader = _Read()
    reader.feed(html)
    reader.close()
    return reader


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_a_hostile_label_is_text_in_markdown_and_in_html_inside_markdown(label):
    md = _renderer()
    as_markdown = _read(md.render(f"In {markdown_text(label)} cells."))  # a label inside a sentence, as methods.md has them
    assert set(as_markdown.tags) <= {"p"}, as_markdown.tags
    assert _shown("".join(as_markdown.paragraphs)) == _shown(f"In {label} cells.")
    as_html = _read(md.render(f'<table><tbody><tr><td class="grp">{html_text(label)}</td></tr></tbody></table>'))
    assert as_html.tags == ["table", "tbody", "tr", "td"], as_html.tags
    assert [_shown(c) for c in as_html.cells] == [_shown(label)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(st.one_of(st.sampled_from(sorted(MARKDOWN_SPECIAL | HTML_SPECIAL) + ["\n", "\r", " ", "\t", "x", "1", "é"]),
                         st.characters(blacklist_categories=("Cs",))), max_size=40))
def test_any_text_shows_as_written(label):
    md = _renderer()
    label = label.replace("\x00", "\ufffd")  # CommonMark shows NUL as U+FFFD
    shown = _read(md.render(f"In {markdown_text(label)} cells."))
    assert set(shown.tags) <= {"p"} and _shown("".join(shown.paragraphs)) == _shown(f"In {label} cells.")
    cell = _read(md.render(f'<table><tbody><tr><td class="grp">{html_text(label)}</td></tr></tbody></table>'))
    assert cell.tags == ["table", "tbody", "tr", "td"] and [_shown(c) for c in cell.cells] == [_shown(label)]


@pytest.fixture(scope="module")
def data(tiny_build):
    from dashboard.data import DashboardData

    return DashboardData(tiny_build[1])


@pytest.fixture(scope="module")
def result(data):
    from compute.query import QueryParams
    from compute.reference import ms1_signature

    known = [g for g in ms1_signature() if g in set(data.atlas.genes)]
    return data.query(QueryParams(genes=tuple((g, None) for g in known[:20]), n_null=0))


def test_the_ranking_table_shows_hostile_disease_labels_as_text(data, result):
    """The ranking table as the page draws it (render_views), its disease labels hostile: one HTML
    block with the full header, each label in its cell as written, nothing fetched or linked."""
    from dashboard.state import DEFAULTS
    from dashboard.views.results import render_views

    n = len(result.diseases)
    labels = [HOSTILE_LABELS[i % len(HOSTILE_LABELS)] + f" {i}" for i in range(n)]
    hostile = dataclasses.replace(result, diseases=result.diseases.assign(group=labels))
    table = render_views(data, hostile, dict(DEFAULTS), umap=False)["disease_table"]
    source = table.children
    shown = _read(_renderer().render(source))
    assert not {"img", "a", "script", "code", "em", "strong", "h1", "ul", "ol", "blockquote", "hr", "p", "s"} & set(shown.tags)
    from dashboard.views.results import ranking_table_rows

    n_head = len(ranking_table_rows(hostile.diseases, hostile.null.get("disease"), {}, expression=hostile.expression_diseases)[0])
    assert n_head >= 9 and shown.tags.count("th") == n_head and shown.tags[:3] == ["table", "thead", "tr"]
    assert shown.cells == [_shown(label) for label in labels[: len(shown.cells)]] and shown.cells
    # one line, one HTML block: no line break inside it can end the block
    assert len(source.splitlines()) == 1 and [t.type for t in _renderer().parse(source)] == ["html_block"]


def test_methods_md_shows_hostile_labels_as_text(data, result):
    """methods.md of the snapshot, with hostile cell type, disease, tissue and study filters, gene
    tokens (renamed, missing, ambiguous) and a left-out study: a heading and one paragraph, every
    label in it as written."""
    from dashboard.export import snapshot_zip

    h = HOSTILE_LABELS
    params = dataclasses.replace(result.params, cell_types=tuple(h[0:4]), diseases=tuple(h[4:8]), tissues=tuple(h[8:12]),
                                 studies=tuple(h[12:16]))
    res = dataclasses.replace(result.resolution, renamed=((h[16], "CD14"),), missing=tuple(h[1:6]), ambiguous=(h[6],))
    coverage = pd.DataFrame({"requested": [20], "measured": [1], "coverage": [0.05], "n_selected": [10], "included": [False],
                             "reason": ["coverage 5% < 70%"]}, index=pd.Index([h[0] + " study"], name="study"))
    hostile = dataclasses.replace(result, params=params, resolution=res, coverage=coverage)
    blob = snapshot_zip(data.atlas, hostile, {})
    text = zipfile.ZipFile(io.BytesIO(blob)).read("methods.md").decode()
    shown = _read(_renderer().render(text))
    assert shown.tags == ["h1", "p"], shown.tags
    paragraph = _shown(shown.paragraphs[0])
    for label in (*h, h[0] + " study"):
        assert _shown(label) in paragraph, label
    # the plain-text paragraph (the snapshot's README, tests, the page) keeps the labels unescaped
    from dashboard.export import methods_paragraph

    assert h[1] in methods_paragraph(data.atlas, hostile)

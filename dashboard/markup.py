"""Labels as text wherever the dashboard writes markup: the one rule for putting a study's,
disease's, cell type's, tissue's, sample's or gene's label (text from the atlas's annotations, a
link or the gene box) into Markdown or into HTML that the page draws (the ranking table, drawn by
``views.components.HtmlBlock``).

A label is never read as markup: a blank line in a disease label used to end the ranking table's
HTML block, and the Markdown after it (an image, a link) was rendered, fetching an outside image
on every view (issue 33). Both functions keep a label on one line (a line break becomes a space)
and write every character that Markdown or HTML could read as syntax so that it shows as itself.
"""

from __future__ import annotations

import re

__all__ = ["HTML_SPECIAL", "MARKDOWN_SPECIAL", "html_text", "markdown_text"]

# every ASCII punctuation character: CommonMark lets each be escaped, and each can start or end some
# construct (emphasis, links, images, code, HTML, tables, headings, lists, entities, autolinks)
MARKDOWN_SPECIAL = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# inside one line of HTML that starts with a tag, Markdown reads nothing (it is one HTML block);
# these are written as references all the same: HTML's own (& < > " '), and every character that
# could start Markdown inside a line (emphasis, code, links, images, tables, strikethrough,
# autolinks, escapes, entities). Digits, spaces and the punctuation of numbers and sentences
# ( . , - % ( ) ) stay as they are, readable in the page's source.
HTML_SPECIAL = frozenset("&<>\"'\\`*_[]!~|:@#")
# the line breaks of Python's str.splitlines (a Markdown renderer starts a new line at some of them)
_LINE_BREAKS = re.compile(r"[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def _one_line(text) -> str:
    return _LINE_BREAKS.sub(" ", "" if text is None else str(text))


def markdown_text(text) -> str:
    """``text`` for a Markdown document: on one line, every ASCII punctuation character escaped
    with a backslash, so that any CommonMark or GitHub Markdown renderer shows it as written."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in _one_line(text))


def html_text(text) -> str:
    """``text`` for HTML that the page draws as HTML (``views.components.HtmlBlock``), and that a
    Markdown renderer could read too (``dcc.Markdown`` with ``dangerously_allow_html`` drew it
    before): on one line, every character of HTML_SPECIAL written as a
    numeric character reference. The HTML parser shows each as itself; the Markdown parser sees no
    line break that could end the HTML block, and no syntax (a reference is literal text to it)."""
    return "".join(f"&#{ord(c)};" if c in HTML_SPECIAL else c for c in _one_line(text))

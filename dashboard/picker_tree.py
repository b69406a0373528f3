"""The ontology terms of a filter as its picker lists them (issue 36, item 11): each term under
every parent it has among the terms listed (so "autoimmune disease" shows rheumatoid arthritis
and lupus as well as multiple sclerosis, as it pools them), and a cell type under the name users
know when the ontology's more specific term selects the same cells ("T cell", not "mature T
cell": the entry is the real T cell term, with its own id). A term listed under a second parent
is the same choice: its option value names it there, and reads back as the term's label.
The cell counts are the atlas's own per term (cells at or below it, each cell once)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PickerEntry", "picker_entries", "plain_term"]


@dataclass(frozen=True)
class PickerEntry:
    """One line of the picker: ``value`` (the option's value: the term's label, or for a second
    place "<label> (under <parent>)"), ``label`` (the term's label), ``term`` (its id), ``depth``
    and ``n_cells`` (cells at or below it); ``alias_of``: the label a second place reads as."""

    value: str
    label: str
    term: str
    depth: int
    n_cells: int
    alias_of: str | None = None


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node["children"])


# the Cell Ontology's qualifiers that users leave out: "mature T cell" is what they call a T cell
PLAIN_QUALIFIERS = ("mature ",)


def plain_term(vocab, term: str, covers: dict) -> str:
    """``term``, or the broader term users know it by when that one selects the same cells: an
    ancestor with the same cells at or below it (``covers``: term id -> the present terms it
    holds) whose label is ``term``'s without a qualifier of PLAIN_QUALIFIERS ("T cell" for
    "mature T cell", "alpha-beta T cell" for "mature alpha-beta T cell")."""
    label = vocab.label(term)
    plain = {label[len(q):] for q in PLAIN_QUALIFIERS if label.startswith(q)}
    if not plain:
        return term
    cover = covers.get(term)
    for anc in vocab.terms.get(term, {}).get("ancestors", {}):
        if vocab.label(anc) in plain and covers.get(anc) == cover:
            return anc
    return term


def picker_entries(vocab, tree: list[dict], covers: dict, *, plain_names: bool = False) -> list[PickerEntry]:
    """The picker's lines for the hierarchy ``tree`` (Atlas.term_hierarchy's "tree"): depth
    first, each term under every listed term it descends from directly (no listed term between
    them), children by label. ``plain_names``: cell types under the name users know
    (:func:`plain_term`)."""
    nodes = list(_walk(tree))
    ids = [n["id"] for n in nodes]
    cells = {n["id"]: int(n["n_cells"]) for n in nodes}
    shown = {t: (plain_term(vocab, t, covers) if plain_names else t) for t in ids}

    def descends(t: str, of: str) -> bool:
        return t != of and vocab.is_descendant(t, of)

    parents = {t: [p for p in ids if descends(t, p) and not any(descends(t, q) and descends(q, p) for q in ids)] for t in ids}
    children: dict[str | None, list[str]] = {}
    for t in ids:
        for p in parents[t] or [None]:
            children.setdefault(p, []).append(t)
    out: list[PickerEntry] = []
    placed: set[str] = set()

    def add(t: str, depth: int, parent: str | None) -> None:
        label = vocab.label(shown[t])
        if t in placed:
            value = f"{label} (under {vocab.label(shown[parent])})" if parent else label
            out.append(PickerEntry(value, label, shown[t], depth, cells[t], alias_of=label))
        else:
            placed.add(t)
            out.append(PickerEntry(label, label, shown[t], depth, cells[t]))
        for kid in sorted(children.get(t, []), key=lambda k: vocab.label(shown[k]).lower()):
            add(kid, depth + 1, t)

    for root in sorted(children.get(None, []), key=lambda k: vocab.label(shown[k]).lower()):
        add(root, 0, None)
    return out

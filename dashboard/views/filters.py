"""The sidebar's filters as the page shows them: the option trees of the cell-type, disease and
tissue filters (ontology terms with their cells), the disease groups a ranking can pool under,
the study options, and what a state may name (``known_values``: read by the link, the callbacks
and the API). Computed once per opened atlas (``DashboardData.memo``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from dashboard.picker_tree import picker_entries
from dashboard.presets import PRESETS
from dashboard.state import TABS

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["FILTER_KINDS", "ONTOLOGIES", "FilterChoices", "apply_preset", "cell_types_for_term", "disease_group_choices",
           "filter_choices", "known_values", "study_options"]

# filter (state / API key) -> the annotation column it filters
FILTER_KINDS = {"cell_types": "cell_type", "diseases": "disease", "tissues": "tissue"}
ONTOLOGIES = {"cell_type": "Cell Ontology", "disease": "MONDO", "tissue": "UBERON"}
_INDENT = "\u00a0\u00a0"  # one tree level in an option's label (plain spaces would collapse)


class FilterChoices(Mapping):
    """The values one filter accepts, each mapped to the value its control shows for it.

    ``options``: grouped select data ([{"group", "items": [{"value", "label"}]}]): the ontology
    terms of the atlas as a tree (indented, with the cells at or below each term) and the labels
    that matched no term. ``choices[v]``: the option that selects the same cells as ``v`` (a term
    id, another-case term label or an equivalent ancestor term -> the tree's term label; a study's
    own label that alone names its term, which has no subtype here -> the term's label); any other
    study's own label maps to itself (it selects exactly its cells, which no option does). Term
    labels and ids are also found case-insensitively. What a value selects is compute's rule
    (Atlas.select); this only names it the way the control shows it."""

    def __init__(self, options: list[dict], canonical: dict[str, str], folded: dict[str, str]):
        self.options = options
        self._canonical = canonical
        self._folded = folded

    def __getitem__(self, value: str) -> str:
        if value in self._canonical:
            return self._canonical[value]
        if isinstance(value, str) and value.casefold() in self._folded:
            return self._folded[value.casefold()]
        raise KeyError(value)

    def __contains__(self, value) -> bool:
        try:
            self[value]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._canonical)

    def __len__(self) -> int:
        return len(self._canonical)

    @property
    def option_values(self) -> list[str]:
        """The option values, in display order."""
        return [item["value"] for group in self.options for item in group["items"]]

    def with_extra(self, values) -> list[dict]:
        """``options`` plus a group for the given values that are not options (a study's own
        label from an older link), so the control can show them."""
        shown = set(self.option_values)
        extra = [v for v in dict.fromkeys(values or []) if v not in shown]
        if not extra:
            return self.options
        return [*self.options, {"group": "From the link: a study's own label", "items": [
            {"value": v, "label": f"{v} (study label)"} for v in extra]}]


def _walk(nodes: list[dict]):
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def filter_choices(data: DashboardData, key: str) -> FilterChoices:
    """The choices of filter ``key`` ("cell_types", "diseases" or "tissues"): see FilterChoices."""
    return data.memo("filter_choices", lambda: {k: _term_choices(data, kind) for k, kind in FILTER_KINDS.items()})[key]


def _covers(data: DashboardData, kind: str) -> dict[str, frozenset]:
    """{term id: the ``kind`` terms of the cells at or below it}, for every term with any."""

    def build() -> dict[str, frozenset]:
        column = f"{kind}_ontology_term_id"
        cells, vocab = data.atlas.cells, data.atlas.vocabulary
        present = sorted(set(cells[column].astype(str)) - {""}) if column in cells else []
        covers = {t: frozenset(vocab.descendants_present(t, present)) for t in vocab.terms}
        return {t: c for t, c in covers.items() if c}

    return data.memo(f"covers:{kind}", build)


def _term_choices(data: DashboardData, kind: str) -> FilterChoices:
    cells = data.atlas.cells
    original = f"{kind}_original"
    if not data.has_vocabulary:  # an atlas built before the vocabulary: the labels as the studies gave them
        counts = cells[kind].astype(str).value_counts()
        items = [{"value": v, "label": f"{v} ({int(counts[v]):,})"} for v in sorted(counts.index)]
        return FilterChoices([{"group": "Labels as the studies gave them (this atlas records no ontology terms)", "items": items}],
                             {v: v for v in counts.index}, {})
    canonical: dict[str, str] = {}
    if original in cells:  # a study's own label selects exactly its cells: kept as given
        canonical |= {v: v for v in cells[original].astype(str).unique()}
    hierarchy = data.atlas.term_hierarchy(kind)
    folded: dict[str, str] = {}
    vocab = data.atlas.vocabulary
    covers = _covers(data, kind)
    # each term under every parent it has, cell types under the names users know (issue 36, item 11)
    entries = picker_entries(vocab, hierarchy["tree"], covers, plain_names=kind == "cell_type")
    by_cover = {covers[e.term]: e.label for e in entries if e.alias_of is None and e.term in covers}
    for term, cover in covers.items():
        if cover in by_cover:  # a term id, or an ancestor equivalent to a tree term here: the same cells
            label = vocab.label(term)
            canonical[term] = canonical[label] = by_cover[cover]
            folded[label.casefold()] = folded[term.casefold()] = by_cover[cover]
    items = [{"value": e.value, "label": f"{_INDENT * e.depth}{e.label} ({e.n_cells:,})"} for e in entries]
    options = [{"group": f"{ONTOLOGIES[kind]} terms (a term includes its subtypes; cells at or below it)", "items": items}]
    unmapped = [{"value": u["label"], "label": f"{u['label']} (no ontology term) ({u['n_cells']:,})"} for u in hierarchy["unmapped"]]
    if unmapped:
        options.append({"group": "No ontology term: the study's own label", "items": unmapped})
    options = [g for g in options if g["items"]]
    for group in options:
        canonical |= {item["value"]: item["value"] for item in group["items"]}  # an option shows itself
    # a term's second place in the tree reads as the term itself
    canonical |= {e.value: e.alias_of for e in entries if e.alias_of is not None}
    if original in cells:
        canonical |= _same_cells(data, kind, original, {item["value"] for group in options for item in group["items"]})
    return FilterChoices(options, canonical, folded)


def _same_cells(data: DashboardData, kind: str, original: str, shown: set[str]) -> dict[str, str]:
    """{a study's own label: the option that selects exactly its cells} ("healthy" -> "normal"
    when every normal cell was called healthy and the term has no subtype here); labels
    whose term also holds other studies' labels or subtypes keep their own form."""
    pairs = data.atlas.cells[[original, kind, f"{kind}_ontology_term_id"]].astype(str).drop_duplicates()
    covers = _covers(data, kind)
    out = {}
    for label, rows in pairs.groupby(kind, sort=False):
        term = rows[f"{kind}_ontology_term_id"].iloc[0]
        if len(rows) == 1 and label in shown and (not term or covers.get(term) == {term}):
            own = rows[original].iloc[0]
            # the study's label names this term only, and is no option of its own (options show themselves)
            if (pairs[original] == own).sum() == 1 and (own == label or own not in shown):
                out[own] = label
    return out


def disease_group_choices(data: DashboardData) -> FilterChoices:
    """The disease terms a ranking can group by: every term of the disease tree above at
    least two of the atlas's diseases (or above one and itself present), as options labelled
    with how many diseases they pool; a term id or an equivalent term maps to its option."""

    def build() -> FilterChoices:
        atlas = data.atlas
        nodes = [n for n in _walk(atlas.term_hierarchy("disease")["tree"]) if n["children"] or not n["present"]]
        canonical: dict[str, str] = {}
        folded: dict[str, str] = {}
        items = []
        if nodes:
            vocab = atlas.vocabulary
            covers = _covers(data, "disease")
            by_cover = {covers[n["id"]]: n["label"] for n in nodes if n["id"] in covers}
            for n in nodes:
                pooled = data.disease_grouping([n["label"]])
                items.append({"value": n["label"], "label": f"{_INDENT * n['depth']}{n['label']} ({len(pooled)} diseases)"})
            for term, cover in covers.items():
                if cover in by_cover:
                    label = vocab.label(term)
                    canonical[term] = canonical[label] = by_cover[cover]
                    folded[label.casefold()] = folded[term.casefold()] = by_cover[cover]
            canonical |= {item["value"]: item["value"] for item in items}
        options = [{"group": "MONDO terms above the atlas's diseases", "items": items}] if items else []
        return FilterChoices(options, canonical, folded)

    return data.memo("disease_group_choices", build)


def known_values(data: DashboardData) -> dict:
    """What a state may name (``dashboard.state.read_state``'s ``known``): per filter the
    values it accepts, each mapped to the form its control shows (a term id to the term's
    label), the disease groups, the studies, the presets and the tabs."""
    def build() -> dict:
        return {**{key: filter_choices(data, key) for key in FILTER_KINDS}, "disease_groups": disease_group_choices(data),
                "studies": [s.id for s in data.atlas.studies], "preset": list(PRESETS), "tab": list(TABS),
                "rank_gene": frozenset(data.atlas.genes),
                # the reference donors' disease: any disease term the disease filter accepts (its subtypes count)
                "reference": filter_choices(data, "diseases")}

    return data.memo("known_values", build)


def study_options(data: DashboardData) -> list[dict]:
    """[{"value": id, "label": "id · title (SIMULATED)"}] for the study filter."""
    return data.memo("study_options", lambda: [
        {"value": s.id, "label": f"{s.id} · {s.title}" + (" (SIMULATED)" if s.simulated else "")} for s in data.atlas.studies])


def cell_types_for_term(data: DashboardData, term: str | None, fallback: str | None = None) -> list[str]:
    """The cell-type filter's value for ontology term ``term`` (an id or label): [its label]
    when the atlas has cells at or below it, else []. For atlases built before the vocabulary,
    the cell types whose name contains ``fallback`` (case-insensitive)."""
    if not term:
        return []
    choices = filter_choices(data, "cell_types")
    if data.has_vocabulary:
        return [choices[term]] if term in choices else []
    return [c for c in data.cell_types if fallback and fallback.lower() in c.lower()]


def apply_preset(data: DashboardData, key: str) -> tuple[str, list[str]]:
    """(gene text, cell types to select) for preset ``key`` on ``data``: its Cell Ontology term as
    the filter shows it (["monocyte"], which selects every monocyte subtype), or [] when it names
    none or the atlas has no cells under it."""
    p = PRESETS[key]
    return "\n".join(p.genes), cell_types_for_term(data, p.cell_type_term, p.cell_type_fallback)

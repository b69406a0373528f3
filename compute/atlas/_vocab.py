"""The atlas's vocabulary: the ontology terms its cells use, with their ancestors, read from
``vocabulary.json`` (written by the build), so that a filter on a term selects its descendants
without loading an ontology. The one owner of the filter rule (Atlas.select and the query)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from compute.errors import AtlasFormatError, QueryError

__all__ = ["PREDICTIONS_FILE", "VOCABULARY_FILE", "TermTree", "filter_mask", "predicted_columns", "read_vocabulary",
           "write_predictions", "write_vocabulary"]

VOCABULARY_FILE = "vocabulary.json"
# the label transfer's prediction for every cell, in atlas order (an atlas-level product)
PREDICTIONS_FILE = "cell_type_predictions.parquet"
# filter keyword -> cells column; the annotated columns also carry <column>_ontology_term_id
FILTER_COLUMNS = {"cell_types": "cell_type", "diseases": "disease", "tissues": "tissue", "studies": "study"}
TERM_COLUMNS = ("cell_type", "disease", "tissue")


@dataclass(frozen=True)
class TermTree:
    """Terms (id -> label, parents, ancestors) of one atlas; empty for atlases built before
    the vocabulary was recorded (filters then match labels only)."""

    terms: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    def label(self, term_id: str) -> str:
        return self.terms.get(term_id, {}).get("label", term_id)

    def term_id(self, text: str) -> str | None:
        """The term named by ``text``: a term id, or a term label (case-insensitive)."""
        t = str(text).strip()
        if t in self.terms:
            return t
        low = t.lower()
        for tid, rec in self.terms.items():
            if rec["label"].lower() == low:
                return tid
        return None

    def is_descendant(self, term_id: str, of: str) -> bool:
        """Whether ``term_id`` is ``of`` or one of its descendants."""
        return term_id == of or of in self.terms.get(term_id, {}).get("ancestors", {})

    def descendants_present(self, of: str, present) -> list[str]:
        """The ids among ``present`` that are ``of`` or descend from it."""
        return [t for t in present if t and self.is_descendant(t, of)]

    def grouping(self, present: dict[str, str], groups: list[str], atlas_name: str = "") -> dict[str, str]:
        """{label: group label} for each label of ``present`` ({label: term id}) whose term is
        one of ``groups`` (term ids or labels) or descends from it; the first group wins."""
        resolved = []
        for g in groups:
            tid = self.term_id(g)
            if tid is None:
                raise QueryError(f"no disease term called {g!r} in atlas '{atlas_name}' to group by: use a term id "
                                 "(MONDO:...) or label among the atlas's diseases and their ancestors")
            resolved.append(tid)
        out = {}
        for label, tid in present.items():
            for g in resolved:
                if tid and self.is_descendant(tid, g):
                    out[label] = self.label(g)
                    break
        return out

    def hierarchy(self, present_counts: dict[str, int]) -> list[dict]:
        """The terms present (id -> cell count) and their ancestors as a tree for a picker:
        [{"id", "label", "n_cells" (cells at the term or below), "depth", "children": [...]}],
        each present term under its nearest ancestor that is itself present or branches."""
        present = {t: n for t, n in present_counts.items() if t in self.terms}
        if not present:
            return []
        # the ancestors that group at least two present terms, plus the present terms
        cover: dict[str, set[str]] = {}
        for t in present:
            for a in [t, *self.terms[t].get("ancestors", {})]:
                cover.setdefault(a, set()).add(t)
        keep = {a for a, ts in cover.items() if a in present or len(ts) >= 2}
        # drop an ancestor that covers exactly the same terms as a more specific kept node
        by_cover: dict[frozenset, list[str]] = {}
        for a in keep:
            by_cover.setdefault(frozenset(cover[a]), []).append(a)
        nodes = set()
        for ids in by_cover.values():
            present_ids = [i for i in ids if i in present]
            if present_ids:
                nodes.update(present_ids)
            else:  # the most specific of equivalent ancestors (fewest ancestors of its own)
                nodes.add(max(ids, key=lambda i: len(self.terms[i].get("ancestors", {}))))

        def parent(t: str) -> str | None:
            anc = self.terms[t].get("ancestors", {})
            cands = [a for a in anc if a in nodes]
            return min(cands, key=lambda a: anc[a]) if cands else None

        children: dict[str | None, list[str]] = {}
        for t in nodes:
            children.setdefault(parent(t), []).append(t)

        def build(t: str, depth: int) -> dict:
            kids = sorted(children.get(t, []), key=lambda k: self.label(k).lower())
            return {"id": t, "label": self.label(t), "depth": depth, "present": t in present,
                    "n_cells": int(sum(present[p] for p in cover[t])), "children": [build(k, depth + 1) for k in kids]}

        return [build(t, 0) for t in sorted(children.get(None, []), key=lambda k: self.label(k).lower())]


def read_vocabulary(root: Path, meta: dict) -> TermTree:
    """The atlas's :class:`TermTree` (empty when the atlas has no vocabulary file)."""
    name = (meta.get("vocabulary") or {}).get("file")
    if not name:
        return TermTree()
    path = root / name
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AtlasFormatError(f"{path}: cannot read the atlas vocabulary ({exc}). Re-run `python -m compute build <manifest>`.") from exc
    return TermTree(terms=doc.get("terms", {}), versions=doc.get("versions", {}))


def write_vocabulary(root: Path, terms: dict, versions: dict) -> str:
    """Write ``vocabulary.json`` (atomically) and return its file name."""
    from compute.files import write_json_atomic

    write_json_atomic(root / VOCABULARY_FILE, {"versions": versions, "terms": terms})
    return VOCABULARY_FILE


def write_predictions(root: Path, predicted) -> str:
    """Write the label transfer's per-cell ``term_id`` and ``confidence`` (atlas order) as
    ``cell_type_predictions.parquet`` (atomically) and return its file name. ``predicted`` is one
    dict of both arrays, or an iterable of such dicts (one per study, in atlas order) written one
    row group at a time, so the writer never holds every cell's predictions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from compute.files import atomic_write

    chunks = [predicted] if isinstance(predicted, dict) else predicted
    schema = pa.schema([("cell_type_predicted_ontology_term_id", pa.dictionary(pa.int32(), pa.string())),
                        ("cell_type_prediction_confidence", pa.float32())])

    def write(target):
        with pq.ParquetWriter(target, schema) as writer:
            for chunk in chunks:
                ids = pa.array(np.asarray(chunk["term_id"]).astype(str), type=pa.string()).dictionary_encode()
                conf = pa.array(np.asarray(chunk["confidence"], dtype=np.float32))
                writer.write_table(pa.Table.from_arrays([ids.cast(schema.field(0).type), conf], schema=schema))

    atomic_write(root / PREDICTIONS_FILE, write)
    return PREDICTIONS_FILE


def predicted_columns(root: Path, meta: dict, tree: TermTree, n_cells: int) -> pd.DataFrame | None:
    """The cells table's label-transfer columns (cell_type_predicted, its ontology term id and
    the confidence), or None when the atlas has none."""
    name = (meta.get("vocabulary") or {}).get("predictions")
    if not name:
        return None
    path = root / name
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise AtlasFormatError(f"{path}: cannot read the label transfer's predictions ({exc}). "
                               "Re-run `python -m compute build <manifest>`.") from exc
    if len(table) != n_cells:
        raise AtlasFormatError(f"{path}: {len(table)} rows for {n_cells} cells. Re-run `python -m compute build <manifest>`.")
    ids = table["cell_type_predicted_ontology_term_id"].astype(str)
    labels = {t: (tree.label(t) if t else "") for t in ids.unique()}
    table.insert(0, "cell_type_predicted", ids.map(labels).astype("category"))
    return table


def _known(col: pd.Series) -> list[str]:
    return list(col.cat.categories.astype(str)) if hasattr(col, "cat") else sorted(set(col.astype(str)))


def filter_mask(cells: pd.DataFrame, tree: TermTree, filters: dict[str, list[str]], atlas_name: str = "") -> np.ndarray:
    """Cells in every filter (``{column: values}``; columns of :data:`FILTER_COLUMNS` and
    ``simulated``). For cell_type, disease and tissue a value is a label in the column, a
    study's own label (``<column>_original``), a term id or a term label: a term selects the
    cells annotated with it or any descendant term ("monocyte" selects classical and
    non-classical monocytes). Unknown values raise
    QueryError naming them."""
    mask = np.ones(len(cells), dtype=bool)
    for column, values in filters.items():
        col = cells[column].astype(str)
        ids = cells[f"{column}_ontology_term_id"].astype(str) if column in TERM_COLUMNS and f"{column}_ontology_term_id" in cells else None
        present_ids = sorted(set(ids) - {""}) if ids is not None else []
        known = set(_known(cells[column]))
        original = cells[f"{column}_original"].astype(str) if f"{column}_original" in cells else None
        known_original = set(_known(cells[f"{column}_original"])) if original is not None else set()
        keep = np.zeros(len(cells), dtype=bool)
        unknown = []
        for v in values:
            hit = False
            if v in known:
                keep |= (col == v).to_numpy()
                hit = True
            if v in known_original:  # a study's own label ("healthy", "CD14+ Monocyte")
                keep |= (original == v).to_numpy()
                hit = True
            tid = tree.term_id(v) if ids is not None else None
            if tid is not None:
                below = tree.descendants_present(tid, present_ids)
                if below:
                    keep |= ids.isin(below).to_numpy()
                    hit = True
            if not hit:
                unknown.append(v)
        if unknown:
            shown = sorted(known)
            raise QueryError(
                f"no {column} called {', '.join(repr(u) for u in unknown)} in atlas '{atlas_name}' (it has {len(shown)}: "
                f"{', '.join(shown[:12])}{', ...' if len(shown) > 12 else ''}"
                + ("; an ontology term (id or label) selects its descendants" if ids is not None else "") + ")")
        mask &= keep
    return mask

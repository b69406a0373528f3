"""Free-text labels -> ontology terms: a manifest map first, then term ids, then the term's
label and synonyms after normalising case and punctuation."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from compute.errors import IngestError
from compute.vocabulary._disease import ASSUMED_HEALTHY, read_disease
from compute.vocabulary._ontology import HEALTHY, KINDS, ontologies
from compute.vocabulary._reader import blocked_synonyms, read_cell_type, read_phrase
from compute.vocabulary._text import normalise_label

__all__ = ["NO_LABEL", "Harmonised", "TermMatch", "harmonise", "match_label", "normalise_label"]

NO_TERM = "no term with this label or synonym"
_ABBREVIATION = re.compile(r"^[A-Z][A-Z0-9-]{1,5}$")
# values that say "no annotation": kept as their own group, never matched to a term
NO_LABEL = frozenset({"", "nan", "none", "na", "n/a", "unknown", "unassigned", "unannotated", "not available", "other"})
# disease values meaning "no disease": the CELLxGENE schema's PATO:0000461 "normal"
_HEALTHY_WORDS = frozenset({"healthy", "normal", "healthy control", "healthy controls", "healthy donor", "healthy donors",
                            "healthy volunteer", "healthy volunteers", "no disease", "not diseased", "hc"})


def _variants(norm: str, kind: str) -> list[str]:
    """Spellings tried after the exact one: a plural last word, and for cell types "X" -> "X cell"."""
    out = []
    words = norm.split()
    if words and len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        out.append(" ".join([*words[:-1], words[-1][:-1]]))
    if kind == "cell_type":
        out += [v + " cell" for v in [norm, *out] if not v.endswith(" cell")]
    return out


@dataclass(frozen=True)
class TermMatch:
    """How one label was matched: ``term_id``/``term_label`` (None when unmapped), ``how``
    (map, id, label, synonym, healthy, assumed healthy, phrase, reader, alternatives, parent or
    None) and, when unmapped, ``reason`` and ``proposal`` (a term id to map the label to by
    hand, never applied). ``score``: the reader's share of the label it accounts for (1.0 for
    exact readings); ``notes``: what was read, assumed or left aside."""

    label: str
    term_id: str | None
    term_label: str | None
    how: str | None
    reason: str | None = None
    proposal: str | None = None
    score: float = 1.0
    notes: tuple[str, ...] = ()

    @property
    def proposal_label(self) -> str | None:
        t = ontologies().term(self.proposal) if self.proposal else None
        return t.label if t is not None else ("normal" if self.proposal == HEALTHY else None)

    @property
    def mapped(self) -> bool:
        return self.term_id is not None


def _term_for(value: str, kind: str):
    """A manifest map's value (a term id or an exact term label) -> TermInfo, or None."""
    onto = ontologies()
    if onto.looks_like_id(value):
        t = onto.term(value)
        return t if t is not None and onto.kind_of(t.id) == kind else None
    labels, _ = onto.text_index(kind)
    ids = labels.get(normalise_label(value), ())
    if kind == "disease" and normalise_label(value) == "normal":
        ids = (HEALTHY,)
    return onto.term(ids[0]) if len(ids) == 1 else None


def match_label(label: str, kind: str, mapping: dict | None = None) -> TermMatch:
    """Match one free-text ``label`` of annotation ``kind`` (cell_type, disease, tissue).

    Order: ``mapping`` (the manifest's map: label -> term id or exact term label, or None to
    leave the label unmapped on purpose), a term id, "healthy"-like words (disease; "control"
    only with the assumption in ``notes``), a label with "?" (never matched: proposed), the
    curated table of spellings (compute/assets/vocabulary: phrases and refusals), the term's label, its
    synonyms (only when one term has it, and not one the table blocks), then a plural or, for
    cell types, the label with " cell" added; last the label reader (compute.vocabulary._reader
    for cell types, _disease for diseases), which matches only when one term wins clearly.
    An unmatched label carries the reason in ``notes`` and, where one is known, a ``proposal``
    (never applied). Raises IngestError for a map value that names no term."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got '{kind}'")
    onto = ontologies()
    text = str(label)
    if mapping is not None and text in mapping:
        value = mapping[text]
        if value is None:
            return TermMatch(text, None, None, None, "left unmapped by the manifest map")
        t = _term_for(str(value), kind)
        if t is None:
            raise IngestError(f"the {kind} map sends '{text}' to '{value}', which is not a "
                              f"{KINDS[kind]}{' (or PATO:0000461)' if kind == 'disease' else ''} term id or exact term label")
        return TermMatch(text, t.id, t.label, "map")
    norm = normalise_label(text)
    if norm in NO_LABEL:
        return TermMatch(text, None, None, None, "no annotation")
    if onto.looks_like_id(text):
        t = onto.term(text)
        if t is None or onto.kind_of(t.id) != kind:
            return TermMatch(text, None, None, None, f"not a {KINDS[kind]} term id")
        if t.deprecated and t.replaced_by:
            t = onto.term(t.replaced_by) or t
        return TermMatch(text, t.id, t.label, "id")
    if kind == "disease" and norm in _HEALTHY_WORDS:
        return TermMatch(text, HEALTHY, "normal", "healthy")
    if kind == "disease" and norm in ASSUMED_HEALTHY:
        return TermMatch(text, HEALTHY, "normal", "assumed healthy", notes=(
            f"'{text}' read as healthy donors (PATO:0000461 normal): if this study's controls are patients, "
            "map the label in disease_map",))
    if "?" in text:  # "T cell?": the annotator was unsure; say what it would be, match nothing
        unsure = match_label(text.replace("?", " "), kind)
        return TermMatch(text, None, None, None, NO_TERM, proposal=unsure.term_id or unsure.proposal, score=0.0,
                         notes=("the label says its annotator was unsure ('?')", *unsure.notes))
    curated = _curated(text, kind)
    if curated is not None:
        return curated
    labels, synonyms = onto.text_index(kind)
    blocked = blocked_synonyms(kind)
    ambiguous: tuple[str, ...] = ()
    for cand in (norm, *_variants(norm, kind)):
        if len(ids := labels.get(cand, ())) == 1:
            return TermMatch(text, ids[0], onto.term(ids[0]).label, "label")
        ids = tuple(i for i in synonyms.get(cand, ()) if (cand, i) not in blocked)
        if len(ids) == 1:
            notes = ()
            if kind == "disease" and _ABBREVIATION.match(text.strip()):  # "AML", "CF": say what it was read as
                notes = (f"'{text}' read as an abbreviation of {onto.term(ids[0]).label} (a MONDO synonym): check that the "
                         "study means it",)
            return TermMatch(text, ids[0], onto.term(ids[0]).label, "synonym", notes=notes)
        if len(ids) > 1 and not ambiguous:
            ambiguous = ids
    if ambiguous:  # the ontology itself gives the text to several terms: never read further
        names = ", ".join(f"{i} {onto.term(i).label}" for i in ambiguous[:4])
        return TermMatch(text, None, None, None, f"ambiguous synonym of {len(ambiguous)} terms ({names}): map it",
                         proposal=ambiguous[0])
    return _read(text, kind)


def _curated(text: str, kind: str) -> TermMatch | None:
    """The curated table's reading of a whole label (compute/assets/vocabulary), or None."""
    onto = ontologies()
    r = read_phrase(text, kind)
    if r is None:
        return None
    if r.term_id:
        return TermMatch(text, r.term_id, onto.term(r.term_id).label, r.how, score=r.score,
                         notes=(*r.notes, f"source: {r.source}") if r.source else r.notes)
    return TermMatch(text, None, None, None, NO_TERM, proposal=r.proposal, score=0.0,
                     notes=(r.reason, *r.notes, *([f"source: {r.source}"] if r.source else [])))


def _read(text: str, kind: str) -> TermMatch:
    """The label reader (compute.vocabulary._reader / _disease) for what no label or synonym
    matched: a term when one wins clearly, else the reason and a proposal."""
    onto = ontologies()
    if kind == "cell_type":
        r = read_cell_type(text, resolve=lambda alt: match_label(alt, kind).term_id)
    elif kind == "disease":
        r = read_disease(text, resolve=lambda alt: match_label(alt, kind).term_id)
    else:
        return TermMatch(text, None, None, None, NO_TERM)
    if r.term_id:
        return TermMatch(text, r.term_id, onto.term(r.term_id).label, r.how, score=r.score, notes=r.notes)
    return TermMatch(text, None, None, None, NO_TERM, proposal=r.proposal, score=0.0, notes=(r.reason, *r.notes))


@dataclass(frozen=True)
class Harmonised:
    """One annotation column harmonised: per cell the term id ("" when unmapped) and the label
    to group by (the term's label, or the original label when unmapped), and per distinct
    original label its :class:`TermMatch` with a cell count."""

    term_ids: np.ndarray
    labels: np.ndarray
    matches: list[tuple[TermMatch, int]]

    def report(self) -> dict:
        """{"mapped": [...], "unmapped": [...]} rows for the build report."""
        mapped = [{"label": m.label, "term_id": m.term_id, "term_label": m.term_label, "how": m.how, "n_cells": n}
                  for m, n in self.matches if m.mapped]
        unmapped = [{"label": m.label, "reason": m.reason, "n_cells": n} for m, n in self.matches if not m.mapped]
        # what the label reader proposes for the unmapped labels (never applied) and what it
        # read, assumed or left aside for the matched ones
        proposals = [{"label": m.label, "proposal": m.proposal, "proposal_label": m.proposal_label, "why": list(m.notes)}
                     for m, _ in self.matches if not m.mapped and m.proposal]
        notes = [{"label": m.label, "how": m.how, "notes": list(m.notes)} for m, _ in self.matches if m.mapped and m.notes]
        return {"mapped": mapped, "unmapped": unmapped, "proposals": proposals, "notes": notes}


def harmonise(values, kind: str, mapping: dict | None = None, ids=None, accept_proposals: bool = False) -> Harmonised:
    """Harmonise one study's ``values`` (per cell, original labels) of annotation ``kind``.

    ``ids``: per cell term ids from the file (a CELLxGENE-schema ``*_ontology_term_id``
    column); a valid id wins over the label, an invalid one falls back to the label.
    ``accept_proposals`` (the manifest's columns.accept_proposals): an unmatched label with a
    proposal takes it, reported as "accepted proposal" (a label the map leaves unmapped stays)."""
    values = pd.Series(np.asarray(values, dtype=object)).astype(str)
    onto = ontologies()
    if ids is not None:
        ids = pd.Series(np.asarray(ids, dtype=object)).astype(str)
        keys = pd.Series(list(zip(values, ids, strict=True)))
    else:
        keys = values.map(lambda v: (v, ""))
    codes, uniq = pd.factorize(keys)
    matches: list[tuple[TermMatch, int]] = []
    term_ids = np.empty(len(uniq), dtype=object)
    labels = np.empty(len(uniq), dtype=object)
    counts = np.bincount(codes, minlength=len(uniq))
    by_label: dict[str, list] = {}
    for i, (label, tid) in enumerate(uniq):
        m = None
        if tid and label not in (mapping or {}):
            t = onto.term(tid)
            if t is not None and onto.kind_of(t.id) == kind:
                m = TermMatch(label, t.id, t.label, "id")
        if m is None:
            m = match_label(label, kind, mapping)
            if accept_proposals and not m.mapped and m.proposal and label not in (mapping or {}):
                t = onto.term(m.proposal)
                m = TermMatch(label, m.proposal, t.label if t is not None else "normal", "accepted proposal", score=0.0,
                              notes=("a proposal, applied because the manifest's columns.accept_proposals asks for it",
                                     *m.notes))
        term_ids[i] = m.term_id or ""
        labels[i] = m.term_label if m.mapped else label
        by_label.setdefault((m.label, m.term_id), [m, 0])[1] += int(counts[i])
    matches = [(m, n) for m, n in by_label.values()]
    matches.sort(key=lambda mn: (-mn[1], mn[0].label))
    return Harmonised(term_ids=term_ids[codes], labels=labels[codes], matches=matches)

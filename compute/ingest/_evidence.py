"""The ingest report's evidence from the cells for the study's cell-type labels (issue 34): each
label's cells against known marker sets (compute.vocabulary.marker_evidence), summed up as
labels supported, text matches the cells contradict (flags) and proposals for unmatched labels.
Shown in the build report; never applied."""

from __future__ import annotations

import numpy as np

__all__ = ["evidence_summary", "label_evidence"]


def label_evidence(X, genes, labels, term_ids) -> dict:
    """{"supported": n, "not_settled": n, "flags": [...], "proposals": [...]} for a study's
    log-normalised ``X`` (cells x ``genes``), per cell original ``labels`` and their ``term_ids``
    ("" when unmatched). A flag or proposal: {label, n_cells, term_id, set, score, proposal, text}."""
    from compute.vocabulary import marker_sums

    return evidence_summary(marker_sums(X, genes, labels), labels, term_ids)


def evidence_summary(sums, labels, term_ids) -> dict:
    """:func:`label_evidence` from the study's compute.vocabulary.MarkerSums (summed block by
    block by the blocked ingest)."""
    from compute.vocabulary import evidence_from_sums, judge_markers

    labels = np.asarray(labels, dtype=object).astype(str)
    term_ids = np.asarray(term_ids, dtype=object).astype(str)
    term_of = dict(zip(labels, term_ids, strict=True))
    evidence = evidence_from_sums(sums)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    out = {"supported": 0, "not_settled": 0, "flags": [], "proposals": []}
    for label in sorted(term_of, key=lambda lab: (-int(counts[lab]), lab)):
        ev = evidence.get(label)
        term = term_of[label] or None
        verdict, text = judge_markers(ev, term)
        if verdict in ("supported",):
            out["supported"] += 1
        elif verdict == "not settled":
            out["not_settled"] += 1
        else:
            row = {"label": label, "n_cells": ev.n_cells, "term_id": term, "set": ev.best, "score": ev.score,
                   "proposal": ev.terms[0], "text": text}
            out["flags" if verdict == "contradicted" else "proposals"].append(row)
    return out

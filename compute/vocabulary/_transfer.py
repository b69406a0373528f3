"""Label transfer through the encoder's embedding (what SCimilarity is used for): each cell
gets the cell-type term most common among its nearest labelled cells from other studies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransferResult", "transfer_labels"]

_CHUNK = 2048  # query cells per similarity block: bounds memory at _CHUNK x reference floats


@dataclass(frozen=True)
class TransferResult:
    """Per cell (all studies, in the order given): ``term_ids`` the predicted term ("" when no
    other study has labelled cells), ``confidence`` the share of the k neighbours that carry
    it. ``accuracy``: on the labelled cells, held out by construction (their own study never
    votes), the share predicted exactly (``exact``), or as the same cell type for the triplet
    loss (the term or a close ancestor/descendant, ``compatible``), over the cells whose term
    another study also has (``n_evaluated``); ``reference``: how many labelled cells voted."""

    term_ids: np.ndarray
    confidence: np.ndarray
    accuracy: dict
    k: int
    reference: int

    def summary(self) -> dict:
        return {"k": self.k, "reference_cells": self.reference, "accuracy": self.accuracy,
                "rule": "majority term among the k nearest labelled cells of other studies (cosine, encoder embedding); "
                        "confidence = the winning term's share of the k votes"}


def _reference(term_ids: np.ndarray, study_codes: np.ndarray, max_reference: int, seed: int) -> np.ndarray:
    """Positions of labelled cells that vote: all of them, or a seeded sample drawn evenly from
    every study when there are more than ``max_reference``."""
    labelled = np.flatnonzero(term_ids != "")
    if labelled.size <= max_reference:
        return labelled
    rng = np.random.default_rng(seed)
    studies = np.unique(study_codes[labelled])
    per = max(1, max_reference // len(studies))
    picks = []
    for s in studies:
        pool = labelled[study_codes[labelled] == s]
        picks.append(np.sort(rng.choice(pool, size=min(per, pool.size), replace=False)))
    return np.concatenate(picks)


def transfer_labels(embedding: np.ndarray, term_ids, studies, *, k: int = 15, max_reference: int = 100_000, seed: int = 0,
                    relation=None) -> TransferResult:
    """Predict a cell-type term for every cell from the ``k`` most similar labelled cells
    (cosine similarity of the L2-normalised embedding) of other studies.

    ``term_ids``: per cell, the annotated term ("" for a cell without a usable label).
    ``relation``: compute.vocabulary.term_relation over the terms, for the ``compatible``
    accuracy (None: exact only)."""
    E = np.asarray(embedding, dtype=np.float32)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    term_ids = np.asarray(term_ids, dtype=object).astype(str)
    _, study_codes = np.unique(np.asarray(studies, dtype=str), return_inverse=True)
    ref = _reference(term_ids, study_codes, max_reference, seed)
    terms, ref_codes = np.unique(term_ids[ref], return_inverse=True)
    ref_studies = study_codes[ref]
    R = E[ref]
    n = len(E)
    pred = np.full(n, "", dtype=object)
    conf = np.zeros(n, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        sim = E[start:stop] @ R.T
        sim[study_codes[start:stop, None] == ref_studies[None, :]] = -np.inf  # never its own study
        kk = min(k, R.shape[0])
        if kk == 0:
            continue
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        valid = np.isfinite(np.take_along_axis(sim, top, axis=1))
        votes = np.zeros((stop - start, len(terms)), dtype=np.int32)
        rows = np.repeat(np.arange(stop - start), kk)
        np.add.at(votes, (rows[valid.ravel()], ref_codes[top].ravel()[valid.ravel()]), 1)
        n_votes = valid.sum(axis=1)
        best = votes.argmax(axis=1)
        has = n_votes > 0
        pred[start:stop][has] = terms[best[has]]
        conf[start:stop][has] = votes[np.arange(stop - start), best][has] / n_votes[has]
    # held-out accuracy: labelled cells whose term some other study also annotates
    other_has = {}
    for t in np.unique(term_ids[term_ids != ""]):
        other_has[t] = np.unique(study_codes[term_ids == t]).size > 1
    evaluable = np.array([t != "" and other_has.get(t, False) for t in term_ids])
    acc = {"n_labelled": int((term_ids != "").sum()), "n_evaluated": int(evaluable.sum())}
    if evaluable.any():
        acc["exact"] = round(float(np.mean(pred[evaluable] == term_ids[evaluable])), 4)
        if relation is not None:
            ok = [bool(p) and p in relation.index and t in relation.index and relation.at[t, p] == 1
                  for t, p in zip(term_ids[evaluable], pred[evaluable], strict=True)]
            acc["compatible"] = round(float(np.mean(ok)), 4)
    return TransferResult(term_ids=pred, confidence=conf, accuracy=acc, k=k, reference=int(ref.size))

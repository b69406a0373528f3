"""Label transfer through the encoder's embedding (what SCimilarity is used for): each cell
gets the cell-type term most common among its nearest labelled cells from other studies.

Built in two steps so that no process holds every cell's embedding: a bounded reference (a
seeded sample of labelled cells, drawn evenly from every study, :func:`reference_positions`
and :func:`make_reference`), then each study's cells predicted against it
(:func:`predict_study`), and the held-out accuracy summed from per-study counts
(:func:`accuracy_counts`, :func:`accuracy_summary`). :func:`transfer_labels` runs the steps on
embeddings held in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_REFERENCE", "TRANSFER_K", "TransferReference", "TransferResult", "accuracy_counts", "accuracy_summary", "make_reference", "predict_study",
           "reference_positions", "shared_terms", "transfer_labels", "transfer_summary"]

# query cells per similarity block: the block (cells x reference cells, float32) and its top-k
# are the task's largest arrays; 2,048 cells against 100,000 took 0.8 GB (2.4 GB peak a worker)
_BLOCK_BYTES = 64 * 2**20
TRANSFER_K = 15  # neighbours that vote
MAX_REFERENCE = 100_000  # labelled cells that vote, at most (a seeded sample above it)
RULE = ("majority term among the k nearest labelled cells of other studies (exact cosine, encoder embedding, against a "
        "seeded reference of at most max_reference labelled cells drawn evenly from every study); confidence = the "
        "winning term's share of the k votes")


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
        return transfer_summary(self.k, self.reference, self.accuracy)


def transfer_summary(k: int, reference_cells: int, accuracy: dict) -> dict:
    """What the atlas records about its label transfer (atlas.json vocabulary.label_transfer)."""
    return {"k": k, "reference_cells": int(reference_cells), "accuracy": accuracy, "rule": RULE}


@dataclass(frozen=True)
class TransferReference:
    """The labelled cells that vote: ``embedding`` (rows L2-normalised, float32), the index of
    each row's term in ``terms`` (sorted), and each row's study; rows grouped by study."""

    embedding: np.ndarray
    term_codes: np.ndarray
    terms: np.ndarray
    studies: np.ndarray

    @property
    def size(self) -> int:
        return int(len(self.term_codes))


def _normalised(E) -> np.ndarray:
    E = np.asarray(E, dtype=np.float32)
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


def reference_positions(terms_by_study: Mapping[str, np.ndarray], max_reference: int = MAX_REFERENCE,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Per study (positions within the study, ascending): its labelled cells that vote. All of
    them when the atlas has at most ``max_reference`` labelled cells; otherwise a seeded sample
    of ``max_reference // studies with labels`` from every study (fewer where a study has
    fewer), the studies drawn in the sorted order of their ids, so the same labels and seed
    give the same reference in whatever order the studies are listed."""
    def labelled(sid: str) -> np.ndarray:  # one study at a time: never every cell's position at once
        return np.flatnonzero(np.asarray(terms_by_study[sid], dtype=object) != "").astype(np.int64)

    counts = {sid: int((np.asarray(t, dtype=object) != "").sum()) for sid, t in terms_by_study.items()}
    if sum(counts.values()) <= max_reference:
        return {sid: labelled(sid) for sid in terms_by_study}
    out = {sid: np.zeros(0, dtype=np.int64) for sid in terms_by_study}
    rng = np.random.default_rng(seed)
    voting = sorted(sid for sid, n in counts.items() if n)
    per = max(1, max_reference // len(voting))
    for sid in voting:
        pool = labelled(sid)
        out[sid] = np.sort(rng.choice(pool, size=min(per, pool.size), replace=False))
    return out


def make_reference(embeddings: Mapping[str, np.ndarray], terms: Mapping[str, np.ndarray]) -> TransferReference:
    """The reference from each study's voting cells (``embeddings[sid]`` their rows,
    ``terms[sid]`` their terms, non-empty), grouped by study in the sorted order of the ids."""
    ids = sorted(sid for sid in embeddings if len(terms[sid]))
    dims = next((np.asarray(embeddings[sid]).shape[1] for sid in ids), 1)
    E = np.concatenate([_normalised(embeddings[sid]) for sid in ids]) if ids else np.zeros((0, dims), np.float32)
    t = np.concatenate([np.asarray(terms[sid], dtype=object).astype(str) for sid in ids]) if ids else np.zeros(0, str)
    if (t == "").any():
        raise ValueError("make_reference: every reference cell needs a term; pick them with reference_positions")
    uniq, codes = np.unique(t, return_inverse=True)
    studies = np.repeat(np.array(ids, dtype=object), [len(terms[sid]) for sid in ids]).astype(str)
    return TransferReference(embedding=np.ascontiguousarray(E), term_codes=codes.astype(np.int32), terms=uniq.astype(str),
                             studies=studies)


def predict_study(reference: TransferReference, embedding: np.ndarray, study: str, *, k: int = TRANSFER_K) -> tuple[np.ndarray, np.ndarray]:
    """Predicted term (object array, "" when no other study votes) and confidence (float32)
    for each cell of ``study`` (``embedding``: its cells), from its ``k`` most similar
    reference cells of other studies: exact cosine similarity, the top k by torch.topk (an
    O(n) selection; numpy's argpartition was 25x slower on 100,000 columns)."""
    import torch

    Q = _normalised(embedding)
    n = len(Q)
    pred = np.full(n, "", dtype=object)
    conf = np.zeros(n, dtype=np.float32)
    others = reference.studies != str(study)  # never its own study
    R = torch.from_numpy(np.ascontiguousarray(reference.embedding[others]))
    codes = reference.term_codes[others]
    kk = min(k, R.shape[0])
    if kk == 0 or n == 0:
        return pred, conf
    n_terms = len(reference.terms)
    chunk = max(1, _BLOCK_BYTES // (4 * R.shape[0]))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sim = torch.from_numpy(Q[start:stop]) @ R.T
        top = torch.topk(sim, kk, dim=1, sorted=False).indices.numpy()
        m = stop - start
        votes = np.zeros((m, n_terms), dtype=np.int32)
        np.add.at(votes, (np.repeat(np.arange(m), kk), codes[top].ravel()), 1)
        best = votes.argmax(axis=1)  # ties: the first term in sorted order
        pred[start:stop] = reference.terms[best]
        conf[start:stop] = votes[np.arange(m), best] / kk
    return pred, conf


def shared_terms(terms_by_study: Mapping[str, np.ndarray]) -> set[str]:
    """Terms annotated by more than one study: the cells carrying one are the held-out ones
    whose prediction is scored (a term no other study has cannot be predicted)."""
    seen: dict[str, int] = {}
    for t in terms_by_study.values():
        for term in np.unique(np.asarray(t, dtype=object).astype(str)):
            if term:
                seen[term] = seen.get(term, 0) + 1
    return {t for t, n in seen.items() if n > 1}


def accuracy_counts(terms: np.ndarray, pred: np.ndarray, shared: set[str], relation=None) -> dict:
    """One study's contribution to the held-out accuracy: labelled cells, evaluated cells
    (term in ``shared``), exact hits and, with ``relation`` (compute.vocabulary.term_relation),
    compatible hits (the term or a close ancestor/descendant). Counts, so studies add up."""
    terms = np.asarray(terms, dtype=object).astype(str)
    pred = np.asarray(pred, dtype=object).astype(str)
    evaluable = np.isin(terms, sorted(shared)) if shared else np.zeros(len(terms), dtype=bool)
    out = {"n_labelled": int((terms != "").sum()), "n_evaluated": int(evaluable.sum()),
           "exact": int((pred[evaluable] == terms[evaluable]).sum())}
    if relation is not None:
        index = set(relation.index)
        out["compatible"] = int(sum(bool(p) and p in index and t in index and relation.at[t, p] == 1
                                    for t, p in zip(terms[evaluable], pred[evaluable], strict=True)))
    return out


def accuracy_summary(counts: list[dict]) -> dict:
    """The held-out accuracy from per-study :func:`accuracy_counts`: shares rounded to 4 digits."""
    n_eval = sum(c["n_evaluated"] for c in counts)
    acc = {"n_labelled": sum(c["n_labelled"] for c in counts), "n_evaluated": n_eval}
    if n_eval:
        acc["exact"] = round(sum(c["exact"] for c in counts) / n_eval, 4)
        if counts and all("compatible" in c for c in counts):
            acc["compatible"] = round(sum(c["compatible"] for c in counts) / n_eval, 4)
    return acc


def transfer_labels(embedding: np.ndarray, term_ids, studies, *, k: int = TRANSFER_K, max_reference: int = MAX_REFERENCE, seed: int = 0,
                    relation=None) -> TransferResult:
    """Predict a cell-type term for every cell from the ``k`` most similar labelled cells
    (cosine similarity of the L2-normalised embedding) of other studies, with every cell's
    embedding in memory (the build runs the same steps one study at a time).

    ``term_ids``: per cell, the annotated term ("" for a cell without a usable label).
    ``relation``: compute.vocabulary.term_relation over the terms, for the ``compatible``
    accuracy (None: exact only)."""
    E = np.asarray(embedding, dtype=np.float32)
    term_ids = np.asarray(term_ids, dtype=object).astype(str)
    studies = np.asarray(studies, dtype=str)
    if not len(E) == len(term_ids) == len(studies):
        raise ValueError(f"transfer_labels: {len(E)} embedding rows, {len(term_ids)} terms and {len(studies)} studies; "
                         "give one of each per cell")
    rows = {sid: np.flatnonzero(studies == sid) for sid in np.unique(studies)}
    terms_by = {sid: term_ids[r] for sid, r in rows.items()}
    picks = reference_positions(terms_by, max_reference, seed)
    ref = make_reference({sid: E[rows[sid][p]] for sid, p in picks.items()}, {sid: terms_by[sid][p] for sid, p in picks.items()})
    shared = shared_terms(terms_by)
    pred = np.full(len(E), "", dtype=object)
    conf = np.zeros(len(E), dtype=np.float32)
    counts = []
    for sid, r in rows.items():
        pred[r], conf[r] = predict_study(ref, E[r], sid, k=k)
        counts.append(accuracy_counts(terms_by[sid], pred[r], shared, relation))
    return TransferResult(term_ids=pred, confidence=conf, accuracy=accuracy_summary(counts), k=k, reference=ref.size)

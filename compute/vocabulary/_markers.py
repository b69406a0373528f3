"""Evidence from the cells for a cell-type label: which known marker set the label's cells
express (the immune marker sets of ``compute/assets/reference``, each tied to Cell Ontology terms in
``compute/assets/vocabulary/marker_sets.tsv``), and whether that supports or contradicts the term the
text gave (issue 34: a label read as pDC whose cells express CD1C/FCER1A, not LILRA4/CLEC4C,
is flagged). Evidence is shown, never applied."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["MarkerEvidence", "MarkerSums", "TransferEvidence", "evidence_from_sums", "judge_markers", "judge_transfer",
           "marker_evidence", "marker_sets", "marker_sums", "transfer_evidence"]

MIN_CELLS = 10  # fewer cells under a label: no evidence from them
MIN_GENES = 2  # a set with fewer of its genes measured does not speak
SUPPORT = 0.5  # a set speaks for a label when its genes are this much higher there than in the study's other cells (log1p units)
CONTRADICT_SHARE = 0.5  # the text's term is contradicted when its own sets score below this share of the winning set's


@functools.cache
def marker_sets() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Set name -> (Cell Ontology terms it describes, its positive marker genes)."""
    from compute.reference import assets_dir, immune_markers

    genes = immune_markers()
    lines = [ln for ln in (assets_dir() / "vocabulary" / "marker_sets.tsv").read_text().splitlines()
             if ln and not ln.startswith("#")]
    out = {}
    for r in csv.DictReader(lines, delimiter="\t"):
        if not r.get("source"):
            raise ValueError(f"marker_sets.tsv: the set '{r['name']}' names no source")
        if r["name"] not in genes:
            raise ValueError(f"marker_sets.tsv: no set '{r['name']}' in human_immune_cell_markers.json")
        out[r["name"]] = (tuple(t for t in r["terms"].split("|") if t), genes[r["name"]])
    return out


@dataclass(frozen=True)
class MarkerEvidence:
    """One label's cells against every marker set: ``scores`` (set name -> mean over its
    measured genes of the label's mean log1p expression minus the study's other cells'),
    ``best`` the highest set (None when none reaches :data:`SUPPORT`) with its ``score`` and
    ``terms``, and ``runner_up`` the next set describing other terms."""

    label: str
    n_cells: int
    scores: dict
    best: str | None
    score: float
    terms: tuple[str, ...]
    runner_up: str | None = None

    @property
    def confidence(self) -> float:
        """The winning set's margin over the runner-up (log1p units; 0 when no set wins)."""
        if self.best is None:
            return 0.0
        return round(self.score - (self.scores.get(self.runner_up, 0.0) if self.runner_up else 0.0), 3)


@dataclass(frozen=True)
class MarkerSums:
    """Per label the sum of each measured marker gene's log1p values over its cells
    (``sums``: labels x ``genes``), the labels' cell counts (``sizes``); what
    :func:`evidence_from_sums` weighs. Sums of blocks of cells add up (:meth:`plus`)."""

    labels: tuple[str, ...]
    genes: tuple[str, ...]
    sums: np.ndarray
    sizes: np.ndarray

    def plus(self, other: MarkerSums) -> MarkerSums:
        labels = tuple(dict.fromkeys((*self.labels, *other.labels)))
        pos = {lab: i for i, lab in enumerate(labels)}
        sums = np.zeros((len(labels), len(self.genes)))
        sizes = np.zeros(len(labels), dtype=np.int64)
        for part in (self, other):
            idx = [pos[lab] for lab in part.labels]
            sums[idx] += part.sums
            sizes[idx] += part.sizes
        return MarkerSums(labels, self.genes, sums, sizes)


def _marker_genes(genes) -> list[int]:
    col = {g: i for i, g in enumerate(map(str, genes))}
    return sorted({col[g] for _, gs in marker_sets().values() for g in gs if g in col})


def marker_sums(X, genes, labels) -> MarkerSums:
    """:class:`MarkerSums` of ``X`` (cells x ``genes``, log1p of normalised counts, dense or
    sparse) for per-cell ``labels``; only the marker genes are read."""
    import scipy.sparse as sp

    labels = np.asarray(labels, dtype=object).astype(str)
    used = _marker_genes(genes)
    names = [str(genes[i]) for i in used]
    uniq, codes = np.unique(labels, return_inverse=True)
    if not used or not len(labels):
        return MarkerSums(tuple(map(str, uniq)), tuple(names), np.zeros((len(uniq), len(used))),
                          np.bincount(codes, minlength=len(uniq)))
    sub = sp.csr_matrix(X[:, used], dtype=np.float64)  # only the marker genes; never densified per cell
    onehot = sp.csr_matrix((np.ones(len(labels)), (codes, np.arange(len(labels)))), shape=(len(uniq), len(labels)))
    return MarkerSums(tuple(map(str, uniq)), tuple(names), np.asarray((onehot @ sub).todense()),
                      np.bincount(codes, minlength=len(uniq)))


def marker_evidence(X, genes, labels, min_cells: int = MIN_CELLS) -> dict[str, MarkerEvidence]:
    """Per distinct label (with at least ``min_cells`` cells and other cells to compare with)
    its :class:`MarkerEvidence`. ``X``: cells x genes, log1p of normalised counts (dense or
    sparse); ``genes``: its column symbols; ``labels``: per cell."""
    return evidence_from_sums(marker_sums(X, genes, labels), min_cells)


def evidence_from_sums(ms: MarkerSums, min_cells: int = MIN_CELLS) -> dict[str, MarkerEvidence]:
    """:func:`marker_evidence` from a study's :class:`MarkerSums` (labels in first-seen order)."""
    pos = {g: j for j, g in enumerate(ms.genes)}
    sets = {name: (terms, [pos[g] for g in gs if g in pos]) for name, (terms, gs) in marker_sets().items()}
    sets = {k: v for k, v in sets.items() if len(v[1]) >= MIN_GENES}
    if not sets:
        return {}
    total = ms.sums.sum(axis=0)
    n = int(ms.sizes.sum())
    out = {}
    for li, label in enumerate(ms.labels):
        k = int(ms.sizes[li])
        if k < min_cells or n - k < min_cells:
            continue
        diff = ms.sums[li] / k - (total - ms.sums[li]) / (n - k)
        scores = {name: round(float(np.mean(diff[idx])), 3) for name, (_, idx) in sets.items()}
        ranked = sorted(scores, key=lambda s: -scores[s])
        best = ranked[0] if ranked and scores[ranked[0]] >= SUPPORT else None
        runner = None
        if best is not None:
            runner = next((s for s in ranked[1:] if not _compatible(sets[s][0], sets[best][0])), None)
        out[label] = MarkerEvidence(label, k, scores, best, scores[best] if best else 0.0,
                                    sets[best][0] if best else (), runner)
    return out


def _related(a: str, b: str) -> bool:
    from compute.vocabulary._ontology import ontologies

    onto = ontologies()
    ta, tb = onto.term(a), onto.term(b)
    return a == b or (ta is not None and b in ta.ancestors) or (tb is not None and a in tb.ancestors)


def _compatible(terms_a, terms_b) -> bool:
    return any(_related(a, b) for a in terms_a for b in terms_b)


def judge_markers(evidence: MarkerEvidence | None, term_id: str | None) -> tuple[str, str]:
    """(verdict, sentence) for a label's term given its cells' marker evidence: "supported"
    (the winning set describes the term, an ancestor or a descendant), "contradicted" (it
    describes another lineage and the term's own sets score below half of it), "proposed"
    (no term: the winning set's term is offered), or "not settled"."""
    if evidence is None:
        return "not settled", "too few cells for marker evidence"
    if evidence.best is None:
        return "not settled", "no known marker set is clearly expressed"
    sets = marker_sets()
    what = f"markers of {evidence.best} ({', '.join(sets[evidence.best][1][:4])}, ...) {evidence.score:+.2f}"
    if term_id is None:
        return "proposed", f"the cells express {what}: proposed {evidence.terms[0]} (margin {evidence.confidence:.2f}), not applied"
    if _compatible(evidence.terms, (term_id,)):
        return "supported", f"the cells express {what}"
    own = [s for s, (terms, _) in sets.items() if _compatible(terms, (term_id,)) and s in evidence.scores]
    own_best = max((evidence.scores[s] for s in own), default=None)
    if own_best is None or own_best < CONTRADICT_SHARE * evidence.score:
        mine = f"; the term's own markers {own_best:+.2f}" if own_best is not None else "; no known markers for the term"
        return "contradicted", f"CHECK: the cells express {what}, which describe {evidence.terms[0]}, not the text's term{mine}"
    return "not settled", f"the cells express {what}, and the term's own markers nearly as much ({own_best:+.2f})"


TRANSFER_SHARE = 0.6  # the neighbours' majority term speaks for a label when this share of its cells carry it


@dataclass(frozen=True)
class TransferEvidence:
    """One label's cells in a built atlas: the label transfer's majority term among them
    (``term``, its ``share`` of the cells with a prediction) over ``n_cells`` cells."""

    label: str
    n_cells: int
    term: str | None
    share: float


def transfer_evidence(labels, predicted, min_cells: int = MIN_CELLS) -> dict[str, TransferEvidence]:
    """Per distinct label (with at least ``min_cells`` predicted cells) the majority of the
    label transfer's predicted terms (compute.vocabulary.transfer_labels: each cell's nearest
    labelled cells of other studies) among its cells."""
    import pandas as pd

    df = pd.DataFrame({"label": np.asarray(labels, dtype=object).astype(str),
                       "term": np.asarray(predicted, dtype=object).astype(str)})
    df = df[df["term"] != ""]
    out = {}
    for label, g in df.groupby("label", sort=False):
        if len(g) < min_cells:
            continue
        counts = g["term"].value_counts()
        out[str(label)] = TransferEvidence(str(label), len(g), str(counts.index[0]), round(float(counts.iloc[0] / len(g)), 3))
    return out


def judge_transfer(evidence: TransferEvidence | None, term_id: str | None) -> tuple[str, str]:
    """(verdict, sentence), as :func:`judge_markers`, from the label transfer's majority."""
    if evidence is None or evidence.term is None:
        return "not settled", "no label transfer for these cells (too few, or no other study labelled)"
    from compute.vocabulary._ontology import ontologies

    t = ontologies().term(evidence.term)
    what = f"{evidence.share:.0%} of its {evidence.n_cells:,} cells' neighbours in other studies say {evidence.term} {t.label if t else ''}"
    if evidence.share < TRANSFER_SHARE:
        return "not settled", what + " (no clear majority)"
    if term_id is None:
        return "proposed", what + ": proposed, not applied"
    if _related(evidence.term, term_id):
        return "supported", what
    return "contradicted", "CHECK: " + what + ", not the text's term"

"""How well labels are matched against a list of labels with known terms (issue 34's measure):
right, within two is_a steps, wrong, unmatched with or without a proposal."""

from __future__ import annotations

from dataclasses import dataclass

from compute.vocabulary._ontology import ontologies
from compute.vocabulary._terms import POSITIVE_DISTANCE

__all__ = ["LabelScore", "score_labels", "steps_between"]


def steps_between(a: str, b: str) -> int | None:
    """is_a steps between two terms when one is the other's ancestor (0: the same), else None."""
    if a == b:
        return 0
    onto = ontologies()
    ta, tb = onto.term(a), onto.term(b)
    if ta is not None and b in ta.ancestors:
        return int(ta.ancestors[b])
    if tb is not None and a in tb.ancestors:
        return int(tb.ancestors[a])
    return None


@dataclass(frozen=True)
class LabelScore:
    """Per label (label, expected, got, outcome, proposal) and the counts: ``right`` (the
    expected term), ``close`` (within ``POSITIVE_DISTANCE`` is_a steps of it), ``wrong``
    (any other term), ``proposed`` / ``bare`` (unmatched, with / without a proposal)."""

    rows: list[dict]

    def count(self, outcome: str) -> int:
        return sum(r["outcome"] == outcome for r in self.rows)

    def summary(self) -> dict:
        n = len(self.rows)
        out = {k: self.count(k) for k in ("right", "close", "wrong", "proposed", "bare")}
        out["n"] = n
        out["matched_right_or_close"] = (out["right"] + out["close"]) / n if n else 0.0
        return out

    def text(self) -> str:
        s = self.summary()
        return (f"{s['n']} labels: {s['right']} right, {s['close']} within {POSITIVE_DISTANCE} is_a steps "
                f"({s['matched_right_or_close']:.1%} together), {s['wrong']} wrong, {s['proposed']} unmatched with a "
                f"proposal, {s['bare']} unmatched without")


def score_labels(pairs, kind: str = "cell_type", match=None) -> LabelScore:
    """Score ``pairs`` of (label, expected term id) with ``match`` (default
    compute.vocabulary.match_label)."""
    if match is None:
        from compute.vocabulary._match import match_label as match
    rows = []
    for label, expected in pairs:
        m = match(label, kind)
        if m.mapped:
            d = steps_between(m.term_id, expected)
            outcome = "right" if d == 0 else "close" if d is not None and d <= POSITIVE_DISTANCE else "wrong"
        else:
            outcome = "proposed" if m.proposal else "bare"
        rows.append({"label": label, "expected": expected, "got": m.term_id, "how": m.how, "outcome": outcome,
                     "proposal": m.proposal, "reason": m.reason, "notes": list(m.notes)})
    return LabelScore(rows)

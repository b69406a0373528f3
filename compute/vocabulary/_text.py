"""Label text normalised for matching (shared by the ontology index and the matcher)."""

from __future__ import annotations

import re

__all__ = ["normalise_label"]


def normalise_label(text: str) -> str:
    """Lower case; "+" -> " positive", "-" -> " negative" when it ends a marker ("CD14+",
    "CD25-"); other punctuation -> space; spaces collapsed. "CD14+ Monocyte" and
    "CD14-positive monocyte" both give "cd14 positive monocyte"."""
    t = str(text).lower()
    t = re.sub(r"(?<=[a-z0-9])\+", " positive ", t)
    t = re.sub(r"(?<=[0-9])-(?=\s|/|$)", " negative ", t)
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return " ".join(t.split())

"""Parse a pasted gene list and resolve it against the gene order, showing every decision."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["GeneResolution", "parse_gene_list", "resolve_genes"]

# a gene token, optionally followed by a weight: "CD14", "CD14 2.0", "CD14:2", "CD14=2", "CD14\t2"
_SPLIT = re.compile(r"[\s,;|]+")
_WEIGHTED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-@/]*?)[:=]([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)$")
_NUMBER = re.compile(r"^[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?$")


def parse_gene_list(text: str) -> list[tuple[str, float | None]]:
    """Tokens of ``text`` as (gene, weight or None), in order. Any separators (space, comma,
    semicolon, tab, newline, |); ``GENE:2``, ``GENE=2`` or ``GENE 2.0`` give weights; lines
    starting with '#' are comments."""
    lines = [ln.split("#", 1)[0] for ln in (text or "").splitlines()]
    tokens = [t for t in _SPLIT.split(" ".join(lines)) if t]
    out: list[tuple[str, float | None]] = []
    for tok in tokens:
        m = _WEIGHTED.match(tok)
        if m:
            out.append((m.group(1), float(m.group(2))))
        elif _NUMBER.match(tok) and out and out[-1][1] is None:
            out[-1] = (out[-1][0], float(tok))  # "GENE 2.0": a number after a gene is its weight
        elif not _NUMBER.match(tok):
            out.append((tok.strip("'\""), None))
    return [(g, w) for g, w in out if g]


@dataclass(frozen=True)
class GeneResolution:
    """What happened to each requested gene.

    matched: gene-order symbols used, in input order, unique; weights: aligned with matched.
    renamed: (as typed, as matched) where only the case differed. missing: not in the model.
    duplicates: tokens that repeated an already-matched gene (the first weight is kept).
    """

    requested: tuple[str, ...]
    matched: tuple[str, ...]
    weights: tuple[float, ...]
    renamed: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    weighted: bool = False
    indices: tuple[int, ...] = field(default=(), repr=False)

    @property
    def coverage(self) -> float:
        n = len(self.matched) + len(self.missing)
        return len(self.matched) / n if n else 0.0


def resolve_genes(genes, gene_order, weights=None) -> GeneResolution:
    """Resolve ``genes`` (strings, or (gene, weight) pairs) against ``gene_order``.

    Matching is exact first, then case-insensitive. Weights default to 1; negative or zero
    weights are kept as given (callers validate).
    """
    pos = {g: i for i, g in enumerate(gene_order)}
    upper: dict[str, str] = {}
    for g in gene_order:
        upper.setdefault(g.upper(), g)
    items: list[tuple[str, float | None]] = []
    for i, g in enumerate(genes):
        if isinstance(g, tuple):
            items.append((str(g[0]), g[1]))
        else:
            w = None if weights is None else float(weights[i])
            items.append((str(g), w))
    matched: list[str] = []
    ws: list[float] = []
    renamed, missing, dups = [], [], []
    seen: set[str] = set()
    for tok, w in items:
        hit = tok if tok in pos else upper.get(tok.upper())
        if hit is None:
            if tok not in missing:
                missing.append(tok)
            continue
        if hit in seen:
            dups.append(tok)
            continue
        seen.add(hit)
        if hit != tok:
            renamed.append((tok, hit))
        matched.append(hit)
        ws.append(1.0 if w is None else float(w))
    return GeneResolution(
        requested=tuple(t for t, _ in items),
        matched=tuple(matched),
        weights=tuple(ws),
        renamed=tuple(renamed),
        missing=tuple(missing),
        duplicates=tuple(dups),
        weighted=any(w is not None for _, w in items),
        indices=tuple(pos[g] for g in matched),
    )

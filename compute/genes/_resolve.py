"""Parse a pasted gene list and resolve it against the gene order, showing every decision
(exact, case, previous symbol, Ensembl id, alias; ambiguous, missing, duplicate)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cache

from compute.genes._symbols import SymbolTable, ensembl_base, symbol_table

__all__ = ["STATUSES", "GeneDecision", "GeneResolution", "parse_gene_list", "resolve_genes"]

# a gene token, optionally followed by a weight: "CD14", "CD14 2.0", "CD14:2", "CD14=2", "CD14\t2"
_SPLIT = re.compile(r"[\s,;|]+")
_WEIGHTED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-@/]*?)[:=]([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)$")
_NUMBER = re.compile(r"^[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?$")


def parse_gene_list(text: str) -> list[tuple[str, float | None]]:
    """Tokens of ``text`` as (gene, weight or None), in order. Any separators (space, comma,
    semicolon, tab, newline, |); ``GENE:2``, ``GENE=2`` or ``GENE 2.0`` give finite weights;
    '#' starts a comment. Every other token is kept as a gene, a stray number or ``GENE:inf``
    included, so that resolve_genes reports it instead of it vanishing."""
    lines = [ln.split("#", 1)[0] for ln in (text or "").splitlines()]
    tokens = [t for t in _SPLIT.split(" ".join(lines)) if t]
    out: list[tuple[str, float | None]] = []
    weighable = False  # the last entry is a gene without a weight yet
    for tok in tokens:
        m = _WEIGHTED.match(tok)
        weight = _finite(m.group(2)) if m else None
        if weight is not None:
            out.append((m.group(1), weight))
            weighable = False
        elif weighable and _NUMBER.match(tok) and (weight := _finite(tok)) is not None:
            out[-1] = (out[-1][0], weight)  # "GENE 2.0": a number after a gene is its weight
            weighable = False
        elif gene := tok.strip("'\""):
            # a stray or non-finite number stays a token too, so its decision can say why it is not used
            out.append((gene, None))
            weighable = not _NUMBER.match(tok)
    return out


def _finite(number: str) -> float | None:
    v = float(number)
    return v if math.isfinite(v) else None


def _not_a_gene(tok: str) -> str | None:
    """Why ``tok`` cannot be a gene when it is a number or a gene with a non-finite weight, else None."""
    if _NUMBER.match(tok):
        return "a number, not a gene: a weight follows its gene (GENE 2, GENE:2) and must be finite"
    gene, sep, weight = tok.partition(":") if ":" in tok else tok.partition("=")
    try:
        finite = math.isfinite(float(weight))
    except ValueError:
        return None
    return None if not sep or finite else f"the weight '{weight}' of {gene} is not a finite number"


# what a GeneDecision's status can be; the first five put the token's gene into the score
STATUSES = ("matched", "case", "previous", "ensembl", "alias", "ambiguous", "missing", "duplicate")
_NOT_IN_ORDER = "not in the model's gene order"


@dataclass(frozen=True)
class GeneDecision:
    """What happened to one requested token.

    status: one of :data:`STATUSES`. gene: the gene-order symbol it counts as (for a
    duplicate, the gene it repeats), else None. weight: the weight it adds to the score, None
    when it adds none (ambiguous, missing, duplicate). note: a short reason for people.
    candidates: the gene-order symbols an ambiguous token could mean.
    """

    token: str
    status: str
    gene: str | None = None
    weight: float | None = None
    note: str = ""
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneResolution:
    """What happened to each requested gene.

    matched: gene-order symbols used, in input order, unique; weights: aligned with matched.
    renamed: (as typed, as matched) where the two differ: by case, or through a previous
    symbol, an Ensembl id or an alias. missing: not in the model. ambiguous: aliases (or
    previous symbols, Ensembl ids) that name more than one gene of the gene order, so none is
    used. duplicates: tokens that repeated an already-matched gene (the first weight is kept).
    decisions: one :class:`GeneDecision` per requested token, in input order.
    """

    requested: tuple[str, ...]
    matched: tuple[str, ...]
    weights: tuple[float, ...]
    renamed: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    weighted: bool = False
    indices: tuple[int, ...] = field(default=(), repr=False)
    ambiguous: tuple[str, ...] = ()
    decisions: tuple[GeneDecision, ...] = field(default=(), repr=False)

    @property
    def coverage(self) -> float:
        """Share of distinct requested genes that matched; ambiguous ones count as not matched."""
        n = len(self.matched) + len(self.missing) + len(self.ambiguous)
        return len(self.matched) / n if n else 0.0


def _names(genes) -> str:
    genes = list(genes)
    if len(genes) == 1:
        return genes[0]
    if len(genes) == 2:
        return f"both {genes[0]} and {genes[1]}"
    return f"{', '.join(genes[:-1])} and {genes[-1]}"


class _OrderKeys:
    """The gene order seen through the symbol table: gene key (current symbol, or bare Ensembl
    id of an unnamed gene) -> positions, so an outdated symbol or an Ensembl id in the gene
    order still meets the current symbol typed, and the other way round."""

    def __init__(self, gene_order, table: SymbolTable):
        self.order = gene_order
        self.kind: dict[int, str] = {}
        self.pos: dict[str, list[int]] = {}
        for i, g in enumerate(gene_order):
            hit = _canonical(str(g), table, order_side=True)
            if hit is None:
                continue
            kind, keys, _ = hit
            self.kind[i] = kind
            for k in keys:
                self.pos.setdefault(k, []).append(i)

    def find(self, keys) -> dict[int, str]:
        """Gene-order position -> gene key, for the keys the gene order has."""
        out: dict[int, str] = {}
        for k in keys:
            ps = self.pos.get(k)
            if ps:
                # one gene under two names in the gene order (FAM65B and RIPOR2): the current one
                p = next((p for p in ps if self.order[p] == k), ps[0])
                out.setdefault(p, k)
        return out


# the last few gene orders' keys, by identity: an atlas resolves every query against the same
# gene order, and building its keys (every gene through the table) took 60-250 ms a query
_ORDER_KEYS: list[tuple[object, SymbolTable, _OrderKeys]] = []
_ORDER_KEYS_KEPT = 4


def _order_keys(gene_order, table: SymbolTable) -> _OrderKeys:
    """:class:`_OrderKeys` of ``gene_order`` (the same object as a recent call's: not copied,
    not compared element by element) through ``table``, built once."""
    for order, tab, keys in _ORDER_KEYS:
        if order is gene_order and tab is table:
            return keys
    keys = _OrderKeys(gene_order, table)
    _ORDER_KEYS.insert(0, (gene_order, table, keys))
    del _ORDER_KEYS[_ORDER_KEYS_KEPT:]
    return keys


def _canonical(name: str, table: SymbolTable, *, order_side: bool = False):
    """(kind, gene keys, detail) for a name the table knows without aliases, else None. kind:
    "current", "same" (another current symbol of the same HGNC gene), "ensembl" (detail: bare
    id), "previous", or "ensembl_name" (detail: release). On the gene-order side a previous
    or earlier Ensembl name that now means several genes gives None: the gene order's own
    name is not guessed at."""
    up = name.upper()
    cur = table.current.get(up)
    if cur is not None:
        return "current", (cur,), ""
    same = table.same_gene.get(up)
    if same is not None:
        return "same", (same,), ""
    ensg = ensembl_base(name)
    if ensg is not None:
        return "ensembl", table.ensembl_keys(ensg), ensg
    prev = table.previous.get(up)
    if prev is not None and not (order_side and len(prev) > 1):
        return "previous", prev, ""
    hit = table.ensembl_names.get(up)
    if hit is not None and not (order_side and len(hit[1]) > 1):
        release, keys = table.ensembl_name_keys(up)
        return "ensembl_name", keys, release
    return None


def _via_table(tok: str, table: SymbolTable, order: _OrderKeys):
    """(status, gene-order position or None, note, candidates) for a token that matched
    neither exactly nor by case: an approved symbol, then a previous symbol, an Ensembl id, an
    earlier Ensembl name, an alias."""
    gene_order = order.order

    def of(p: int, key: str) -> str:
        g = str(gene_order[p])
        return g if g == key or ensembl_base(key) else f"{key} ({g} in the gene order)"

    up = tok.upper()
    cur = table.current.get(up)
    if cur is not None:
        # an approved symbol means its own gene, never another gene it was once an alias of
        hits = order.find((cur,))
        if not hits:
            return "missing", None, _NOT_IN_ORDER, ()
        p = next(iter(hits))
        kind, g = order.kind.get(p), str(gene_order[p])
        if kind == "ensembl":
            return "ensembl", p, f"current symbol; the gene order has its Ensembl id {g}", ()
        if kind == "same":
            return "previous", p, f"same HGNC gene as {g} in the gene order", ()
        if kind in ("previous", "ensembl_name"):
            return "previous", p, f"current symbol; the gene order has its previous symbol {g}", ()
        return "case", p, f"case differs from {g}", ()

    # (status, note template, gene keys), in the order they are tried
    steps: list[tuple[str, str, tuple[str, ...]]] = []
    ensg = ensembl_base(tok)
    if ensg is not None:
        steps.append(("ensembl", "Ensembl id of {}", table.ensembl_keys(ensg)))
    else:
        if up in table.same_gene:
            steps.append(("previous", "same HGNC gene as {}", (table.same_gene[up],)))
        if up in table.previous:
            steps.append(("previous", "previous symbol of {}", table.previous[up]))
        if up in table.ensembl_names:
            release, keys = table.ensembl_name_keys(up)
            steps.append(("previous", f"Ensembl {release} name of {{}}", keys))
        if up in table.alias:
            steps.append(("alias", "alias of {}", table.alias[up]))
    absent: list[str] = []  # what the token is known as, for a missing token's note
    told: set[str] = set()  # genes already named there (a previous symbol is often also an earlier Ensembl name)
    for status, template, keys in steps:
        hits = order.find(keys)
        if len(hits) == 1:
            p, key = next(iter(hits.items()))
            return status, p, template.format(of(p, key)), ()
        if len(hits) > 1:
            cands = tuple(str(gene_order[p]) for p in sorted(hits))
            return "ambiguous", None, f"{template.format(_names(cands))}: not used", cands
        named = [k for k in keys if not ensembl_base(k)]
        if named and not told.issuperset(named):
            told.update(named)
            absent.append(template.format(_names(named) if len(named) < 4 else f"{len(named)} genes"))
    if absent:
        return "missing", None, f"{'; '.join(absent)}; {_NOT_IN_ORDER}", ()
    return "missing", None, _NOT_IN_ORDER, ()


@cache
def _table_or_none() -> SymbolTable | None:
    """The symbol table, or None (with one warning per process) when its packages are missing:
    a query then still runs, matching exactly and by case only."""
    try:
        return symbol_table()
    except ImportError as e:
        warnings.warn(f"{e}; gene names are matched exactly and by case only", RuntimeWarning, stacklevel=3)
        return None


def resolve_genes(genes, gene_order, weights=None, *, symbols: bool = True) -> GeneResolution:
    """Resolve ``genes`` (strings, or (gene, weight) pairs) against ``gene_order``; the
    :class:`GeneResolution` says what happened to each token.

    Matching is exact first, then case-insensitive; then, with ``symbols`` (the offline HGNC /
    NCBI / Ensembl table of :mod:`compute.genes._symbols`), a previous symbol, an Ensembl gene
    id (with or without version), an earlier Ensembl name, then an alias. An approved symbol
    only ever means its own gene. Current symbols are compared both ways, so a gene order that
    holds an outdated symbol or Ensembl ids still matches the current symbol. A name that
    points to several genes of the gene order is ambiguous and not used. The table is loaded
    on the first token that needs it (once per process, 1.5-2 s); without its packages the
    table steps are skipped with a RuntimeWarning. Weights default to 1; negative or zero
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
    # the table and the gene order's view through it are built on the first token that needs them
    table: SymbolTable | None = None
    order: _OrderKeys | None = None
    matched: list[str] = []
    ws: list[float] = []
    renamed, missing, ambiguous, dups = [], [], [], []
    missing_seen: set[str] = set()
    ambiguous_seen: set[str] = set()
    decisions: list[GeneDecision] = []
    seen: set[str] = set()
    for tok, w in items:
        cands: tuple[str, ...] = ()
        if tok in pos:
            status, hit, note = "matched", tok, ""
        elif tok.upper() in upper:
            hit = upper[tok.upper()]
            status, note = "case", f"case differs from {hit}"
        elif not symbols or (table := table or _table_or_none()) is None:
            status, hit, note = "missing", None, _NOT_IN_ORDER
        else:
            if order is None:
                order = _order_keys(gene_order, table)
            status, p, note, cands = _via_table(tok, table, order)
            hit = None if p is None else gene_order[p]
        if hit is None:
            if status == "missing" and note == _NOT_IN_ORDER:
                note = _not_a_gene(tok) or note
            if status == "ambiguous":
                if tok not in ambiguous_seen:
                    ambiguous_seen.add(tok)
                    ambiguous.append(tok)
            elif tok not in missing_seen:
                missing_seen.add(tok)
                missing.append(tok)
            decisions.append(GeneDecision(tok, status, None, None, note, cands))
            continue
        if hit in seen:
            dups.append(tok)
            decisions.append(GeneDecision(tok, "duplicate", hit, None, f"repeats {hit} (first weight kept)"))
            continue
        seen.add(hit)
        if hit != tok:
            renamed.append((tok, hit))
        weight = 1.0 if w is None else float(w)
        matched.append(hit)
        ws.append(weight)
        decisions.append(GeneDecision(tok, status, hit, weight, note))
    return GeneResolution(
        requested=tuple(t for t, _ in items),
        matched=tuple(matched),
        weights=tuple(ws),
        renamed=tuple(renamed),
        missing=tuple(missing),
        duplicates=tuple(dups),
        weighted=any(w is not None for _, w in items),
        indices=tuple(pos[g] for g in matched),
        ambiguous=tuple(ambiguous),
        decisions=tuple(decisions),
    )

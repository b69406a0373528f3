"""Parse a pasted gene list and resolve it against the gene order, showing every decision
(exact, case, previous symbol, Ensembl id, alias; ambiguous, missing, duplicate)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

from compute.genes._symbols import SymbolTable, ensembl_base, symbol_table

__all__ = ["MIN_RECOGNISED", "STATUSES", "GeneDecision", "GeneResolution", "parse_gene_list", "resolve_genes"]

# a gene token, optionally followed by a weight: "CD14", "CD14 2.0", "CD14:2", "CD14=2", "CD14\t2"
_SPLIT = re.compile(r"[\s,;|]+")
# what a paper's text puts around a gene: brackets and quotes before it; brackets, quotes,
# punctuation and footnote marks after it ("(IFI27", "SIGLEC1.", "CD14*")
_LEADING = "([{<\"'\u201c\u2018\u00ab"
_PUNCTUATION = ".,:;!?*\u2020\u2021\u00a7\u00b6"
_TRAILING = ")]}>\"'\u201d\u2019\u00bb" + _PUNCTUATION
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-@/]*"
# "ADGRE3 (EMR3)", "ADGRE3(EMR3)": one gene and the other name a paper gives it
_BRACKETED = re.compile(rf"^\(({_NAME})\)$")
_GLUED = re.compile(rf"^({_NAME})\(({_NAME})\)$")
_PAIR = re.compile(rf"^({_NAME}) \(({_NAME})\)$")
_WEIGHTED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-@/]*?)[:=]([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)$")
_NUMBER = re.compile(r"^[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?$")


def _clean(token: str) -> str:
    """``token`` without the brackets, quotes and punctuation a sentence puts around it; ""
    when nothing with a letter or digit is left (a dash, "&", "<")."""
    token = token.lstrip(_LEADING).rstrip(_TRAILING)
    return token if any(c.isalnum() for c in token) else ""


def parse_gene_list(text: str) -> list[tuple[str, float | None]]:
    """Tokens of ``text`` as (gene, weight or None), in order. Any separators (space, comma,
    semicolon, tab, newline, |); ``GENE:2``, ``GENE=2`` or ``GENE 2.0`` give finite weights;
    '#' starts a comment. Brackets, quotes and punctuation around a token are dropped (text
    pasted from a paper: "(IFI27", "SIGLEC1."), and a token of none but those is no token;
    "GENE (OTHER)" or "GENE(OTHER)" is one entry, "GENE (OTHER)", that resolve_genes reads
    as GENE, else OTHER. Every other token is kept as a gene, a stray number, a word or
    ``GENE:inf`` included, so that resolve_genes reports it instead of it vanishing."""
    lines = [ln.split("#", 1)[0] for ln in (text or "").splitlines()]
    out: list[tuple[str, float | None]] = []
    weighable = False  # the last entry is a gene without a weight yet
    pairable = False  # the last entry is a gene without a weight or a bracketed name yet
    for raw in _SPLIT.split(" ".join(lines)):
        other = _BRACKETED.match(raw.rstrip(_PUNCTUATION))  # "(EMR3)", "(EMR3),"
        if other and pairable:
            out[-1] = (f"{out[-1][0]} ({other.group(1)})", None)
            pairable = False
            continue
        glued = _GLUED.match(raw.lstrip(_LEADING).rstrip(_PUNCTUATION))
        if glued:
            out.append((f"{glued.group(1)} ({glued.group(2)})", None))
            weighable, pairable = True, False
            continue
        tok = _clean(raw)
        if not tok:
            continue
        pairable = False
        m = _WEIGHTED.match(tok)
        weight = _finite(m.group(2)) if m else None
        if weight is not None:
            out.append((m.group(1), weight))
            weighable = False
        elif weighable and _NUMBER.match(tok) and (weight := _finite(tok)) is not None:
            out[-1] = (out[-1][0], weight)  # "GENE 2.0": a number after a gene is its weight
            weighable = False
        else:
            # a stray or non-finite number stays a token too, so its decision can say why it is not used
            out.append((tok, None))
            weighable = pairable = not _NUMBER.match(tok)
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


# what a GeneDecision's status can be; the first five put the token's gene into the score.
# "missing": a gene this atlas lacks; "not_gene": a word, a number or a name no gene has
STATUSES = ("matched", "case", "previous", "ensembl", "alias", "ambiguous", "missing", "duplicate", "not_gene")
_USED = STATUSES[:5]
_NOT_IN_ORDER = "not in the model's gene order"
# below this share of the pasted entries read as genes of the atlas, the page asks before running
MIN_RECOGNISED = 0.5

# common English words: written in lower case or with a capital first letter they are never
# read as genes ("in" is an alias of CD44, "was" the symbol WAS); in capitals (WAS) they are.
# Two of them in a text make it prose, where no lower-case word is read as a gene.
_ENGLISH = frozenset("""
a about above after again against all also although am among an and another any are as at be
because been before being below between both but by can could did do does doing done down during
each either else ever every few for from further had has have having he her here hers him his how
however i if in into is it its itself just least less many may me might more most much must my
near neither no nor not now of off often on once one only onto or other others our out over own
per rather same several she should since so some such than that the their them then there
therefore these they this those though through thus to too under until up upon us very via was
we well were what when where whether which while who whom whose why will with within without would
yet you your
fold found gene genes high higher increased low lower decreased expression expressed level levels
patients patient cells cell signature score scores including respectively compared versus vs
table figure fig see shown show shows observed upregulated downregulated significantly
""".split())
_LOWER_WORD = re.compile(r"^[a-z]+(?:[-'][a-z]+)*$")
_TITLE_WORD = re.compile(r"^[A-Z][a-z]+$")


def _is_prose(tokens) -> bool:
    """Whether the tokens read as a sentence: two or more distinct common English words in lower case."""
    return len({t for t in tokens if t in _ENGLISH}) >= 2


def _word_reason(tok: str, prose: bool) -> str | None:
    """Why ``tok`` is read as an English word and not a gene, else None."""
    if tok.lower() in _ENGLISH and (tok.islower() or _TITLE_WORD.match(tok)):
        return "a common English word, not read as a gene (written in capitals it would be)"
    if prose and _LOWER_WORD.match(tok):
        return "a lower-case word in a sentence, not read as a gene (gene symbols in prose are written in capitals)"
    return None


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
    not_genes: tuple[str, ...] = ()
    # the share of entries read as genes below which the page asks before running
    min_recognised: ClassVar[float] = MIN_RECOGNISED

    @property
    def coverage(self) -> float:
        """Share of distinct requested genes that matched; ambiguous ones count as not matched,
        entries that are not genes (``not_genes``: words, numbers) not at all."""
        n = len(self.matched) + len(self.missing) + len(self.ambiguous)
        return len(self.matched) / n if n else 0.0

    @property
    def recognised(self) -> float:
        """Share of the distinct entries (genes, words, numbers; duplicates left out) read as a
        gene of the gene order; below :data:`MIN_RECOGNISED` the page asks before running."""
        n = len(self.matched) + len(self.missing) + len(self.ambiguous) + len(self.not_genes)
        return len(self.matched) / n if n else 0.0

    @property
    def few_genes(self) -> bool:
        """Whether fewer than ``min_recognised`` of the entries are genes of the gene order."""
        return self.recognised < self.min_recognised


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
        if up in table.alias and not _LOWER_WORD.match(tok):  # "in" (CD44), "p" in prose: words
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


def _known(name: str, table: SymbolTable) -> bool:
    """Whether the table knows ``name`` as a gene's name or Ensembl id (current or not)."""
    up = name.upper()
    return (up in table.current or up in table.same_gene or up in table.previous or up in table.ensembl_names
            or ensembl_base(name) is not None or (up in table.alias and not _LOWER_WORD.match(name)))


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

    Text from a paper: a common English word in lower case or with a capital first letter
    ("and", "In") is never a gene; once two of them show the text is prose, no lower-case word
    is; a lower-case word is never read through an alias ("in" is not CD44). Such words,
    numbers and names no gene has are ``not_genes``, apart from the genes the model lacks
    (``missing``). "GENE (OTHER)" is read as GENE, else OTHER.
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
    prose = _is_prose(t for t, _ in items)
    # the table and the gene order's view through it are built on the first token that needs them
    table: SymbolTable | None = None
    order: _OrderKeys | None = None

    def decide(name: str) -> tuple[str, str | None, str, tuple[str, ...]]:
        """(status, gene-order symbol or None, note, candidates) of one name."""
        nonlocal table, order
        word = _word_reason(name, prose)
        if word is not None:
            return "not_gene", None, word, ()
        if name in pos:
            return "matched", name, "", ()
        if name.upper() in upper:
            hit = upper[name.upper()]
            return "case", hit, f"case differs from {hit}", ()
        why = _not_a_gene(name)
        if why is not None:
            return "not_gene", None, why, ()
        if not symbols or (table := table or _table_or_none()) is None:
            return "missing", None, _NOT_IN_ORDER, ()
        if order is None:
            order = _order_keys(gene_order, table)
        status, p, note, cands = _via_table(name, table, order)
        if status == "missing" and not _known(name, table):
            if _LOWER_WORD.match(name) and name.upper() in table.alias:
                meant = _names(table.alias[name.upper()][:3])
                return "not_gene", None, f"a lower-case word, not read as an alias of {meant} (write {name.upper()} to mean it)", ()
            return "not_gene", None, "not a gene name: no HGNC, NCBI or Ensembl gene has it", ()
        return status, None if p is None else gene_order[p], note, cands

    matched: list[str] = []
    ws: list[float] = []
    renamed, missing, ambiguous, dups, not_genes = [], [], [], [], []
    decisions: list[GeneDecision] = []
    seen: set[str] = set()
    for tok, w in items:
        pair = _PAIR.match(tok)
        status, hit, note, cands = decide(pair.group(1) if pair else tok)
        if pair and status not in _USED:  # "ADGRE3 (EMR3)": the name in brackets when the first is not used
            other = decide(pair.group(2))
            if other[0] in _USED:
                status, hit, note, cands = other[0], other[1], f"read as {pair.group(2)}" + (f": {other[2]}" if other[2] else ""), other[3]
            elif status == "not_gene" and other[0] != "not_gene":
                status, hit, note, cands = other
        if hit is None:
            into = {"ambiguous": ambiguous, "not_gene": not_genes}.get(status, missing)
            if tok not in into:
                into.append(tok)
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
        not_genes=tuple(not_genes),
    )

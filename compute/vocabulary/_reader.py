"""A reader of cell-type labels as tools and papers write them: marker expressions (CD14+,
CD16-, CD56bright, FCGR3A+), abbreviations and lineage words (Mono, NK, TEM, pDC), two
alternatives in one label ("A/B cells", "A or B"), plurals and tool suffixes ("_1").

Every Cell Ontology label and synonym is read the same way into words and markers; a label is
scored against each term's readings and matched only when one term wins clearly. What the
words mean comes from ``compute/assets/vocabulary/cell_type_words.tsv``, where every entry names its
source."""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass, field

from compute.vocabulary._ontology import ontologies
from compute.vocabulary._text import normalise_label

__all__ = ["Reading", "WordTable", "blocked_synonyms", "label_key", "load_table", "read_cell_type", "read_phrase", "word_table"]

TABLES = {"cell_type": "cell_type_words.tsv", "disease": "disease_words.tsv"}

# a score this close to the winner's, from a term that is neither its ancestor nor its
# descendant, makes the reading ambiguous: no match, the candidates are proposed
MARGIN = 0.5
# alternatives in one label ("HSC/MPP") are matched to the terms' nearest common ancestor
# when it is at most this many is_a steps above each of them
ALTERNATIVES_MAX_STEPS = 3
_WEIGHT = {"lineage": 3.0, "word": 2.0, "marker": 1.0}
_STATE = {"+": "+", "positive": "+", "pos": "+", "++": "hi", "bright": "hi", "hi": "hi", "high": "hi",
          "dim": "lo", "lo": "lo", "low": "lo", "-": "-", "negative": "-", "neg": "-", "int": "int", "intermediate": "int"}
_CONFLICT = {("+", "-"), ("-", "+"), ("hi", "-"), ("-", "hi")}
_NOT_MARKERS = frozenset({"double", "single", "triple", "lineage", "class", "non", "t", "b"})
# "CD56-bright", "CD14-low", "Kit-positive", "CD8-alpha-positive" (the ontology's spelling)
_LONG_MARKER = re.compile(r"(?<![a-z0-9])([a-z][a-z0-9]*)((?:-alpha|-beta)*)[- ]?(positive|negative|bright|dim|high|low|intermediate)(?![a-z])")
# "CD14+", "CD16-", "CD56bright", "CD14++", "CD25hi" (how labels write them)
_SHORT_MARKER = re.compile(r"(?<![a-z0-9])([a-z][a-z0-9]*)(\+\+|\+|-|bright|dim|hi|lo|int|neg|pos)(?![a-z0-9+])")
_BARE_CD = re.compile(r"(?<![a-z0-9])(cd\d+[a-z]?)(?![a-z0-9])")
_ANY_STATE = re.compile(r"(\+/-|±)")
_TOOL_SUFFIX = re.compile(r"(?<!th\d)(?<!th\d\d)_\d{1,2}$", re.IGNORECASE)  # "Th1_17" (DICE) is Th1/Th17, not a cluster number
# a gene symbol with a sign, as written ("CRTAM+", "PD1-"): a marker even when no alias is known
_UPPER_MARKER = re.compile(r"(?<![A-Za-z0-9])([A-Z][A-Z0-9]{1,9})(\+\+|\+|-(?=[\s/,_)]|$))")


def label_key(text: str) -> str:
    """The key a label is looked up by in the table of phrases: a tool's numbered suffix
    ("CD4 TCM_1") and a last word "cell(s)" dropped, then :func:`normalise_label`."""
    key = normalise_label(_TOOL_SUFFIX.sub("", str(text).strip()))
    return re.sub(r"(?<=.) cells?$", "", key)


@dataclass(frozen=True)
class WordTable:
    """``compute/assets/vocabulary/cell_type_words.tsv`` by kind (see the file's header)."""

    phrases: dict  # label key -> (term id, source)
    refusals: dict  # label key -> (proposal term ids ("" for none), source, note)
    blocked: frozenset  # (normalised synonym, term id) never matched
    words: dict  # tuple of words -> tuple of words
    markers: dict  # gene name -> CD name
    implies: dict  # word -> marker
    lineage_markers: dict  # marker -> lineage word
    lineage: frozenset
    ignore: frozenset  # tuples of words
    notes: dict  # word -> note
    modifiers: frozenset  # words a label may carry beyond its term's (the term is then a broader one)
    sources: dict = field(default_factory=dict)  # (kind, text) -> source


def word_table() -> WordTable:
    """The cell-type table (``compute/assets/vocabulary/cell_type_words.tsv``), read once."""
    return load_table("cell_type")


@functools.cache
def load_table(kind: str) -> WordTable:
    """The curated table of annotation ``kind`` (cell_type or disease), read once. Raises
    ValueError for an entry with no source or an unknown kind."""
    from compute.reference import assets_dir

    path = assets_dir() / "vocabulary" / TABLES[kind]
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    phrases, refusals, words, markers, implies, lmark, notes, sources = {}, {}, {}, {}, {}, {}, {}, {}
    blocked, lineage, ignore, modifiers = set(), set(), set(), set()
    for r in rows:
        text, kind, means, source, note = (r.get(k) or "" for k in ("text", "kind", "means", "source", "note"))
        if not source:
            raise ValueError(f"{path}: the entry '{text}' ({kind}) names no source")
        sources[(kind, text)] = source
        key = normalise_label(text)
        if kind == "phrase":
            phrases[key] = (means, source)
        elif kind in ("refuse", "parent"):  # parent: no term of its own; means = the nearest parent, proposed
            refusals[key] = (tuple(m for m in means.split("|") if m), source, note)
        elif kind == "blocked_synonym":
            blocked.add((key, means))
        elif kind == "word":
            words[tuple(key.split())] = tuple(normalise_label(means).split())
        elif kind == "marker":
            markers[text] = means
        elif kind == "implies":
            implies[text] = means
        elif kind == "lineage_marker":
            lmark[text] = means
        elif kind == "lineage":
            lineage.add(text)
        elif kind == "ignore":
            ignore.add(tuple(key.split()))
        elif kind == "note":
            notes[text] = note
        elif kind == "modifier":
            modifiers.add(text)
        else:
            raise ValueError(f"{path}: unknown kind '{kind}' for '{text}'")
    return WordTable(phrases=phrases, refusals=refusals, blocked=frozenset(blocked), words=words, markers=markers,
                     implies=implies, lineage_markers=lmark, lineage=frozenset(lineage), ignore=frozenset(ignore),
                     notes=notes, modifiers=frozenset(modifiers), sources=sources)


def _marker_name(stem: str, table: WordTable) -> str:
    stem = stem.replace("-alpha", "").replace("-beta", "")
    return table.markers.get(stem, stem)


def _tokens(text: str, table: WordTable, query: bool, vocabulary: frozenset = frozenset()) -> tuple[tuple[str, ...], dict, list]:
    """(words, markers {CD name: state}, notes) of one text. ``query``: a label (tool suffix,
    plurals and bare CD names read too) rather than an ontology label or synonym."""
    notes: list[str] = []
    t = str(text).replace("−", "-").replace("–", "-")
    # "CD14-CD16+", "CD4+CD25+": a sign followed at once by the next marker ends the first one
    t = re.sub(r"(?<=[A-Za-z0-9])(\+\+|\+|-)(?=[A-Za-z]{2,}[0-9])", r"\1 ", t)
    markers: dict[str, str] = {}
    if _ANY_STATE.search(t):  # "CD16+/-": either state, so the marker says nothing
        t = re.sub(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*(\+/-|±)", " ", t)
        notes.append("a '+/-' marker says nothing about the cells")
    if query:
        t = _TOOL_SUFFIX.sub("", t.strip())
        for m in _UPPER_MARKER.finditer(t):
            markers[_marker_name(m.group(1).lower(), table)] = _STATE[m.group(2)]
        t = _UPPER_MARKER.sub(" ", t)
    t = t.lower()

    def take(m: re.Match, stem_group: int, state: str, extra: str = "") -> str:
        stem = m.group(stem_group)
        if stem in _NOT_MARKERS or (not any(c.isdigit() for c in stem) and stem not in table.markers):
            return m.group(0)
        markers[_marker_name(stem + extra, table)] = _STATE[state]
        return " "

    t = _LONG_MARKER.sub(lambda m: take(m, 1, m.group(3), m.group(2)), t)
    t = _SHORT_MARKER.sub(lambda m: take(m, 1, m.group(2)), t)
    if query:
        for m in _BARE_CD.finditer(t):
            markers.setdefault(_marker_name(m.group(1), table), "+")
        t = _BARE_CD.sub(" ", t)
        for gene, cd in table.markers.items():  # "FCGR3A Monocytes" (the scanpy tutorial)
            if re.search(rf"(?<![a-z0-9]){gene}(?![a-z0-9])", t):
                markers.setdefault(cd, "+")
                t = re.sub(rf"(?<![a-z0-9]){gene}(?![a-z0-9])", " ", t)
    raw = re.sub(r"[^a-z0-9]+", " ", t).split()
    if query and vocabulary:  # plurals: "Monocytes" -> "monocyte" when only the singular is a word
        raw = [w[:-1] if w.endswith("s") and w[:-1] in vocabulary else w for w in raw]
    words: list[str] = []
    i = 0
    phrases = sorted({*table.words, *table.ignore}, key=len, reverse=True)
    while i < len(raw):
        for p in phrases:
            if tuple(raw[i:i + len(p)]) == p:
                words += table.words.get(p, ())
                i += len(p)
                break
        else:
            words.append(raw[i])
            i += 1
    if query:
        for w in list(words):
            if w in table.notes:
                notes.append(f"'{w}': {table.notes[w]}")
                words.remove(w)
    return tuple(dict.fromkeys(words)), markers, notes


@dataclass(frozen=True)
class _Entry:
    term_id: str
    text: str
    words: frozenset
    markers: dict


@functools.cache
def _index() -> tuple[tuple[_Entry, ...], frozenset]:
    """Every live Cell Ontology term's label and synonyms read into words and markers, and the
    words they use (built once, about a second)."""
    table = word_table()
    onto = ontologies()
    entries, vocab = [], set()
    for tid, rec in onto._terms("CL").items():
        if rec.get("deprecated"):
            continue
        for text in (rec["label"], *(rec.get("synonyms") or ())):
            if (normalise_label(text), tid) in table.blocked:
                continue
            words, markers, _ = _tokens(str(text), table, query=False)
            if not words:
                continue
            entries.append(_Entry(tid, str(text), frozenset(words), markers))
            vocab.update(words)
    return tuple(entries), frozenset(vocab)


@dataclass(frozen=True)
class Reading:
    """What the reader makes of one label: ``term_id`` when one term wins clearly (else None),
    ``how`` (phrase, reader, alternatives), ``score`` (the share of the label's weighted
    words and markers the term accounts for), ``notes`` (what was read and left aside),
    ``candidates`` ((term id, score) best first) and, when unmatched, ``reason`` and
    ``proposal`` (a term id to map it to by hand, or None)."""

    label: str
    term_id: str | None
    how: str | None = None
    score: float = 0.0
    notes: tuple[str, ...] = ()
    candidates: tuple[tuple[str, float], ...] = ()
    reason: str | None = None
    proposal: str | None = None
    source: str | None = None


def _related(a: str, b: str) -> bool:
    onto = ontologies()
    ta, tb = onto.term(a), onto.term(b)
    return a == b or (ta is not None and b in ta.ancestors) or (tb is not None and a in tb.ancestors)


def _weight(word: str, table: WordTable) -> float:
    """A lineage word weighs most; a word that restates a marker ("cytotoxic" for CD8) least."""
    if word in table.lineage:
        return _WEIGHT["lineage"]
    return _WEIGHT["marker"] if word in table.implies else _WEIGHT["word"]


def _score_words(words: tuple[str, ...], markers: dict, table: WordTable) -> tuple[list[tuple[str, float, float]], float]:
    """[(term id, score, coverage)] best first for the words and markers of one label, and the
    label's total weight."""
    entries, _ = _index()
    qw = set(words)
    total = sum(_weight(w, table) for w in qw) + _WEIGHT["marker"] * len(markers)
    lineage = qw & table.lineage
    best: dict[str, float] = {}
    for e in entries:
        if not e.words <= qw or not (lineage <= e.words):
            continue
        shared = missing = 0.0
        conflict = False
        for gene, state in e.markers.items():
            q = markers.get(gene)
            if q == state:
                # a graded state the label spells out ("CD56bright") says more than a "+"
                shared += 1.5 if state in ("hi", "lo") else 1
            elif q is not None and (q, state) in _CONFLICT:
                conflict = True
            else:
                missing += 1
        if conflict or (missing and not shared):
            continue
        s = sum(_weight(w, table) for w in e.words) + _WEIGHT["marker"] * (shared - missing)
        if s > best.get(e.term_id, float("-inf")):
            best[e.term_id] = s
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(t, s, s / total if total else 0.0) for t, s in ranked], total


def _describe(term_id: str | None) -> str:
    if not term_id:
        return "none"
    t = ontologies().term(term_id)
    return f"{term_id} {t.label}" if t else term_id


def _read_one(label: str) -> Reading:
    table = word_table()
    key = label_key(label)
    if key in table.phrases or key in table.refusals:
        return read_phrase(label, "cell_type")
    _, vocab = _index()
    words, markers, notes = _tokens(label, table, query=True, vocabulary=vocab | set(table.lineage))
    if not set(words) & table.lineage:
        inferred = {table.lineage_markers[g] for g in markers if g in table.lineage_markers and markers[g] in ("+", "hi")}
        if len(inferred) == 1:
            words = (*words, *inferred)
            notes.append(f"lineage '{next(iter(inferred))}' read from the markers")
    if not any(c in markers for c in ("cd4", "cd8")):
        for w, marker in table.implies.items():
            if w in words:
                markers = {**markers, marker: "+"}
                notes.append(f"'{w}' read as {marker.upper()}+ ({table.sources[('implies', w)]})")
    if not words:
        return Reading(label, None, notes=tuple(notes), reason="no cell-type word: a marker alone names no lineage")
    ranked, total = _score_words(words, markers, table)
    if not ranked:
        return Reading(label, None, notes=tuple(notes), reason="no term has these words: " + " ".join(words))
    top_score = ranked[0][1]
    tied = [t for t, s, _ in ranked if s == top_score]
    winner = next((t for t in tied if all(t == o or t in ontologies().term(o).ancestors for o in tied)), None)
    cands = tuple((t, round(c, 2)) for t, _, c in ranked[:5])
    if winner is None:  # propose what the tied terms share, when it is close to them
        anc, steps = _common_ancestor(tied)
        return Reading(label, None, notes=tuple(notes), candidates=cands,
                       proposal=anc if anc is not None and steps <= ALTERNATIVES_MAX_STEPS else tied[0],
                       reason="ambiguous: " + "; ".join(_describe(t) for t in tied[:4]) + " read it equally well")
    rivals = [t for t, s, _ in ranked if t != winner and s > top_score - MARGIN and not _related(t, winner)]
    if rivals:
        return Reading(label, None, notes=tuple(notes), candidates=cands, proposal=winner,
                       reason=f"no clear winner: {_describe(winner)} and {_describe(rivals[0])} score within {MARGIN}")
    entries, _ = _index()
    covered: set = set()
    for e in entries:
        if e.term_id == winner and e.words <= set(words):
            covered |= e.words
    unknown = [w for w in words if w not in covered and w not in table.modifiers]
    if unknown:  # a word the term does not account for may change what the cells are: never guess
        return Reading(label, None, notes=tuple(notes), candidates=cands, proposal=winner,
                       reason=f"'{' '.join(unknown)}' read by no term of {_describe(winner)} or narrower")
    left = [w for w in words if w not in covered]
    if left:
        notes.append("read and left aside (no narrower term): " + ", ".join(left))
    coverage = ranked[0][2]
    return Reading(label, winner, "reader", round(min(coverage, 1.0), 2), tuple(notes), cands)


def read_phrase(label: str, kind: str) -> Reading | None:
    """The curated table's reading of a whole label (a phrase, or a refusal with its proposal
    and candidates), or None when the table does not list it (or ``kind`` has no table)."""
    if kind not in TABLES:
        return None
    table = load_table(kind)
    key = label_key(label)
    if key in table.phrases:
        tid, source = table.phrases[key]
        return Reading(label, tid, "phrase", 1.0, source=source)
    if key in table.refusals:
        ids, source, note = table.refusals[key]
        return Reading(label, None, reason=note or "no single term", proposal=ids[0] if ids else None, source=source,
                       candidates=tuple((i, 0.0) for i in ids))
    return None


@functools.cache
def blocked_synonyms(kind: str) -> frozenset:
    """(normalised synonym, term id) pairs the curated table refuses (e.g. "dc2" of plasmacytoid
    dendritic cell: the tools that write DC2 mean CD1c+ conventional type-2 DCs)."""
    return load_table(kind).blocked if kind in TABLES else frozenset()


def _split_alternatives(label: str) -> list[str] | None:
    """["A cells", "B cells"] for "A/B cells", "A or B cells", "A and B cells", "A & B", "A + B";
    None when the label holds no
    alternatives (a slash between markers, "CD4+/CD25-", joins them: both hold)."""
    text = _TOOL_SUFFIX.sub("", str(label).strip())
    text = _ANY_STATE.sub("±", text)
    parts = [p.strip() for p in re.split(r"\s*/\s*|\s+(?:or|and|&|\+)\s+|\s*&\s*", text) if p.strip()]
    if len(parts) < 2:
        return None
    table = word_table()
    if all(not _tokens(p, table, query=True)[0] for p in parts[:-1]):
        return None  # markers only before the last slash: a conjunction
    tail = parts[-1].split()[1:]
    return [" ".join([p, *tail]) if i < len(parts) - 1 else p for i, p in enumerate(parts)]


def _common_ancestor(ids: list[str]) -> tuple[str | None, int]:
    onto = ontologies()
    dist = []
    for t in ids:
        info = onto.term(t)
        dist.append({t: 0, **{a: int(d) for a, d in info.ancestors.items()}})
    common = set(dist[0]).intersection(*dist[1:])
    if not common:
        return None, 0
    best = min(common, key=lambda a: (max(d[a] for d in dist), a))
    return best, max(d[best] for d in dist)


def read_cell_type(label: str, resolve=None) -> Reading:
    """Read one cell-type ``label`` (see the module docstring). ``resolve``: how each
    alternative of "A/B" is matched (default: this reader), so that a caller can put the
    ontology's own labels and synonyms first."""
    key = label_key(label)
    table = word_table()
    if key not in table.phrases and key not in table.refusals and (alts := _split_alternatives(label)):
        resolve = resolve or (lambda text: read_cell_type(text).term_id)
        ids = [resolve(a) for a in alts]
        if all(ids):
            anc, steps = _common_ancestor(list(dict.fromkeys(ids)))
            if anc is not None and steps <= ALTERNATIVES_MAX_STEPS:
                return Reading(label, anc, "alternatives", 1.0,
                               (f"alternatives {' | '.join(alts)} -> {', '.join(_describe(i) for i in ids)}; "
                                f"their nearest common term",))
            return Reading(label, None, reason=(f"alternatives {', '.join(_describe(i) for i in ids)} meet only at "
                                                f"{_describe(anc)}: map the label"), proposal=anc,
                           candidates=tuple((i, 1.0) for i in ids))
        found = [i for i in ids if i]
        return Reading(label, None, reason="alternatives not all read: " + " | ".join(
            f"{a} -> {_describe(i)}" for a, i in zip(alts, ids, strict=True)), proposal=found[0] if found else None)
    return _read_one(label)

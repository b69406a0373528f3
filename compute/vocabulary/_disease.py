"""A reader of disease labels as clinical metadata write them: abbreviations ("UC", "MS",
"HIV"), "COVID19", "SARS-CoV-2 infection", possessives ("Crohn's"), "X" for "X disease" and
"X infection" for "X infectious disease". Ambiguous abbreviations ("RA", "lupus") are refused
with their candidates; a disease MONDO has no term for ("septic shock") is refused with its
nearest parent proposed. The curated entries are ``compute/assets/vocabulary/disease_words.tsv``."""

from __future__ import annotations

import re

from compute.vocabulary._ontology import ontologies
from compute.vocabulary._reader import Reading, blocked_synonyms, label_key, load_table, read_phrase
from compute.vocabulary._text import normalise_label

__all__ = ["ASSUMED_HEALTHY", "read_disease"]

# disease values read as healthy donors only with the assumption said (a study's "controls"
# can be patients: hospital controls, another disease)
ASSUMED_HEALTHY = frozenset({"control", "controls", "ctrl", "ctl", "con"})
_SUFFIXES = (" patient", " patients", " case", " cases", " positive", " donor", " donors")


def _spellings(norm: str) -> list[str]:
    """The label's normalised spelling and the variants tried after it, in order."""
    table = load_table("disease")
    base = re.sub(r"\b([a-z]+) s\b", r"\1", norm)  # "crohn s disease" (Crohn's) -> "crohn disease"
    words = base.split()
    for phrase, repl in sorted(table.words.items(), key=lambda kv: -len(kv[0])):
        n = len(phrase)
        i = 0
        while i <= len(words) - n:
            if tuple(words[i:i + n]) == phrase:
                words[i:i + n] = list(repl)
            i += 1
    base = " ".join(words)
    out = [norm, base]
    # a severity or stage ("severe COVID-19", "COVID-19 (severe)") left aside, tried last
    kept = [w for w in base.split() if w not in table.modifiers]
    if kept and len(kept) < len(base.split()):
        out.append(" ".join(kept))
    for suf in _SUFFIXES:
        if base.endswith(suf):
            out.append(base[: -len(suf)])
    for b in list(out):
        out += [b + " disease", b + " infection", b + " infectious disease"]
        if b.endswith(" disease"):
            out.append(b[: -len(" disease")])
        if b.endswith(" infection"):
            out.append(b[: -len(" infection")] + " infectious disease")
            out.append(b[: -len(" infection")])
        if b.startswith("infection with "):
            out.append(b[len("infection with "):] + " infection")
    return list(dict.fromkeys(o for o in out if o))


def _base_words(norm: str) -> list[str]:
    return re.sub(r"\b([a-z]+) s\b", r"\1", norm).split()


def read_disease(label: str, resolve=None) -> Reading:
    """Read one disease ``label``: a :class:`Reading` with the MONDO term when one spelling
    names exactly one term, else the reason and the candidates. ``resolve`` is unused (the
    signature matches :func:`compute.vocabulary._reader.read_cell_type`)."""
    curated = read_phrase(label, "disease")
    if curated is not None:
        return curated
    onto = ontologies()
    labels, synonyms = onto.text_index("disease")
    blocked = blocked_synonyms("disease")
    table = load_table("disease")
    norm = normalise_label(label)
    words = norm.split()
    if any(w in ASSUMED_HEALTHY for w in words) and len(words) > 1:  # "ICU control", "Control (non-septic ICU)"
        return Reading(label, None, reason=(f"controls described as '{label}': they may be patients, not healthy donors; "
                                            "map the label (PATO:0000461 normal if they are healthy)"))
    ambiguous: tuple[str, ...] = ()
    for spelling in _spellings(norm):
        left = [w for w in _base_words(norm) if w in table.modifiers and w not in spelling.split()]
        aside = (f"'{' '.join(left)}' left aside ({table.sources[('modifier', left[0])]})",) if left else ()
        if spelling in table.phrases:
            tid, source = table.phrases[spelling]
            return Reading(label, tid, "phrase", 1.0, (f"read as '{spelling}'", *aside), source=source)
        if spelling in table.refusals:
            return read_phrase(spelling, "disease")
        if len(ids := labels.get(spelling, ())) == 1:
            return Reading(label, ids[0], "reader", 1.0, (f"read as '{spelling}' (the term's label)", *aside))
        ids = tuple(i for i in synonyms.get(spelling, ()) if (spelling, i) not in blocked)
        if len(ids) == 1:
            return Reading(label, ids[0], "reader", 1.0, (f"read as '{spelling}' (a synonym of the term)", *aside))
        if len(ids) > 1 and not ambiguous:
            ambiguous = ids
    if ambiguous:
        names = "; ".join(f"{i} {onto.term(i).label}" for i in ambiguous[:4])
        return Reading(label, None, reason=f"ambiguous: a synonym of {names}", proposal=ambiguous[0],
                       candidates=tuple((i, 0.0) for i in ambiguous))
    return Reading(label, None, reason=f"no MONDO term reads as '{label_key(label)}' (tried "
                   f"{len(_spellings(normalise_label(label)))} spellings)")

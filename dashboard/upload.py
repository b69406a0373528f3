"""Gene lists from files: GMT (one or more sets) and CSV/TSV/text (genes, optional weights)."""

from __future__ import annotations

import base64
import csv
import io
import math

from compute.errors import SigAtlasError
from compute.query import parse_gene_list

__all__ = ["GeneFileError", "GeneSets", "decode_upload", "parse_gene_file"]

MAX_BYTES = 5_000_000


class GeneFileError(SigAtlasError, ValueError):
    """The uploaded file cannot be read as a gene list; the message says where and why."""


class GeneSets(dict):
    """{set name: gene-box text}, with ``skipped``: a line each for the lines of the file that
    were left out ("sets.gmt, line 3: a GMT line needs ..."), the other sets kept."""

    def __init__(self, sets=(), skipped=()):
        super().__init__(sets)
        self.skipped: list[str] = list(skipped)


def decode_upload(contents: str, filename: str | None = None) -> bytes:
    """The bytes of a dcc.Upload ``contents`` string ("data:<type>;base64,<data>"); raises
    GeneFileError, naming ``filename`` when given, for anything else."""
    try:
        _, data = contents.split(",", 1)
        return base64.b64decode(data)
    except (ValueError, AttributeError) as exc:
        raise GeneFileError(f"{filename + ': ' if filename else ''}the upload arrived damaged; try again") from exc


def parse_gene_file(filename: str, raw: bytes) -> GeneSets:
    """Gene sets in a file, as {set name: text for the gene box ("GENE" or "GENE:weight" lines)}
    (a :class:`GeneSets`, whose ``skipped`` names each line left out and why).

    ``.gmt``: one set per line (name, description, genes...); a repeated name gets " (line N)";
    a malformed line is left out, named in ``skipped``, and the valid sets kept (all lines
    malformed: GeneFileError naming the first).
    ``.csv``/``.tsv``/``.txt``: the first column holds genes; a numeric second column, if any,
    holds finite weights; the first row is a header when its second field is not a number.
    Sets the gene box would read no gene from are left out. Raises GeneFileError naming the
    file (and the line, where one is at fault).
    """
    if len(raw) > MAX_BYTES:
        raise GeneFileError(f"{filename}: {len(raw) / 1e6:.1f} MB is larger than the {MAX_BYTES / 1e6:.0f} MB accepted")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GeneFileError(f"{filename}: not UTF-8 text (byte {exc.start})") from exc
    name = filename.lower()
    skipped: list[str] = []
    sets = _gmt(filename, text, skipped) if name.endswith(".gmt") else {_stem(filename): _table(filename, text)}
    # a set is kept when the gene box reads at least one gene from it (not only quotes or '#')
    sets = {k: v for k, v in sets.items() if parse_gene_list(v)}
    if not sets:
        if skipped:
            raise GeneFileError(skipped[0] + (f" (and {len(skipped) - 1} more such lines)" if len(skipped) > 1 else ""))
        raise GeneFileError(f"{filename}: no genes found")
    return GeneSets(sets, skipped)


def _stem(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1]
    return (base.rsplit(".", 1)[0] if "." in base else base) or "upload"


def _gmt(filename: str, text: str, skipped: list[str]) -> dict[str, str]:
    """The sets of a GMT text; each malformed line is added to ``skipped`` with its reason."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3:
            skipped.append(f"{filename}, line {lineno}: a GMT line needs a name, a description and genes, separated by tabs")
            continue
        genes = [g.strip() for g in parts[2:] if g.strip()]
        name = parts[0].strip() or f"set {lineno}"
        while name in out:  # keep both sets of a repeated name
            name = f"{name} (line {lineno})"
        out[name] = "\n".join(genes)
    return out


def _weight(value: str) -> float | None:
    """The finite number ``value`` spells, else None."""
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _fmt_weight(v: float) -> str:
    """Shortest text that the gene box reads back as the same weight ("2", "1.5", "1e+20")."""
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _rows(filename: str, text: str):
    """(line number, stripped fields) of each row: split at tabs, else commas, else whitespace
    (chosen from the first 4 KB without comment lines)."""
    sample = "\n".join(ln for ln in text[:4096].splitlines() if not ln.lstrip().startswith("#"))
    delimiter = "\t" if "\t" in sample else ("," if "," in sample else None)
    if delimiter is None:
        for lineno, line in enumerate(text.splitlines(), start=1):
            yield lineno, line.split()
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            yield reader.line_num, [c.strip() for c in row]
    except csv.Error as exc:
        raise GeneFileError(f"{filename}, line {reader.line_num}: cannot be read as a table ({exc})") from exc


def _table(filename: str, text: str) -> str:
    lines = []
    first = True  # the first row that is not blank or a comment may be a header
    for lineno, row in _rows(filename, text):
        if not row or not row[0] or row[0].startswith("#"):
            continue
        header, first = first, False
        if len(row) > 1 and row[1]:
            weight = _weight(row[1])
            if weight is not None:
                lines.append(f"{row[0]}:{_fmt_weight(weight)}")
            elif header and not _is_number(row[1]):
                continue  # a header row ("gene,weight")
            else:
                what = "a finite number" if _is_number(row[1]) else "a number"
                raise GeneFileError(f"{filename}, line {lineno}: the weight '{row[1]}' of {row[0]} is not {what}")
        else:
            lines.append(row[0])
    return "\n".join(lines)

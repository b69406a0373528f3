"""Gene lists from files: GMT (one or more sets) and CSV/TSV/text (genes, optional weights)."""

from __future__ import annotations

import base64
import csv
import io

__all__ = ["GeneFileError", "decode_upload", "parse_gene_file"]

MAX_BYTES = 5_000_000


class GeneFileError(ValueError):
    """The uploaded file cannot be read as a gene list; the message says where and why."""


def decode_upload(contents: str) -> bytes:
    """The bytes of a dcc.Upload ``contents`` string ("data:<type>;base64,<data>")."""
    try:
        _, data = contents.split(",", 1)
        return base64.b64decode(data)
    except (ValueError, AttributeError) as exc:
        raise GeneFileError("the upload arrived damaged; try again") from exc


def parse_gene_file(filename: str, raw: bytes) -> dict[str, str]:
    """Gene sets in a file, as {set name: text for the gene box ("GENE" or "GENE:weight" lines)}.

    ``.gmt``: one set per line (name, description, genes...). ``.csv``/``.tsv``/``.txt``: the
    first column holds genes; a numeric second column, if any, holds weights; a header row
    is recognised when its second field is not a number. Raises GeneFileError naming the line.
    """
    if len(raw) > MAX_BYTES:
        raise GeneFileError(f"{filename}: {len(raw) / 1e6:.1f} MB is larger than the {MAX_BYTES / 1e6:.0f} MB accepted")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GeneFileError(f"{filename}: not UTF-8 text (byte {exc.start})") from exc
    name = filename.lower()
    sets = _gmt(filename, text) if name.endswith(".gmt") else {_stem(filename): _table(filename, text)}
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        raise GeneFileError(f"{filename}: no genes found")
    return sets


def _stem(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _gmt(filename: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3:
            raise GeneFileError(f"{filename}, line {lineno}: a GMT line needs a name, a description and genes, separated by tabs")
        genes = [g.strip() for g in parts[2:] if g.strip()]
        out[parts[0].strip() or f"set {lineno}"] = "\n".join(genes)
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _table(filename: str, text: str) -> str:
    sample = text[:4096]
    delimiter = "\t" if "\t" in sample else ("," if "," in sample else None)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter)) if delimiter else [ln.split() for ln in text.splitlines()]
    lines = []
    for lineno, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not row[0] or row[0].startswith("#"):
            continue
        if len(row) > 1 and row[1]:
            if _is_number(row[1]):
                lines.append(f"{row[0]}:{float(row[1]):g}")
            elif lineno == 1:
                continue  # a header row ("gene,weight")
            else:
                raise GeneFileError(f"{filename}, line {lineno}: the weight '{row[1]}' of {row[0]} is not a number")
        else:
            lines.append(row[0])
    return "\n".join(lines)

"""Read the reference files shipped in the package's ``compute/assets/`` (gene sets, markers,
presets), found through ``importlib.resources`` so an installed wheel reads its own copy.

Pure readers with no heavy imports: the dashboard uses them too.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = [
    "HALLMARK_ATTRIBUTION",
    "MARKER_TERMS",
    "assets_dir",
    "hallmark_sets",
    "immune_markers",
    "ms1_signature",
    "is_current_symbol_like",
]

HALLMARK_ATTRIBUTION = (
    "Hallmark gene sets: MSigDB v7.5.1 (Liberzon et al., Cell Systems 2015), CC BY 4.0."
)
# Cell Ontology terms of the immune marker sets (human_immune_cell_markers.json) whose cell type has
# an unambiguous one (the term's own label, or the name CELLxGENE datasets use for it; the others
# name none rather than a guess): the dashboard's presets name them, the validation scores each
# atlas cell type against its markers
MARKER_TERMS: dict[str, tuple[str, str]] = {
    "T cell": ("CL:0000084", "T cell"),
    "T regulatory cell": ("CL:0000815", "regulatory T cell"),
    "T follicular helper cell": ("CL:0002038", "T follicular helper cell"),
    "MAIT": ("CL:0000940", "mucosal-associated invariant T cell"),
    "Gamma-delta T cell": ("CL:0000798", "gamma-delta T cell"),
    "Natural killer cell": ("CL:0000623", "natural killer cell"),
    "B cell": ("CL:0000236", "B cell"),
    "Naive B cell": ("CL:0000788", "naive B cell"),
    "Memory B cell": ("CL:0000787", "memory B cell"),
    "Germinal Center B cell": ("CL:0000844", "germinal center B cell"),
    "Plasma cell": ("CL:0000786", "plasma cell"),
    # the marker sets describe the two blood populations, classical (CD14++ CD16-) and
    # non-classical (CD14+ CD16++) monocytes, the terms studies annotate them with
    "CD14+ Monocyte": ("CL:0000860", "classical monocyte"),
    "CD16+ Monocyte": ("CL:0000875", "non-classical monocyte"),
    "Plasmacytoid dendritic cell": ("CL:0000784", "plasmacytoid dendritic cell"),
    "Hematopoietic stem cell": ("CL:0000037", "hematopoietic stem cell"),
    "Platelet": ("CL:0000233", "platelet"),
    "Neutrophil": ("CL:0000775", "neutrophil"),
    "Basophil": ("CL:0000767", "basophil"),
    "Macrophage": ("CL:0000235", "macrophage"),
    "Mast cell": ("CL:0000097", "mast cell"),
}

# Clone-based lncRNA names (RP11-..., CTD-..., AC012345.1) that current gene orders lack.
_LEGACY_CLONE = re.compile(r"^(RP\d+-|CT[ABCD]-|A[CLP]\d{6}\.\d+)")


def assets_dir() -> Path:
    """The ``assets/`` folder inside the installed ``compute`` package (``presets/``,
    ``reference/``): package data, so a non-editable install has it too."""
    # files() of a package installed as folders (what pip does with this wheel) is a real path
    return Path(str(resources.files("compute") / "assets"))


@lru_cache(maxsize=1)
def hallmark_sets() -> dict[str, tuple[str, ...]]:
    """Hallmark name -> gene symbols, from the shipped GMT file."""
    out: dict[str, tuple[str, ...]] = {}
    for line in (assets_dir() / "reference" / "h.all.v7.5.1.symbols.gmt").read_text().splitlines():
        parts = line.rstrip("\n").split("\t")
        if len(parts) > 2:
            out[parts[0]] = tuple(g for g in parts[2:] if g)
    return out


@lru_cache(maxsize=1)
def immune_markers() -> dict[str, tuple[str, ...]]:
    """Cell type name -> positive marker genes (all levels of the shipped marker tree)."""
    data = json.loads((assets_dir() / "reference" / "human_immune_cell_markers.json").read_text())
    out: dict[str, tuple[str, ...]] = {}

    def walk(node: dict) -> None:
        for ct in node["cell_types"]:
            genes = [g[:-1] for m in ct["markers"] for g in m["genes"] if g.endswith("+")]
            out[ct["name"]] = tuple(dict.fromkeys(genes))
            if "subtypes" in ct:
                walk(ct["subtypes"])

    walk(data)
    return out


@lru_cache(maxsize=1)
def ms1_signature() -> tuple[str, ...]:
    """The 99 MS1 genes as published (legacy names kept)."""
    text = (assets_dir() / "presets" / "ms1.txt").read_text()
    return tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def is_current_symbol_like(symbol: str) -> bool:
    """False for legacy clone-based names (RP11-..., AC097495.2) and renamed FAM65B."""
    return not _LEGACY_CLONE.match(symbol) and symbol != "FAM65B"

"""Read the reference files shipped in ``assets/`` (gene sets, markers, presets).

Pure readers with no heavy imports: the dashboard uses them too.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

__all__ = [
    "HALLMARK_ATTRIBUTION",
    "assets_dir",
    "hallmark_sets",
    "immune_markers",
    "ms1_signature",
    "is_current_symbol_like",
]

HALLMARK_ATTRIBUTION = (
    "Hallmark gene sets: MSigDB v7.5.1 (Liberzon et al., Cell Systems 2015), CC BY 4.0."
)
# Clone-based lncRNA names (RP11-..., CTD-..., AC012345.1) that current gene orders lack.
_LEGACY_CLONE = re.compile(r"^(RP\d+-|CT[ABCD]-|A[CLP]\d{6}\.\d+)")


def assets_dir() -> Path:
    """The repository's ``assets/`` folder."""
    return Path(__file__).resolve().parent.parent / "assets"


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

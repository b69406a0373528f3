"""Gene-set presets shipped in ``compute/assets/``: MS1, the 50 MSigDB Hallmarks, immune cell-type markers."""

from __future__ import annotations

from dataclasses import dataclass

# MARKER_TERMS: the marker sets' Cell Ontology terms, owned by compute.reference (the validation uses them too)
from compute.reference import (
    HALLMARK_ATTRIBUTION,
    MARKER_TERMS,
    hallmark_sets,
    immune_markers,
    ms1_signature,
)

__all__ = ["MARKER_TERMS", "PRESETS", "QUICK_PRESETS", "Preset", "preset_options"]

_MARKER_SOURCE = "Human immune cell markers (compute/assets/reference, positive markers of every level)"

@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    group: str  # "Signatures", "Hallmark gene sets" or "Immune cell-type markers"
    genes: tuple[str, ...]
    # the Cell Ontology term (id) the preset selects in the cell-type filter, which includes its
    # subtypes ("CL:0000576" monocyte: classical, non-classical, CD14-positive...); None: all cells
    cell_type_term: str | None
    source: str
    # the term (id, label) whose cells the markers identify; said in the source, never selected
    # (a marker set is run over all cells to find where its cell type is)
    marker_of: tuple[str, str] | None = None
    # the cell-type words matched in atlases built before the vocabulary (no ontology terms)
    cell_type_fallback: str | None = None


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _presets() -> dict[str, Preset]:
    out = [Preset("ms1", "MS1 monocytes (sepsis)", "Signatures", ms1_signature(), "CL:0000576",
                  "Reyes et al., Nat Med 2020: 99-gene MS1 signature, as queried by SIGnature (legacy names kept); "
                  "selects the Cell Ontology term monocyte (CL:0000576) and its subtypes",
                  cell_type_fallback="monocyte")]
    for name, genes in hallmark_sets().items():
        label = "Hallmark " + name.removeprefix("HALLMARK_").replace("_", " ")
        out.append(Preset(f"h-{_slug(name.removeprefix('HALLMARK_'))}", label, "Hallmark gene sets", genes, None,
                          f"{name}. {HALLMARK_ATTRIBUTION}"))
    for cell_type, genes in immune_markers().items():
        if genes:
            term = MARKER_TERMS.get(cell_type)
            source = _MARKER_SOURCE + (f"; markers of {term[1]} ({term[0]})" if term else "")
            out.append(Preset(f"m-{_slug(cell_type)}", f"{cell_type} markers", "Immune cell-type markers", genes, None, source,
                              marker_of=term))
    return {p.key: p for p in out}


PRESETS = _presets()
# one-click buttons above the gene box; every preset is also in the searchable list
QUICK_PRESETS = ("ms1", "h-interferon-alpha-response", "h-tnfa-signaling-via-nfkb")


def preset_options() -> list[dict]:
    """Grouped options for a searchable select: [{"group": ..., "items": [{"value", "label"}]}]."""
    groups: dict[str, list[dict]] = {}
    for p in PRESETS.values():
        groups.setdefault(p.group, []).append({"value": p.key, "label": f"{p.label} ({len(p.genes)})"})
    return [{"group": g, "items": items} for g, items in groups.items()]

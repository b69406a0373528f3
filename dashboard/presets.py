"""Gene-set presets shipped in ``assets/``: MS1, the 50 MSigDB Hallmarks, immune cell-type markers."""

from __future__ import annotations

from dataclasses import dataclass

from compute.reference import HALLMARK_ATTRIBUTION, hallmark_sets, immune_markers, ms1_signature

__all__ = ["PRESETS", "QUICK_PRESETS", "Preset", "preset_options"]

_MARKER_SOURCE = "Human immune cell markers (shared/reference, positive markers of every level)"


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    group: str  # "Signatures", "Hallmark gene sets" or "Immune cell-type markers"
    genes: tuple[str, ...]
    cell_type_hint: str | None  # cell types whose name contains this (case-insensitive) are selected
    source: str


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _presets() -> dict[str, Preset]:
    out = [Preset("ms1", "MS1 monocytes (sepsis)", "Signatures", ms1_signature(), "monocyte",
                  "Reyes et al., Nat Med 2020: 99-gene MS1 signature, as queried by SIGnature (legacy names kept)")]
    for name, genes in hallmark_sets().items():
        label = "Hallmark " + name.removeprefix("HALLMARK_").replace("_", " ")
        out.append(Preset(f"h-{_slug(name.removeprefix('HALLMARK_'))}", label, "Hallmark gene sets", genes, None,
                          f"{name}. {HALLMARK_ATTRIBUTION}"))
    for cell_type, genes in immune_markers().items():
        if genes:
            out.append(Preset(f"m-{_slug(cell_type)}", f"{cell_type} markers", "Immune cell-type markers", genes, None, _MARKER_SOURCE))
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

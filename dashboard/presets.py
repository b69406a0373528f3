"""Gene-set presets shipped in ``assets/`` (one click in the dashboard)."""

from __future__ import annotations

from dataclasses import dataclass

from compute.reference import HALLMARK_ATTRIBUTION, hallmark_sets, ms1_signature

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    genes: tuple[str, ...]
    cell_type_hint: str | None  # cell types whose name contains this (case-insensitive) are selected
    source: str


def _presets() -> dict[str, Preset]:
    hall = hallmark_sets()
    out = [
        Preset("ms1", "MS1 monocytes (sepsis)", ms1_signature(), "monocyte",
               "Reyes et al., Nat Med 2020: 99-gene MS1 signature, as queried by SIGnature (legacy names kept)"),
        Preset("ifna", "Interferon-alpha response", hall["HALLMARK_INTERFERON_ALPHA_RESPONSE"], None,
               "HALLMARK_INTERFERON_ALPHA_RESPONSE. " + HALLMARK_ATTRIBUTION),
        Preset("tnfa", "TNF-alpha via NF-kB", hall["HALLMARK_TNFA_SIGNALING_VIA_NFKB"], "monocyte",
               "HALLMARK_TNFA_SIGNALING_VIA_NFKB. " + HALLMARK_ATTRIBUTION),
    ]
    return {p.key: p for p in out}


PRESETS = _presets()

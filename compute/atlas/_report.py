"""The build report in words: per study, what ingest did (cells, genes, symbols, species,
values) and what to watch; printed by ``build`` and ``info``. Pure: atlas.json in, text out."""

from __future__ import annotations

__all__ = ["study_report_text"]


def _qc_line(qc: dict) -> str:
    cells_in, kept = qc.get("cells_in"), qc.get("cells_kept")
    if cells_in is None or kept is None:
        return ""
    dropped = {k: v for k, v in (qc.get("dropped") or {}).items() if v}
    why = ", ".join(f"{v} {k}" for k, v in dropped.items())
    thresholds = f"min_genes {qc.get('min_genes')}, min_counts {qc.get('min_counts')}"
    if qc.get("scaled_for_panel"):
        thresholds += ", scaled for the panel"
    return f"cells {kept:,} of {cells_in:,} kept" + (f" (dropped: {why})" if why else "") + f" [{thresholds}]"


def _symbols_line(sym: dict) -> str:
    parts = []
    for key, label in (("renamed", "renamed to current symbols"), ("ambiguous", "ambiguous (kept apart)"),
                       ("conflicts", "conflicting renames (kept apart)"), ("duplicates_summed", "duplicated names summed")):
        value = sym.get(f"n_{key}", sym.get(key))
        n = value if isinstance(value, int) else len(value or ())
        if n:
            parts.append(f"{n} {label}")
    if sym.get("ensembl_mapped"):
        parts.append(f"{sym['ensembl_mapped']} Ensembl ids mapped")
    return "symbols: " + ", ".join(parts) if parts else ""


def study_report_text(meta: dict) -> str:
    """Per-study report of an atlas root (``Atlas.meta``): one block per study, then the
    atlas-level warnings. Atlases built before reports were recorded say so."""
    lines = ["build report:"]
    for e in meta.get("studies", []):
        rep, panel = e.get("report") or {}, e.get("panel") or {}
        tag = " [SIMULATED]" if e.get("simulated") else ""
        lines.append(f"  {e['id']}{tag}: {e.get('n_cells', 0):,} cells")
        if not rep and not panel:
            lines.append("    (no report recorded: built before reports existed; rebuild to get one)")
            continue
        values = rep.get("values") or {}
        species = rep.get("species") or {}
        details = []
        if values:
            details.append(f"values: {values.get('kind')}" + (f" ({values['note']})" if values.get("note") else ""))
        if species:
            sp_text = f"species: {species.get('organism')} (detected {species.get('detected')})"
            orth = species.get("orthologs") or {}
            if orth:
                sp_text += ", mapped to human orthologs: " + ", ".join(f"{k} {v}" for k, v in orth.items() if isinstance(v, int | float))
            details.append(sp_text)
        if panel:
            details.append(f"genes measured: {panel.get('n_genes_measured', 0):,} of {meta.get('n_genes', 0):,}; measured share "
                           f"{panel.get('attr_share', 1.0):.3f} (attribution), {panel.get('expr_share', 1.0):.3f} (expression)")
        for text in (_qc_line(rep.get("qc") or {}), _symbols_line(rep.get("symbols") or {})):
            if text:
                details.append(text)
        lines += [f"    {d}" for d in details]
        lines += [f"    warning: {w}" for w in rep.get("warnings", [])]
    atlas_warnings = (meta.get("report") or {}).get("warnings", [])
    lines += [f"  warning: {w}" for w in atlas_warnings]
    return "\n".join(lines)

"""What the atlas records about how each study was read (its ingest report), in plain words:
one owner for the build's printed report, ``info`` and the dashboard's Studies tab.

Pure functions over the atlas root's study entries (``atlas.meta["studies"]``, also
``StudyInfo.meta``) and ``atlas.meta["report"]``. Atlases built before SigAtlas kept these
have no ``report`` or ``panel``: every function then answers "not recorded" or nothing, never
raises.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["NOT_RECORDED", "atlas_warnings", "embedding_genes_text", "embedding_line", "how_matched", "integration_line", "label_rows",
           "label_transfer_line", "measured_share", "study_report_lines", "study_report_text", "study_warnings", "transfer_line", "vocabulary_lines"]

NOT_RECORDED = ("Ingest report: not recorded (this atlas was built before SigAtlas kept one; rebuild it with "
                "python -m compute build to see how the study was read)")
_RENAMED_BY = {"case": "case fixed", "same_gene": "second symbol of the same gene", "previous": "previous symbol",
               "ensembl_name": "Ensembl gene name", "alias": "alias"}
_VALUE_KINDS = {"counts": "raw counts", "tpm": "TPM", "fpkm": "FPKM", "lognorm": "log-normalised values"}


def _dict(value) -> dict:
    return value if isinstance(value, Mapping) else {}


def _int(value) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _n(section: dict, key: str) -> int:
    """A count from a report section: ``n_<key>`` when recorded, else the list's length."""
    n = _int(section.get(f"n_{key}"))
    if n is not None:
        return n
    items = section.get(key)
    return len(items) if isinstance(items, list) else (_int(items) or 0)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def study_warnings(entry: Mapping) -> list[str]:
    """The warnings of a study's ingest report ([] when none or not recorded)."""
    warnings = _dict(_dict(entry).get("report")).get("warnings")
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def measured_share(entry: Mapping) -> float | None:
    """The study's measured share (``panel.attr_share``: the share of a cell's attribution its gene
    panel is estimated to carry, the factor that puts its values on the atlas's common scale), or
    None when the atlas did not record panels."""
    share = _dict(_dict(entry).get("panel")).get("attr_share")
    return float(share) if isinstance(share, int | float) and not isinstance(share, bool) else None


def atlas_warnings(meta: Mapping) -> list[str]:
    """The atlas-level build warnings (``meta["report"]["warnings"]``; [] when none or not recorded)."""
    warnings = _dict(_dict(meta).get("report")).get("warnings")
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def _values_line(values: dict) -> str | None:
    kind = values.get("kind")
    if not kind:
        return None
    line = f"Values: {_VALUE_KINDS.get(str(kind), str(kind))}"
    if values.get("source"):
        line += f", read from {values['source']}"
    if values.get("note") and str(kind) != "counts":
        # TPM/FPKM and log-normalised values are turned into pseudo-counts: say how, since it is an approximation
        line += f" ({values['note']})"
    return line + "."


def _species_line(species: dict) -> str | None:
    organism = species.get("organism")
    if not organism:
        return None
    detected = species.get("detected")
    shares = ""
    if isinstance(species.get("human_share"), int | float) and isinstance(species.get("mouse_share"), int | float):
        shares = f"{100 * species['human_share']:.1f}% of the gene names are human symbols, {100 * species['mouse_share']:.1f}% mouse"
    if detected == organism:
        line = f"Species: {organism}" + (f" ({shares})" if shares else "")
    elif detected is None:
        line = f"Species: {organism}, as the manifest says; not recognised from the gene names" + (f" ({shares})" if shares else "")
    else:
        line = f"Species: {organism} (the gene names look {detected}" + (f": {shares}" if shares else "") + ")"
    orth = _dict(species.get("orthologs"))
    if orth:
        parts = [f"{_int(orth.get('mapped')) or 0:,} of {_int(orth.get('mouse_genes_in')) or 0:,} mouse genes mapped to their one human "
                 "ortholog" + (f" ({orth['table']})" if orth.get("table") else "")]
        no_ortholog, several = _n(orth, "no_human_ortholog"), _n(orth, "several_human_orthologs")
        if no_ortholog:
            parts.append(f"{no_ortholog:,} without a human ortholog, left out")
        if several:
            parts.append(f"{several:,} with several human orthologs, left out")
        summed = _n(orth, "summed_into_one_human_gene")
        if summed:
            parts.append(f"{_count(summed, 'human gene')} summed from several mouse genes")
        line += "; " + "; ".join(parts)
    return line + "."


def _symbols_line(symbols: dict) -> str | None:
    if not symbols:
        return None
    parts = []
    renamed = _n(symbols, "renamed")
    if renamed:
        by = _dict(symbols.get("renamed_by"))
        how = ", ".join(f"{_int(n) or 0:,} {_RENAMED_BY.get(str(k), str(k))}" for k, n in by.items() if _int(n))
        parts.append(f"{_count(renamed, 'name')} renamed to the current HGNC symbol" + (f" ({how})" if how else ""))
    for key, one, many, text in (
        ("ensembl_mapped", "Ensembl id", None, "mapped to symbols"),
        ("merged", "symbol", None, "named by several columns, summed"),
        ("duplicates_summed", "repeated name", None, "summed"),
        ("ambiguous", "name", None, "of several genes kept as written (ambiguous)"),
        ("conflicts", "alias", "aliases", "of a gene the study also measures, kept apart"),
        ("unknown", "unknown name", None, "kept as written"),
    ):
        n = _n(symbols, key)
        if n:
            parts.append(f"{_count(n, one, many)} {text}")
    if not parts:
        return "Gene symbols: all current HGNC symbols, none renamed or merged."
    return "Gene symbols: " + "; ".join(parts) + "."


def _qc_line(qc: dict) -> str | None:
    cells_in, kept = _int(qc.get("cells_in")), _int(qc.get("cells_kept"))
    if cells_in is None or kept is None:
        return None
    line = f"QC: {cells_in:,} cells in, {kept:,} kept, {cells_in - kept:,} dropped"
    dropped = _dict(qc.get("dropped"))
    reasons = [(k, _int(dropped.get(k)) or 0) for k in ("min_genes", "min_counts", "both")]
    if cells_in - kept:
        labels = {"min_genes": "too few genes", "min_counts": "too few counts", "both": "both"}
        line += " (" + ", ".join(f"{n:,} {labels[k]}" for k, n in reasons if n) + ")"
    limits = [f"min_genes {qc['min_genes']}"] if qc.get("min_genes") is not None else []
    if qc.get("min_counts") is not None:
        limits.append(f"min_counts {qc['min_counts']}")
    if limits:
        line += "; thresholds " + ", ".join(limits)
        if qc.get("scaled_for_panel"):
            line += (f" (scaled down for the study's gene panel from {qc.get('min_genes_set', '?')} and "
                     f"{qc.get('min_counts_set', '?')})")
    if qc.get("min_counts_note"):
        line += f"; {qc['min_counts_note']}"
    worst = sorted(((ct, _dict(v)) for ct, v in _dict(qc.get("by_cell_type")).items() if _int(_dict(v).get("dropped"))),
                   key=lambda item: -(_int(item[1].get("dropped")) or 0))[:3]
    if worst:
        line += "; most dropped: " + ", ".join(f"{ct} {_int(v.get('dropped')):,} of {_int(v.get('in')) or 0:,}" for ct, v in worst)
    return line + "."


_KIND_NAMES = {"cell_type": ("Cell types", "Cell Ontology"), "disease": ("Diseases", "MONDO"), "tissue": ("Tissues", "UBERON")}
_HOW = {"id": "by term id", "map": "by the manifest's map", "label": "by term label", "synonym": "by synonym",
        "healthy": "healthy -> normal", "phrase": "by the curated table of label spellings", "reader": "by reading the label",
        "alternatives": "as the common term of the label's alternatives",
        "assumed healthy": "'control' assumed healthy (map it if the controls are patients)",
        "accepted proposal": "by a proposal the manifest accepted (columns.accept_proposals)"}


def _vocabulary_line(kind: str, section: dict) -> str | None:
    """One sentence per annotation kind: how many labels matched a term (and how), and each
    label that matched none, with its cells and the reason."""
    mapped = [m for m in section.get("mapped", []) if isinstance(m, Mapping)]
    unmapped = [m for m in section.get("unmapped", []) if isinstance(m, Mapping)]
    if not mapped and not unmapped:
        return None
    name, onto = _KIND_NAMES.get(kind, (kind, "ontology"))
    how: dict[str, int] = {}
    for m in mapped:
        how[str(m.get("how"))] = how.get(str(m.get("how")), 0) + 1
    line = f"{name}: {len(mapped)} of {len(mapped) + len(unmapped)} labels matched to {onto} terms"
    if how:
        line += " (" + ", ".join(f"{n} {_HOW.get(k, k)}" for k, n in how.items()) + ")"
    renamed = [m for m in mapped if m.get("term_label") != m.get("label")][:6]
    if renamed:
        line += "; " + ", ".join(f"{m['label']} -> {m['term_label']} ({m['term_id']})" for m in renamed)
        extra = sum(1 for m in mapped if m.get("term_label") != m.get("label")) - len(renamed)
        line += f" and {extra} more" if extra > 0 else ""
    if unmapped:
        proposed = {str(p.get("label")): p for p in section.get("proposals", []) if isinstance(p, Mapping)}

        def _proposal(label) -> str:
            p = proposed.get(str(label))
            return f"; proposed, not applied: {p.get('proposal_label')} ({p.get('proposal')})" if p else ""

        line += "; not matched, kept as their own group: " + ", ".join(
            f"'{m.get('label')}' ({_int(m.get('n_cells')) or 0:,} cells, {m.get('reason')}{_proposal(m.get('label'))})"
            for m in unmapped)
    return line + "."


def evidence_line(entry: Mapping) -> str | None:
    """The study's cell-type labels weighed against their cells' marker genes, in one sentence:
    how many the cells support, each text match they contradict (CHECK) and each proposal for
    an unmatched label (None when not recorded)."""
    vocab = _dict(_dict(_dict(entry).get("report")).get("vocabulary"))
    ev = _dict(_dict(vocab.get("cell_type")).get("evidence"))
    if not ev:
        return None
    line = (f"Cells' own marker genes: {_int(ev.get('supported')) or 0} cell-type labels supported, "
            f"{_int(ev.get('not_settled')) or 0} not settled")
    flags = [f for f in ev.get("flags") or [] if isinstance(f, Mapping)]
    props = [f for f in ev.get("proposals") or [] if isinstance(f, Mapping)]
    if flags:
        line += "; CHECK, the cells contradict the text's term: " + ", ".join(
            f"'{f.get('label')}' ({f.get('term_id')}; markers of {f.get('set')}, {float(f.get('score') or 0):+.2f})" for f in flags)
    if props:
        line += "; unmatched labels, the markers propose (not applied): " + ", ".join(
            f"'{f.get('label')}' -> {f.get('proposal')} ({f.get('set')})" for f in props)
    return line + "."


def transfer_line(entry: Mapping) -> str | None:
    """The study's cell-type labels weighed against the label transfer (the majority term among each
    label's cells' neighbours in other studies), in one sentence: how many it supports, each text
    match it contradicts (CHECK) and each proposal for an unmatched label (None when not recorded)."""
    vocab = _dict(_dict(_dict(entry).get("report")).get("vocabulary"))
    rows = [r for r in _dict(vocab.get("cell_type")).get("transfer") or [] if isinstance(r, Mapping)]
    if not rows:
        return None
    by = {v: [r for r in rows if r.get("verdict") == v] for v in ("supported", "not settled", "contradicted", "proposed")}

    def said(r: Mapping) -> str:
        return f"'{r.get('label')}' -> {r.get('term_label') or r.get('term')} ({r.get('term')}; {float(r.get('share') or 0):.0%} of " \
               f"{_int(r.get('n_cells')) or 0:,} cells)"

    line = (f"Neighbours in other studies (label transfer): {len(by['supported'])} cell-type labels supported, "
            f"{len(by['not settled'])} not settled")
    if by["supported"]:
        line += " (" + ", ".join(said(r) for r in by["supported"][:8]) + (" and more" if len(by["supported"]) > 8 else "") + ")"
    if by["contradicted"]:
        line += "; CHECK, the neighbours contradict the text's term: " + ", ".join(said(r) for r in by["contradicted"])
    if by["proposed"]:
        line += "; unmatched labels, the neighbours propose (not applied): " + ", ".join(said(r) for r in by["proposed"])
    return line + "."


def how_matched(how) -> str:
    """How a label was matched to its term, in words (the build report's wording)."""
    return _HOW.get(str(how), str(how))


def label_rows(entry: Mapping) -> list[dict]:
    """Every label of the study (cell type, disease, tissue) as one record: {kind, label, n_cells,
    term_id, term_label, how (in words; for a label with no term, why), how_key (the record's code,
    None without a term), proposal (for a label with no term: the term proposed and by what, never applied; else None), neighbours (cell types: the
    label transfer's verdict in words, or None), markers (cell types the cells' marker genes
    contradict: the CHECK in words, or None)}; [] when the atlas recorded no vocabulary."""
    vocab = _dict(_dict(_dict(entry).get("report")).get("vocabulary"))
    out = []
    for kind in _KIND_NAMES:
        section = _dict(vocab.get(kind))
        text_props = {str(p.get("label")): p for p in section.get("proposals") or [] if isinstance(p, Mapping)}
        ev = _dict(section.get("evidence"))
        marker_props = {str(p.get("label")): p for p in ev.get("proposals") or [] if isinstance(p, Mapping)}
        marker_flags = {str(p.get("label")): p for p in ev.get("flags") or [] if isinstance(p, Mapping)}
        transfer = {str(r.get("label")): r for r in section.get("transfer") or [] if isinstance(r, Mapping)}
        for m in section.get("mapped") or []:
            if not isinstance(m, Mapping):
                continue
            label = str(m.get("label"))
            flag = marker_flags.get(label)
            out.append({"kind": kind, "label": label, "n_cells": _int(m.get("n_cells")) or 0, "term_id": m.get("term_id"),
                        "term_label": m.get("term_label"), "how": how_matched(m.get("how")), "how_key": m.get("how"), "proposal": None,
                        "neighbours": _neighbours(transfer.get(label)),
                        "markers": (f"CHECK: the cells' markers say {flag.get('set')} ({float(flag.get('score') or 0):+.2f})"
                                    if flag else None)})
        for m in section.get("unmapped") or []:
            if not isinstance(m, Mapping):
                continue
            label = str(m.get("label"))
            proposals = []
            if (p := text_props.get(label)) and p.get("proposal"):
                proposals.append(f"{p.get('proposal_label')} ({p.get('proposal')}) from the label's text")
            if (r := transfer.get(label)) and r.get("verdict") == "proposed":
                proposals.append(f"{r.get('term_label') or r.get('term')} ({r.get('term')}) from its cells' neighbours in other "
                                 f"studies ({float(r.get('share') or 0):.0%})")
            if (p := marker_props.get(label)) and p.get("proposal"):
                proposals.append(f"{p.get('proposal')} from its cells' marker genes ({p.get('set')})")
            out.append({"kind": kind, "label": label, "n_cells": _int(m.get("n_cells")) or 0, "term_id": None, "term_label": None,
                        "how": str(m.get("reason") or "no term"), "how_key": None,
                        "proposal": ("; ".join(proposals) + "; not applied (columns.accept_proposals or a map entry applies it)")
                        if proposals else None,
                        "neighbours": _neighbours(transfer.get(label)), "markers": None})
    return out


def _neighbours(row: Mapping | None) -> str | None:
    if not row:
        return None
    return f"{row.get('verdict')}: {' '.join(str(row.get('text') or '').split())}"


def vocabulary_lines(entry: Mapping) -> list[str]:
    """The study's labels as matched to ontology terms, one sentence per annotation kind
    ([] when the atlas recorded no vocabulary for it)."""
    vocab = _dict(_dict(_dict(entry).get("report")).get("vocabulary"))
    return [line for kind in _KIND_NAMES if (line := _vocabulary_line(kind, _dict(vocab.get(kind))))]


def label_transfer_line(meta: Mapping) -> str | None:
    """The atlas's label transfer in one sentence (None when not recorded)."""
    lt = _dict(_dict(_dict(meta).get("vocabulary")).get("label_transfer"))
    acc = _dict(lt.get("accuracy"))
    if not acc:
        return None
    line = (f"Label transfer: each cell's cell type predicted from its {lt.get('k', '?')} nearest labelled cells of other studies "
            f"(encoder embedding); on {_int(acc.get('n_evaluated')) or 0:,} labelled cells held out")
    if "exact" in acc:
        line += f", {100 * acc['exact']:.1f}% get their own term"
        if "compatible" in acc:
            line += f", {100 * acc['compatible']:.1f}% the same cell type (the term or a close ancestor/descendant)"
    else:
        line += ": no cell type is annotated in two studies, nothing to check against"
    return line + ". Filters and rankings use the annotations; the prediction is shown beside them."


def embedding_genes_text(record: Mapping) -> str:
    """Which genes the embedding reads, from a build's record (compute.build.embedding_genes, kept
    in ``meta["method"]["embedding_genes"]``), in one sentence."""
    r = _dict(record)
    if r.get("genes") == "shared":
        return (f"Embedding (UMAP, label transfer) on the {_int(r.get('n_genes')) or 0:,} genes every study measured: "
                f"{r.get('reason', 'not recorded')}. Each cell is normalised again over them, so the same cells measured on two "
                "panels get one embedding; attributions read every gene a study measured.")
    return f"Embedding (UMAP, label transfer) on every gene a cell's study measured: {r.get('reason', 'not recorded')}."


def embedding_line(meta: Mapping) -> str | None:
    """:func:`embedding_genes_text` of an atlas root; None when its build did not record it."""
    record = _dict(_dict(_dict(meta).get("method")).get("embedding_genes"))
    return embedding_genes_text(record) if record else None


def integration_line(meta: Mapping) -> str | None:
    """How well the encoder's embedding integrates studies (``meta["report"]["integration"]``,
    scIB definitions on the cell-type terms) in one sentence; None when not recorded."""
    m = _dict(_dict(_dict(meta).get("report")).get("integration"))
    if not m:
        return None

    def f(key):
        v = m.get(key)
        return "n/a" if v is None else f"{v:.2f}"

    return (f"Integration: of each cell's {m.get('k', 15)} nearest neighbours in the embedding, {f('cross_study_share')} are its cell "
            f"type from another study (perfect mixing: {f('perfect_share')}; {f('mixing')} of it), neighbourhood purity "
            f"{f('purity')}, cell-type ASW {f('celltype_asw')}, iLISI within type {f('ilisi')} "
            f"({m.get('n_cells', 0):,} labelled cells, {m.get('n_studies', 0)} studies).")


def _reference_rule(calibration: Mapping) -> str:
    """', of its tissue (...) and lineage (...)' from a calibration record ('' when not recorded)."""
    rule = _dict(calibration.get("reference_rule"))
    if not rule:
        return ""
    tissues, lineages = ", ".join(map(str, rule.get("tissues") or [])), ", ".join(map(str, rule.get("lineages") or []))
    return f", cells of its tissue ({tissues or 'unknown'}) and lineage ({lineages or 'any'})"


def _left_out(calibration: Mapping) -> str:
    """'; studies left out: A (why), ...' from a calibration record ('' when none was)."""
    left = _dict(calibration.get("references_left_out"))
    return ("; near-full panels left out: " + ", ".join(f"{k} ({v})" for k, v in left.items())) if left else ""


def _metadata_line(section) -> str | None:
    """The donor or sample metadata a study's cells carry (sex, age, ...) and where each came from;
    None for reports written before metadata was carried."""
    if not isinstance(section, Mapping):
        return None
    columns = _dict(section.get("columns"))
    if not columns:
        return ("Donor or sample metadata: none found (CELLxGENE's sex, development_stage, ... or an age column are carried "
                "by themselves; name other obs columns under columns.metadata).")
    parts = []
    for name, how in columns.items():
        how = _dict(how)
        source = str(how.get("column", name))
        named = "named in the manifest" if how.get("from") == "manifest" else "found in the file"
        parts.append(f"{name} ({named}" + (f", obs column '{source}')" if source != name else ")"))
    return f"Donor or sample metadata: {', '.join(parts)}."


def study_report_lines(entry: Mapping) -> list[str]:
    """How the study of atlas root entry ``entry`` was read, one plain sentence per topic: value
    kind (with the TPM/FPKM approximation note), species and ortholog mapping, symbol renames
    and merges, QC (cells in, kept, dropped by reason), genes measured and the measured share.
    [NOT_RECORDED] when the atlas kept no ingest report for it. Warnings: :func:`study_warnings`."""
    entry = _dict(entry)
    report = _dict(entry.get("report"))
    lines = []
    if report:
        lines += [_values_line(_dict(report.get("values"))), _species_line(_dict(report.get("species"))),
                  _symbols_line(_dict(report.get("symbols"))), _qc_line(_dict(report.get("qc"))), *vocabulary_lines(entry),
                  evidence_line(entry), transfer_line(entry), _metadata_line(report.get("metadata"))]
    else:
        lines.append(NOT_RECORDED)
    panel = _dict(entry.get("panel"))
    n_measured = _int(report.get("n_genes_measured"))
    n_in_panel = _int(panel.get("n_genes_measured"))
    overlap = _dict(entry.get("gene_overlap"))
    genes = None
    if n_measured is not None:
        genes = f"Genes measured: {n_measured:,}"
        if n_in_panel is not None and n_in_panel != n_measured:
            genes += f", {n_in_panel:,} of them in the model's gene order"
    elif n_in_panel is not None:
        genes = f"Genes measured in the model's gene order: {n_in_panel:,}"
    if genes and _int(overlap.get("n_model_genes")):
        genes += f" (the model has {_int(overlap['n_model_genes']):,})"
    lines.append(genes + "." if genes else None)
    share = measured_share(entry)
    calibration = (entry.get("panel") or {}).get("calibration") or {}
    if share is not None and (entry.get("panel") or {}).get("gene_scale"):
        refs = ", ".join(f"{k} {v:,}" for k, v in (calibration.get("reference_studies") or {}).items())
        used, dropped = calibration.get("reference_cells", 0), calibration.get("reference_cells_dropped_by_qc", 0)
        lines.append(f"Measured share: {share:.0%}. Panel calibration: its values are multiplied gene by gene by factors "
                     f"from {used:,} reference cells of the most complete panels{_reference_rule(calibration)}, attributed whole "
                     f"and on this panel (of {used + dropped:,} matched to its cells: {refs}; {dropped:,} left out by this study's "
                     f"QC); {calibration.get('genes_calibrated', 0):,} genes have their own factor, "
                     f"{calibration.get('genes_overall_ratio', 0):,} the panel's overall ratio "
                     f"({calibration.get('overall_ratio', 0):.3g}){_left_out(calibration)}.")
    elif share is not None:
        skipped = (f" Not calibrated gene by gene: {calibration['skipped']}{_left_out(calibration)}." if calibration.get("skipped")
                   else "")
        lines.append(f"Measured share: {share:.0%} (the share of a cell's attribution this study's genes are estimated to "
                     "carry; its values are multiplied by it so studies measured on different gene panels share one scale)."
                     + skipped)
    return [line for line in lines if line]


def study_report_text(meta: Mapping) -> str:
    """The build report of an atlas root (``Atlas.meta``) as text: per study its report lines and
    warnings, then the atlas-level warnings (printed by ``build`` and ``info``)."""
    lines = ["build report:"]
    for e in _dict(meta).get("studies", []):
        tag = " [SIMULATED]" if e.get("simulated") else ""
        lines.append(f"  {e['id']}{tag}: {_int(e.get('n_cells')) or 0:,} cells")
        lines += [f"    {line}" for line in study_report_lines(e)]
        lines += [f"    warning: {w}" for w in study_warnings(e)]
    for line in (embedding_line(meta), integration_line(meta), label_transfer_line(meta)):
        if line:
            lines.append(f"  {line}")
    lines += [f"  warning: {w}" for w in atlas_warnings(meta)]
    return "\n".join(lines)

"""``python -m compute labels MANIFEST``: before any build, every study's labels with the term
each would get, how, and the proposal where there is none, as a ready-to-paste
``columns.cell_type_map`` / ``columns.disease_map`` (issue 34).

The labels are matched exactly as the build matches them (compute.ingest.standard_cells, with
the manifest's maps); only the cells' metadata is read, never their values."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StudyLabels", "labels_json", "labels_text", "preview_labels"]

PREVIEW_KINDS = ("cell_type", "disease")
_SIMPLE_KEY_MAX = 1000


@dataclass(frozen=True)
class StudyLabels:
    """One study's preview: per kind (cell_type, disease) the rows {label, n_cells, term_id,
    term_label, how, reason, proposal, proposal_label, notes}; ``error`` when the study could
    not be read (the message says what to fix)."""

    study: str
    source: str
    n_cells: int = 0
    kinds: dict = field(default_factory=dict)
    error: str | None = None


def _obs(spec):
    """The study's cell metadata (obs) only."""
    from compute.errors import IngestError

    if spec.source.kind == "scanpy-pbmc68k":
        import scanpy as sc

        return sc.datasets.pbmc68k_reduced().obs
    if spec.source.kind == "census":
        raise IngestError("a Census study's labels come with CELLxGENE ontology term ids; preview them with "
                          "`python -m compute census-plan MANIFEST`")
    path = spec.source.path
    if path is None or not path.is_file():
        raise IngestError(f"file not found: {path} (fix 'source.path', relative to the manifest; for the demo data run "
                          "`python -m compute simulate`)")
    import anndata as ad

    try:
        a = ad.read_h5ad(path, backed="r")
    except Exception as exc:  # h5py/anndata raise many types for a damaged file
        raise IngestError(f"cannot read h5ad {path}: {exc}") from exc
    try:
        return a.obs.copy()
    finally:
        a.file.close()


def _rows(report: dict, matches_by_label: dict) -> list[dict]:
    rows = []
    for m in report["mapped"]:
        extra = matches_by_label.get(m["label"], {})
        rows.append({"label": m["label"], "n_cells": m["n_cells"], "term_id": m["term_id"], "term_label": m["term_label"],
                     "how": m["how"], "reason": None, "proposal": None, "proposal_label": None,
                     "notes": extra.get("notes", [])})
    proposals = {p["label"]: p for p in report.get("proposals", [])}
    for u in report["unmapped"]:
        p = proposals.get(u["label"], {})
        rows.append({"label": u["label"], "n_cells": u["n_cells"], "term_id": None, "term_label": None, "how": None,
                     "reason": u["reason"], "proposal": p.get("proposal"), "proposal_label": p.get("proposal_label"),
                     "notes": p.get("why", [])})
    rows.sort(key=lambda r: (-r["n_cells"], r["label"]))
    return rows


def _marker_rows(spec, rows: list[dict]) -> None:
    """Adds to each cell-type row ``markers``: {verdict, text, set, score, confidence,
    proposal} from the cells' own marker genes (compute.vocabulary.marker_evidence); reads the
    study's values (as ingest reads them), normalised to 1e4 per cell and log1p."""
    import numpy as np
    import scipy.sparse as sp

    from compute.ingest._read import read_study
    from compute.vocabulary import judge_markers, marker_evidence

    a = read_study(spec)
    X = sp.csr_matrix(a.X, dtype=np.float64)
    X = sp.diags(1e4 / np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1.0)) @ X
    X.data = np.log1p(X.data)
    evidence = marker_evidence(X, list(a.var_names), a.obs["cell_type_original"].astype(str).to_numpy())
    for r in rows:
        ev = evidence.get(str(r["label"]))
        verdict, text = judge_markers(ev, r["term_id"])
        r["markers"] = {"verdict": verdict, "text": text, "set": ev.best if ev else None,
                        "score": ev.score if ev else None, "confidence": ev.confidence if ev else None,
                        "proposal": ev.terms[0] if ev is not None and ev.best and verdict in ("proposed", "contradicted") else None}


def _transfer_rows(study: str, rows: list[dict], cells) -> None:
    """Adds to each cell-type row ``transfer``: {verdict, text, term, share} from a built
    atlas's label transfer (``cells``: its cells table) for the study's cells."""
    from compute.vocabulary import judge_transfer, transfer_evidence

    mine = cells[cells["study"].astype(str) == study]
    evidence = transfer_evidence(mine["cell_type_original"], mine["cell_type_predicted_ontology_term_id"]) if len(mine) else {}
    for r in rows:
        ev = evidence.get(str(r["label"]))
        verdict, text = judge_transfer(ev, r["term_id"])
        if not len(mine):
            text = "the atlas has no cells of this study"
        r["transfer"] = {"verdict": verdict, "text": text, "term": ev.term if ev else None, "share": ev.share if ev else None}


def preview_labels(manifest, studies: tuple[str, ...] = (), markers: bool = False, atlas_cells=None) -> list[StudyLabels]:
    """A :class:`StudyLabels` per study of ``manifest`` (those named in ``studies``, when given).
    A study that cannot be read gets its ``error``; the others are still previewed. With
    ``markers``, each cell-type label also gets the evidence of its cells' marker genes (the
    study's values are read: slower). With ``atlas_cells`` (a built atlas's cells table, with
    its label transfer's columns), each cell-type label also gets the majority term its cells'
    neighbours in other studies carry."""
    from compute.errors import SigAtlasError
    from compute.ingest._read import standard_cells
    from compute.vocabulary import match_label

    out = []
    for spec in manifest.studies:
        if studies and spec.id not in studies:
            continue
        source = str(spec.source.path) if spec.source.path is not None else spec.source.kind
        try:
            obs = _obs(spec)
            _, vocabulary, _ = standard_cells(obs, spec)
        except SigAtlasError as exc:
            out.append(StudyLabels(spec.id, source, error=str(exc)))
            continue
        kinds = {}
        for kind in PREVIEW_KINDS:
            rep = vocabulary[kind]
            notes = {n["label"]: n for n in rep.get("notes", [])}
            rows = _rows(rep, notes)
            for r in rows:  # what automatic matching would give a label the map leaves unmapped
                if r["term_id"] is None and r["proposal"] is None and r["label"] in spec.label_map(kind):
                    auto = match_label(r["label"], kind)
                    r["proposal"] = auto.term_id or auto.proposal
                    r["proposal_label"] = auto.term_label or auto.proposal_label
                    if r["proposal"]:
                        r["notes"] = [f"without the map: {auto.how or 'unmatched'}", *auto.notes]
            kinds[kind] = rows
        if atlas_cells is not None:
            _transfer_rows(spec.id, kinds["cell_type"], atlas_cells)
        if markers:
            try:
                _marker_rows(spec, kinds["cell_type"])
            except SigAtlasError as exc:
                out.append(StudyLabels(spec.id, source, int(len(obs)), kinds, error=f"marker evidence: {exc}"))
                continue
        out.append(StudyLabels(spec.id, source, int(len(obs)), kinds))
    missing = [s for s in studies if s not in {p.study for p in out}]
    if missing:
        from compute.errors import ManifestError

        raise ManifestError(f"{manifest.path}: no study {', '.join(map(repr, missing))} (studies: "
                            f"{', '.join(s.id for s in manifest.studies)})")
    return out


def _yaml_key(label: str) -> str:
    """``label`` as a YAML mapping key that reads back as the same string: double-quoted (a
    JSON string is a YAML double-quoted scalar), escaped when it is not printable."""
    import json

    return json.dumps(str(label), ensure_ascii=not str(label).isprintable())


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def map_lines(rows: list[dict], kind: str, indent: str = "      ") -> list[str]:
    """The ready-to-paste ``columns.<kind>_map``: every label, sent to the term it gets now, to
    the proposal (marked PROPOSED: check it) or to null (left unmapped)."""
    lines = [f"{indent[:-2]}{kind}_map:"]
    for r in rows:
        key = _yaml_key(r["label"])
        if r["term_id"]:
            value = f"{r['term_id']}  # {_comment(r['term_label'])} ({r['how']})"
        elif r["proposal"]:
            value = f"{r['proposal']}  # PROPOSED, check it: {_comment(r['proposal_label'] or '')}"
        else:
            value = f"null  # no term; left unmapped ({_comment(r['reason'] or '')})"
        if len(key) > _SIMPLE_KEY_MAX:  # YAML's simple keys end at 1,024 characters: an explicit key
            lines += [f"{indent}? {key}", f"{indent}: {value}"]
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def labels_text(previews: list[StudyLabels]) -> str:
    """The preview as text: per study and kind, each label with its term, how, and the
    proposal where there is none; then the ready-to-paste maps."""
    out = []
    for p in previews:
        out.append(f"study {p.study} ({p.source})" + (f": {p.n_cells:,} cells" if not p.error else ""))
        if p.error:
            out.append(f"  ERROR: {p.error}")
            if not p.kinds:
                continue
        for kind, rows in p.kinds.items():
            n_map = sum(r["term_id"] is not None for r in rows)
            out.append(f"  {kind}: {len(rows)} labels, {n_map} matched, {len(rows) - n_map} unmatched")
            for r in rows:
                shown = ascii(r["label"])[1:-1] if not str(r["label"]).isprintable() else r["label"]
                if r["term_id"]:
                    line = f"    {shown!s} ({r['n_cells']:,}) -> {r['term_id']} {r['term_label']}  [{r['how']}]"
                else:
                    line = f"    {shown!s} ({r['n_cells']:,}) -> no term: {r['reason']}"
                    if r["proposal"]:
                        line += f"; PROPOSED {r['proposal']} {r['proposal_label']}"
                out.append(line)
                for n in r["notes"]:
                    out.append(f"        {_comment(n)}")
                if r.get("markers"):
                    out.append(f"        cells: {r['markers']['verdict']}: {_comment(r['markers']['text'])}")
                if r.get("transfer"):
                    out.append(f"        neighbours: {r['transfer']['verdict']}: {_comment(r['transfer']['text'])}")
        out.append(f"  ready to paste under study {p.study}'s columns: (a map entry wins over automatic matching)")
        for kind, rows in p.kinds.items():
            out += map_lines(rows, kind)
    return "\n".join(out)


def labels_json(previews: list[StudyLabels]) -> list[dict]:
    """The preview as JSON-ready dicts."""
    return [{"study": p.study, "source": p.source, "n_cells": p.n_cells, "error": p.error, "labels": p.kinds}
            for p in previews]

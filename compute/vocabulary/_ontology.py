"""The ontologies, read offline from cellxgene-ontology-guide's bundled files (the CELLxGENE
schema's pinned versions of CL, MONDO, UBERON and PATO)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["HEALTHY", "KINDS", "Ontologies", "TermInfo", "ontologies"]

# annotation kind -> the ontology its terms come from
KINDS = {"cell_type": "CL", "disease": "MONDO", "tissue": "UBERON"}
# the CELLxGENE schema's term for "no disease" (PATO, not MONDO)
HEALTHY = "PATO:0000461"
_ID = re.compile(r"^(CL|MONDO|UBERON|PATO):\d{7}$")


@dataclass(frozen=True)
class TermInfo:
    id: str
    label: str
    synonyms: tuple[str, ...]
    ancestors: dict  # ancestor id -> distance (1 = parent)
    deprecated: bool
    replaced_by: str | None


class Ontologies:
    """Term lookup over the bundled ontologies. Loading an ontology takes 0.1-0.6 s, once per
    process (:func:`ontologies` returns the shared instance)."""

    def __init__(self):
        from cellxgene_ontology_guide.ontology_parser import OntologyParser

        self._parser = OntologyParser()
        self._text_index: dict[str, tuple] = {}

    @property
    def versions(self) -> dict[str, str]:
        """The CELLxGENE schema version and the version of each ontology used."""
        sup = self._parser.cxg_schema.supported_ontologies
        out = {"cellxgene_schema": str(self._parser.cxg_schema.version)}
        out.update({name: str(sup[name]["version"]) for name in (*KINDS.values(), "PATO") if name in sup})
        return out

    def _terms(self, ontology: str) -> dict:
        return self._parser.cxg_schema.ontology(ontology)

    @staticmethod
    def looks_like_id(text: str) -> bool:
        return bool(_ID.match(text.strip()))

    def term(self, term_id: str) -> TermInfo | None:
        """The term, or None when ``term_id`` is not a CL/MONDO/UBERON/PATO id the bundle knows."""
        term_id = term_id.strip()
        m = _ID.match(term_id)
        if not m:
            return None
        rec = self._terms(m.group(1)).get(term_id)
        if rec is None:
            return None
        return TermInfo(
            id=term_id, label=str(rec["label"]), synonyms=tuple(map(str, rec.get("synonyms") or ())),
            ancestors=dict(rec.get("ancestors") or {}), deprecated=bool(rec.get("deprecated")),
            replaced_by=rec.get("replaced_by") or None,
        )

    def kind_of(self, term_id: str) -> str | None:
        """The annotation kind (cell_type, disease, tissue) a term id belongs to."""
        m = _ID.match(term_id.strip())
        if not m:
            return None
        prefix = m.group(1)
        if prefix == "PATO":
            return "disease" if term_id == HEALTHY else None
        return {v: k for k, v in KINDS.items()}[prefix]

    def text_index(self, kind: str) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        """(normalised label -> ids, normalised synonym -> ids) over the kind's live terms
        (built once per kind)."""
        if kind not in self._text_index:
            self._text_index[kind] = self._build_text_index(kind)
        return self._text_index[kind]

    def _build_text_index(self, kind: str) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        from compute.vocabulary._text import normalise_label

        labels: dict[str, set[str]] = {}
        synonyms: dict[str, set[str]] = {}
        for tid, rec in self._terms(KINDS[kind]).items():
            if rec.get("deprecated"):
                continue
            labels.setdefault(normalise_label(rec["label"]), set()).add(tid)
            for s in rec.get("synonyms") or ():
                synonyms.setdefault(normalise_label(s), set()).add(tid)
        return ({k: tuple(sorted(v)) for k, v in labels.items()}, {k: tuple(sorted(v)) for k, v in synonyms.items()})


@functools.cache
def ontologies() -> Ontologies:
    """The process-wide :class:`Ontologies` (loaded on first use)."""
    return Ontologies()

"""One vocabulary across studies: cell types, diseases and tissues as Cell Ontology, MONDO and
UBERON terms (PATO:0000461 "normal" for healthy donors), from cellxgene-ontology-guide's
bundled ontologies (offline); label transfer through the encoder's embedding."""

from compute.vocabulary._disease import read_disease
from compute.vocabulary._evaluate import LabelScore, score_labels, steps_between
from compute.vocabulary._markers import (
    MarkerEvidence,
    MarkerSums,
    TransferEvidence,
    evidence_from_sums,
    judge_markers,
    judge_transfer,
    marker_evidence,
    marker_sets,
    marker_sums,
    transfer_evidence,
)
from compute.vocabulary._match import (
    NO_LABEL,
    Harmonised,
    TermMatch,
    harmonise,
    match_label,
)
from compute.vocabulary._ontology import HEALTHY, KINDS, Ontologies, TermInfo, ontologies
from compute.vocabulary._reader import Reading, read_cell_type
from compute.vocabulary._terms import (
    LINEAGES,
    MIXTURE_TERMS,
    POSITIVE_DISTANCE,
    cell_lineages,
    term_closure,
    term_relation,
    tissues_related,
)
from compute.vocabulary._text import normalise_label
from compute.vocabulary._transfer import (
    MAX_REFERENCE,
    TRANSFER_K,
    TransferReference,
    TransferResult,
    accuracy_counts,
    accuracy_summary,
    make_reference,
    predict_study,
    reference_positions,
    shared_terms,
    transfer_labels,
    transfer_summary,
)

__all__ = [
    "HEALTHY",
    "KINDS",
    "LINEAGES",
    "MIXTURE_TERMS",
    "MAX_REFERENCE",
    "NO_LABEL",
    "POSITIVE_DISTANCE",
    "Harmonised",
    "LabelScore",
    "MarkerEvidence",
    "MarkerSums",
    "Reading",
    "Ontologies",
    "TermInfo",
    "TermMatch",
    "TRANSFER_K",
    "TransferEvidence",
    "TransferReference",
    "TransferResult",
    "accuracy_counts",
    "accuracy_summary",
    "cell_lineages",
    "evidence_from_sums",
    "harmonise",
    "judge_markers",
    "judge_transfer",
    "make_reference",
    "marker_evidence",
    "marker_sets",
    "marker_sums",
    "match_label",
    "normalise_label",
    "ontologies",
    "predict_study",
    "read_cell_type",
    "read_disease",
    "reference_positions",
    "score_labels",
    "shared_terms",
    "steps_between",
    "term_closure",
    "term_relation",
    "tissues_related",
    "transfer_evidence",
    "transfer_labels",
    "transfer_summary",
]

"""The per-study ingest report: what was read, renamed, mapped and dropped, and why."""

from __future__ import annotations

import json

from compute.errors import IngestError

__all__ = ["REPORT_KEY", "REPORT_SECTIONS", "ingest_report", "store_report"]

# stored as a JSON string: h5ad keeps a string exactly, while nested dicts of lists would be
# rewritten into arrays and groups that do not read back as the same lists
REPORT_KEY = "sigatlas_report"
REPORT_SECTIONS = ("values", "species", "symbols", "qc", "n_genes_measured", "vocabulary", "metadata", "warnings")


def store_report(adata, report: dict) -> None:
    """Write ``report`` (a JSON-able dict with :data:`REPORT_SECTIONS`) into ``adata.uns``."""
    adata.uns[REPORT_KEY] = json.dumps({k: report.get(k) for k in REPORT_SECTIONS})


def ingest_report(adata) -> dict:
    """The ingest report of an AnnData written by :func:`read_study` /
    :func:`qc_and_normalise` (also after an h5ad round trip): a dict with the keys
    ``values``, ``species``, ``symbols``, ``qc`` (None before QC), ``n_genes_measured``,
    ``vocabulary`` (per annotation kind: the labels mapped to ontology terms and those not),
    ``metadata`` (the donor or sample columns carried, each with its obs column and whether the
    manifest named it, and those left out; None in reports written before) and ``warnings``. Raises IngestError when the AnnData carries no report."""
    raw = adata.uns.get(REPORT_KEY)
    if not isinstance(raw, str):
        raise IngestError(
            f"this AnnData has no uns['{REPORT_KEY}']: it was not produced by compute.ingest "
            "(read_study, then qc_and_normalise); re-run ingest (python -m compute build) to get one."
        )
    return json.loads(raw)

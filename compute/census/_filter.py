"""A census source's cell filter as a SOMA ``value_filter`` over the Census obs columns."""

from __future__ import annotations

import re

from compute.manifest import CensusSource

__all__ = ["NO_TERM_COLUMNS", "TERM_ID", "filter_clauses", "obs_value_filter"]

# an ontology term id (MONDO:0100096, CL:0000236, EFO:0009922, HsapDv:0000087): selects on the
# column's *_ontology_term_id twin instead of its label
TERM_ID = re.compile(r"^[A-Za-z]+:\d+$")
# Census obs columns with no ontology twin: their values are always taken as written
NO_TERM_COLUMNS = frozenset({"dataset_id", "donor_id", "suspension_type"})


def _literal(values) -> str:
    # Python literals: the SOMA filter parser reads Python expressions, and repr quotes a value
    # holding a quote (the assay "10x 3' v3") correctly
    return "[" + ", ".join(repr(str(v)) for v in values) + "]"


def filter_clauses(source: CensusSource) -> list[tuple[str, str, tuple[str, ...]]]:
    """(manifest key, Census obs column, values) for every condition of the filter, in order."""
    out = []
    for key, values in source.filter:
        ids = tuple(v for v in values if key not in NO_TERM_COLUMNS and TERM_ID.match(v))
        labels = tuple(v for v in values if v not in ids)
        if labels:
            out.append((key, key, labels))
        if ids:
            out.append((key, f"{key}_ontology_term_id", ids))
    return out


def obs_value_filter(source: CensusSource) -> str:
    """The SOMA value filter selecting the source's cells: every filter key must match (one of
    its values, by label or by term id), and with ``primary_only`` the cell must be primary data
    (the Census holds some cells twice, once in each dataset that published them)."""
    by_key: dict[str, list[str]] = {}
    for key, column, values in filter_clauses(source):
        by_key.setdefault(key, []).append(f"{column} in {_literal(values)}")
    clauses = ["is_primary_data == True"] if source.primary_only else []
    clauses += [parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")" for parts in by_key.values()]
    return " and ".join(clauses)

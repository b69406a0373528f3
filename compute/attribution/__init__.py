"""Per-cell gene attributions: exact fast Integrated Gradients, Captum reference paths."""

from compute.attribution._engine import (
    METHODS,
    DegenerateAttributionWarning,
    attribute,
    describe_path,
    gauss_legendre,
    iter_attributions,
    scale_rows,
)

__all__ = [
    "METHODS",
    "DegenerateAttributionWarning",
    "attribute",
    "describe_path",
    "gauss_legendre",
    "iter_attributions",
    "scale_rows",
]

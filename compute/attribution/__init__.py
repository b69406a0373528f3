"""Per-cell gene attributions: exact fast Integrated Gradients, Captum reference paths."""

from compute.attribution._engine import METHODS, attribute, gauss_legendre, scale_rows

__all__ = ["METHODS", "attribute", "gauss_legendre", "scale_rows"]

"""SigAtlas compute: manifest -> ingest -> encoder -> attributions -> embedding -> atlas.

Importing this package is cheap and never imports torch; the heavy stages live in
``compute.model``, ``compute.attribution`` and ``compute.embedding`` and are imported
by the build only.
"""

from compute.errors import (
    AtlasFormatError,
    IngestError,
    ManifestError,
    ModelError,
    QueryError,
    SigAtlasError,
)

__all__ = [
    "AtlasFormatError",
    "IngestError",
    "ManifestError",
    "ModelError",
    "QueryError",
    "SigAtlasError",
]

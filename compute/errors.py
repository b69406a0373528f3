"""Exception classes. Every message says what was wrong, where, and what to do."""


class SigAtlasError(Exception):
    """Base class of SigAtlas' own errors."""


class ManifestError(SigAtlasError, ValueError):
    """The data manifest is malformed: a key is unknown, missing or of the wrong type."""


class IngestError(SigAtlasError, ValueError):
    """A study could not be read, normalised or aligned to the gene order."""


class ModelError(SigAtlasError, ValueError):
    """An encoder directory is missing files or does not match the expected architecture."""


class AtlasFormatError(SigAtlasError, OSError):
    """An atlas on disk is missing, incomplete, or of a format version this code cannot read."""


class StorageError(SigAtlasError, OSError):
    """A file could not be written (disk full, read-only file system, no permission): names the
    path and what is needed."""


class QueryError(SigAtlasError, ValueError):
    """A query cannot be answered (no gene matched, empty selection, bad parameter)."""


class CacheError(StorageError):
    """The cache folder (``$SIGATLAS_CACHE_DIR``) cannot be used: full, read-only, removed and not
    re-creatable. Names the folder and the fix; a server answers 503 with it, or refuses to start."""

    def __init__(self, message: str, directory=None):
        super().__init__(message)
        self.directory = directory

from compute.errors import SigAtlasError

__all__ = ["CensusError"]


class CensusError(SigAtlasError):
    """The Census could not be opened or read, or holds something other than the manifest expects."""

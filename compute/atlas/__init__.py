"""The versioned on-disk atlas: writer (build side) and read-only ``Atlas`` (dashboard side)."""

from compute.atlas._cache import (
    CacheError,
    ResultCache,
    cache_error,
    fork_safe_cache,
    private_folder,
    probe_writable,
    sqlite_guard,
)
from compute.atlas._format import ATTR_PREFIX, CELLS_FILE, EXPR_PREFIX, FORMAT_VERSION, ROOT_FILE
from compute.atlas._import_signature import SignatureImportError, import_signature
from compute.atlas._panel import measured_shares, read_study_panel
from compute.atlas._read import Atlas, SignatureWarning, StudyInfo
from compute.atlas._report import (
    NOT_RECORDED,
    atlas_warnings,
    how_matched,
    integration_line,
    label_rows,
    label_transfer_line,
    measured_share,
    study_report_lines,
    study_report_text,
    study_warnings,
    transfer_line,
    vocabulary_lines,
)
from compute.atlas._store import GeneMajorStore, write_gene_major
from compute.atlas._verify import VerifyReport, verify_atlas
from compute.atlas._vocab import (
    PREDICTIONS_FILE,
    VOCABULARY_FILE,
    TermTree,
    write_predictions,
    write_vocabulary,
)
from compute.atlas._write import (
    StudyArrays,
    begin_atlas,
    publish_version,
    stage_version,
    versions_dir,
    write_atlas,
    write_root,
    write_study,
    write_study_blocks,
)
from compute.errors import AtlasFormatError, QueryError

__all__ = [
    "CacheError",
    "cache_error",
    "private_folder",
    "probe_writable",
    "ATTR_PREFIX",
    "CELLS_FILE",
    "EXPR_PREFIX",
    "FORMAT_VERSION",
    "ROOT_FILE",
    "PREDICTIONS_FILE",
    "VOCABULARY_FILE",
    "write_predictions",
    "TermTree",
    "write_vocabulary",
    "VerifyReport",
    "begin_atlas",
    "publish_version",
    "stage_version",
    "versions_dir",
    "verify_atlas",
    "write_gene_major",
    "write_root",
    "write_study",
    "write_study_blocks",
    "GeneMajorStore",
    "ResultCache",
    "fork_safe_cache",
    "sqlite_guard",
    "Atlas",
    "AtlasFormatError",
    "QueryError",
    "SignatureImportError",
    "SignatureWarning",
    "StudyArrays",
    "StudyInfo",
    "import_signature",
    "measured_shares",
    "read_study_panel",
    "NOT_RECORDED",
    "atlas_warnings",
    "how_matched",
    "integration_line",
    "label_rows",
    "label_transfer_line",
    "measured_share",
    "study_report_lines",
    "study_report_text",
    "study_warnings",
    "transfer_line",
    "vocabulary_lines",
    "write_atlas",
]

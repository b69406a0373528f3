"""Component ids, in one place (short: browser tests use them)."""

URL = "url"
STATE_SEARCH = "state-search"  # the current state as a query string (dashboard.state)
STATE_NOTES = "state-notes"
ROOT = "root"

GENES = "genes"
RUN = "run"
CANCEL = "cancel"
PRESET_PREFIX = "preset-"
PRESET_SELECT = "preset-select"
UPLOAD = "upload"
UPLOAD_SETS = "upload-sets"
UPLOAD_STORE = "upload-store"
UPLOAD_NOTE = "upload-note"
QUERY_REQUEST = "query-request"
RESULT_KEY = "result-key"  # the stored result of the last query that ran
QUERY_ERROR = "query-error"  # why the last query failed, with its gene text
PROGRESS = "progress"
PROGRESS_TEXT = "progress-text"

CELL_TYPES = "cell-types"
DISEASES = "diseases"
TISSUES = "tissues"
STUDIES = "studies"
DISEASE_GROUPS = "disease-groups"  # rank diseases at these parent terms
DISEASE_GROUPS_NOTE = "disease-groups-note"  # which diseases each chosen term pools
DATA_KIND = "data-kind"
RULE = "rule"
CUT = "cut"  # the hit rule's cut-off (state: cutoff)
CELL_MIN = "cell-min"
SAMP_MIN = "samp-min"
MIN_COVERAGE = "min-coverage"
TOP_N = "top-n"
NULL_DRAWS = "null-draws"

TABS = "tabs"
GROUP_BY = "group-by"
HEAT_MODE = "heat-mode"
HEAT_ORDER = "heat-order"
UMAP_COLOR = "umap-color"
DRIVER_GROUP = "driver-group"

RESOLUTION = "resolution"
STATUS = "status"
DISEASE_FIG = "disease-fig"
DISEASE_TABLE = "disease-table"
DISEASE_TABLE_WRAP = "disease-table-wrap"
ROBUST_FIG = "robust-fig"
DRIVER_FIG = "driver-fig"
COMPARE_FIG = "compare-fig"
SCATTER_FIG = "scatter-fig"
STUDY_GRID = "study-grid"
EXCLUDED_DISEASES = "excluded-diseases"  # the studies left out of the ranking, under the disease ranking
EXCLUDED_STUDIES = "excluded-studies"  # the same list in the Studies tab
COVERAGE_HELP = "coverage-help"
STUDY_REPORTS = "study-reports"  # how each study was read (its ingest report)
VOCABULARY_NOTE = "vocabulary-note"  # which labels the views use: ontology versions, label transfer accuracy
STUDY_VOCABULARY_PREFIX = "study-vocabulary-"  # + study id: its labels as matched to ontology terms
ATLAS_WARNINGS = "atlas-warnings"
UMAP_FIG = "umap-fig"
UMAP_BADGE = "umap-badge"
UMAP_LABELS = "umap-labels"  # which cell-type labels the UMAP shows
HEATMAP_FIG = "heatmap-fig"
SIM_BADGE = "sim-badge"

# the Modules tab
MODULES_LOADING = "modules-loading"
MODULES_SIM = "modules-sim"
MODULES_SUMMARY = "modules-summary"
MODULES_HEAD = "modules-summary-head"  # "N of M signature genes are among the K module genes; ..."
MODULES_READING = "modules-reading"
MODULES_NONE = "modules-none"  # the atlas has no modules
MODULES_ERROR = "modules-error"
MODULES_NOT_CONSIDERED = "modules-not-considered"
MODULES_OVERLAP_GRID = "modules-overlap-grid"
MODULES_MISSING_GRID = "modules-missing-grid"
MODULES_OVERLAP_CSV = "modules-overlap-csv"
MODULES_MISSING_CSV = "modules-missing-csv"
ADD_MISSING = "add-missing"
MODULES_FIG = "modules-fig"
MODULE_SELECT = "module-select"
MODULE_DETAIL = "module-detail"
MODULE_HUBS = "module-hubs"
MODULE_GENES = "module-genes"
USE_MODULE = "use-module"
MODULES_METHOD = "modules-method"
MODULES_STORE = "modules-store"  # the result key rendered, its top missing genes and every module's genes

SHARE_LINK = "share-link"
COPY_LINK = "copy-link"
DOWNLOAD = "download"
CSV_PREFIX = "csv-"  # + view name
IMG_PREFIX = "img-"  # + view name + "-svg" / "-png"
SNAPSHOT = "snapshot"

PRESENTER = "presenter"
SAVE_VIEW = "save-view"
SAVED_VIEWS = "saved-views"
PREV_VIEW = "prev-view"
NEXT_VIEW = "next-view"
VIEW_POS = "view-pos"

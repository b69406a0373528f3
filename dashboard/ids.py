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
# few of the pasted entries are genes: the page asks before running (the panel, its text, its button, the text accepted)
LOW_GENES = "low-genes"
LOW_GENES_TEXT = "low-genes-text"
RUN_ANYWAY = "run-anyway"
GENES_ACCEPTED = "genes-accepted"
# the link the page was served with, already applied to its controls (callbacks.link.opened_page), and what starts as
# the page opens: "query" (the query request) or "job" (its ranking came with the page: the job request alone)
LINK_APPLIED = "link-applied"
LINK_RUN = "link-run"
JOB_REQUEST = "job-request"  # starts the query's job without Run's own ranking (that came with a linked page)
RESULT_KEY = "result-key"  # the stored result of the last query that ran
PARTIAL_NOTE = "partial-note"  # "ranking shown; p-values are being computed"
PARTIAL_KEY = "partial-key"  # the key of the running query's ranking, shown before its p-values
RANKED = "ranked-key"  # the key of the ranking Run's own request drew (starts the request that draws the rest)
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
REFERENCE = "reference"  # the reference donors' disease (default normal), compared within each study
DISEASE_ORDER = "disease-order"  # the disease ranking ordered by mean hit % or by the pooled effect

TABS = "tabs"
TAB_PANEL_PREFIX = "tab-panel-"  # + a tab's value: its panel (mounted only while its tab shows)
GROUP_BY = "group-by"
HEAT_MODE = "heat-mode"
HEAT_ORDER = "heat-order"
UMAP_COLOR = "umap-color"
DRIVER_GROUP = "driver-group"
FOREST_GROUP = "forest-group"  # the disease whose per-study effects the forest plot shows
FOREST_FIG = "forest-fig"
FOREST_NOTE = "forest-note"  # the studies of the disease shown that gave no effect, with the reason
FOREST_LINK_CLASS = "forest-link"  # a disease name in the ranking table: a click shows its forest plot
STUDY_EFFECTS_GRID = "study-effects-grid"  # the Studies tab: each disease's effect in each study, with its evidence
EVIDENCE_HELP = "evidence-help"

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
STUDY_REPORTS_SLOT = "study-reports-slot"  # holds STUDY_REPORTS while the Studies tab shows
VOCABULARY_NOTE = "vocabulary-note"  # which labels the views use: ontology versions, label transfer accuracy
STUDY_VOCABULARY_PREFIX = "study-vocabulary-"  # + study id: its labels as matched to ontology terms
ATLAS_WARNINGS = "atlas-warnings"
UMAP_FIG = "umap-fig"
UMAP_BADGE = "umap-badge"
UMAP_LABELS = "umap-labels"  # which cell-type labels the UMAP shows
UMAP_DRAWN = "umap-drawn"  # what the UMAP shows: result key, colour and presenter mode
VIEWS_DRAWN = "views-drawn"  # what the other views show: result key and view settings (so a render does not draw them twice)
HEATMAP_FIG = "heatmap-fig"
GENES_SHOWN = "genes-shown"  # the gene views: the top genes or all of them
GENES_NOTE = "genes-note"  # "Top 60 of 88 genes ..."
READING = "reading"  # the result in one sentence, above the disease ranking
STAT_HELP = "stat-help"  # what hit %, base rate, null band, p and q mean
STALE = "stale"  # "settings changed since this result: run again"
LANDING = "landing"  # what to do before the first query, with example buttons
EXAMPLE_TYPE = "example"  # pattern id {"type": EXAMPLE_TYPE, "key": preset key}: the landing page's example buttons
SNAPSHOT_IMAGES = "snapshot-images"  # the figures as SVG and PNG, drawn in the browser for the snapshot
SIM_BADGE = "sim-badge"

# the Modules tab
MODULES_LOADING = "modules-loading"
MODULES_SIM = "modules-sim"
MODULES_SUMMARY = "modules-summary"
MODULES_HEAD = "modules-summary-head"  # "N of M signature genes are among the K module genes; ..."
MODULES_READING = "modules-reading"
MODULES_NONE = "modules-none"  # the atlas has no modules
MODULES_ERROR = "modules-error"
MODULES_PENDING = "modules-pending"  # an old atlas's modules are still being computed
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
MODULES_POLL = "modules-poll"  # re-asks while an old atlas's modules are computed in the background
MODULES_STORE = "modules-store"  # the result key rendered, its top missing genes and every module's genes

# the "Genes in a cell type" tab
RANK_CELL_TYPES = "rank-cell-types"
RANK_DISEASES = "rank-diseases"
RANK_STUDIES = "rank-studies"
RANK_VERSUS = "rank-versus"  # the reference diseases (same cell types)
RANK_SIM = "rank-sim"  # the SIMULATED badge of the population ranked
RANK_NOTE = "rank-note"  # what was ranked (samples, studies, cells) or why nothing was
RANK_FIG = "rank-fig"  # rank by attribution against rank by expression
RANK_GRID = "rank-grid"
RANK_CSV = "rank-csv"
RANK_GENE = "rank-gene"  # the gene whose per-sample spread shows
SPREAD_FIG = "rank-spread-fig"
RANK_TOP_N = "rank-top-n"
SEND_TOP = "send-top"  # the top N genes by attribution -> the signature box
SEND_SELECTED = "send-selected"  # the table's selected rows -> the signature box
RANK_SENT = "rank-sent"  # what was sent
RANK_STORE = "rank-store"  # the checked population of the ranking shown (never its genes)

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
VIEW_NAME = "view-name"  # the name a saved view is listed under
SAVED_VIEW_PICK = "saved-view-pick"  # the saved views by name, to reopen one

# the Cells tab's explorer (issue 36 item 13): any column or gene painted, split, two lassoed groups compared
CELLS_FIG = "cells-fig"
CELLS_COLOR = "cells-color"  # a cell-type, sample or donor column of the atlas's cells
CELLS_GENE = "cells-gene"  # a gene painted on the UMAP (overrides the column)
CELLS_GENE_STORE = "cells-gene-store"  # attribution or expression
CELLS_SPLIT = "cells-split"  # one panel per value of a column
CELLS_SET_A = "cells-set-a"
CELLS_SET_B = "cells-set-b"
CELLS_COMPARE = "cells-compare"
CELLS_PICKED = "cells-picked"  # the cell positions of the UMAP's selection, taken in the page
CELLS_GROUPS = "cells-groups"  # the two groups' cell positions (re-checked on the server)
CELLS_GROUPS_NOTE = "cells-groups-note"
CELLS_NOTE = "cells-note"
CELLS_SIMULATED_NOTE = "cells-simulated-note"  # says the SIMULATED studies' donors (sex, age) are simulated too
SNAPSHOT_READY = "snapshot-ready"  # the snapshot's click, once this result's UMAP is drawn (callbacks.export.snapshot_umap)

"""The query controls (the sidebar): the signature box, presets and upload, Run and Cancel, the
cell filters and the hit and ranking settings. Shared by every tab; filled and read by
``dashboard.callbacks`` (``controls``, ``query``, ``link``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_mantine_components as dmc
from dash import dcc, html

from dashboard import ids
from dashboard.presets import PRESETS, QUICK_PRESETS, preset_options
from dashboard.state import CHOICES, DEFAULTS, FRACTION_RANGES, INT_RANGES, NULL_RANGE
from dashboard.views import components as ui
from dashboard.views.filters import disease_group_choices, filter_choices, study_options

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["INDENTED_OPTION", "controls_panel"]

_HIT_RULE_LABELS = {"percentile": "percentile", "quantile": "quantile", "value": "score value"}


_FILTER_HELP = {
    "cell_types": "Cell Ontology terms with their cells; a term includes its subtypes",
    "diseases": "MONDO terms (healthy: normal) with their cells; a term includes its subtypes",
    "tissues": "UBERON terms with their cells; a term includes its parts",
}


# a tree option drawn with its depth as padding, so a wrapped label keeps its indentation (assets/picker.js)
INDENTED_OPTION = {"function": "indentedOption"}


def _term_filter(data: DashboardData, id_: str, key: str, label: str, placeholder: str) -> dmc.MultiSelect:
    """A filter over one annotation: the atlas's ontology terms as a tree with cell counts, and
    the labels that matched no term; the values are term labels (or those labels)."""
    help_text = _FILTER_HELP[key] if data.has_vocabulary else "the studies' own labels (this atlas records no ontology terms)"
    return dmc.MultiSelect(id=id_, data=filter_choices(data, key).options, value=[], searchable=True, clearable=True, size="xs",
                           label=label, placeholder=placeholder, description=help_text, maxDropdownHeight=360,
                           renderOption=INDENTED_OPTION)


def controls_panel(data: DashboardData) -> dmc.Stack:
    """The sidebar's controls, each holding its setting's default."""
    d = DEFAULTS
    return dmc.Stack([
        dmc.Text("Signature", fw=700),
        dmc.Textarea(id=ids.GENES, placeholder="Paste genes: any separators, any case, symbols, aliases or Ensembl ids. "
                     "Optional weights: GENE:2 or GENE 2.0", autosize=True, minRows=5, maxRows=10, value="",
                     className="genes", spellCheck=False),
        dmc.Group([dmc.Tooltip(dmc.Button(PRESETS[k].label.split(" (")[0], id={"type": "preset", "key": k}, size="compact-sm",
                                          variant="light", className="preset"), label=PRESETS[k].source, multiline=True, w=320)
                   for k in QUICK_PRESETS], gap=6),
        # selectFirstOptionOnChange: Enter picks the match when the search leaves one
        dmc.Select(id=ids.PRESET_SELECT, data=preset_options(), searchable=True, clearable=True, size="xs", selectFirstOptionOnChange=True,
                   placeholder="More presets: Hallmarks, immune markers…"),
        dcc.Upload(html.Div(["Drop or ", html.A("choose"), " a GMT / CSV / TSV gene list"]), id=ids.UPLOAD, className="upload",
                   multiple=False),
        dmc.Select(id=ids.UPLOAD_SETS, data=[], placeholder="gene sets in the uploaded file", size="xs", searchable=True,
                   style={"display": "none"}),
        html.Div(id=ids.UPLOAD_NOTE, className="note"),
        dcc.Store(id=ids.UPLOAD_STORE),
        dmc.Group([dmc.Button("Run query", id=ids.RUN, className="primary", fullWidth=True, style={"flex": 1}),
                   dmc.Button("Cancel", id=ids.CANCEL, variant="outline", color="red", style={"display": "none"})], gap=6),
        html.Div([dmc.Progress(id=ids.PROGRESS, value=0, size="sm"), dmc.Text(id=ids.PROGRESS_TEXT, size="xs", c="dimmed")],
                 className="progress-wrap"),
        html.Div(dmc.Alert([html.Div(id=ids.LOW_GENES_TEXT),
                            dmc.Button("Run anyway", id=ids.RUN_ANYWAY, size="xs", variant="outline", color="orange", mt=6)],
                           title="Few of these entries are genes", color="orange", p="xs"),
                 id=ids.LOW_GENES, style={"display": "none"}),
        html.Div(id=ids.RESOLUTION, className="resolution"),
        dmc.Divider(label="Cells", labelPosition="left"),
        _term_filter(data, ids.CELL_TYPES, "cell_types", "Cell types", "all cell types"),
        _term_filter(data, ids.DISEASES, "diseases", "Diseases", "all diseases"),
        _term_filter(data, ids.TISSUES, "tissues", "Tissues", "all tissues"),
        dmc.MultiSelect(id=ids.STUDIES, data=study_options(data), value=[], searchable=True, clearable=True, size="xs",
                        label="Studies", placeholder="all studies"),
        html.Div([dmc.Text("Data", size="xs", c="dimmed"),
                  ui.segmented(ids.DATA_KIND, {k: k for k in CHOICES["data_kind"]}, d["data_kind"])]),
        dmc.Divider(label="Hits and ranking", labelPosition="left"),
        dmc.Group([
            dmc.Select(id=ids.RULE, data=[{"value": k, "label": _HIT_RULE_LABELS.get(k, k)} for k in CHOICES["rule"]],
                       value=d["rule"], size="xs", label="Hit rule",
                       allowDeselect=False, w=120),
            dmc.NumberInput(id=ids.CUT, value=d["cutoff"], size="xs", label="cut-off", step=1, w=90, debounce=True),
        ], gap=6, grow=True),
        dmc.Group([
            dmc.NumberInput(id=ids.CELL_MIN, value=d["cell_min"], min=INT_RANGES["cell_min"][0], step=1, size="xs", label="cell_min", debounce=True),
            dmc.NumberInput(id=ids.SAMP_MIN, value=d["samp_min"], min=INT_RANGES["samp_min"][0], step=1, size="xs", label="samp_min", debounce=True),
            dmc.NumberInput(id=ids.TOP_N, value=d["top_n"], min=INT_RANGES["top_n"][0], step=1, size="xs", label="top N (0 = all)", debounce=True),
        ], gap=6, grow=True),
        dmc.MultiSelect(id=ids.DISEASE_GROUPS, data=disease_group_choices(data).options, value=[], searchable=True, clearable=True,
                        size="xs", label="Group diseases by", placeholder="each disease on its own" if data.has_vocabulary else
                        "this atlas records no disease terms", disabled=not disease_group_choices(data).options,
                        description="MONDO parent terms: each disease under one counts as it (the first chosen that applies)",
                        maxDropdownHeight=320, renderOption=INDENTED_OPTION),
        html.Div(id=ids.DISEASE_GROUPS_NOTE, className="note"),
        dmc.NumberInput(id=ids.MIN_COVERAGE, value=d["min_coverage"], min=FRACTION_RANGES["min_coverage"][0],
                        max=FRACTION_RANGES["min_coverage"][1], step=0.05, decimalScale=2, size="xs", debounce=True,
                        label="Min. study coverage (0-1)",
                        description="min_coverage: studies that measured less of the signature's weight are left out, with the reason"),
        dmc.NumberInput(id=ids.NULL_DRAWS, value=d["null_draws"], min=0, max=NULL_RANGE[1], step=100, size="xs", debounce=True,
                        label="Specificity vs random gene sets: draws (0 = off; 1,000 gives p ≥ 0.001)"),
        dmc.Select(id=ids.REFERENCE, data=filter_choices(data, "diseases").options, value=d["reference"], searchable=True, size="xs",
                   allowDeselect=False, label="Reference donors", maxDropdownHeight=320, renderOption=INDENTED_OPTION,
                   description="each disease is compared with these donors within its own studies (a term includes its subtypes)"),
    ], gap=8, className="controls")

"""The sidebar and the link, without a browser: presets, uploads, the term filters, the state in the
URL, one rule per setting for the link, the controls and the API."""

from __future__ import annotations

import dash
import pytest

from compute.errors import SigAtlasError
from compute.query import parse_gene_list
from dashboard import ids
from dashboard.app import answer_query, create_app
from dashboard.callbacks import controls, link
from dashboard.data import DashboardData
from dashboard.presets import PRESETS, preset_options
from dashboard.state import (
    DEFAULTS,
    decode_state,
    encode_state,
    normalise_genes,
    query_params,
)
from dashboard.upload import GeneFileError, parse_gene_file
from dashboard.views.filters import apply_preset, filter_choices, known_values
from tests.dashboard.helpers import depth_of, find, options_of, state_with, text_of


def test_presets_and_uploads():
    assert len(PRESETS) > 50 and {g["group"] for g in preset_options()} == {"Signatures", "Hallmark gene sets", "Immune cell-type markers"}
    assert parse_gene_file("sig.csv", b"gene,weight\nCD14,2\nVCAN,1.5\n") == {"sig": "CD14:2\nVCAN:1.5"}
    assert parse_gene_file("sets.gmt", b"A\tdesc\tCD14\tVCAN\nB\tdesc\tMS4A1\n") == {"A": "CD14\nVCAN", "B": "MS4A1"}
    assert parse_gene_file("list.txt", b"CD14\n\nVCAN\n") == {"list": "CD14\nVCAN"}
    with pytest.raises(GeneFileError, match="line 3: the weight 'high' of VCAN"):
        parse_gene_file("w.csv", b"gene,weight\nCD14,2\nVCAN,high\n")
    with pytest.raises(GeneFileError, match="line 1: a GMT line needs"):
        parse_gene_file("bad.gmt", b"only-a-name\n")
    kept = parse_gene_file("mixed.gmt", b"A\tdesc\tCD14\nbroken line\nB\tdesc\tMS4A1\n")
    assert kept == {"A": "CD14", "B": "MS4A1"}
    assert kept.skipped == ["mixed.gmt, line 2: a GMT line needs a name, a description and genes, separated by tabs"]
    with pytest.raises(GeneFileError, match="not UTF-8"):
        parse_gene_file("bin.txt", b"\xff\xfe\x00bad")
    assert issubclass(GeneFileError, SigAtlasError)  # the command line prints it as one line

def test_state_round_trip_gives_the_same_query(tiny_build):
    state = state_with(genes="S100A8:2, VCAN\nCD14", cell_types=["classical monocyte"], rule="quantile", cutoff=0.95, null_draws=100, tab="genes")
    again, notes = decode_state(encode_state(state))
    assert not notes
    assert query_params(again) == query_params(state)

def test_cell_type_filter_is_the_term_tree_with_cell_counts(tiny_build):
    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    n = cells["cell_type"].astype(str).value_counts()
    choices = filter_choices(data, "cell_types")
    options = options_of(choices)
    # the parent term above classical and non-classical monocytes, with their summed cells
    assert options["monocyte"].strip("\u00a0") == f"monocyte ({n['classical monocyte'] + n['non-classical monocyte']:,})"
    assert options["classical monocyte"].strip("\u00a0") == f"classical monocyte ({n['classical monocyte']:,})"
    assert depth_of(options["classical monocyte"]) > depth_of(options["monocyte"])  # a subtype sits under its parent
    values = choices.option_values
    assert values.index("monocyte") < values.index("classical monocyte") < values.index("non-classical monocyte")
    # every label of the cells is an option; a label that matched no term is its own group, said so
    assert set(n.index) <= set(options)
    unmapped = sorted(set(cells.loc[cells["cell_type_ontology_term_id"].astype(str) == "", "cell_type"].astype(str)))
    assert unmapped, "the tiny atlas's real study keeps an unmapped label (CD34+)"
    last = choices.options[-1]
    assert last["group"].startswith("No ontology term") and sorted(i["value"] for i in last["items"]) == unmapped
    assert options[unmapped[0]] == f"{unmapped[0]} (no ontology term) ({n[unmapped[0]]:,})"
    # the same for diseases (healthy donors: normal) and tissues; the layout shows these options
    diseases = options_of(filter_choices(data, "diseases"))
    assert {"normal", "infectious disease with sepsis", "infectious disease"} <= set(diseases)
    layout = create_app(tiny_build[1]).layout()
    for id_, key in ((ids.CELL_TYPES, "cell_types"), (ids.DISEASES, "diseases"), (ids.TISSUES, "tissues")):
        control = find(layout, id_)
        assert control.data == filter_choices(data, key).options and "a term includes its" in control.description

def test_picking_monocyte_selects_every_monocyte_subtype(tiny_build):
    from urllib.parse import quote

    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    text, _ = apply_preset(data, "ms1")
    out = answer_query(data, state_with(genes=text, cell_types=["monocyte"], min_coverage=0.0, null_draws=0))
    subtypes = {"classical monocyte", "non-classical monocyte"}
    assert set(out["tables"]["umap"]["cell_type"].astype(str)) == subtypes
    assert out["result"].n_selected == int(cells["cell_type"].astype(str).isin(subtypes).sum())
    assert "monocyte · hit" in out["disease_fig"].to_dict()["layout"]["title"]["text"]
    # in a link: the term's id, another case or an equivalent ancestor all mean the term, shown as it
    known = known_values(data)
    for raw in ("monocyte", "CL:0000576", "Monocyte", "myeloid leukocyte"):
        if raw == "myeloid leukocyte" and raw not in known["cell_types"]:
            continue  # the ancestor is not in this atlas's vocabulary
        state, notes = decode_state(f"?cell_types={quote(raw)}", known)
        assert state["cell_types"] == ["monocyte"] and not notes, raw
        assert decode_state(encode_state(state), known) == (state, [])

def test_old_links_with_study_labels_still_work(tiny_build):
    data = DashboardData(tiny_build[1])
    cells = data.atlas.cells
    restored = link.restore(data, "?genes=CD14&cell_types=CD14%2B+Monocyte|CL:0000576|Martian&diseases=healthy|sepsis", 0)
    # a study's label that names its term alone becomes the term; one that shares it stays as written
    assert restored["cell_types"] == ["CD14+ Monocyte", "monocyte"] and restored["diseases"] == ["normal", "infectious disease with sepsis"]
    assert text_of(restored["notes"]) == "cell_types: 'Martian' is not in this atlas; dropped"
    # the filters' options: the study's own label is added to the cell types, nothing to the others
    extra = restored["cell_types_options"][-1]
    assert extra["group"].startswith("From the link") and extra["items"] == [{"value": "CD14+ Monocyte", "label": "CD14+ Monocyte (study label)"}]
    assert restored["cell_types_options"][:-1] == filter_choices(data, "cell_types").options
    assert restored["diseases_options"] == filter_choices(data, "diseases").options
    assert restored["tissues_options"] == filter_choices(data, "tissues").options
    # the study's label selects exactly its cells, as before the vocabulary
    text, _ = apply_preset(data, "ms1")
    out = answer_query(data, state_with(genes=text, cell_types=["CD14+ Monocyte"], min_coverage=0.0, null_draws=0))
    assert out["result"].n_selected == int((cells["cell_type_original"].astype(str) == "CD14+ Monocyte").sum()) > 0
    healthy = answer_query(data, state_with(genes=text, diseases=["healthy"], null_draws=0))["result"]
    normal = answer_query(data, state_with(genes=text, diseases=["normal"], null_draws=0))["result"]
    assert healthy.n_selected == normal.n_selected > 0

def test_a_link_with_commas_for_bars_is_read_or_not_run(tiny_build):
    """Issue 36, item 10: a hand-edited link that joins values with "," instead of "|" is read
    when every part is known, and otherwise never runs on all cells: it says so and waits."""
    data = DashboardData(tiny_build[1])
    read = link.restore(data, "?genes=CD14&diseases=normal,infectious%20disease%20with%20sepsis", 0)
    assert read["diseases"] == ["normal", "infectious disease with sepsis"] and read["request"] == 1 and read["notes"] is None
    refused = link.restore(data, "?genes=CD14&diseases=normal,Martian%20flu", 0)
    assert refused["diseases"] == [] and refused["request"] is dash.no_update
    assert "diseases: none of the link's values is in this atlas, so the query was not run" in text_of(refused["notes"])
    assert "separate several with '|'" in text_of(refused["notes"])
    # one value known, one not: the known one is kept and the query runs on it, the other named
    part = link.restore(data, "?genes=CD14&diseases=normal|Martian", 0)
    assert part["diseases"] == ["normal"] and part["request"] == 1

def test_ms1_preset_selects_the_monocyte_term(tiny_build):
    from dashboard.presets import MARKER_TERMS

    data = DashboardData(tiny_build[1])
    assert PRESETS["ms1"].cell_type_term == "CL:0000576" and "monocyte (CL:0000576)" in PRESETS["ms1"].source
    assert apply_preset(data, "ms1")[1] == ["monocyte"]
    assert apply_preset(data, "h-interferon-alpha-response")[1] == []  # a gene set of no cell type selects none
    # opening a link with the preset fills the filter with the one term
    restored = link.restore(data, "?preset=ms1", 0)
    assert restored["cell_types"] == ["monocyte"] and restored["request"] == 1
    assert [g for g, _ in parse_gene_list(restored["genes"])] == list(PRESETS["ms1"].genes)
    # marker sets name their term in the source (never selected: markers are run over all cells)
    b_cell = PRESETS["m-b-cell"]
    assert b_cell.marker_of == ("CL:0000236", "B cell") and "markers of B cell (CL:0000236)" in b_cell.source
    assert apply_preset(data, "m-b-cell")[1] == []
    assert all(p.marker_of is None for p in PRESETS.values() if p.group == "Immune cell-type markers"
               and p.label.removesuffix(" markers") not in MARKER_TERMS)

def test_marker_terms_are_the_cell_ontology_terms_they_name():
    from compute.vocabulary import ontologies
    from dashboard.presets import MARKER_TERMS

    onto = ontologies()
    for name, (term_id, label) in MARKER_TERMS.items():
        term = onto.term(term_id)
        assert term is not None and term.label == label and not term.deprecated, name

def test_presets_and_uploads_fill_the_gene_box(ms1_key):
    import base64

    data = ms1_key[0]
    picked = controls.on_preset(data, [None, 1, None], None, 4, trigger={"type": "preset", "key": "ms1"})
    # the preset list is emptied after use: it names no state the gene box keeps
    assert picked == {"genes": apply_preset(data, "ms1")[0], "cell_types": ["monocyte"], "request": 5, "selected": None}
    example = controls.on_preset(data, [None] * 3, None, 1, trigger={"type": ids.EXAMPLE_TYPE, "key": "ms1"}, examples=[1, None])
    assert example["genes"] == picked["genes"] and example["request"] == 2
    assert controls.on_preset(data, [None, None, None], "ms1", None, trigger=ids.PRESET_SELECT)["request"] == 1
    for clicks, selected, trigger in (([None] * 3, None, {"type": "preset", "key": "ms1"}), ([None] * 3, "nope", ids.PRESET_SELECT)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            controls.on_preset(data, clicks, selected, 0, trigger=trigger)
    gmt = "data:text/plain;base64," + base64.b64encode(b"A\tdesc\tCD14\tVCAN\nB\tdesc\tMS4A1\n").decode()
    up = controls.on_upload(data, gmt, "sets.gmt")
    assert up == {"genes": "CD14\nVCAN", "set_options": ["A", "B"], "set_value": "A", "set_style": {}, "sets": {"A": "CD14\nVCAN", "B": "MS4A1"},
                  "note": "sets.gmt: 2 gene sets; showing 'A'"}
    assert controls.on_upload_set(data, "B", up["sets"]) == {"genes": "MS4A1"}
    with pytest.raises(dash.exceptions.PreventUpdate):
        controls.on_upload_set(data, "C", up["sets"])
    bad = controls.on_upload(data, "not a data url", "x.csv")
    assert bad["genes"] is dash.no_update and bad["sets"] is None and bad["note"].children == "x.csv: the upload arrived damaged; try again"
    # a GMT with one malformed line keeps its valid sets and names the line (issue 36, item 10)
    mixed = "data:text/plain;base64," + base64.b64encode(b"A\tdesc\tCD14\nbroken line\nB\tdesc\tMS4A1\n").decode()
    up = controls.on_upload(data, mixed, "mixed.gmt")
    assert up["sets"] == {"A": "CD14", "B": "MS4A1"} and up["genes"] == "CD14"
    assert "mixed.gmt, line 2: a GMT line needs a name, a description and genes" in text_of(up["note"])
    assert "2 gene sets" in text_of(up["note"])

def test_the_link_is_written_once_a_query_ran(ms1_key):
    data, state, key = ms1_key
    settings = {k: state[k] for k in state if k != "preset"} | {"tab": "genes", "null_draws": None}
    search = link.write_link(data, key, None, **settings)["search"]
    written = state | {"genes": normalise_genes(state["genes"]), "tab": "genes", "null_draws": DEFAULTS["null_draws"]}
    assert decode_state(search, known_values(data)) == (written, [])
    assert "null_draws" not in search and "tab=genes" in search  # an emptied control is its default
    assert link.write_link(data, None, {"error": "x", "genes": "CD14"}, **settings)["search"] == search
    with pytest.raises(dash.exceptions.PreventUpdate):
        link.write_link(data, None, None, **settings)

def test_one_rule_for_a_setting_in_the_link_the_controls_and_the_api(ms1_key):
    """The same bad value: a link falls back with a note, the controls and the API name it; the
    same reason each time (dashboard.state owns it)."""
    from compute.query import HIT_RANGES
    from dashboard.api import ApiInputError, parse_query

    data, state, _ = ms1_key
    assert HIT_RANGES["quantile"] == (0.0, 1.0)
    for new, old in (("cutoff", "cut"), ("null_draws", "null")):
        value = 1.5 if new == "cutoff" else 50
        base = {"rule": "quantile"} if new == "cutoff" else {}
        for name in (new, old):
            _, notes = decode_state(f"?{'rule=quantile&' if base else ''}{name}={value}", known_values(data))
            reason = "must be within 0-1 for the quantile rule" if new == "cutoff" else "must be 0 (no p-values) or 100-10,000 draws"
            assert notes == [f"{name}={value} {reason}; using {0.9 if new == 'cutoff' else 1000}"]
            out = answer_query(data, state | base | {new: value})
            assert out["status"].children == f"{new} {reason}, got {value:g}"
            with pytest.raises(SigAtlasError, match=f"^{name} must be "):
                parse_query({"genes": "CD14", **base, name: value}, known_values(data))
    with pytest.raises(ApiInputError, match="genes is empty"):
        parse_query({"genes": " ; "}, known_values(data))
    assert issubclass(ApiInputError, SigAtlasError)
    # an old link opens the same view as the new one
    old, _ = decode_state("?genes=CD14&data=simulated&rule=quantile&cut=0.95&null=100", known_values(data))
    assert old == decode_state("?genes=CD14&data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=100", known_values(data))[0]
    assert encode_state(old) == "?genes=CD14&data_kind=simulated&rule=quantile&cutoff=0.95&null_draws=100"

def test_an_atlas_without_a_vocabulary_uses_the_studies_labels(pre_vocabulary_atlas):
    from dashboard.views.studies import study_reports_panel

    data = DashboardData(pre_vocabulary_atlas)
    assert not data.has_vocabulary
    choices = filter_choices(data, "cell_types")
    assert [g["group"] for g in choices.options] == ["Labels as the studies gave them (this atlas records no ontology terms)"]
    assert choices.option_values == data.cell_types
    # the MS1 preset falls back to the cell types named like its term
    text, cell_types = apply_preset(data, "ms1")
    assert cell_types == [c for c in data.cell_types if "monocyte" in c]
    state, notes = decode_state("?cell_types=CL:0000576&disease_groups=infectious+disease", known_values(data))
    assert state["cell_types"] == state["disease_groups"] == [] and len(notes) == 2
    out = answer_query(data, state_with(genes=text, cell_types=cell_types, null_draws=0, color="cell_type_predicted"))
    assert out["tables"]["diseases"]["group"].iloc[0] == "infectious disease with sepsis"
    assert "no predicted cell types" in out["umap_fig"].to_dict()["layout"]["meta"]["empty"]
    assert "records no ontology terms" in text_of(find(study_reports_panel(data), ids.VOCABULARY_NOTE))
    app = create_app(pre_vocabulary_atlas)
    assert find(app.layout, ids.DISEASE_GROUPS).disabled is True
    # built before donor metadata was carried: it opens, its explorer offers what its cells hold
    assert data.atlas.metadata_columns == [] and "sex" not in data.atlas.cells
    offered = [o["value"] for o in find(app.layout, ids.CELLS_COLOR).data]
    assert "donor" in offered and "sex" not in offered and "age" not in offered

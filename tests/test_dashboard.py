"""Dashboard without a browser: callbacks as plain functions, figures on their data, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dashboard.app import answer_query, apply_preset, create_app, driver_figure, params_from_state
from dashboard.data import DashboardData
from dashboard.presets import PRESETS, preset_options
from dashboard.state import DEFAULTS, decode_state, encode_state
from dashboard.upload import GeneFileError, parse_gene_file

from .conftest import REPO


def _state(**kw) -> dict:
    return dict(DEFAULTS) | kw


def test_dashboard_never_imports_torch(tiny_build):
    code = (
        "import sys; from dashboard.app import create_app; create_app(sys.argv[1]);"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('compute.model', 'compute.attribution', 'captum'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_build[1])], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ms1_preset_answer(tiny_build):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    assert "S100A8" in text and "classical monocyte" in cell_types
    out = answer_query(data, _state(genes=text, cell_types=cell_types, null=200))
    fig = out["disease_fig"].to_dict()
    order = [c.split("<br>")[0] for c in fig["layout"]["xaxis"]["categoryarray"]]
    assert order[0] == "sepsis"
    assert "SIMULATED" in fig["layout"]["title"]["text"]
    symbols = {t["marker"]["symbol"] for t in fig["data"] if t["type"] == "scatter" and "marker" in t and "symbol" in t["marker"]}
    assert "circle-open" in symbols  # simulated samples drawn open
    assert any(r["data"] == "SIMULATED" for r in out["study_rows"])
    assert all(r["p_value"] is not None for r in out["study_rows"])
    assert "null: 200 matched gene sets" in out["status"]
    for name in ("diseases", "samples", "studies", "genes", "resolution", "robustness", "drivers", "comparison", "umap"):
        assert len(out["tables"][name]) > 0, name
    assert "p_value" in out["tables"]["diseases"].columns
    umap = out["umap_fig"].to_dict()
    assert umap["data"][-1]["type"] == "scattergl"
    assert out["umap_badge"].endswith("cells shown")


def test_driver_genes_of_a_chosen_group(tiny_build):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    result = data.query(params_from_state(_state(genes=text, cell_types=cell_types, null=0)))
    top, second = (str(g) for g in result.diseases["group"].iloc[:2])
    default = driver_figure(data, result, None).to_dict()
    chosen = driver_figure(data, result, second).to_dict()
    assert default["layout"]["title"]["text"].startswith(f"Driver genes in {top}")
    assert chosen["layout"]["title"]["text"].startswith(f"Driver genes in {second}")
    assert default["data"][0]["x"] != chosen["data"][0]["x"]  # shares differ between the two groups
    assert "appear once" in driver_figure(data, result, "no such disease").to_dict()["layout"]["meta"]["empty"]


@pytest.mark.parametrize("by", ["disease", "cell_type", "study"])
@pytest.mark.parametrize("heat", ["heatmap", "dotplot"])
def test_every_grouping_and_gene_view_renders(tiny_build, by, heat):
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    out = answer_query(data, _state(genes=text, group_by=by, heat=heat, order="score", color="disease"))
    fig = out["heatmap_fig"].to_dict()
    values = set(data.atlas.cells[by].astype(str))
    labels = {str(x) for t in fig["data"] for x in ([] if t.get("x") is None else list(t["x"]))}
    assert labels and labels <= values | {""}, labels - values
    assert fig["data"][0]["type"] == ("heatmap" if heat == "heatmap" else "scatter")


def test_top_n_and_filters(tiny_build):
    data = DashboardData(tiny_build[1])
    text, _ = apply_preset(data, "ms1")
    full = answer_query(data, _state(genes=text))
    top2 = answer_query(data, _state(genes=text, top_n=2))
    assert len(top2["tables"]["diseases"]) == 2
    assert list(top2["tables"]["diseases"]["group"]) == list(full["tables"]["diseases"]["group"][:2])
    real = answer_query(data, _state(genes=text, data="real"))
    assert "no cells match the filters" in str(real["status"]) or not real["tables"]["umap"]["simulated"].any()
    sim = answer_query(data, _state(genes=text, data="simulated", diseases=["sepsis", "healthy"]))
    assert set(sim["tables"]["umap"]["disease"]) <= {"sepsis", "healthy"}


def test_bad_input_is_shown_not_raised(tiny_build):
    data = DashboardData(tiny_build[1])
    out = answer_query(data, _state(genes="NOT_A_GENE ALSO_NOT"))
    assert "none of the 2 requested genes" in str(out["status"])
    out = answer_query(data, _state(genes="S100A8", cell_types=["no such cell type"]))
    assert "no cell_type called 'no such cell type'" in str(out["status"]) or "no cells match" in str(out["status"])
    assert answer_query(data, _state(genes=""))["study_rows"] == []
    state, notes = decode_state("?cut=abc&cell_min=-5&group_by=nonsense&zzz=1")
    assert len(notes) >= 3
    out = answer_query(data, state | {"genes": "S100A8 VCAN"})
    assert "cells selected" in out["status"]


def test_state_round_trip_gives_the_same_query(tiny_build):
    state = _state(genes="S100A8:2, VCAN\nCD14", cell_types=["classical monocyte"], rule="quantile", cut=0.95, null=100, tab="genes")
    again, notes = decode_state(encode_state(state))
    assert not notes
    assert params_from_state(again) == params_from_state(state)


def test_presets_and_uploads():
    assert len(PRESETS) > 50 and {g["group"] for g in preset_options()} == {"Signatures", "Hallmark gene sets", "Immune cell-type markers"}
    assert parse_gene_file("sig.csv", b"gene,weight\nCD14,2\nVCAN,1.5\n") == {"sig": "CD14:2\nVCAN:1.5"}
    assert parse_gene_file("sets.gmt", b"A\tdesc\tCD14\tVCAN\nB\tdesc\tMS4A1\n") == {"A": "CD14\nVCAN", "B": "MS4A1"}
    assert parse_gene_file("list.txt", b"CD14\n\nVCAN\n") == {"list": "CD14\nVCAN"}
    with pytest.raises(GeneFileError, match="line 3: the weight 'high' of VCAN"):
        parse_gene_file("w.csv", b"gene,weight\nCD14,2\nVCAN,high\n")
    with pytest.raises(GeneFileError, match="line 1: a GMT line needs"):
        parse_gene_file("bad.gmt", b"only-a-name\n")
    with pytest.raises(GeneFileError, match="not UTF-8"):
        parse_gene_file("bin.txt", b"\xff\xfe\x00bad")


def test_create_app_rejects_missing_atlas(tmp_path):
    from compute.errors import AtlasFormatError

    with pytest.raises(AtlasFormatError, match="python -m compute build"):
        create_app(tmp_path)

"""Dashboard without a browser: callbacks as plain functions, figures on their data, no torch."""

from __future__ import annotations

import subprocess
import sys

from dashboard.app import answer_query, apply_preset, create_app
from dashboard.data import DashboardData

from .conftest import REPO


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
    out = answer_query(data, text, cell_types, 90, 25, 3, "disease")
    fig = out["disease_fig"].to_dict()
    order = [c.split("<br>")[0] for c in fig["layout"]["xaxis"]["categoryarray"]]
    assert order[0] == "sepsis"
    assert "SIMULATED" in fig["layout"]["title"]["text"]
    symbols = {t["marker"]["symbol"] for t in fig["data"] if t["type"] == "scatter"}
    assert "circle-open" in symbols  # simulated samples drawn open
    assert any(r["data"] == "SIMULATED" for r in out["study_rows"])
    heat = out["heatmap_fig"].to_dict()["data"][0]
    assert heat["type"] == "heatmap" and "sepsis" in heat["x"]
    umap = out["umap_fig"].to_dict()
    assert umap["data"][-1]["type"] == "scattergl"


def test_bad_input_is_shown_not_raised(tiny_build):
    data = DashboardData(tiny_build[1])
    out = answer_query(data, "NOT_A_GENE ALSO_NOT", [], 90, 25, 3, "disease")
    assert "none of the 2 requested genes" in str(out["status"])
    out = answer_query(data, "S100A8", ["no such cell type"], "abc", None, -5, "nonsense")
    assert "no cells match the filters" in str(out["status"])
    assert answer_query(data, "", [], 90, 25, 3, "disease")["study_rows"] == []


def test_create_app_rejects_missing_atlas(tmp_path):
    import pytest

    from compute.errors import AtlasFormatError

    with pytest.raises(AtlasFormatError, match="python -m compute build"):
        create_app(tmp_path)

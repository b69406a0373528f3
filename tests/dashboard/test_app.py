"""The dashboard as a whole, without a browser: the app never imports torch, refuses a missing
atlas, registers every callback as a top-level function of a callbacks module; downloads and
presenter mode."""

from __future__ import annotations

import subprocess
import sys

import dash
import pandas as pd
import pytest

from dashboard import ids
from dashboard.app import create_app
from tests.conftest import REPO
from tests.dashboard.helpers import base64_bytes


def test_dashboard_never_imports_torch(tiny_build):
    code = (
        "import sys; from dashboard.app import create_app; create_app(sys.argv[1]);"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('compute.model', 'compute.attribution', 'captum'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_build[1])], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

def test_create_app_rejects_missing_atlas(tmp_path):
    from compute.errors import AtlasFormatError

    with pytest.raises(AtlasFormatError, match="python -m compute build"):
        create_app(tmp_path)

def test_the_page_preloads_its_layout_and_callbacks_and_carries_no_validation_layout(tiny_build):
    """The page's HTML asks for the layout and the callback list at once (the browser test checks
    that Dash's renderer uses those answers); the layout is not written into the page a second time
    as Dash's validation layout (the page holds every id)."""
    app = create_app(tiny_build[1])
    page = app.server.test_client().get("/").get_data(as_text=True)
    for path in ("/_dash-layout", "/_dash-dependencies"):
        assert f'<link rel="preload" href="{path}" as="fetch" crossorigin="anonymous">' in page
    assert "validation_layout" not in page and ids.DISEASE_TABLE_WRAP not in page

# -- every callback, called directly -------------------------------------------------------------
def test_every_callback_is_a_top_level_function_of_a_callbacks_module(tiny_build):
    """What Dash calls is a top-level function of dashboard.callbacks.* (given the data), with its
    outputs named: the tests below call the same functions."""
    import importlib

    app = create_app(tiny_build[1])
    found = set()
    for spec in app.callback_map.values():
        fn = spec["callback"]
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        module = importlib.import_module(fn.__module__)
        assert fn.__module__.startswith("dashboard.callbacks.") and getattr(module, fn.__name__) is fn, fn.__qualname__
        assert "<locals>" not in fn.__qualname__
        # its outputs and inputs are named (a dict), none matched by position
        assert isinstance(spec["outputs_indices"], dict) and isinstance(spec["inputs_state_indices"], dict), fn.__qualname__
        found.add(f"{fn.__module__.rsplit('.', 1)[1]}.{fn.__name__}")
    assert found == {"link.restore", "link.write_link", "controls.on_preset", "controls.on_upload", "controls.on_upload_set",
                     "controls.show_disease_groups", "studies.show_study_reports", "query.run_query", "query.run_anyway", "query.rank_now",
                     "query.finish_now", "query.on_cancel", "query.stale_note", "render.render", "render.render_partial",
                     "cells.render_umap", "diseases.render_drivers", "diseases.render_forest", "diseases.pick_forest_disease",
                     "modules.render_modules", "modules.show_module", "modules.add_missing", "modules.use_module",
                     "export.download", "presenter.set_presenter", "presenter.save_view", "presenter.step",
                     "presenter.saved_view_options", "presenter.open_saved_view",
                     "cell_genes.rank_genes", "cell_genes.present_ranking", "cell_genes.show_spread", "cell_genes.pick_gene",
                     "cell_genes.send_top", "cell_genes.send_selected", "cells.draw_cells", "cells.set_group_a", "cells.set_group_b",
                     "cells.compare_groups", "export.export_ready", "export.snapshot_umap"}

def test_downloads_are_the_views_data(ms1_key):
    import base64
    import io
    import zipfile

    from dashboard.callbacks import export as export_callbacks
    from dashboard.views.results import view_tables

    data, state, key = ms1_key
    view = {k: state[k] for k in ("top_n", "group_by", "heat", "order", "color", "tab")}
    buttons = list(export_callbacks.CSV_BUTTONS)

    def csv_of(name):
        clicks = [1 if b == f"{ids.CSV_PREFIX}{name}" else None for b in buttons]
        return export_callbacks.download(data, None, clicks, key, None, trigger=f"{ids.CSV_PREFIX}{name}", **view)["file"]

    diseases = csv_of("diseases")
    expected = view_tables(data, data.stored_result(key), state)["diseases"]
    assert diseases["filename"] == "sigatlas-diseases.csv" and diseases["type"] == "text/csv"
    assert pd.read_csv(io.StringIO(diseases["content"]))["group"].tolist() == expected["group"].tolist()
    assert csv_of("modules")["content"].startswith("gene,set,module,")
    # the snapshot: its images drawn in the browser (one figure here, one that could not be drawn)
    svg = "data:image/svg+xml," + "%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%3E%3C%2Fsvg%3E"
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    images = {"images": {"diseases": {"svg": svg, "png": png, "width": 900, "height": 600}, "umap": {"error": "no WebGL"}}}
    snap = export_callbacks.download(data, images, [None] * len(buttons), key, "http://x/?genes=CD14", trigger=ids.SNAPSHOT_IMAGES,
                                     **view)["file"]
    assert snap["filename"] == f"sigatlas-snapshot-{data.atlas.name}.zip"
    zf = zipfile.ZipFile(io.BytesIO(base64_bytes(snap)))
    names = zf.namelist()
    assert "genes_resolved.csv" in names and any(n.endswith(".json") for n in names)
    assert {"figures/diseases.svg", "figures/diseases.png"} <= set(names) and "figures/umap.svg" not in names
    assert "resolution.csv" not in names and "scatter.csv" not in names  # the same bytes as genes_resolved.csv and umap.csv
    readme = zf.read("README.txt").decode()
    assert "figure not drawn as an image: umap (no WebGL)" in readme and "table 'scatter' is the same as umap.csv" in readme
    # no click (a button appearing) or no result: nothing to download
    for clicks, result_key in (([None] * len(buttons), key), ([1] * len(buttons), None)):
        with pytest.raises(dash.exceptions.PreventUpdate):
            export_callbacks.download(data, None, clicks, result_key, None, trigger=f"{ids.CSV_PREFIX}diseases", **view)

def test_presenter_mode_and_saved_views(ms1_key):
    from dashboard.callbacks import presenter

    data = ms1_key[0]
    assert presenter.set_presenter(data, True) == {"class_name": "app presenter"}
    assert presenter.set_presenter(data, None) == {"class_name": "app"}
    saved = presenter.save_view(data, 1, "?genes=CD14,LYZ,S100A8,VCAN", [], "CD14, LYZ\nS100A8 VCAN")["saved"]
    assert saved == [{"search": "?genes=CD14,LYZ,S100A8,VCAN", "label": "CD14, LYZ, S100A8…"}]
    saved = presenter.save_view(data, 2, "?genes=MS4A1", saved, "MS4A1")["saved"]
    # saving a view again moves it last
    assert [v["search"] for v in presenter.save_view(data, 3, "?genes=CD14,LYZ,S100A8,VCAN", saved, "CD14")["saved"]] == [
        "?genes=MS4A1", "?genes=CD14,LYZ,S100A8,VCAN"]
    with pytest.raises(dash.exceptions.PreventUpdate):
        presenter.save_view(data, 1, None, saved, "CD14")
    assert presenter.step(data, 1, None, saved, "?genes=MS4A1", trigger=ids.NEXT_VIEW) == {
        "search": "?genes=CD14,LYZ,S100A8,VCAN", "position": "view 1 of 2: CD14, LYZ, S100A8…"}
    assert presenter.step(data, 1, None, saved, "?genes=CD14,LYZ,S100A8,VCAN", trigger=ids.PREV_VIEW)["search"] == "?genes=MS4A1"
    assert presenter.step(data, None, None, saved, "?genes=MS4A1", trigger=ids.SAVED_VIEWS) == {"search": dash.no_update,
                                                                                                   "position": "view 2 of 2: MS4A1"}
    # a view saved under a name is listed, stepped to and reopened by that name (issue 36, item 7)
    named = presenter.save_view(data, 4, "?genes=IFI27", saved, "IFI27", "  Sepsis:\n the monocyte  signature ")["saved"]
    assert named[-1] == {"search": "?genes=IFI27", "label": "Sepsis: the monocyte signature"}
    assert presenter.save_view(data, 5, "?genes=X", [], "X", "n" * 200)["saved"][0]["label"] == "n" * presenter.MAX_VIEW_NAME
    assert presenter.step(data, 1, None, named, "?genes=MS4A1", trigger=ids.NEXT_VIEW)["position"] == "view 3 of 3: Sepsis: the monocyte signature"
    listed = presenter.saved_view_options(data, named, "?genes=IFI27")
    assert [o["label"] for o in listed["options"]] == ["1. CD14, LYZ, S100A8…", "2. MS4A1", "3. Sepsis: the monocyte signature"]
    assert listed["value"] == "?genes=IFI27"
    assert presenter.open_saved_view(data, "?genes=MS4A1", "?genes=IFI27") == {"search": "?genes=MS4A1"}
    with pytest.raises(dash.exceptions.PreventUpdate):
        presenter.open_saved_view(data, "?genes=IFI27", "?genes=IFI27")
    assert presenter.step(data, None, None, [], None, trigger=ids.SAVED_VIEWS)["position"] == "no saved views yet: use 'Save view'"

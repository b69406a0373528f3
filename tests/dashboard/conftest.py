"""Fixtures the dashboard's tests share: the MS1 query run through the query callback, the atlas's
modules app, atlases as older builds wrote them."""

from __future__ import annotations

import dash
import pandas as pd
import pytest

from dashboard.data import DashboardData
from dashboard.state import (
    query_params,
)
from dashboard.views.filters import apply_preset
from tests.dashboard.helpers import query_run, state_with


@pytest.fixture(scope="module")
def modules_app(tiny_build):
    """(data, program genes, result key) for a planted program's genes plus one unknown gene."""
    data = DashboardData(tiny_build[1])
    program = next(p for p in tiny_build[2]["programs"] if p["name"] == "interferon alpha response")
    genes = list(program["genes"])
    params = query_params(state_with(genes="\n".join([*genes, "NOT_A_GENE"]), null_draws=0))
    data.query(params)
    return data, genes, data.result_key(params)


@pytest.fixture(scope="module")
def old_atlas(tiny_build, tmp_path_factory):
    """The tiny atlas as an older build wrote it: no ingest reports, panels, measured genes or build warnings."""
    import json

    src = tiny_build[1]
    dst = tmp_path_factory.mktemp("old") / "atlas"
    dst.mkdir()
    for item in src.iterdir():  # the study files are shared, only the root differs
        if item.name != "atlas.json":
            (dst / item.name).symlink_to(item)
    root = json.loads((src / "atlas.json").read_text())
    root.pop("report", None)
    root["elements"] = {k: v for k, v in root["elements"].items() if k not in ("measured", "gene_means")}
    for s in root["studies"]:
        for key in ("report", "panel", "has_measured", "n_genes_measured"):
            s.pop(key, None)
    (dst / "atlas.json").write_text(json.dumps(root))
    return dst


@pytest.fixture(scope="module")
def pre_vocabulary_atlas(tiny_build, tmp_path_factory):
    """The tiny atlas as a build before the vocabulary wrote it: no vocabulary, no term ids, no
    original labels, no label transfer (and no donor metadata: sex, age)."""
    import json

    src = tiny_build[1]
    dst = tmp_path_factory.mktemp("pre-vocabulary") / "atlas"
    dst.mkdir()
    for item in src.iterdir():
        if item.name not in ("atlas.json", "studies", "vocabulary.json"):
            (dst / item.name).symlink_to(item)
    for study in (src / "studies").iterdir():
        out = dst / "studies" / study.name
        out.mkdir(parents=True)
        for f in study.iterdir():
            if f.name == "cells.parquet":
                cells = pd.read_parquet(f)
                drop = [c for c in cells if c.endswith(("_original", "_ontology_term_id")) or c.startswith("cell_type_predict")
                        or c in ("sex", "age")]
                cells.drop(columns=drop).to_parquet(out / f.name)
            else:
                (out / f.name).symlink_to(f)
    root = json.loads((src / "atlas.json").read_text())
    root.pop("vocabulary", None)
    for s in root["studies"]:
        (s.get("report") or {}).pop("vocabulary", None)
        (s.get("report") or {}).pop("metadata", None)
        s.pop("metadata_columns", None)
    # a consistent old atlas: its root records the files it has (Atlas.open checks them)
    from compute.files import file_record

    root["files"] = {rel: (file_record(dst / rel) if rel.endswith("cells.parquet") else rec)
                     for rel, rec in root["files"].items() if (dst / rel).exists()}
    (dst / "atlas.json").write_text(json.dumps(root))
    return dst


@pytest.fixture(scope="module")
def ms1_key(tiny_build):
    """(data, state, result key) of the MS1 preset's query, run through the query callback."""
    data = DashboardData(tiny_build[1])
    text, cell_types = apply_preset(data, "ms1")
    state = state_with(genes=text, cell_types=cell_types, null_draws=0)
    progress = []
    ran = query_run(data, progress.append, state)
    assert ran["query_error"] is None and ran["status"] is dash.no_update and progress[-1][0] == 100
    return data, state, ran["result_key"]

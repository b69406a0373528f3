"""Exports: formula-safe CSVs, the gene decisions table, the methods paragraph and the snapshot zip."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from types import SimpleNamespace

import pandas as pd
import pytest

from compute.query import QueryParams, resolve_genes, run_query
from compute.reference import ms1_signature
from dashboard.export import (
    methods_paragraph,
    params_dict,
    resolution_table,
    safe_csv,
    snapshot_zip,
)


def _read(text: str, **kw) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False, **kw)


def test_safe_csv_neutralises_formulas_but_not_numbers():
    df = pd.DataFrame({
        "=HYPERLINK(1)": ["=1+2", "+cmd", "-cmd", "@SUM(A1)", "\tx", "\rx", "plain", "-1.5"],
        "value": [-3.5, -1.0, 0.0, 2.0, -0.25, 1e-9, -7.0, 3.0],
        "count": [-3, -2, -1, 0, 1, 2, 3, 4],
        "kind": pd.Categorical(["=a", "b", "=a", "b", "b", "b", "b", "-c"]),
        "flag": [True, False] * 4,
    })
    text = safe_csv(df)
    back = _read(text)
    assert list(back.columns) == ["'=HYPERLINK(1)", "value", "count", "kind", "flag"]
    assert list(back.iloc[:, 0]) == ["'=1+2", "'+cmd", "'-cmd", "'@SUM(A1)", "'\tx", "'\rx", "plain", "-1.5"]
    assert list(back["kind"]) == ["'=a", "b", "'=a", "b", "b", "b", "b", "'-c"]
    # negative numbers stay numbers (no apostrophe, numeric dtype on reading)
    assert back["value"].tolist() == df["value"].tolist() and pd.api.types.is_float_dtype(back["value"])
    assert back["count"].tolist() == df["count"].tolist() and pd.api.types.is_integer_dtype(back["count"])
    assert "'-3" not in text and "'-1.5" not in text
    # the unnamed index is not written; the frame itself is unchanged
    assert not text.startswith(",") and df.iloc[0, 0] == "=1+2"


def test_safe_csv_writes_a_named_index_only():
    df = pd.DataFrame({"x": [1, 2]}, index=pd.Index(["=a", "b"], name="gene"))
    back = _read(safe_csv(df))
    assert list(back.columns) == ["gene", "x"] and list(back["gene"]) == ["'=a", "b"]
    assert list(_read(safe_csv(df.reset_index(drop=True))).columns) == ["x"]
    mixed = pd.DataFrame({"v": ["-2", -2, "=x", None]})  # numbers inside a text column stay numbers too
    assert _read(safe_csv(mixed))["v"].tolist() == ["-2", "-2", "'=x", ""]


def test_resolution_table_one_row_per_token():
    res = resolve_genes([("cd14", 2.0), ("CD14", 3.0), ("LYZ", None), ("NOPE", None), ("=EVIL()", None)], ["CD14", "LYZ", "VCAN"])
    table = resolution_table(res)
    assert list(table.columns) == ["token", "status", "gene", "weight", "note"]
    assert list(table["token"]) == ["cd14", "CD14", "LYZ", "NOPE", "=EVIL()"]
    assert len(table) == len(res.requested)
    assert table.loc[0, "gene"] == "CD14" and table.loc[0, "weight"] == 2.0 and table.loc[2, "weight"] == 1.0
    assert table.loc[1, "gene"] == "CD14" and pd.isna(table.loc[3, "gene"])
    assert "'=EVIL()" in safe_csv(table)


def test_resolution_table_uses_decisions_when_present():
    decisions = (("a", "matched", "A", 1.0, ""), {"token": "b", "status": "ambiguous", "gene": None, "weight": None, "note": "B1 or B2"},
                 SimpleNamespace(token="c", status="missing", gene=None, weight=None, note="not in the model"))
    table = resolution_table(SimpleNamespace(decisions=decisions))
    assert list(table["status"]) == ["matched", "ambiguous", "missing"] and table.loc[1, "note"] == "B1 or B2"


@pytest.fixture(scope="module")
def tiny_result(tiny_atlas):
    mono = tuple(c for c in tiny_atlas.cells["cell_type"].cat.categories if "monocyte" in c.lower())
    known = [g for g in ms1_signature() if g in set(tiny_atlas.genes)]
    # a case fix, a duplicate, a gene not in the model and a token a spreadsheet would run
    genes = (*((g, None) for g in known[:30]), (known[30].lower(), 2.0), (known[0], None), ("NOT_A_GENE", None), ("=1+1", None))
    params = QueryParams(genes=genes, cell_types=mono, n_null=100)
    return run_query(tiny_atlas, params)


def test_methods_paragraph_is_plain_about_simulation_and_the_p_floor(tiny_atlas, tiny_result):
    text = methods_paragraph(tiny_atlas, tiny_result)
    n_sim = sum(s.simulated for s in tiny_atlas.studies)
    assert n_sim and "SIMULATED" in text and f"{n_sim} of these studies" in text
    assert "1/(1 + 100)" in text and f"{1 / 101:.2g}" in text and "100 random gene sets" in text
    assert "Integrated Gradients" in text and "50 steps" in text and "all-zero baseline" in text and "1,000" in text
    assert tiny_result.params.rule.describe() in text and "cell_min = 25" in text and "samp_min = 3" in text
    res = tiny_result.resolution
    # NOT_A_GENE and "=1+1" are no genes (issue 36): told apart from the genes, named
    assert res.not_genes == ("NOT_A_GENE", "=1+1")
    assert f"listed {len(res.requested)} gene tokens; {len(res.matched)} of its {len(res.matched)} distinct genes" in text
    assert "2 tokens read as no gene (words, numbers) were not used" in text
    assert f"{res.renamed[0][0]} -> {res.renamed[0][1]}" in text and "NOT_A_GENE" in text and "1 duplicate token" in text
    assert "Benjamini-Hochberg" in text and "docs/" not in text
    # which genes the embedding read, as the build recorded it (issue 34)
    record = tiny_atlas.meta["method"]["embedding_genes"]
    assert f"Embedding (UMAP, label transfer) on {'the' if record['genes'] == 'shared' else 'every gene'}" in text
    assert record["reason"] in text
    assert "weighted mean" in text
    assert "Gold et al." in text and "Heimberg et al." in text and "SIGnature" in text and "SCimilarity" in text
    assert tiny_atlas.name in text and tiny_atlas.fingerprint in text and "SigAtlas 0" in text and "NumPy" in text
    assert "\n" not in text  # one paragraph


def test_snapshot_zip_contents(tiny_atlas, tiny_result):
    tables = {"diseases": tiny_result.diseases, "studies": tiny_result.studies,
              "disease null": tiny_result.null["disease"].groups}
    fig = {"data": [{"type": "bar", "x": ["a", "b"], "y": [1, 2]}], "layout": {"title": {"text": "ranking"}}}
    url = "http://127.0.0.1:8050/?genes=S100A8,S100A12&null=100"
    blob = snapshot_zip(tiny_atlas, tiny_result, tables, url=url, figures={"ranking": fig})
    zf = zipfile.ZipFile(io.BytesIO(blob))
    assert zf.testzip() is None
    names = set(zf.namelist())
    assert names == {"README.txt", "genes_resolved.csv", "parameters.json", "atlas.json", "methods.md", "diseases.csv",
                     "studies.csv", "disease_null.csv", "figures/ranking.json"}

    readme = zf.read("README.txt").decode()
    assert url in readme and "This atlas includes SIMULATED data:" in readme
    assert all(n in readme for n in names)

    params = json.loads(zf.read("parameters.json"))
    assert set(params) == {f.name for f in dataclasses.fields(QueryParams)}
    assert params["rule"] == {"kind": "percentile", "value": 90.0} and params["n_null"] == 100
    assert params == params_dict(tiny_result.params)
    assert [tuple(g) for g in params["genes"]] == list(tiny_result.params.genes)

    meta = json.loads(zf.read("atlas.json"))
    assert meta["fingerprint"] == tiny_atlas.fingerprint and meta["name"] == tiny_atlas.name
    assert meta["format_version"] == tiny_atlas.meta["format_version"] and meta["created"] == tiny_atlas.meta["created"]
    assert meta["build"]["key"] == tiny_atlas.meta["build"]["key"] and meta["build"]["seed"] == tiny_atlas.meta["build"]["seed"]
    assert meta["model_card"]["n_genes"] == len(tiny_atlas.genes) and "attributions" in meta["elements"]

    assert "SIMULATED" in zf.read("methods.md").decode()
    genes = _read(zf.read("genes_resolved.csv").decode())
    assert len(genes) == len(tiny_result.resolution.requested) and "'=1+1" in set(genes["token"])
    diseases = _read(zf.read("diseases.csv").decode())
    assert list(diseases["group"]) == list(tiny_result.diseases["group"])
    assert diseases["mean_hit_pct"].tolist() == pytest.approx(tiny_result.diseases["mean_hit_pct"].tolist())
    assert json.loads(zf.read("figures/ranking.json")) == fig

    # the same query on the same atlas gives the same bytes (entries are dated by the atlas)
    assert snapshot_zip(tiny_atlas, tiny_result, tables, url=url, figures={"ranking": fig}) == blob


def test_snapshot_zip_refuses_names_that_overwrite_fixed_files(tiny_atlas, tiny_result):
    with pytest.raises(ValueError, match="reserved"):
        snapshot_zip(tiny_atlas, tiny_result, {"parameters": tiny_result.diseases})
    with pytest.raises(ValueError, match="same file name"):
        snapshot_zip(tiny_atlas, tiny_result, {"a b": tiny_result.diseases, "a/b": tiny_result.studies})
    zf = zipfile.ZipFile(io.BytesIO(snapshot_zip(tiny_atlas, tiny_result, {})))
    assert "Link to this view: not recorded" in zf.read("README.txt").decode()


@pytest.fixture(scope="module")
def left_out_result(tiny_atlas):
    """The MS1 genes with min_coverage just above the lowest study's coverage: that study is left out."""
    genes = tuple((g, None) for g in ms1_signature() if g in set(tiny_atlas.genes))
    coverage = tiny_atlas.study_coverage([g for g, _ in genes])["coverage"].sort_values()
    above = coverage[coverage > coverage.iloc[0]].iloc[0]
    params = QueryParams(genes=genes, min_coverage=round(float(coverage.iloc[0] + above) / 2, 4))
    return run_query(tiny_atlas, params)


def test_methods_paragraph_states_the_coverage_rule_and_who_was_left_out(tiny_atlas, tiny_result, left_out_result):
    text = methods_paragraph(tiny_atlas, tiny_result)
    assert "signature genes its study measured" in text and "missing, not zero" in text
    assert "measured share" in text and "one scale" in text
    assert "below min_coverage = 50% were left out of the rankings and of the null" in text
    if not len(tiny_result.excluded_studies):
        assert "no study with cells in the selection fell below it" in text
    text = methods_paragraph(tiny_atlas, left_out_result)
    excluded = left_out_result.excluded_studies
    assert len(excluded) >= 1 and f"min_coverage = {left_out_result.params.min_coverage:.0%}" in text
    for study, reason in excluded["reason"].items():
        assert f"{study} {reason}" in text
    assert "cells in the studies kept" in text and "\n" not in text


def test_snapshot_records_left_out_studies_and_panels(tiny_atlas, left_out_result):
    excluded = left_out_result.excluded_studies
    studies = left_out_result.coverage.reset_index(names="study")
    zf = zipfile.ZipFile(io.BytesIO(snapshot_zip(tiny_atlas, left_out_result, {"coverage": studies})))
    readme = zf.read("README.txt").decode()
    line = next(ln for ln in readme.splitlines() if ln.startswith("Studies left out"))
    assert all(f"{study} {reason}" in line for study, reason in excluded["reason"].items())
    assert json.loads(zf.read("parameters.json"))["min_coverage"] == left_out_result.params.min_coverage
    meta = json.loads(zf.read("atlas.json"))
    assert meta["warnings"] == tiny_atlas.meta["report"]["warnings"]
    assert all(0 < s["measured_share"] <= 1 and isinstance(s["warnings"], list) for s in meta["studies"])
    table = _read(zf.read("coverage.csv").decode())
    assert {"study", "requested", "measured", "coverage", "n_selected", "included", "reason"} <= set(table.columns)
    left = table.set_index("study").loc[list(excluded.index)]
    assert not left["included"].any() and (left["reason"].str.contains("below min_coverage")).all()


def test_methods_and_snapshot_say_which_labels_were_used(tiny_atlas, tiny_result):
    vocab = tiny_atlas.meta["vocabulary"]
    text = methods_paragraph(tiny_atlas, tiny_result)
    assert f"Cell Ontology ({vocab['versions']['CL']})" in text and f"MONDO ({vocab['versions']['MONDO']})" in text
    assert "included every descendant term" in text and "Predicted cell types from label transfer were not used" in text
    assert "ranked at parent terms" not in text  # no disease groups asked
    grouped = run_query(tiny_atlas, dataclasses.replace(tiny_result.params, disease_groups=("infectious disease",), n_null=0))
    pooled = sorted(tiny_atlas.disease_grouping(["infectious disease"]))
    assert f"infectious disease ({', '.join(pooled)})" in methods_paragraph(tiny_atlas, grouped)
    zf = zipfile.ZipFile(io.BytesIO(snapshot_zip(tiny_atlas, grouped, {})))
    record = json.loads(zf.read("atlas.json"))["vocabulary"]
    assert record["versions"] == vocab["versions"] and record["label_transfer"] == vocab["label_transfer"]
    assert json.loads(zf.read("parameters.json"))["disease_groups"] == ["infectious disease"]


def test_snapshot_carries_each_figure_as_svg_and_png_and_no_duplicate_files(tiny_atlas, tiny_result):
    import base64
    from urllib.parse import quote

    from dashboard.export import ExportError, decode_images, resolution_table

    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="900" height="600"><text>sepsis</text></svg>'
    png = b"\x89PNG\r\n\x1a\n" + bytes(32)
    sent = {"ranking": {"svg": "data:image/svg+xml," + quote(svg), "png": "data:image/png;base64," + base64.b64encode(png).decode(),
                        "width": 900, "height": 600},
            "umap": {"error": "WebGL is not available"},
            "bad": {"svg": "not a data url", "png": "data:image/png;base64,AAAA", "width": 1, "height": 1}}
    images = decode_images(sent)
    assert images["ranking"]["svg"] == svg.encode() and images["ranking"]["png"] == png
    assert images["umap"] == {"error": "WebGL is not available"} and "not a data URL" in images["bad"]["error"]
    cells = pd.DataFrame({"cell": ["c1", "c2"], "score": [0.1, 0.2]})
    tables = {"diseases": tiny_result.diseases, "umap": cells, "scatter": cells.copy(),
              "resolution": resolution_table(tiny_result.resolution)}
    zf = zipfile.ZipFile(io.BytesIO(snapshot_zip(tiny_atlas, tiny_result, tables, figures={"ranking": {"data": []}}, images=images)))
    names = set(zf.namelist())
    assert {"figures/ranking.json", "figures/ranking.svg", "figures/ranking.png", "umap.csv", "diseases.csv"} <= names
    assert zf.read("figures/ranking.png") == png and zf.read("figures/ranking.svg").decode() == svg
    # the same bytes are written once: scatter.csv = umap.csv, resolution.csv = genes_resolved.csv
    assert "scatter.csv" not in names and "resolution.csv" not in names and "figures/umap.svg" not in names
    contents = [zf.read(n) for n in names]
    assert len(set(contents)) == len(contents)
    readme = zf.read("README.txt").decode()
    assert "table 'scatter' is the same as umap.csv" in readme and "table 'resolution' is the same as genes_resolved.csv" in readme
    assert "figure not drawn as an image: umap (WebGL is not available)" in readme and "900 x 600 px, as on screen" in readme
    # an image that is not what it says becomes a named error, never a broken file in the zip
    wrong = decode_images({"x": {"svg": "data:image/svg+xml,%3Csvg%3E", "png": "data:image/png;base64,AAAA"}})["x"]
    assert wrong == {"error": "the png image does not start with PNG's signature"}
    assert issubclass(ExportError, ValueError)

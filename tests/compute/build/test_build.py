"""The end-to-end build on the tiny simulated corpus: planted truth, reuse of finished work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compute.build import build_atlas, work_dir
from compute.manifest import load_manifest
from compute.query import QueryParams, run_query
from compute.reference import hallmark_sets, ms1_signature

pytestmark = pytest.mark.slow  # builds an atlas (or several processes) end to end


def _ranking(atlas, genes, cell_types=()):
    result = run_query(atlas, QueryParams(genes=tuple((g, None) for g in genes), cell_types=tuple(cell_types)))
    return list(result.diseases["group"]), result


def test_atlas_describes_itself(tiny_atlas, tiny_build):
    meta = tiny_atlas.meta
    assert meta["format_version"] == 1 and meta["model_card"]["seed"] == 0
    assert meta["model_card"]["parameters"]["hidden_sizes"] == [128, 64]
    assert all("gene_overlap" in s and s["gene_overlap"]["n_shared"] > 0 for s in meta["studies"])
    sim = {s["id"]: s["simulated"] for s in meta["studies"]}
    assert sim["PBMC68K"] is False and all(v for k, v in sim.items() if k != "PBMC68K")
    cols = {"study", "sample", "cell_type", "disease", "tissue", "simulated"}
    assert cols <= set(tiny_atlas.cells.columns)
    # attributions: rows (cells) sum to 1,000 across the genes their study measured (SIGnature's
    # raw scale); NaN for the others; on the panel scale, to 1,000 x the study's measured share
    values = tiny_atlas.gene_values(tiny_atlas.genes, scale="raw")
    np.testing.assert_allclose(np.nansum(values, axis=1), 1000.0, rtol=1e-3)
    study = tiny_atlas.cells["study"].astype(str).to_numpy()
    for s in tiny_atlas.studies:
        assert np.isnan(values[study == s.id]).any(axis=0).sum() == len(tiny_atlas.genes) - tiny_atlas.measured(s.id).size
    panel = tiny_atlas.gene_values(tiny_atlas.genes)
    shares = np.array([tiny_atlas.panel_share(sid) for sid in study])
    np.testing.assert_allclose(np.nansum(panel, axis=1), 1000.0 * shares, rtol=1e-3)


def test_planted_programs_rank_first(tiny_atlas, tiny_build):
    truth = tiny_build[2]
    programs = {p["name"]: p for p in truth["programs"]}
    for name, genes, hint in (("MS1", ms1_signature(), "monocyte"),
                              ("interferon alpha response", hallmark_sets()["HALLMARK_INTERFERON_ALPHA_RESPONSE"], None)):
        planted = sorted(programs[name]["strength"], key=lambda d: -programs[name]["strength"][d])
        cts = [c for c in tiny_atlas.cells["cell_type"].astype(str).unique() if hint and hint in c.lower()]
        ranking, _ = _ranking(tiny_atlas, genes, cts)
        assert set(ranking[: len(planted)]) == set(planted), (name, ranking)
        assert ranking[0] == planted[0], (name, ranking)


def test_rebuild_with_unchanged_manifest_reuses_work(tiny_build, capsys):
    manifest_path, atlas_path, _ = tiny_build
    before = (atlas_path / "atlas.json").stat().st_mtime_ns
    build_atlas(load_manifest(manifest_path))
    assert (atlas_path / "atlas.json").stat().st_mtime_ns == before
    captured = capsys.readouterr()
    assert "is up to date" in captured.out + captured.err
    work = work_dir(load_manifest(manifest_path))
    stages = {p.name for p in work.iterdir()}
    assert {"ingest", "model", "train", "attr", "embed", "umap"} <= stages
    # issue 22: the encoder was trained from one piece per study, streamed; its checkpoint is gone
    pieces = sorted(p.name.split("-")[0] for p in (work / "train" / "pieces").iterdir())
    assert pieces == sorted(s["id"] for s in json.loads((atlas_path / "atlas.json").read_text())["studies"])
    assert not list((work / "train").glob("*/checkpoint.pt"))
    training = json.loads((atlas_path / "atlas.json").read_text())["model_card"]["training"]
    assert training["sampler"]["kind"] == "balanced" and training["max_rows_read_at_once"] <= training["sampler"]["batch_size"]


def test_stage_cache_rewrites_same_atlas_content(tiny_build, tmp_path):
    """Forcing the root to be rewritten from cached stages gives the same scores (deterministic)."""
    from compute.atlas import Atlas

    manifest_path, atlas_path, _ = tiny_build
    m = load_manifest(manifest_path)
    old = Atlas.open(atlas_path).score(["S100A8", "S100A12", "VCAN"])
    root = json.loads((atlas_path / "atlas.json").read_text())
    root["build"]["key"] = "stale"
    (atlas_path / "atlas.json").write_text(json.dumps(root))
    build_atlas(m, quiet=True)  # all stages come from the work folder
    new = Atlas.open(atlas_path).score(["S100A8", "S100A12", "VCAN"])
    np.testing.assert_array_equal(old, new)


def test_pretrained_model_from_manifest_gives_the_same_scores(tiny_build, tiny_atlas, tmp_path):
    """model: {kind: pretrained, path: <the saved model>} reproduces the trained build's scores."""
    import yaml

    from compute.atlas import Atlas

    manifest_path, atlas_path, _ = tiny_build
    doc = yaml.safe_load(manifest_path.read_text())
    doc["model"] = {"kind": "pretrained", "path": str(atlas_path / "model")}
    doc["atlas"] = {"name": "tiny-pretrained", "out": str(tmp_path / "atlas")}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = build_atlas(load_manifest(path), quiet=True)
    again = Atlas.open(out)
    assert again.meta["model_card"]["source"] == "pretrained" and again.genes == tiny_atlas.genes
    genes = ["S100A8", "S100A12", "VCAN", "CD14"]
    np.testing.assert_allclose(again.score(genes), tiny_atlas.score(genes), rtol=1e-5, atol=1e-6)

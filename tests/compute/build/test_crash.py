"""Crash safety and integrity: kill -9 the build at random moments, verify, repair, skip unchanged work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from compute.atlas import PREDICTIONS_FILE, Atlas, AtlasFormatError, verify_atlas
from compute.build import build_atlas
from compute.manifest import load_manifest
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # builds an atlas (or several processes) end to end

SMALL_SIM = dict(n_studies=3, disease_donors=2, healthy_donors=1, cells_per_sample=(60, 80), max_genes=600, seed=3)
SMALL_MODEL = {"kind": "train", "hidden_sizes": [64, 32], "latent_dim": 16, "epochs": 2, "batch_size": 256}


def _manifest(folder: Path, data: Path, model: dict | None = None) -> Path:
    from compute.demo import SimulationConfig, demo_manifest_text

    doc = yaml.safe_load(demo_manifest_text(SimulationConfig(**SMALL_SIM), data_dir=str(data)))
    doc["studies"] = [s for s in doc["studies"] if s["source"]["kind"] != "scanpy-pbmc68k"]  # simulated only: faster
    doc["atlas"] = {"name": "small", "out": str(folder / "atlas")}
    doc["model"] = model or SMALL_MODEL
    doc["embedding"] = {"n_neighbors": 10, "min_dist": 0.3, "fit_cells": 400}  # fit on a subsample, transform the rest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(data folder, reference manifest, reference atlas, build seconds) of an uninterrupted build."""
    from compute.demo import SimulationConfig, simulate_studies

    base = tmp_path_factory.mktemp("crash")
    simulate_studies(base / "data", SimulationConfig(**SMALL_SIM))
    manifest = _manifest(base / "reference", base / "data")
    t0 = time.perf_counter()
    atlas = build_atlas(load_manifest(manifest), quiet=True)
    return base / "data", manifest, atlas, time.perf_counter() - t0


def _arrays(atlas_path: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted((atlas_path / "studies").rglob("*.npy")):
        out[f"{f.parent.name}/{f.name}"] = np.load(f)
    return out


def test_kill_9_at_random_moments_then_rerun_gives_the_uninterrupted_atlas(small, tmp_path):
    data, _, reference, seconds = small
    manifest = _manifest(tmp_path, data)
    atlas_path = tmp_path / "atlas"
    rng = np.random.default_rng(int(os.environ.get("SIGATLAS_KILL_SEED", "20261121")))
    # the first kill lands early (ingest, training), later ones anywhere in a full build's time
    moments = [float(rng.uniform(1.0, 0.4 * seconds))] + [float(t) for t in rng.uniform(1.0, 1.1 * seconds, size=3)]
    outcomes = []
    for moment in moments:
        proc = subprocess.Popen([sys.executable, "-m", "compute", "build", str(manifest), "--quiet"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            proc.wait(timeout=moment)
            outcomes.append(f"finished before {moment:.1f} s (rc {proc.returncode})")
            assert proc.returncode == 0, proc.stderr.read().decode()
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the build and its Dask workers, as a crash would
            proc.wait()
            outcomes.append(f"killed at {moment:.1f} s")
        # whatever the moment: the atlas opens whole, or says it is incomplete
        try:
            Atlas.open(atlas_path)
        except AtlasFormatError as exc:
            assert "did not finish" in str(exc) or "no atlas here" in str(exc), (outcomes, str(exc))
            assert not verify_atlas(atlas_path).ok
        else:
            report = verify_atlas(atlas_path)
            assert report.ok, (outcomes, report.text())
    build_atlas(load_manifest(manifest), quiet=True)  # re-running completes it
    assert verify_atlas(atlas_path).ok
    got, want = _arrays(atlas_path), _arrays(reference)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} after {outcomes}")
    a, b = Atlas.open(atlas_path), Atlas.open(reference)
    np.testing.assert_array_equal(a.score(["S100A8", "S100A12", "VCAN"]), b.score(["S100A8", "S100A12", "VCAN"]))
    assert a.meta["method"]["umap"]["fit_cells"] < a.n_cells  # the layout was fitted on a subsample
    # the label transfer (per-study tasks, resumed from the files finished before a kill) too
    assert (atlas_path / PREDICTIONS_FILE).read_bytes() == (reference / PREDICTIONS_FILE).read_bytes()
    assert a.meta["vocabulary"]["label_transfer"] == b.meta["vocabulary"]["label_transfer"]


def test_the_label_transfer_resumes_from_the_studies_it_finished(small, tmp_path):
    """Issue 22: the label transfer writes one file a study (then its summary); a build that
    stopped in between redoes only the missing studies and writes the same predictions."""
    data, _, _, _ = small
    manifest = _manifest(tmp_path, data)
    atlas_path = build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    want = (atlas_path / PREDICTIONS_FILE).read_bytes()
    summary = json.loads((atlas_path / "atlas.json").read_text())["vocabulary"]["label_transfer"]
    (folder,) = [p for p in (tmp_path / ".atlas.work" / "transfer").iterdir() if p.is_dir()]
    studies = sorted(p for p in folder.glob("*.npz") if p.name != "reference.npz")
    assert len(studies) == len(load_manifest(manifest).studies) and (folder / "summary.json").is_file()
    # as after a kill: the summary and the last study's predictions not written yet
    (folder / "summary.json").unlink()
    studies[-1].unlink()
    kept = {p: p.stat().st_mtime_ns for p in studies[:-1]}
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync", rewrite=True)
    assert {p: p.stat().st_mtime_ns for p in studies[:-1]} == kept  # reused, not recomputed
    assert studies[-1].is_file() and (atlas_path / PREDICTIONS_FILE).read_bytes() == want
    assert json.loads((atlas_path / "atlas.json").read_text())["vocabulary"]["label_transfer"] == summary


def test_kill_9_during_training_resumes_to_the_uninterrupted_weights(small, tmp_path):
    """Issue 22: the build killed while training (after a checkpoint) resumes from the checkpoint
    and ends with the weights, bit for bit, of a build that was never interrupted."""
    import torch

    data = small[0]
    model = dict(SMALL_MODEL, batch_size=48, epochs=3)  # ~40 batches: time to be killed in between
    env = dict(os.environ, SIGATLAS_THREADS="1")
    reference = _manifest(tmp_path / "reference", data, model)
    subprocess.run([sys.executable, "-m", "compute", "build", str(reference), "--quiet", "--scheduler", "sync"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    manifest = _manifest(tmp_path / "killed", data, model)
    cmd = [sys.executable, "-m", "compute", "build", str(manifest), "--quiet", "--scheduler", "sync", "--checkpoint-every", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    train_dir = tmp_path / "killed" / ".atlas.work" / "train"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not list(train_dir.glob("*/checkpoint.pt")):
        time.sleep(0.005)
    assert proc.poll() is None, f"the build ended before a checkpoint was seen: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "atlas" / "model" / "encoder.ckpt").exists()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    card = json.loads((tmp_path / "killed" / "atlas" / "model" / "model_card.json").read_text())
    assert card["training"]["resumed_from"]["epoch"] * 100 + card["training"]["resumed_from"]["batch"] > 0, card["training"]
    got = torch.load(tmp_path / "killed" / "atlas" / "model" / "encoder.ckpt", weights_only=True)["state_dict"]
    want = torch.load(tmp_path / "reference" / "atlas" / "model" / "encoder.ckpt", weights_only=True)["state_dict"]
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=f"{k} after resuming from {card['training']['resumed_from']}")
    assert not list(train_dir.glob("*/checkpoint.pt"))  # the checkpoint goes once the model is saved


def test_verify_names_damage_and_rewrite_repairs_it(small, tmp_path, capsys):
    data, _, _, _ = small
    manifest = _manifest(tmp_path, data)
    atlas_path = build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    assert verify_atlas(atlas_path).ok
    study = sorted((atlas_path / "studies").iterdir())[0]
    flipped = study / "attr.data.npy"
    raw = bytearray(flipped.read_bytes())
    raw[-5] ^= 0xFF  # one byte, same size
    flipped.write_bytes(bytes(raw))
    (study / "umap.npy").write_bytes((study / "umap.npy").read_bytes()[:-8])  # truncated
    (atlas_path / "genes.tsv").unlink()
    report = verify_atlas(atlas_path)
    text = report.text()
    assert not report.ok and len(report.problems) == 3, text
    assert f"studies/{study.name}/attr.data.npy: content differs" in text
    assert f"studies/{study.name}/umap.npy:" in text and "truncated" in text
    assert "genes.tsv: missing" in text
    assert f"python -m compute build {manifest} --rewrite" in report.advice and study.name in report.advice
    # the command line says the same and exits 1
    proc = subprocess.run([sys.executable, "-m", "compute", "verify", str(atlas_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "attr.data.npy" in proc.stdout
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync", rewrite=True)
    assert verify_atlas(atlas_path).ok


def test_unchanged_studies_are_skipped(small, tmp_path):
    data, _, _, _ = small
    manifest = _manifest(tmp_path, data)
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    doc = yaml.safe_load(manifest.read_text())
    doc["studies"][0]["title"] += " (renamed)"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    stats: dict = {}
    atlas_path = build_atlas(load_manifest(manifest), quiet=True, scheduler="sync", stats=stats)
    assert stats["written"] == [doc["studies"][0]["id"]]  # only the changed study's files are rewritten
    assert stats["computed"] == []  # its attributions and embedding come from the work folder
    root = json.loads((atlas_path / "atlas.json").read_text())
    assert root["studies"][0]["title"].endswith("(renamed)")
    assert verify_atlas(atlas_path).ok


def test_verify_reports_an_incomplete_atlas(tmp_path):
    (tmp_path / "studies").mkdir()
    report = verify_atlas(tmp_path)
    assert not report.ok and "incomplete" in report.problems[0]


def test_a_rebuild_switches_versions_in_one_step_and_an_open_atlas_keeps_its_own(small, tmp_path):
    """Issue 16: a build writes a new version beside the served one and switches a link to it;
    a server that opened the old version keeps answering from it; --rewrite never removes the
    served atlas.json; only the served version and the one before it are kept."""
    from compute.atlas import versions_dir

    data, _, _, _ = small
    manifest = _manifest(tmp_path, data)
    atlas_path = build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    assert atlas_path.is_symlink() and (atlas_path / "atlas.json").is_file()
    served = Atlas.open(atlas_path, cache=False)
    first_version = served.path
    before = served.score(["S100A8", "LYZ", "CD14"])
    title_before = served.studies[0].title

    doc = yaml.safe_load(manifest.read_text())
    doc["studies"][0]["title"] += " (renamed)"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    fresh = Atlas.open(atlas_path, cache=False)
    assert fresh.path != first_version and fresh.studies[0].title.endswith("(renamed)")
    # the server that opened the first version still reads it, whole and unchanged
    assert served.studies[0].title == title_before and (first_version / "atlas.json").is_file()
    np.testing.assert_array_equal(served.score(["S100A8", "LYZ", "CD14"]), before)
    assert verify_atlas(first_version).ok and verify_atlas(atlas_path).ok

    # a rewrite (after damage) builds a third version; the served atlas.json is never removed meanwhile
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync", rewrite=True)
    assert (atlas_path / "atlas.json").is_file() and verify_atlas(atlas_path).ok
    kept = sorted(p.name for p in versions_dir(atlas_path).iterdir() if p.is_dir())
    assert len(kept) == 2 and first_version.name not in kept, kept  # the served one and the one before it


def test_a_damaged_study_is_refused_never_served(small, tmp_path):
    """Issue 16: one flipped byte (same size) is found by the study's checksum on its first use
    and refused with the file and the repair command; a truncated file stops the atlas at open;
    the API answers with the error, not a changed number."""
    data, _, _, _ = small
    manifest = _manifest(tmp_path, data)
    atlas_path = build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    good = Atlas.open(atlas_path, cache=False).score(["S100A8", "LYZ"])
    study = sorted((atlas_path / "studies").iterdir())[0]
    flipped = study / "attr.data.npy"
    raw = bytearray(flipped.read_bytes())
    raw[-5] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    atlas = Atlas.open(atlas_path, cache=False)  # sizes match: opens
    with pytest.raises(AtlasFormatError, match=rf"studies/{study.name}/attr.data.npy: content differs.*--rewrite"):
        atlas.score(["S100A8", "LYZ"])
    # a caller who asks for sizes only is served without the check: the default is what protects
    assert Atlas.open(atlas_path, cache=False, verify="sizes").score(["S100A8", "LYZ"]).shape == good.shape
    (study / "umap.npy").write_bytes((study / "umap.npy").read_bytes()[:-8])
    with pytest.raises(AtlasFormatError, match=rf"studies/{study.name}/umap.npy: .*truncated"):
        Atlas.open(atlas_path, cache=False)
    build_atlas(load_manifest(manifest), quiet=True, scheduler="sync", rewrite=True)
    np.testing.assert_array_equal(Atlas.open(atlas_path, cache=False).score(["S100A8", "LYZ"]), good)

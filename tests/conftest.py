"""Shared fixtures: a tiny AnnData factory and a session-scoped tiny atlas built by the real pipeline."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "numba"))

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(cmd: list[str], *, url: str, ready: Callable[[str], bool], log_name: str, env: dict | None = None,
                   timeout: float = 90, stop_timeout: float = 30):
    """Run ``cmd`` (a server) with its output in test-artifacts/<log_name> (a file, not a pipe: a
    full pipe would block the server), wait until ``ready(url)``, yield ``url``, then stop it."""
    import pytest

    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"{cmd[2]} exited early:\n{log_path.read_text()}")
                try:
                    if ready(url):
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    pytest.fail(f"{cmd[2]} did not start within {timeout:.0f} s:\n{log_path.read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()

# The tiny corpus: every disease once, enough monocytes per sample for cell_min=25.
TINY_SIM = dict(n_studies=9, disease_donors=3, healthy_donors=1, cells_per_sample=(170, 220), max_genes=900, seed=0)
TINY_MODEL = {"kind": "train", "hidden_sizes": [128, 64], "latent_dim": 32, "epochs": 6, "batch_size": 256}


@pytest.fixture(scope="session", autouse=True)
def _isolated_result_cache(tmp_path_factory):
    """Query results go to a per-session cache, never the user's ~/.cache/sigatlas."""
    old = os.environ.get("SIGATLAS_CACHE_DIR")
    os.environ["SIGATLAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("result-cache"))
    yield
    if old is None:
        os.environ.pop("SIGATLAS_CACHE_DIR", None)
    else:
        os.environ["SIGATLAS_CACHE_DIR"] = old


def make_counts_adata(n_cells=60, genes=None, n_genes=40, density=0.3, seed=0, obs=None):
    """A small AnnData of integer counts with symbol-indexed genes."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    genes = list(genes) if genes is not None else [f"GENE{i}" for i in range(n_genes)]
    X = sp.random(n_cells, len(genes), density=density, random_state=seed, format="csr", dtype=np.float32)
    X.data = rng.integers(1, 20, size=X.nnz).astype(np.float32)
    obs = obs if obs is not None else pd.DataFrame(
        {"cell_type": rng.choice(["T", "B", "mono"], n_cells), "disease": "healthy"}, index=[f"c{i}" for i in range(n_cells)]
    )
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture
def counts_adata():
    return make_counts_adata


def write_tiny_manifest(folder: Path, data_dir: Path) -> Path:
    from compute.demo import SimulationConfig, demo_manifest_text

    cfg = SimulationConfig(**TINY_SIM)
    doc = yaml.safe_load(demo_manifest_text(cfg, data_dir=str(data_dir)))
    doc["atlas"] = {"name": "tiny", "out": str(folder / "atlas")}
    doc["model"] = TINY_MODEL
    doc["embedding"] = {"n_neighbors": 10, "min_dist": 0.3}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """(manifest path, atlas path, planted truth) of a tiny simulated atlas built end to end."""
    from compute.build import build_atlas
    from compute.demo import SimulationConfig, simulate_studies
    from compute.manifest import load_manifest

    folder = tmp_path_factory.mktemp("tiny")
    truth = simulate_studies(folder / "data", SimulationConfig(**TINY_SIM))
    manifest_path = write_tiny_manifest(folder, folder / "data")
    atlas_path = build_atlas(load_manifest(manifest_path), quiet=True)
    return manifest_path, atlas_path, truth


@pytest.fixture(scope="session")
def tiny_atlas(tiny_build):
    from compute.atlas import Atlas

    return Atlas.open(tiny_build[1])

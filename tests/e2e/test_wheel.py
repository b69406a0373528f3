"""The package as a user installs it: the wheel built from this tree, installed non-editable into a
fresh virtual environment, builds an atlas with ``sigatlas-build`` and serves it with
``sigatlas-dashboard`` with its presets and stylesheet (files that live beside the code and must
travel in the wheel)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port, running_server

pytestmark = pytest.mark.slow

# what the code reads at run time from inside its packages
PACKAGE_DATA = (
    "compute/assets/presets/ms1.txt",
    "compute/assets/reference/h.all.v7.5.1.symbols.gmt",
    "compute/assets/reference/human_immune_cell_markers.json",
    "dashboard/assets/sigatlas.css",
    "dashboard/assets/forest.js",
)
_SKIP_IN_COPY = (".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", "data", "atlas",
                 "test-artifacts", ".pytest_cache", ".hypothesis")


def _copy_source(dest: Path) -> Path:
    """This tree's files without its build outputs, data and environments (setuptools builds in
    the source folder; the checkout stays clean)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        for rel in listed.stdout.splitlines():
            src = REPO / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:  # not a git checkout (an unpacked archive)
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*_SKIP_IN_COPY), dirs_exist_ok=True)
    return dest


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment whose dependencies are this interpreter's (a .pth line: nothing is
    downloaded, torch is never installed again) and whose sigatlas is only what pip installs there.
    Returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    bin_dir = folder / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # plain path lines: this environment's own .pth files (an editable sigatlas among them) are not run
    deps = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (Path(purelib) / "_sigatlas_test_deps.pth").write_text("\n".join(deps) + "\n")
    return bin_dir


def test_the_wheel_installs_builds_and_serves_with_its_assets(tmp_path):
    source = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(source)], check=True)
    (wheel,) = dist.glob("sigatlas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in PACKAGE_DATA if n not in names], sorted(n for n in names if "assets" in n)

    bin_dir = _fresh_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True)
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([str(bin_dir / "python"), "-c", "import compute, dashboard; print(compute.__file__); "
                            "print(dashboard.__file__)"], cwd=work, check=True, capture_output=True, text=True)
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where.stdout.split()), where.stdout

    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIGATLAS_THREADS": "1",
           "SIGATLAS_CACHE_DIR": str(tmp_path / "result-cache")}
    subprocess.run([str(bin_dir / "sigatlas-build"), "simulate", "--out", "data", "--studies", "3",
                    "--write-manifest", "manifest.yaml"], cwd=work, env=env, check=True, capture_output=True)
    doc = yaml.safe_load((work / "manifest.yaml").read_text())
    doc["atlas"] = {"name": "wheel", "out": str(work / "atlas")}
    doc["model"] = {"kind": "train", "hidden_sizes": [32], "latent_dim": 8, "epochs": 1, "batch_size": 256}
    doc["attribution"]["n_steps"] = 8
    doc["embedding"] = {"n_neighbors": 5, "min_dist": 0.3}
    doc["studies"] = [s for s in doc["studies"] if s.get("simulated")]
    (work / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    built = subprocess.run([str(bin_dir / "sigatlas-build"), "build", "manifest.yaml", "--scheduler", "sync", "--quiet"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    port = free_port()
    cmd = [str(bin_dir / "sigatlas-dashboard"), "--atlas", str(work / "atlas"), "--port", str(port)]

    def fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    with running_server(cmd, url=f"http://127.0.0.1:{port}", ready=lambda u: bool(fetch(u)), log_name="wheel-dashboard.log",
                        env=env) as url:
        page = fetch(url)
        layout = fetch(f"{url}/_dash-layout")
        css = fetch(f"{url}/assets/sigatlas.css")
    assert "/assets/sigatlas.css" in page
    assert css == (REPO / "dashboard" / "assets" / "sigatlas.css").read_text()
    # the presets menu: MS1 and the Hallmark and marker sets read from compute/assets
    for preset in ("MS1 monocytes (sepsis)", "Hallmark INTERFERON ALPHA RESPONSE", "Plasmacytoid dendritic cell markers"):
        assert preset in layout, preset

"""Bad study files are refused at ingest, each in one line naming the study and the problem
(issue 33, item 9): duplicate cell ids, (almost) no known genes, NaN or Inf values, a full disk.

Each case goes through the real path: an h5ad written to disk, read by ``read_study`` or the
build's ingest task (``ingest_h5ad_in_blocks`` first, as in a build), and a whole build through
``python -m compute build``."""

from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from compute.errors import IngestError, StorageError
from compute.manifest import FieldSpec, IngestSpec, SourceSpec, StudySpec
from tests.conftest import REPO, make_counts_adata


def _symbols(n: int) -> list[str]:
    """``n`` current human HGNC symbols (plain ones: letters and digits)."""
    from compute.query import symbol_table

    return sorted({s for s in symbol_table().current.values() if s.isalnum() and s.isupper()})[:n]


def _study(tmp_path, name: str, *, genes=None, values: str = "counts", edit=None, n_cells: int = 120):
    """(spec, path) of a study of counts written to ``tmp_path/name.h5ad``; ``edit(adata)`` spoils it."""
    a = make_counts_adata(n_cells=n_cells, genes=genes if genes is not None else _symbols(60), density=0.5, seed=3)
    if edit is not None:
        edit(a)
    path = tmp_path / f"{name}.h5ad"
    a.write_h5ad(path)
    return StudySpec(id=name, title=name, source=SourceSpec(kind="h5ad", path=path, values=values), tissue=FieldSpec(value="blood")), path


def _ingest(spec, out):
    """The build's ingest task on one study (the blocked path first, then the whole-study path)."""
    from compute.build._tasks import ingest_task

    return ingest_task(spec, IngestSpec(min_genes=5, min_counts=10), str(out), False)


def _set_value(value: float, cell: int = 7, gene: int = 2):
    def edit(a):
        X = a.X.toarray()
        X[cell, gene] = value
        a.X = sp.csr_matrix(X)

    return edit


# -- duplicate cell ids ---------------------------------------------------------------------------
def test_duplicate_cell_ids_are_refused(tmp_path):
    def duplicate(a):
        a.obs_names = [f"c{i % 100}" for i in range(a.n_obs)]  # 20 ids twice

    spec, _ = _study(tmp_path, "DUP", edit=duplicate)
    for run in (lambda: _ingest(spec, tmp_path / "out.h5ad"), lambda: __import__("compute.ingest").ingest.read_study(spec)):
        with pytest.raises(IngestError) as info:
            run()
        msg = str(info.value)
        assert "study 'DUP'" in msg and "20 cell id(s) occur more than once" in msg and "'c0' x2" in msg, msg
        assert "obs_names_make_unique" in msg and "\n" not in msg
    assert not (tmp_path / "out.h5ad").exists()


# -- unknown genes ----------------------------------------------------------------------------------
def test_a_study_of_unknown_genes_is_refused(tmp_path):
    """All 60 names unknown (a study indexed by some private id), or 55 of 60: refused, naming
    examples; accepted, they would join the atlas's gene order and rescale every other study."""
    from compute.ingest import read_study

    for name, genes in (("NONE", [f"ZZP_{i}" for i in range(60)]), ("FEW", _symbols(5) + [f"PROBE_{i}" for i in range(55)])):
        spec, _ = _study(tmp_path, name, genes=genes)
        with pytest.raises(IngestError) as info:
            read_study(spec)
        msg = str(info.value)
        assert f"study '{name}'" in msg and "(almost) no known genes" in msg and "\n" not in msg, msg
        assert ("0 of its 60 gene names" if name == "NONE" else "5 of its 60 gene names") in msg
        assert "'ZZP_0'" in msg or "'PROBE_0'" in msg
        with pytest.raises(IngestError, match="no known genes"):
            _ingest(spec, tmp_path / f"{name}.out.h5ad")


def test_known_genes_in_another_case_or_as_ensembl_ids_are_accepted(tmp_path):
    """The rule counts genes after harmonising: lower-case symbols and Ensembl ids are known."""
    from compute.ingest import ingest_report, read_study

    lower, _ = _study(tmp_path, "LOWER", genes=[g.lower() for g in _symbols(60)])
    a = read_study(lower)
    assert set(a.var_names) == set(_symbols(60))
    assert any("Species not recognised" in w for w in ingest_report(a)["warnings"])  # lower case: not decided, but known


# -- NaN and Inf -------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", ["counts", "tpm"])
def test_nan_values_are_named_not_taken_for_tpm(tmp_path, values):
    """Counts with one NaN were refused with advice to declare TPM; declared TPM, the build dropped
    the cell silently. Now both say NaN, where, and what to do."""
    spec, _ = _study(tmp_path, "NANS", values=values, edit=_set_value(np.nan))
    with pytest.raises(IngestError) as info:
        _ingest(spec, tmp_path / "out.h5ad")
    msg = str(info.value)
    assert "study 'NANS'" in msg and "X holds 1 NaN value(s) in 1 cell(s)" in msg and "cell 'c7'" in msg, msg
    assert "TPM" not in msg and "source.values: tpm" not in msg and "\n" not in msg


@pytest.mark.parametrize("values", ["counts", "tpm", "lognorm"])
def test_inf_values_are_named_not_a_numpy_error(tmp_path, values):
    """An Inf passed the counts check (inf == rint(inf)) and surfaced as `ValueError: Input
    contains NaN` deep in the build."""
    spec, _ = _study(tmp_path, "INFS", values=values, edit=_set_value(np.inf, cell=3, gene=4))
    with pytest.raises(IngestError) as info:
        _ingest(spec, tmp_path / "out.h5ad")
    msg = str(info.value)
    assert "study 'INFS'" in msg and "1 Inf value(s)" in msg and "cell 'c3'" in msg, msg
    assert f"gene '{_symbols(60)[4]}'" in msg and "finite" in msg


def test_nan_in_x_is_no_obstacle_when_raw_holds_the_counts(tmp_path):
    """Only the slot that is used must be finite: counts in .raw are read, X's NaN ignored."""
    import anndata as ad

    from compute.ingest import read_study

    a = make_counts_adata(n_cells=50, genes=_symbols(60), density=0.5, seed=4)
    a.raw = ad.AnnData(X=a.X.copy(), var=a.var.copy())
    X = a.X.toarray()
    X[0, 0] = np.nan
    a.X = sp.csr_matrix(np.log1p(X))
    path = tmp_path / "raw.h5ad"
    a.write_h5ad(path)
    out = read_study(StudySpec(id="RAW", title="r", source=SourceSpec(kind="h5ad", path=path), tissue=FieldSpec(value="blood")))
    assert out.n_obs == 50 and np.isfinite(out.X.data).all()


# -- a full disk -----------------------------------------------------------------------------------------
def test_a_full_disk_during_ingest_is_an_error_naming_the_folder(tmp_path, monkeypatch):
    """ENOSPC raised where the ingested file is written (both ingest paths write through
    AnnData.write_h5ad): the build stops at the first such study with one line naming the file
    and its folder, reports the studies not finished, and leaves no temporary file."""
    import anndata as ad

    from compute.build import StudyFailures, build_atlas
    from compute.manifest import load_manifest

    manifest = _manifest(tmp_path, {"A": {}, "B": {"values": "tpm"}, "C": {}})

    def full(self, filename=None, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(ad.AnnData, "write_h5ad", full)
    with pytest.raises(StudyFailures) as info:
        build_atlas(load_manifest(manifest), quiet=True, scheduler="sync")
    msg = str(info.value)
    folder = tmp_path / ".atlas.work" / "ingest"
    assert f"A: cannot write {folder}/A-" in msg and "no space left on the device" in msg, msg
    assert "not finished (the stage stopped at the write error above): B, C" in msg and "Make room" in msg
    assert sorted(p.name for p in folder.iterdir()) == [".sigatlas-writes", ".sigatlas-writes.lock"]  # no temporary h5ad
    assert not list((folder / ".sigatlas-writes").iterdir())


def test_a_write_that_cannot_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    """HDF5 that meets a full disk halfway through a file can crash the process when it closes
    (exit 139, seen on a 2 MB tmpfs): a study's file that cannot fit is refused before writing."""
    import shutil

    from compute.files import reserved_space

    spec, _ = _study(tmp_path, "BIG")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    (tmp_path / "work").mkdir()
    with pytest.raises(StorageError) as info:
        _ingest(spec, tmp_path / "work" / "BIG.h5ad")
    msg = str(info.value)
    assert f"cannot write {tmp_path}/work/BIG.h5ad: it needs about" in msg and f"{tmp_path}/work has 0.1 MB free" in msg, msg
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [".sigatlas-writes", ".sigatlas-writes.lock"]
    # writes in progress in the same folder hold their share: two that fit alone need not fit together
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=3_000_000))
    with reserved_space(tmp_path / "work" / "one.h5ad", 2_000_000):
        with pytest.raises(StorageError, match="1.9 MB of it held for writes in progress"):
            with reserved_space(tmp_path / "work" / "two.h5ad", 2_000_000):
                pass
    with reserved_space(tmp_path / "work" / "two.h5ad", 2_000_000):  # the first one finished
        pass


def test_a_full_disk_under_a_memory_map_is_an_error_not_sigbus(tmp_path, monkeypatch):
    """The atlas's gene-major store scatters values into memory-mapped files: a full disk under
    a map kills the process (SIGBUS). The files get their blocks first; no room is StorageError."""
    import os

    from compute.atlas._store import GeneMajorWriter

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(StorageError, match=r"cannot write .*\.tmp\.npy: no space left on the device"):
        GeneMajorWriter(tmp_path / "store", "expr", np.array([3, 0, 2]))
    assert list((tmp_path / "store").iterdir()) == []


# -- the build, end to end ------------------------------------------------------------------------------
def _manifest(tmp_path, studies: dict[str, dict], edits: dict | None = None):
    """A manifest of small studies (``studies``: id -> source overrides); ``edits[id]`` spoils one."""
    doc = {"version": 1, "atlas": {"name": "bad", "out": str(tmp_path / "atlas")}, "seed": 0,
           "model": {"kind": "train", "hidden_sizes": [16], "latent_dim": 4, "epochs": 1, "batch_size": 64},
           "ingest": {"min_genes": 5, "min_counts": 10, "min_gene_overlap": 20}, "studies": []}
    for sid, source in studies.items():
        _, path = _study(tmp_path, sid, edit=(edits or {}).get(sid), genes=source.pop("genes", None))
        doc["studies"].append({"id": sid, "title": sid, "source": {"kind": "h5ad", "path": str(path), **source},
                               "organism": "human", "tissue": "blood", "disease": {"column": "disease"},
                               "columns": {"cell_type": "cell_type"}})
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_build_names_every_bad_study_in_one_line(tmp_path):
    """`python -m compute build` on a manifest with one good study and four bad ones: exit 2,
    one line per bad study naming its problem, no traceback, and no atlas."""

    def duplicate(a):
        a.obs_names = ["same"] * a.n_obs

    manifest = _manifest(tmp_path, {"GOOD": {}, "DUPS": {}, "UNKNOWN": {"genes": [f"ZZP_{i}" for i in range(60)]},
                                    "NANS": {"values": "tpm"}, "INFS": {}},
                         edits={"DUPS": duplicate, "NANS": _set_value(np.nan), "INFS": _set_value(np.inf)})
    proc = subprocess.run([sys.executable, "-m", "compute", "build", str(manifest), "--scheduler", "sync", "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "4 of the manifest's studies failed at ingest" in proc.stderr, proc.stderr
    lines = {ln.split(":", 1)[0].strip(): ln for ln in proc.stderr.splitlines() if ln.startswith("  ")}
    assert "cell id(s) occur more than once" in lines["DUPS"]
    assert "(almost) no known genes" in lines["UNKNOWN"]
    assert "NaN" in lines["NANS"] and "TPM" not in lines["NANS"]
    assert "Inf" in lines["INFS"] and "Input contains" not in lines["INFS"]
    assert "GOOD" not in lines and not (tmp_path / "atlas").exists()

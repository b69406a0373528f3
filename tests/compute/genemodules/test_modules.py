"""Gene modules from co-attribution (compute.genemodules) on the tiny SIMULATED atlas and on
correlation matrices whose structure is known."""

from __future__ import annotations

import numpy as np
import pytest

from compute.genemodules import coherence_null, gene_modules, signature_modules


@pytest.fixture(scope="module")
def modules(tiny_atlas):
    return gene_modules(tiny_atlas, use_cache=False)


def test_modules_are_consistent_and_coherent(modules):
    t = modules.table
    assert len(t) >= 5
    assert list(t["module"]) == list(range(1, len(t) + 1))
    for _, row in t.iterrows():
        members = modules.module_genes(int(row["module"]))
        assert sorted(members) == sorted(row["genes"]) and len(members) == row["size"] >= 5
        assert 0 < row["p_value"] <= 1
    # the best modules are far more coherent than bin-matched random sets of their size
    assert (t["z"].head(5) > 5).all()
    assert (t["coherence"] > t["null_mean"]).all()
    assert modules.corr.shape == (len(modules.genes), len(modules.genes))
    assert np.allclose(np.diag(modules.corr), 1.0)
    assert "metacells" in modules.method


def test_signature_finds_its_held_out_half(modules, tiny_build):
    """Half of a planted program as the signature: the genes that co-attribute with it most
    are mostly the other half (chance would be about 1 in 20)."""
    truth = tiny_build[2]
    universe = set(modules.genes)
    rng = np.random.default_rng(0)
    for prog in truth["programs"]:
        genes = [g for g in prog["genes"] if g in universe]
        order = rng.permutation(len(genes))
        given = [genes[i] for i in order[: len(genes) // 2]]
        held = set(genes) - set(given)
        sm = signature_modules(modules, given, n_missing=10, n_perm=200)
        assert sm.z > 3, prog["name"]
        assert sm.p_value <= 0.01
        assert sum(g in held for g in sm.missing["gene"]) >= 6, (prog["name"], list(sm.missing["gene"]))
        assert not set(sm.missing["gene"]) & set(given)
        assert len(sm.overlaps) >= 1 and (sm.overlaps["overlap"] >= 1).all()
        assert sm.overlaps["p_value"].is_monotonic_increasing


def test_random_genes_are_not_coherent(modules):
    rng = np.random.default_rng(1)
    zs = [signature_modules(modules, list(rng.choice(modules.genes, 20, replace=False)), n_perm=200, seed=i).z for i in range(5)]
    assert np.median(zs) < 2.5, zs


def test_unknown_and_repeated_genes_are_reported(modules):
    genes = [modules.genes[0], modules.genes[0], "NOT_A_GENE", modules.genes[1]]
    sm = signature_modules(modules, genes, n_perm=50)
    assert sm.considered == [modules.genes[0], modules.genes[1]]
    assert sm.not_considered == ["NOT_A_GENE"]
    one = signature_modules(modules, [modules.genes[0]], n_perm=50)
    assert np.isnan(one.coherence) and np.isnan(one.z)  # one gene has no pairs


def test_coherence_null_on_known_blocks():
    """A block of 10 genes correlated at 0.5 among 200 independent ones: the block's z is
    large, a set of independent genes' z is not."""
    n = 200
    noise = np.random.default_rng(0).normal(0, 0.02, size=(n, n))
    R = ((noise + noise.T) / 2).astype(np.float32)
    R[:10, :10] += 0.5
    np.fill_diagonal(R, 1.0)
    bins = np.zeros(n, dtype=np.int64)
    block = np.arange(10)
    null = coherence_null(R, bins, block, 300, seed=0)
    assert null.shape == (300,)
    assert null.mean() < 0.05
    assert (0.5 - null.mean()) / null.std() > 10
    other = coherence_null(R, bins, np.arange(50, 60), 300, seed=0)
    assert abs(other.mean() - null.mean()) < 0.05


def test_co_expression_modules_and_bad_store(tiny_atlas):
    gm = gene_modules(tiny_atlas, store="expr", use_cache=False, n_perm=50)
    assert len(gm.table) >= 1
    with pytest.raises(ValueError, match="store must be"):
        gene_modules(tiny_atlas, store="counts")


def test_modules_are_cached_per_atlas(tiny_build, tmp_path):
    from compute.atlas import Atlas

    atlas = Atlas.open(tiny_build[1], cache=tmp_path / "cache")
    first = gene_modules(atlas, n_perm=50)
    again = gene_modules(Atlas.open(tiny_build[1], cache=tmp_path / "cache"), n_perm=50)
    assert again.table[["name", "size", "z"]].equals(first.table[["name", "size", "z"]])
    assert any((tmp_path / "cache").iterdir())


def test_modules_command_line(tiny_build):
    import subprocess
    import sys

    truth = tiny_build[2]
    genes = ",".join(truth["programs"][1]["genes"][:30])
    out = subprocess.run([sys.executable, "-m", "compute", "modules", str(tiny_build[1]), "--genes", genes + ",NOT_A_GENE", "--top", "5"],
                         capture_output=True, text=True, check=True).stdout
    assert "modules over" in out and "coherence" in out and "z = " in out
    assert "NOT_A_GENE" in out and "co-attributing genes missing from the signature" in out


def test_tiny_module_sets_give_nan_not_false_significance():
    """Too few other genes to draw random sets from: no z-score and no p-value, not a crash
    and not p = 1/1001."""
    import pandas as pd

    from compute.genemodules import GeneModules

    R = np.array([[1, 0.5, 0.4], [0.5, 1, 0.3], [0.4, 0.3, 1]], dtype=np.float32)
    empty = pd.DataFrame(columns=["module", "name", "size", "coherence", "null_mean", "null_sd", "z", "p_value", "hub_genes", "genes"])
    gm = GeneModules(["A", "B", "C"], R, np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64), empty, 3)
    for genes in (["A", "B", "C"], ["A", "B"]):
        sm = signature_modules(gm, genes, n_perm=100)
        assert np.isfinite(sm.coherence)
        assert np.isnan(sm.z) and np.isnan(sm.p_value), genes


def test_the_build_stores_the_modules_and_they_are_read_not_computed(tiny_build, tiny_atlas, modules, monkeypatch):
    """Issue 16, failure 2: the build stores the atlas's modules; reading them computes nothing."""
    from compute.genemodules import MODULES_DIR, default_params, stored_modules

    record = tiny_atlas.meta["gene_modules"]
    assert record["dir"] == MODULES_DIR and record["params"] == default_params()
    assert {f"{MODULES_DIR}/corr.npy", f"{MODULES_DIR}/modules.json"} <= set(tiny_atlas.meta["files"])
    stored = stored_modules(tiny_atlas)
    assert stored.genes == modules.genes and np.array_equal(stored.labels, modules.labels)
    np.testing.assert_allclose(np.asarray(stored.corr), modules.corr, atol=1e-6)
    assert stored.table[["name", "size", "hub_genes"]].equals(modules.table[["name", "size", "hub_genes"]])
    np.testing.assert_allclose(stored.table["z"].to_numpy(float), modules.table["z"].to_numpy(float), equal_nan=True)
    # with the defaults, gene_modules answers from the stored files: a computation would fail here
    import compute.genemodules._modules as impl

    monkeypatch.setattr(impl, "_metacell_matrix", lambda *a, **k: pytest.fail("modules computed, not read"))
    assert gene_modules(tiny_atlas).genes == modules.genes
    # other parameters are computed (and would fail here)
    with pytest.raises(pytest.fail.Exception):
        gene_modules(tiny_atlas, n_perm=7, use_cache=False)


def test_an_atlas_without_stored_modules_computes_them_in_the_background(tiny_build, tmp_path):
    """An atlas built before builds stored modules: the Modules tab says they are being computed
    (a background thread; the request returns at once) and asks again until they are there."""
    import json
    import shutil
    import time

    from dashboard import ids
    from dashboard.callbacks import modules as modules_tab
    from dashboard.data import DashboardData

    old = tmp_path / "old"
    shutil.copytree(tiny_build[1], old, symlinks=False)
    root = json.loads((old / "atlas.json").read_text())
    root["gene_modules"] = None
    root["files"] = {k: v for k, v in root["files"].items() if not k.startswith("gene_modules/")}
    shutil.rmtree(old / "gene_modules")
    (old / "atlas.json").write_text(json.dumps(root))
    data = DashboardData(old)
    t0 = time.perf_counter()
    first = modules_tab.render_modules(data, None, None, "modules", None, False)
    assert time.perf_counter() - t0 < 5
    assert first["poll_disabled"] is False and first["store"] is None
    assert first["summary"].id == ids.MODULES_PENDING and "being computed" in first["summary"].children
    deadline = time.time() + 120
    while True:
        out = modules_tab.render_modules(data, None, None, "modules", None, False, poll=1)
        if out["poll_disabled"] or time.time() > deadline:
            break
        time.sleep(0.5)
    assert out["poll_disabled"] is True and out["store"] is not None and out["module_options"]


def test_metacell_groups_are_read_study_by_study_with_the_same_numbers(tiny_atlas):
    """The build's gene-modules stage groups cells without loading every cell's labels at once
    (Atlas.study_cells): the same group keys and indices as np.unique over the whole table."""
    import numpy as np

    from compute.genemodules._modules import _group_codes

    cells = tiny_atlas.cells
    key = (cells["study"].astype(str) + "\x1f" + cells["sample"].astype(str) + "\x1f" + cells["cell_type"].astype(str)).to_numpy()
    want_keys, want_inv = np.unique(key, return_inverse=True)
    keys, inv = _group_codes(tiny_atlas)
    assert list(keys) == list(want_keys) and np.array_equal(inv, want_inv)
    first = tiny_atlas.studies[0]
    part = tiny_atlas.study_cells(first.id, ["sample"])
    assert list(part.columns) == ["sample"] and len(part) == first.n_cells


def test_metacells_built_study_by_study_are_those_of_one_global_shuffle(tiny_atlas):
    """_metacell_members holds only the metacells drawn; they are the ones the plain rule gives:
    one uniform draw a cell (atlas order), every group's cells sorted by it, cut into metacells
    of k, groups in key order, then max_metacells of them drawn without replacement."""
    import numpy as np

    from compute.genemodules._modules import _group_codes, _metacell_members

    keys, inv = _group_codes(tiny_atlas)
    for max_metacells, k, seed in [(10**6, 10, 0), (40, 10, 3), (25, 4, 1)]:
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(inv.size), inv))
        sizes = np.bincount(inv)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        plain, plain_keys = [], []
        for g in range(sizes.size):
            block = order[starts[g] : starts[g] + sizes[g] - sizes[g] % k].reshape(-1, k)
            plain.extend(block)
            plain_keys += [keys[g]] * len(block)
        if len(plain) > max_metacells:
            pick = np.sort(rng.choice(len(plain), size=max_metacells, replace=False))
            plain, plain_keys = [plain[i] for i in pick], [plain_keys[i] for i in pick]
        members, member_keys = _metacell_members(tiny_atlas, max_metacells=max_metacells, k=k, rng=np.random.default_rng(seed))
        assert members.shape == (len(plain), k) and np.array_equal(members, np.stack(plain)), (max_metacells, k)
        assert list(member_keys) == plain_keys
        assert len(plain) == min(max_metacells, int((sizes // k).sum()))

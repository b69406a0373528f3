"""Atlas format: write/read round trip, scores against a dense reference, version errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from compute.atlas import (
    Atlas,
    AtlasFormatError,
    QueryError,
    SignatureWarning,
    StudyArrays,
    write_atlas,
)
from compute.model import Encoder, save_encoder

GENES = [f"G{i}" for i in range(30)]


def _study(sid, n, seed, simulated=False):
    rng = np.random.default_rng(seed)
    A = sp.random(n, len(GENES), density=0.3, random_state=seed, format="csr", dtype=np.float32)
    A.data = rng.uniform(0, 50, A.nnz).astype(np.float32)
    cells = pd.DataFrame({
        "cell_id": [f"{sid}_{i}" for i in range(n)], "study": sid, "sample": rng.choice(["a", "b"], n),
        "donor": "d", "cell_type": rng.choice(["T", "mono"], n), "disease": "healthy", "tissue": "blood",
        "simulated": simulated,
    })
    return StudyArrays(meta={"id": sid, "title": sid, "simulated": simulated}, cells=cells, attributions=A,
                       embedding=rng.normal(size=(n, 4)).astype(np.float32), umap=rng.normal(size=(n, 2)).astype(np.float32))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    enc = Encoder(len(GENES), (8,), 4)
    enc.gene_order = GENES
    model = save_encoder(enc, root / "model_src")
    studies = [_study("S1", 40, 1), _study("S2", 25, 2, simulated=True), _study("S3", 1, 3)]
    path = write_atlas(root / "atlas", name="t", gene_order=GENES, studies=studies, model_dir=model,
                       model_card={"seed": 0}, build={"key": "k"}, method={})
    dense = np.vstack([s.attributions.toarray() for s in studies])
    return path, dense, studies


def test_round_trip(written):
    path, dense, studies = written
    atlas = Atlas.open(path)
    assert atlas.genes == GENES and atlas.n_cells == 66 and len(atlas.cells) == 66
    assert list(atlas.cells["study"].astype(str)[:1]) == ["S1"] and atlas.has_simulated
    assert atlas.cells["simulated"].sum() == 25
    np.testing.assert_array_equal(atlas.gene_values(GENES), dense)
    np.testing.assert_array_equal(atlas.umap(), np.vstack([s.umap for s in studies]))
    root = json.loads((path / "atlas.json").read_text())
    assert root["format_version"] == 1 and root["studies"][1]["simulated"] is True
    assert (path / "model" / "encoder.ckpt").is_file()


def test_score_matches_dense_reference(written):
    path, dense, _ = written
    atlas = Atlas.open(path)
    np.testing.assert_allclose(atlas.score(["G1", "G5", "G7"]), dense[:, [1, 5, 7]].mean(axis=1), rtol=1e-6)
    w = [2.0, 0.5]
    np.testing.assert_allclose(atlas.score([("G3", 2.0), ("G9", 0.5)]), (dense[:, 3] * 2 + dense[:, 9] * 0.5) / sum(w), rtol=1e-6)


def test_unknown_and_duplicate_genes_are_reported_not_silent(written):
    atlas = Atlas.open(written[0])
    with pytest.warns(SignatureWarning, match=r"1 not in the gene order \(NOPE\).*1 duplicates"):
        s = atlas.score(["G1", "NOPE", "g1", "G2"])
    np.testing.assert_allclose(s, written[1][:, [1, 2]].mean(axis=1), rtol=1e-6)
    with pytest.warns(SignatureWarning), pytest.raises(QueryError, match="none of the 2 requested genes"):
        atlas.score(["X", "Y"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(GENES + ["NOPE1", "nope2"]), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_score_independent_of_order_and_duplicates(written, genes, rnd):
    atlas = Atlas.open(written[0])
    known = [g for g in dict.fromkeys(genes) if g in GENES]
    if not known:
        return
    shuffled = genes + genes[:3]
    rnd.shuffle(shuffled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SignatureWarning)
        a, b = atlas.score(genes), atlas.score(shuffled)
    ref = written[1][:, [GENES.index(g) for g in known]].mean(axis=1)
    np.testing.assert_allclose(a, ref, rtol=1e-5)
    np.testing.assert_allclose(b, ref, rtol=1e-5)


def test_open_errors_say_what_to_rerun(written, tmp_path):
    with pytest.raises(AtlasFormatError, match="not a directory.*python -m compute build"):
        Atlas.open(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasFormatError, match="no atlas.json.*did not finish.*python -m compute build"):
        Atlas.open(tmp_path / "empty")
    import shutil

    for version, pattern in ((99, "newer than this SigAtlas reads"), (0, "older than this SigAtlas reads.*python -m compute build")):
        copy = tmp_path / f"v{version}"
        shutil.copytree(written[0], copy)
        root = json.loads((copy / "atlas.json").read_text())
        root["format_version"] = version
        (copy / "atlas.json").write_text(json.dumps(root))
        with pytest.raises(AtlasFormatError, match=pattern):
            Atlas.open(copy)
    damaged = tmp_path / "damaged"
    shutil.copytree(written[0], damaged)
    (damaged / "studies" / "S2" / "attr.data.npy").unlink()
    # checked against atlas.json's record of every file: the file, and what to do, are named
    with pytest.raises(AtlasFormatError, match=r"studies/S2/attr.data.npy: missing.*To repair: .*\(studies: S2\)"):
        Atlas.open(damaged)
    # without the recorded checks, the structural check still names it
    with pytest.raises(AtlasFormatError, match=r"study 'S2' is missing attr.data.npy"):
        Atlas.open(damaged, verify="none")

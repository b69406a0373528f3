"""Encoder: SCimilarity parameter names, save/load round trip, training one epoch, triplet loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from compute.errors import ModelError
from compute.manifest import ModelSpec
from compute.model import Encoder, load_encoder, save_encoder, train_encoder, triplet_loss


def test_scimilarity_parameter_names():
    enc = Encoder(100, (32, 16), 8)
    keys = set(enc.state_dict())
    assert {"network.0.1.weight", "network.0.2.running_mean", "network.0.3.weight", "network.1.1.weight", "network.2.weight"} <= keys
    assert isinstance(enc.network[0][0], torch.nn.Dropout) and enc.network[0][0].p == 0.4
    assert enc.network[1][0].p == 0.5


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = Encoder(60, (24, 12), 6)
    enc.gene_order = [f"G{i}" for i in range(60)]
    with torch.no_grad():  # make BN statistics non-default so the round trip is a real check
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
    enc.eval()
    save_encoder(enc, tmp_path / "m", card={"seed": 0})
    for f in ("encoder.ckpt", "gene_order.tsv", "layer_sizes.json", "model_card.json"):
        assert (tmp_path / "m" / f).is_file()
    sizes = json.loads((tmp_path / "m" / "layer_sizes.json").read_text())
    assert sizes["network.0.1.weight"] == [24, 60]
    loaded = load_encoder(tmp_path / "m")
    assert not loaded.training
    assert loaded.hidden_sizes == (24, 12) and loaded.latent_dim == 6 and loaded.gene_order == enc.gene_order
    x = torch.rand(5, 60)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc(x))


def _scimilarity_release(path, n_genes, hidden, latent, seed=0):
    """A model directory laid out as SCimilarity releases it, written without our save_encoder:
    its own module tree (Dropout, Linear, BatchNorm1d, PReLU blocks, a Linear, L2 norm), a
    checkpoint {"state_dict": ...}, layer_sizes.json for every parameter and buffer, and the
    extra files a release carries that we do not read."""
    torch.manual_seed(seed)
    sizes = (n_genes, *hidden)
    net = torch.nn.ModuleList(
        torch.nn.Sequential(torch.nn.Dropout(0.4), torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.BatchNorm1d(sizes[i + 1]), torch.nn.PReLU())
        for i in range(len(hidden))
    )
    net.append(torch.nn.Linear(hidden[-1], latent))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    state = {f"network.{k}": v for k, v in net.state_dict().items()}
    path.mkdir()
    torch.save({"state_dict": state}, path / "encoder.ckpt")
    (path / "layer_sizes.json").write_text(json.dumps({k: list(v.shape) for k, v in state.items()}))
    (path / "gene_order.tsv").write_text("".join(f"GENE{i}\n" for i in range(n_genes)))
    (path / "label_ints.csv").write_text(",0\n0,T cell\n")

    def reference(x):
        net.eval()
        for layer in net:
            x = layer(x)
        return torch.nn.functional.normalize(x, dim=1)

    return reference


@pytest.mark.parametrize("hidden", [(32, 32), (40, 24, 16)])
def test_loads_a_model_directory_in_scimilaritys_release_format(tmp_path, hidden):
    from compute.attribution import attribute, describe_path

    reference = _scimilarity_release(tmp_path / "release", 70, hidden, 8)
    enc = load_encoder(tmp_path / "release")
    assert enc.hidden_sizes == hidden and enc.latent_dim == 8 and enc.gene_order[:2] == ["GENE0", "GENE1"]
    x = torch.rand(6, 70)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), reference(x))
    assert describe_path(enc) == "ig (first-layer identity, fused SCimilarity head)"
    X = sp.random(6, 70, density=0.3, random_state=1, format="csr", dtype=np.float32)
    enc64 = enc.double()
    fast, ref = attribute(enc64, X), attribute(enc64, X, method="ig-captum")
    assert np.abs(fast.toarray() - ref.toarray()).max() < 1e-3  # rows sum to 1,000: 1e-6 relative


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="no such model directory"):
        load_encoder(tmp_path / "none")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "encoder.ckpt").write_bytes(b"")
    with pytest.raises(ModelError, match="missing gene_order.tsv, layer_sizes.json"):
        load_encoder(tmp_path / "m")
    enc = Encoder(10, (4,), 2)
    enc.gene_order = [f"G{i}" for i in range(10)]
    save_encoder(enc, tmp_path / "ok")
    (tmp_path / "ok" / "gene_order.tsv").write_text("A\nB\n")
    with pytest.raises(ModelError, match="gene_order.tsv has 2 genes but the first layer takes 10"):
        load_encoder(tmp_path / "ok")


def test_triplet_loss_semi_hard_across_studies():
    # anchor 0 / positive 1 (same type, other study) at distance 1; negative 2 at 1.02: semi-hard.
    # Every other anchor-positive pair has no negative inside (d_ap, d_ap + margin).
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.02], [-5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    studies = torch.tensor([0, 1, 0, 1])
    loss, n = triplet_loss(z, labels, studies, margin=0.05)
    assert n == 1
    assert loss.item() == pytest.approx(1.0 - 1.02 + 0.05, abs=1e-5)
    # same-study pairs are never positives
    loss, n = triplet_loss(z, labels, torch.zeros(4, dtype=torch.long), margin=0.05)
    assert n == 0 and loss.item() == 0.0


def test_train_one_epoch_on_tiny_data():
    rng = np.random.default_rng(0)
    X = sp.random(120, 50, density=0.3, random_state=0, format="csr", dtype=np.float32)
    labels = rng.choice(["a", "b", "c"], 120)
    studies = rng.choice(["s1", "s2"], 120)
    spec = ModelSpec(hidden_sizes=(16, 8), latent_dim=4, epochs=1, batch_size=32)
    enc, hist = train_encoder(X, labels, studies, [f"G{i}" for i in range(50)], spec, seed=0, progress=False)
    assert not enc.training and len(hist["epochs"]) == 1
    assert np.isfinite(hist["epochs"][0]["total"]) and hist["epochs"][0]["n_triplets"] > 0
    enc2, _ = train_encoder(X, labels, studies, [f"G{i}" for i in range(50)], spec, seed=0, progress=False)
    for (k, a), b in zip(enc.state_dict().items(), enc2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=f"same seed, different {k}")

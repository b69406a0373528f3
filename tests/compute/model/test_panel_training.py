"""Panel-aware training (issue 34, item 5): the same SIMULATED cells measured on a full panel and
on a third of its genes are one population in the embedding only when the encoder is trained
to embed a cell alike on another study's panel (panel dropout with the consistency term)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from compute.integration import integration_metrics


def _two_panels(n: int = 300, genes: int = 300, seed: int = 0):
    """(log-normalised cells x genes: the cells on the full panel, then the same cells on a third of
    the genes, normalised to 10,000 x that panel's share as ingest does; study per row; label per
    row; the two studies' panels)."""
    rng = np.random.default_rng(seed)
    types = rng.choice(["T", "B", "mono"], n)
    counts = rng.poisson(0.5, size=(n, genes)).astype(np.float64)
    for k, t in enumerate(["T", "B", "mono"]):
        counts[types == t, k * 30:(k + 1) * 30] += rng.poisson(4, size=(int((types == t).sum()), 30))
    panel = np.zeros(genes, dtype=bool)
    panel[rng.choice(genes, genes // 3, replace=False)] = True
    full = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    sub = np.where(panel, counts, 0.0)
    share = sub.sum() / counts.sum()
    part = np.log1p(sub / sub.sum(axis=1, keepdims=True) * 1e4 * share)
    X = sp.csr_matrix(np.vstack([full, part]).astype(np.float32))
    return X, np.array(["FULL"] * n + ["PANEL"] * n), np.concatenate([types, types]), np.vstack([np.ones(genes, dtype=bool), panel])


def _mixing(X, studies, labels, panels, **spec_kw) -> float:
    import torch

    from compute.manifest import ModelSpec
    from compute.model import train_encoder

    torch.set_num_threads(1)
    spec = ModelSpec(hidden_sizes=(64,), latent_dim=16, epochs=15, batch_size=64, **spec_kw)
    encoder, history = train_encoder(X, labels, studies, [f"G{i}" for i in range(X.shape[1])], spec, 0, progress=False,
                                     panels=panels)
    with torch.no_grad():
        Z = encoder(torch.from_numpy(X.toarray())).numpy()
    return integration_metrics(Z, labels.astype(object), studies), history


def test_panel_consistency_brings_the_two_panels_of_the_same_cells_together():
    X, studies, labels, panels = _two_panels()
    before = _mixing(X, studies, labels, panels)[0].mixing
    dropout_only = _mixing(X, studies, labels, panels, panel_dropout=0.5)[0].mixing
    metrics, history = _mixing(X, studies, labels, panels, panel_dropout=0.5, panel_consistency=100.0)
    after = metrics.mixing
    assert before < 0.05 and dropout_only < 0.05  # an island: the panel alone tells the copies apart
    # measured 0.42 of perfect mixing on this corpus (15 epochs, 1 thread; 0.46 when panel dropout
    # only zeroed the other genes), purity 0.89; the bounds leave room for float noise
    assert after > 0.3 and after > before + 0.25, (before, dropout_only, after)
    assert metrics.purity >= 0.8, metrics.text()  # the cell types stay apart
    assert history["epochs"][-1]["consistency"] < history["epochs"][0]["consistency"]


def test_panel_consistency_is_checked_in_the_manifest(tmp_path):
    from compute.errors import ManifestError
    from compute.manifest import load_manifest

    path = tmp_path / "m.yaml"
    path.write_text("version: 1\natlas: {name: x, out: atlas}\nmodel: {kind: train, panel_consistency: -1}\n"
                    "studies: [{id: A, source: {kind: scanpy-pbmc68k}, disease: normal, tissue: blood}]\n")
    with pytest.raises(ManifestError, match="panel_consistency"):
        load_manifest(path)
    path.write_text(path.read_text().replace("-1", "30"))
    assert load_manifest(path).model.panel_consistency == 30.0


def test_a_cell_shown_on_another_panel_is_the_input_its_twin_measured_there_gets():
    """panel_input reproduces ingest's rule for a partial panel (counts over the panel's genes per
    10,000 x the study's input share, log1p) from the full-panel cell's log-normalised values;
    zeroing the other genes alone leaves each cell scaled by the share of its own counts its panel holds."""
    import torch

    from compute.model import panel_input

    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(40, 500))).astype(np.float64)
    counts[:, :5] += 1  # no cell without counts on the panel
    panel = np.zeros(500, dtype=bool)
    panel[rng.choice(500, 120, replace=False)] = True
    panel[:5] = True
    share = 0.3
    full = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    sub = np.where(panel, counts, 0.0)
    twin = np.log1p(sub / sub.sum(axis=1, keepdims=True) * 1e4 * share)
    keep = torch.from_numpy(np.tile(panel, (40, 1)).astype(np.float32))
    shown = panel_input(torch.from_numpy(full), keep, torch.full((40,), share, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(shown, twin, rtol=1e-9, atol=1e-9)
    zeroed = full * panel
    assert np.abs(zeroed - twin).max() > 0.1  # what zeroing alone gave: another input than the twin's
    # a panel that holds every gene the cell has, at its own share: the cell as it is
    same = panel_input(torch.from_numpy(twin), keep, torch.ones(40, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(same, twin, rtol=1e-9, atol=1e-12)
    # a cell with nothing on the panel stays zero
    none = panel_input(torch.from_numpy(full[:1] * ~panel), keep[:1], torch.ones(1, dtype=torch.float64)).numpy()
    assert (none == 0).all()

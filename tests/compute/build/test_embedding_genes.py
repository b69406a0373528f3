"""Which genes the stored embedding reads (manifest ``embedding.genes``, issue 34): the genes every
study measured when panels differ, so the same cells measured on two panels get one embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute.build import embedding_genes
from compute.embedding import embed
from compute.errors import ManifestError
from compute.manifest import EmbeddingSpec
from compute.model import Encoder

GENES = [f"G{i:03d}" for i in range(40)]


def _study(sid, genes, rng):
    return {"id": sid, "var_names": list(genes), "expr_means": rng.gamma(1.0, size=len(genes)).tolist()}


def test_auto_takes_the_shared_genes_when_panels_differ_and_enough_are_shared():
    rng = np.random.default_rng(0)
    ingested = [_study("FULL", GENES, rng), _study("PANEL", GENES[5:25], rng), _study("OTHER", GENES[:30], rng)]
    r = embedding_genes(ingested, GENES, EmbeddingSpec(min_shared_genes=20))
    assert r["genes"] == "shared" and r["positions"].tolist() == list(range(5, 25)) and (r["n_genes"], r["n_union"]) == (20, 40)
    # the shared genes' share: their expected share of a full cell (between the panel's share of the full study's profile, roughly, and 1)
    assert 0 < r["share"] < 1
    assert "20 of 40 genes" in r["reason"] and "min_shared_genes = 20" in r["reason"]


def test_auto_keeps_every_gene_when_panels_agree_or_share_too_few():
    rng = np.random.default_rng(1)
    same = [_study("A", GENES, rng), _study("B", GENES, rng)]
    assert embedding_genes(same, GENES, EmbeddingSpec())["genes"] == "all"
    few = [_study("A", GENES, rng), _study("B", GENES[:10], rng)]
    r = embedding_genes(few, GENES, EmbeddingSpec(min_shared_genes=20))
    assert r["genes"] == "all" and "only 10 of 40 genes" in r["reason"] and "positions" not in r
    # asked for, the shared genes are used however few; "all" is kept whatever the panels
    assert embedding_genes(few, GENES, EmbeddingSpec(genes="shared", min_shared_genes=20))["n_genes"] == 10
    assert embedding_genes(few, GENES, EmbeddingSpec(genes="all", min_shared_genes=1))["genes"] == "all"
    # auto never embeds on no gene, whatever the floor
    apart = [_study("A", GENES[:20], rng), _study("B", GENES[20:], rng)]
    assert embedding_genes(apart, GENES, EmbeddingSpec(min_shared_genes=0))["genes"] == "all"


def test_shared_with_no_gene_in_common_is_refused_naming_the_manifest():
    rng = np.random.default_rng(2)
    apart = [_study("A", GENES[:20], rng), _study("B", GENES[20:], rng)]
    with pytest.raises(ManifestError, match="data_manifest.yaml: embedding.genes: shared, but no gene was measured by every study"):
        embedding_genes(apart, GENES, EmbeddingSpec(genes="shared"), "data_manifest.yaml")


def test_a_full_panel_cell_embedded_on_a_panel_is_its_twin_measured_on_that_panel():
    """Ingest normalises a study measured on a panel to 10,000 x its share over the panel's genes;
    ``embed(keep=panel, ratio=share)`` of the full-panel cell gives the encoder that same input."""
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    encoder = Encoder(40, hidden_sizes=(16,), latent_dim=8).eval()
    counts = rng.poisson(rng.gamma(0.6, 4.0, size=40), size=(30, 40)).astype(np.float64) + np.eye(30, 40)
    panel = np.zeros(40, dtype=bool)
    panel[5:25] = True
    share = 0.4
    full = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)
    on_panel = counts * panel
    twin = np.log1p(on_panel / on_panel.sum(axis=1, keepdims=True) * 1e4 * share).astype(np.float32)
    shown = embed(encoder, full, keep=panel, ratio=share)
    np.testing.assert_allclose(shown, embed(encoder, twin), atol=1e-5)
    # without the panel the full cell lands elsewhere: the check above can fail
    assert np.abs(embed(encoder, full) - embed(encoder, twin)).max() > 1e-2
    with pytest.raises(ValueError, match="one flag per gene"):
        embed(encoder, full, keep=panel[:10])

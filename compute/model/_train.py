"""Training loop: 0.001 x triplet (semi-hard, across studies) + 0.999 x reconstruction MSE."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from compute.manifest import ModelSpec
from compute.model._modules import Decoder, Encoder

__all__ = ["TrainLoss", "seed_everything", "train_encoder", "triplet_loss"]

_MAX_PAIRS = 4096  # anchor-positive pairs scored per batch; bounds the B x B x pairs work


@dataclass(frozen=True)
class TrainLoss:
    total: torch.Tensor
    reconstruction: torch.Tensor
    triplet: torch.Tensor
    n_triplets: int


def seed_everything(seed: int) -> None:
    """The one seed: numpy's global state, Python's and torch's."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def triplet_loss(
    z: torch.Tensor, labels: torch.Tensor, studies: torch.Tensor, margin: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, int]:
    """Mean semi-hard triplet loss over the batch, and the number of triplets used.

    Anchor and positive share a cell-type label and come from different studies; the negative
    (another label) is the closest one with d(a,p) < d(a,n) < d(a,p) + margin.
    """
    d = torch.cdist(z, z)
    same = labels[:, None] == labels[None, :]
    pos = same & (studies[:, None] != studies[None, :])
    a_idx, p_idx = pos.nonzero(as_tuple=True)
    if a_idx.numel() == 0:
        return z.sum() * 0.0, 0
    if a_idx.numel() > _MAX_PAIRS:
        pick = torch.randperm(a_idx.numel(), generator=generator)[:_MAX_PAIRS]
        a_idx, p_idx = a_idx[pick], p_idx[pick]
    d_ap = d[a_idx, p_idx]
    d_an = d[a_idx]
    semi_hard = (~same[a_idx]) & (d_an > d_ap[:, None]) & (d_an < d_ap[:, None] + margin)
    nearest = torch.where(semi_hard, d_an, torch.full_like(d_an, float("inf"))).min(dim=1).values
    valid = torch.isfinite(nearest)
    if not bool(valid.any()):
        return z.sum() * 0.0, 0
    losses = F.relu(d_ap[valid] - nearest[valid] + margin)
    return losses.mean(), int(valid.sum())


def _batch_loss(encoder, decoder, x, labels, studies, spec: ModelSpec, gen, shown: torch.Tensor | None = None) -> TrainLoss:
    z = encoder(x if shown is None else shown)
    recon = F.mse_loss(decoder(z), x)
    trip, n = triplet_loss(z, labels, studies, spec.margin, gen)
    w = spec.triplet_weight
    return TrainLoss(total=w * trip + (1 - w) * recon, reconstruction=recon, triplet=trip, n_triplets=n)


def train_encoder(
    X: sp.csr_matrix,
    cell_types,
    studies,
    gene_order: list[str],
    spec: ModelSpec,
    seed: int,
    *,
    progress: bool = True,
    panels: np.ndarray | None = None,
) -> tuple[Encoder, dict]:
    """Train an encoder on log-normalised cells ``X`` (aligned to ``gene_order``).

    ``panels``: (studies, genes) bool, which genes each study measured, rows in the sorted
    order of the study names; with ``spec.panel_dropout`` > 0 a batch is, with that
    probability, shown on panels drawn at random from the other studies (each cell its own).

    Returns the encoder in ``eval()`` mode (with ``gene_order`` set) and a history dict
    (per-epoch losses, seconds, cells).
    """
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_cells, n_genes = X.shape
    encoder = Encoder(n_genes, spec.hidden_sizes, spec.latent_dim, spec.input_dropout, spec.dropout)
    decoder = Decoder(n_genes, spec.hidden_sizes, spec.latent_dim, spec.dropout)
    encoder.gene_order = list(gene_order)
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=spec.learning_rate)
    _, label_codes = np.unique(np.asarray(cell_types, dtype=str), return_inverse=True)
    _, study_codes = np.unique(np.asarray(studies, dtype=str), return_inverse=True)
    labels_t = torch.as_tensor(label_codes, dtype=torch.long)
    studies_t = torch.as_tensor(study_codes, dtype=torch.long)
    X = sp.csr_matrix(X, dtype=np.float32)
    batch = min(spec.batch_size, n_cells)
    history: dict = {"epochs": [], "n_cells": int(n_cells), "n_genes": int(n_genes)}
    t0 = time.perf_counter()
    bar = tqdm(range(spec.epochs), desc="train encoder", unit="epoch", disable=not progress)
    for epoch in bar:
        encoder.train()
        decoder.train()
        order = rng.permutation(n_cells)
        sums = {"total": 0.0, "reconstruction": 0.0, "triplet": 0.0, "n_triplets": 0}
        n_batches = 0
        # BatchNorm needs >1 sample: drop a last batch of one cell
        for start in range(0, n_cells - (1 if n_cells % batch == 1 else 0), batch):
            idx = np.sort(order[start : start + batch])
            x = torch.from_numpy(X[idx].toarray())
            shown = None
            if panels is not None and spec.panel_dropout > 0 and len(panels) > 1 and rng.random() < spec.panel_dropout:
                other = rng.integers(len(panels) - 1, size=idx.size)
                other = other + (other >= study_codes[idx])  # another study's panel, never the cell's own
                shown = x * torch.from_numpy(panels[other].astype(np.float32))
            loss = _batch_loss(encoder, decoder, x, labels_t[idx], studies_t[idx], spec, gen, shown)
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            opt.step()
            sums["total"] += loss.total.item()
            sums["reconstruction"] += loss.reconstruction.item()
            sums["triplet"] += loss.triplet.item()
            sums["n_triplets"] += loss.n_triplets
            n_batches += 1
        ep = {k: (v / max(n_batches, 1) if k != "n_triplets" else v) for k, v in sums.items()}
        ep["epoch"] = epoch + 1
        history["epochs"].append(ep)
        bar.set_postfix(loss=f"{ep['total']:.4f}", triplet=f"{ep['triplet']:.4f}")
    history["seconds"] = round(time.perf_counter() - t0, 2)
    encoder.eval()
    return encoder, history

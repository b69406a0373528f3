"""Training loop: w x triplet (semi-hard, across studies) + (1 - w) x reconstruction MSE.

Triplets pair cells by label codes: by default a positive shares the anchor's label and a
negative is any other label; with a ``relation`` matrix over the codes (1 positive, 0 negative,
-1 neither), related ontology terms can pair and distant ancestors are left alone. Code -1 marks
a cell without a usable label: it is reconstructed, never put in a triplet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from compute.manifest import ModelSpec
from compute.model._modules import Decoder, Encoder

__all__ = ["TrainLoss", "label_codes_and_relation", "seed_everything", "train_encoder", "triplet_loss"]

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
    z: torch.Tensor,
    labels: torch.Tensor,
    studies: torch.Tensor,
    margin: float,
    generator: torch.Generator | None = None,
    relation: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean semi-hard triplet loss over the batch, and the number of triplets used.

    Anchor and positive come from different studies and may pair (same label code, or
    ``relation[a, p] == 1``); the negative is the closest cell with ``relation[a, n] == 0`` (by
    default: another label) and d(a,p) < d(a,n) < d(a,p) + margin. ``relation``: (L, L) int8
    over the label codes (None: identity positives, all other labels negatives). Cells of label
    code -1 are in no triplet.
    """
    d = torch.cdist(z, z)
    labelled = labels >= 0
    both = labelled[:, None] & labelled[None, :]
    if relation is None:
        same = labels[:, None] == labels[None, :]
        pos_rel, neg_rel = same & both, ~same & both
    else:
        rel = relation[labels.clamp(min=0)][:, labels.clamp(min=0)]
        pos_rel, neg_rel = (rel == 1) & both, (rel == 0) & both
    pos = pos_rel & (studies[:, None] != studies[None, :])
    a_idx, p_idx = pos.nonzero(as_tuple=True)
    if a_idx.numel() == 0:
        return z.sum() * 0.0, 0
    if a_idx.numel() > _MAX_PAIRS:
        pick = torch.randperm(a_idx.numel(), generator=generator)[:_MAX_PAIRS]
        a_idx, p_idx = a_idx[pick], p_idx[pick]
    d_ap = d[a_idx, p_idx]
    d_an = d[a_idx]
    semi_hard = neg_rel[a_idx] & (d_an > d_ap[:, None]) & (d_an < d_ap[:, None] + margin)
    nearest = torch.where(semi_hard, d_an, torch.full_like(d_an, float("inf"))).min(dim=1).values
    valid = torch.isfinite(nearest)
    if not bool(valid.any()):
        return z.sum() * 0.0, 0
    losses = F.relu(d_ap[valid] - nearest[valid] + margin)
    return losses.mean(), int(valid.sum())


def _batch_loss(encoder, decoder, x, labels, studies, spec: ModelSpec, gen, shown: torch.Tensor | None = None,
                relation: torch.Tensor | None = None) -> TrainLoss:
    z = encoder(x if shown is None else shown)
    recon = F.mse_loss(decoder(z), x)
    trip, n = triplet_loss(z, labels, studies, spec.margin, gen, relation)
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
    relation: pd.DataFrame | None = None,
) -> tuple[Encoder, dict]:
    """Train an encoder on log-normalised cells ``X`` (aligned to ``gene_order``).

    ``cell_types``: one label per cell; a missing one (None, NaN, "unknown", ...: see
    ``compute.integration.MISSING_LABELS``) keeps the cell out of every triplet.
    ``relation``: which labels may pair in the triplet loss, a square frame indexed and
    columned by label strings with values 1 (may be a positive pair: the same term, or a close
    ancestor or descendant), 0 (may be a negative) or -1 (neither); symmetric, 1 on the
    diagonal. Cells whose label is not in it are unlabelled. None: a label pairs only with
    itself and every other label is a negative.

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
    label_codes, relation_t = label_codes_and_relation(cell_types, relation)
    _, study_codes = np.unique(np.asarray(studies, dtype=str), return_inverse=True)
    labels_t = torch.as_tensor(label_codes, dtype=torch.long)
    studies_t = torch.as_tensor(study_codes, dtype=torch.long)
    X = sp.csr_matrix(X, dtype=np.float32)
    batch = min(spec.batch_size, n_cells)
    history: dict = {"epochs": [], "n_cells": int(n_cells), "n_genes": int(n_genes),
                     "n_unlabelled": int((label_codes < 0).sum()), "relation": relation is not None}
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
            loss = _batch_loss(encoder, decoder, x, labels_t[idx], studies_t[idx], spec, gen, shown, relation_t)
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
    history["reconstruction_mse"] = _eval_reconstruction(encoder, decoder, X, rng)
    return encoder, history


def _eval_reconstruction(encoder: Encoder, decoder: Decoder, X: sp.csr_matrix, rng: np.random.Generator, n: int = 4096) -> float:
    """Reconstruction MSE in eval mode on a seeded sample of ``n`` cells: whether the embedding
    still represents expression (the triplet loss trades some of it for integration)."""
    decoder.eval()
    idx = np.sort(rng.choice(X.shape[0], min(n, X.shape[0]), replace=False))
    with torch.no_grad():
        x = torch.from_numpy(X[idx].toarray())
        return round(float(F.mse_loss(decoder(encoder(x)), x)), 6)


def label_codes_and_relation(cell_types, relation: pd.DataFrame | None = None) -> tuple[np.ndarray, torch.Tensor | None]:
    """(label code per cell, -1 for a missing label or one outside ``relation``; the (L, L)
    int8 relation over the codes, or None for the default identity). ValueError when
    ``relation`` is not square over one label set, holds values other than -1/0/1, is not
    symmetric or is not 1 on its diagonal."""
    from compute.integration import missing_labels

    labels = np.asarray(cell_types, dtype=object)
    missing = missing_labels(labels)
    text = labels.astype(str)
    rel = None if relation is None else _checked_relation(relation)
    vocab = pd.Index(np.unique(text[~missing]) if rel is None else rel.index)
    codes = np.where(missing, -1, vocab.get_indexer(text)).astype(np.int64)  # get_indexer: -1 for a label outside the relation
    return codes, (None if rel is None else torch.as_tensor(rel.to_numpy(dtype=np.int8)))


def _checked_relation(relation: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(relation, pd.DataFrame):
        raise ValueError(f"relation must be a pandas DataFrame indexed and columned by labels, got {type(relation).__name__}")
    index, columns = relation.index.astype(str), relation.columns.astype(str)
    if index.has_duplicates or set(index) != set(columns) or len(index) != len(columns):
        raise ValueError("relation must be square with the same labels, once each, as index and columns "
                         f"(index has {len(index)}, columns {len(columns)}, {len(set(index) ^ set(columns))} labels in only one)")
    rel = relation.set_axis(index, axis=0).set_axis(columns, axis=1).loc[index, index]
    values = rel.to_numpy()
    bad = ~np.isin(values, (-1, 0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"relation values must be -1, 0 or 1; [{index[i]!r}, {index[j]!r}] is {values[i, j]!r}")
    asym = values != values.T
    if asym.any():
        i, j = np.argwhere(asym)[0]
        raise ValueError(f"relation must be symmetric: [{index[i]!r}, {index[j]!r}] = {values[i, j]} but the reverse is {values[j, i]}")
    off = np.diag(values) != 1
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"relation must be 1 on its diagonal (a label pairs with itself); [{index[i]!r}, {index[i]!r}] is {values[i, i]}")
    return rel

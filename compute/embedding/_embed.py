"""Embed cells with the encoder; lay the embedding out with UMAP (umap-learn)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["embed", "umap_fit", "umap_layout"]


def embed(encoder, X, batch_size: int = 1024, device: str | torch.device | None = None, *,
          keep: np.ndarray | None = None, ratio: float = 1.0) -> np.ndarray:
    """(n_cells, latent_dim) float32 L2-normalised embeddings of log-normalised ``X`` (eval mode).

    ``keep`` (bool, one per gene): embed the cells as a study measuring only those genes would
    give them to the encoder: the other genes zeroed and each cell normalised again over the kept
    ones, to ``ratio`` times its present total (compute.model.panel_input; ratio = the kept genes'
    expected share / the cells' study's input share)."""
    from compute.model import panel_input

    X = sp.csr_matrix(X, dtype=np.float32)
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (X.shape[1],):
            raise ValueError(f"keep must hold one flag per gene ({X.shape[1]}), got shape {keep.shape}")
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    keep_t = None if keep is None else torch.from_numpy(keep).to(dev)
    was_training = encoder.training
    encoder.eval()
    out = np.empty((X.shape[0], encoder.latent_dim), dtype=np.float32)
    try:
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                xb = torch.from_numpy(X[start : start + batch_size].toarray()).to(dev)
                if keep_t is not None:
                    xb = panel_input(xb, keep_t.expand_as(xb), torch.full((xb.shape[0],), float(ratio), dtype=torch.float64, device=dev))
                out[start : start + batch_size] = encoder(xb).cpu().numpy()
    finally:
        encoder.train(was_training)
    return out


def umap_fit(embedding: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.3, seed: int = 0):
    """Fit a UMAP on ``embedding``: (the fitted reducer, or None for fewer than 4 cells, and the
    (n, 2) float32 layout). Cosine metric, seeded, single-threaded (reproducible)."""
    import umap

    n = embedding.shape[0]
    if n < 4:
        return None, np.zeros((n, 2), dtype=np.float32)
    reducer = umap.UMAP(
        n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, metric="cosine", random_state=seed, n_jobs=1,
        init="spectral" if n > n_neighbors + 2 else "random",
    )
    return reducer, reducer.fit_transform(embedding).astype(np.float32)


def umap_layout(embedding: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.3, seed: int = 0) -> np.ndarray:
    """(n_cells, 2) float32 UMAP coordinates; cosine metric, seeded (single-threaded, reproducible)."""
    return umap_fit(embedding, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed)[1]

"""Latent embeddings of cells and a 2-d UMAP of them."""

from compute.embedding._embed import embed, umap_fit, umap_layout

__all__ = ["embed", "umap_fit", "umap_layout"]

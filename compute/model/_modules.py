"""SCimilarity-architecture encoder and its mirrored decoder (plain ``nn.Module``s).

Parameter names follow SCimilarity's released checkpoints (``network.<i>.<j>.weight``), so
the same loader reads real SCimilarity weights and the ones this project trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Decoder", "Encoder"]


def _block(n_in: int, n_out: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(p=p), nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.PReLU())


class Encoder(nn.Module):
    """Dropout -> Linear -> BatchNorm1d -> PReLU blocks, a Linear to the latent, L2 normalised."""

    def __init__(
        self,
        n_genes: int,
        hidden_sizes: Sequence[int] = (1024, 1024),
        latent_dim: int = 128,
        input_dropout: float = 0.4,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.n_genes = int(n_genes)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.latent_dim = int(latent_dim)
        sizes = (self.n_genes, *self.hidden_sizes)
        self.network = nn.ModuleList(
            [_block(sizes[i], sizes[i + 1], input_dropout if i == 0 else dropout) for i in range(len(self.hidden_sizes))]
        )
        self.network.append(nn.Linear(sizes[-1], self.latent_dim))
        self.gene_order: list[str] = []

    @property
    def first_linear(self) -> nn.Linear:
        """The input layer (a plain Linear: the fast attribution path relies on it)."""
        return self.network[0][1]

    def head(self, z1: torch.Tensor) -> torch.Tensor:
        """Everything after the first Linear, applied to its pre-activation ``z1``."""
        first = self.network[0]
        x = first[3](first[2](z1))
        for layer in self.network[1:]:
            x = layer(x)
        return F.normalize(x, p=2, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.network:
            x = layer(x)
        return F.normalize(x, p=2, dim=1)


class Decoder(nn.Module):
    """The mirror of :class:`Encoder`: latent -> hidden (reversed) -> genes."""

    def __init__(self, n_genes: int, hidden_sizes: Sequence[int] = (1024, 1024), latent_dim: int = 128, dropout: float = 0.5):
        super().__init__()
        sizes = (int(latent_dim), *reversed([int(h) for h in hidden_sizes]))
        self.network = nn.ModuleList([_block(sizes[i], sizes[i + 1], dropout) for i in range(len(sizes) - 1)])
        self.network.append(nn.Linear(sizes[-1], int(n_genes)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.network:
            z = layer(z)
        return z

"""Save and load encoders in SCimilarity's directory format.

A model directory holds:
  encoder.ckpt      torch.save({"state_dict": ...})
  gene_order.tsv    one HGNC symbol a line, the input order
  layer_sizes.json  parameter name -> shape (hidden sizes are inferred from it)
and, for models this project trains, ``model_card.json`` (parameters, seed, training history).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from compute.errors import ModelError
from compute.model._modules import Encoder

__all__ = ["load_encoder", "save_encoder"]

_REQUIRED = ("encoder.ckpt", "gene_order.tsv", "layer_sizes.json")
_LAYER_KEY = re.compile(r"^network\.(\d+)\.(?:(\d+)\.)?weight$")


def save_encoder(encoder: Encoder, path: str | Path, *, card: dict | None = None) -> Path:
    """Write ``encoder`` (with its ``gene_order``) to directory ``path``; returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if len(encoder.gene_order) != encoder.n_genes:
        raise ModelError(f"encoder has {encoder.n_genes} inputs but a gene order of {len(encoder.gene_order)}")
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state}, path / "encoder.ckpt")
    (path / "gene_order.tsv").write_text("\n".join(encoder.gene_order) + "\n")
    sizes = {k: list(v.shape) for k, v in state.items()}
    (path / "layer_sizes.json").write_text(json.dumps(sizes, indent=1))
    if card is not None:
        (path / "model_card.json").write_text(json.dumps(card, indent=1, default=str))
    return path


def _infer_shape(layer_sizes: dict, where: Path) -> tuple[int, tuple[int, ...], int]:
    """(n_genes, hidden sizes, latent dim) from the 2-d weights of ``network.*``."""
    weights = []
    for key, shape in layer_sizes.items():
        m = _LAYER_KEY.match(key)
        if m and len(shape) == 2:
            weights.append((int(m.group(1)), shape))
    if len(weights) < 2:
        raise ModelError(f"{where}/layer_sizes.json: expected network.<i>.1.weight entries of an SCimilarity encoder")
    weights.sort()
    n_genes = int(weights[0][1][1])
    hidden = tuple(int(s[0]) for _, s in weights[:-1])
    latent = int(weights[-1][1][0])
    return n_genes, hidden, latent


def load_encoder(path: str | Path, *, map_location: str | torch.device = "cpu") -> Encoder:
    """Load an encoder directory (SCimilarity's release or this project's) in ``eval()`` mode.

    The returned module carries ``gene_order`` (list of symbols). Raises ModelError naming
    the missing or inconsistent file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such model directory (expected {', '.join(_REQUIRED)})")
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)} (an SCimilarity model directory has {', '.join(_REQUIRED)})")
    layer_sizes = json.loads((path / "layer_sizes.json").read_text())
    n_genes, hidden, latent = _infer_shape(layer_sizes, path)
    gene_order = [ln.strip() for ln in (path / "gene_order.tsv").read_text().splitlines() if ln.strip()]
    if len(gene_order) != n_genes:
        raise ModelError(
            f"{path}: gene_order.tsv has {len(gene_order)} genes but the first layer takes {n_genes} inputs"
        )
    ckpt = torch.load(path / "encoder.ckpt", map_location=map_location, weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path}/encoder.ckpt: expected a dict with 'state_dict'")
    encoder = Encoder(n_genes, hidden, latent)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}/encoder.ckpt: does not match layer_sizes.json: {exc}") from exc
    encoder.gene_order = gene_order
    encoder.eval()
    return encoder

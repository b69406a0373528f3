"""Training loop: w x triplet (semi-hard, across studies) + (1 - w) x reconstruction MSE.

Triplets pair cells by label codes: by default a positive shares the anchor's label and a
negative is any other label; with a ``relation`` matrix over the codes (1 positive, 0 negative,
-1 neither), related ontology terms can pair and distant ancestors are left alone. Code -1 marks
a cell without a usable label: it is reconstructed, never put in a triplet.

The cells come a batch at a time from a CellCorpus (memory-mapped pieces) in the order of
BalancedBatches, a function of (seed, epoch, batch); every random draw of a step (dropout masks,
panels, the triplet pairs kept) is seeded by the same three numbers. So a run resumed from a
checkpoint, and a run split over N ranks (each its rows of every batch, BatchNorm statistics and
gradients summed over ranks), compute the steps of one uninterrupted process.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from compute.manifest import ModelSpec
from compute.model._modules import Decoder, Encoder
from compute.model._stream import BalancedBatches, CellCorpus
from compute.process import peak_rss

__all__ = ["TrainLoss", "TrainingStopped", "label_codes_and_relation", "panel_input", "seed_everything", "train_encoder",
           "train_on_corpus", "triplet_loss"]

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


class TrainingStopped(RuntimeError):  # noqa: N818 (a stop asked for, not a failure)
    """Raised by :func:`train_on_corpus` after ``stop_after`` batches (tests: a crash at a known
    moment, after the checkpoints before it were written)."""


@dataclass
class _Share:
    """One rank's rows ``[lo, hi)`` of a global batch of ``size`` cells over ``world`` ranks.

    Everything random is drawn for the global batch from generators seeded by (seed, epoch,
    batch), then sliced, and BatchNorm's statistics are summed over ranks: each rank computes
    exactly its rows of what one process would compute on the whole batch (up to the order of
    float sums)."""

    lo: int
    hi: int
    size: int
    world: int
    gen: torch.Generator

    def dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if p <= 0:
            return x
        keep = torch.rand((self.size, x.shape[1]), generator=self.gen, device=self.gen.device) >= p
        return x * keep[self.lo : self.hi].to(x.dtype) / (1.0 - p)

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        # differentiable: gradients flow back to every rank
        from torch.distributed.nn.functional import all_reduce

        with warnings.catch_warnings():  # its replacement (torch.distributed._functional_collectives) is private
            warnings.simplefilter("ignore", FutureWarning)
            return all_reduce(t)

    def batch_norm(self, x: torch.Tensor, bn: torch.nn.BatchNorm1d) -> torch.Tensor:
        n = self.size
        mean = self._sum(x.sum(dim=0)) / n
        var = self._sum(((x - mean) ** 2).sum(dim=0)) / n
        with torch.no_grad():  # running statistics as BatchNorm1d keeps them (unbiased variance)
            bn.num_batches_tracked += 1
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def _forward(network: torch.nn.ModuleList, x: torch.Tensor, share: _Share) -> torch.Tensor:
    """``network`` (Encoder's or Decoder's blocks) in training mode, dropout and BatchNorm taken
    over the global batch (:class:`_Share`); the modules' parameters and buffers are the ones used."""
    for layer in network:
        if isinstance(layer, torch.nn.Sequential):
            drop, linear, bn, act = layer
            x = act(share.batch_norm(linear(share.dropout(x, drop.p)), bn))
        else:
            x = layer(x)
    return x


def _trained_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Every parameter but the bias of a Linear that feeds a BatchNorm: BatchNorm subtracts the
    batch mean, so that bias has a true gradient of zero and Adam would turn its float noise into
    steps of the learning rate's size (the runs of 1 and N processes would then drift apart in
    it); it stays at its initial value, which changes no output."""
    out = []
    for block in module.network:
        if isinstance(block, torch.nn.Sequential):
            block[1].bias.requires_grad_(False)
    for p in module.parameters():
        if p.requires_grad:
            out.append(p)
    return out


def panel_input(x: torch.Tensor, keep: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Cells ``x`` (log1p of expression normalised per cell, rows x genes) as a study measuring
    only the genes ``keep`` (rows x genes, 1 kept, 0 not) would give them to the encoder: the
    other genes zeroed and each cell normalised again over the genes kept, to ``ratio`` (one a
    row) times its present total: log1p(expm1(x) * keep * ratio * total / kept total).

    That is ingest's rule for a partial panel (counts over the panel's genes per 10,000 x the
    study's input share; compute.build.input_shares): with ``ratio`` = the panel's share / the
    cell's own study's share, a full-panel cell comes out as its twin measured on the panel does,
    whatever share of the cell's own counts its panel holds (zeroing alone left each cell scaled
    by that share: 0.10-0.23 of a celltypist PBMC's expression on PBMC 68k's 765 genes). A row
    whose kept genes are all zero stays zero; a row with ``keep`` all ones and ``ratio`` 1 is
    returned as it is. Returns a new tensor of ``x``'s dtype."""
    full = torch.expm1(x.to(torch.float64))
    total = full.sum(dim=1)
    e = full * keep.to(torch.float64)
    kept = e.sum(dim=1)
    factor = torch.where(kept > 0, ratio.to(torch.float64) * total / kept.clamp(min=1e-300), torch.zeros_like(kept))
    return torch.log1p(e * factor[:, None]).to(x.dtype)


def _seed_of(*parts: int) -> int:
    return int(np.random.default_rng([abs(int(p)) for p in parts]).integers(2**62))


def _gather(z: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of ``z`` in rank order (differentiable: each rank's gradient comes back
    to it, summed over the ranks that used it)."""
    from torch.distributed.nn.functional import all_gather

    pad = max(sizes) - z.shape[0]
    with warnings.catch_warnings():  # see _Share._sum
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(F.pad(z, (0, 0, 0, pad)) if pad else z)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def _bounds(size: int, world: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, size, world + 1).round().astype(int)
    return [(int(edges[r]), int(edges[r + 1])) for r in range(world)]


def _checkpoint_save(path: Path, state: dict) -> None:
    from compute.files import atomic_write

    atomic_write(path, lambda t: torch.save(state, t))


def train_on_corpus(
    corpus: CellCorpus,
    study_codes: np.ndarray,
    label_codes: np.ndarray,
    gene_order: list[str],
    spec: ModelSpec,
    seed: int,
    *,
    relation: torch.Tensor | None = None,
    panels: np.ndarray | None = None,
    panel_shares: np.ndarray | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    fingerprint: str = "",
    rank: int = 0,
    world: int = 1,
    stop_after: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[Encoder, dict]:
    """Train an encoder on the cells of ``corpus`` (read a batch at a time; see CellCorpus), one
    rank of ``world`` (``torch.distributed`` initialised by the caller when ``world`` > 1).

    ``study_codes``, ``label_codes``: one integer per cell (label -1: no usable label; codes
    index ``relation``, the (L, L) int8 pairing matrix of :func:`label_codes_and_relation`).
    Batches come from :class:`BalancedBatches` (a function of seed, epoch and batch index);
    each rank reads and runs its contiguous share of every global batch, and gradients are
    summed over ranks, so any ``world`` computes the same steps as one process.

    ``panels``: (studies, genes) bool, which genes each study (a study code) measured; with
    ``spec.panel_dropout`` > 0 each cell is, with that chance, shown on another study's panel.
    ``panel_shares``: each study's input share (its cells normalised to 10,000 x it; 1 for a full
    panel; compute.build.input_shares): a cell shown on another panel is then normalised again over
    that panel's genes as ingest normalises a study measured on it (:func:`panel_input`, to the
    smaller of the two studies' shares: exact when one panel holds the other). None: the genes
    outside the panel are only zeroed.

    ``checkpoint``: a file; when it exists (written by a run with the same ``fingerprint`` and
    sampler) training resumes from it, and it is rewritten atomically by rank 0 at the end of
    every epoch and every ``checkpoint_every`` batches (model, optimiser, position, history).
    A resumed run ends with the weights of an uninterrupted one. ``stop_after``: raise
    :class:`TrainingStopped` after that many batches of this call (tests). ``device``: where the
    model runs (default: this rank's GPU when there is one, else the CPU); the returned encoder
    is on the CPU.

    Returns the encoder in ``eval()`` mode (``gene_order`` set) and the history (per-epoch
    losses, seconds, cells, sampler, resume point).
    """
    seed_everything(seed)
    n_genes = corpus.n_genes
    encoder = Encoder(n_genes, spec.hidden_sizes, spec.latent_dim, spec.input_dropout, spec.dropout)
    decoder = Decoder(n_genes, spec.hidden_sizes, spec.latent_dim, spec.dropout)
    if device is None:
        device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    encoder.to(device)
    decoder.to(device)
    if relation is not None:
        relation = relation.to(device)
    encoder.gene_order = list(gene_order)
    params = _trained_parameters(encoder) + _trained_parameters(decoder)
    opt = torch.optim.Adam(params, lr=spec.learning_rate)
    study_codes = np.asarray(study_codes)
    label_codes = np.asarray(label_codes)
    shares = None if panel_shares is None else np.asarray(panel_shares, dtype=np.float64)
    if shares is not None and panels is not None and (shares.shape != (len(panels),) or not (shares > 0).all()):
        raise ValueError(f"panel_shares must hold one positive share per panel ({len(panels)}), got shape {shares.shape}")
    sampler = BalancedBatches(study_codes, label_codes, spec.batch_size, seed)
    batch = sampler.batch_size
    bounds = _bounds(batch, world)
    lo, hi = bounds[rank]
    sizes = [b - a for a, b in bounds]
    history: dict = {"epochs": [], "n_cells": corpus.n_cells, "n_genes": int(n_genes),
                     "n_unlabelled": int((label_codes < 0).sum()), "relation": relation is not None,
                     "sampler": sampler.state(), "batches_per_epoch": sampler.n_batches, "workers": int(world)}
    ckpt = Path(checkpoint) if checkpoint else None
    start_epoch, start_batch, sums = _resume(ckpt, fingerprint, sampler, (encoder, decoder, opt), history)
    w = spec.triplet_weight
    t0 = time.perf_counter()
    done_here = 0
    bar = tqdm(total=spec.epochs * sampler.n_batches, initial=start_epoch * sampler.n_batches + start_batch,
               desc="train encoder", unit="batch", disable=not progress or rank != 0)

    def save(epoch: int, b: int) -> None:
        if ckpt is not None and rank == 0:
            _checkpoint_save(ckpt, {"fingerprint": fingerprint, "sampler": sampler.state(), "epoch": epoch, "batch": b,
                                    "encoder": encoder.state_dict(), "decoder": decoder.state_dict(), "optimizer": opt.state_dict(),
                                    "sums": sums, "history_epochs": history["epochs"], "world": world})

    encoder.train()
    decoder.train()
    # the next batch is read (a thread: file reads and numpy release the GIL) while this one
    # trains; which cells, and in what order, is fixed by the sampler, so nothing else changes
    positions = iter([(e, b) for e in range(start_epoch, spec.epochs)
                      for b in range(start_batch if e == start_epoch else 0, sampler.n_batches)])

    def fetch(pos):
        idx = sampler.batch(*pos)
        return idx, corpus.rows(idx[lo:hi])

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigatlas-read")
    first = next(positions, None)
    pending = pool.submit(fetch, first) if first is not None else None
    try:
        for epoch in range(start_epoch, spec.epochs):
            for b in range(start_batch if epoch == start_epoch else 0, sampler.n_batches):
                idx, rows = pending.result()
                upcoming = next(positions, None)
                pending = pool.submit(fetch, upcoming) if upcoming is not None else None
                x = torch.from_numpy(rows).to(device)
                shown, on_other = x, None
                if panels is not None and spec.panel_dropout > 0 and len(panels) > 1:
                    shown, on_other = _on_other_panels(x, study_codes[idx], np.random.default_rng([seed, epoch, b, 7]),
                                                       np.asarray(panels), shares, spec.panel_dropout, (lo, hi))
                masked = on_other is not None and bool(on_other.any())
                # on the model's device (a GPU draws its own masks: same seed, other numbers than a CPU)
                share = _Share(lo, hi, batch, world, torch.Generator(device=device).manual_seed(_seed_of(seed, epoch, b, 1)))
                z = F.normalize(_forward(encoder.network, shown, share), p=2, dim=1)
                recon = ((_forward(decoder.network, z, share) - x) ** 2).sum() / (batch * n_genes)
                consistency = z.sum() * 0.0
                if masked and spec.panel_consistency > 0:
                    # this rank's rows over the global batch size: the ranks' gradients sum to the batch's
                    consistency = _consistency(encoder, x, shown, torch.from_numpy(on_other[lo:hi]).to(device)) / batch
                z_all = z if world == 1 else _gather(z, sizes)
                trip, n_trip = triplet_loss(z_all, torch.from_numpy(label_codes[idx].astype(np.int64)).to(device),
                                            torch.from_numpy(study_codes[idx].astype(np.int64)).to(device), spec.margin,
                                            torch.Generator().manual_seed(_seed_of(seed, epoch, b, 2)), relation)
                # the triplet term is computed whole on every rank: each counts 1/world of it
                total = w * trip / world + (1 - w) * recon + spec.panel_consistency * consistency
                opt.zero_grad(set_to_none=False)
                total.backward()
                recon_value = recon.detach() if world == 1 else _sum_over_ranks(params, recon.detach())
                opt.step()
                _add_batch(sums, w, float(trip.detach()), int(n_trip), float(recon_value), float(consistency.detach()))
                done_here += 1
                bar.update()
                if b + 1 < sampler.n_batches and checkpoint_every and (b + 1) % checkpoint_every == 0:
                    save(epoch, b + 1)
                if stop_after is not None and done_here >= stop_after:
                    bar.close()
                    raise TrainingStopped(f"stopped after {done_here} batches (epoch {epoch + 1}, batch {b + 1})")
            ep = _epoch_record(sums, epoch + 1)
            history["epochs"].append(ep)
            sums = _zero_sums()
            bar.set_postfix(loss=f"{ep['total']:.4f}", triplet=f"{ep['triplet']:.4f}")
            save(epoch + 1, 0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    history["seconds"] = round(time.perf_counter() - t0, 2)
    encoder.eval()
    history["reconstruction_mse"] = _eval_reconstruction(encoder, decoder, corpus, seed, batch, device)
    history["device"] = str(device)
    encoder.to("cpu")
    history["max_rows_read_at_once"] = corpus.max_rows_per_call
    history["peak_rss_bytes"] = peak_rss()  # this rank's process (the build benchmark reports it)
    return encoder, history


def _zero_sums() -> dict:
    return {"total": 0.0, "reconstruction": 0.0, "triplet": 0.0, "consistency": 0.0, "n_triplets": 0, "n_batches": 0}


def _resume(ckpt: Path | None, fingerprint: str, sampler, trained: tuple, history: dict) -> tuple[int, int, dict]:
    """(epoch, batch, the epoch's loss sums so far) where training starts: from the checkpoint
    ``ckpt`` when it holds this run's (the same ``fingerprint`` and sampler), loaded into
    ``trained`` (encoder, decoder, optimiser) and recorded in ``history``; else the start. An
    unreadable checkpoint is recorded in ``history`` and ignored."""
    if ckpt is None or not ckpt.is_file():
        return 0, 0, _zero_sums()
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable (another torch version, say): train from the start, and say so
        history["checkpoint_ignored"] = f"{ckpt}: {type(exc).__name__}: {exc}"[:300]
        return 0, 0, _zero_sums()
    if state.get("fingerprint") != fingerprint or state.get("sampler") != sampler.state():
        return 0, 0, _zero_sums()
    encoder, decoder, opt = trained
    encoder.load_state_dict(state["encoder"])
    decoder.load_state_dict(state["decoder"])
    opt.load_state_dict(state["optimizer"])
    history["epochs"] = state["history_epochs"]
    history["resumed_from"] = {"epoch": state["epoch"], "batch": state["batch"]}
    return state["epoch"], state["batch"], state["sums"]


def _on_other_panels(x: torch.Tensor, own: np.ndarray, prng: np.random.Generator, panels: np.ndarray, shares: np.ndarray | None,
                     dropout: float, span: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """(this rank's rows ``x`` as the encoder is shown them, which cells of the global batch are
    shown on another study's panel). Each cell of the batch (its studies ``own``), with chance
    ``dropout``, is shown on another study's panel: a batch holds both kinds, so BatchNorm's batch
    statistics are those its running statistics (eval) average. ``span``: this rank's rows of the
    batch. With ``shares``, a cell on another panel is normalised again over that panel's genes
    as ingest gives such a study's cells to the encoder (:func:`panel_input`); else its genes
    outside the panel are only zeroed."""
    lo, hi = span
    on_other = prng.random(len(own)) < dropout
    other = prng.integers(len(panels) - 1, size=len(own))
    other = other + (other >= own)  # another study's panel, never the cell's own
    keep = np.where(on_other[:, None], panels[other], True)[lo:hi]
    keep_t = torch.from_numpy(keep.astype(np.float32)).to(x.device)
    if shares is None:
        return x * keep_t, on_other
    mine = np.flatnonzero(on_other[lo:hi])  # only these rows change
    ratio = (np.minimum(shares[own], shares[other]) / shares[own])[lo:hi][mine]
    rows_t = torch.from_numpy(mine).to(x.device)
    shown = x.clone()
    shown[rows_t] = panel_input(x[rows_t], keep_t[rows_t], torch.from_numpy(ratio).to(x.device))
    return shown, on_other


def _consistency(encoder, x: torch.Tensor, shown: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The summed squared distance between the ``rows`` shown on another panel (``shown``) and the
    same cells as measured (``x``, held fixed), both embedded as the atlas embeds them (eval mode:
    running statistics, no dropout), the gradient through the first. Pulled together in training
    mode instead (batch statistics, other dropout masks), the embeddings drew together there and
    not in eval mode: the two copies of real cells stayed apart (issue 34)."""
    encoder.eval()
    with torch.no_grad():
        target = encoder(x[rows])
    seen = encoder(shown[rows])
    encoder.train()
    return ((seen - target) ** 2).sum()


def _sum_over_ranks(params: list, recon: torch.Tensor) -> torch.Tensor:
    """Every rank's gradients of ``params`` replaced by their sum over the ranks (the whole batch's
    gradient), and the ranks' summed reconstruction loss ``recon``."""
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    recon = recon.clone()
    torch.distributed.all_reduce(recon)
    return recon


def _add_batch(sums: dict, weight: float, triplet: float, n_triplets: int, recon: float, consistency: float) -> None:
    """One batch's losses added to the epoch's ``sums`` (``weight``: the triplet term's)."""
    sums["reconstruction"] += recon
    sums["triplet"] += triplet
    sums["total"] += weight * triplet + (1 - weight) * recon
    sums["n_triplets"] += n_triplets
    sums["consistency"] = sums.get("consistency", 0.0) + consistency
    sums["n_batches"] += 1


def _epoch_record(sums: dict, epoch: int) -> dict:
    """An epoch's entry of the history: its mean losses per batch, its triplet count, its number."""
    nb = max(sums["n_batches"], 1)
    ep = {k: (v / nb if k in ("total", "reconstruction", "triplet", "consistency") else v) for k, v in sums.items() if k != "n_batches"}
    ep["epoch"] = epoch
    return ep


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
    panel_shares: np.ndarray | None = None,
) -> tuple[Encoder, dict]:
    """Train an encoder on log-normalised cells ``X`` in memory (aligned to ``gene_order``): the
    same training as the build's (:func:`train_on_corpus`), on a matrix that fits in memory.

    ``cell_types``: one label per cell; a missing one (None, NaN, "unknown", ...: see
    ``compute.integration.MISSING_LABELS``) keeps the cell out of every triplet.
    ``relation``: which labels may pair in the triplet loss, a square frame indexed and
    columned by label strings with values 1 (may be a positive pair: the same term, or a close
    ancestor or descendant), 0 (may be a negative) or -1 (neither); symmetric, 1 on the
    diagonal. Cells whose label is not in it are unlabelled. None: a label pairs only with
    itself and every other label is a negative.

    ``panels``: (studies, genes) bool, which genes each study measured, rows in the sorted
    order of the study names; with ``spec.panel_dropout`` > 0 each cell is, with that
    probability, shown on a panel drawn at random from the other studies, normalised again over
    its genes as ingest would (:func:`train_on_corpus`). ``panel_shares``: each panel's input
    share, in the same order (None: estimated from ``X`` as the build does,
    ``compute.atlas.measured_shares`` on each study's mean expression).

    Returns the encoder in ``eval()`` mode (with ``gene_order`` set) and a history dict
    (per-epoch losses, seconds, cells).
    """
    label_codes, relation_t = label_codes_and_relation(cell_types, relation)
    _, study_codes = np.unique(np.asarray(studies, dtype=str), return_inverse=True)
    if panels is not None and panel_shares is None and spec.panel_dropout > 0:
        panel_shares = _estimated_shares(X, study_codes, np.asarray(panels, dtype=bool))
    return train_on_corpus(CellCorpus.from_csr(X), study_codes, label_codes, gene_order, spec, seed,
                           relation=relation_t, panels=panels, panel_shares=panel_shares, progress=progress)


def _estimated_shares(X: sp.csr_matrix, study_codes: np.ndarray, panels: np.ndarray) -> np.ndarray:
    """Each study's input share (compute.atlas.measured_shares on its mean normalised expression
    expm1(X) over its panel), as compute.build.input_shares estimates it from ingest's means."""
    from compute.atlas import measured_shares

    E = sp.csr_matrix(X, dtype=np.float64, copy=True)
    E.data = np.expm1(E.data)
    profiles, measured = [], []
    for t in range(len(panels)):
        rows = study_codes == t
        profiles.append(np.asarray(E[rows].mean(axis=0)).ravel() if rows.any() else np.zeros(X.shape[1]))
        measured.append(np.flatnonzero(panels[t]))
    return measured_shares(profiles, measured, X.shape[1])


def _eval_reconstruction(encoder: Encoder, decoder: Decoder, corpus: CellCorpus, seed: int, batch: int, device: torch.device,
                         n: int = 4096) -> float:
    """Reconstruction MSE in eval mode on a seeded sample of ``n`` cells, read ``batch`` at a time:
    whether the embedding still represents expression (the triplet loss trades some of it for
    integration)."""
    decoder.eval()
    rng = np.random.default_rng([seed, 4096])
    idx = np.sort(rng.choice(corpus.n_cells, min(n, corpus.n_cells), replace=False))
    total = 0.0
    with torch.no_grad():
        for start in range(0, idx.size, batch):
            x = torch.from_numpy(corpus.rows(idx[start : start + batch])).to(device)
            total += float(((decoder(encoder(x)) - x) ** 2).sum(dtype=torch.float64))
    return round(total / (idx.size * corpus.n_genes), 6)


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

"""Exact Integrated Gradients for encoders whose first layer is linear (method.md section 3).

Along the path a*x the first pre-activation is a*u + b1 with u = W1 x, so
grad_x F(a x) = W1^T g(a) and sum_k w_k grad_x F(a_k x) = W1^T (sum_k w_k g(a_k)): one
product with the wide input layer before the steps and one after; only the head (hidden
layers and latent) runs per step. Same numbers as the generic IG, not an approximation.

``HeadIG`` works for any encoder exposing ``first_linear`` and ``head(z1)`` (autograd through
the head). ``BlockIG`` is the same identity for SCimilarity's blocks with the head's forward
and backward written out and BatchNorm folded into the Linears.

A tried and dropped variant: PReLU(a*p + q) changes side at most once per unit along the
path, so the second layer's product can be replaced by running sums over the units that
change side. With ~50% of units changing side per cell (random and trained weights alike)
the gathers cost as much as the dense product they replace, and the running sums in float32
moved more kinks across a quadrature node than the direct product does.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NEAR_KINK", "BlockIG", "HeadIG", "plan_fast_ig"]

# The integrand of IG jumps where a PReLU input (or a latent coordinate under |.|) crosses zero.
# When that happens within float32 rounding of a quadrature node, two float32 implementations
# may take different sides and differ by up to ~1e-2 (relative) in that cell; Captum's float32
# IG is then as far from the definition as anyone's (about 0.5% of cells on the benchmark
# model). With ``float64_near_kinks`` BlockIG flags cells with a value within this fraction of
# its layer's RMS of zero at any step and redoes them in float64: its float32 output then
# matches the float64 definition everywhere, at ~30% of cells redone (0.6x the throughput),
# which is why it is not the default.
NEAR_KINK = 4e-6


class HeadIG:
    """Exact IG for any encoder exposing ``first_linear`` (nn.Linear) and ``head(z1)``."""

    name = "ig (first-layer identity)"

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.lin = encoder.first_linear

    def embed_pre(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = xb @ self.lin.weight.T
        return u, self.encoder.head(u + self.lin.bias)

    def summed_gradient(self, u: torch.Tensor, e: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_k w_k dF/dz1 at z1 = a_k u + b1, shape (B, hidden1)."""
        k, b = alphas.numel(), u.shape[0]
        z = (alphas.view(k, 1, 1) * u.unsqueeze(0) + self.lin.bias).reshape(k * b, -1).detach().requires_grad_(True)
        with torch.enable_grad():
            target = (e.repeat(k, 1) * self.encoder.head(z)).abs().sum()
            (g,) = torch.autograd.grad(target, z)
        return (weights.view(k, 1, 1) * g.view(k, b, -1)).sum(dim=0)

    def batch(self, xb: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Signed IG x input for a dense batch (B x genes)."""
        with torch.no_grad():
            u, e = self.embed_pre(xb)
        g_sum = self.summed_gradient(u, e, alphas, weights)
        with torch.no_grad():
            return xb * (g_sum @ self.lin.weight)


class BlockIG(HeadIG):
    """Exact IG for SCimilarity's blocks (Linear -> BatchNorm eval -> PReLU, ..., Linear, L2 norm).

    The same identity as ``HeadIG``; the head's forward and backward are written out by hand
    with each BatchNorm folded into its neighbouring Linear, so a step costs two matrix
    products per layer and a few element-wise passes, with no autograd graph kept.
    """

    name = "ig (first-layer identity, fused SCimilarity head)"

    def __init__(self, encoder: nn.Module, *, float64_near_kinks: bool = False):
        super().__init__(encoder)
        self.float64_near_kinks = float64_near_kinks
        net = encoder.network
        self.layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []  # (W, b, PReLU slope or None)
        bn1 = net[0][2]
        s1, t1 = _bn_affine(bn1)
        self.s1 = s1
        self.q = (self.lin.bias * s1 + t1).detach()  # first block: y1 = a * (s1 * u) + q
        self.slope1 = net[0][3].weight.detach()
        for block in net[1:]:
            if isinstance(block, nn.Linear):
                self.layers.append((block.weight.detach(), block.bias.detach(), None))
            else:
                lin, bn, prelu = block[1], block[2], block[3]
                s, t = _bn_affine(bn)
                self.layers.append(((lin.weight * s.unsqueeze(1)).detach(), (lin.bias * s + t).detach(), prelu.weight.detach()))
        self._near_kink: torch.Tensor | None = None
        self._twin: BlockIG | None = None
        self.redone = 0  # cells recomputed in float64, for reports

    def head(self, z1: torch.Tensor) -> torch.Tensor:
        """The fused head on first-layer pre-activations (for the self-check against ``encoder.head``)."""
        y = z1 * self.s1 + (self.q - self.lin.bias * self.s1)
        h = torch.where(y > 0, y, y * self.slope1)
        for W, bias, slope in self.layers:
            y = torch.addmm(bias, h, W.T)
            h = y if slope is None else torch.where(y > 0, y, y * slope)
        return F.normalize(y, p=2, dim=1)

    def batch(self, xb: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Signed IG x input for a dense batch; cells near a kink are redone in float64 (see
        ``NEAR_KINK``)."""
        out = super().batch(xb, alphas, weights)
        near = self._near_kink
        if near is None or not bool(near.any()):
            return out
        idx = near.nonzero(as_tuple=True)[0]
        twin = self._float64_twin()
        a64, w64 = alphas.to(torch.float64), weights.to(torch.float64)
        out[idx] = twin.batch(xb[idx].to(torch.float64), a64, w64).to(out.dtype)
        self.redone += int(idx.numel())
        return out

    def _float64_twin(self) -> BlockIG:
        if self._twin is None:
            self._twin = BlockIG(copy.deepcopy(self.encoder).to(torch.float64))
        return self._twin

    def _mark_near(self, y: torch.Tensor, k: int, b: int, tol: float) -> None:
        """Flag cells where some unit at some step is within ``tol`` (relative to the layer's RMS) of a kink."""
        if self._near_kink is None:
            return
        scale = y.norm(dim=1, keepdim=True) * (tol / math.sqrt(y.shape[1]))
        self._near_kink |= (y.abs() < scale).any(dim=1).view(k, b).any(dim=0)

    def summed_gradient(self, u: torch.Tensor, e: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        k, b = alphas.numel(), u.shape[0]
        rescue = self.float64_near_kinks and u.dtype != torch.float64
        self._near_kink = torch.zeros(b, dtype=torch.bool, device=u.device) if rescue else None
        y = torch.addcmul(self.q, alphas.view(k, 1, 1), (u * self.s1).unsqueeze(0)).view(k * b, -1)
        slopes = [torch.where(y > 0, 1.0, self.slope1.to(y.dtype))]
        self._mark_near(y, k, b, NEAR_KINK)
        h = y.mul_(slopes[0])
        for W, bias, slope in self.layers:
            y = torch.addmm(bias, h, W.T)
            self._mark_near(y, k, b, NEAR_KINK)  # a PReLU kink, or |.| of the target at the latent
            if slope is None:
                break
            slopes.append(torch.where(y > 0, 1.0, slope.to(y.dtype)))
            h = y.mul_(slopes[-1])
        del h
        # y is the latent before normalisation: o = y / |y|, F = sum_d |e_d o_d|
        norm = y.norm(dim=1, keepdim=True).clamp_min_(1e-12)
        o = y.div_(norm)
        er = e.repeat(k, 1)
        r = er.mul_(torch.sign(er * o))  # dF/do
        # The quadrature weights go in at the top of the backward pass: each step's gradient is
        # linear in its dF/dy, so scaling dF/dy by w_k scales that step's contribution.
        grad = r.sub_(o * (o * r).sum(dim=1, keepdim=True)).div_(norm).view(k, b, -1).mul_(weights.view(k, 1, 1)).view(k * b, -1)
        for (W, _, _), slope in zip(reversed(self.layers), reversed(slopes), strict=True):
            grad = (grad @ W).mul_(slope)
        return grad.view(k, b, -1).sum(dim=0).mul_(self.s1)


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = s * x + t."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    s = bn.weight * inv if bn.affine else inv
    t = (bn.bias if bn.affine else 0.0) - bn.running_mean * s
    return s.detach(), t.detach()


def _is_scimilarity_blocks(encoder: nn.Module) -> bool:
    """True for SCimilarity's layout in eval mode: blocks of [Dropout, Linear, BatchNorm1d with
    running statistics, PReLU], then a Linear to the latent."""
    net = getattr(encoder, "network", None)
    if not isinstance(net, nn.ModuleList) or len(net) < 2 or encoder.training:
        return False
    first = net[0]
    if not (isinstance(first, nn.Sequential) and len(first) == 4):
        return False
    kinds = (nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.PReLU)
    if not all(isinstance(m, t) for m, t in zip(first, kinds, strict=True)):
        return False
    if first[2].running_mean is None or getattr(encoder, "first_linear", None) is not first[1]:
        return False
    *blocks, last = net[1:]
    if not isinstance(last, nn.Linear):
        return False
    for block in blocks:
        if not (isinstance(block, nn.Sequential) and len(block) == 4 and all(isinstance(m, t) for m, t in zip(block, kinds, strict=True))):
            return False
        if block[2].running_mean is None:
            return False
    return True


def has_linear_first_layer(encoder: nn.Module) -> bool:
    return isinstance(getattr(encoder, "first_linear", None), nn.Linear) and callable(getattr(encoder, "head", None))


def _block_plan_reproduces_head(plan: BlockIG) -> bool:
    """The layout matched; check on random pre-activations that the fused head equals ``head``."""
    gen = torch.Generator().manual_seed(0)
    w = plan.lin.weight
    z = (torch.randn(4, w.shape[0], generator=gen, dtype=torch.float64) * 2).to(w.device, w.dtype)
    with torch.no_grad():
        mine, theirs = plan.head(z), plan.encoder.head(z)
    return theirs.shape == mine.shape and bool(torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5))


def plan_fast_ig(encoder: nn.Module, *, float64_near_kinks: bool = False) -> HeadIG | None:
    """The fastest exact IG path this encoder allows; None when its first layer is not linear."""
    if _is_scimilarity_blocks(encoder):
        plan = BlockIG(encoder, float64_near_kinks=float64_near_kinks)
        if _block_plan_reproduces_head(plan):
            return plan
    if has_linear_first_layer(encoder):
        return HeadIG(encoder)
    return None

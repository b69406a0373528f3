"""Attribution invariants and agreement of the fast exact IG with Captum's generic IG."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.attribution import (
    DegenerateAttributionWarning,
    attribute,
    describe_path,
    gauss_legendre,
    iter_attributions,
    scale_rows,
)
from compute.model import Encoder


def random_encoder(n_genes, hidden=(32, 16), latent=8, seed=0) -> Encoder:
    torch.manual_seed(seed)
    enc = Encoder(n_genes, hidden, latent)
    for m in enc.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.3)
            m.bias.data.normal_(0, 0.3)
    return enc.eval()


def random_cells(n_cells, n_genes, density, seed=0) -> sp.csr_matrix:
    X = sp.random(n_cells, n_genes, density=density, random_state=seed, format="csr", dtype=np.float32)
    X.data = np.log1p(X.data * 20).astype(np.float32)
    return X


def rel_row_diff(A: sp.csr_matrix, B: sp.csr_matrix) -> float:
    """Largest per-row relative difference (max |a-b| / max |b| in the row)."""
    a, b = A.toarray(), B.toarray()
    denom = np.maximum(np.abs(b).max(axis=1, keepdims=True), 1e-12)
    return float((np.abs(a - b) / denom).max())


def test_zero_where_expression_is_zero_and_rows_sum_to_1000():
    enc = random_encoder(200)
    X = random_cells(30, 200, 0.1)
    X = sp.vstack([X, sp.csr_matrix((1, 200), dtype=np.float32)]).tocsr()  # an all-zero cell
    A = attribute(enc, X)
    assert A.shape == X.shape
    dense_x, dense_a = X.toarray(), A.toarray()
    assert np.all(dense_a[dense_x == 0] == 0)
    sums = dense_a.sum(axis=1)
    np.testing.assert_allclose(sums[:-1], 1000.0, rtol=1e-5)
    assert sums[-1] == 0.0
    assert np.all(dense_a >= 0)


def test_fast_ig_matches_captum_generic_ig():
    enc = random_encoder(300, hidden=(64, 32), latent=16, seed=3)
    X = random_cells(25, 300, 0.15, seed=3)
    fast = attribute(enc, X, method="ig", n_steps=50)
    ref = attribute(enc, X, method="ig-captum", n_steps=50)
    assert rel_row_diff(fast, ref) < 1e-5


def test_ig_completeness_unscaled():
    """Signed IG sums to F(x) - F(0), up to quadrature error; |.| puts kinks on the path, so
    50 Gauss-Legendre steps are within a few percent and more steps get closer."""
    enc = random_encoder(120, seed=5)
    X = random_cells(10, 120, 0.3, seed=5)
    with torch.no_grad():
        x = torch.from_numpy(X.toarray())
        e = enc(x)
        delta = ((e * enc(x)).abs().sum(1) - (e * enc(torch.zeros_like(x))).abs().sum(1)).numpy()
    err = {}
    for steps in (50, 800):
        total = np.asarray(attribute(enc, X, n_steps=steps, scale=None).sum(axis=1)).ravel()
        err[steps] = np.abs(total - delta).max() / np.abs(delta).max()
    assert err[50] < 3e-2
    assert err[800] < err[50] and err[800] < 2e-3


def test_deeplift_and_ixg_run_through_captum_and_warn_that_they_vanish_on_a_normalised_encoder():
    """F(x') = sum|e_d f_d(x')| with e = f(x) and |f| = 1 is flat at x' = x: the gradient there is
    zero, so Input x Gradient (and DeepLift, which keeps plain gradients through PReLU and the
    L2 norm) return rounding noise. They are offered, and they say so."""
    enc = random_encoder(40)
    X = random_cells(6, 40, 0.5)
    x = torch.from_numpy(X.toarray())
    with torch.no_grad():
        e = enc(x)
    x.requires_grad_(True)
    (e * enc(x)).abs().sum().backward()
    assert x.grad.abs().max() < 1e-5
    for method in ("ixg", "deeplift"):
        with pytest.warns(DegenerateAttributionWarning, match=f"{method}: for 6 of 6 cells"):
            raw = attribute(enc, X, method=method, scale=None)
        assert np.abs(raw.data).max() < 1e-5


class PlainEncoder(torch.nn.Module):
    """Not SCimilarity-shaped and not normalised: a first Linear, then tanh and a Linear."""

    def __init__(self, n_genes, hidden=12, latent=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.n_genes = n_genes
        self.first_linear = torch.nn.Linear(n_genes, hidden)
        self.out = torch.nn.Linear(hidden, latent)

    def head(self, z1):
        return self.out(torch.tanh(z1))

    def forward(self, x):
        return self.head(self.first_linear(x))


class NonLinearFirst(PlainEncoder):
    """Its first operation is not linear in x (log1p), so only the generic IG is exact."""

    first_linear = None

    def __init__(self, n_genes, seed=0):
        super().__init__(n_genes, seed=seed)
        self.lin = torch.nn.Linear(n_genes, 12)
        del self.first_linear

    def forward(self, x):
        return self.out(torch.tanh(self.lin(torch.log1p(x))))


def test_ixg_matches_input_times_gradient_on_a_plain_encoder_without_warning():
    enc = PlainEncoder(30).double()
    X = random_cells(5, 30, 0.4, seed=1)
    x = torch.from_numpy(X.toarray()).double()
    with torch.no_grad():
        e = enc(x)
    xg = x.clone().requires_grad_(True)
    (e * enc(xg)).abs().sum().backward()
    expected = (x * xg.grad).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateAttributionWarning)
        raw = attribute(enc, X, method="ixg", scale=None).toarray()
    np.testing.assert_allclose(raw, np.where(X.toarray() != 0, expected, 0), rtol=1e-6, atol=1e-9)


def test_the_fastest_exact_path_is_chosen_for_each_encoder():
    assert describe_path(random_encoder(20)) == "ig (first-layer identity, fused SCimilarity head)"
    assert describe_path(PlainEncoder(20)) == "ig (first-layer identity)"
    assert describe_path(NonLinearFirst(20)) == "Captum IntegratedGradients"
    assert describe_path(random_encoder(20), "deeplift") == "Captum DeepLift"


@pytest.mark.parametrize("make", [PlainEncoder, NonLinearFirst], ids=["plain-head", "non-linear-first"])
def test_other_encoders_match_captum(make):
    enc = make(25, seed=4).double()
    X = random_cells(9, 25, 0.3, seed=4)
    assert rel_row_diff(attribute(enc, X, batch_size=4), attribute(enc, X, method="ig-captum")) < 1e-6


def test_streaming_yields_every_nonzero_once_in_bounded_batches():
    enc = random_encoder(50)
    X = random_cells(23, 50, 0.2)
    seen = []
    for start, stop, vals in iter_attributions(enc, X, batch_size=5):
        assert stop - start <= 5 and vals.shape == (X.indptr[stop] - X.indptr[start],) and vals.dtype == np.float32
        seen.append((start, stop))
    assert seen[0][0] == 0 and seen[-1][1] == 23 and all(a[1] == b[0] for a, b in zip(seen, seen[1:], strict=False))
    raw = attribute(enc, X, scale=None, batch_size=5)
    np.testing.assert_array_equal(np.concatenate([v for *_, v in iter_attributions(enc, X, batch_size=5)]), raw.data)


def test_bad_input_is_named():
    enc = random_encoder(10)
    X = random_cells(4, 10, 0.5).toarray()
    X[2, 7] = np.nan
    with pytest.raises(ValueError, match="non-finite value at cell 2, gene 7"):
        attribute(enc, X)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        attribute(enc, X[:2] * 0, batch_size=-1)
    with pytest.raises(ValueError, match="unknown attribution method 'shap'"):
        attribute(enc, random_cells(2, 10, 0.5), method="shap")


def test_gauss_legendre_integrates_polynomials_on_unit_interval():
    a, w = gauss_legendre(50)
    assert np.all((a > 0) & (a < 1))
    np.testing.assert_allclose((w * a**3).sum(), 0.25, rtol=1e-12)


def test_scale_rows_handles_zero_rows_and_signs():
    A = sp.csr_matrix(np.array([[1.0, -3.0, 0.0], [0.0, 0.0, 0.0]]))
    S = scale_rows(A).toarray()
    np.testing.assert_allclose(S[0], [250.0, 750.0, 0.0])
    assert np.all(S[1] == 0)


def test_dense_and_sparse_input_agree_and_bad_shape_is_named():
    enc = random_encoder(50)
    X = random_cells(8, 50, 0.3)
    np.testing.assert_array_equal(attribute(enc, X).toarray(), attribute(enc, X.toarray()).toarray())
    with pytest.raises(ValueError, match="49 genes but the encoder takes 50"):
        attribute(enc, X[:, :49])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_cells=st.integers(1, 20),
    n_genes=st.integers(5, 60),
    density=st.floats(0.02, 0.9),
    batch_size=st.integers(1, 9),
    hidden=st.lists(st.integers(2, 24), min_size=1, max_size=3),
    per_channel_prelu=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_fast_ig_matches_captum_property(n_cells, n_genes, density, batch_size, hidden, per_channel_prelu, seed):
    """Exact, not approximate: in float64 the two agree to rounding (stored as float32)."""
    enc = random_encoder(n_genes, hidden=tuple(hidden), latent=4, seed=seed)
    if per_channel_prelu:  # SCimilarity uses one slope per layer; per-unit slopes must work too
        for block in list(enc.network)[:-1]:
            block[3] = torch.nn.PReLU(block[1].out_features)
            block[3].weight.data.uniform_(-0.5, 0.8)
    enc = enc.double().eval()
    X = random_cells(n_cells, n_genes, density, seed=seed)
    fast = attribute(enc, X, method="ig", batch_size=batch_size)
    ref = attribute(enc, X, method="ig-captum", batch_size=7)
    assert np.array_equal(fast.indices, X.indices) and np.array_equal(fast.indptr, X.indptr)
    assert rel_row_diff(fast, ref) < 1e-6


def test_float64_near_kinks_redoes_flagged_cells_in_float64(monkeypatch):
    """Flag every cell (threshold 1): the float32 run must then equal the float64 computation."""
    import compute.attribution._fast_ig as fast_ig

    enc = random_encoder(80, hidden=(24, 16), latent=6, seed=7)
    X = random_cells(12, 80, 0.3, seed=7)
    exact = attribute(random_encoder(80, hidden=(24, 16), latent=6, seed=7).double(), X, scale=None)
    monkeypatch.setattr(fast_ig, "NEAR_KINK", 1.0)
    rescued = attribute(enc, X, scale=None, float64_near_kinks=True)
    np.testing.assert_allclose(rescued.data, exact.data, rtol=1e-6, atol=1e-12)
    plain = attribute(enc, X, scale=None)
    assert np.abs(plain.data - exact.data).max() > np.abs(rescued.data - exact.data).max()

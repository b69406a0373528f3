"""Attribution invariants and agreement of the fast exact IG with Captum's generic IG."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.attribution import attribute, gauss_legendre, scale_rows
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


def test_gradient_at_the_cell_vanishes_which_is_why_ixg_is_not_offered():
    """F(x') = sum|e_d f_d(x')| with e = f(x) and |f| = 1 is flat at x' = x: IxG would be noise."""
    enc = random_encoder(40)
    x = torch.from_numpy(random_cells(3, 40, 0.5).toarray())
    with torch.no_grad():
        e = enc(x)
    x.requires_grad_(True)
    (e * enc(x)).abs().sum().backward()
    assert x.grad.abs().max() < 1e-5
    with pytest.raises(ValueError, match="unknown attribution method 'ixg'"):
        attribute(enc, x.detach().numpy(), method="ixg")


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


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_cells=st.integers(1, 20),
    n_genes=st.integers(5, 60),
    density=st.floats(0.02, 0.9),
    batch_size=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
def test_fast_ig_matches_captum_property(n_cells, n_genes, density, batch_size, seed):
    """In float64 the two agree to rounding (1e-9); in float32 each carries ~1e-5 of rounding."""
    enc = random_encoder(n_genes, hidden=(16, 8), latent=4, seed=seed).double()
    X = random_cells(n_cells, n_genes, density, seed=seed)
    fast = attribute(enc, X, method="ig", batch_size=batch_size)
    ref = attribute(enc, X, method="ig-captum", batch_size=7)
    assert np.array_equal(fast.indices, X.indices) and np.array_equal(fast.indptr, X.indptr)
    assert rel_row_diff(fast, ref) < 1e-6  # output is stored as float32
    enc32 = enc.float()
    assert rel_row_diff(attribute(enc32, X, batch_size=batch_size), attribute(enc32, X, method="ig-captum")) < 1e-4

"""Data-parallel training (issue 22): 2 processes (torch.distributed, gloo, 1 thread each) end
with the weights of 1 process, up to the order of float sums.

Tolerance: each rank runs its half of every global batch with the dropout masks and BatchNorm
statistics of the whole batch and the gradients are summed, so the two runs compute the same
steps; only sums are split differently (BatchNorm statistics, gradients). After 12 Adam steps
the weights differ by about 1e-7 (measured: at most 6e-8); the test allows 1e-5, absolute and
relative, on the weights and on the encoder's output. (This needs the bias of each Linear
followed by BatchNorm left untrained: its true gradient is zero, and Adam turned the float
noise into steps 2e-3 apart in the two runs; compute.model's training leaves it alone.)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from compute.manifest import ModelSpec
from compute.model import run_plan, train_distributed, write_piece, write_plan

pytestmark = pytest.mark.slow  # builds an atlas (or several processes) end to end


def _plan(folder, pieces, studies, labels, spec):
    relation = np.array([[1, 0, 0], [0, 1, -1], [0, -1, 1]], dtype=np.int8)
    panels = np.ones((2, 30), dtype=bool)
    return write_plan(folder, pieces=pieces, gene_order=[f"G{i}" for i in range(30)], study_codes=studies, label_codes=labels,
                      spec=spec, seed=5, fingerprint="test", relation=relation, panels=panels)


def test_two_processes_train_the_weights_of_one(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pieces = []
    for k, n in enumerate((130, 70)):
        write_piece(tmp_path / f"s{k}", sp.random(n, 30, density=0.4, random_state=k, format="csr", dtype=np.float32))
        pieces.append(str(tmp_path / f"s{k}"))
    studies = np.r_[np.zeros(130, int), np.ones(70, int)]
    labels = rng.integers(-1, 3, 200)
    # dropout on and an odd batch (ranks of 20 and 19 cells): the split is part of what is checked
    spec = ModelSpec(hidden_sizes=(16, 8), latent_dim=4, epochs=2, batch_size=39, input_dropout=0.3, dropout=0.2)
    one, hist1 = run_plan(_plan(tmp_path / "one", pieces, studies, labels, spec), progress=False)
    two, hist2 = train_distributed(_plan(tmp_path / "two", pieces, studies, labels, spec), 2, threads_per_worker=1, progress=False)
    assert hist2["workers"] == 2 and hist1["workers"] == 1 and hist1["batches_per_epoch"] == 6
    assert hist1["epochs"][-1]["n_triplets"] == hist2["epochs"][-1]["n_triplets"] > 0
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=f"2 processes vs 1: {k}")
    x = torch.rand(50, 30)
    with torch.no_grad():
        torch.testing.assert_close(two(x), one(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([e["total"] for e in hist2["epochs"]], [e["total"] for e in hist1["epochs"]], rtol=1e-4)

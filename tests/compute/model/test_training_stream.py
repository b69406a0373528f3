"""Streamed training (issue 22): pieces on disk read a batch at a time, the balanced seeded
sampler, bounded memory, checkpoints and resume to identical weights."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from compute.manifest import ModelSpec
from compute.model import BalancedBatches, CellCorpus, TrainingStopped, train_on_corpus, write_piece

SPEC = ModelSpec(hidden_sizes=(16, 8), latent_dim=4, epochs=2, batch_size=32)


def _corpus(tmp_path, sizes=(150, 60, 90), n_genes=40, seed=0):
    """Studies written as pieces; cell types a, b shared, c only in study 0; returns
    (corpus, matrix, study codes, label codes)."""
    rng = np.random.default_rng(seed)
    mats, studies, labels = [], [], []
    for k, n in enumerate(sizes):
        X = sp.random(n, n_genes, density=0.3, random_state=seed + k, format="csr", dtype=np.float32)
        write_piece(tmp_path / f"s{k}", X)
        mats.append(X)
        studies.append(np.full(n, k))
        labels.append(rng.choice([0, 1, 2] if k == 0 else [0, 1, -1], n))
    corpus = CellCorpus.open([tmp_path / f"s{k}" for k in range(len(sizes))], n_genes)
    return corpus, sp.vstack(mats).tocsr(), np.concatenate(studies), np.concatenate(labels)


def test_pieces_read_back_the_rows_asked_for(tmp_path):
    corpus, X, _, _ = _corpus(tmp_path)
    idx = np.array([299, 0, 151, 150, 149, 210, 0])  # across pieces, unsorted, repeated
    np.testing.assert_array_equal(corpus.rows(idx), X[idx].toarray())
    assert corpus.rows_read == idx.size and corpus.max_rows_per_call == idx.size
    corpus.MAX_OPEN = 1  # a corpus of more pieces than may be open at once: each is reopened as needed
    for _ in range(2):
        np.testing.assert_array_equal(corpus.rows(idx), X[idx].toarray())
    assert corpus.n_open == 1
    (tmp_path / "s1" / "piece.json").unlink()
    with pytest.raises(FileNotFoundError, match="s1: not a finished training piece"):
        CellCorpus.open([tmp_path / "s0", tmp_path / "s1"], 40)


def test_the_sampler_is_a_function_of_seed_epoch_and_batch():
    rng = np.random.default_rng(1)
    studies, labels = rng.integers(0, 4, 1000), rng.integers(-1, 5, 1000)
    a, b = BalancedBatches(studies, labels, 64, seed=3), BalancedBatches(studies, labels, 64, seed=3)
    assert a.n_batches == 16
    np.testing.assert_array_equal(a.batch(2, 5), b.batch(2, 5))  # no state: any order of calls gives it
    assert len(a.batch(0, 0)) == 64 and not np.array_equal(a.batch(0, 0), a.batch(0, 1))
    assert not np.array_equal(a.batch(0, 0), a.batch(1, 0))
    assert not np.array_equal(a.batch(0, 0), BalancedBatches(studies, labels, 64, seed=4).batch(0, 0))


def test_the_sampler_draws_the_same_cells_however_the_studies_are_interleaved():
    # the sampler groups cells by study (in place when the studies are contiguous, by a stable
    # argsort otherwise): the same cells, in the same order within each study, give the same
    # batches, whatever their positions
    rng = np.random.default_rng(5)
    studies = np.repeat(np.arange(5), [300, 40, 900, 7, 253]).astype(np.int32)
    labels = rng.integers(-1, 6, studies.size).astype(np.int32)
    perm = np.argsort(rng.random(studies.size))  # new position of each cell...
    perm = np.concatenate([np.sort(perm[studies == k]) for k in range(5)])  # ...keeping each study's order
    moved_s, moved_l = np.empty_like(studies), np.empty_like(labels)
    moved_s[perm], moved_l[perm] = studies, labels
    assert not np.all(moved_s[1:] >= moved_s[:-1])
    a, b = BalancedBatches(studies, labels, 64, seed=2), BalancedBatches(moved_s, moved_l, 64, seed=2)
    for e, k in [(0, 0), (0, 7), (3, 1)]:
        np.testing.assert_array_equal(np.sort(perm[a.batch(e, k)]), b.batch(e, k))


def test_the_sampler_adds_four_bytes_a_cell():
    n = 2_000_000
    studies = np.repeat(np.arange(200, dtype=np.int32), n // 200)
    labels = (np.arange(n) % 13 - 1).astype(np.int32)
    tracemalloc.start()
    sampler = BalancedBatches(studies, labels, 256, seed=0)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sampler.batch(0, 0).size == 256
    # the cell order (int32) and the bool of the contiguity check: a lexsort over int64
    # copies of the codes peaked at about 50 B a cell
    assert held < 4.5 * n and peak < 6 * n, (held / n, peak / n)


def test_every_batch_pairs_a_cell_type_across_studies_and_balances_studies():
    # study 0 holds 90% of the cells; type 7 lives in studies 1 and 2 only, and is rare
    studies = np.r_[np.zeros(9000, int), np.ones(500, int), np.full(500, 2)]
    labels = np.r_[np.zeros(9000, int), np.full(450, 0), np.full(50, 7), np.full(450, 1), np.full(50, 7)]
    sampler = BalancedBatches(studies, labels, 128, seed=0)
    share_small, rare = [], 0
    for b in range(20):
        idx = sampler.batch(0, b)
        pair = False
        for lab in np.unique(labels[idx]):
            pair |= len(np.unique(studies[idx][labels[idx] == lab])) > 1
        assert pair, f"batch {b} has no cell type from two studies"
        share_small.append(np.mean(studies[idx] > 0))
        rare += int((labels[idx] == 7).sum())
    # proportional sampling would give the small studies 10% and type 7 1% of the cells
    assert np.mean(share_small) > 0.4 and rare / (20 * 128) > 0.05


def test_same_seed_same_weights_and_the_corpus_is_read_a_batch_at_a_time(tmp_path):
    corpus, _, studies, labels = _corpus(tmp_path)
    enc, hist = train_on_corpus(corpus, studies, labels, [f"G{i}" for i in range(40)], SPEC, seed=0, progress=False)
    assert corpus.max_rows_per_call <= SPEC.batch_size and hist["max_rows_read_at_once"] <= SPEC.batch_size
    assert hist["epochs"][-1]["n_triplets"] > 0 and len(hist["epochs"]) == 2
    again = CellCorpus.open([tmp_path / f"s{k}" for k in range(3)], 40)
    enc2, _ = train_on_corpus(again, studies, labels, [f"G{i}" for i in range(40)], SPEC, seed=0, progress=False)
    for (k, a), b in zip(enc.state_dict().items(), enc2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"same seed, different {k}")


def test_training_memory_does_not_grow_with_the_corpus(tmp_path):
    """Peak numpy memory while training (tracemalloc: numpy's allocations, every cell value read
    from the memory map included) on a corpus 8x larger stays at the batches' size."""
    spec = ModelSpec(hidden_sizes=(16, 8), latent_dim=4, epochs=1, batch_size=128)
    n_genes = 800
    peaks, disk = [], []
    for n in (2_000, 16_000):
        folder = tmp_path / f"n{n}"
        X = sp.random(n, n_genes, density=0.25, random_state=n, format="csr", dtype=np.float32)
        write_piece(folder, X)
        disk.append(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
        del X
        rng = np.random.default_rng(0)
        studies, labels = rng.integers(0, 3, n), rng.integers(0, 4, n)
        corpus = CellCorpus.open([folder], n_genes)
        tracemalloc.start()
        train_on_corpus(corpus, studies, labels, [f"G{i}" for i in range(n_genes)], spec, seed=0, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert corpus.max_rows_per_call <= spec.batch_size
    batch_bytes = spec.batch_size * n_genes * 4
    # the large corpus is ~26 MB on disk; training holds a few dense batches and per-cell indices
    assert peaks[1] < 12 * batch_bytes + 16 * 16_000, (peaks, disk)
    assert peaks[1] < disk[1] / 4, (peaks, disk)
    assert peaks[1] - peaks[0] < 16 * (16_000 - 2_000) + batch_bytes, peaks  # grows by the index arrays only


def test_a_stopped_training_resumes_to_the_uninterrupted_weights(tmp_path):
    corpus, _, studies, labels = _corpus(tmp_path)
    genes = [f"G{i}" for i in range(40)]
    n_batches = BalancedBatches(studies, labels, SPEC.batch_size, 0).n_batches
    want, want_hist = train_on_corpus(corpus, studies, labels, genes, SPEC, seed=0, progress=False)
    for stop in (4, n_batches + 3):  # inside the first epoch (a mid-epoch checkpoint) and inside the second
        ckpt = tmp_path / f"ckpt-{stop}.pt"
        with pytest.raises(TrainingStopped):
            train_on_corpus(corpus, studies, labels, genes, SPEC, seed=0, progress=False, checkpoint=ckpt, checkpoint_every=3,
                            fingerprint="k", stop_after=stop)
        got, hist = train_on_corpus(corpus, studies, labels, genes, SPEC, seed=0, progress=False, checkpoint=ckpt,
                                    checkpoint_every=3, fingerprint="k")
        assert hist["resumed_from"] == ({"epoch": 0, "batch": 3} if stop == 4 else {"epoch": 1, "batch": 3})
        for (k, a), b in zip(want.state_dict().items(), got.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0, msg=f"resumed after {stop} batches: {k} differs")
        assert [e["total"] for e in hist["epochs"]] == [e["total"] for e in want_hist["epochs"]]


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    corpus, _, studies, labels = _corpus(tmp_path)
    genes = [f"G{i}" for i in range(40)]
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(TrainingStopped):
        train_on_corpus(corpus, studies, labels, genes, SPEC, seed=0, progress=False, checkpoint=ckpt, checkpoint_every=2,
                        fingerprint="old", stop_after=2)
    _, hist = train_on_corpus(corpus, studies, labels, genes, SPEC, seed=0, progress=False, checkpoint=ckpt, fingerprint="new")
    assert "resumed_from" not in hist

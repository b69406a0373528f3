"""compute.files: the positioned .npy reader the atlas store and the training stream share."""

from __future__ import annotations

import numpy as np
import pytest

from compute.files import PositionedNpy


def test_positioned_npy_reads_ranges_and_names_a_short_file(tmp_path):
    path = tmp_path / "values.npy"
    np.save(path, np.arange(10, dtype=np.int32))
    f = PositionedNpy(path)
    assert f.length == 10 and f.dtype == np.int32 and not f.is_open  # opened on the first read
    np.testing.assert_array_equal(f.read(3, 4), [3, 4, 5, 6])
    assert f.is_open
    with pytest.raises(ValueError, match=r"values\.npy: shorter than expected"):
        f.read(8, 5)
    f.close()
    assert not f.is_open


def test_positioned_npy_refuses_anything_but_a_1d_array(tmp_path):
    np.save(tmp_path / "matrix.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="expected a 1-d array"):
        PositionedNpy(tmp_path / "matrix.npy")

"""Label disks: exact pixel convention, centring and channels."""

from __future__ import annotations

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.simulation.labels import disk_masks


def test_disk_is_exactly_the_pixels_within_radius():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y, r = rng.uniform(5, 25), rng.uniform(5, 25), rng.uniform(1.5, 6)
        m = disk_masks([x], [y], [0], 1, (30, 32), radius_px=r)[0]
        rows, cols = np.mgrid[:30, :32]
        inside = (cols - x) ** 2 + (rows - y) ** 2 <= r * r  # pixel (r, c) has its centre at (x, y) = (c, r)
        assert np.array_equal(m.astype(bool), inside)


def test_disk_centroids_are_unbiased():
    rng = np.random.default_rng(1)
    err = []
    for _ in range(400):
        x, y = rng.uniform(10, 20, 2)
        m = disk_masks([x], [y], [0], 1, (32, 32), radius_px=4.7)[0]
        rows, cols = np.nonzero(m)
        err.append((cols.mean() - x, rows.mean() - y))
        assert m.sum() == pytest.approx(np.pi * 4.7**2, rel=0.12)
    err = np.asarray(err)
    assert np.abs(err.mean(axis=0)).max() < 0.02  # no systematic offset between labels and positions
    assert np.sqrt((err**2).mean()) < 0.1  # pixelisation only


def test_channels_edges_and_overlap():
    m = disk_masks([2.0, 2.0, -1.0, 50.0], [2.0, 2.0, 5.0, 5.0], [0, 2, 1, 1], 3, (10, 12), radius_px=2.0)
    assert m.shape == (3, 10, 12) and m.dtype == np.uint8
    assert set(np.unique(m)) <= {0, 1}
    assert np.array_equal(m[0], m[2])
    assert m[1, 5, 0] == 1 and m[1, 5, 1] == 1 and m[1, 5, 2] == 0  # disk centred left of the image
    assert disk_masks([], [], [], 2, (4, 4), radius_px=1.0).sum() == 0


def test_errors():
    with pytest.raises(GombnetError):
        disk_masks([1.0], [1.0], [3], 2, (4, 4), radius_px=1.0)
    with pytest.raises(GombnetError):
        disk_masks([1.0], [1.0], [0], 2, (4, 4), radius_px=0.0)
    with pytest.raises(GombnetError):
        disk_masks([1.0, 2.0], [1.0], [0], 2, (4, 4), radius_px=1.0)

"""Synthetic lattices for the analysis tests, built from first principles with numpy."""

from __future__ import annotations

import numpy as np
import pytest


def _rotation(angle_deg: float) -> np.ndarray:
    t = np.radians(angle_deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _crop(points: np.ndarray, extent: float, margin: float) -> np.ndarray:
    keep = np.all((points >= -margin) & (points < extent + margin), axis=1)
    return points[keep]


def _triangular(a: float, extent: float) -> np.ndarray:
    """Triangular lattice points (lattice vectors a(1, 0), a(1/2, sqrt(3)/2)) covering a
    disc much larger than the [0, extent]^2 square, before rotation."""
    n = int(2 * extent / a) + 6
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    a1 = np.array([a, 0.0])
    a2 = np.array([a / 2, a * np.sqrt(3) / 2])
    return i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2


@pytest.fixture
def honeycomb():
    """honeycomb(a, extent, angle_deg=0, shift=(0, 0), margin=0) -> (N, 2) positions [Å].

    Lattice vectors at ``angle_deg`` and ``angle_deg + 60``; C–C bonds at angle + 30°.
    """

    def build(a, extent, angle_deg=0.0, shift=(0.0, 0.0), margin=0.0):
        base = _triangular(a, extent)
        delta = np.array([a / 2, a * np.sqrt(3) / 6])  # (a1 + a2) / 3, length a / sqrt(3)
        pts = np.vstack([base, base + delta]) @ _rotation(angle_deg).T + np.asarray(shift)
        return _crop(pts, extent, margin)

    return build


@pytest.fixture
def triangular():
    """triangular(a, extent, angle_deg=0, shift=(0, 0)) -> (N, 2) positions [Å]."""

    def build(a, extent, angle_deg=0.0, shift=(0.0, 0.0), margin=0.0):
        pts = _triangular(a, extent) @ _rotation(angle_deg).T + np.asarray(shift)
        return _crop(pts, extent, margin)

    return build


@pytest.fixture
def tmd_layer():
    """tmd_layer(a, extent, angle_deg=0, w_shift=(0, 0), chalcogen_side=+1, margin=0)
    -> (w, x) positions [Å] of one projected TMD layer.

    W on a triangular lattice; chalcogen columns displaced by ``chalcogen_side *
    (a1 + a2) / 3`` (projected W–X distance a / sqrt(3)). ``chalcogen_side=-1`` is the
    same layer rotated by 60° (180°) about a W column.
    """

    def build(a, extent, angle_deg=0.0, w_shift=(0.0, 0.0), chalcogen_side=+1, margin=0.0):
        w = _triangular(a, extent)
        x = w + chalcogen_side * np.array([a / 2, a * np.sqrt(3) / 6])
        rot = _rotation(angle_deg).T
        shift = np.asarray(w_shift, dtype=float)
        return _crop(w @ rot + shift, extent, margin), _crop(x @ rot + shift, extent, margin)

    return build


@pytest.fixture
def render_blobs():
    """render_blobs(positions, shape, pixel_size, sigma=0.35) -> image with a Gaussian of
    standard deviation ``sigma`` [Å] at every position (pixel (r, c) centred at (c, r) px)."""

    def render(positions, shape, pixel_size, sigma=0.35):
        rows, cols = shape
        y = np.arange(rows) * pixel_size
        x = np.arange(cols) * pixel_size
        gy = np.exp(-0.5 * ((y[None, :] - positions[:, 1:2]) / sigma) ** 2)
        gx = np.exp(-0.5 * ((x[None, :] - positions[:, 0:1]) / sigma) ** 2)
        return gy.T @ gx  # sum over atoms of separable Gaussians

    return render

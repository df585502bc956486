"""Synthetic honeycomb lattices [px] for the layer-check tests, built with numpy."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def honeycomb_points(angle_deg, rng, *, a_px, size_px, jitter_px, basis=True, strain=None):
    """Honeycomb (with ``basis=False`` triangular) lattice points [px] inside a square of ``size_px``,
    a lattice vector at ``angle_deg``, deformed by the 2x2 ``strain``, shifted at random by up to a
    lattice constant and jittered by ``jitter_px`` (draws from ``rng``)."""
    t = np.radians(angle_deg)
    a1 = a_px * np.array([np.cos(t), np.sin(t)])
    a2 = a_px * np.array([np.cos(t + np.pi / 3), np.sin(t + np.pi / 3)])
    n = int(2 * size_px / a_px) + 2
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n))
    pts = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    if basis:
        pts = np.vstack([pts, pts + (a1 + a2) / 3])
    if strain is not None:
        pts = pts @ np.asarray(strain).T
    pts = pts + rng.uniform(0, a_px, 2)
    pts = pts[(pts >= 0).all(axis=1) & (pts < size_px).all(axis=1)]
    return pts + rng.normal(0, jitter_px, pts.shape)


def bilayer_points(twist_deg, *, base_deg, seed=0, **kwargs):
    """Two honeycombs ``twist_deg`` apart (the first at ``base_deg``): positions and true layer."""
    rng = np.random.default_rng(seed)
    layers = [honeycomb_points(base_deg, rng, **kwargs), honeycomb_points(base_deg + twist_deg, rng, **kwargs)]
    return np.vstack(layers), np.concatenate([np.full(len(p), k) for k, p in enumerate(layers)])


@pytest.fixture
def lattice_points():
    """``.honeycomb(angle_deg, rng, *, a_px, size_px, jitter_px, basis, strain)`` and
    ``.bilayer(twist_deg, *, base_deg, seed, **honeycomb keywords)``."""
    return SimpleNamespace(honeycomb=honeycomb_points, bilayer=bilayer_points)

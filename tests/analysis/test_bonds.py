"""Tests for gombnet.analysis.bonds on synthetic graphene and TMD lattices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from gombnet.analysis.bonds import (
    bond_lengths_by_layer,
    bond_statistics,
    interior_mask,
    nearest_neighbor_distances,
    neighbor_pairs,
)
from gombnet.errors import GombnetError

A_GRAPHENE = 2.46
D_CC = A_GRAPHENE / math.sqrt(3)  # 1.4203 Å


def test_perfect_graphene_bond_length(honeycomb):
    pos = honeycomb(A_GRAPHENE, 30.0, angle_deg=17.0)
    d = nearest_neighbor_distances(pos, k=3, max_distance_angstrom=1.8, edge_exclusion_angstrom=2.0)
    assert d.size > 300
    assert np.all(np.abs(d - 1.420) < 0.001)
    st = bond_statistics(d)
    assert st.mean == pytest.approx(1.420, abs=0.001)
    assert st.median == pytest.approx(D_CC, abs=1e-9)
    assert st.std < 1e-9
    assert st.fwhm < 1e-3
    assert st.count == d.size


def test_unique_bonds_match_brute_force(honeycomb):
    pos = honeycomb(A_GRAPHENE, 12.0, angle_deg=5.0)
    expected = int(np.sum(pdist(pos) < 1.8))  # every bond once
    d = nearest_neighbor_distances(pos, max_distance_angstrom=1.8)
    assert d.size == expected
    d_k = nearest_neighbor_distances(pos, k=3, max_distance_angstrom=1.8)
    assert d_k.size == expected  # k = 3 finds every bond; unique counts it once
    both = nearest_neighbor_distances(pos, k=3, max_distance_angstrom=1.8, unique=False)
    assert both.size == 2 * expected


def test_edge_exclusion_removes_wrong_neighbours(honeycomb):
    pos = honeycomb(A_GRAPHENE, 20.0)
    # Without a distance cap, edge atoms with < 3 bonds pick second neighbours (2.46 Å).
    d_all = nearest_neighbor_distances(pos, k=3)
    assert d_all.max() > 2.0
    d_in = nearest_neighbor_distances(pos, k=3, edge_exclusion_angstrom=2.0)
    assert np.allclose(d_in, D_CC, atol=1e-9)
    mask = interior_mask(pos, edge_exclusion_angstrom=2.0)
    assert 0 < mask.sum() < pos.shape[0]
    fov = interior_mask(pos, edge_exclusion_angstrom=2.0, field_of_view_angstrom=(-10, -10, 30, 30))
    assert fov.all()


@pytest.mark.parametrize("sigma", [0.01, 0.03])
def test_jitter_widens_distribution(honeycomb, sigma):
    rng = np.random.default_rng(7)
    pos = honeycomb(A_GRAPHENE, 40.0, angle_deg=3.0)
    pos = pos + rng.normal(0.0, sigma, pos.shape)
    d = nearest_neighbor_distances(pos, k=3, max_distance_angstrom=1.8, edge_exclusion_angstrom=2.0)
    st = bond_statistics(d)
    # Difference of two independent 2-D Gaussian displacements, projected on the bond.
    expected_std = sigma * math.sqrt(2.0)
    assert st.std == pytest.approx(expected_std, rel=0.08)
    assert st.fwhm == pytest.approx(2.3548 * expected_std, rel=0.15)
    assert st.mean == pytest.approx(D_CC, abs=0.004)


def test_fwhm_of_known_gaussian_and_robust_to_tails():
    rng = np.random.default_rng(3)
    core = rng.normal(1.40, 0.05, 20000)
    st = bond_statistics(core)
    assert st.fwhm == pytest.approx(2.3548 * 0.05, rel=0.03)
    assert st.peak == pytest.approx(1.40, abs=0.005)
    # 10 % of far outliers inflate the std but not the peak width.
    tails = rng.uniform(1.0, 1.8, 2000)
    st2 = bond_statistics(np.concatenate([core, tails]))
    assert st2.fwhm_gaussian > 1.5 * st.fwhm_gaussian
    assert st2.fwhm == pytest.approx(st.fwhm, rel=0.1)
    assert "KDE" in st2.fwhm_method
    json.dumps(st2.to_dict())


def test_between_species_distances(tmd_layer):
    a = 3.15
    w, x = tmd_layer(a, 25.0, angle_deg=12.0)
    d = nearest_neighbor_distances(w, neighbors_angstrom=x, k=3, max_distance_angstrom=2.5, edge_exclusion_angstrom=3.0)
    assert d.size > 100
    assert np.allclose(d, a / math.sqrt(3), atol=1e-9)
    i, j, dd = neighbor_pairs(w, neighbors_angstrom=x, k=3, max_distance_angstrom=2.5, edge_exclusion_angstrom=3.0)
    assert np.allclose(np.hypot(*(w[i] - x[j]).T), dd)
    ww = nearest_neighbor_distances(w, k=6, max_distance_angstrom=4.0, edge_exclusion_angstrom=4.0)
    assert np.allclose(ww, a, atol=1e-9)


def test_by_layer(honeycomb):
    a = honeycomb(A_GRAPHENE, 15.0)
    b = honeycomb(A_GRAPHENE, 15.0, angle_deg=30.0)
    out = bond_lengths_by_layer({"A": a, "B": b}, k=3, max_distance_angstrom=1.8)
    assert set(out) == {"A", "B"}
    assert all(np.allclose(v, D_CC, atol=1e-9) for v in out.values())


@pytest.mark.parametrize(
    "positions, kwargs",
    [
        (np.zeros((0, 2)), dict(k=3)),
        (np.array([[0.0, 0.0], [np.nan, 1.0]]), dict(k=1)),
        (np.zeros((5, 3)), dict(k=1)),
        ("abc", dict(k=1)),
        (np.random.default_rng(0).random((5, 2)), dict()),
        (np.random.default_rng(0).random((5, 2)), dict(k=0)),
        (np.random.default_rng(0).random((5, 2)), dict(k=2.5)),
        (np.random.default_rng(0).random((5, 2)), dict(k=3, max_distance_angstrom=-1)),
        (np.random.default_rng(0).random((5, 2)), dict(k=3, edge_exclusion_angstrom=float("nan"))),
        (np.random.default_rng(0).random((5, 2)), dict(k=3, field_of_view_angstrom=(0, 0, -1, 1))),
    ],
)
def test_bad_input_raises(positions, kwargs):
    with pytest.raises(GombnetError):
        nearest_neighbor_distances(positions, **kwargs)


def test_bond_statistics_bad_input():
    for bad in ([1.4], [], [1.4, np.nan], [-1.0, 1.4], [[1.4, 1.4], [1.4, 1.4]]):
        with pytest.raises(GombnetError):
            bond_statistics(bad)
    with pytest.raises(GombnetError):
        bond_statistics([1.4, 1.5], bandwidth_angstrom=0)

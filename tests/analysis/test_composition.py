"""Tests for gombnet.analysis.composition: Se fraction and Vegard's law."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gombnet.analysis.composition import (
    fit_vegard,
    se_fraction,
    vegard_lattice_constant,
    x_from_lattice_constant,
)
from gombnet.errors import GombnetError


def test_se_fraction_by_hand():
    # 90 S–S + 10 Se–S columns: 200 chalcogen atoms, 10 of them Se.
    r = se_fraction(90, 10)
    assert r.x == pytest.approx(0.05)
    assert r.n_chalcogen == 200 and r.n_se == 10 and r.n_s == 190 and r.n_columns == 100
    assert r.x_err == pytest.approx(math.sqrt(0.05 * 0.95 / 200))
    # A full Janus layer (every column Se–S) is x = 0.5, pure WS2 x = 0, WSe2 x = 1.
    assert se_fraction(0, 50).x == 0.5
    assert se_fraction(120, 0).x == 0.0 and se_fraction(120, 0).x_err == 0.0
    assert se_fraction(0, 0, n_se2=7).x == 1.0
    # 3 S–S, 2 Se–S, 1 Se–Se: Se atoms 2 + 2 = 4 of 12.
    assert se_fraction(n_s2=3, n_sse=2, n_se2=1).x == pytest.approx(4 / 12)
    json.dumps(r.to_dict())


def test_se_fraction_differs_from_authors_ratio():
    # The authors' notebook divided by 2 n_S2 + n_SSe (the S atoms): Se/S, not Se/(S+Se).
    n_s2, n_sse = 40, 60
    authors = n_sse / (2 * n_s2 + n_sse)
    assert se_fraction(n_s2, n_sse).x == pytest.approx(0.3)
    assert authors == pytest.approx(60 / 140)
    assert se_fraction(n_s2, n_sse).x < authors


@pytest.mark.parametrize(
    "args",
    [(0, 0), (-1, 5), (1.5, 2), (True, 2), ("a", 1), (float("nan"), 1), (1, 1, -2)],
)
def test_se_fraction_bad_counts(args):
    with pytest.raises(GombnetError):
        se_fraction(*args)


def test_vegard_end_points_and_inverse():
    assert vegard_lattice_constant(0.0) == pytest.approx(3.15)
    assert vegard_lattice_constant(0.5) == pytest.approx(3.24)
    assert vegard_lattice_constant(0.25) == pytest.approx(3.195)
    assert vegard_lattice_constant(0.02) == pytest.approx(3.15 + 0.09 * 0.04)
    x = np.linspace(0.0, 1.0, 21)
    assert np.allclose(x_from_lattice_constant(vegard_lattice_constant(x)), x)
    assert x_from_lattice_constant(3.24) == pytest.approx(0.5)
    # Slightly below WS2: negative x is kept unless clipped.
    assert x_from_lattice_constant(3.14) < 0
    assert x_from_lattice_constant(3.14, clip=True) == 0.0
    # Custom end points.
    assert vegard_lattice_constant(0.5, a_ws2_angstrom=3.16, a_janus_angstrom=3.25) == pytest.approx(3.25)


@pytest.mark.parametrize("x", [-0.1, 1.2, float("nan"), "a"])
def test_vegard_bad_x(x):
    with pytest.raises(GombnetError):
        vegard_lattice_constant(x)


def test_vegard_bad_inputs():
    with pytest.raises(GombnetError):
        x_from_lattice_constant(0.0)
    with pytest.raises(GombnetError):
        x_from_lattice_constant(31.5)
    with pytest.raises(GombnetError):
        vegard_lattice_constant(0.1, a_ws2_angstrom=3.2, a_janus_angstrom=3.2)


def test_fit_vegard_exact_and_noisy():
    x = np.array([0.0, 0.1, 0.2, 0.35, 0.5])
    fit = fit_vegard(x, vegard_lattice_constant(x))
    assert fit.slope == pytest.approx(0.18)
    assert fit.intercept == pytest.approx(3.15)
    assert fit.slope_expected == pytest.approx(0.18)
    assert fit.dof == 3 and not fit.weighted
    rng = np.random.default_rng(2)
    sigma = 0.005
    xs = np.linspace(0.0, 0.5, 12)
    a = vegard_lattice_constant(xs) + rng.normal(0, sigma, xs.size)
    f2 = fit_vegard(xs, a, a_err_angstrom=np.full(xs.size, sigma))
    assert f2.weighted
    # Independent expectation for the slope error of a straight-line fit.
    expected_err = sigma / math.sqrt(np.sum((xs - xs.mean()) ** 2))
    assert f2.slope_err == pytest.approx(expected_err, rel=1e-6)
    assert abs(f2.slope - 0.18) < 4 * f2.slope_err
    assert abs(f2.intercept - 3.15) < 4 * f2.intercept_err
    json.dumps(f2.to_dict())


def test_fit_vegard_bad_input():
    with pytest.raises(GombnetError):
        fit_vegard([0.1, 0.2], [3.16, 3.17])  # 2 points without errors
    with pytest.raises(GombnetError):
        fit_vegard([0.1, 0.1, 0.1], [3.16, 3.17, 3.18])
    with pytest.raises(GombnetError):
        fit_vegard([0.1, 0.2, 0.3], [3.16, 3.17])
    with pytest.raises(GombnetError):
        fit_vegard([0.1, 0.2], [3.16, 3.17], a_err_angstrom=[0.01, 0.0])

"""Tests for gombnet.analysis.stats: KDE, bootstrap, two-sample tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from gombnet.analysis.stats import (
    binned_kde,
    bootstrap_kde,
    chi2_two_sample,
    compare_site_distributions,
    kde_density,
)
from gombnet.errors import GombnetError

GRID = np.linspace(-0.5, 3.0, 351)


def test_kde_matches_scipy_with_bandwidth_in_angstrom():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.8, 0.2, 700), rng.normal(2.0, 0.1, 300)])
    h = 0.1
    # scipy's factor is relative to the sample standard deviation.
    ref = gaussian_kde(v, bw_method=h / v.std(ddof=1))(GRID)
    exact = kde_density(v, grid_angstrom=GRID, bandwidth_angstrom=h, method="exact")
    binned = binned_kde(v, grid_angstrom=GRID, bandwidth_angstrom=h)
    assert np.allclose(exact, ref, rtol=1e-6, atol=1e-9)
    assert np.max(np.abs(binned - ref)) < 2e-3 * ref.max()
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    assert trapezoid(binned, GRID) == pytest.approx(1.0, abs=1e-3)


def test_bootstrap_reproducible_and_seed_dependent():
    v = np.random.default_rng(1).normal(1.5, 0.4, 500)
    b1 = bootstrap_kde(v, grid_angstrom=GRID, n_bootstrap=50, rng=np.random.default_rng(42))
    b2 = bootstrap_kde(v, grid_angstrom=GRID, n_bootstrap=50, rng=np.random.default_rng(42))
    b3 = bootstrap_kde(v, grid_angstrom=GRID, n_bootstrap=50, rng=np.random.default_rng(43))
    assert b1.shape == (50, GRID.size)
    assert np.array_equal(b1, b2)
    assert not np.allclose(b1, b3)
    c1 = compare_site_distributions(v[:80], v, rng=np.random.default_rng(7), n_bootstrap=100)
    c2 = compare_site_distributions(v[:80], v, rng=np.random.default_rng(7), n_bootstrap=100)
    assert np.array_equal(c1.band_low_sites, c2.band_low_sites)


def test_multinomial_bootstrap_matches_naive_resampling():
    # Independent check: resample the data points themselves and run the exact KDE.
    rng = np.random.default_rng(5)
    v = rng.normal(1.0, 0.3, 150)
    n_boot = 400
    naive = np.empty((n_boot, GRID.size))
    gen = np.random.default_rng(9)
    for i in range(n_boot):
        naive[i] = kde_density(gen.choice(v, v.size), grid_angstrom=GRID, method="exact")
    fast = bootstrap_kde(v, grid_angstrom=GRID, n_bootstrap=n_boot, rng=np.random.default_rng(10))
    core = (GRID > 0.4) & (GRID < 1.6)
    assert np.allclose(fast.mean(0)[core], naive.mean(0)[core], rtol=0.05)
    assert np.allclose(fast.std(0)[core], naive.std(0)[core], rtol=0.25)
    point = kde_density(v, grid_angstrom=GRID)
    assert np.allclose(fast.mean(0)[core], point[core], rtol=0.05)


def test_same_distribution_gives_large_p_values():
    rng = np.random.default_rng(123)
    all_values = rng.gamma(4.0, 0.4, 50_000)
    sites = rng.gamma(4.0, 0.4, 300)
    res = compare_site_distributions(sites, all_values, rng=np.random.default_rng(0), n_bootstrap=200)
    assert res.ks_p > 0.05
    assert res.chi2_p > 0.05
    assert res.n_sites == 300 and res.n_all == 50_000
    # The site KDE lies inside its own bootstrap band where the density is appreciable.
    dens = res.density_sites > 0.2 * res.density_sites.max()
    assert np.all(res.band_low_sites[dens] <= res.density_sites[dens] + 1e-12)
    assert np.all(res.density_sites[dens] <= res.band_high_sites[dens] + 1e-12)
    # The all-sites band is much narrower than the site band.
    assert np.max(res.boot_std_all) < 0.2 * np.max(res.boot_std_sites)
    json.dumps(res.to_dict())


def test_different_distributions_give_tiny_p_values():
    rng = np.random.default_rng(321)
    all_values = rng.gamma(4.0, 0.4, 50_000)
    sites = rng.gamma(4.0, 0.4, 300) + 0.3
    grid = np.linspace(-0.3, 6.0, 401)
    res = compare_site_distributions(
        sites, all_values, rng=np.random.default_rng(0), n_bootstrap=50, grid_angstrom=grid
    )
    assert res.ks_p < 1e-6
    assert res.chi2_p < 1e-4  # binned test: less powerful than KS for a shift
    same = compare_site_distributions(
        rng.gamma(4.0, 0.4, 300), all_values, rng=np.random.default_rng(0), n_bootstrap=50, grid_angstrom=grid
    )
    assert res.mse > 3 * same.mse
    assert res.mse_sum_normalised > 3 * same.mse_sum_normalised


def test_large_reference():
    rng = np.random.default_rng(0)
    all_values = rng.uniform(0.0, 2.6, 1_000_000)
    res = compare_site_distributions(all_values[:333], all_values, rng=rng, n_bootstrap=1000)
    assert res.n_bootstrap == 1000
    assert res.grid_angstrom.size == 401


def test_chi2_small_samples_and_ties():
    stat, dof, p, nb = chi2_two_sample([1.0, 2.0, 3.0], np.arange(100.0))
    assert np.isnan(p) and nb == 0
    ties = np.repeat([0.0, 1.8, 2.6], 1000)  # ideal registries only: heavy ties
    stat, dof, p, nb = chi2_two_sample(ties[::10], ties, n_bins=20)
    assert nb == 3 and dof == 2 and p > 0.5


def test_bad_input():
    v = np.arange(10.0)
    with pytest.raises(GombnetError):
        compare_site_distributions(v, v)  # bootstrap needs an rng
    with pytest.raises(GombnetError):
        compare_site_distributions(v, v, rng=np.random.default_rng(0), band_level=1.5)
    with pytest.raises(GombnetError):
        compare_site_distributions([1.0], v, rng=np.random.default_rng(0))
    with pytest.raises(GombnetError):
        compare_site_distributions(v, [np.nan, 1.0], rng=np.random.default_rng(0))  # 1 value left
    with pytest.raises(GombnetError):
        compare_site_distributions(v, v, rng=np.random.default_rng(0), bandwidth_angstrom=0)
    with pytest.raises(GombnetError):
        bootstrap_kde(v, grid_angstrom=GRID, n_bootstrap=0, rng=np.random.default_rng(0))
    with pytest.raises(GombnetError):
        bootstrap_kde(v, grid_angstrom=GRID[::-1], rng=np.random.default_rng(0))
    with pytest.raises(GombnetError):
        kde_density(v, grid_angstrom=np.array([0.0, 1.0, 3.0]))
    with pytest.raises(GombnetError):
        kde_density(v, grid_angstrom=GRID, method="fast")
    with pytest.raises(GombnetError):
        compare_site_distributions(v, [np.inf, 1.0, 2.0], n_bootstrap=0)
    with pytest.raises(GombnetError):
        compare_site_distributions(v, [np.nan, 1.0, 2.0], n_bootstrap=0, drop_nan=False)
    masked = compare_site_distributions(v, np.append(v, np.nan), n_bootstrap=0)  # NaN = masked pixel
    assert masked.n_all == v.size
    res = compare_site_distributions(v, v, n_bootstrap=0)  # no rng needed without bootstrap
    assert np.array_equal(res.band_low_sites, res.density_sites)

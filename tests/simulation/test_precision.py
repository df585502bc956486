import dataclasses
import math

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.simulation import load_preset
from gombnet.simulation.imaging import add_detector_noise, normalize_image
from gombnet.simulation.precision import column_position_bound
from gombnet.simulation.sample import Scene, simulate_sample, simulate_scene
from gombnet.simulation.structure import Structure


def point_scene(xy_px, *, layers, sigma_px=2.0, size=48, dose=100.0, vibration_angstrom=0.0):
    """Point atoms blurred by a Gaussian only, one column each, no background or read noise."""
    xy = np.asarray(xy_px, dtype=float)
    n = len(xy)
    params = {"pixel_size_angstrom": 0.1, "dose_counts_per_px": dose, "read_noise": 0.0,
              "background_amplitude": 0.0, "vibration_sigma_angstrom": vibration_angstrom}
    return Scene(params=params, shape=(size, size), atom_x_px=xy[:, 0], atom_y_px=xy[:, 1],
                 atom_weight=np.ones(n), atom_column=np.arange(n), column_x_px=xy[:, 0], column_y_px=xy[:, 1],
                 in_fov=np.ones(n, bool), render_kwargs={"sigma_px": sigma_px, "pad_px": 12}, background=None,
                 structure=Structure(atoms={}, sites={"layer": np.asarray(layers, dtype=np.int16)}))


def test_isolated_gaussian_spot_matches_sigma_over_sqrt_counts():
    # all the image's counts N sit in one Gaussian spot of width s: sigma_x = s / sqrt(N)
    scene = point_scene([(23.3, 24.6)], layers=[0], sigma_px=2.0, dose=50.0)
    bound = column_position_bound(scene, contamination_unknown=False)
    counts = 50.0 * 48 * 48
    assert bound["sigma_x_px"][0] == pytest.approx(2.0 / math.sqrt(counts), rel=0.03)
    assert bound["sigma_y_px"][0] == pytest.approx(2.0 / math.sqrt(counts), rel=0.03)
    assert bound["rms_angstrom"][0] == pytest.approx(bound["rms_px"][0] * 0.1)
    # four times the dose halves the bound
    more = column_position_bound(dataclasses.replace(scene, params={**scene.params, "dose_counts_per_px": 200.0}))
    assert more["rms_px"][0] == pytest.approx(bound["rms_px"][0] / 2, rel=1e-3)


def test_neighbours_share_information_and_coincident_columns_need_the_prior():
    alone = column_position_bound(point_scene([(20.0, 24.0)], layers=[0]))["rms_px"][0]
    # a second column 1.5 px away (another layer): both fitted together, each known worse
    pair = column_position_bound(point_scene([(20.0, 24.0), (21.5, 24.0)], layers=[0, 1]))
    assert np.all(pair["rms_px"] > 1.5 * alone)
    # exactly on top of each other: the image tells only their mean; the lattice prior decides
    same = column_position_bound(point_scene([(20.0, 24.0), (20.0, 24.0)], layers=[0, 1], vibration_angstrom=0.05))
    assert np.all(np.isinf(same["rms_px"]))
    assert np.all(np.isfinite(same["rms_prior_px"]))
    assert np.all(same["rms_prior_px"] <= math.sqrt(2) * 0.5 + 1e-9)  # never worse than the prior (0.5 px)
    assert same["prior_sigma_px"] == pytest.approx([0.5, 0.5])


def test_scene_is_the_sample_before_noise():
    preset = load_preset("graphene")
    for seed in range(3):
        sample = simulate_sample(preset, np.random.default_rng(seed), image_size_px=64)
        rng = np.random.default_rng(seed)
        scene = simulate_scene(preset, rng, image_size_px=64)
        p = scene.params
        counts = add_detector_noise(scene.noiseless_image(), rng, dose_counts_per_px=p["dose_counts_per_px"],
                                    read_noise=p["read_noise"], line_offset=p["line_offset"],
                                    line_gain=p["line_gain"])
        np.testing.assert_array_equal(normalize_image(counts), sample.image)
        np.testing.assert_array_equal(scene.column_x_px[scene.in_fov].astype(np.float32), sample.columns["x_px"])
        np.testing.assert_array_equal(scene.column_layer[scene.in_fov], sample.columns["layer"])


def test_bound_on_a_simulated_bilayer():
    scene = simulate_scene(load_preset("graphene"), np.random.default_rng(1), image_size_px=64)
    bound = column_position_bound(scene)
    n = int(scene.in_fov.sum())
    assert all(bound[k].shape == (n,) for k in ("rms_px", "rms_prior_px", "sigma_x_prior_px"))
    finite = np.isfinite(bound["rms_px"])
    assert finite.mean() > 0.9
    # the prior can only help, and the Bayesian bound settles with the patch size
    assert np.all(bound["rms_prior_px"][finite] <= bound["rms_px"][finite] + 1e-9)
    wider = column_position_bound(scene, patch_radius_px=int(1.5 * bound["patch_radius_px"]))
    assert np.median(wider["rms_prior_px"] / bound["rms_prior_px"]) == pytest.approx(1.0, abs=0.05)
    # contamination atoms taken as known make it easier
    known = column_position_bound(scene, contamination_unknown=False)
    assert np.all(known["rms_prior_px"] <= bound["rms_prior_px"] * (1 + 1e-6))
    # a subset of columns: the same numbers for them
    some = np.flatnonzero(scene.in_fov)[:5]
    assert column_position_bound(scene, columns=some)["rms_prior_px"] == pytest.approx(bound["rms_prior_px"][:5])


def test_bad_arguments():
    scene = point_scene([(20.0, 24.0)], layers=[0])
    with pytest.raises(GombnetError, match="Scene"):
        column_position_bound("scene")
    with pytest.raises(GombnetError, match="columns"):
        column_position_bound(scene, columns=[3])
    with pytest.raises(GombnetError, match="patch_radius_px"):
        column_position_bound(scene, patch_radius_px=0)


def test_a_maximum_likelihood_fit_reaches_the_bound():
    # Monte Carlo: fit an isolated spot (known width, amplitude and background) in Poisson noise
    from scipy.optimize import minimize

    scene = point_scene([(15.4, 16.2)], layers=[0], sigma_px=2.0, size=32, dose=20.0)
    scene = dataclasses.replace(scene, background=np.ones((32, 32), np.float32),
                                params={**scene.params, "background_amplitude": 0.5})
    bound = column_position_bound(scene)
    expected = scene.noiseless_image().astype(float)
    scale = 20.0 / expected.mean()
    yy, xx = np.mgrid[0:32, 0:32]
    peak = expected.max() - expected.min()

    def counts_model(xy):
        spot = np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * 2.0**2))
        return scale * (expected.min() + peak * spot)

    rng = np.random.default_rng(0)
    fits = []
    for _ in range(200):
        counts = rng.poisson(expected * scale)

        def nll(xy):
            lam = counts_model(xy)
            return float(np.sum(lam - counts * np.log(lam)))

        fits.append(minimize(nll, x0=[15.4, 16.2], method="Nelder-Mead", options={"xatol": 1e-4}).x)
    fits = np.array(fits)
    # efficient estimator: its spread matches the bound (sampling error of 200 trials ~ 5 %)
    assert fits[:, 0].std() == pytest.approx(bound["sigma_x_px"][0], rel=0.15)
    assert fits[:, 1].std() == pytest.approx(bound["sigma_y_px"][0], rel=0.15)

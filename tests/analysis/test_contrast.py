import numpy as np
import pytest

from gombnet.analysis.contrast import brightness_ratios, column_brightness
from gombnet.errors import GombnetError


def _spots(amplitudes, pixel_size=0.1, spacing_angstrom=3.0, n=6):
    """Gaussian columns of the given amplitudes on a grid, over a sloped background."""
    size = int(n * spacing_angstrom / pixel_size) + 20
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    image = 0.5 + 0.002 * xx + 0.001 * yy
    xs, ys, amp = [], [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        for j in range(n):
            x, y = 10 + (i + 0.5) * spacing_angstrom / pixel_size, 10 + (j + 0.5) * spacing_angstrom / pixel_size
            a = amplitudes[(i + j) % len(amplitudes)]
            x, y = x + rng.uniform(-0.5, 0.5), y + rng.uniform(-0.5, 0.5)
            image += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.4 / pixel_size) ** 2))
            xs.append(x)
            ys.append(y)
            amp.append(a)
    return image, np.array(xs), np.array(ys), np.array(amp)


def test_brightness_follows_the_column_amplitudes_over_a_background():
    image, x, y, amp = _spots([4.0, 1.0, 2.0])
    b = column_brightness(image, x, y, 0.1)
    for a in (4.0, 2.0):
        assert np.median(b[amp == a]) / np.median(b[amp == 1.0]) == pytest.approx(a, rel=0.08)


def test_ratios_per_species():
    species = np.array(["W"] * 6 + ["S2"] * 6 + ["SSe"] * 6 + ["Se2"] * 2)
    b = np.r_[np.full(6, 8.0), np.full(6, 2.0), np.full(6, 4.0), [9.0, 9.0]]
    r = brightness_ratios(b, species)
    assert r["ratio_to_S2"] == pytest.approx({"W": 4.0, "S2": 1.0, "SSe": 2.0})
    assert "Se2" not in r["median"]  # fewer than min_columns
    assert "ratio_to_S2" not in brightness_ratios(b[species != "S2"], species[species != "S2"])
    with pytest.raises(GombnetError, match="same length"):
        brightness_ratios(b[:3], species)
    with pytest.raises(GombnetError, match="2-D"):
        column_brightness(np.zeros(10), [1], [1], 0.1)


def test_simulated_monolayer_shows_its_z_contrast():
    import dataclasses

    from gombnet.demo import DEMO_CONDITIONS
    from gombnet.simulation import simulate_sample
    from gombnet.simulation.presets import with_overrides

    mono = with_overrides("ws2-wsse-monolayer", ["substitution.scenario_weights=[0, 1, 0, 0]",
                                                 "substitution.sublayer_fraction=0.5"])
    s = simulate_sample(dataclasses.replace(mono, **DEMO_CONDITIONS), np.random.default_rng(1), image_size_px=256)
    n, k = s.params["z_exponent"], s.params["heavy_atom_scale"]
    r = brightness_ratios(column_brightness(s.image, s.columns["x_px"], s.columns["y_px"], s.params["pixel_size_angstrom"]),
                          np.array(["W", "S2", "SSe"])[s.columns["class"]])["ratio_to_S2"]
    # the simulator's column weights: k Z_W^n for W, Z_Se^n + Z_S^n for Se-S, 2 Z_S^n for S-S
    assert r["W"] == pytest.approx(k * 74**n / (2 * 16**n), rel=0.1)
    assert r["SSe"] == pytest.approx((34**n + 16**n) / (2 * 16**n), rel=0.1)

"""Image formation: probe, exact sub-pixel rendering, noise, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.simulation.imaging import (
    SmoothField,
    add_detector_noise,
    electron_wavelength_angstrom,
    normalize_image,
    probe_fwhm_angstrom,
    probe_intensity,
    probe_otf,
    render_haadf,
)

PROBE = dict(pixel_size_angstrom=0.106, energy_kev=60.0, convergence_mrad=30.0)


def core_centroid(im, x, y, r=10, threshold=0.3):
    """Centroid of the bright core (above 30 % of the peak) around (x, y): ignores Airy tails."""
    ys, xs = np.mgrid[: im.shape[0], : im.shape[1]]
    near = (xs - x) ** 2 + (ys - y) ** 2 <= r * r
    w = np.where(near, np.maximum(im - threshold * im[near].max(), 0), 0)
    return (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()


def test_wavelength():
    # textbook relativistic values
    assert electron_wavelength_angstrom(60) == pytest.approx(0.04866, rel=2e-3)
    assert electron_wavelength_angstrom(200) == pytest.approx(0.02508, rel=2e-3)
    assert electron_wavelength_angstrom(300) == pytest.approx(0.01969, rel=2e-3)
    with pytest.raises(GombnetError):
        electron_wavelength_angstrom(0)


def test_airy_probe_width():
    psf = probe_intensity((256, 256), 0.04, energy_kev=60, convergence_mrad=30)
    assert psf.sum() == pytest.approx(1, rel=1e-4)
    profile = psf[128, :]
    above = np.nonzero(profile >= profile.max() / 2)[0]
    fwhm = (above[-1] - above[0] + 1) * 0.04
    assert fwhm == pytest.approx(probe_fwhm_angstrom(60, 30), abs=0.05)  # 0.83 A for 60 kV, 30 mrad
    assert np.unravel_index(np.argmax(psf), psf.shape) == (128, 128)


def test_otf_numeric_matches_analytic():
    """The FFT route (used with aberrations) reproduces the analytic Airy OTF when they vanish."""
    kw = dict(energy_kev=60.0, convergence_mrad=30.0)
    analytic = probe_otf((200, 180), 0.1, **kw)
    numeric = probe_otf((200, 180), 0.1, defocus_angstrom=1e-9, **kw)
    assert analytic[0, 0] == pytest.approx(1) and numeric[0, 0] == pytest.approx(1)
    assert np.abs(analytic - numeric).max() < 0.03
    defocused = probe_otf((200, 180), 0.1, defocus_angstrom=40.0, **kw)
    assert defocused[5:30, 0].mean() < analytic[5:30, 0].mean()  # defocus loses contrast


@pytest.mark.parametrize("xy", [(30.0, 31.0), (30.37, 29.81), (31.5, 30.5), (29.93, 30.08)])
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        PROBE,
        dict(PROBE, defocus_angstrom=25.0, astigmatism_angstrom=10.0, astigmatism_angle_deg=30.0, c3_um=2.0),
    ],
)
def test_single_atom_is_centred_on_its_position(xy, kw):
    x, y = xy
    im = render_haadf([x], [y], [1.0], (64, 64), sigma_px=2.0, **kw)
    assert im.dtype == np.float32
    cx, cy = core_centroid(im, x, y)
    assert abs(cx - x) < 0.05 and abs(cy - y) < 0.05
    if not kw:  # a Gaussian alone: the plain centroid is exact too, and intensity is conserved
        ys, xs = np.mgrid[:64, :64]
        assert (im * xs).sum() / im.sum() == pytest.approx(x, abs=0.01)
        assert im.sum() == pytest.approx(1.0, rel=1e-3)


def test_translation_equivariance():
    a = render_haadf([20.25, 40.0], [30.6, 25.1], [1.0, 2.0], (64, 64), sigma_px=1.5, **PROBE)
    b = render_haadf([23.25, 43.0], [32.6, 27.1], [1.0, 2.0], (64, 64), sigma_px=1.5, **PROBE)
    assert np.allclose(a[10:50, 10:50], b[12:52, 13:53], atol=1e-4 * a.max())


def test_weights_add_linearly():
    one = render_haadf([20.3], [22.7], [1.0], (48, 48), sigma_px=1.2, **PROBE)
    two = render_haadf([20.3, 20.3], [22.7, 22.7], [74.0**1.7, 16.0**1.7], (48, 48), sigma_px=1.2, **PROBE)
    assert np.allclose(two, one * (74.0**1.7 + 16.0**1.7), rtol=1e-3, atol=1e-3 * two.max())


def test_row_shift_moves_rows():
    shift = np.full(64, 1.5)
    a = render_haadf([30.2], [31.4], [1.0], (64, 64), sigma_px=2.0, row_shift_px=shift)
    b = render_haadf([31.7], [31.4], [1.0], (64, 64), sigma_px=2.0)
    assert np.allclose(a, b, atol=1e-4 * b.max())
    # random per-row shifts: the centroid moves by the shifts averaged over the atom's rows
    rng = np.random.default_rng(0)
    shift = rng.normal(0, 1.0, 64)
    a = render_haadf([30.2], [31.4], [1.0], (64, 64), sigma_px=2.0, row_shift_px=shift)
    ys, xs = np.mgrid[:64, :64]
    rows = np.arange(64)
    weight = np.exp(-0.5 * ((rows - 31.4) / 2.0) ** 2)
    expected = 30.2 + (weight * shift).sum() / weight.sum()
    assert (a * xs).sum() / a.sum() == pytest.approx(expected, abs=0.02)


def test_render_errors():
    with pytest.raises(GombnetError, match="same length"):
        render_haadf([1.0, 2.0], [1.0], [1.0, 1.0], (8, 8))
    with pytest.raises(GombnetError, match="finite"):
        render_haadf([np.nan], [1.0], [1.0], (8, 8))
    with pytest.raises(GombnetError, match="rng"):
        render_haadf([1.0], [1.0], [1.0], (8, 8), dose_counts_per_px=10)
    with pytest.raises(GombnetError, match="pixel_size"):
        render_haadf([1.0], [1.0], [1.0], (8, 8), energy_kev=60, convergence_mrad=30)


def test_render_with_dose_gives_counts():
    rng = np.random.default_rng(0)
    im = render_haadf([10.0, 20.0], [10.0, 20.0], [1.0, 1.0], (32, 32), sigma_px=3.0, dose_counts_per_px=50, rng=rng)
    assert np.all(im == np.round(im)) and im.min() >= 0
    assert im.mean() == pytest.approx(50, rel=0.05)


@pytest.mark.parametrize("dose", [5.0, 50.0, 2000.0])
def test_poisson_noise_statistics(dose):
    rng = np.random.default_rng(1)
    flat = np.ones((256, 256), dtype=np.float32)
    counts = add_detector_noise(flat, rng, dose_counts_per_px=dose)
    assert counts.mean() == pytest.approx(dose, rel=0.02)
    assert counts.var() == pytest.approx(dose, rel=0.03)  # Poisson: variance = mean
    # two intensity levels: variance follows the mean of each level
    two = np.ones((256, 256), dtype=np.float32)
    two[:, 128:] = 3.0
    counts = add_detector_noise(two, rng, dose_counts_per_px=dose)
    for half, level in ((counts[:, :128], 0.5 * dose), (counts[:, 128:], 1.5 * dose)):
        assert half.mean() == pytest.approx(level, rel=0.03)
        assert half.var() == pytest.approx(level, rel=0.05)


def test_detector_extras_add_variance():
    flat = np.ones((128, 128), dtype=np.float32)
    base = add_detector_noise(flat, np.random.default_rng(2), dose_counts_per_px=100)
    read = add_detector_noise(flat, np.random.default_rng(2), dose_counts_per_px=100, read_noise=0.1)
    assert read.var() == pytest.approx(base.var() + 100.0, rel=0.1)  # (0.1 * dose)^2 = 100
    lines = add_detector_noise(flat, np.random.default_rng(2), dose_counts_per_px=100, line_offset=0.2)
    row_means = lines.mean(axis=1)
    assert row_means.std() == pytest.approx(20.0, rel=0.25)  # per-row offsets: 0.2 * dose


def test_normalize_image():
    rng = np.random.default_rng(3)
    im = rng.normal(100, 10, (64, 64))
    out = normalize_image(im)
    assert out.dtype == np.float32
    assert np.percentile(out, 0.5) == pytest.approx(0, abs=1e-5)
    assert np.percentile(out, 99.5) == pytest.approx(1, abs=1e-5)
    assert np.all(normalize_image(np.full((8, 8), 3.0)) == 0)
    with pytest.raises(GombnetError):
        normalize_image(np.array([[np.nan, 1.0]]))
    with pytest.raises(GombnetError):
        normalize_image(np.zeros((0, 4)))


def test_smooth_field():
    field = SmoothField(np.random.default_rng(4), (0, 127, 0, 127), 20.0)
    g = field.grid((128, 128))
    assert g.mean() == pytest.approx(0, abs=1e-5) and g.std() == pytest.approx(1, rel=1e-4)
    neighbours = np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
    assert neighbours > 0.99  # smooth on the pixel scale
    far = np.corrcoef(g[:, :-60].ravel(), g[:, 60:].ravel())[0, 1]
    assert abs(far) < 0.5  # but not constant
    assert np.allclose(field.at(np.array([5.0, 70.0]), np.array([9.0, 100.0])), g[[9, 100], [5, 70]], atol=1e-4)


def test_probe_tail_spreads_intensity():
    kw = dict(PROBE, sigma_px=2.0)
    sharp = render_haadf([64.0], [64.0], [1.0], (128, 128), **kw)
    halo = render_haadf([64.0], [64.0], [1.0], (128, 128), probe_tail_fraction=0.3, probe_tail_sigma_angstrom=1.5, **kw)
    assert halo.sum() == pytest.approx(sharp.sum(), rel=0.01)  # intensity is redistributed, not lost
    assert halo.max() == pytest.approx(0.7 * sharp.max(), rel=0.05)
    ys, xs = np.mgrid[:128, :128]
    ring = np.hypot(xs - 64, ys - 64) > 15  # beyond 1.6 A
    assert halo[ring].sum() > 2 * sharp[ring].sum()  # the Airy rings alone hold ~9 % there
    with pytest.raises(GombnetError):
        render_haadf([1.0], [1.0], [1.0], (8, 8), probe_tail_fraction=1.5, **PROBE)

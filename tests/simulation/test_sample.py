"""simulate_sample: outputs, determinism, and alignment of image, masks and columns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from gombnet.errors import GombnetError
from gombnet.simulation.presets import load_preset
from gombnet.simulation.sample import Sample, atom_weights, simulate_sample



@pytest.mark.parametrize("name", ["graphene", "ws2-wsse"])
def test_outputs(name):
    p = load_preset(name)
    s = simulate_sample(p, np.random.default_rng(0), image_size_px=96)
    assert isinstance(s, Sample)
    assert s.image.shape == (96, 96) and s.image.dtype == np.float32 and np.isfinite(s.image).all()
    assert -0.5 < s.image.min() < 0.1 and 0.9 < s.image.max() < 2.0  # robust percentile normalisation
    assert s.masks.shape == (p.n_channels, 96, 96) and s.masks.dtype == np.uint8
    assert set(np.unique(s.masks)) <= {0, 1}
    assert list(s.params) == list(p.param_names)
    assert all(isinstance(v, float) for v in s.params.values())
    c = s.columns
    assert set(c) == {"x_px", "y_px", "layer", "class"}
    assert c["x_px"].dtype == c["y_px"].dtype == np.float32 and c["layer"].dtype == c["class"].dtype == np.int16
    assert np.all((c["x_px"] >= -0.5) & (c["x_px"] < 95.5) & (c["y_px"] >= -0.5) & (c["y_px"] < 95.5))
    assert set(np.unique(c["layer"])) <= {0, 1} and c["class"].max() < len(p.class_names)
    a = s.atoms
    assert set(a) == {"x", "y", "z", "Z", "layer"}
    assert a["x"].dtype == np.float32 and a["Z"].dtype == a["layer"].dtype == np.int16
    assert len(a["x"]) >= len(c["x_px"]) > 0
    assert p.pixel_size_angstrom[0] <= s.params["pixel_size_angstrom"] <= p.pixel_size_angstrom[1]
    assert p.dose_counts_per_px[0] <= s.params["dose_counts_per_px"] <= p.dose_counts_per_px[1]


def test_default_size_and_override(clean_preset):
    p = clean_preset("graphene", image_size_px=48)
    assert simulate_sample(p, np.random.default_rng(0)).image.shape == (48, 48)
    big = simulate_sample(p, np.random.default_rng(0), image_size_px=200)
    assert big.image.shape == (200, 200) and big.masks.shape == (2, 200, 200)


def assert_same(a: Sample, b: Sample):
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    for k in a.columns:
        assert np.array_equal(a.columns[k], b.columns[k])
    for k in a.atoms:
        assert np.array_equal(a.atoms[k], b.atoms[k])
    assert a.params == b.params


@pytest.mark.parametrize("name", ["graphene", "ws2-wsse"])
def test_determinism(name):
    p = load_preset(name)
    a = simulate_sample(p, np.random.default_rng(42), image_size_px=64)
    b = simulate_sample(p, np.random.default_rng(42), image_size_px=64)
    assert_same(a, b)
    c = simulate_sample(p, np.random.default_rng(43), image_size_px=64)
    assert not np.array_equal(a.image, c.image)
    assert a.params != c.params
    # consecutive draws from one generator differ too
    rng = np.random.default_rng(42)
    first, second = simulate_sample(p, rng, image_size_px=64), simulate_sample(p, rng, image_size_px=64)
    assert_same(first, a)
    assert not np.array_equal(first.image, second.image)


def test_bad_arguments():
    p = load_preset("graphene")
    with pytest.raises(GombnetError, match="Generator"):
        simulate_sample(p, 3)
    with pytest.raises(GombnetError, match="image_size_px"):
        simulate_sample(p, np.random.default_rng(0), image_size_px=4)
    with pytest.raises(GombnetError, match="image_size_px"):
        simulate_sample(p, np.random.default_rng(0), image_size_px=64.5)
    with pytest.raises(GombnetError, match="load_preset"):
        simulate_sample("graphene", np.random.default_rng(0))


def test_masks_hold_every_column_in_its_channel():
    p = load_preset("ws2-wsse")
    for seed in range(3):
        s = simulate_sample(p, np.random.default_rng(seed), image_size_px=96)
        c = s.columns
        ch = c["layer"].astype(int) * len(p.class_names) + c["class"]
        rows = np.clip(np.rint(c["y_px"]).astype(int), 0, 95)
        cols = np.clip(np.rint(c["x_px"]).astype(int), 0, 95)
        assert np.all(s.masks[ch, rows, cols] == 1)
        # and nothing else: every labelled pixel is within the disk radius of a column of its channel
        r_px = p.disk_radius_angstrom / s.params["pixel_size_angstrom"]
        for k in range(p.n_channels):
            yy, xx = np.nonzero(s.masks[k])
            if yy.size == 0:
                continue
            # columns just outside the image also draw their disks; allow for them at the border
            inner = (xx > r_px + 1) & (xx < 94 - r_px) & (yy > r_px + 1) & (yy < 94 - r_px)
            sel = ch == k
            d, _ = cKDTree(np.c_[c["x_px"][sel], c["y_px"][sel]]).query(np.c_[xx[inner], yy[inner]])
            assert d.max() <= r_px + 1e-4


def measured_offsets(p, seeds, size=192):
    """(image centroid - column, mask centroid - column) for isolated atoms."""
    img_err, mask_err = [], []
    for seed in seeds:
        s = simulate_sample(p, np.random.default_rng(seed), image_size_px=size)
        xy = np.c_[s.columns["x_px"], s.columns["y_px"]]
        if len(xy) < 2:
            continue
        dist, _ = cKDTree(xy).query(xy, k=2)
        labels, _ = ndimage.label(s.masks[0])
        ys, xs = np.mgrid[:size, :size]
        for (x, y), d in zip(xy, dist[:, 1]):
            if d < 25 or not (12 < x < size - 13 and 12 < y < size - 13):
                continue
            near = (xs - x) ** 2 + (ys - y) ** 2 <= 100
            w = np.where(near, np.maximum(s.image - 0.3 * s.image[near].max(), 0), 0)  # bright core only
            img_err.append(((w * xs).sum() / w.sum() - x, (w * ys).sum() / w.sum() - y))
            blob = labels == labels[int(round(y)), int(round(x))]
            my, mx = ndimage.center_of_mass(blob)
            mask_err.append((mx - x, my - y))
    return np.asarray(img_err), np.asarray(mask_err)


@pytest.mark.parametrize(
    "distortion",
    [dict(), dict(drift_shear=(0.01, 0.01), drift_stretch=(-0.01, -0.01))],
    ids=["plain", "drift"],
)
def test_image_masks_and_columns_align(distortion, sparse_preset):
    p = sparse_preset(
        vibration_sigma_angstrom=(0.05, 0.05),
        defocus_angstrom=(-20.0, 20.0),
        astigmatism_angstrom=(0.0, 10.0),
        **distortion,
    )
    img_err, mask_err = measured_offsets(p, range(25))
    assert len(img_err) >= 10
    assert np.abs(img_err).max() < 0.1  # image intensity centred on the labelled position
    assert np.abs(img_err.mean(axis=0)).max() < 0.03
    assert np.abs(mask_err.mean(axis=0)).max() < 0.05  # disks centred on it (pixelisation aside)
    assert np.abs(mask_err).max() < 0.3


def test_drift_moves_columns_with_the_atoms(clean_preset):
    p = clean_preset("graphene", pixel_size_angstrom=(0.1, 0.1), drift_shear=(0.02, 0.02))
    s = simulate_sample(p, np.random.default_rng(1), image_size_px=128)
    q = clean_preset("graphene", pixel_size_angstrom=(0.1, 0.1))
    t = simulate_sample(q, np.random.default_rng(1), image_size_px=128)
    # same layer-0 lattice (its random shift is drawn first); column x moved by shear * (y - centre)
    x, y = t.columns["x_px"], t.columns["y_px"]
    sel = (np.abs(y - 63.5) > 30) & (t.columns["layer"] == 0) & (x > 5) & (x < 122)
    moved = cKDTree(np.c_[s.columns["x_px"], s.columns["y_px"]][s.columns["layer"] == 0])
    d, _ = moved.query(np.c_[x + 0.02 * (y - 63.5), y][sel])
    assert sel.sum() > 20 and d.max() < 1e-3


def test_jitter_is_applied_to_image_and_columns(sparse_preset):
    p = sparse_preset(jitter_sigma_angstrom=(0.03, 0.03))
    img_err, _ = measured_offsets(p, range(25))
    assert len(img_err) >= 10
    assert np.abs(img_err[:, 1]).max() < 0.1  # rows are not moved vertically
    assert np.abs(img_err[:, 0]).max() < 0.15  # and the torn atom stays centred on its label


def test_contamination_and_noise_change_image_not_labels(clean_preset):
    p = clean_preset("graphene", dose_counts_per_px=(1e4, 1e4))
    q = clean_preset(
        "graphene",
        dose_counts_per_px=(1e4, 1e4),
        background_amplitude=(1.0, 1.0),
        amorphous_carbon_per_angstrom2=(0.2, 0.2),
        read_noise=(0.05, 0.05),
    )
    a = simulate_sample(p, np.random.default_rng(5), image_size_px=64)
    b = simulate_sample(q, np.random.default_rng(5), image_size_px=64)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.columns["x_px"], b.columns["x_px"])
    assert not np.allclose(a.image, b.image, atol=0.05)


def test_dose_controls_noise(clean_preset):
    """Lower dose, noisier image: compare pixel-to-pixel differences of flat-ish images."""
    def roughness(dose):
        p = clean_preset("graphene", dose_counts_per_px=(dose, dose), pixel_size_angstrom=(0.1, 0.1))
        img = simulate_sample(p, np.random.default_rng(0), image_size_px=64).image
        return np.std(np.diff(img, axis=1))

    assert roughness(20.0) > 2 * roughness(5000.0)


def test_atom_weights_scale_heavy_atoms_only():
    z = np.array([6, 16, 34, 42, 74])
    assert np.allclose(atom_weights(z, z_exponent=1.7), z ** 1.7)
    w = atom_weights(z, z_exponent=1.5, heavy_atom_scale=0.5, heavy_atom_min_z=37)
    assert np.allclose(w, z ** 1.5 * np.array([1, 1, 1, 0.5, 0.5]))


def test_heavy_atom_scale_sets_metal_to_chalcogen_contrast(clean_preset):
    """The W : S2 column contrast follows heavy_atom_scale; the draw is recorded in params."""
    def w_to_s2(scale):
        p = clean_preset("ws2-wsse", heavy_atom_scale=(scale, scale), z_exponent=(1.7, 1.7),
                         scenario_weights=(1.0, 0.0, 0.0, 0.0), pixel_size_angstrom=(0.1, 0.1),
                         source_sigma_angstrom=(0.1, 0.1), atom_sigma_angstrom=(0.1, 0.1))
        s = simulate_sample(p, np.random.default_rng(3), image_size_px=128)
        assert s.params["heavy_atom_scale"] == scale
        c = s.columns
        r, col = np.rint(c["y_px"]).astype(int), np.rint(c["x_px"]).astype(int)
        at = s.image[r, col]
        return np.median(at[c["class"] == 0]) / np.median(at[c["class"] == 1])  # W, S2

    ratio = w_to_s2(0.5) / w_to_s2(0.25)  # same seed and draws: only the W weight differs
    assert 1.7 < ratio < 2.1

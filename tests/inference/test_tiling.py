"""Tests for gombnet.inference.tiling: resampling, normalisation, tiled inference, layer
alignment across tiles, test-time augmentation and ensembles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from gombnet.errors import GombnetError
from gombnet.inference.tiling import (
    D4_TRANSFORMS,
    align_branches,
    apply_transform,
    blend_window,
    ensemble_predict,
    invert_transform,
    normalize_intensity,
    permute_branches,
    predict_tiled,
    resample,
    tile_starts,
    to_original_px,
    to_resampled_px,
    tta_predict,
)


# ------------------------------------------------------------------ helpers


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def pointwise_fn(batch):
    """Deterministic pointwise 'model': 2 layers x 2 classes, distinct per channel."""
    s = _sigmoid(4.0 * batch - 2.0)
    return np.concatenate([s, 1.0 - s, s * s, np.sqrt(s)], axis=1).astype(np.float32)


def _square_lattice_disks(shape, spacing_px, angle_deg, radius_px, origin=(0.3, 0.7)):
    """Binary map of disks on a rotated square lattice (exact nearest-point distance)."""
    yy, xx = np.indices(shape, dtype=np.float64)
    t = np.deg2rad(angle_deg)
    x, y = xx - origin[0], yy - origin[1]
    u = (np.cos(t) * x + np.sin(t) * y) / spacing_px
    v = (-np.sin(t) * x + np.cos(t) * y) / spacing_px
    du, dv = u - np.round(u), v - np.round(v)
    return (np.hypot(du, dv) * spacing_px <= radius_px).astype(np.float32)


def _layer_truth(shape, n_layers):
    params = [(10.0, 0.0), (13.0, 21.0), (16.0, 47.0)][:n_layers]
    return np.stack([_square_lattice_disks(shape, a, ang, 2.5) for a, ang in params])


def _encode(truth):
    """Image whose pixel value encodes which layers have an atom there (bit k = layer k)."""
    code = sum(truth[k] * 2**k for k in range(len(truth)))
    return (code / (2 ** len(truth) - 1)).astype(np.float32)


def _swapping_decoder(n_layers, classes_per_layer, rng, swaps):
    """Fake model: decodes the layers from the tile (exact truth crop) and permutes the
    branches of every tile at random."""

    def fn(batch):
        code = np.rint(batch[:, 0] * (2**n_layers - 1)).astype(np.int64)
        layers = [((code >> k) & 1).astype(np.float32) for k in range(n_layers)]
        out = np.empty((len(batch), n_layers * classes_per_layer) + batch.shape[2:], np.float32)
        for b in range(len(batch)):
            perm = rng.permutation(n_layers)
            swaps.append(tuple(perm))
            for i, src in enumerate(perm):
                for c in range(classes_per_layer):
                    # class c of a layer: the layer map scaled, so classes differ
                    out[b, i * classes_per_layer + c] = layers[src][b] * (1.0 - 0.3 * c)
        return out

    return fn


def _iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / max((a | b).sum(), 1)


def _best_global_order(out, truth, classes_per_layer):
    """Return (best mean IoU, its perm) over global layer orders, class 0 of each layer."""
    n = len(truth)
    best = (-1.0, None)
    for perm in itertools.permutations(range(n)):
        ious = [_iou(out[perm[i] * classes_per_layer], truth[i]) for i in range(n)]
        best = max(best, (float(np.min(ious)), perm))
    return best


# ------------------------------------------------------------------ resample / normalise


@pytest.mark.parametrize("zoom", [0.7, 1.0, 1.37])
def test_resample_maps_blob_centre_back(zoom):
    h, w = 61, 83
    yy, xx = np.indices((h, w), dtype=np.float64)
    x0, y0 = 37.3, 22.8
    img = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 3.0**2))
    out, z = resample(img, from_pixel_size_angstrom=0.1 * zoom, to_pixel_size_angstrom=0.1)
    assert out.dtype == np.float32
    assert z == pytest.approx(zoom)
    assert out.shape == (round(h * zoom), round(w * zoom))
    ry, rx = np.indices(out.shape)
    cx, cy = (out * rx).sum() / out.sum(), (out * ry).sum() / out.sum()
    x, y = to_original_px(cx, cy, z)
    assert abs(x - x0) < 0.05 and abs(y - y0) < 0.05
    # and the forward map predicts where the blob went
    fx, fy = to_resampled_px(x0, y0, z)
    assert abs(fx - cx) < 0.05 * zoom and abs(fy - cy) < 0.05 * zoom


def test_resample_matches_scipy_zoom_grid_mode():
    # for a zoom that gives an integer shape both conventions must agree exactly
    rng = np.random.default_rng(0)
    img = rng.random((20, 30))
    out, z = resample(img, from_pixel_size_angstrom=0.2, to_pixel_size_angstrom=0.1)
    ref = ndimage.zoom(img, 2.0, order=1, grid_mode=True, mode="grid-mirror")
    assert out.shape == ref.shape == (40, 60)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_resample_rejects_bad_input():
    with pytest.raises(GombnetError):
        resample(np.ones((4, 4)), from_pixel_size_angstrom=0, to_pixel_size_angstrom=0.1)
    with pytest.raises(GombnetError):
        resample(np.full((4, 4), np.nan), from_pixel_size_angstrom=0.1, to_pixel_size_angstrom=0.1)
    with pytest.raises(GombnetError):
        resample(np.ones((4, 4, 3)), from_pixel_size_angstrom=0.1, to_pixel_size_angstrom=0.1)


def test_normalize_intensity_is_robust_to_hot_pixels():
    rng = np.random.default_rng(1)
    img = rng.normal(100.0, 10.0, (64, 64))
    img[5, 5] = 1e6  # hot pixel would ruin min-max scaling
    out = normalize_intensity(img)
    assert out.dtype == np.float32
    lo, hi = np.percentile(out, [0.5, 99.5])
    assert lo == pytest.approx(0.0, abs=1e-5) and hi == pytest.approx(1.0, abs=1e-5)
    assert 0.4 < np.median(out) < 0.6
    clipped = normalize_intensity(img, clip=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0


@pytest.mark.parametrize("bad", [np.full((8, 8), 3.0), np.array([[1.0, np.nan], [0.0, 2.0]]),
                                 np.array([[1.0, np.inf], [0.0, 2.0]])])
def test_normalize_intensity_rejects_constant_and_nonfinite(bad):
    with pytest.raises(GombnetError):
        normalize_intensity(bad)


# ------------------------------------------------------------------ tiling geometry


def test_tile_starts_cover_and_flush():
    for length in (128, 129, 300, 517, 1000):
        s = tile_starts(length, 128, 32)
        assert s[0] == 0 and s[-1] == length - 128
        assert np.all(np.diff(s) <= 96) and np.all(np.diff(s) > 0)


def test_blend_window_positive_and_flat_at_border():
    w = blend_window(64, 16)
    assert w.min() > 0 and w[16:48].min() == 1.0 and w[0] < 0.01
    np.testing.assert_allclose(w, w[::-1])
    wb = blend_window(64, 16, at_start=True)
    assert wb[0] == 1.0 and wb[-1] < 0.01


# ------------------------------------------------------------------ predict_tiled


@pytest.mark.parametrize("shape", [(40, 50), (256, 256), (300, 517), (1, 1), (3, 200)])
@pytest.mark.parametrize("align", [True, False])
def test_pointwise_model_gives_pointwise_result_everywhere(shape, align):
    rng = np.random.default_rng(2)
    img = rng.random(shape).astype(np.float32)
    out = predict_tiled(img, pointwise_fn, n_layers=2, classes_per_layer=2, tile_px=128,
                        overlap_px=32, batch_size=3, align_layers=align)
    ref = pointwise_fn(img[None, None])[0]
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_blending_is_smooth_for_a_tile_dependent_model():
    # a model whose output depends on the position in the tile: blending must not leave
    # seams (jumps) at tile borders, only gentle transitions
    def positional(batch):
        t = batch.shape[-1]
        ramp = np.linspace(0.2, 0.8, t, dtype=np.float32)
        return np.broadcast_to(ramp, batch.shape).copy()

    out = predict_tiled(np.zeros((100, 300), np.float32), positional, n_layers=1,
                        classes_per_layer=1, tile_px=64, overlap_px=16)
    step = np.abs(np.diff(out[0], axis=1)).max()
    assert step < 0.1  # a seam would jump by ~0.6


def test_predict_tiled_calls_model_in_batches():
    sizes = []

    def fn(batch):
        sizes.append(batch.shape)
        return pointwise_fn(batch)

    predict_tiled(np.zeros((200, 200), np.float32), fn, n_layers=2, classes_per_layer=2,
                  tile_px=64, overlap_px=16, batch_size=4)
    n_tiles = len(tile_starts(200, 64, 16)) ** 2
    assert sum(s[0] for s in sizes) == n_tiles
    assert max(s[0] for s in sizes) == 4 and all(s[1:] == (1, 64, 64) for s in sizes)


def test_predict_tiled_user_errors():
    img = np.zeros((64, 64), np.float32)
    kw = dict(n_layers=2, classes_per_layer=2, tile_px=32, overlap_px=8)
    with pytest.raises(GombnetError, match="shape"):
        predict_tiled(img, lambda b: np.zeros((len(b), 3, 32, 32)), **kw)
    with pytest.raises(GombnetError, match="sigmoid"):
        predict_tiled(img, lambda b: np.full((len(b), 4, 32, 32), 5.0), **kw)
    with pytest.raises(GombnetError, match="NaN"):
        predict_tiled(img, lambda b: np.full((len(b), 4, 32, 32), np.nan), **kw)
    with pytest.raises(GombnetError, match="overlap_px"):
        predict_tiled(img, pointwise_fn, n_layers=2, classes_per_layer=2, tile_px=32, overlap_px=20)
    with pytest.raises(GombnetError, match="overlap_px > 0"):
        predict_tiled(img, pointwise_fn, n_layers=2, classes_per_layer=2, tile_px=32, overlap_px=0)
    with pytest.raises(GombnetError):
        predict_tiled(np.full((8, 8), np.nan), pointwise_fn, **kw)
    with pytest.raises(GombnetError):
        predict_tiled(np.zeros((2, 8, 8)), pointwise_fn, **kw)


def test_progress_bar_runs():
    out = predict_tiled(np.zeros((70, 70), np.float32), pointwise_fn, n_layers=2,
                        classes_per_layer=2, tile_px=32, overlap_px=8, progress=True)
    assert out.shape == (4, 70, 70)


# ------------------------------------------------------------------ branch alignment


def test_permute_and_align_branches_roundtrip():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 20, 20)).astype(np.float32)  # 3 layers x 2 classes
    for perm in itertools.permutations(range(3)):
        shuffled = permute_branches(maps, perm, n_layers=3, classes_per_layer=2)
        np.testing.assert_array_equal(shuffled[2:4], maps[2 * perm[1]:2 * perm[1] + 2])
        aligned, found = align_branches(maps, shuffled, n_layers=3, classes_per_layer=2)
        np.testing.assert_array_equal(aligned, maps)
        # found[i] = branch of `shuffled` that is layer i, i.e. the inverse of perm
        assert tuple(perm[j] for j in found) == (0, 1, 2)


def test_align_branches_without_signal_keeps_identity():
    rng = np.random.default_rng(4)
    cand = rng.random((2, 16, 16)).astype(np.float32)
    _, perm = align_branches(np.zeros_like(cand), cand, n_layers=2, classes_per_layer=1)
    assert perm == (0, 1)
    ref = cand[::-1].copy()  # swapped, but all pixels masked out by the weight
    _, perm = align_branches(ref, cand, n_layers=2, classes_per_layer=1, weight=np.zeros((16, 16)))
    assert perm == (0, 1)
    _, perm = align_branches(ref, cand, n_layers=2, classes_per_layer=1)
    assert perm == (1, 0)


def test_align_branches_user_errors():
    a = np.zeros((4, 8, 8))
    with pytest.raises(GombnetError):
        align_branches(a, np.zeros((4, 8, 9)), n_layers=2, classes_per_layer=2)
    with pytest.raises(GombnetError):
        align_branches(a, a, n_layers=3, classes_per_layer=2)
    with pytest.raises(GombnetError):
        align_branches(a, a, n_layers=2, classes_per_layer=2, weight=-np.ones((8, 8)))
    with pytest.raises(GombnetError):
        permute_branches(a, (0, 0), n_layers=2, classes_per_layer=2)


@pytest.mark.parametrize("n_layers, classes_per_layer", [(2, 1), (3, 2)])
def test_random_branch_swaps_per_tile_are_undone(n_layers, classes_per_layer):
    shape = (1024, 1024)
    truth = _layer_truth(shape, n_layers)
    image = _encode(truth)
    swaps = []
    fn = _swapping_decoder(n_layers, classes_per_layer, np.random.default_rng(5), swaps)
    out = predict_tiled(image, fn, n_layers=n_layers, classes_per_layer=classes_per_layer,
                        tile_px=256, overlap_px=64, batch_size=4)
    identity = tuple(range(n_layers))
    assert sum(s != identity for s in swaps) >= len(swaps) // 3  # the fake really swapped
    iou, perm = _best_global_order(out, truth, classes_per_layer)
    assert iou > 0.99
    # the second class of every layer follows its layer
    for i in range(n_layers):
        np.testing.assert_allclose(out[perm[i] * classes_per_layer + classes_per_layer - 1],
                                   truth[i] * (1.0 - 0.3 * (classes_per_layer - 1)), atol=1e-5)

    # control: without alignment the same swaps ruin the layer maps
    swaps.clear()
    fn = _swapping_decoder(n_layers, classes_per_layer, np.random.default_rng(5), swaps)
    raw = predict_tiled(image, fn, n_layers=n_layers, classes_per_layer=classes_per_layer,
                        tile_px=256, overlap_px=64, batch_size=4, align_layers=False)
    assert _best_global_order(raw, truth, classes_per_layer)[0] < 0.9


def test_tile_with_empty_overlap_is_deferred_not_guessed():
    # vacuum covers the overlap between the first and second tile rows on the left, so
    # the first tile of the second row has atoms but nothing to align them to
    truth = _layer_truth((1024, 1024), 2)
    truth[:, 150:330, :300] = 0.0
    truth[:, :, 900:] = 0.0  # and an empty right margin: tiles without atoms
    image = _encode(truth)
    n_tiles = len(tile_starts(1024, 256, 64)) ** 2
    for seed in range(4):
        swaps = []
        fn = _swapping_decoder(2, 1, np.random.default_rng(seed), swaps)
        out = predict_tiled(image, fn, n_layers=2, classes_per_layer=1, tile_px=256, overlap_px=64)
        assert len(swaps) > n_tiles  # some tile was predicted again
        assert _best_global_order(out, truth, 1)[0] > 0.99


def test_disconnected_islands_are_each_consistent():
    # two islands of atoms separated by vacuum wider than a tile: each island is
    # consistent in itself; their relative order is a documented limitation
    truth = _layer_truth((600, 1000), 2)
    island_a = np.zeros((600, 1000), bool)
    island_a[:, :300] = True
    island_b = np.zeros((600, 1000), bool)
    island_b[:, 700:] = True
    truth[:, ~(island_a | island_b)] = 0.0
    image = _encode(truth)
    fn = _swapping_decoder(2, 1, np.random.default_rng(11), [])
    out = predict_tiled(image, fn, n_layers=2, classes_per_layer=1, tile_px=128, overlap_px=32)
    for island in (island_a, island_b):
        iou, _ = _best_global_order(out[:, island].reshape(2, 600, -1),
                                    truth[:, island].reshape(2, 600, -1), 1)
        assert iou > 0.99
    assert out[:, ~(island_a | island_b)].max() == 0.0


# ------------------------------------------------------------------ TTA and ensembles


def test_transforms_invert():
    rng = np.random.default_rng(6)
    a = rng.random((2, 5, 7))
    seen = set()
    for name in D4_TRANSFORMS:
        t = apply_transform(a, name)
        np.testing.assert_array_equal(invert_transform(t, name), a)
        seen.add(t.tobytes())
    assert len(seen) == 8  # eight distinct symmetries
    with pytest.raises(GombnetError):
        apply_transform(a, "rot45")


def _blur_model(rng):
    """D4-equivariant fake model (isotropic 3x3 blur + sigmoid) that swaps its two
    branches at random on every call."""

    def fn(batch):
        s = _sigmoid(6.0 * ndimage.uniform_filter(batch, size=(1, 1, 3, 3), mode="reflect") - 3.0)
        out = np.concatenate([s, 1.0 - s], axis=1)
        return out[:, ::-1].copy() if rng.random() < 0.5 else out

    return fn


def test_tta_with_equivariant_model_has_near_zero_uncertainty():
    rng = np.random.default_rng(7)
    img = ndimage.gaussian_filter(rng.random((90, 130)), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    mean, std = tta_predict(img, _blur_model(np.random.default_rng(8)), n_layers=2,
                            classes_per_layer=1, transforms="d4", tile_px=64, overlap_px=16)
    assert mean.shape == std.shape == (2, 90, 130)
    ref = _blur_model(np.random.default_rng(0))  # a plain pass, to find the layer order
    single = predict_tiled(img, ref, n_layers=2, classes_per_layer=1, tile_px=64, overlap_px=16)
    aligned, _ = align_branches(single, mean, n_layers=2, classes_per_layer=1)
    np.testing.assert_allclose(aligned, single, atol=2e-3)
    assert std.max() < 2e-3


def test_tta_uncertainty_flags_a_non_equivariant_model():
    def shifted(batch):  # looks one pixel to the right: not flip-equivariant
        return _sigmoid(8.0 * np.roll(batch, -1, axis=-1) - 4.0)

    rng = np.random.default_rng(9)
    img = rng.random((64, 64)).astype(np.float32)
    _, std = tta_predict(img, shifted, n_layers=1, classes_per_layer=1,
                         transforms=("identity", "flip_h"), tile_px=32, overlap_px=8)
    assert std.max() > 0.1


def test_ensemble_of_branch_swapped_models_agrees():
    rng = np.random.default_rng(10)
    img = rng.random((80, 70)).astype(np.float32)

    def swapped(batch):
        return pointwise_fn(batch)[:, [2, 3, 0, 1]]

    mean, std = ensemble_predict(img, [pointwise_fn, swapped, pointwise_fn], n_layers=2,
                                 classes_per_layer=2, tile_px=32, overlap_px=8)
    np.testing.assert_allclose(mean, pointwise_fn(img[None, None])[0], atol=1e-5)
    assert std.max() < 1e-5
    with pytest.raises(GombnetError):
        ensemble_predict(img, [], n_layers=2, classes_per_layer=2)


def test_passes_are_aligned_block_by_block():
    # a second model that agrees with the first on the left half of the field and has the
    # layers the other way round on the right half, as two passes over a large field can
    rng = np.random.default_rng(11)
    img = rng.random((128, 128)).astype(np.float32)

    def half_swapped(batch):
        out = pointwise_fn(batch)
        out[..., 64:] = out[:, [2, 3, 0, 1], :, 64:]
        return out

    kwargs = dict(n_layers=2, classes_per_layer=2, tile_px=128, overlap_px=0)
    mean, std = ensemble_predict(img, [pointwise_fn, half_swapped], align_block_px=64, **kwargs)
    np.testing.assert_allclose(mean, pointwise_fn(img[None, None])[0], atol=1e-6)
    assert std.max() < 1e-6
    # one order for the whole pass averages one half's layers into each other
    _, std = ensemble_predict(img, [pointwise_fn, half_swapped], align_block_px=128, **kwargs)
    assert min(std[:, :, 64:].max(), std[:, :, :64].max()) < 1e-6 < 0.1 < std.max()

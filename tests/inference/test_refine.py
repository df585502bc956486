import numpy as np
import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.inference.refine import atom_crops, layer_maps, refine_positions
from gombnet.nn.refiner import PositionRefiner


def ramp(h=20, w=30):
    """Image whose value names its pixel: 100 * row + column."""
    return (100.0 * np.arange(h)[:, None] + np.arange(w)[None, :]).astype(np.float32)


def test_layer_maps_sum_classes_and_clip():
    p = np.zeros((4, 5, 5), np.float32)  # 2 layers x 2 classes
    p[0, 1, 1], p[1, 1, 1] = 0.7, 0.6
    p[3, 2, 2] = 0.4
    maps = layer_maps(p, 2, 2)
    assert maps.shape == (2, 5, 5)
    assert maps[0, 1, 1] == 1.0 and maps[1, 2, 2] == pytest.approx(0.4) and maps[1, 1, 1] == 0.0
    with pytest.raises(GombnetError, match="3 layers"):
        layer_maps(p, 3, 1)


def test_crops_are_centred_on_the_nearest_pixel_with_own_and_other_layer():
    image = ramp()
    maps = np.stack([ramp() + 1000, ramp() + 2000, ramp() + 3000])  # 3 layers, told apart by their offset
    x, y, layer = np.array([12.3, 7.6]), np.array([5.4, 9.5]), np.array([1, 0])
    crops, offset = atom_crops(image, maps, layer, x, y, crop_radius_px=3)
    assert crops.shape == (2, 3, 7, 7) and crops.dtype == np.float32
    # centre pixel (row 5, col 12) and (row 10, col 8); np.rint rounds 9.5 to the even 10
    assert crops[0, 0, 3, 3] == 512 and crops[1, 0, 3, 3] == 1008
    assert crops[0, 0, 3, 4] == 513 and crops[0, 0, 4, 3] == 612  # x along columns, y along rows
    np.testing.assert_allclose(offset, [[0.3, 0.4], [-0.4, -0.5]], atol=1e-6)
    assert crops[0, 1, 3, 3] == 2512  # atom of layer 1: its own map is layer 1's
    assert crops[1, 1, 3, 3] == 1000 + 1008
    # the other layers' maps summed, clipped at 1 (maps are probabilities)
    assert crops[0, 2, 3, 3] == 1.0


def test_crops_at_the_border_repeat_the_edge():
    image = ramp()
    maps = np.zeros((2, 20, 30), np.float32)
    crops, _ = atom_crops(image, maps, [0], [0.2], [19.0], crop_radius_px=2)
    assert crops[0, 0, 2, 2] == 1900
    np.testing.assert_array_equal(crops[0, 0, :, 0], crops[0, 0, :, 2])  # columns left of 0 are column 0
    np.testing.assert_array_equal(crops[0, 0, 3], crops[0, 0, 2])  # rows below 19 are row 19


def found_atoms():
    return {"channel": np.array([0, 1, 1]), "x_px": np.array([10.2, 20.0, 5.7]),
            "y_px": np.array([8.0, 12.5, 15.1]), "score": np.array([0.9, 0.8, 0.7], np.float32)}


def test_untrained_refiner_moves_nothing_and_a_constant_one_moves_everything():
    image = np.random.default_rng(0).random((24, 32)).astype(np.float32)
    probs = np.random.default_rng(1).random((2, 24, 32)).astype(np.float32)
    refiner = PositionRefiner(width=4, crop_radius_px=3)
    found = found_atoms()
    out = refine_positions(image, probs, found, refiner, n_layers=2, classes_per_layer=1, pixel_size_angstrom=0.1)
    np.testing.assert_array_equal(out["x_px"], found["x_px"])
    np.testing.assert_array_equal(out["y_px"], found["y_px"])
    with torch.no_grad():
        refiner.head[-1].bias.copy_(torch.tensor([0.25, -0.5]))
    out = refine_positions(image, probs, found, refiner, n_layers=2, classes_per_layer=1, pixel_size_angstrom=0.1)
    np.testing.assert_allclose(out["x_px"], found["x_px"] + 0.25)
    np.testing.assert_allclose(out["y_px"], found["y_px"] - 0.5)
    np.testing.assert_array_equal(out["channel"], found["channel"])
    np.testing.assert_array_equal(out["score"], found["score"])
    empty = {k: v[:0] for k, v in found.items()}
    assert len(refine_positions(image, probs, empty, refiner, n_layers=2, classes_per_layer=1,
                                pixel_size_angstrom=0.1)["x_px"]) == 0

"""Tests for gombnet.inference.atoms.find_atoms on synthetic probability maps."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from gombnet.errors import GombnetError
from gombnet.inference.atoms import ATOM_KEYS, find_atoms

SHAPE = (96, 96)
# non-integer positions (x = column, y = row), well apart
POSITIONS = np.array([(20.3, 15.7), (50.61, 40.12), (70.05, 75.49), (30.77, 70.33), (80.4, 20.9)])


def gaussian_blobs(positions, sigma_px, shape=SHAPE):
    yy, xx = np.indices(shape, dtype=np.float64)
    p = np.zeros(shape)
    for x, y in positions:
        p = np.maximum(p, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma_px**2)))
    return p.astype(np.float32)


def soft_disks(positions, radius_px, edge_px=0.5, shape=SHAPE):
    """Disks with a logistic edge, like a network's output for disk labels."""
    yy, xx = np.indices(shape, dtype=np.float64)
    p = np.zeros(shape)
    for x, y in positions:
        z = np.clip((radius_px - np.hypot(xx - x, yy - y)) / edge_px, -50, 50)
        p = np.maximum(p, 1.0 / (1.0 + np.exp(-z)))
    return p.astype(np.float32)


def _match(found_xy, true_xy):
    """Distance from every true position to the nearest found one."""
    d = np.hypot(found_xy[:, None, 0] - true_xy[None, :, 0], found_xy[:, None, 1] - true_xy[None, :, 1])
    return d.min(axis=0)


def _xy(atoms):
    return np.c_[atoms["x_px"], atoms["y_px"]]


@pytest.mark.parametrize("maker, size", [(gaussian_blobs, 2.0), (gaussian_blobs, 3.0),
                                         (soft_disks, 3.0), (soft_disks, 5.0)])
def test_subpixel_positions_recovered(maker, size):
    atoms = find_atoms(maker(POSITIONS, size))
    assert len(atoms["x_px"]) == len(POSITIONS)
    assert _match(_xy(atoms), POSITIONS).max() < 0.05
    assert np.all(atoms["channel"] == 0)
    assert np.all(atoms["score"] > 0.9) and np.all(atoms["score"] <= 1.0)
    assert np.all(atoms["area_px"] > 3)


def test_position_convention_x_is_column():
    p = np.zeros((20, 30), np.float32)
    p[4:7, 20:23] = 1.0  # centre row 5, column 21
    atoms = find_atoms(p)
    assert atoms["x_px"][0] == pytest.approx(21.0) and atoms["y_px"][0] == pytest.approx(5.0)


@pytest.mark.parametrize("edge_px", [0.5, 0.01])  # smooth and saturated (flat) disks
@pytest.mark.parametrize("separation_px", [6.5, 7.5])
def test_touching_disks_are_split(edge_px, separation_px):
    pair = [(30.0, 30.0), (30.0 + separation_px, 30.5)]
    singles = [(60.0, 60.0), (10.0, 80.0), (80.0, 10.0), (75.0, 45.0)]
    p = soft_disks(pair + singles, 4.0, edge_px)
    _, n_blobs = ndimage.label(p > 0.5)
    assert n_blobs == len(singles) + 1  # the pair really is one connected blob
    atoms = find_atoms(p)
    assert len(atoms["x_px"]) == len(pair) + len(singles)
    assert _match(_xy(atoms), np.array(pair + singles)).max() < 0.3
    # without splitting the pair stays one atom
    assert len(find_atoms(p, split_touching=False)["x_px"]) == len(singles) + 1


def test_single_large_atoms_are_not_split():
    # all atoms equally large: nothing is split even with flat-topped blobs
    p = soft_disks(POSITIONS, 6.0, 0.01)
    assert len(find_atoms(p, min_distance_px=2)["x_px"]) == len(POSITIONS)


def test_atom_area_hint_splits_a_lone_pair():
    p = soft_disks([(40.0, 40.0), (47.0, 40.0)], 4.0)
    # the only blob is the median blob: it cannot look too large on its own
    assert len(find_atoms(p)["x_px"]) == 1
    assert len(find_atoms(p, atom_area_px=np.pi * 16)["x_px"]) == 2


def test_empty_map_gives_typed_empty_arrays():
    for probs in (np.zeros((2, 32, 32), np.float32), np.full((32, 32), 0.3)):
        for method in ("threshold", "otsu"):
            atoms = find_atoms(probs, method=method)
            assert set(atoms) == set(ATOM_KEYS)
            for key, dtype in ATOM_KEYS.items():
                assert atoms[key].shape == (0,) and atoms[key].dtype == dtype


def test_threshold_and_otsu_per_channel():
    rng = np.random.default_rng(0)
    ch0 = POSITIONS
    ch1 = np.array([(15.2, 50.4), (60.6, 15.3), (85.1, 85.9)])
    probs = np.stack([gaussian_blobs(ch0, 2.5), 0.8 * gaussian_blobs(ch1, 2.5)])
    probs += rng.uniform(0.0, 0.05, probs.shape).astype(np.float32)  # background noise
    for method in ("threshold", "otsu"):
        atoms = find_atoms(probs, method=method)
        for c, truth in enumerate((ch0, ch1)):
            sel = atoms["channel"] == c
            assert sel.sum() == len(truth), method
            assert _match(_xy(atoms)[sel], truth).max() < 0.1, method
    # a high fixed threshold loses the dimmer channel; Otsu adapts to it
    high = find_atoms(probs, threshold=0.85)
    assert (high["channel"] == 1).sum() == 0
    assert (find_atoms(probs, method="otsu", threshold=0.85)["channel"] == 1).sum() == len(ch1)


def test_min_area_drops_specks():
    p = gaussian_blobs(POSITIONS, 2.5)
    p[5, 90] = 0.9  # single hot pixel
    assert len(find_atoms(p, min_area_px=3)["x_px"]) == len(POSITIONS)
    assert len(find_atoms(p, min_area_px=1)["x_px"]) == len(POSITIONS) + 1


@pytest.mark.parametrize("bad", [np.full((8, 8), np.nan), np.zeros((2, 2, 8, 8)), np.zeros(8),
                                 np.zeros((0, 8, 8))])
def test_bad_input(bad):
    with pytest.raises(GombnetError):
        find_atoms(bad)


def test_bad_parameters():
    p = np.zeros((8, 8))
    with pytest.raises(GombnetError):
        find_atoms(p, method="kmeans")
    with pytest.raises(GombnetError):
        find_atoms(p, threshold=1.5)
    with pytest.raises(GombnetError):
        find_atoms(p, min_distance_px=0)


def test_many_atoms():
    # 2 x 512 x 512 with ~2450 atoms, each found once (its speed: benchmarks/bench_predict.py)
    rng = np.random.default_rng(1)
    probs = np.zeros((2, 512, 512), np.float32)
    truth = []
    for c in range(2):
        g = np.arange(7.0, 505.0, 14.5)
        xx, yy = np.meshgrid(g, g)
        xx, yy = xx + rng.uniform(-2, 2, xx.shape), yy + rng.uniform(-2, 2, yy.shape)
        delta = np.zeros((512, 512), np.float32)
        delta[np.rint(yy).astype(int), np.rint(xx).astype(int)] = 1.0
        blob = ndimage.gaussian_filter(delta, 2.0)
        probs[c] = blob / blob.max()
        truth.append(xx.size)
    atoms = find_atoms(probs)
    assert [(atoms["channel"] == c).sum() for c in range(2)] == truth

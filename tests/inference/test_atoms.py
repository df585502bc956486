"""Tests for gombnet.inference.atoms.find_atoms on synthetic probability maps."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from gombnet.errors import GombnetError
from gombnet.inference.atoms import ATOM_KEYS, find_atoms, site_grouping

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


def test_touching_disks_are_split_anywhere_in_a_large_map():
    # pairs in blocks of their own, one straddling a block border, one at the map's edge,
    # two in one block, amid a lattice of single atoms
    from gombnet.inference.atoms import _SPLIT_BLOCK_PX as block

    shape = (3 * block + 40, 2 * block + 30)
    singles = [(x, y) for x in range(12, shape[1] - 12, 24) for y in range(12, shape[0] - 12, 24)]
    starts = [(40.0, 40.0), (block - 3.0, 2 * block + 5.0), (2.0, 3 * block), (block + 30.0, 60.0),
              (block + 70.0, 100.0)]
    pairs = [(x, y) for x0, y0 in starts for x, y in ((x0 + 0.5, y0 + 0.5), (x0 + 7.5, y0 + 1.0))]
    kept = [q for q in singles if min(np.hypot(q[0] - x, q[1] - y) for x, y in pairs) > 16]
    p = soft_disks(pairs + kept, 4.0, 0.01, shape)
    _, n_blobs = ndimage.label(p > 0.5)
    assert n_blobs == len(kept) + len(starts)
    atoms = find_atoms(p)
    assert len(atoms["x_px"]) == len(pairs) + len(kept)
    assert _match(_xy(atoms), np.array(pairs + kept)).max() < 0.3


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


# ------------------------------------------------ classes that share a site (S2 / SSe)

def _split_site_maps():
    """Three channels W, S2, SSe: one W atom; chalcogen columns whose probability is split
    between S2 and SSe (0.45 / 0.45: below 0.5 in both), mostly S2 (0.7 / 0.2) and mostly
    SSe (0.3 / 0.6)."""
    w = 0.9 * gaussian_blobs([(10.0, 10.0)], 2.5)
    s2 = (0.45 * gaussian_blobs([(30.0, 10.0)], 2.5) + 0.7 * gaussian_blobs([(10.0, 40.0)], 2.5)
          + 0.3 * gaussian_blobs([(40.0, 40.0)], 2.5))
    sse = (0.45 * gaussian_blobs([(30.0, 10.0)], 2.5) + 0.2 * gaussian_blobs([(10.0, 40.0)], 2.5)
           + 0.6 * gaussian_blobs([(40.0, 40.0)], 2.5))
    return np.stack([w, s2, sse])


def test_site_group_finds_a_split_column_once():
    p = _split_site_maps()
    alone = find_atoms(p)
    # each channel on its own: the split column is missed, the 0.3 / 0.6 one is reported as SSe only
    assert not np.any(np.hypot(alone["x_px"] - 30, alone["y_px"] - 10) < 2)
    grouped = find_atoms(p, site_groups=[[1, 2]])
    xy = np.c_[grouped["x_px"], grouped["y_px"]]
    assert len(xy) == 4
    assert list(grouped["channel"]) == sorted(grouped["channel"])  # channel order kept
    got = {(round(x), round(y)): int(c) for (x, y), c in zip(xy, grouped["channel"])}
    assert got[(10, 10)] == 0 and got[(10, 40)] == 1 and got[(40, 40)] == 2
    assert got[(30, 10)] in (1, 2)  # a tie: either class, but one atom
    np.testing.assert_allclose(xy[grouped["channel"] == 0], [[10.0, 10.0]], atol=0.05)


def test_class_weights_choose_the_species():
    p = _split_site_maps()
    plain = find_atoms(p, site_groups=[[1, 2]])
    # weight 4 for SSe: a column is SSe when its SSe mass exceeds a fifth of the pair's
    heavy = find_atoms(p, site_groups=[[1, 2]], class_weights=[1.0, 1.0, 4.0])
    at = lambda r, x, y: int(r["channel"][np.argmin(np.hypot(r["x_px"] - x, r["y_px"] - y))])  # noqa: E731
    assert at(plain, 10, 40) == 1 and at(heavy, 10, 40) == 2  # 0.2 of 0.9 -> SSe at weight 4
    assert at(heavy, 30, 10) == 2 and at(heavy, 40, 40) == 2
    np.testing.assert_array_equal(np.sort(plain["x_px"]), np.sort(heavy["x_px"]))  # same atoms
    light = find_atoms(p, site_groups=[[1, 2]], class_weights=[1.0, 3.0, 1.0])
    assert at(light, 40, 40) == 1 and at(light, 30, 10) == 1


def test_site_group_of_separate_atoms_matches_per_channel():
    # atoms of the two classes never overlap: grouping changes nothing
    a = soft_disks([(12.3, 20.6), (40.2, 9.8)], 4.0)
    b = soft_disks([(30.7, 44.1)], 4.0)
    p = np.stack([a, b])
    alone, grouped = find_atoms(p), find_atoms(p, site_groups=[[0, 1]])
    for k in ATOM_KEYS:
        np.testing.assert_allclose(grouped[k], alone[k])


@pytest.mark.parametrize("groups, weights, match", [
    ([[0]], None, "site_groups"),
    ([[0, 1], [1, 2]], None, "site_groups"),
    ([[0, 5]], None, "site_groups"),
    ("ab", None, "site_groups"),
    (None, [1.0, 2.0], "class_weights"),
    (None, [1.0, 0.0, 1.0], "class_weights"),
    (None, [1.0, np.nan, 1.0], "class_weights"),
])
def test_bad_site_groups(groups, weights, match):
    with pytest.raises(GombnetError, match=match):
        find_atoms(_split_site_maps(), site_groups=groups, class_weights=weights)


def test_site_grouping_maps_names_to_channels():
    names = ["W", "S2", "SSe"]
    g = site_grouping(names, 2)  # default: S2 and SSe share the chalcogen sites
    assert g == {"site_groups": [[1, 2], [4, 5]], "class_weights": [1.0] * 6}
    g = site_grouping(names, 2, class_weights={"SSe": 1.8})
    assert g["class_weights"] == [1.0, 1.0, 1.8, 1.0, 1.0, 1.8]
    assert site_grouping(names, 2, site_groups=[])["site_groups"] == []
    assert site_grouping(["C"], 2) == {"site_groups": [], "class_weights": [1.0, 1.0]}
    with pytest.raises(GombnetError, match="Se2"):
        site_grouping(names, 2, site_groups=[["S2", "Se2"]])
    with pytest.raises(GombnetError, match="Mo"):
        site_grouping(names, 1, class_weights={"Mo": 2.0})

import functools

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.inference.layers import lattice_layer_assignment, relabel_found_atoms

A_PX = 24.6  # graphene lattice constant at 0.1 Å/px
SIZE_PX = 600.0


@pytest.fixture
def honeycomb(lattice_points):
    """honeycomb(angle_deg, rng, ...): points of one lattice, graphene at 0.1 Å/px in a 600 px square."""
    return functools.partial(lattice_points.honeycomb, a_px=A_PX, size_px=SIZE_PX, jitter_px=0.4)


@pytest.fixture
def bilayer(lattice_points):
    """bilayer(twist_deg, seed=0): a twisted bilayer, the first layer at 17°."""
    return functools.partial(lattice_points.bilayer, base_deg=17.0, a_px=A_PX, size_px=SIZE_PX, jitter_px=0.4)


def swap_disk(xy, layer, centre=(200.0, 250.0), radius=120.0):
    inside = np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1]) < radius
    return np.where(inside, 1 - layer, layer), inside


@pytest.mark.parametrize("twist", [12.0, 21.8, 30.0, 48.0])
def test_a_swapped_region_goes_back_to_its_layers(twist, bilayer):
    xy, truth = bilayer(twist)
    found, swapped = swap_disk(xy, truth)
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, np.ones(len(xy), bool))
    assert info["applied"] and info["n_moved"] > 0.9 * swapped.sum()
    assert np.mean(fixed == truth) > 0.99
    twist_found = abs((info["orientations_deg"][1] - info["orientations_deg"][0] + 30) % 60 - 30)
    assert twist_found == pytest.approx(min(twist % 60, 60 - twist % 60), abs=0.5)


def test_a_consistent_bilayer_is_left_alone(bilayer):
    xy, truth = bilayer(25.0, seed=1)
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], truth, np.ones(len(xy), bool))
    assert info["applied"] and info["n_moved"] == 0
    np.testing.assert_array_equal(fixed, truth)


@pytest.mark.parametrize("twist", [1.0, 2.0, 4.0, 58.5])
def test_layers_a_few_degrees_apart_are_told_apart_by_their_local_rotation(twist, bilayer):
    xy, truth = bilayer(twist, seed=2)
    found, swapped = swap_disk(xy, truth)
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, np.ones(len(xy), bool))
    assert info["applied"] and info["method"] == "local rotation" and info["n_moved"] > 0.9 * swapped.sum()
    assert np.mean(fixed == truth) > 0.99
    assert info["rotation_separation_deg"] == pytest.approx(min(twist, 60 - twist), abs=0.6)
    # without the local fit such layers are left as found
    kept, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, np.ones(len(xy), bool),
                                          min_rotation_twist_deg=None)
    assert not info["applied"] and info["reason"]
    np.testing.assert_array_equal(kept, found)


def test_aligned_layers_are_not_judged(bilayer):
    xy, truth = bilayer(0.2, seed=2)
    found, _ = swap_disk(xy, truth)
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, np.ones(len(xy), bool))
    assert not info["applied"] and "local rotations" in info["reason"]
    np.testing.assert_array_equal(fixed, found)


@pytest.mark.parametrize("jitter_px", [0.4, 1.0])
def test_one_lattice_split_at_random_is_not_judged(jitter_px, honeycomb):
    # the noise of the local rotations splits them into halves over 0.5 deg apart at 1 px
    # (0.1 Å) of jitter; they are still too close for their spread
    rng = np.random.default_rng(3)
    xy = honeycomb(10.0, rng, jitter_px=jitter_px)
    layer = rng.integers(0, 2, len(xy))
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], layer, np.ones(len(xy), bool))
    assert not info["applied"]
    np.testing.assert_array_equal(fixed, layer)


def test_other_atoms_follow_the_lattice_atoms_around_them(honeycomb):
    # W-like triangular lattices decide; atoms beside them (chalcogen-like) follow
    rng = np.random.default_rng(4)
    metal = [honeycomb(5.0 + 20.0 * k, rng, a_px=31.5, basis=False) for k in range(2)]
    other = [m + np.array([0.0, 18.2]) for m in metal]
    xy = np.vstack(metal + other)
    truth = np.concatenate([np.full(len(m), k) for k, m in enumerate(metal)] * 2)
    lattice = np.concatenate([np.ones(sum(map(len, metal)), bool), np.zeros(sum(map(len, other)), bool)])
    found, swapped = swap_disk(xy, truth, radius=150.0)
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, lattice)
    assert info["applied"]
    assert np.mean(fixed[~lattice] == truth[~lattice]) > 0.97


def test_found_atoms_keep_channel_order_and_classes(bilayer):
    xy, truth = bilayer(20.0, seed=5)
    found_layer, _ = swap_disk(xy, truth)
    cls = np.arange(len(xy)) % 3  # three classes per layer, class 0 the lattice
    channel = found_layer * 3 + np.where(cls == 0, 0, cls)
    order = np.argsort(channel, kind="stable")
    found = {"channel": channel[order], "x_px": xy[order, 0], "y_px": xy[order, 1],
             "score": np.ones(len(xy), np.float32)}
    out, info = relabel_found_atoms(found, n_layers=2, classes_per_layer=3, lattice_class=0)
    assert info["applied"] and info["n_moved"] > 0
    assert np.all(np.diff(out["channel"]) >= 0)
    assert sorted(out["channel"] % 3) == sorted(found["channel"] % 3)  # classes kept
    one_layer, info = relabel_found_atoms(found, n_layers=1, classes_per_layer=6)
    assert one_layer is found and not info["applied"]


def test_bad_input(bilayer):
    xy, truth = bilayer(20.0)
    lattice = np.ones(len(xy), bool)
    with pytest.raises(GombnetError, match="one length"):
        lattice_layer_assignment(xy[:, 0], xy[:-1, 1], truth, lattice)
    with pytest.raises(GombnetError, match="two layers"):
        lattice_layer_assignment(xy[:, 0], xy[:, 1], truth + 1, lattice)
    with pytest.raises(GombnetError, match="radius_nn"):
        lattice_layer_assignment(xy[:, 0], xy[:, 1], truth, lattice, radius_nn=0)
    with pytest.raises(GombnetError, match="min_rotation_twist_deg"):
        lattice_layer_assignment(xy[:, 0], xy[:, 1], truth, lattice, min_rotation_twist_deg=0.0)
    few, info = lattice_layer_assignment(xy[:5, 0], xy[:5, 1], truth[:5], lattice[:5])
    assert not info["applied"] and "too few" in info["reason"]


def test_small_swapped_regions_are_left(bilayer):
    xy, truth = bilayer(21.8, seed=6)
    lattice = np.ones(len(xy), bool)
    # a few atoms: their neighbourhoods are mostly the right layer's, nothing moves
    found, swapped = swap_disk(xy, truth, radius=14.0)
    assert 0 < swapped.sum() < 10
    assert lattice_layer_assignment(xy[:, 0], xy[:, 1], found, lattice)[1]["n_moved"] == 0
    # a region of ~100 atoms moves, unless regions must be larger than that
    found, swapped = swap_disk(xy, truth, radius=60.0)
    assert 50 < swapped.sum() < 300
    fixed, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, lattice)
    assert info["n_moved"] > 0.8 * swapped.sum() and np.mean(fixed == truth) > 0.99
    kept, info = lattice_layer_assignment(xy[:, 0], xy[:, 1], found, lattice, min_region_atoms=1000)
    assert info["applied"] and info["n_moved"] == 0
    np.testing.assert_array_equal(kept, found)

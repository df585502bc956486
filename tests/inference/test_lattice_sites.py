import functools

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.evaluate import evaluate_image
from gombnet.inference.lattice_sites import (
    check_found_layers,
    fit_honeycomb,
    lattice_site_assignment,
    relabel_maps,
    site_check_found_atoms,
)
from gombnet.metrics import permute_found_layers, permute_layers

PS = 0.1  # Å/px
A_PX = 2.46 / PS  # graphene


@pytest.fixture
def honeycomb(lattice_points):
    """honeycomb(angle_deg, rng, ...): graphene at 0.1 Å/px in a 140 px square."""
    return functools.partial(lattice_points.honeycomb, a_px=A_PX, size_px=140.0, jitter_px=0.3)


@pytest.fixture
def bilayer(lattice_points):
    """bilayer(twist_deg, seed=0, ...): a twisted bilayer, the first layer at 11°."""
    return functools.partial(lattice_points.bilayer, base_deg=11.0, a_px=A_PX, size_px=140.0, jitter_px=0.3)


def far_from_other_layer(xy, truth, min_px=5.0):
    """Atoms farther than ``min_px`` from every atom of the other layer."""
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    d[truth[:, None] == truth[None, :]] = np.inf
    return d.min(axis=1) > min_px


def test_fit_recovers_a_strained_sheared_honeycomb_despite_outliers(honeycomb):
    rng = np.random.default_rng(3)
    strain = np.array([[1.03, 0.04], [0.0, 0.98]])
    pts = honeycomb(23.0, rng, strain=strain, jitter_px=0.2)
    outliers = rng.uniform(0, 140, (len(pts) // 10, 2))
    fit = fit_honeycomb(np.vstack([pts, outliers]), a_px=A_PX, orientation_deg=23.0, inlier_px=3.5)
    assert fit is not None and fit.n_inliers >= len(pts)
    assert np.median(fit.residual_px(pts)) < 0.35  # the 0.2 px jitter, not the 4 % distortion
    t = np.radians(23.0)
    true_matrix = strain @ (A_PX * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))
    # the same lattice up to a symmetry of the honeycomb: equal metric (lengths and angle)
    np.testing.assert_allclose(fit.matrix_px.T @ fit.matrix_px, true_matrix.T @ true_matrix, rtol=0.02, atol=3.0)
    # a hexagon centre (opposite the second sublattice) is a full bond length from every site
    delta = np.array([1.5, np.sqrt(3) / 2]) / 3  # (a1 + a2) / 3 of the ideal honeycomb
    centre = fit.matrix_px @ (-fit.chirality * delta) + fit.origin_px
    assert fit.residual_px((fit.matrix_px @ (fit.chirality * delta) + fit.origin_px)[None])[0] < 1e-9
    assert fit.residual_px(centre[None])[0] > 0.8 * A_PX / np.sqrt(3)


def test_fit_needs_points():
    assert fit_honeycomb(np.zeros((3, 2)), a_px=A_PX, orientation_deg=0.0, inlier_px=3.0) is None
    # one row of sites along a lattice vector fixes no second direction
    row = np.c_[np.arange(12) * A_PX, np.zeros(12)]
    assert fit_honeycomb(row, a_px=A_PX, orientation_deg=0.0, inlier_px=3.0) is None
    with pytest.raises(GombnetError):
        fit_honeycomb(np.zeros((10, 2)), a_px=-1.0, orientation_deg=0.0, inlier_px=3.0)


@pytest.mark.parametrize("twist", [9.0, 21.8, 30.0, 47.0])
def test_single_atoms_in_the_wrong_layer_go_back(twist, bilayer):
    xy, truth = bilayer(twist)
    rng = np.random.default_rng(1)
    clear = np.flatnonzero(far_from_other_layer(xy, truth))
    wrong = rng.choice(clear, size=len(xy) // 12, replace=False)
    reported = truth.copy()
    reported[wrong] = 1 - reported[wrong]
    new, keep, info = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS)
    assert keep.all() and info["n_cells_fitted"] == info["n_cells"] == 1
    # (one that happens to lie within the inlier distance of its wrong layer's lattice stays)
    assert np.sum(new[wrong] != truth[wrong]) <= 1 and np.sum(new != truth) <= 1
    # a consistent bilayer is left as it is
    same, keep, info = lattice_site_assignment(xy[:, 0], xy[:, 1], truth, pixel_size_angstrom=PS)
    assert keep.all() and info["n_moved"] == 0 and np.array_equal(same, truth)


def test_a_copy_in_the_wrong_layer_is_dropped_and_an_adatom_stays(bilayer):
    xy, truth = bilayer(25.0, seed=4)
    clear = np.flatnonzero(far_from_other_layer(xy, truth))[:6]
    # the adatom: the point of the field farthest from every atom (off both lattices, close to none)
    gy, gx = np.mgrid[20:120:0.5, 20:120:0.5]
    grid = np.c_[gx.ravel(), gy.ravel()]
    adatom = grid[[np.argmax(np.min(np.hypot(*(grid[:, None, :] - xy[None]).transpose(2, 0, 1)), axis=1))]]
    # the copies: the same columns reported once more in the other layer; the adatom in layer 0
    xy2 = np.vstack([xy, xy[clear], adatom])
    reported = np.concatenate([truth, 1 - truth[clear], [0]])
    new, keep, info = lattice_site_assignment(xy2[:, 0], xy2[:, 1], reported, pixel_size_angstrom=PS)
    assert info["n_dropped"] == len(clear) and info["n_too_close"] == 0
    assert not keep[len(xy):len(xy) + len(clear)].any() and keep[:len(xy)].all()
    assert keep[-1] and new[-1] == 0


def test_an_atom_too_close_to_another_of_its_layer_goes(bilayer):
    xy, truth = bilayer(25.0, seed=9)
    k = int(np.flatnonzero(far_from_other_layer(xy, truth))[0])
    extra = xy[k] + np.array([4.0, 0.0])  # 0.4 Å from a column of the same layer
    xy2 = np.vstack([xy, extra])
    reported = np.append(truth, truth[k])
    new, keep, info = lattice_site_assignment(xy2[:, 0], xy2[:, 1], reported, pixel_size_angstrom=PS)
    assert info["n_too_close"] == 1 and not keep[-1] and keep[:-1].all()
    # with the rule off both stay
    _, keep, info = lattice_site_assignment(xy2[:, 0], xy2[:, 1], reported, pixel_size_angstrom=PS,
                                            min_separation=0.0)
    assert keep.all() and info["n_too_close"] == 0


def test_aligned_layers_are_left_alone(honeycomb):
    rng = np.random.default_rng(5)
    pts = honeycomb(11.0, rng)
    xy = np.vstack([pts, pts + rng.normal(0, 0.3, pts.shape)])  # AA stacking: every column in both
    reported = rng.integers(0, 2, len(xy))
    new, keep, info = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS)
    assert keep.all() and info["n_moved"] == 0 and np.array_equal(new, reported)


def test_a_large_field_is_fitted_in_cells_through_a_slow_rotation(honeycomb):
    rng = np.random.default_rng(6)
    size = 600.0
    xy0, xy1 = honeycomb(11.0, rng, size_px=size), honeycomb(36.0, rng, size_px=size)
    centre = size / 2

    def bend(p, deg_per_px=3.0 / size):  # the lattice turns by 3 degrees across the field
        ang = np.radians(deg_per_px * (p[:, 0] - centre))
        d = p - centre
        return centre + np.c_[np.cos(ang) * d[:, 0] - np.sin(ang) * d[:, 1],
                              np.sin(ang) * d[:, 0] + np.cos(ang) * d[:, 1]]

    xy = np.vstack([bend(xy0), bend(xy1)])
    truth = np.concatenate([np.zeros(len(xy0), int), np.ones(len(xy1), int)])
    clear = np.flatnonzero(far_from_other_layer(xy, truth))
    wrong = rng.choice(clear, size=len(xy) // 20, replace=False)
    reported = truth.copy()
    reported[wrong] = 1 - reported[wrong]
    new, keep, info = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS)
    assert info["n_cells"] > 4 and info["n_cells_fitted"] == info["n_cells"]
    assert keep.all() and np.mean(new[wrong] == truth[wrong]) > 0.98 and np.mean(new == truth) > 0.995
    # one cell for the whole bent field leaves atoms where they were or moves right ones wrongly
    one, _, _ = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS, cell_angstrom=100.0)
    assert np.sum(one != truth) > np.sum(new != truth)



@pytest.mark.parametrize("twist", [0.5, 1.2])
def test_cells_the_network_swapped_as_a_whole_are_named_after_their_neighbours(twist, lattice_points):
    # a nearly aligned bilayer over 60 nm: no local rotation tells the layers apart, and each cell's
    # honeycombs fitted to swapped labels agree with them; only the neighbouring cells can tell
    xy, truth = lattice_points.bilayer(twist, base_deg=11.0, seed=4, a_px=A_PX, size_px=600.0, jitter_px=0.3)
    reported = np.where(xy[:, 0] > 400.0, 1 - truth, truth)  # the right third of the field swapped
    rng = np.random.default_rng(2)
    # (where the two honeycombs cross, an atom of either layer is as good as the other's)
    clear = np.flatnonzero(far_from_other_layer(xy, truth))
    wrong = rng.choice(clear, size=len(xy) // 25, replace=False)  # and single atoms, as before
    reported[wrong] = 1 - reported[wrong]
    new, keep, info = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS)
    assert keep.all() and info["n_cells"] == 9 and info["n_cells_swapped"] >= 2
    assert np.mean(new[clear] == truth[clear]) > 0.99 and info["n_moved"] == np.sum(new != reported)
    # without the links the swapped third stays swapped
    alone, _, alone_info = lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS,
                                                   link_atoms=10**9)
    assert alone_info["n_cells_swapped"] == 0 and np.mean(alone[clear] == truth[clear]) < 0.9
    # the consistent bilayer is left as it is
    same, _, same_info = lattice_site_assignment(xy[:, 0], xy[:, 1], truth, pixel_size_angstrom=PS)
    assert same_info["n_cells_swapped"] == 0 and np.mean(same[clear] == truth[clear]) > 0.995


def test_later_passes_mend_a_swapped_region_whose_edge_cuts_through_cells(lattice_points):
    xy, truth = lattice_points.bilayer(1.2, base_deg=11.0, seed=5, a_px=A_PX, size_px=600.0, jitter_px=0.3)
    reported = np.where(xy[:, 0] > 330.0, 1 - truth, truth)  # the edge in the middle of a cell
    clear = far_from_other_layer(xy, truth)
    right = [np.mean(lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS,
                                             passes=passes)[0][clear] == truth[clear]) for passes in (1, 3)]
    assert right[0] < 0.97 and right[1] > 0.99
    with pytest.raises(GombnetError, match="passes"):
        lattice_site_assignment(xy[:, 0], xy[:, 1], reported, pixel_size_angstrom=PS, passes=0)


def test_found_atoms_keep_class_and_channel_order(bilayer):
    xy, truth = bilayer(30.0, seed=7)
    rng = np.random.default_rng(7)
    cls = rng.integers(0, 3, len(xy))
    clear = np.flatnonzero(far_from_other_layer(xy, truth))
    wrong = rng.choice(clear, size=20, replace=False)
    reported = truth.copy()
    reported[wrong] = 1 - reported[wrong]
    found = {"x_px": xy[:, 0], "y_px": xy[:, 1], "channel": reported * 3 + cls,
             "score": np.arange(len(xy), dtype=float)}
    out, info = site_check_found_atoms(found, n_layers=2, classes_per_layer=3, pixel_size_angstrom=PS)
    assert info["n_moved"] == 20 and np.all(np.diff(out["channel"]) >= 0)
    k = out["score"].astype(int)  # the score column identifies each atom
    np.testing.assert_array_equal(out["channel"] % 3, cls[k])
    np.testing.assert_array_equal(out["channel"] // 3, truth[k])
    # one layer: nothing to compare with
    mono = {**found, "channel": cls}
    same, info = site_check_found_atoms(mono, n_layers=1, classes_per_layer=3, pixel_size_angstrom=PS)
    assert same is mono and info["n_moved"] == 0


def disks(xy, layer, shape, n_layers=2, radius_px=3.0):
    maps = np.zeros((n_layers,) + shape, np.float32)
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    for (x, y), k in zip(xy, layer):
        maps[k][(cc - x) ** 2 + (rr - y) ** 2 <= radius_px ** 2] = 1.0
    return maps


def test_maps_follow_moved_atoms_only():
    xy = np.array([[20.0, 20.0], [40.0, 20.0], [20.0, 40.0]])
    before = {"x_px": xy[:, 0], "y_px": xy[:, 1], "channel": np.array([0, 0, 1])}
    maps = disks(xy, before["channel"], (64, 64))
    after = {"x_px": xy[[1, 2, 0], 0], "y_px": xy[[1, 2, 0], 1], "channel": np.array([0, 1, 1])}  # atom 0 moved
    moved = relabel_maps(maps, before, after, n_layers=2, radius_px=5.0)
    np.testing.assert_array_equal(moved, disks(xy, np.array([1, 0, 1]), (64, 64)))
    assert relabel_maps(maps, before, before, n_layers=2, radius_px=5.0) is maps
    # a dropped atom (absent afterwards) leaves the maps alone
    dropped = {k: v[1:] for k, v in before.items()}
    assert relabel_maps(maps, before, dropped, n_layers=2, radius_px=5.0) is maps
    with pytest.raises(GombnetError):
        relabel_maps(maps[:1], before, after, n_layers=2, radius_px=5.0)


def test_permuted_atoms_match_permuted_maps():
    found = {"channel": np.array([0, 1, 2, 3, 5]), "x_px": np.arange(5.0)}
    out = permute_found_layers(found, (1, 0), n_layers=2, classes_per_layer=3)
    np.testing.assert_array_equal(out["channel"], [3, 4, 5, 0, 2])
    maps = np.arange(6)[:, None, None] * np.ones((6, 2, 2))
    perm_maps = permute_layers(maps, (1, 0), 2)
    # the channel an atom goes to holds, after permuting, the map it was found in
    for c_old, c_new in zip(found["channel"], out["channel"]):
        assert perm_maps[c_new, 0, 0] == c_old


def test_evaluation_scores_the_maps_and_atoms_after_the_checks(bilayer):
    """Atoms of a twisted bilayer rendered as perfect maps, a twelfth of them in the other
    layer's map: the site check gives them back, and the maps and the score follow."""
    xy, truth = bilayer(27.0, seed=8, size_px=128.0)
    rng = np.random.default_rng(8)
    clear = np.flatnonzero(far_from_other_layer(xy, truth, min_px=7.0))
    wrong = rng.choice(clear, size=len(xy) // 12, replace=False)
    reported = truth.copy()
    reported[wrong] = 1 - reported[wrong]
    shape = (128, 128)
    probs, masks = disks(xy, reported, shape), disks(xy, truth, shape)
    columns = {"x_px": xy[:, 0], "y_px": xy[:, 1], "layer": truth, "class": np.zeros(len(xy), int)}
    kw = dict(n_layers=2, class_names=["C"], pixel_size_angstrom=PS)
    plain = evaluate_image(probs, masks, columns, lattice_sites=False, **kw)
    checked = evaluate_image(probs, masks, columns, **kw)
    assert plain["atoms"]["overall"]["f1"] < 0.95 and plain["site_check"] is None
    assert checked["atoms"]["overall"]["f1"] > 0.99
    assert checked["pixel"]["mean_iou"] > plain["pixel"]["mean_iou"] + 0.05
    assert checked["site_check"]["n_moved"] >= 0.9 * len(wrong)
    # the same through check_found_layers with the layers handed in swapped: the maps follow too
    found = {"x_px": xy[:, 0], "y_px": xy[:, 1], "channel": 1 - reported, "score": np.ones(len(xy))}
    out, maps, _, site, (extra,) = check_found_layers(found, probs[::-1], n_layers=2, classes_per_layer=1,
                                                     pixel_size_angstrom=PS, extra_maps=(probs[::-1],))
    assert site["n_moved"] >= 0.9 * len(wrong)
    np.testing.assert_array_equal(maps, extra)
    assert np.mean(maps.astype(bool) == masks[::-1].astype(bool)) > 0.995

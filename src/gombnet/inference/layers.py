"""Layer assignment made consistent with the two layers' lattice orientations.

The network decides per image region which branch holds which layer, and on a large field of
view it can swap the two over a region: there the atoms of the top layer are reported as the
bottom layer's and vice versa. Each layer of a twisted bilayer is one crystal with one
orientation, so the swap shows in the atoms themselves: the bonds between atoms reported in
one layer point along that layer's lattice in most of the image and along the other layer's
in the swapped region. This module measures the local bond orientation of every lattice atom,
finds the two orientations of the image, and gives each region of atoms back to the layer whose
orientation it has. Bond orientations of single atoms are too noisy to separate layers less than
8° apart; there each reported layer's lattice is fitted locally instead
(:func:`gombnet.analysis.strain.local_deformation`, whose rotation is precise to about 0.1°),
and a swapped region shows as a patch of one layer turned by the twist.

Pixel convention: x = column, y = row.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..analysis.lattice import _circular_mean_deg, measure_lattice
from ..analysis.strain import local_deformation
from ..errors import GombnetError

__all__ = ["lattice_layer_assignment", "relabel_found_atoms"]

# bonds of a honeycomb (graphene) and a triangular (W) lattice repeat every 60 degrees
_SYMMETRY = 6
# fewer lattice atoms than this in a layer or an orientation group decide nothing
_MIN_LATTICE_ATOMS = 12
# local-rotation groups must lie this many of their spreads apart to be two layers
_MIN_SEPARATION_SPREADS = 4.0


def _bond_order(xy: np.ndarray, nn_factor: float = 1.3) -> tuple[np.ndarray, float]:
    """Bond-orientational order psi_6 of every point (mean of exp(6i angle) over its nearest
    neighbours), and the median nearest-neighbour distance [px]."""
    tree = cKDTree(xy)
    dist, _ = tree.query(xy, k=2)
    nn = float(np.median(dist[:, 1]))
    pairs = tree.query_pairs(nn_factor * nn, output_type="ndarray")
    psi = np.zeros(len(xy), complex)
    if len(pairs) == 0:
        return psi, nn
    v = xy[pairs[:, 1]] - xy[pairs[:, 0]]
    z = np.exp(1j * _SYMMETRY * np.arctan2(v[:, 1], v[:, 0]))
    count = np.zeros(len(xy))
    for end in (0, 1):
        np.add.at(psi, pairs[:, end], z)
        np.add.at(count, pairs[:, end], 1.0)
    return np.where(count > 0, psi / np.maximum(count, 1.0), 0), nn


def _two_orientations(z: np.ndarray, seed: tuple[complex, complex], iterations: int = 20):
    """Split orientations z into two groups (2-means on the unit circle of the 6-fold angle).

    Returns (unit centres, boolean membership of group 0), or None when a group empties.
    """
    unit = z / np.maximum(np.abs(z), 1e-12)
    centres = [c / abs(c) for c in seed]
    if abs(np.angle(centres[1] * np.conj(centres[0]))) < np.radians(2.0 * _SYMMETRY):
        # the seeds agree (the layers are mixed up throughout): start from the atom farthest
        # from them, among atoms with a clear orientation (|psi_6| >= 0.5)
        centres[1] = unit[int(np.argmin(np.real(unit * np.conj(centres[0])) + 9.0 * (np.abs(z) < 0.5)))]
    group0 = np.ones(len(z), bool)
    for _ in range(iterations):
        group0 = np.real(unit * np.conj(centres[0])) >= np.real(unit * np.conj(centres[1]))
        sums = [z[group0].sum(), z[~group0].sum()]
        if min(abs(s) for s in sums) == 0:
            return None
        centres = [s / abs(s) for s in sums]
    return centres, group0


def _in_large_region(x, y, seeds: np.ndarray, radius: float, min_atoms: int) -> np.ndarray:
    """Atoms within ``radius`` of a connected group (links shorter than ``radius``) of at
    least ``min_atoms`` of the ``seeds`` atoms."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keep = np.zeros(len(x), bool)
    idx = np.flatnonzero(seeds)
    if idx.size < min_atoms:
        return keep
    pts = np.c_[x[idx], y[idx]]
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx), len(idx)))
    _, label = connected_components(graph, directed=False)
    big = np.flatnonzero(np.bincount(label) >= min_atoms)
    if big.size == 0:
        return keep
    anchors = pts[np.isin(label, big)]
    dist, _ = cKDTree(anchors).query(np.c_[x, y], distance_upper_bound=radius)
    return np.isfinite(dist)


def lattice_layer_assignment(
    x_px,
    y_px,
    layer,
    lattice,
    *,
    radius_nn: float = 2.0,
    max_spread_deg: float = 6.0,
    min_separation_deg: float = 8.0,
    separation_spreads: float = 2.0,
    min_group_fraction: float = 0.05,
    min_region_atoms: int = 10,
    min_rotation_twist_deg: float | None = 0.5,
    kind: str = "auto",
) -> tuple[np.ndarray, dict]:
    """Give regions whose two layers the network swapped back to the right layer.

    Parameters
    ----------
    x_px, y_px : array_like, shape (N,)
        Atom positions [px] (x = column, y = row).
    layer : array_like of int, shape (N,)
        Layer of each atom as found (0 or 1).
    lattice : array_like of bool, shape (N,)
        Atoms that make up each layer's hexagonal lattice (graphene: every C; WS2: the W
        columns). Their bonds give the orientation; the other atoms follow the lattice atoms
        around them.
    radius_nn : float
        Radius of a region, in nearest-neighbour distances of the lattice (2: about 2.8 Å
        for graphene, 6.3 Å for the W lattice): an atom moves to the other layer when the
        lattice atoms within it (both layers) mostly have the other layer's orientation.
    max_spread_deg : float
        The image's orientations must form two groups each narrower than this (circular
        standard deviation [deg]); a wider group means one orientation and noise (near-aligned
        layers, or layers with several grains), and nothing is changed.
    min_separation_deg, separation_spreads : float
        The two orientations must differ by at least ``min_separation_deg`` and by
        ``separation_spreads`` times the wider group's spread; closer layers (twists near 0
        or 60 degrees) cannot be told apart by orientation, and nothing is changed.
    min_group_fraction : float
        Each orientation must hold at least this share of the lattice atoms: a smaller group
        is a few stray atoms, not a layer (a layer may still cover only part of the image).
    min_region_atoms : int
        A swapped region must hold at least this many lattice atoms (connected within the
        region radius); fewer are atoms with noisy neighbourhoods, left as they were.
    min_rotation_twist_deg : float or None
        Where the bond orientations cannot tell the layers apart (closer than
        ``min_separation_deg``, or too spread), each layer's lattice is fitted locally and
        the atoms are split by their local lattice rotation, for layers at least this far
        apart [deg]; None leaves such bilayers alone.
    kind : {"auto", "honeycomb", "triangular"}
        Lattice kind of the lattice atoms, for the local fit.

    Returns
    -------
    layer : ndarray of int, shape (N,)
        Corrected layers (a copy).
    info : dict
        ``applied`` (bool), ``reason`` (why not, or ""), ``orientations_deg`` (the two
        orientations found, modulo 60 degrees, or None), ``spreads_deg``, ``n_moved``.
    """
    x = np.asarray(x_px, dtype=np.float64)
    y = np.asarray(y_px, dtype=np.float64)
    lay = np.asarray(layer).astype(np.int64)
    lat = np.asarray(lattice, dtype=bool)
    if not (x.shape == y.shape == lay.shape == lat.shape) or x.ndim != 1:
        raise GombnetError("x_px, y_px, layer and lattice must be 1-D arrays of one length")
    if lay.size and not np.isin(lay, (0, 1)).all():
        raise GombnetError("lattice layer assignment needs exactly two layers (0 and 1)")
    if not (radius_nn > 0 and max_spread_deg > 0 and min_separation_deg >= 0 and separation_spreads >= 0
            and 0 <= min_group_fraction <= 0.5 and min_region_atoms >= 1
            and (min_rotation_twist_deg is None or min_rotation_twist_deg > 0)):
        raise GombnetError("radius_nn, max_spread_deg and min_rotation_twist_deg must be > 0, the separations "
                           ">= 0, min_group_fraction in [0, 0.5], min_region_atoms >= 1")
    info = {"applied": False, "reason": "", "orientations_deg": None, "spreads_deg": None, "n_moved": 0,
            "method": "bond order"}
    out = lay.copy()
    psi = np.zeros(len(x), complex)
    seed, nn = [], []
    for k in (0, 1):
        sel = lat & (lay == k)
        if sel.sum() < _MIN_LATTICE_ATOMS:
            info["reason"] = f"too few lattice atoms in layer {k} ({int(sel.sum())})"
            return out, info
        psi[sel], d = _bond_order(np.c_[x[sel], y[sel]])
        seed.append(psi[sel].sum())
        nn.append(d)
    split = None if min(abs(s) for s in seed) == 0 else _two_orientations(psi[lat], (seed[0], seed[1]))
    z = psi[lat]
    if split is None:
        info["reason"] = "one bond orientation only"
    else:
        centres, group0 = split
        # each group's orientation (mod 60 deg) and circular spread, psi_6 weighted by its length
        angles, spreads = zip(*(_circular_mean_deg(np.angle(z[g]) / _SYMMETRY, 360.0 / _SYMMETRY,
                                                   weights=np.abs(z[g])) for g in (group0, ~group0)))
        angles, spreads = list(angles), list(spreads)
        separation = abs(float(np.degrees(np.angle(centres[1] * np.conj(centres[0]))))) / _SYMMETRY
        info.update(orientations_deg=angles, spreads_deg=spreads)
        smaller = min(int(group0.sum()), int((~group0).sum()))
        if smaller < max(min_group_fraction * len(group0), _MIN_LATTICE_ATOMS):
            info["reason"] = f"one orientation holds only {smaller} of {len(group0)} lattice atoms"
        elif max(spreads) > max_spread_deg:
            info["reason"] = f"orientations too spread ({max(spreads):.1f} deg)"
        elif separation < max(min_separation_deg, separation_spreads * max(spreads)):
            info["reason"] = f"the layers' orientations differ by {separation:.1f} deg only"
    if info["reason"]:
        if min_rotation_twist_deg is None:
            return out, info
        # layers a few degrees apart: each layer's local lattice rotation tells them apart
        return _rotation_assignment(x, y, lay, lat, kind=kind, radius_nn=radius_nn,
                                    min_twist_deg=min_rotation_twist_deg, min_group_fraction=min_group_fraction,
                                    min_region_atoms=min_region_atoms, info=info)
    lab = lay[lat]
    # the group most of layer 0's atoms fall in is layer 0's orientation
    if np.sum(group0 == (lab == 0)) < np.sum(group0 != (lab == 0)):
        centres = centres[::-1]
    # +: a lattice atom's bonds have its own layer's orientation, -: the other layer's
    own = np.where(lab == 0, centres[0], centres[1])
    other = np.where(lab == 0, centres[1], centres[0])
    vote = np.real(z * np.conj(own)) - np.real(z * np.conj(other))
    return _swap_regions(x, y, lay, lat, vote, radius_nn * float(np.median(nn)), min_region_atoms, info)


def _swap_regions(x, y, lay, lat, vote, radius: float, min_region_atoms: int, info: dict):
    """Move every atom whose lattice atoms within ``radius`` vote, in sum, for the other layer
    (``vote`` > 0: a lattice atom looks like its own layer), in regions of at least
    ``min_region_atoms`` lattice atoms."""
    out = lay.copy()
    # every (atom, lattice atom) pair within radius, zero distances included, in one array
    pairs = cKDTree(np.c_[x, y]).sparse_distance_matrix(cKDTree(np.c_[x[lat], y[lat]]), radius,
                                                        output_type="ndarray")
    total = np.bincount(pairs["i"], weights=vote[pairs["j"]], minlength=len(x))
    swapped = (np.bincount(pairs["i"], minlength=len(x)) > 0) & (total < 0)
    swapped &= _in_large_region(x, y, swapped & lat, radius, min_region_atoms)
    out[swapped] = 1 - lay[swapped]
    info.update(applied=True, n_moved=int(swapped.sum()))
    return out, info


def _rotation_assignment(x, y, lay, lat, *, kind: str, radius_nn: float, min_twist_deg: float,
                         min_group_fraction: float, min_region_atoms: int, info: dict):
    """The swap check for layers only a few degrees apart, from each layer's local rotation.

    Each reported layer's lattice is fitted locally (:func:`gombnet.analysis.strain.
    local_deformation`, a Gaussian window of one lattice constant): in a region the network
    gave to the wrong layer, the reported layer's lattice turns by the twist, towards the
    other layer's orientation. Its vectors are compared with the reference lattice's within
    0.2 a, so this reaches twists up to about 10 degrees, where the bond-order check takes over.
    """
    orientation = np.full(len(x), np.nan)
    nn = []
    for k in (0, 1):
        sel = lat & (lay == k)
        pos = np.c_[x[sel], y[sel]]
        try:
            m = measure_lattice(pos, kind=kind)
            d = local_deformation(pos, kind=m.kind, a_angstrom=m.a_angstrom, orientation_deg=m.orientation_deg,
                                  smoothing_sigma_angstrom=m.a_angstrom)
        except GombnetError as exc:
            info["reason"] += f"; no local lattice: {exc}"
            return lay.copy(), info
        orientation[sel] = m.orientation_deg + d.rotation_deg
        nn.append(m.nn_distance_angstrom)
    ok = lat & np.isfinite(orientation)
    if min(np.sum(ok & (lay == k)) for k in (0, 1)) < _MIN_LATTICE_ATOMS:
        info["reason"] += "; too few locally fitted lattice atoms"
        return lay.copy(), info
    # orientations relative to layer 0's median, in (-30, 30] deg; two groups by 2-means
    ref = float(np.median(orientation[ok & (lay == 0)]))
    rel = (orientation - ref + 30.0) % 60.0 - 30.0
    centres = np.percentile(rel[ok], [10.0, 90.0])
    for _ in range(20):
        group0 = np.abs(rel - centres[0]) <= np.abs(rel - centres[1])
        if min((ok & group0).sum(), (ok & ~group0).sum()) == 0:
            break
        centres = np.array([np.median(rel[ok & group0]), np.median(rel[ok & ~group0])])
    smaller = min(int((ok & group0).sum()), int((ok & ~group0).sum()))
    separation = abs(float(centres[1] - centres[0]))
    # two real orientations are far apart against each group's spread; one orientation split
    # in two by its noise has halves about 2.7 spreads apart
    resid = np.where(group0, rel - centres[0], rel - centres[1])[ok]
    spread = 1.4826 * float(np.median(np.abs(resid)))
    info["rotation_separation_deg"], info["rotation_spread_deg"] = separation, spread
    if (separation < max(min_twist_deg, _MIN_SEPARATION_SPREADS * spread)
            or smaller < max(min_group_fraction * ok.sum(), _MIN_LATTICE_ATOMS)):
        info["reason"] += (f"; local rotations {separation:.2f} deg apart (spread {spread:.2f} deg), "
                           f"smaller group {smaller} atoms")
        return lay.copy(), info
    # the group most of layer 0's atoms fall in is layer 0's orientation
    if np.sum(ok & group0 & (lay == 0)) < np.sum(ok & ~group0 & (lay == 0)):
        centres = centres[::-1]
    own = np.where(lay == 0, centres[0], centres[1])
    other = np.where(lay == 0, centres[1], centres[0])
    vote = np.where(ok, np.abs(rel - other) - np.abs(rel - own), 0.0)[lat]
    info.update(method="local rotation", orientations_deg=[float((ref + c) % 60.0) for c in centres])
    return _swap_regions(x, y, lay, lat, vote, radius_nn * float(np.median(nn)), min_region_atoms, info)


def relabel_found_atoms(found: dict, *, n_layers: int, classes_per_layer: int, lattice_class: int = 0,
                        **kwargs) -> tuple[dict, dict]:
    """:func:`lattice_layer_assignment` on a :func:`~gombnet.inference.atoms.find_atoms` result.

    ``found["channel"]`` is layer-major (``layer * classes_per_layer + class``); class
    ``lattice_class`` of each layer is its lattice. Bilayers only: for other layer counts the
    atoms come back unchanged. The result stays sorted by channel.
    """
    if n_layers != 2 or len(found["channel"]) == 0:
        return found, {"applied": False, "reason": "not a bilayer" if n_layers != 2 else "no atoms",
                       "orientations_deg": None, "spreads_deg": None, "n_moved": 0}
    channel = np.asarray(found["channel"])
    layer, cls = channel // classes_per_layer, channel % classes_per_layer
    new_layer, info = lattice_layer_assignment(found["x_px"], found["y_px"], layer, cls == lattice_class, **kwargs)
    if not info["n_moved"]:
        return found, info
    new_channel = new_layer * classes_per_layer + cls
    order = np.argsort(new_channel, kind="stable")
    out = {k: np.asarray(v)[order] for k, v in found.items()}
    out["channel"] = new_channel[order].astype(channel.dtype)
    return out, info

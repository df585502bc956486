"""Each found atom given to the layer whose fitted lattice it sits on.

The network places most atoms in the right layer, but some single atoms (and small groups)
end up in the other layer's map, or in both: in a twisted bilayer the two lattices cross,
and where a column of one layer lies near the other layer's hexagon the decoders can
disagree. Both layers of graphene, and the W + chalcogen columns of a 2H transition-metal
dichalcogenide seen along c, are honeycombs. This module fits each reported layer's honeycomb
(an affine map of the ideal one, so uniform strain, scan shear and the twist are absorbed;
in cells of about ``cell_angstrom`` on large images, where distortions vary) to the atoms the
network put in it, robustly (sites farther than ``inlier_angstrom`` from an atom are left
out of the fit), and then moves an atom that sits on another layer's honeycomb but far
from its own to that layer; if that layer already has an atom there, the atom was reported
twice and its copy in the wrong layer is dropped. An atom that fits both lattices (the
layers nearly aligned, or a column where the two honeycombs cross) stays where the network
put it; so do atoms that fit neither (adatoms, contamination, defects). Last, two atoms of one
layer closer than 0.6 of its bond length cannot both be columns: the one farther from the
layer's lattice is dropped.

Where the network swapped the layers over a whole region (near-aligned layers, whose lattice
orientations cannot tell them apart), each cell's fits follow its swapped labels and no single
atom looks wrong. So neighbouring cells are linked through the atoms of their common margin
(each atom sits on the same physical lattice in both cells' fits), the lattices are named
consistently from cell to cell, and a cell whose names disagree with its neighbours' is
relabelled as a whole. The check then runs again on the corrected layers, until a pass
changes nothing (at most three passes).

:func:`relabel_maps` moves the probability of moved atoms to their new layer's maps, so the
maps that ``gombnet predict`` writes agree with its atoms.

Pixel convention: x = column, y = row.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from itertools import permutations

import numpy as np
from scipy.spatial import cKDTree

from ..analysis.lattice import measure_lattice
from ..errors import GombnetError, check
from .layers import relabel_found_atoms

__all__ = ["HoneycombFit", "fit_honeycomb", "lattice_site_assignment", "site_check_found_atoms", "relabel_maps",
           "check_found_layers", "MAP_RADIUS_ANGSTROM"]

# pixels this close [Å] to a moved atom (and nearer to it than to any other) move with it:
# half the C-C bond, so neighbouring atoms keep their own pixels
MAP_RADIUS_ANGSTROM = 0.7

# what one pass of the site check counts
_PASS_COUNTS = ("n_dropped", "n_too_close", "n_cells_fitted", "n_cells", "n_cells_swapped")

# lattice vectors a1, a2 (columns) of a honeycomb of lattice constant 1, a1 along x
_CELL = np.array([[1.0, 0.5], [0.0, np.sqrt(3.0) / 2.0]])
_CELL_INV = np.linalg.inv(_CELL)
# the second sublattice sits at +-(a1 + a2) / 3 from the first
_BASIS = (_CELL[:, 0] + _CELL[:, 1]) / 3.0


@dataclass(frozen=True)
class HoneycombFit:
    """A honeycomb in image pixels: ``xy = matrix_px @ u + origin_px`` for the sites ``u`` of the
    ideal honeycomb (lattice constant 1, first sublattice at the origin, second at
    ``chirality * (a1 + a2) / 3``).

    Attributes
    ----------
    matrix_px : (2, 2) ndarray
        Affine part [px per lattice constant]: rotation, scale, strain and shear.
    origin_px : (2,) ndarray
        ``(x, y)`` of one site [px].
    chirality : float
        +1 or -1: on which side of the first sublattice the second one lies.
    n_inliers : int
        Atoms within the inlier distance of a site in the final fit.
    """

    matrix_px: np.ndarray
    origin_px: np.ndarray
    chirality: float
    n_inliers: int

    def nearest_sites(self, xy_px) -> tuple[np.ndarray, np.ndarray]:
        """Distance [px] of each point ``(x, y)`` to its nearest site, and that site in ideal coordinates."""
        xy = np.asarray(xy_px, float).reshape(-1, 2)
        u = (xy - self.origin_px) @ np.linalg.inv(self.matrix_px).T
        best = np.full(len(xy), np.inf)
        site = np.zeros_like(u)
        for shift in (0.0, self.chirality):
            s = np.round((u - shift * _BASIS) @ _CELL_INV.T) @ _CELL.T + shift * _BASIS
            d = np.linalg.norm((s - u) @ self.matrix_px.T, axis=1)
            closer = d < best
            best[closer], site[closer] = d[closer], s[closer]
        return best, site

    def residual_px(self, xy_px) -> np.ndarray:
        """Distance [px] of each point ``(x, y)`` to the nearest site of this honeycomb."""
        return self.nearest_sites(xy_px)[0]


def fit_honeycomb(xy_px, *, a_px: float, orientation_deg: float, inlier_px: float, iterations: int = 6,
                  n_starts: int = 8, start: HoneycombFit | None = None) -> HoneycombFit | None:
    """Robust affine fit of a honeycomb to points ``(x, y)`` [px].

    Starts from the lattice constant ``a_px`` [px] and the direction of a lattice vector
    ``orientation_deg`` [deg from +x], with a site on each of the ``n_starts`` points nearest
    the centre and either chirality (the start with most inliers wins); or from ``start`` (a
    neighbouring region's fit) when that already explains half of the points. Then alternates
    between pairing every point with its nearest site and a least-squares affine fit of the pairs
    closer than ``inlier_px`` [px]. Returns None when fewer than 6 points fit.
    """
    xy = np.asarray(xy_px, float).reshape(-1, 2)
    check(a_px > 0 and inlier_px > 0, f"a_px and inlier_px must be positive, got {a_px} and {inlier_px}")
    if len(xy) < 6:
        return None
    if start is not None and np.sum(start.residual_px(xy) < inlier_px) >= 0.5 * len(xy):
        fit = start
    else:
        th = np.radians(orientation_deg)
        matrix = a_px * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        starts = np.argsort(np.linalg.norm(xy - xy.mean(0), axis=1))[:n_starts]
        fit = max((HoneycombFit(matrix, xy[k].copy(), sign, 0) for k in starts for sign in (1.0, -1.0)),
                  key=lambda f: int(np.sum(f.residual_px(xy) < inlier_px)))
    for _ in range(iterations):
        d, site = fit.nearest_sites(xy)
        ok = d < inlier_px
        if ok.sum() < 6:
            return None
        coef, *_ = np.linalg.lstsq(np.c_[site[ok], np.ones(ok.sum())], xy[ok], rcond=None)
        # points along one line leave the affine map undetermined: no lattice
        stretch = np.linalg.svd(coef[:2], compute_uv=False)
        if not (0.5 * a_px < stretch[1] and stretch[0] < 2.0 * a_px):
            return None
        fit = HoneycombFit(coef[:2].T, coef[2], fit.chirality, 0)
    n = int(np.sum(fit.residual_px(xy) < inlier_px))
    return HoneycombFit(fit.matrix_px, fit.origin_px, fit.chirality, n) if n >= 6 else None


def _layer_guesses(xy, layer, n_layers, ps, min_atoms, max_atoms=400):
    """Lattice constant [px] and orientation [deg] of each layer from its atoms nearest the
    centre (at most ``max_atoms``), or None if a layer has no clear lattice."""
    guesses = []
    for k in range(n_layers):
        pts = xy[layer == k]
        if len(pts) < min_atoms:
            return None
        pts = pts[np.argsort(np.linalg.norm(pts - pts.mean(0), axis=1))[:max_atoms]]
        try:
            m = measure_lattice(pts * ps, kind="honeycomb")
        except GombnetError:
            return None
        guesses.append((m.a_angstrom / ps, m.orientation_deg))
    return guesses


def _layer_fits(xy, layer, guesses, inlier_px, min_atoms, starts=None):
    """One honeycomb per layer from that layer's atoms, or None if any layer has no clear lattice.
    ``starts``: the previous cell's fits, tried first."""
    fits = []
    for k, (a_px, orientation_deg) in enumerate(guesses):
        pts = xy[layer == k]
        if len(pts) < min_atoms:
            return None
        fit = fit_honeycomb(pts, a_px=a_px, orientation_deg=orientation_deg, inlier_px=inlier_px,
                            start=starts[k] if starts else None)
        # a lattice that explains less than half of its layer's atoms decides nothing
        if fit is None or fit.n_inliers < 0.5 * len(pts):
            return None
        fits.append(fit)
    return fits


def _cell_links(xy, cells, n_across, n_layers, inlier_px, link_atoms):
    """Links ``(strength, i, j, perm)`` between neighbouring fitted cells: fit ``k`` of cell ``j``
    is the lattice of fit ``perm[k]`` of cell ``i``, judged on the atoms of their common margin
    that sit on exactly one lattice of each cell."""
    links = []
    where = {w: n for n, (w, *_) in enumerate(cells)}
    for i, (w, _, region_i, fits_i) in enumerate(cells):
        for dx, dy in ((1, 0), (-1, 1), (0, 1), (1, 1)):
            cx, cy = w % n_across + dx, w // n_across + dy
            j = where.get(cy * n_across + cx) if 0 <= cx < n_across else None
            if j is None:
                continue
            common = np.intersect1d(region_i, cells[j][2])
            on_i = np.stack([f.residual_px(xy[common]) < inlier_px for f in fits_i], axis=1)
            on_j = np.stack([f.residual_px(xy[common]) < inlier_px for f in cells[j][3]], axis=1)
            one = (on_i.sum(1) == 1) & (on_j.sum(1) == 1)
            if one.sum() < link_atoms:
                continue
            votes = np.zeros((n_layers, n_layers), int)  # [fit of j, fit of i]
            np.add.at(votes, (on_j[one].argmax(1), on_i[one].argmax(1)), 1)
            scores = sorted((int(votes[np.arange(n_layers), perm].sum()), perm)
                            for perm in permutations(range(n_layers)))
            (second, _), (best, perm) = scores[-2], scores[-1]
            if best >= link_atoms and best >= 2 * second:
                links.append((best - second, i, j, perm))
    return links


def _cell_permutations(xy, layer, cells, n_across, n_layers, inlier_px, link_atoms):
    """For each fitted cell, the layer ``perm[k]`` that its fit ``k`` (of the atoms the network
    put in layer ``k``) is the lattice of, named consistently over linked neighbours."""
    identity = tuple(range(n_layers))
    perms = [identity] * len(cells)
    links = _cell_links(xy, cells, n_across, n_layers, inlier_px, link_atoms)
    if not links:
        return perms
    neighbours = {}
    for strength, i, j, perm in links:
        inverse = tuple(int(v) for v in np.argsort(perm))
        neighbours.setdefault(i, []).append((strength, j, perm))
        neighbours.setdefault(j, []).append((strength, i, inverse))
    counts = [np.bincount(layer[idx], minlength=n_layers) for _, idx, _, _ in cells]
    named = {}
    # strongest links first (Prim), from the most populated cell of each group of linked cells
    for root in sorted(neighbours, key=lambda c: -counts[c].sum()):
        if root in named:
            continue
        named[root], group, heap = identity, [root], []
        for strength, j, perm in neighbours[root]:
            heapq.heappush(heap, (-strength, root, j, perm))
        while heap:
            _, i, j, perm = heapq.heappop(heap)
            if j in named:
                continue
            named[j] = tuple(named[i][perm[k]] for k in range(n_layers))
            group.append(j)
            for strength, m, p in neighbours[j]:
                if m not in named:
                    heapq.heappush(heap, (-strength, j, m, p))
        # of the ways to name the group's layers, the one that keeps most of the network's labels
        sigma = max(permutations(range(n_layers)), key=lambda sg: sum(
            counts[c][k] for c in group for k in range(n_layers) if sg[named[c][k]] == k))
        for c in group:
            perms[c] = tuple(sigma[named[c][k]] for k in range(n_layers))
    return perms


def lattice_site_assignment(x_px, y_px, layer, *, pixel_size_angstrom: float, n_layers: int = 2,
                            cell_angstrom: float = 20.0, inlier_angstrom: float = 0.35,
                            move_angstrom: float = 0.3, margin: float = 1.5, duplicate_angstrom: float = 0.5,
                            min_separation: float = 0.6, min_atoms: int = 10,
                            link_atoms: int = 10, passes: int = 3) -> tuple[np.ndarray, np.ndarray, dict]:
    """New layer of every atom from each layer's fitted honeycomb.

    Parameters
    ----------
    x_px, y_px : (N,) arrays
        Atom positions [px] (x = column, y = row).
    layer : (N,) int array
        Layer the network reported each atom in.
    pixel_size_angstrom : float
        [Å/px] of the positions.
    cell_angstrom : float
        About the side [Å] of the cells the field is divided into: each cell's atoms are judged
        by honeycombs fitted to the atoms of the cell and a margin of a quarter cell around it
        (a field up to 1.5 cells wide is one cell). Each layer's lattice constant and
        orientation, the fits' starting point, are measured once, on its 400 atoms nearest the
        field's centre; each cell's fit starts from the previous cell's where that fits.
    inlier_angstrom : float
        Atoms within this distance [Å] of a site make up a layer's fit; an atom closer than
        this to its own layer's lattice is never moved.
    move_angstrom, margin : float
        An atom moves to another layer when it is within ``move_angstrom`` [Å] of that layer's
        lattice and ``margin`` times closer to it than to its own.
    duplicate_angstrom : float
        A moving atom with an atom of its new layer closer than this [Å] is a copy: dropped.
    min_separation : float
        Two atoms of one layer closer than this fraction of its nearest-neighbour distance
        (C-C; W-X in projection) cannot both be columns: the one farther from the layer's
        fitted lattice is dropped.
    min_atoms : int
        Fewer atoms in a layer of a cell: that cell is left as it is.
    link_atoms : int
        Two neighbouring cells are linked (their fits named as the same layers, or swapped) when
        at least this many atoms of their common margin each sit on one lattice of either cell,
        and twice as many of them link the lattices one way as the other. Over the links, each
        cell's lattices are named after its neighbours' (strongest links first), so that a cell
        the network reported with its layers swapped is relabelled as a whole; of the two ways
        to name all linked cells, the one that keeps more of the network's labels is taken.
    passes : int
        The whole check runs up to this many times, each on the layers (and kept atoms) the last
        one left, until a pass changes nothing: where the network swapped a region whose edge
        cuts through cells, the first pass puts most of it right and the next fit cleaner
        honeycombs.

    Returns
    -------
    new_layer : (N,) int array
    keep : (N,) bool array
        False for dropped copies.
    info : dict
        ``n_moved`` (kept atoms that end in another layer), ``n_dropped`` (copies), ``n_too_close``
        (dropped for ``min_separation``), ``n_cells_fitted`` (cells whose honeycombs were fitted, in the
        pass that fitted most) of ``n_cells``,
        ``n_cells_swapped`` (cells relabelled as a whole).
    """
    x, y = np.asarray(x_px, float), np.asarray(y_px, float)
    lay = np.asarray(layer, int)
    check(x.shape == y.shape == lay.shape, "x_px, y_px and layer must have the same length")
    check(pixel_size_angstrom > 0 and cell_angstrom > 0, "pixel_size_angstrom and cell_angstrom must be positive")
    check(passes >= 1, f"passes must be at least 1, got {passes}")
    new, keep = lay.copy(), np.ones(len(x), bool)
    info = {"n_moved": 0, **dict.fromkeys(_PASS_COUNTS, 0)}
    if n_layers < 2 or len(x) == 0:
        return new, keep, info
    settings = dict(n_layers=n_layers, cell_angstrom=cell_angstrom, inlier_angstrom=inlier_angstrom,
                    move_angstrom=move_angstrom, margin=margin, duplicate_angstrom=duplicate_angstrom,
                    min_separation=min_separation, min_atoms=min_atoms, link_atoms=link_atoms)
    for _ in range(passes):
        # each pass fits the honeycombs to the layers the previous pass left
        kept = np.flatnonzero(keep)
        layer_k, keep_k, done = _site_pass(np.c_[x, y][kept], new[kept], float(pixel_size_angstrom), **settings)
        changed = np.any(layer_k != new[kept]) or not keep_k.all()
        new[kept], keep[kept[~keep_k]] = layer_k, False
        for key in ("n_dropped", "n_too_close", "n_cells_swapped"):
            info[key] += done[key]
        info.update(n_cells_fitted=max(info["n_cells_fitted"], done["n_cells_fitted"]), n_cells=done["n_cells"])
        if not changed:
            break
    info["n_moved"] = int(np.sum(keep & (new != lay)))  # kept atoms that end in another layer
    return new, keep, info


def _site_pass(xy, lay, ps, *, n_layers, cell_angstrom, inlier_angstrom, move_angstrom, margin,
               duplicate_angstrom, min_separation, min_atoms, link_atoms):
    """One pass of :func:`lattice_site_assignment` over points ``xy`` [px] reported in layers ``lay``:
    new layers, kept atoms and the ``_PASS_COUNTS`` (``n_moved`` is counted by the caller over all passes)."""
    new, keep = lay.copy(), np.ones(len(xy), bool)
    info = dict.fromkeys(_PASS_COUNTS, 0)
    if len(xy) == 0:
        return new, keep, info
    guesses = _layer_guesses(xy, lay, n_layers, ps, min_atoms)
    lo, hi = xy.min(0), xy.max(0)
    win = cell_angstrom / ps
    n_cells = np.where(hi - lo <= 1.5 * win, 1, np.rint((hi - lo) / win)).astype(int)
    cell = np.maximum((hi - lo) / n_cells, 1e-9)
    index = np.minimum(((xy - lo) / cell).astype(int), n_cells - 1)
    owner = index[:, 1] * n_cells[0] + index[:, 0]
    info["n_cells"] = int(np.prod(n_cells))
    if guesses is None:
        return new, keep, info
    tree = cKDTree(xy)
    reach = 0.75 * float(cell.max())  # half a cell plus a quarter cell of margin
    cells, previous = [], None
    for w in np.unique(owner):
        centre = lo + (np.array([w % n_cells[0], w // n_cells[0]]) + 0.5) * cell
        region = np.asarray(tree.query_ball_point(centre, r=reach, p=np.inf), int)
        # a neighbouring cell's lattice is the first start: one fit instead of sixteen
        fits = _layer_fits(xy[region], lay[region], guesses, inlier_angstrom / ps, min_atoms, previous)
        if fits is None:
            continue
        previous = fits
        cells.append((w, np.flatnonzero(owner == w), region, fits))
    info["n_cells_fitted"] = len(cells)
    # where the network swapped the layers over a whole cell, that cell's fits follow the swap:
    # which lattice is which layer is followed from cell to cell and the cell's atoms relabelled
    perms = _cell_permutations(xy, lay, cells, int(n_cells[0]), n_layers, inlier_angstrom / ps, link_atoms)
    candidates = []
    resid = np.full((len(xy), n_layers), np.inf)  # [Å] to each layer's lattice, where fitted
    for (_, idx, _, fits), perm in zip(cells, perms):
        if perm != tuple(range(n_layers)):
            new[idx] = np.asarray(perm)[lay[idx]]
            info["n_cells_swapped"] += 1
            fits = [fits[perm.index(k)] for k in range(n_layers)]
        d = np.stack([f.residual_px(xy[idx]) for f in fits], axis=1) * ps
        resid[idx] = d
        own = d[np.arange(len(idx)), new[idx]]
        d[np.arange(len(idx)), new[idx]] = np.inf
        target = np.argmin(d, axis=1)
        best = d[np.arange(len(idx)), target]
        move = (best < move_angstrom) & (own > margin * best) & (own > inlier_angstrom)
        candidates += list(zip(idx[move], target[move]))
    # copies are judged against each layer's atoms as reported (after whole cells were relabelled)
    trees = {k: cKDTree(xy[new == k]) for k in range(n_layers) if np.any(new == k)}
    for i, k in candidates:
        if k in trees and trees[k].query(xy[i])[0] * ps < duplicate_angstrom:
            keep[i] = False
            info["n_dropped"] += 1
        else:
            new[i] = k
    # two atoms of one layer too close to be two columns: the one farther from the lattice goes
    for k, (a_px, _) in enumerate(guesses):
        ids = np.flatnonzero(keep & (new == k))
        if len(ids) < 2:
            continue
        for a, b in cKDTree(xy[ids]).query_pairs(min_separation * a_px / np.sqrt(3.0), output_type="ndarray"):
            ia, ib = ids[a], ids[b]
            if keep[ia] and keep[ib] and np.isfinite(min(resid[ia, k], resid[ib, k])):
                keep[ia if resid[ia, k] > resid[ib, k] else ib] = False
                info["n_too_close"] += 1
    return new, keep, info


def site_check_found_atoms(found: dict, *, n_layers: int, classes_per_layer: int, pixel_size_angstrom: float,
                           **kwargs) -> tuple[dict, dict]:
    """:func:`lattice_site_assignment` on a :func:`~gombnet.inference.atoms.find_atoms` result.

    ``found["channel"]`` is layer-major (``layer * classes_per_layer + class``); every class of
    a layer counts as a site of its honeycomb and keeps its class when it moves. The result
    stays sorted by channel.
    """
    channel = np.asarray(found["channel"], int)
    layer, cls = channel // classes_per_layer, channel % classes_per_layer
    new_layer, keep, info = lattice_site_assignment(found["x_px"], found["y_px"], layer, n_layers=n_layers,
                                                    pixel_size_angstrom=pixel_size_angstrom, **kwargs)
    if not (info["n_moved"] or info["n_dropped"] or info["n_too_close"]):
        return found, info
    new_channel = (new_layer * classes_per_layer + cls)[keep]
    order = np.argsort(new_channel, kind="stable")
    out = {k: np.asarray(v)[keep][order] for k, v in found.items()}
    out["channel"] = new_channel[order].astype(np.asarray(found["channel"]).dtype)
    return out, info


def relabel_maps(maps: np.ndarray, before: dict, after: dict, *, n_layers: int, radius_px: float) -> np.ndarray:
    """Move the probability of atoms that changed layer into their new layer's maps.

    Parameters
    ----------
    maps : (C, H, W) array
        Layer-major per-class maps (probabilities, or their uncertainty) the atoms ``before``
        were found in.
    before, after : dict
        Atom tables (``x_px``, ``y_px``, ``channel``) before and after a layer check that
        moves atoms between layers without moving them in the image (an atom of ``after`` is
        the atom of ``before`` at the same position).
    radius_px : float
        Pixels within this distance [px] of a moved atom, and nearer to it than to any other
        atom of ``before``, swap their values between the old and the new layer's maps.

    Returns
    -------
    (C, H, W) ndarray (a copy when anything moved, else ``maps`` itself).
    """
    maps = np.asarray(maps)
    check(maps.ndim == 3 and maps.shape[0] % n_layers == 0,
          f"maps must be (C, H, W) with C a multiple of {n_layers}, got shape {maps.shape}")
    cpl = maps.shape[0] // n_layers
    return _swap_pixels(maps, _moved_pixels(before, after, cpl, maps.shape[-2:], radius_px), cpl)


def _moved_pixels(before: dict, after: dict, cpl: int, shape, radius_px: float):
    """``(rows, cols, old_layer, new_layer)`` of the pixels that go with atoms which changed
    layer (see :func:`relabel_maps`), or None when none did."""
    bxy = np.c_[np.asarray(before["x_px"], float), np.asarray(before["y_px"], float)]
    if len(bxy) == 0:
        return None
    old_layer = np.asarray(before["channel"], int) // cpl
    new_layer = old_layer.copy()
    tree = cKDTree(bxy)
    axy = np.c_[np.asarray(after["x_px"], float), np.asarray(after["y_px"], float)]
    if len(axy):
        d, j = tree.query(axy)
        exact = d < 1e-9
        new_layer[j[exact]] = np.asarray(after["channel"], int)[exact] // cpl
    moved = np.flatnonzero(new_layer != old_layer)
    if len(moved) == 0:
        return None
    h, w = shape
    r = int(np.ceil(radius_px))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = dx ** 2 + dy ** 2 <= radius_px ** 2
    offsets = np.c_[dx[disk], dy[disk]]
    # (moved atom, offset) -> pixel (x, y)
    base = np.rint(bxy[moved]).astype(int)
    pixels = base[:, None, :] + offsets[None]
    # a pixel goes with the atom nearest to it; the pixel lies within radius + 0.71 px of its
    # atom (disks are centred on the rounded position), so only atoms within twice that can be nearer
    near = tree.query_ball_point(bxy[moved], r=2.0 * (radius_px + 0.75))
    first = np.repeat(np.arange(len(moved)), [len(n) for n in near])
    other = np.concatenate(near).astype(int)
    rival = other != moved[first]
    first, other = first[rival], other[rival]
    mine = (pixels[..., 0] >= 0) & (pixels[..., 0] < w) & (pixels[..., 1] >= 0) & (pixels[..., 1] < h)
    if len(first):
        # pixel p is nearer to atom j than to atom i where 2 p.(j - i) > |j|^2 - |i|^2
        i_xy, j_xy = bxy[moved[first]], bxy[other]
        slope = 2.0 * (j_xy - i_xy)
        level = np.sum(slope * base[first], axis=1) - (np.sum(j_xy ** 2, axis=1) - np.sum(i_xy ** 2, axis=1))
        closer = (level[:, None] + slope @ offsets.T) > 0
        starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
        mine[first[starts]] &= ~np.logical_or.reduceat(closer, starts, axis=0)
    who = np.broadcast_to(moved[:, None], mine.shape)[mine]
    return pixels[..., 1][mine], pixels[..., 0][mine], old_layer[who], new_layer[who]


def _swap_pixels(maps: np.ndarray, moves, cpl: int) -> np.ndarray:
    """``maps`` with the values of the ``moves`` pixels swapped between their old and new
    layer's channels (a copy), or ``maps`` itself when nothing moved."""
    if moves is None:
        return maps
    rows, cols, old, new = moves
    out = maps.copy()
    for c in range(cpl):
        src, dst = old * cpl + c, new * cpl + c
        out[dst, rows, cols] = maps[src, rows, cols]
        out[src, rows, cols] = maps[dst, rows, cols]
    return out


def check_found_layers(found: dict, maps: np.ndarray, *, n_layers: int, classes_per_layer: int,
                       pixel_size_angstrom: float, lattice_class: int = 0, lattice_sites: bool = True,
                       extra_maps: tuple = ()) -> tuple[dict, np.ndarray, dict, dict | None, tuple]:
    """Both lattice checks of the layers, and the maps made to follow the atoms.

    First :func:`~gombnet.inference.layers.relabel_found_atoms` (regions of atoms given back to
    the layer whose orientation they have), then, with ``lattice_sites``,
    :func:`site_check_found_atoms` (single atoms to the layer whose honeycomb they sit on);
    then :func:`relabel_maps` on ``maps`` and on each of ``extra_maps`` (e.g. the uncertainty).

    Returns
    -------
    found, maps, layer_check, site_check (None without ``lattice_sites``), extra_maps
    """
    network_found = found
    found, layer_check = relabel_found_atoms(found, n_layers=n_layers, classes_per_layer=classes_per_layer,
                                             lattice_class=lattice_class)
    site_check = None
    if lattice_sites:
        found, site_check = site_check_found_atoms(found, n_layers=n_layers, classes_per_layer=classes_per_layer,
                                                   pixel_size_angstrom=pixel_size_angstrom)
    maps = np.asarray(maps)
    check(maps.ndim == 3 and maps.shape[0] == n_layers * classes_per_layer,
          f"maps must be (C, H, W) with C = {n_layers} x {classes_per_layer}, got shape {maps.shape}")
    check(all(m is None or np.shape(m) == maps.shape for m in extra_maps), "extra_maps must have the maps' shape")
    # which pixels go with the moved atoms: found once, applied to every map
    moves = _moved_pixels(network_found, found, classes_per_layer, maps.shape[-2:],
                          MAP_RADIUS_ANGSTROM / pixel_size_angstrom)
    follow = [None if m is None else _swap_pixels(np.asarray(m), moves, classes_per_layer) for m in (maps, *extra_maps)]
    return found, follow[0], layer_check, site_check, tuple(follow[1:])

"""Local stacking (AA, AB, BA, saddle point) of twisted bilayer graphene from atom positions.

Layer A's atoms are split into its two sublattices α and β by their bond directions (an α
atom's three bonds point along θ + 30° + k·120°, a β atom's along θ + 90° + k·120°, θ the
lattice-vector orientation), which stays right under strain and drift, unlike a split by
position modulo a global lattice. For every atom of layer A, ``u`` is the in-plane distance to
the nearest atom of layer B (0 ≤ u ≤ b = a/√3 = 1.42 Å, the C–C distance). At a point of the
image, ``(u_α, u_β)`` are the values of the nearest α and the nearest β atom of layer A (the
same Voronoi-cell lookup as :func:`gombnet.analysis.moire.stacking_map`), and the registry is
the nearest of

======  ================  ==========================================
name    (u_α, u_β)         what coincides
======  ================  ==========================================
AA      (0, 0)            every atom of A on an atom of B
AB      (0, b)            α atoms on B atoms, β atoms over B's hexagon centres (Bernal)
BA      (b, 0)            the mirror Bernal domain
SP      (b/2, b/2)        saddle point: B shifted by half a bond, the domain walls
======  ================  ==========================================

Which Bernal domain is called AB is fixed by which sublattice is α, a convention within one
image. The maps mean something where the moiré cells, ``a / (2 sin(θ/2))``, span several atoms:
twists under about 10° (14 Å cells).

Positions are ``(N, 2)`` arrays ``[x, y]`` [Å], x = column, y = row.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GombnetError
from .bonds import _as_positions, neighbor_pairs
from .lattice import SQRT3, measure_lattice
from .moire import stacking_map

__all__ = ["STACKING_CLASSES", "honeycomb_sublattices", "graphene_stacking_map", "stacking_fractions"]

#: Registry classes in the order of the integer labels of :func:`graphene_stacking_map`.
STACKING_CLASSES = ("AA", "AB", "BA", "SP")
# (u_alpha, u_beta) of each class in units of b = a / sqrt(3)
_CLASS_POINTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
# Atoms whose bond phase is weaker than this (|psi_3| of three ideal bonds is 1) get no sublattice.
_MIN_PHASE = 0.5


def honeycomb_sublattices(positions_angstrom, *, orientation_deg: float | None = None,
                          field_of_view_angstrom=None) -> np.ndarray:
    """Sublattice of every atom of one honeycomb layer from its bond directions.

    Parameters
    ----------
    positions_angstrom : (N, 2) array
        One graphene layer [Å], at least 7 atoms.
    orientation_deg : float, optional
        Lattice-vector orientation [deg]; default measured
        (:func:`gombnet.analysis.lattice.measure_lattice`).
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        For that measurement.

    Returns
    -------
    (N,) int array
        0 (α), 1 (β), or -1 where the bonds do not tell (an isolated atom, a bond phase
        weaker than 0.5: false or misplaced atoms).
    """
    pos = _as_positions(positions_angstrom, min_count=7)
    m = measure_lattice(pos, kind="honeycomb", field_of_view_angstrom=field_of_view_angstrom)
    theta = m.orientation_deg if orientation_deg is None else float(orientation_deg)
    if not math.isfinite(theta):
        raise GombnetError("orientation_deg must be finite")
    return _sublattices(pos, theta, m.a_angstrom / SQRT3)


def _sublattices(pos: np.ndarray, theta: float, b: float) -> np.ndarray:
    """:func:`honeycomb_sublattices` for a known orientation [deg] and C–C distance b [Å]."""
    # bonds: the first shell, up to halfway to the second (a / sqrt(3) and a)
    i, j, _ = neighbor_pairs(pos, max_distance_angstrom=0.5 * (1.0 + SQRT3) * b, unique=False)
    v = pos[j] - pos[i]
    z = np.exp(3j * np.arctan2(v[:, 1], v[:, 0]))
    psi = np.zeros(len(pos), complex)
    count = np.bincount(i, minlength=len(pos))
    np.add.at(psi, i, z)
    psi = np.where(count > 0, psi / np.maximum(count, 1), 0)
    # alpha bonds point along theta + 30 deg + k 120 deg: 3 x angle = 3 theta + 90 deg
    proj = np.real(psi * np.exp(-1j * math.radians(3.0 * theta + 90.0)))
    out = np.where(proj > 0, 0, 1)
    out[np.abs(psi) < _MIN_PHASE] = -1
    return out.astype(np.int64)


def graphene_stacking_map(
    layer_a,
    layer_b,
    shape,
    pixel_size_angstrom: float,
    *,
    origin_angstrom=(0.0, 0.0),
    field_of_view_angstrom=None,
    max_site_distance_angstrom: float = 2.0,
) -> dict[str, np.ndarray]:
    """Registry maps of a graphene bilayer on a pixel grid.

    Parameters
    ----------
    layer_a, layer_b : (N, 2) arrays
        Atoms of the two layers [Å], at least 7 each.
    shape : (int, int)
        Map shape (rows, columns), usually the image's.
    pixel_size_angstrom : float
        Pixel size [Å/px]; pixel (r, c) is centred at ``origin + (c, r) * pixel_size``.
    origin_angstrom : (float, float)
        Centre of pixel (0, 0) [Å].
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        For the lattice measurement (interior atoms).
    max_site_distance_angstrom : float
        Pixels farther than this [Å] from every α or β atom of layer A are NaN / -1
        (outside the sample, holes).

    Returns
    -------
    dict
        ``"u_alpha"``, ``"u_beta"`` (rows, columns) [Å]; ``"registry"`` (rows, columns)
        int8: the index into :data:`STACKING_CLASSES`, -1 where undefined; ``"b_angstrom"``:
        the C–C distance of layer A used as the unit.
    """
    a_pos = _as_positions(layer_a, "layer_a", min_count=7)
    b_pos = _as_positions(layer_b, "layer_b", min_count=7)
    m = measure_lattice(a_pos, kind="honeycomb", field_of_view_angstrom=field_of_view_angstrom)
    b = m.a_angstrom / SQRT3
    sub = _sublattices(a_pos, m.orientation_deg, b)
    if min(np.sum(sub == 0), np.sum(sub == 1)) < 3:
        raise GombnetError("layer A's atoms do not form a honeycomb with two sublattices")
    maps = stacking_map(a_pos[sub == 0], a_pos[sub == 1], b_pos, b_pos, shape, pixel_size_angstrom,
                        origin_angstrom=origin_angstrom, max_site_distance_angstrom=max_site_distance_angstrom)
    u = np.stack([maps["u_wx"], maps["u_xw"]], axis=-1).astype(np.float64) / b
    ok = np.all(np.isfinite(u), axis=-1)
    registry = np.full(ok.shape, -1, dtype=np.int8)
    dist = np.linalg.norm(u[ok][:, None, :] - _CLASS_POINTS[None], axis=-1)
    registry[ok] = np.argmin(dist, axis=1)
    return {"u_alpha": maps["u_wx"], "u_beta": maps["u_xw"], "registry": registry, "b_angstrom": float(b)}


def stacking_fractions(registry) -> dict[str, float]:
    """Share of the mapped area in each registry class (pixels labelled -1 left out)."""
    reg = np.asarray(registry)
    n = int(np.sum(reg >= 0))
    return {name: (float(np.sum(reg == k)) / n if n else float("nan")) for k, name in enumerate(STACKING_CLASSES)}

"""Moiré order-parameter and local stacking-order maps of twisted TMD bilayers.

Definitions (Fig. 4b–d of the Gomb-Net paper, made precise here). Layer A and layer B
each have W columns and chalcogen columns X (S–S or Se–S), positions ``[x, y]`` in Å.

* For a W column of layer A, ``u_WX`` is the in-plane distance to the nearest
  chalcogen column of layer B. For a chalcogen column of layer A, ``u_XW`` is the
  in-plane distance to the nearest W column of layer B.
* At a point p of the image (a pixel centre or a site), ``u^{W/X}(p) = u_WX`` of the
  layer-A W column nearest to p, and ``u^{X/W}(p) = u_XW`` of the layer-A chalcogen
  column nearest to p (so both maps are constant on the Voronoi cells of the layer-A
  columns and ``u`` measures the registry of the two layers, not where p lies inside a
  unit cell).
* The local stacking order is the Euclidean norm ``s(p) = sqrt(u^{W/X}(p)² + u^{X/W}(p)²)``
  (the paper's text; its Fig. 4c caption writes a product, which is taken as a typo).

In a monolayer every column lies on one of three sublattices of a triangular lattice,
and a projected W–X distance is ``b = a / sqrt(3)`` (1.82 Å for a = 3.15 Å). Because the
nearest layer-B column of either species is never farther than ``b``, both ``u`` lie in
``[0, b]``, and the three high-symmetry registries give:

===========================================  ==========  ======================
registry (which columns coincide)            ``s``       paper's name (Fig. 4d)
===========================================  ==========  ======================
W_A on X_B and X_A on W_B (2H-like)          0           AB
exactly one of these coincidences            b           AA'
neither (W on W, X on X, or on hollows)      b·sqrt(2)   A'B
===========================================  ==========  ======================

The paper states these values as 0, d and d·sqrt(2) with d "the lattice parameter"
(3.15 Å); with the definition above, which follows the paper's wording, the unit is
``b = a / sqrt(3)``, the projected W–chalcogen distance. Registry names differ between
papers (many call the 2H registry AA'); the table is the unambiguous statement.
:func:`stacking_reference_values` returns the three values for a lattice constant.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..errors import GombnetError
from .bonds import _as_positions, _positive

__all__ = [
    "site_order_parameters",
    "stacking_at",
    "stacking_map",
    "stacking_reference_values",
]

_MAX_PIXELS = 1 << 28  # 16384 x 16384


def stacking_reference_values(a_angstrom: float = 3.15) -> dict[str, float]:
    """Stacking-order values [Å] of the high-symmetry registries.

    Parameters
    ----------
    a_angstrom : float
        Lattice constant [Å]; the paper uses 3.15 Å for all layers.

    Returns
    -------
    dict
        ``{"AB": 0, "AA'": b, "A'B": b * sqrt(2), "b": b}`` with ``b = a / sqrt(3)``,
        keyed by the paper's names (see the module docstring for the registries).
    """
    a = _positive(a_angstrom, "a_angstrom", upper=100.0)
    b = a / math.sqrt(3.0)
    return {"AB": 0.0, "AA'": b, "A'B": b * math.sqrt(2.0), "b": b}


def _layers(w_a, x_a, w_b, x_b):
    return (
        _as_positions(w_a, "w_a", min_count=1),
        _as_positions(x_a, "x_a", min_count=1),
        _as_positions(w_b, "w_b", min_count=1),
        _as_positions(x_b, "x_b", min_count=1),
    )


def site_order_parameters(
    w_a, x_a, w_b, x_b, *, max_u_angstrom: float | None = None
) -> dict[str, np.ndarray]:
    """Order parameters of every layer-A column.

    Parameters
    ----------
    w_a, x_a : (N, 2), (M, 2) arrays
        W and chalcogen columns of layer A [Å].
    w_b, x_b : (P, 2), (Q, 2) arrays
        W and chalcogen columns of layer B [Å].
    max_u_angstrom : float, optional
        Values above this [Å] become NaN: a layer-A column whose partner lies outside
        the field of view or is missing (vacancy) gets a spuriously large ``u``. Ideal
        values never exceed ``a / sqrt(3)`` ≈ 1.9 Å, so ~2.3 Å is a sensible cut.

    Returns
    -------
    dict
        ``"u_wx"``: (N,) distance [Å] of each layer-A W to the nearest layer-B chalcogen;
        ``"u_xw"``: (M,) distance [Å] of each layer-A chalcogen to the nearest layer-B W.
    """
    wa, xa, wb, xb = _layers(w_a, x_a, w_b, x_b)
    u_wx = cKDTree(xb).query(wa)[0]
    u_xw = cKDTree(wb).query(xa)[0]
    if max_u_angstrom is not None:
        cap = _positive(max_u_angstrom, "max_u_angstrom", upper=1e3)
        u_wx[u_wx > cap] = np.nan
        u_xw[u_xw > cap] = np.nan
    return {"u_wx": u_wx, "u_xw": u_xw}


class _Evaluator:
    """Looks up the order parameters of the layer-A columns nearest to query points."""

    def __init__(self, w_a, x_a, w_b, x_b, max_u_angstrom, max_site_distance_angstrom):
        wa, xa, wb, xb = _layers(w_a, x_a, w_b, x_b)
        site = site_order_parameters(wa, xa, wb, xb, max_u_angstrom=max_u_angstrom)
        self.u_wx, self.u_xw = site["u_wx"], site["u_xw"]
        self.tree_wa, self.tree_xa = cKDTree(wa), cKDTree(xa)
        self.rmax = (
            math.inf
            if max_site_distance_angstrom is None
            else _positive(max_site_distance_angstrom, "max_site_distance_angstrom", upper=1e4)
        )

    def __call__(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dw, iw = self.tree_wa.query(pts, distance_upper_bound=self.rmax)
        dx, ix = self.tree_xa.query(pts, distance_upper_bound=self.rmax)
        # Missing neighbours come back with index == n and distance inf.
        u_wx = np.full(pts.shape[0], np.nan)
        u_xw = np.full(pts.shape[0], np.nan)
        okw = np.isfinite(dw)
        okx = np.isfinite(dx)
        u_wx[okw] = self.u_wx[iw[okw]]
        u_xw[okx] = self.u_xw[ix[okx]]
        return u_wx, u_xw, np.hypot(u_wx, u_xw)


def stacking_at(
    points_angstrom,
    w_a,
    x_a,
    w_b,
    x_b,
    *,
    max_u_angstrom: float | None = None,
    max_site_distance_angstrom: float | None = None,
) -> dict[str, np.ndarray]:
    """Order parameters and stacking order at given points (e.g. Se–S columns).

    The value at a point is exactly what :func:`stacking_map` gives at a pixel centred
    on it (see the module docstring for the definitions).

    Parameters
    ----------
    points_angstrom : (K, 2) array
        Query points ``[x, y]`` [Å].
    w_a, x_a, w_b, x_b : (N, 2) arrays
        W and chalcogen columns of layers A and B [Å].
    max_u_angstrom : float, optional
        See :func:`site_order_parameters`.
    max_site_distance_angstrom : float, optional
        Points farther than this [Å] from every layer-A W (or chalcogen) column get NaN
        (outside the sample, holes).

    Returns
    -------
    dict of (K,) arrays
        ``"u_wx"``, ``"u_xw"`` and ``"stacking"`` [Å].
    """
    pts = _as_positions(points_angstrom, "points_angstrom", min_count=1)
    ev = _Evaluator(w_a, x_a, w_b, x_b, max_u_angstrom, max_site_distance_angstrom)
    u_wx, u_xw, s = ev(pts)
    return {"u_wx": u_wx, "u_xw": u_xw, "stacking": s}


def parse_origin(origin_angstrom) -> tuple[float, float]:
    """``origin_angstrom`` as two finite floats (x, y) [Å], or GombnetError."""
    try:
        ox, oy = (float(v) for v in origin_angstrom)
    except (TypeError, ValueError):
        raise GombnetError("origin_angstrom must be two numbers [x, y] in Å") from None
    if not (math.isfinite(ox) and math.isfinite(oy)):
        raise GombnetError("origin_angstrom must be finite")
    return ox, oy


def stacking_map(
    w_a,
    x_a,
    w_b,
    x_b,
    shape,
    pixel_size_angstrom: float,
    *,
    origin_angstrom=(0.0, 0.0),
    max_u_angstrom: float | None = None,
    max_site_distance_angstrom: float | None = None,
    chunk_pixels: int = 1 << 20,
    dtype=np.float32,
) -> dict[str, np.ndarray]:
    """Maps of ``u^{W/X}``, ``u^{X/W}`` and the local stacking order on a pixel grid.

    Pixel (row r, column c) is centred at ``(x, y) = origin + (c, r) * pixel_size``
    (the package's pixel convention with ``origin = (0, 0)``). Points are processed in
    chunks of ``chunk_pixels`` so that a 4096 × 4096 map needs only the output arrays
    plus ~50 MB.

    Parameters
    ----------
    w_a, x_a, w_b, x_b : (N, 2) arrays
        W and chalcogen columns of layers A and B [Å].
    shape : (int, int)
        Map shape ``(rows, columns)``, usually the image's shape.
    pixel_size_angstrom : float
        Pixel size [Å/px].
    origin_angstrom : (float, float)
        Position ``[x, y]`` [Å] of the centre of pixel (0, 0).
    max_u_angstrom, max_site_distance_angstrom : float, optional
        See :func:`site_order_parameters` and :func:`stacking_at`; masked pixels are NaN.
    chunk_pixels : int
        Pixels per KD-tree query batch.
    dtype : numpy dtype
        Output dtype (float32 halves the memory of large maps).

    Returns
    -------
    dict of (rows, columns) arrays
        ``"u_wx"``, ``"u_xw"`` and ``"stacking"`` [Å].
    """
    try:
        rows, cols = (int(v) for v in shape)
        if (rows, cols) != tuple(shape):
            raise ValueError
    except (TypeError, ValueError):
        raise GombnetError(f"shape must be two integers (rows, columns), got {shape!r}") from None
    if rows < 1 or cols < 1 or rows * cols > _MAX_PIXELS:
        raise GombnetError(f"shape {rows} x {cols} is empty or too large (at most 16384 x 16384)")
    px = _positive(pixel_size_angstrom, "pixel_size_angstrom", upper=100.0)
    ox, oy = parse_origin(origin_angstrom)
    if isinstance(chunk_pixels, bool) or not isinstance(chunk_pixels, (int, np.integer)) or chunk_pixels < 1:
        raise GombnetError(f"chunk_pixels must be a positive integer, got {chunk_pixels!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise GombnetError(f"dtype {dtype!r} is not a numpy dtype") from None
    if dtype.kind != "f":
        raise GombnetError("dtype must be a floating-point type (maps hold NaN)")

    ev = _Evaluator(w_a, x_a, w_b, x_b, max_u_angstrom, max_site_distance_angstrom)
    out = {name: np.empty((rows, cols), dtype=dtype) for name in ("u_wx", "u_xw", "stacking")}
    xs = ox + px * np.arange(cols)
    step = max(1, int(chunk_pixels) // cols)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        ys = oy + px * np.arange(r0, r1)
        pts = np.column_stack([np.tile(xs, r1 - r0), np.repeat(ys, cols)])
        u_wx, u_xw, s = ev(pts)
        out["u_wx"][r0:r1] = u_wx.reshape(r1 - r0, cols)
        out["u_xw"][r0:r1] = u_xw.reshape(r1 - r0, cols)
        out["stacking"][r0:r1] = s.reshape(r1 - r0, cols)
    return out

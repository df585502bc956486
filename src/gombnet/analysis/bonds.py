"""Nearest-neighbour bond lengths and their statistics.

Positions are ``(N, 2)`` arrays of ``[x, y]`` in ångström (x = column direction,
y = row direction), one array per layer and species. Neighbour search uses
:class:`scipy.spatial.cKDTree`.

Typical use (graphene, Fig. 2e of the Gomb-Net paper)::

    d = nearest_neighbor_distances(layer_a, k=3, max_distance_angstrom=1.8,
                                   edge_exclusion_angstrom=2.0)
    stats = bond_statistics(d)          # mean, std, median, FWHM, count
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree

from ..errors import GombnetError

__all__ = [
    "BondStatistics",
    "bond_statistics",
    "bond_lengths_by_layer",
    "interior_mask",
    "nearest_neighbor_distances",
    "neighbor_pairs",
]

# 2 sqrt(2 ln 2): FWHM of a Gaussian in units of its standard deviation.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# --------------------------------------------------------------------------- validation
# (shared by the other analysis modules)


def _as_positions(positions, name: str = "positions_angstrom", min_count: int = 1) -> np.ndarray:
    """Return ``positions`` as a float64 ``(N, 2)`` array or raise GombnetError."""
    try:
        arr = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a numeric (N, 2) array of [x, y] in Å") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GombnetError(f"{name} must have shape (N, 2) of [x, y] in Å, got {arr.shape}")
    if arr.shape[0] < min_count:
        raise GombnetError(
            f"{name} has {arr.shape[0]} atoms; at least {min_count} are needed"
        )
    if not np.all(np.isfinite(arr)):
        raise GombnetError(f"{name} contains NaN or infinite coordinates")
    return arr


def _as_values(values, name: str, min_count: int = 1) -> np.ndarray:
    """Return ``values`` as a finite float64 1-D array or raise GombnetError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a 1-D array of numbers") from None
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise GombnetError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_count:
        raise GombnetError(f"{name} has {arr.size} values; at least {min_count} are needed")
    if not np.all(np.isfinite(arr)):
        raise GombnetError(f"{name} contains NaN or infinite values")
    return arr


def _positive(value, name: str, allow_zero: bool = False, upper: float | None = None) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0) or raise GombnetError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise GombnetError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if upper is not None and v > upper:
        raise GombnetError(f"{name} = {v:g} is unreasonably large (limit {upper:g})")
    return v


def _field_of_view(fov, positions: np.ndarray) -> tuple[float, float, float, float]:
    """Return ``(x_min, y_min, x_max, y_max)`` [Å]; default: bounding box of positions."""
    if fov is None:
        lo = positions.min(axis=0)
        hi = positions.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
    try:
        box = tuple(float(v) for v in fov)
    except (TypeError, ValueError):
        raise GombnetError("field_of_view_angstrom must be (x_min, y_min, x_max, y_max) in Å") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise GombnetError("field_of_view_angstrom must be 4 finite numbers (x_min, y_min, x_max, y_max)")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise GombnetError("field_of_view_angstrom must have x_max > x_min and y_max > y_min")
    return box  # type: ignore[return-value]


def interior_mask(
    positions_angstrom,
    *,
    edge_exclusion_angstrom: float,
    field_of_view_angstrom: Sequence[float] | None = None,
) -> np.ndarray:
    """Boolean mask of atoms at least ``edge_exclusion_angstrom`` inside the field of view.

    Parameters
    ----------
    positions_angstrom : (N, 2) array
        Atom positions ``[x, y]`` [Å].
    edge_exclusion_angstrom : float
        Margin [Å] from each edge of the field of view; atoms closer to an edge are
        ``False``. 0 keeps every atom.
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        Field of view [Å]. For an image of ``H x W`` pixels of size ``p`` with the
        package's pixel convention it is ``(-p/2, -p/2, (W - 1/2) p, (H - 1/2) p)``.
        Default: the bounding box of the positions (fine for a lattice filling the image).

    Returns
    -------
    (N,) bool array
    """
    pos = _as_positions(positions_angstrom)
    margin = _positive(edge_exclusion_angstrom, "edge_exclusion_angstrom", allow_zero=True)
    x0, y0, x1, y1 = _field_of_view(field_of_view_angstrom, pos)
    return (
        (pos[:, 0] >= x0 + margin)
        & (pos[:, 0] <= x1 - margin)
        & (pos[:, 1] >= y0 + margin)
        & (pos[:, 1] <= y1 - margin)
    )


# --------------------------------------------------------------------------- neighbours


def neighbor_pairs(
    positions_angstrom,
    *,
    neighbors_angstrom=None,
    k: int | None = None,
    max_distance_angstrom: float | None = None,
    edge_exclusion_angstrom: float = 0.0,
    field_of_view_angstrom: Sequence[float] | None = None,
    unique: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour pairs ``(i, j, distance)`` within a layer or between two sets.

    Parameters
    ----------
    positions_angstrom : (N, 2) array
        Centre atoms ``[x, y]`` [Å].
    neighbors_angstrom : (M, 2) array, optional
        Search neighbours in this set (e.g. chalcogen columns for W–X bonds) instead of
        in ``positions_angstrom`` itself. Without it an atom is never its own neighbour.
    k : int, optional
        Keep only the ``k`` nearest neighbours of each centre atom (graphene: 3,
        W–W in a TMD: 6). Default: every neighbour within ``max_distance_angstrom``.
    max_distance_angstrom : float, optional
        Largest accepted distance [Å]. Required when ``k`` is None.
    edge_exclusion_angstrom : float
        Drop centre atoms closer than this [Å] to the field-of-view edge: they miss
        neighbours outside the image, so their k nearest would include wrong ones.
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        See :func:`interior_mask`. Default: bounding box of ``positions_angstrom``.
    unique : bool
        Within one set, count each bond once (pair ``i < j``) even when both atoms list
        each other. Ignored with ``neighbors_angstrom``.

    Returns
    -------
    i, j : (P,) int arrays
        Indices into ``positions_angstrom`` and into the neighbour set.
    distance : (P,) float array
        Pair distances [Å].
    """
    pos = _as_positions(positions_angstrom, min_count=1)
    other = None
    if neighbors_angstrom is not None:
        other = _as_positions(neighbors_angstrom, "neighbors_angstrom", min_count=1)
    if k is None and max_distance_angstrom is None:
        raise GombnetError("give k (number of neighbours) or max_distance_angstrom, or both")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= 64:
            raise GombnetError(f"k must be an integer from 1 to 64, got {k!r}")
        k = int(k)
    rmax = (
        math.inf
        if max_distance_angstrom is None
        else _positive(max_distance_angstrom, "max_distance_angstrom", upper=1e4)
    )
    keep = interior_mask(
        pos,
        edge_exclusion_angstrom=edge_exclusion_angstrom,
        field_of_view_angstrom=field_of_view_angstrom,
    )
    centres = np.flatnonzero(keep)
    empty = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.float64))
    if centres.size == 0:
        return empty

    target = pos if other is None else other
    tree = cKDTree(target)
    self_offset = 1 if other is None else 0
    if k is not None:
        kq = min(k + self_offset, target.shape[0])
        dist, idx = tree.query(pos[centres], k=kq, distance_upper_bound=rmax)
        dist = dist.reshape(centres.size, -1)[:, self_offset:]
        idx = idx.reshape(centres.size, -1)[:, self_offset:]
        ii = np.repeat(centres, dist.shape[1])
        jj = idx.ravel()
        dd = dist.ravel()
        ok = np.isfinite(dd)
        ii, jj, dd = ii[ok], jj[ok], dd[ok]
        if other is None:
            # With exact duplicates the query may return the atom itself in a later slot.
            ok = ii != jj
            ii, jj, dd = ii[ok], jj[ok], dd[ok]
    else:
        lists = tree.query_ball_point(pos[centres], r=rmax)
        counts = np.fromiter((len(v) for v in lists), dtype=np.intp, count=len(lists))
        ii = np.repeat(centres, counts)
        jj = np.fromiter((j for v in lists for j in v), dtype=np.intp, count=int(counts.sum()))
        if other is None:
            ok = ii != jj
            ii, jj = ii[ok], jj[ok]
        dd = np.hypot(*(pos[ii] - target[jj]).T) if ii.size else np.zeros(0)

    if other is None and unique and ii.size:
        lo = np.minimum(ii, jj)
        hi = np.maximum(ii, jj)
        _, first = np.unique(lo.astype(np.int64) * (pos.shape[0] + 1) + hi, return_index=True)
        ii, jj, dd = lo[first], hi[first], dd[first]
    return ii.astype(np.intp), jj.astype(np.intp), dd.astype(np.float64)


def nearest_neighbor_distances(
    positions_angstrom,
    *,
    neighbors_angstrom=None,
    k: int | None = None,
    max_distance_angstrom: float | None = None,
    edge_exclusion_angstrom: float = 0.0,
    field_of_view_angstrom: Sequence[float] | None = None,
    unique: bool = True,
) -> np.ndarray:
    """Nearest-neighbour (bond) distances [Å] of one layer or between two sets.

    Same parameters as :func:`neighbor_pairs`; returns only the distances. For graphene
    use ``k=3`` and ``max_distance_angstrom`` ≈ 1.8 Å (halfway to the second-neighbour
    shell at 2.46 Å), which also drops "bonds" across vacancies.

    Returns
    -------
    (P,) float array
        Distances [Å]; each bond once when ``unique`` (default).
    """
    return neighbor_pairs(
        positions_angstrom,
        neighbors_angstrom=neighbors_angstrom,
        k=k,
        max_distance_angstrom=max_distance_angstrom,
        edge_exclusion_angstrom=edge_exclusion_angstrom,
        field_of_view_angstrom=field_of_view_angstrom,
        unique=unique,
    )[2]


def bond_lengths_by_layer(layers: Mapping[str, object], **kwargs) -> dict[str, np.ndarray]:
    """Apply :func:`nearest_neighbor_distances` to every layer of a mapping.

    Parameters
    ----------
    layers : mapping of str to (N, 2) array
        E.g. ``{"A": positions_a, "B": positions_b}`` [Å].
    **kwargs
        Keyword arguments of :func:`nearest_neighbor_distances`.

    Returns
    -------
    dict of str to (P,) float array
        Bond distances [Å] per layer.
    """
    if not isinstance(layers, Mapping) or not layers:
        raise GombnetError("layers must be a non-empty mapping of layer name to positions")
    return {str(name): nearest_neighbor_distances(pos, **kwargs) for name, pos in layers.items()}


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class BondStatistics:
    """Summary of a bond-length distribution (all lengths in Å).

    Attributes
    ----------
    mean, std, median : float
        Sample mean, standard deviation (ddof=1) and median [Å].
    sem : float
        Standard error of the mean, ``std / sqrt(count)`` [Å].
    peak : float
        Position of the maximum of the kernel density estimate [Å].
    fwhm : float
        Full width at half maximum of the distribution [Å], measured on a Gaussian kernel
        density estimate with the kernel's own width removed in quadrature (see
        :func:`bond_statistics`).
    fwhm_gaussian : float
        ``2.3548 * std`` [Å], the FWHM if the distribution were Gaussian; for reference.
    count : int
        Number of distances.
    bandwidth_angstrom : float
        Standard deviation of the KDE kernel [Å].
    fwhm_method : str
        How ``fwhm`` was measured.
    """

    mean: float
    std: float
    median: float
    sem: float
    peak: float
    fwhm: float
    fwhm_gaussian: float
    count: int
    bandwidth_angstrom: float
    fwhm_method: str

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def _half_max_width(grid: np.ndarray, density: np.ndarray) -> tuple[float, float]:
    """Peak position and FWHM of a sampled unimodal-ish curve (linear interpolation)."""
    i = int(np.argmax(density))
    peak = density[i]
    half = peak / 2.0
    # Walk left/right from the maximum to the first sample below half maximum.
    left = i
    while left > 0 and density[left] >= half:
        left -= 1
    right = i
    while right < density.size - 1 and density[right] >= half:
        right += 1
    if density[left] >= half or density[right] >= half:
        return float(grid[i]), float("nan")  # curve does not fall to half max in the grid

    def cross(a: int, b: int) -> float:
        ya, yb = density[a], density[b]
        return float(grid[a] + (half - ya) * (grid[b] - grid[a]) / (yb - ya))

    # Sub-sample peak position from a parabola through the three highest samples.
    xp = float(grid[i])
    if 0 < i < density.size - 1:
        y0, y1, y2 = density[i - 1], density[i], density[i + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            xp = float(grid[i] + 0.5 * (y0 - y2) / denom * (grid[1] - grid[0]))
    return xp, cross(right - 1, right) - cross(left, left + 1)


def bond_statistics(
    distances_angstrom,
    *,
    bandwidth_angstrom: float | None = None,
    grid_step_angstrom: float | None = None,
) -> BondStatistics:
    """Mean, spread, median, FWHM and count of bond lengths.

    The FWHM is read off a Gaussian kernel density estimate (KDE) of the distances,
    not computed as ``2.355 * std``: real histograms have tails (mis-assigned neighbours,
    vacancies) that inflate the standard deviation but not the peak width. The KDE
    is a convolution of the data with a Gaussian of standard deviation ``h``, which
    widens a peak; the reported value is ``sqrt(FWHM_kde**2 - (2.355 h)**2)``, exact for
    a Gaussian peak. ``fwhm_gaussian`` (= 2.355 std) is reported beside it.

    Parameters
    ----------
    distances_angstrom : (P,) array
        Bond lengths [Å], e.g. from :func:`nearest_neighbor_distances`. At least 2.
    bandwidth_angstrom : float, optional
        KDE kernel standard deviation [Å]. Default: Silverman's rule on the robust
        spread ``min(std, IQR/1.349)``, at least 1e-4 Å.
    grid_step_angstrom : float, optional
        Sampling step of the KDE [Å]. Default: ``bandwidth / 10``.

    Returns
    -------
    BondStatistics
    """
    d = _as_values(distances_angstrom, "distances_angstrom", min_count=2)
    if np.any(d < 0):
        raise GombnetError("distances_angstrom must not be negative")
    n = d.size
    mean = float(d.mean())
    std = float(d.std(ddof=1))
    median = float(np.median(d))
    q75, q25 = np.percentile(d, [75, 25])
    robust = min(std, float(q75 - q25) / 1.349) if q75 > q25 else std
    if bandwidth_angstrom is None:
        h = max(0.9 * robust * n ** (-0.2), 1e-4)
    else:
        h = _positive(bandwidth_angstrom, "bandwidth_angstrom", upper=100.0)
    step = h / 10.0 if grid_step_angstrom is None else _positive(grid_step_angstrom, "grid_step_angstrom")
    if step > h:
        raise GombnetError("grid_step_angstrom must not exceed the KDE bandwidth")

    from .stats import binned_kde  # local import: stats imports this module

    lo = float(d.min()) - 5 * h
    hi = float(d.max()) + 5 * h
    npts = int(math.ceil((hi - lo) / step)) + 1
    if npts > 2_000_000:
        raise GombnetError("distance range too wide for the KDE grid; pass a larger grid_step_angstrom")
    grid = lo + step * np.arange(npts)
    density = binned_kde(d, grid_angstrom=grid, bandwidth_angstrom=h)
    peak, fwhm_kde = _half_max_width(grid, density)
    kernel_fwhm = FWHM_PER_SIGMA * h
    fwhm = math.sqrt(max(fwhm_kde**2 - kernel_fwhm**2, 0.0)) if math.isfinite(fwhm_kde) else fwhm_kde
    return BondStatistics(
        mean=mean,
        std=std,
        median=median,
        sem=std / math.sqrt(n),
        peak=peak,
        fwhm=float(fwhm),
        fwhm_gaussian=FWHM_PER_SIGMA * std,
        count=int(n),
        bandwidth_angstrom=float(h),
        fwhm_method=(
            f"half maximum of a Gaussian KDE (bandwidth {h:.4g} Å), "
            "kernel width removed in quadrature"
        ),
    )

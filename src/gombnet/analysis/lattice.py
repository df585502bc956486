"""Lattice constant, orientation and twist angle of hexagonal layers.

From atom positions (``(N, 2)`` arrays ``[x, y]`` in Å, x = column, y = row):

* ``"honeycomb"`` (graphene): lattice vectors are the second-neighbour vectors
  (same sublattice), ``a = sqrt(3) d_CC`` (2.46 Å for d_CC = 1.42 Å);
* ``"triangular"`` (W sites of a TMD, or chalcogen columns): lattice vectors are the
  nearest-neighbour vectors, ``a = d_WW`` (3.15 Å for WS2).

Orientations are angles of the lattice vectors measured from +x towards +y (in image
coordinates +y points down the rows), in degrees modulo 60 (six-fold symmetry of the
lattice). The orientation of a honeycomb's C–C bonds is the lattice orientation ± 30°.

:func:`fft_lattice` measures the same from the image's power spectrum, as a cross-check
that needs no atom finding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import GombnetError
from .bonds import _as_positions, _positive, interior_mask, neighbor_pairs

__all__ = [
    "FFTLattice",
    "FFTLatticeResult",
    "LatticeMeasurement",
    "TwistMeasurement",
    "fft_lattice",
    "lattice_constant",
    "lattice_orientation",
    "measure_lattice",
    "polar_orientation",
    "twist_angle",
    "twist_from_orientations",
]

_KINDS = ("auto", "honeycomb", "triangular")
SQRT3 = math.sqrt(3.0)


def _circular_mean_deg(angles_rad: np.ndarray, period_deg: float, weights=None) -> tuple[float, float]:
    """Mean angle modulo ``period_deg`` [deg] and circular standard deviation [deg]."""
    m = 360.0 / period_deg
    w = np.ones_like(angles_rad) if weights is None else np.asarray(weights, float)
    z = np.sum(w * np.exp(1j * m * angles_rad)) / np.sum(w)
    r = min(abs(z), 1.0)
    mean = math.degrees(math.atan2(z.imag, z.real) / m) % period_deg
    spread = abs(math.degrees(math.sqrt(-2.0 * math.log(r)) / m)) if r > 0 else float("inf")
    return (0.0 if math.isclose(mean, period_deg, abs_tol=1e-9) else mean), spread


def _structure_factor_orientation_deg(pos: np.ndarray, a_angstrom: float, guess_deg: float) -> float:
    """Lattice-vector direction [deg, 0-60) from the first-order peaks of the atoms' structure factor.

    Why not the mean direction of neighbour vectors: atoms of the other layer wrongly
    assigned to this one, and positions pulled towards the other layer's columns where the
    two overlap, rotate *local* vectors towards the other layer's orientation (the demo's
    10.7 deg twist read 9.7 deg). The peak of ``|sum_j exp(2 pi i g . r_j)|`` is set by the
    long-range order of the whole field, which such local errors barely move. Each of the
    three peaks ``g_k`` (at ``guess + 30 + 60 k`` deg, ``|g| = 2 / (sqrt(3) a)``) is found by
    maximising with the atoms tapered by Gaussians of growing width around the field's
    centre, so every stage starts inside its own (narrowing) peak.
    """
    from scipy.optimize import minimize

    centred = pos - pos.mean(axis=0)
    r2 = np.sum(centred ** 2, axis=1)
    extent = math.sqrt(float(r2.max()))  # measure_lattice passes at least 7 atoms
    g_len = 2.0 / (SQRT3 * a_angstrom)
    angles = []
    for k in range(3):
        ang = math.radians(guess_deg + 30.0 + 60.0 * k)
        g = g_len * np.array([math.cos(ang), math.sin(ang)])
        for width in (10.0 * a_angstrom, 40.0 * a_angstrom, np.inf):
            w = np.exp(-0.5 * r2 / width ** 2) if np.isfinite(width) else np.ones_like(r2)

            def minus_power(gv, w=w):
                terms = w * np.exp(2j * np.pi * (centred @ gv))
                f = terms.sum()
                grad = 2.0 * np.real(np.conj(f) * (2j * np.pi) * (terms @ centred))
                return -abs(f) ** 2, -grad

            g = minimize(minus_power, g, jac=True, method="BFGS", options={"gtol": 1e-9}).x
            if width >= extent:
                break
        angles.append(math.atan2(g[1], g[0]) - math.radians(30.0 + 60.0 * k))
    return _circular_mean_deg(np.array(angles), 60.0)[0]


@dataclass(frozen=True)
class LatticeMeasurement:
    """Lattice constant and orientation of one layer.

    Attributes
    ----------
    kind : str
        "honeycomb" or "triangular" (given or inferred).
    a_angstrom : float
        Lattice constant [Å]: mean length of the lattice vectors found.
    a_std_angstrom, a_sem_angstrom : float
        Standard deviation and standard error of the mean [Å] of those lengths.
    a_median_angstrom : float
        Median lattice-vector length [Å].
    nn_distance_angstrom : float
        Mean nearest-neighbour distance [Å] (C–C for honeycomb, W–W for triangular).
    a_from_nn_angstrom : float
        ``sqrt(3) * nn_distance`` for honeycomb, ``nn_distance`` for triangular [Å].
    orientation_deg : float
        Lattice-vector direction in [0, 60) degrees, from the first-order peaks of the
        atoms' structure factor (the long-range lattice, not local bonds).
    orientation_spread_deg : float
        Circular standard deviation of the lattice-vector directions [deg].
    n_atoms, n_vectors : int
        Atoms used and lattice vectors (pairs) measured.
    coordination : float
        Median number of nearest neighbours of interior atoms (3 honeycomb, 6 triangular).
    """

    kind: str
    a_angstrom: float
    a_std_angstrom: float
    a_sem_angstrom: float
    a_median_angstrom: float
    nn_distance_angstrom: float
    a_from_nn_angstrom: float
    orientation_deg: float
    orientation_spread_deg: float
    n_atoms: int
    n_vectors: int
    coordination: float

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def measure_lattice(
    positions_angstrom,
    *,
    kind: str = "auto",
    field_of_view_angstrom=None,
) -> LatticeMeasurement:
    """Measure lattice constant and orientation of one hexagonal layer.

    The nearest-neighbour distance ``d1`` is the median over atoms of each atom's
    nearest distance (robust to a few false or missing atoms). The first shell starts as
    the pair distances in ``[0.7, 1.37] d1`` and is then re-centred on its own mean with a
    symmetric window of ±25 %; the second shell (honeycomb lattice vectors, ideally
    ``sqrt(3) d1``) is a symmetric window of ±0.13 d1 re-centred on its mean (the third
    shell lies at 2 d1). Symmetric windows keep the mean unbiased for noisy positions.
    ``a`` is the mean length of the lattice vectors in the appropriate shell; the
    orientation starts as their six-fold circular mean and is refined on the first-order
    peaks of the layer's structure factor (robust to locally misplaced or misassigned atoms).

    Parameters
    ----------
    positions_angstrom : (N, 2) array
        Positions ``[x, y]`` [Å] of one layer (one species for TMDs, e.g. W). At least 7.
    kind : {"auto", "honeycomb", "triangular"}
        Lattice kind. "auto" infers it from the median coordination (number of neighbours
        within 1.25 d1) of atoms at least 2 d1 from the field-of-view edge: ≤ 4.5 means
        honeycomb, otherwise triangular.
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        Field of view [Å] for deciding which atoms are interior; default: bounding box.

    Returns
    -------
    LatticeMeasurement
    """
    pos = _as_positions(positions_angstrom, min_count=7)
    if kind not in _KINDS:
        raise GombnetError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    tree = cKDTree(pos)
    d_nn, _ = tree.query(pos, k=2)
    d1 = float(np.median(d_nn[:, 1]))
    if not d1 > 1e-6:
        raise GombnetError("positions_angstrom has coincident atoms (median nearest distance 0)")

    inner = interior_mask(pos, edge_exclusion_angstrom=2.0 * d1, field_of_view_angstrom=field_of_view_angstrom)
    if inner.sum() < 3:
        inner = np.ones(pos.shape[0], bool)  # tiny patch: use everything
    coord_counts = np.array([len(v) - 1 for v in tree.query_ball_point(pos[inner], r=1.25 * d1)])
    coordination = float(np.median(coord_counts))
    if kind == "auto":
        kind = "honeycomb" if coordination <= 4.5 else "triangular"

    i, j, dist = neighbor_pairs(pos, max_distance_angstrom=2.2 * d1, unique=True)
    first = (dist >= 0.7 * d1) & (dist < 1.37 * d1)
    if first.sum() < 1:
        raise GombnetError(f"too few {kind} lattice vectors found; are these positions of one {kind} layer?")
    # d1 (a median of per-atom minima) is biased low by position noise, and windows cut
    # asymmetrically around a shell bias its mean; so re-centre each shell window on the
    # shell's own mean and keep it symmetric (half-width below half the gap to the next shell)
    nn = float(dist[first].mean())
    for _ in range(2):
        first = np.abs(dist - nn) < 0.25 * nn
        if first.sum() < 1:
            break
        nn = float(dist[first].mean())
    if kind == "honeycomb":
        centre = SQRT3 * nn
        for _ in range(2):  # second shell sqrt(3) d1, third at 2 d1: half-width 0.13 d1
            lat = np.abs(dist - centre) < 0.13 * nn
            if lat.sum() < 3:
                break
            centre = float(dist[lat].mean())
    else:
        lat = first
    if lat.sum() < 3:
        raise GombnetError(f"too few {kind} lattice vectors found; are these positions of one {kind} layer?")
    vec = pos[j[lat]] - pos[i[lat]]
    length = dist[lat]
    orient, spread = _circular_mean_deg(np.arctan2(vec[:, 1], vec[:, 0]), 60.0)
    refined = _structure_factor_orientation_deg(pos, float(length.mean()), orient)
    # a refinement that wandered off to another peak keeps the neighbour-vector mean
    if abs((refined - orient + 30.0) % 60.0 - 30.0) < 5.0:
        orient = refined
    n_vec = int(lat.sum())
    std = float(length.std(ddof=1)) if n_vec > 1 else 0.0
    return LatticeMeasurement(
        kind=kind,
        a_angstrom=float(length.mean()),
        a_std_angstrom=std,
        a_sem_angstrom=std / math.sqrt(n_vec),
        a_median_angstrom=float(np.median(length)),
        nn_distance_angstrom=nn,
        a_from_nn_angstrom=SQRT3 * nn if kind == "honeycomb" else nn,
        orientation_deg=orient,
        orientation_spread_deg=spread,
        n_atoms=int(pos.shape[0]),
        n_vectors=n_vec,
        coordination=coordination,
    )


def lattice_constant(positions_angstrom, *, kind: str = "auto", field_of_view_angstrom=None) -> float:
    """Lattice constant [Å] of one layer; see :func:`measure_lattice`."""
    return measure_lattice(positions_angstrom, kind=kind, field_of_view_angstrom=field_of_view_angstrom).a_angstrom


def lattice_orientation(positions_angstrom, *, kind: str = "auto", field_of_view_angstrom=None) -> float:
    """Lattice-vector direction [deg, 0–60) of one layer; see :func:`measure_lattice`."""
    return measure_lattice(
        positions_angstrom, kind=kind, field_of_view_angstrom=field_of_view_angstrom
    ).orientation_deg


@dataclass(frozen=True)
class TwistMeasurement:
    """Relative rotation of two hexagonal layers.

    Attributes
    ----------
    twist_deg : float
        Twist in [0, 30] degrees: ``min(raw, 60 - raw)``. A twist of θ and of 60° − θ give
        mirror-image moirés of a six-fold lattice.
    raw_deg : float
        ``(orientation_b - orientation_a) mod 60`` in [0, 60) degrees.
    orientation_a_deg, orientation_b_deg : float
        Lattice orientations of the layers [deg, 0–60).
    polar_raw_deg : float or None
        For TMDs when chalcogen positions were given: ``(polar_b - polar_a) mod 120``
        [deg] from :func:`polar_orientation`. Near 0 (or 120) the layers are parallel
        (R-type), near 60 antiparallel (H-type, as in 2H stacking).
    """

    twist_deg: float
    raw_deg: float
    orientation_a_deg: float
    orientation_b_deg: float
    polar_raw_deg: float | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def twist_from_orientations(orientation_a_deg: float, orientation_b_deg: float) -> tuple[float, float]:
    """Twist [0, 30] and raw relative rotation [0, 60) in degrees from two orientations."""
    for name, v in (("orientation_a_deg", orientation_a_deg), ("orientation_b_deg", orientation_b_deg)):
        if not math.isfinite(float(v)):
            raise GombnetError(f"{name} must be finite")
    raw = (float(orientation_b_deg) - float(orientation_a_deg)) % 60.0
    if math.isclose(raw, 60.0, abs_tol=1e-9):
        raw = 0.0
    return min(raw, 60.0 - raw), raw


def polar_orientation(w_angstrom, x_angstrom, *, max_distance_angstrom: float = 2.6) -> float:
    """Three-fold orientation [deg, 0–120) of a TMD layer from W→chalcogen vectors.

    The W lattice alone is six-fold; the projected vectors from each W to its nearest
    chalcogen columns (ideally ``a / sqrt(3)`` = 1.82 Å long, 120° apart) distinguish a
    layer from the same layer rotated by 60°.

    Parameters
    ----------
    w_angstrom, x_angstrom : (N, 2) arrays
        W and chalcogen-column positions of one layer [Å].
    max_distance_angstrom : float
        Largest accepted W–X projected distance [Å].
    """
    w = _as_positions(w_angstrom, "w_angstrom", min_count=1)
    x = _as_positions(x_angstrom, "x_angstrom", min_count=1)
    rmax = _positive(max_distance_angstrom, "max_distance_angstrom", upper=100.0)
    i, j, _ = neighbor_pairs(w, neighbors_angstrom=x, k=3, max_distance_angstrom=rmax)
    if i.size < 3:
        raise GombnetError("too few W–chalcogen pairs within max_distance_angstrom")
    vec = x[j] - w[i]
    return _circular_mean_deg(np.arctan2(vec[:, 1], vec[:, 0]), 120.0)[0]


def twist_angle(
    positions_a_angstrom,
    positions_b_angstrom,
    *,
    kind: str = "auto",
    chalcogens_a_angstrom=None,
    chalcogens_b_angstrom=None,
) -> TwistMeasurement:
    """Twist angle between two layers from their atom positions.

    Parameters
    ----------
    positions_a_angstrom, positions_b_angstrom : (N, 2) arrays
        Positions [Å] of layer A and layer B (graphene: all C; TMD: W sites).
    kind : {"auto", "honeycomb", "triangular"}
        Lattice kind of both layers (see :func:`measure_lattice`).
    chalcogens_a_angstrom, chalcogens_b_angstrom : (M, 2) arrays, optional
        Chalcogen columns of the TMD layers; with both given, ``polar_raw_deg`` is set.

    Returns
    -------
    TwistMeasurement
    """
    ma = measure_lattice(positions_a_angstrom, kind=kind)
    mb = measure_lattice(positions_b_angstrom, kind=kind)
    if ma.kind != mb.kind:
        raise GombnetError(f"layer A looks {ma.kind} but layer B {mb.kind}; pass kind= explicitly")
    twist, raw = twist_from_orientations(ma.orientation_deg, mb.orientation_deg)
    polar = None
    if (chalcogens_a_angstrom is None) != (chalcogens_b_angstrom is None):
        raise GombnetError("give chalcogen positions of both layers or of neither")
    if chalcogens_a_angstrom is not None:
        pa = polar_orientation(positions_a_angstrom, chalcogens_a_angstrom)
        pb = polar_orientation(positions_b_angstrom, chalcogens_b_angstrom)
        polar = (pb - pa) % 120.0
    return TwistMeasurement(
        twist_deg=twist,
        raw_deg=raw,
        orientation_a_deg=ma.orientation_deg,
        orientation_b_deg=mb.orientation_deg,
        polar_raw_deg=polar,
    )


# --------------------------------------------------------------------------- FFT


@dataclass(frozen=True)
class FFTLattice:
    """One hexagonal lattice found in the power spectrum.

    Attributes
    ----------
    spacing_angstrom : float
        Mean spacing of the first-order lattice planes, ``1 / |g|`` [Å]
        (graphene 2.13 Å, WS2 2.73 Å).
    a_angstrom : float
        Lattice constant [Å]: mean length of the three shortest real-space lattice
        vectors (``2 * spacing / sqrt(3)`` for an undistorted lattice).
    a_std_angstrom : float
        Spread (standard deviation) of those three lengths [Å]; a measure of the
        lattice's anisotropic distortion (scan distortion, uniaxial strain), 0 if ideal.
    orientation_deg : float
        Real-space lattice-vector direction [deg, 0–60), same convention as
        :func:`measure_lattice` (the spots lie at this angle ± 30°).
    spot_orientation_deg : float
        Direction of the first-order spots [deg, 0–60).
    strength : float
        Summed power of its spots relative to the strongest lattice found (1 = strongest).
    spots_k_per_angstrom : list of [kx, ky]
        The three refined spots ``g1, g1 + g2, g2`` in the half plane [1/Å]; the other
        three are their negatives.
    """

    spacing_angstrom: float
    a_angstrom: float
    a_std_angstrom: float
    orientation_deg: float
    spot_orientation_deg: float
    strength: float
    spots_k_per_angstrom: list = field(default_factory=list)

    @property
    def n_spots(self) -> int:
        """Spots of the lattice in the full spectrum (always 6: three Friedel pairs)."""
        return 2 * len(self.spots_k_per_angstrom)

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class FFTLatticeResult:
    """Lattices found by :func:`fft_lattice`, strongest first.

    Attributes
    ----------
    lattices : list of FFTLattice
    twist_deg, raw_twist_deg : float or None
        Twist [0, 30] and raw relative rotation [0, 60) between the two strongest lattices
        (None with fewer than two).
    pixel_size_angstrom : float
    k_resolution_per_angstrom : float
        FFT bin width ``1 / (N * pixel_size)`` of the unpadded image [1/Å], the scale of
        the spot-position uncertainty before sub-bin refinement.
    """

    lattices: list
    twist_deg: float | None
    raw_twist_deg: float | None
    pixel_size_angstrom: float
    k_resolution_per_angstrom: float

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def _int_in(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise GombnetError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _refine_peak(logp: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """Sub-bin peak position from parabolas through log power along each axis."""

    def offset(m1: float, m0: float, p1: float) -> float:
        denom = m1 - 2.0 * m0 + p1
        if denom >= 0:
            return 0.0
        return float(np.clip(0.5 * (m1 - p1) / denom, -0.5, 0.5))

    h, w = logp.shape
    dr = offset(logp[r - 1, c], logp[r, c], logp[r + 1, c]) if 0 < r < h - 1 else 0.0
    dc = offset(logp[r, c - 1], logp[r, c], logp[r, c + 1]) if 0 < c < w - 1 else 0.0
    return r + dr, c + dc


def _lattice_from_triplet(g1: np.ndarray, g2: np.ndarray, g3: np.ndarray) -> dict:
    """Reciprocal basis (least squares on g1 + g3 = g2) and real-space lattice."""
    b1 = (2.0 * g1 - g3 + g2) / 3.0
    b2 = (2.0 * g3 - g1 + g2) / 3.0
    real = np.linalg.inv(np.vstack([b1, b2]))  # columns a1, a2 with a_i . b_j = delta_ij
    a1, a2 = real[:, 0], real[:, 1]
    # b1, b2 are ~120° apart, so a1, a2 are ~60° apart and a1 - a2 is the third short vector.
    vecs = np.vstack([a1, a2, a1 - a2])
    lengths = np.hypot(vecs[:, 0], vecs[:, 1])
    orient, _ = _circular_mean_deg(np.arctan2(vecs[:, 1], vecs[:, 0]), 60.0)
    gs = np.vstack([b1, b1 + b2, b2])
    spot, _ = _circular_mean_deg(np.arctan2(gs[:, 1], gs[:, 0]), 60.0)
    return dict(
        basis=np.vstack([b1, b2]),
        spacing=float(np.mean(1.0 / np.hypot(gs[:, 0], gs[:, 1]))),
        a=float(lengths.mean()),
        a_std=float(lengths.std()),
        orient=orient,
        spot=spot,
    )


def fft_lattice(
    image,
    pixel_size_angstrom: float,
    *,
    min_spacing_angstrom: float = 1.0,
    max_spacing_angstrom: float = 6.0,
    max_lattices: int = 4,
    min_strength: float = 0.05,
    pad_factor: int = 2,
    closure_tolerance_bins: float = 1.0,
    max_distortion: float = 0.15,
    n_candidates: int = 60,
) -> FFTLatticeResult:
    """Find hexagonal lattices from the spots of an image's power spectrum.

    The image (mean removed, Hann window) is Fourier transformed with zero padding;
    local maxima of the power in the annulus ``1/max_spacing < |k| < 1/min_spacing`` are
    refined to sub-bin precision (parabola through the log power). A hexagonal lattice
    shows three Friedel pairs of first-order spots; in the half plane they are
    ``g1, g2, g3`` about 60° apart with the closure ``g1 + g3 = g2``. Triplets of spots
    that close within ``closure_tolerance_bins`` are lattices; the closure survives any
    linear distortion of the image (scan distortion, shear), so angles and lengths may
    deviate by up to ``max_distortion`` from the ideal hexagon. Triplets are accepted
    strongest first without sharing spots; a triplet whose spots are all small-integer
    combinations of stronger lattices' spots (higher orders such as the ``sqrt(3)|g|``
    ring at +30°, or moiré combination spots) is dropped. Two graphene layers rotated
    by 30° give two lattices (12 spots).

    Parameters
    ----------
    image : (H, W) array
        Image, at least 32 × 32 pixels, finite.
    pixel_size_angstrom : float
        Pixel size [Å/px].
    min_spacing_angstrom, max_spacing_angstrom : float
        Range of first-order plane spacings searched [Å]. The default 1–6 Å covers
        graphene (2.13 Å) and TMDs (2.7–2.9 Å) and excludes long moiré periods.
    max_lattices : int
        Most lattices returned.
    min_strength : float
        Drop lattices weaker (summed spot power) than this fraction of the strongest.
    pad_factor : int
        Zero padding factor of the FFT (1–8).
    closure_tolerance_bins : float
        Allowed ``|g1 + g3 - g2|`` in units of the unpadded FFT bin ``1/(N px)``.
    max_distortion : float
        Allowed relative spread of the three spot lengths and of the real-space lattice
        vector lengths, and relative deviation of the 120° angle between g1 and g3.
    n_candidates : int
        Strongest local maxima considered.

    Returns
    -------
    FFTLatticeResult
        Lattices sorted by strength, with the twist between the two strongest.

    Notes
    -----
    Two lattices are resolved only when their spots are about two FFT bins apart,
    i.e. for a twist larger than roughly ``2 k_res / |g|`` radians (about 2.5° for
    graphene in a 50 Å field of view); smaller twists merge into one distorted lattice.
    Precision of ``a`` is a fraction of a bin: ~0.1 % on clean synthetic images.
    """
    try:
        img = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError("image must be a numeric 2-D array") from None
    if img.ndim != 2:
        raise GombnetError(f"image must be 2-D, got shape {img.shape}")
    if min(img.shape) < 32:
        raise GombnetError(f"image must be at least 32 x 32 pixels, got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise GombnetError("image contains NaN or infinite values")
    px = _positive(pixel_size_angstrom, "pixel_size_angstrom", upper=100.0)
    dmin = _positive(min_spacing_angstrom, "min_spacing_angstrom")
    dmax = _positive(max_spacing_angstrom, "max_spacing_angstrom")
    if dmax <= dmin:
        raise GombnetError("max_spacing_angstrom must exceed min_spacing_angstrom")
    dmin = max(dmin, 2.0 * px)  # Nyquist: nothing finer than 2 pixels
    if dmax <= dmin:
        raise GombnetError("the pixel size is too large for the requested spacings")
    pad_factor = _int_in(pad_factor, "pad_factor", 1, 8)
    max_lattices = _int_in(max_lattices, "max_lattices", 1, 100)
    n_candidates = _int_in(n_candidates, "n_candidates", 3, 1000)
    tol_bins = _positive(closure_tolerance_bins, "closure_tolerance_bins", upper=10.0)
    dist_max = _positive(max_distortion, "max_distortion", upper=0.5)
    min_strength = _positive(min_strength, "min_strength", allow_zero=True, upper=1.0)
    if img.std() == 0:
        raise GombnetError("image is constant; no lattice to find")

    h, w = img.shape
    k_res = 1.0 / (max(h, w) * px)
    win = np.outer(np.hanning(h), np.hanning(w))
    hp, wp = pad_factor * h, pad_factor * w
    power = np.abs(np.fft.fftshift(np.fft.fft2((img - img.mean()) * win, s=(hp, wp)))) ** 2
    ky = np.fft.fftshift(np.fft.fftfreq(hp, d=px))
    kx = np.fft.fftshift(np.fft.fftfreq(wp, d=px))
    kr = np.hypot(ky[:, None], kx[None, :])
    # Half plane (angle in [0, 180)): the power spectrum of a real image is centrosymmetric.
    half = (ky[:, None] > 0) | ((ky[:, None] == 0) & (kx[None, :] > 0))
    region = (kr > 1.0 / dmax) & (kr < 1.0 / dmin) & half
    empty = FFTLatticeResult([], None, None, px, k_res)
    if not region.any():
        raise GombnetError("the spacing range is not covered by this image's frequencies")

    logp = np.log(power + power.max() * 1e-30)
    peaks = (ndimage.maximum_filter(power, size=2 * pad_factor + 1, mode="wrap") == power) & region
    rows, cols = np.nonzero(peaks)
    if rows.size < 3:
        return empty
    order = np.argsort(power[rows, cols])[::-1][: int(n_candidates)]
    rows, cols = rows[order], cols[order]
    pw = power[rows, cols]
    g = np.empty((rows.size, 2))
    for n, (r, c) in enumerate(zip(rows, cols)):
        rr, cc = _refine_peak(logp, int(r), int(c))
        g[n] = (kx[0] + cc * (kx[1] - kx[0]), ky[0] + rr * (ky[1] - ky[0]))
    gmag = np.hypot(g[:, 0], g[:, 1])
    gang = np.degrees(np.arctan2(g[:, 1], g[:, 0]))
    tol = tol_bins * k_res

    # Closure triplets g1 + g3 = g2 with g3 about 120° from g1.
    triplets = []
    for i in range(g.shape[0]):
        for j in range(g.shape[0]):
            dang = gang[j] - gang[i]
            if abs(dang - 120.0) > 120.0 * dist_max or abs(gmag[j] / gmag[i] - 1.0) > dist_max:
                continue
            miss = np.hypot(*(g - (g[i] + g[j])).T)
            miss[[i, j]] = np.inf
            m = int(np.argmin(miss))
            lengths = gmag[[i, m, j]]
            if miss[m] <= tol and lengths.max() / lengths.min() - 1.0 <= dist_max:
                triplets.append((float(pw[i] + pw[j] + pw[m]), i, m, j))
    triplets.sort(reverse=True)

    used = np.zeros(g.shape[0], bool)
    accepted = []
    for score, i, m, j in triplets:
        if used[[i, m, j]].any():
            continue
        lat = _lattice_from_triplet(g[i], g[m], g[j])
        if lat["a_std"] > dist_max * lat["a"]:
            continue
        # Combinations add up the errors of their components: allow twice the tolerance.
        if accepted and _is_combination(g[[i, m, j]], [a["basis"] for a in accepted], 2.0 * tol):
            continue
        if any(_looks_harmonic(lat, a) for a in accepted):
            continue
        used[[i, m, j]] = True
        lat.update(strength=score, spots=g[[i, m, j]].tolist())
        accepted.append(lat)
    if not accepted:
        return empty
    top = accepted[0]["strength"]
    accepted = [a for a in accepted if a["strength"] >= min_strength * top][: int(max_lattices)]
    out = [
        FFTLattice(
            spacing_angstrom=a["spacing"],
            a_angstrom=a["a"],
            a_std_angstrom=a["a_std"],
            orientation_deg=a["orient"],
            spot_orientation_deg=a["spot"],
            strength=a["strength"] / top,
            spots_k_per_angstrom=a["spots"],
        )
        for a in accepted
    ]
    twist = raw = None
    if len(out) >= 2:
        twist, raw = twist_from_orientations(out[0].orientation_deg, out[1].orientation_deg)
    return FFTLatticeResult(out, twist, raw, px, k_res)


def _looks_harmonic(lat: dict, base: dict) -> bool:
    """Loose test for a higher order of ``base``: ``a / sqrt(3)`` at +30° or ``a / 2`` at 0°
    (catches orders of two nearly aligned lattices whose first orders merged)."""

    def near(x: float, y: float) -> bool:
        return abs((x - y + 30.0) % 60.0 - 30.0) <= 5.0

    return (abs(lat["a"] * SQRT3 / base["a"] - 1.0) <= 0.03 and near(lat["orient"], base["orient"] + 30.0)) or (
        abs(lat["a"] * 2.0 / base["a"] - 1.0) <= 0.03 and near(lat["orient"], base["orient"])
    )


def _is_combination(vectors: np.ndarray, bases: list, tol: float, max_index: int = 2) -> bool:
    """True if every vector is a small-integer combination of the given reciprocal bases
    (at most two lattices used), other than a single first-order spot."""
    basis = np.vstack(bases[:2])  # (2 or 4, 2)
    rng = np.arange(-max_index, max_index + 1)
    coeff = np.array(np.meshgrid(*([rng] * basis.shape[0]), indexing="ij")).reshape(basis.shape[0], -1).T
    combos = coeff @ basis  # (C, 2)
    nontrivial = np.abs(coeff).sum(axis=1) > 1
    for v in vectors:
        d = np.hypot(*(combos - v).T)
        if not np.any((d <= tol) & nontrivial):
            return False
    return True

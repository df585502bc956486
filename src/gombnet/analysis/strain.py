"""Local strain, lattice rotation and twist maps of hexagonal layers from atom positions.

Every atom's lattice vectors ``d`` (graphene: its six second neighbours, ``a`` = 2.46 Å away;
a W lattice: its six nearest neighbours) are matched to the vectors ``v`` of a reference
lattice (by default the layer's own mean lattice from
:func:`gombnet.analysis.lattice.measure_lattice`). Around any point the local deformation
gradient ``F`` (``d ≈ F v``) is the weighted least-squares fit over the vectors of the atoms
within a Gaussian window of width ``smoothing_sigma_angstrom``. Its polar decomposition
``F = R U`` gives

* the local lattice rotation (``R``) [deg], positive turning +x towards +y (clockwise on
  screen, where y points down the rows), as every orientation in :mod:`.lattice`;
* the strain ``U - I`` in the image frame (``exx``, ``eyy``, ``exy``; dimensionless),
  the relative area change ``det F - 1`` (dilatation) and the local lattice constant
  ``a sqrt(det F)`` [Å].

The local twist of a bilayer follows from the two layers' local rotations at the same
points: ``twist ± (rotation_b - rotation_a)`` around the twist of the mean lattices.

The maps carry the atoms' localisation noise: on simulated 512 px images of typical conditions
a uniform twist shows a local-twist spread of about 0.09° and a local-rotation spread of about
0.06–0.07° at the default window (``benchmarks/bench_strain.py``). Wider windows average more
atoms and resolve less. Positions are ``(N, 2)`` arrays ``[x, y]`` [Å], x = column,
y = row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from ..errors import GombnetError
from .bonds import _as_positions, _positive, neighbor_pairs
from .lattice import SQRT3, measure_lattice, twist_from_orientations

__all__ = ["DeformationMaps", "LatticeDistortion", "LocalDeformation", "deformation_maps", "lattice_distortion",
           "local_deformation"]

# A pair vector d is one of the lattice's vectors v when |d - F v| < this fraction of a, for the
# current estimate F of the layer's mean deformation: the nearest other pair vectors (a
# honeycomb's first and third shells, a triangular lattice's neighbouring vectors) lie 0.58a and
# 1.0a from v, and a window centred on F v does not cut the distorted lattice's vectors one-sidedly.
_MATCH_FRACTION = 0.2
_KINDS = ("honeycomb", "triangular")
# Points per block of Gaussian weights (bounds the memory of the smoothing).
_CHUNK_POINTS = 4096
# Smallest cut [fraction of a] for vectors off their neighbourhood's fit (see local_deformation).
_MIN_CUT_FRACTION = 0.1
# Lattice atoms per unit area times a^2: honeycomb 4/sqrt(3), triangular 2/sqrt(3).
_ATOMS_PER_A2 = {"honeycomb": 4.0 / SQRT3, "triangular": 2.0 / SQRT3}


@dataclass(frozen=True)
class LocalDeformation:
    """Local deformation of one layer against a reference lattice, at a set of points.

    Attributes
    ----------
    points_angstrom : (M, 2) array
        Where the deformation was evaluated, ``[x, y]`` [Å].
    deformation : (M, 2, 2) array
        Deformation gradient ``F`` (measured vector = ``F`` reference vector); NaN where the
        window holds too few lattice vectors (``coverage`` below ``min_coverage``).
    rotation_deg : (M,) array
        Local lattice rotation against the reference orientation [deg].
    exx, eyy, exy : (M,) arrays
        Strain ``U - I`` in the image frame (dimensionless; 0.01 = 1 %).
    dilatation : (M,) array
        Relative area change ``det F - 1``.
    a_local_angstrom : (M,) array
        Local lattice constant ``a sqrt(det F)`` [Å].
    coverage : (M,) array
        Weighted number of lattice vectors in the window relative to a complete lattice
        (about 1 inside a layer, 0.5 at a straight image edge, 0 in a hole).
    kind : str
        "honeycomb" or "triangular".
    reference_a_angstrom, reference_orientation_deg : float
        Reference lattice constant [Å] and lattice-vector direction [deg, 0–60).
    smoothing_sigma_angstrom : float
        Standard deviation of the Gaussian window [Å].
    n_vectors : int
        Lattice vectors used (each pair counted from both atoms).
    """

    points_angstrom: np.ndarray
    deformation: np.ndarray
    rotation_deg: np.ndarray
    exx: np.ndarray
    eyy: np.ndarray
    exy: np.ndarray
    dilatation: np.ndarray
    a_local_angstrom: np.ndarray
    coverage: np.ndarray
    kind: str
    reference_a_angstrom: float
    reference_orientation_deg: float
    smoothing_sigma_angstrom: float
    n_vectors: int

    @property
    def max_shear(self) -> np.ndarray:
        """Largest shear strain ``sqrt(((exx - eyy) / 2)^2 + exy^2)`` at each point."""
        return np.hypot(0.5 * (self.exx - self.eyy), self.exy)

    def summary(self) -> dict:
        """Medians and spreads of the maps over the points where they are defined.

        Strains are given in percent (``*_percent``), rotations in degrees.
        """
        ok = np.isfinite(self.rotation_deg)
        out = {
            "kind": self.kind,
            "reference_a_angstrom": self.reference_a_angstrom,
            "reference_orientation_deg": self.reference_orientation_deg,
            "smoothing_sigma_angstrom": self.smoothing_sigma_angstrom,
            "n_vectors": self.n_vectors,
            "n_points": int(ok.sum()),
        }
        fields = {
            "rotation_deg": self.rotation_deg,
            "dilatation_percent": 100.0 * self.dilatation,
            "exx_percent": 100.0 * self.exx,
            "eyy_percent": 100.0 * self.eyy,
            "exy_percent": 100.0 * self.exy,
            "max_shear_percent": 100.0 * self.max_shear,
            "a_local_angstrom": self.a_local_angstrom,
        }
        for name, values in fields.items():
            out[name] = _spread(values[ok])
        return out


@dataclass(frozen=True)
class DeformationMaps:
    """Local deformation of each layer on one grid and, for two or more layers, the local
    twist between the first two.

    Attributes
    ----------
    x_angstrom : (W,) array
        Grid column positions [Å].
    y_angstrom : (H,) array
        Grid row positions [Å].
    layers : list of LocalDeformation
        Each layer's deformation against its own mean lattice at the grid points
        (row-major, ``H * W`` points); :meth:`grid` shapes a field as a map.
    twist_deg : (H, W) array or None
        Local twist of layer 1 against layer 0 [deg]; NaN where either is missing.
    twist_of_mean_lattices_deg, raw_of_mean_lattices_deg : float or None
        Twist [0, 30] and raw relative rotation [0, 60) of the two mean lattices, around
        which the local twist varies.
    """

    x_angstrom: np.ndarray
    y_angstrom: np.ndarray
    layers: list
    twist_deg: np.ndarray | None = None
    twist_of_mean_lattices_deg: float | None = None
    raw_of_mean_lattices_deg: float | None = None

    def grid(self, values: np.ndarray) -> np.ndarray:
        """A per-point field of one of :attr:`layers` as an ``(H, W)`` map."""
        return np.asarray(values).reshape(len(self.y_angstrom), len(self.x_angstrom))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The maps as named arrays (for ``numpy.savez``): ``x_angstrom`` (W,), ``y_angstrom``
        (H,), per layer ``layer{k}_rotation_deg``, ``_dilatation``, ``_exx``, ``_eyy``, ``_exy``
        and ``_coverage`` (H, W), and ``twist_deg`` (H, W) for two or more layers; NaN where a
        layer has no lattice."""
        out = {"x_angstrom": self.x_angstrom, "y_angstrom": self.y_angstrom}
        for k, d in enumerate(self.layers):
            for name in ("rotation_deg", "dilatation", "exx", "eyy", "exy", "coverage"):
                out[f"layer{k}_{name}"] = self.grid(getattr(d, name))
        if self.twist_deg is not None:
            out["twist_deg"] = self.twist_deg
        return out

    def summary(self) -> dict:
        """Per layer the spreads of :meth:`LocalDeformation.summary` over the grid, and
        the spread of the local twist [deg]."""
        out = {
            "grid_spacing_angstrom": float(self.x_angstrom[1] - self.x_angstrom[0])
            if len(self.x_angstrom) > 1 else None,
            "layers": {f"layer{k}": d.summary() for k, d in enumerate(self.layers)},
        }
        if self.twist_deg is not None:
            out["twist_of_mean_lattices_deg"] = self.twist_of_mean_lattices_deg
            out["local_twist_deg"] = _spread(self.twist_deg[np.isfinite(self.twist_deg)])
        return out


def _spread(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"median": None, "std": None, "p2_5": None, "p97_5": None}
    p = np.percentile(values, [2.5, 50.0, 97.5])
    return {"median": float(p[1]), "std": float(values.std()), "p2_5": float(p[0]), "p97_5": float(p[2])}


def _matched_vectors(pos: np.ndarray, kind: str, a: float, orientation_deg: float, f=None):
    """Lattice vectors of every atom matched to reference vectors v: (atom index, d, v).

    ``f`` (2x2, default identity) is where the reference vectors are expected: d ~ f v."""
    f = np.eye(2) if f is None else f
    reach = (np.linalg.norm(f, 2) + _MATCH_FRACTION) * a
    i, j, _ = neighbor_pairs(pos, max_distance_angstrom=reach, unique=False)
    d = pos[j] - pos[i]
    back = d @ np.linalg.inv(f).T
    k = np.round((np.degrees(np.arctan2(back[:, 1], back[:, 0])) - orientation_deg) / 60.0)
    theta = np.radians(orientation_deg + 60.0 * k)
    v = a * np.column_stack([np.cos(theta), np.sin(theta)])
    ok = np.hypot(*(d - v @ f.T).T) < _MATCH_FRACTION * a
    return i[ok], d[ok], v[ok]


def _outer_sums(n_atoms: int, i: np.ndarray, d: np.ndarray, v: np.ndarray):
    """Per atom: sum of d v^T and of v v^T (flattened to 4), and the number of vectors."""
    dv = (d[:, :, None] * v[:, None, :]).reshape(-1, 4)
    vv = (v[:, :, None] * v[:, None, :]).reshape(-1, 4)
    s_dv = np.zeros((n_atoms, 4))
    s_vv = np.zeros((n_atoms, 4))
    np.add.at(s_dv, i, dv)
    np.add.at(s_vv, i, vv)
    return s_dv, s_vv, np.bincount(i, minlength=n_atoms).astype(np.float64)


def _smoothed(points: np.ndarray, pos: np.ndarray, sigma: float, s_dv, s_vv, n):
    """Sums of the per-atom s_dv, s_vv and n over the atoms within 3 sigma of each point,
    weighted by a Gaussian of standard deviation sigma.

    Points are taken in chunks so that the weights of a large image (60 000 atoms, ~260 in
    each window) never sit in memory at once."""
    per_atom = np.column_stack([s_dv, s_vv, n])
    out = np.zeros((len(points), per_atom.shape[1]))
    tree = cKDTree(pos)
    for start in range(0, len(points), _CHUNK_POINTS):
        chunk = points[start:start + _CHUNK_POINTS]
        pairs = cKDTree(chunk).sparse_distance_matrix(tree, 3.0 * sigma, output_type="ndarray")
        w = sparse.csr_matrix((np.exp(-0.5 * (pairs["v"] / sigma) ** 2), (pairs["i"], pairs["j"])),
                              shape=(len(chunk), len(pos)))
        out[start:start + len(chunk)] = w @ per_atom
    return out[:, :4], out[:, 4:8], out[:, 8]


def _solve(s_dv: np.ndarray, s_vv: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """F = S_dv S_vv^-1 per point (NaN where not usable, or where the vectors all point one way)."""
    f = np.full((len(s_dv), 2, 2), np.nan)
    vv = s_vv.reshape(-1, 2, 2)
    # an isotropic star of vectors has det / trace^2 = 1/4, vectors along one line 0
    usable = usable & (vv[:, 0, 0] * vv[:, 1, 1] - vv[:, 0, 1] * vv[:, 1, 0] > 1e-3 * (vv[:, 0, 0] + vv[:, 1, 1]) ** 2)
    if usable.any():
        f[usable] = s_dv[usable].reshape(-1, 2, 2) @ np.linalg.inv(s_vv[usable].reshape(-1, 2, 2))
    return f


def _decompose(f: np.ndarray):
    """Polar decomposition of 2x2 matrices: rotation [rad] and the symmetric U - I."""
    phi = np.arctan2(f[:, 1, 0] - f[:, 0, 1], f[:, 0, 0] + f[:, 1, 1])
    c, s = np.cos(phi), np.sin(phi)
    rt = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # R^T
    u = rt @ f
    u = 0.5 * (u + np.swapaxes(u, 1, 2))
    return phi, u[:, 0, 0] - 1.0, u[:, 1, 1] - 1.0, u[:, 0, 1]


def _mean_deformation(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One least-squares F (d = F v) over all vectors."""
    return _solve(np.sum(d[:, :, None] * v[:, None, :], 0).reshape(1, 4),
                  np.sum(v[:, :, None] * v[:, None, :], 0).reshape(1, 4), np.ones(1, bool))[0]


def _reference_vectors(pos: np.ndarray, kind: str, a_angstrom, orientation_deg, field_of_view_angstrom):
    """Reference lattice (kind, a [Å], orientation [deg]) and the matched vectors (i, d, v)."""
    ref = None
    if kind == "auto" or a_angstrom is None or orientation_deg is None:
        ref = measure_lattice(pos, kind=kind, field_of_view_angstrom=field_of_view_angstrom)
        kind = ref.kind
    if kind not in _KINDS:
        raise GombnetError(f"kind must be one of auto, honeycomb, triangular, got {kind!r}")
    a = ref.a_angstrom if a_angstrom is None else _positive(a_angstrom, "a_angstrom", upper=100.0)
    if orientation_deg is None:
        orientation = ref.orientation_deg
    elif math.isfinite(float(orientation_deg)):
        orientation = float(orientation_deg) % 60.0
    else:
        raise GombnetError("orientation_deg must be finite")
    vectors = _matched_vectors(pos, kind, a, orientation)
    if len(vectors[0]) < 3:
        raise GombnetError(f"too few {kind} lattice vectors near a = {a:.3f} Å; is this one layer's lattice?")
    if a_angstrom is None or orientation_deg is None:
        # the layer's mean lattice as the least-squares fit of all its vectors (the mean
        # vector length is biased long by position noise and by anisotropic strain)
        if not np.isfinite(_mean_deformation(*vectors[1:])).all():
            raise GombnetError(f"the {kind} lattice vectors all point one way; is this a 2-D lattice?")
        a, orientation, f_all, m = _refit_reference(*vectors[1:], a, orientation, fit_a=a_angstrom is None,
                                                    fit_orientation=orientation_deg is None)
        # match again where the distorted lattice's vectors are expected: d ~ f_all v = f_all m^-1 v_new
        vectors = _matched_vectors(pos, kind, a, orientation, f_all @ np.linalg.inv(m))
    return kind, a, orientation, vectors


def _refit_reference(d, v, a: float, orientation: float, *, fit_a: bool, fit_orientation: bool):
    """Move the reference lattice onto the least-squares mean lattice of the vectors.

    Returns the new a [Å] and orientation [deg], the mean deformation against the old
    reference, and m = scale R(phi), which takes old reference vectors to new ones."""
    f_all = _mean_deformation(d, v)
    scale = math.sqrt(abs(np.linalg.det(f_all))) if fit_a else 1.0
    phi = float(_decompose(f_all[None])[0][0]) if fit_orientation else 0.0
    m = scale * np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    return a * scale, (orientation + math.degrees(phi)) % 60.0, f_all, m


def local_deformation(
    positions_angstrom,
    *,
    kind: str = "auto",
    at_angstrom=None,
    a_angstrom: float | None = None,
    orientation_deg: float | None = None,
    smoothing_sigma_angstrom: float | None = None,
    min_coverage: float = 0.25,
    field_of_view_angstrom=None,
) -> LocalDeformation:
    """Local strain and lattice rotation of one hexagonal layer.

    Parameters
    ----------
    positions_angstrom : (N, 2) array
        Atom positions ``[x, y]`` [Å] of one layer (graphene: all C; a TMD: the W columns).
        At least 7.
    kind : {"auto", "honeycomb", "triangular"}
        Lattice kind (see :func:`gombnet.analysis.lattice.measure_lattice`).
    at_angstrom : (M, 2) array, optional
        Points [Å] where the deformation is wanted. Default: the atoms themselves.
    a_angstrom : float, optional
        Reference lattice constant [Å], e.g. 2.46 for strain against free graphene.
        Default: the layer's mean lattice constant, from one least-squares fit of all its
        vectors (the strain then averages about 0).
    orientation_deg : float, optional
        Reference lattice-vector direction [deg]. Default: the layer's mean orientation,
        from the same fit.
    smoothing_sigma_angstrom : float, optional
        Standard deviation [Å] of the Gaussian window that pools lattice vectors. Default
        ``2 a`` (4.9 Å for graphene, 6.3 Å for WS2): features smaller than about twice this
        are smoothed out.
    min_coverage : float
        Points whose window holds less than this share of a complete lattice's weighted
        vectors get NaN (holes, the other side of a layer edge).
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        Field of view [Å] for the reference lattice measurement (interior atoms).

    Returns
    -------
    LocalDeformation

    Raises
    ------
    GombnetError
        Too few atoms or lattice vectors, NaN, or parameters out of range.
    """
    pos = _as_positions(positions_angstrom, min_count=7)
    points = pos if at_angstrom is None else _as_positions(at_angstrom, "at_angstrom", min_count=1)
    if not 0.0 < float(min_coverage) < 1.0:
        raise GombnetError(f"min_coverage must be in (0, 1), got {min_coverage!r}")
    kind, a, orientation, (i, d, v) = _reference_vectors(pos, kind, a_angstrom, orientation_deg,
                                                         field_of_view_angstrom)
    sigma = 2.0 * a if smoothing_sigma_angstrom is None else _positive(
        smoothing_sigma_angstrom, "smoothing_sigma_angstrom", upper=1e4)
    s_dv, s_vv, n = _outer_sums(len(pos), i, d, v)
    # vectors far off their neighbourhood's fit (atoms of the other layer, false atoms) are
    # dropped; the cut sits at 4x the residuals' own scale, so it never trims the noise of a
    # noisy image one-sidedly (at 2.2 sigma it moved a real image's mean area by 0.4 %)
    sm_dv, sm_vv, sm_n = _smoothed(pos, pos, sigma, s_dv, s_vv, n)
    f_atoms = _solve(sm_dv, sm_vv, sm_n >= 3)
    resid = np.hypot(*(d - np.einsum("mkl,ml->mk", f_atoms[i], v)).T)
    finite = np.isfinite(resid)
    if finite.any():
        # median of a 2-D Gaussian residual's length is 1.1774 sigma
        cut = np.clip(4.0 * np.median(resid[finite]) / 1.1774, _MIN_CUT_FRACTION * a, _MATCH_FRACTION * a)
        keep = ~finite | (resid <= cut)
        if keep.sum() >= 3:
            i, d, v = i[keep], d[keep], v[keep]
            if a_angstrom is None or orientation_deg is None:
                # the default reference is the mean lattice of the vectors kept
                a, orientation, _, m = _refit_reference(d, v, a, orientation, fit_a=a_angstrom is None,
                                                        fit_orientation=orientation_deg is None)
                v = v @ m.T
            s_dv, s_vv, n = _outer_sums(len(pos), i, d, v)
    sm_dv, sm_vv, sm_n = _smoothed(points, pos, sigma, s_dv, s_vv, n)
    # weighted vectors of a complete lattice: 6 per atom, atoms per area x 2 pi sigma^2
    full = 6.0 * _ATOMS_PER_A2[kind] / a**2 * 2.0 * math.pi * sigma**2
    coverage = sm_n / full
    f = _solve(sm_dv, sm_vv, coverage >= float(min_coverage))
    phi, exx, eyy, exy = _decompose(f)
    det = f[:, 0, 0] * f[:, 1, 1] - f[:, 0, 1] * f[:, 1, 0]
    return LocalDeformation(
        points_angstrom=points,
        deformation=f,
        rotation_deg=np.degrees(phi),
        exx=exx,
        eyy=eyy,
        exy=exy,
        dilatation=det - 1.0,
        a_local_angstrom=a * np.sqrt(det),
        coverage=coverage,
        kind=kind,
        reference_a_angstrom=float(a),
        reference_orientation_deg=float(orientation),
        smoothing_sigma_angstrom=float(sigma),
        n_vectors=int(len(i)),
    )


def _layer_list(positions_by_layer) -> list[np.ndarray]:
    layers = [_as_positions(p, f"layer {k} positions_angstrom", min_count=7)
              for k, p in enumerate(positions_by_layer)]
    if not layers:
        raise GombnetError("positions_by_layer is empty; give the positions of at least one layer")
    return layers


def deformation_maps(
    positions_by_layer,
    *,
    kind: str = "auto",
    grid_spacing_angstrom: float = 1.0,
    smoothing_sigma_angstrom: float | None = None,
    field_of_view_angstrom=None,
) -> DeformationMaps:
    """Maps of each layer's local strain and rotation, and of the local twist.

    Each layer's deformation (against its own mean lattice) is evaluated on one grid. With
    two or more layers the local twist of layer 1 against layer 0 is the twist of the mean
    lattices plus the difference of the local rotations, with the sign that makes it grow
    where the layers turn further apart.

    Parameters
    ----------
    positions_by_layer : sequence of (N, 2) arrays
        Positions [Å] of each layer (graphene: all C; TMD: W sites), at least 7 each.
    kind : {"auto", "honeycomb", "triangular"}
    grid_spacing_angstrom : float
        Grid step [Å]. The grid covers the field of view.
    smoothing_sigma_angstrom : float, optional
        Gaussian window [Å]; default ``2 a`` of the first layer.
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        Default: the bounding box of all layers.

    Returns
    -------
    DeformationMaps
    """
    layers = _layer_list(positions_by_layer)
    step = _positive(grid_spacing_angstrom, "grid_spacing_angstrom", upper=1e3)
    if field_of_view_angstrom is None:
        both = np.vstack(layers)
        (x0, y0), (x1, y1) = both.min(axis=0), both.max(axis=0)
    else:
        x0, y0, x1, y1 = (float(v) for v in field_of_view_angstrom)
    n_points = ((x1 - x0) / step + 1) * ((y1 - y0) / step + 1)
    if n_points > 4e6:
        raise GombnetError(f"grid_spacing_angstrom {step} gives {n_points:.0f} grid points; use a coarser grid")
    xs = np.arange(x0 + 0.5 * step, x1, step) if x1 - x0 > step else np.array([0.5 * (x0 + x1)])
    ys = np.arange(y0 + 0.5 * step, y1, step) if y1 - y0 > step else np.array([0.5 * (y0 + y1)])
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    defs = []
    for p in layers:
        defs.append(local_deformation(p, kind=kind, at_angstrom=grid, smoothing_sigma_angstrom=smoothing_sigma_angstrom,
                                      field_of_view_angstrom=field_of_view_angstrom))
        # one window for all layers, so that their rotations are compared at one resolution
        smoothing_sigma_angstrom = defs[0].smoothing_sigma_angstrom
    if len({d.kind for d in defs}) > 1:
        raise GombnetError(f"the layers look {' / '.join(d.kind for d in defs)}; pass kind= explicitly")
    if len(defs) < 2:
        return DeformationMaps(x_angstrom=xs, y_angstrom=ys, layers=defs)
    twist, raw = twist_from_orientations(defs[0].reference_orientation_deg, defs[1].reference_orientation_deg)
    # twist = raw for raw <= 30 deg, 60 - raw above: a relative rotation turns it the other way
    sign = 1.0 if raw <= 30.0 else -1.0
    local = twist + sign * (defs[1].rotation_deg - defs[0].rotation_deg)
    return DeformationMaps(
        x_angstrom=xs,
        y_angstrom=ys,
        layers=defs,
        twist_deg=local.reshape(len(ys), len(xs)),
        twist_of_mean_lattices_deg=float(twist),
        raw_of_mean_lattices_deg=float(raw),
    )


@dataclass(frozen=True)
class LatticeDistortion:
    """Anisotropic distortion of each layer's mean lattice, the part the layers share, and
    the heterostrain between the first two.

    A scan distortion (drift, a slow-scan axis not square to the fast one) deforms every
    layer of the image alike; a heterostrain deforms one layer against the other. Strain
    tensors are ``U - I`` of the mean deformation with its isotropic part (the pixel size's
    business, see the calibration check) divided out, in the image frame, in percent.

    Attributes
    ----------
    layers : list of dict
        Per layer ``exx``, ``eyy``, ``exy``, ``max_shear`` [%], ``stretch_axis_deg`` (the
        direction of largest stretch, from +x towards +y) and ``a_angstrom`` (mean lattice
        constant, isotropic part).
    common : dict
        The same for the mean distortion of all layers.
    heterostrain : dict or None
        Layer 1 minus layer 0 (two or more layers): ``exx``, ``eyy``, ``exy``, ``max_shear``
        [%] of the anisotropic part and ``isotropic`` [%] = ``a_1 / a_0 - 1``. A distortion
        common to both layers cancels in it.
    matrix : (2, 2) array
        The common distortion ``U`` (symmetric, determinant 1); :meth:`undistort` applies
        its inverse.
    """

    layers: list
    common: dict
    heterostrain: dict | None
    matrix: np.ndarray

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return {"layers": self.layers, "common": self.common, "heterostrain": self.heterostrain,
                "matrix": self.matrix.tolist()}

    def undistort(self, positions_angstrom, centre_angstrom=(0.0, 0.0)) -> np.ndarray:
        """Positions ``[x, y]`` [Å] with the common distortion removed about ``centre_angstrom``.

        The inverse is area-preserving, so mean bond lengths and the pixel-size calibration
        stay as they were; only the direction-dependent stretch goes.
        """
        pos = _as_positions(positions_angstrom, min_count=0)
        c = np.asarray(centre_angstrom, dtype=np.float64).reshape(2)
        return (pos - c) @ np.linalg.inv(self.matrix).T + c


def _strain_entry(u: np.ndarray) -> dict:
    e = u - np.eye(2)
    exx, eyy, exy = float(e[0, 0]), float(e[1, 1]), float(0.5 * (e[0, 1] + e[1, 0]))
    return {"exx": 100.0 * exx, "eyy": 100.0 * eyy, "exy": 100.0 * exy,
            "max_shear": 100.0 * math.hypot(0.5 * (exx - eyy), exy),
            "stretch_axis_deg": math.degrees(0.5 * math.atan2(2.0 * exy, exx - eyy)) % 180.0}


def lattice_distortion(positions_by_layer, *, kind: str = "auto", field_of_view_angstrom=None) -> LatticeDistortion:
    """Anisotropic distortion of each layer's mean lattice and of all layers together.

    Each layer's mean deformation is one least-squares fit of all its lattice vectors to an
    ideal hexagonal lattice (as in :func:`local_deformation`); its symmetric part with unit
    determinant is the layer's anisotropic distortion.

    Parameters
    ----------
    positions_by_layer : sequence of (N, 2) arrays
        Positions [Å] of each layer (graphene: all C; TMD: W sites), at least 7 each.
    kind : {"auto", "honeycomb", "triangular"}
    field_of_view_angstrom : (x_min, y_min, x_max, y_max), optional
        For the lattice measurement (interior atoms).

    Returns
    -------
    LatticeDistortion
    """
    layers = _layer_list(positions_by_layer)
    us, entries = [], []
    for pos in layers:
        kind_k, a, _, (_, d, v) = _reference_vectors(pos, kind, None, None, field_of_view_angstrom)
        f = _mean_deformation(d, v)
        phi = _decompose(f[None])[0][0]
        c, s = math.cos(phi), math.sin(phi)
        u = np.array([[c, s], [-s, c]]) @ f
        u = 0.5 * (u + u.T)
        u /= math.sqrt(np.linalg.det(u))
        us.append(u)
        entries.append({**_strain_entry(u), "a_angstrom": float(a), "kind": kind_k})
    common = np.mean(us, axis=0)
    common /= math.sqrt(np.linalg.det(common))
    hetero = None
    if len(us) >= 2:
        hetero = _strain_entry(np.eye(2) + us[1] - us[0])
        del hetero["stretch_axis_deg"]
        hetero["isotropic"] = 100.0 * (entries[1]["a_angstrom"] / entries[0]["a_angstrom"] - 1.0)
    return LatticeDistortion(layers=entries, common=_strain_entry(common), heterostrain=hetero, matrix=common)

"""How precisely the columns of a simulated image can be located at all: the Cramér-Rao bound.

For an image with Poisson counting noise (and Gaussian read noise) the expected counts
lambda_p of pixel p depend on every column's position. The Fisher information of the
positions theta is

    F = J^T diag(1 / var) J,   J[p, k] = d lambda_p / d theta_k,   var_p = lambda_p + read_sd^2,

and no unbiased estimator can locate column j with a smaller covariance than the (x_j, y_j)
block of F^-1. All columns' positions are estimated together here, so overlapping columns
(two layers nearly on top of each other) share their information as they must. What the bound
leaves out makes it lower than the true limit, never higher: the amplitudes, probe and
background are taken as known (and, with ``contamination_unknown=False``, where the amorphous
contamination atoms are), and the per-row gain and offset noise of the scan is ignored. Each
column's derivative image is computed on a patch around it (``patch_radius_px``); the Bayesian
bound settles within a few per cent at the default, the plain one keeps rising slowly with the
patch as more weakly seen columns outside the image join the fit.

An estimator that knows the ideal lattice may also use that a column sits within its thermal
displacement of it (the network learns that prior): the Bayesian bound adds the prior's
precision 1 / sigma_prior^2 to F's diagonal (van Trees), sigma_prior being the standard
deviation of the column's weighted centroid when each atom vibrates with
``vibration_sigma_angstrom`` per direction.

Pixel convention: x = column, y = row; the centre of pixel (row r, col c) is (x, y) = (c, r).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import GombnetError
from .imaging import SPLAT_SIGMA_PX, probe_fwhm_angstrom, render_haadf
from .sample import Scene

__all__ = ["column_position_bound"]

_STEP_PX = 0.05  # central-difference step of the derivative images [px]
_MIN_VARIANCE_COUNTS = 0.1  # floor of a pixel's variance [counts^2], see column_position_bound


def _patch_radius_px(scene: Scene) -> int:
    """Half-width [px] of the patch that holds a column's derivative image.

    Eight standard deviations of the blurred atom (Gaussian size and the probe core added in
    quadrature) plus the defocus blur of the probe (C1 * alpha, the geometric radius of a
    defocused probe), and at least two widths of the probe's halo when it has one: the
    derivative images of neighbouring columns overlap through these tails, and leaving the
    overlap out would make the columns look more independent than they are.
    """
    kw, px = scene.render_kwargs, scene.params["pixel_size_angstrom"]
    core = defocus = halo = 0.0
    if kw.get("energy_kev") is not None and kw.get("convergence_mrad") is not None:
        core = probe_fwhm_angstrom(kw["energy_kev"], kw["convergence_mrad"]) / 2.3548 / px
        aberration = abs(kw.get("defocus_angstrom", 0.0)) + abs(kw.get("astigmatism_angstrom", 0.0))
        defocus = aberration * kw["convergence_mrad"] * 1e-3 / px
        if kw.get("probe_tail_fraction", 0.0) > 0:
            halo = 2.0 * kw.get("probe_tail_sigma_angstrom", 0.0) / px
    blur = math.hypot(max(kw.get("sigma_px", 0.0), SPLAT_SIGMA_PX), core)
    return int(math.ceil(max(8.0 * blur + defocus, halo))) + 2


def _derivative_patches(scene: Scene, groups: list, centres: np.ndarray, radius_px: int, scale: float):
    """For each group of atoms moved together (a column, or one contamination atom): the
    pixel indices of its patch and d(counts)/dx, d(counts)/dy there."""
    h, w = scene.shape
    kw = dict(scene.render_kwargs)
    jitter = kw.pop("row_shift_px", None)
    kw["pad_px"] = radius_px  # the patch holds what matters; pad only against wrap-around
    out = []
    for idx, (cx, cy) in zip(groups, np.rint(centres).astype(np.int64)):
        ax, ay, aw = scene.atom_x_px[idx], scene.atom_y_px[idx], scene.atom_weight[idx]
        r0, r1 = max(cy - radius_px, 0), min(cy + radius_px + 1, h)
        c0, c1 = max(cx - radius_px, 0), min(cx + radius_px + 1, w)
        if r0 >= r1 or c0 >= c1 or idx.size == 0:
            out.append((np.zeros(0, np.intp), np.zeros(0), np.zeros(0)))
            continue
        shape = (r1 - r0, c1 - c0)
        shift = None if jitter is None else jitter[r0:r1]

        def render(dx: float, dy: float) -> np.ndarray:
            return render_haadf(ax - c0 + dx, ay - r0 + dy, aw, shape, row_shift_px=shift, **kw).astype(np.float64)

        dxi = (render(_STEP_PX, 0.0) - render(-_STEP_PX, 0.0)) * (scale / (2 * _STEP_PX))
        dyi = (render(0.0, _STEP_PX) - render(0.0, -_STEP_PX)) * (scale / (2 * _STEP_PX))
        rows, cols = np.mgrid[r0:r1, c0:c1]
        out.append(((rows * w + cols).ravel(), dxi.ravel(), dyi.ravel()))
    return out


def column_position_bound(scene: Scene, *, columns=None, patch_radius_px: int | None = None,
                          contamination_unknown: bool = True) -> dict:
    """Cramér-Rao bound on the position of each column of a simulated image.

    Parameters
    ----------
    scene : Scene
        From :func:`gombnet.simulation.sample.simulate_scene` (the same generator state as a
        sample gives that sample's scene).
    columns : array_like of int, optional
        Indices of the columns to report (into ``scene.column_*``); default those inside the
        image (``scene.in_fov``), in the order :class:`~gombnet.simulation.sample.Sample` lists
        them. Every column whose patch reaches into the image is estimated with them.
    patch_radius_px : int, optional
        Half-width [px] of the patch around a column over which its derivative image is
        computed; default eight blurred-atom standard deviations plus the defocus blur, at
        least two halo widths.
    contamination_unknown : bool
        Fit the positions of the amorphous contamination atoms too (an estimator does not know
        where they are); False takes them as known, which gives a lower bound still.

    Returns
    -------
    dict of ndarray, one value per reported column
        ``sigma_x_px``, ``sigma_y_px``: the bound's standard deviation along x and y [px];
        ``rms_px``: sqrt(sigma_x^2 + sigma_y^2), the smallest root-mean-square distance error;
        ``prior_sigma_px``: the thermal-displacement prior per direction [px];
        ``sigma_x_prior_px``, ``sigma_y_prior_px``, ``rms_prior_px``: the Bayesian bound with
        that prior [px]; ``patch_radius_px`` (one number); and the RMS bounds in Å
        (``rms_angstrom``, ``rms_prior_angstrom``). ``inf`` where a column's position cannot
        be told from the image alone (e.g. exactly on top of another layer's column).
    """
    if not isinstance(scene, Scene):
        raise GombnetError(f"scene must be a Scene (use simulate_scene), got {type(scene).__name__}")
    p = scene.params
    px = p["pixel_size_angstrom"]
    h, w = scene.shape
    radius = _patch_radius_px(scene) if patch_radius_px is None else int(patch_radius_px)
    if radius < 1:
        raise GombnetError(f"patch_radius_px must be >= 1, got {patch_radius_px}")
    report = np.flatnonzero(scene.in_fov) if columns is None else np.asarray(columns, dtype=np.intp).ravel()
    n_all = scene.column_x_px.size
    if report.size and (report.min() < 0 or report.max() >= n_all):
        raise GombnetError(f"columns must be indices in 0..{n_all - 1}")
    # every column whose patch touches the image is a parameter of the fit
    x, y = scene.column_x_px, scene.column_y_px
    has_atoms = np.bincount(scene.atom_column[scene.atom_column >= 0], minlength=n_all) > 0

    def near_image(xs, ys):
        return (xs > -0.5 - radius) & (xs < w - 0.5 + radius) & (ys > -0.5 - radius) & (ys < h - 0.5 + radius)

    params = np.union1d(np.flatnonzero(has_atoms & near_image(x, y)), report[has_atoms[report]])
    where = np.full(n_all, -1, dtype=np.intp)
    where[params] = np.arange(params.size)
    order = np.argsort(scene.atom_column, kind="stable")
    first = np.searchsorted(scene.atom_column[order], params)
    last = np.searchsorted(scene.atom_column[order], params, side="right")
    groups = [order[a:b] for a, b in zip(first, last)]
    centres = np.c_[x[params], y[params]]
    if contamination_unknown:
        # contamination atoms near the image: their positions are unknown too
        loose = np.flatnonzero((scene.atom_column < 0) & near_image(scene.atom_x_px, scene.atom_y_px))
        groups += [loose[k : k + 1] for k in range(loose.size)]
        centres = np.r_[centres, np.c_[scene.atom_x_px[loose], scene.atom_y_px[loose]]]

    image = scene.noiseless_image().astype(np.float64)
    scale = p["dose_counts_per_px"] / image.mean()  # intensity -> expected counts
    var = np.maximum(image * scale, 0.0) + (p["read_noise"] * p["dose_counts_per_px"]) ** 2
    # the renderer works in float32: where hardly any counts are expected its rounding would
    # pass for information; below 0.1 count per pixel a pixel tells next to nothing anyway
    inv_var = 1.0 / np.maximum(var, _MIN_VARIANCE_COUNTS)

    patches = _derivative_patches(scene, groups, centres, radius, scale)
    rows = np.concatenate([np.concatenate([q, q]) for q, _, _ in patches])
    cols = np.concatenate([np.concatenate([np.full(q.size, 2 * k), np.full(q.size, 2 * k + 1)])
                           for k, (q, _, _) in enumerate(patches)])
    vals = np.concatenate([np.concatenate([dx, dy]) for _, dx, dy in patches])
    jac = sp.csr_matrix((vals, (rows, cols)), shape=(h * w, 2 * len(groups)))
    fisher = (jac.T @ sp.diags(inv_var.ravel()) @ jac).toarray()

    # prior: each atom of a column vibrates independently, the column is their weighted centroid
    wsum = np.bincount(np.maximum(scene.atom_column, 0), weights=scene.atom_weight * (scene.atom_column >= 0),
                       minlength=n_all)
    w2sum = np.bincount(np.maximum(scene.atom_column, 0), weights=scene.atom_weight**2 * (scene.atom_column >= 0),
                        minlength=n_all)
    vib_px = p.get("vibration_sigma_angstrom", 0.0) / px
    with np.errstate(invalid="ignore", divide="ignore"):
        prior_px = vib_px * np.sqrt(w2sum) / wsum

    def block_variances(f: np.ndarray) -> np.ndarray:
        # eigen-decomposition: directions the image does not constrain get infinite variance
        vals_, vecs = np.linalg.eigh(f)
        tiny = vals_ <= 1e-10 * max(vals_.max(initial=0.0), 1e-300)
        inv = np.where(tiny, 0.0, 1.0 / np.where(tiny, 1.0, vals_))
        diag = (vecs**2) @ inv
        unconstrained = (vecs[:, tiny] ** 2).sum(axis=1) > 1e-6
        return np.where(unconstrained, np.inf, diag)

    var_plain = block_variances(fisher)
    # contamination atoms (after the columns) have no prior: they sit anywhere
    prior_prec = np.repeat(np.r_[1.0 / np.maximum(prior_px[params], 1e-12) ** 2, np.zeros(len(groups) - params.size)], 2)
    var_prior = block_variances(fisher + np.diag(prior_prec))
    k = where[report]
    ok = k >= 0
    sx = np.full(report.size, np.inf)
    sy = np.full(report.size, np.inf)
    sxp = np.full(report.size, np.inf)
    syp = np.full(report.size, np.inf)
    sx[ok], sy[ok] = np.sqrt(var_plain[2 * k[ok]]), np.sqrt(var_plain[2 * k[ok] + 1])
    sxp[ok], syp[ok] = np.sqrt(var_prior[2 * k[ok]]), np.sqrt(var_prior[2 * k[ok] + 1])
    rms = np.hypot(sx, sy)
    rms_prior = np.hypot(sxp, syp)
    return {
        "sigma_x_px": sx,
        "sigma_y_px": sy,
        "rms_px": rms,
        "prior_sigma_px": prior_px[report],
        "sigma_x_prior_px": sxp,
        "sigma_y_prior_px": syp,
        "rms_prior_px": rms_prior,
        "rms_angstrom": rms * px,
        "rms_prior_angstrom": rms_prior * px,
        "patch_radius_px": radius,
    }

"""Se fraction of WS2(1-x)Se2x layers and Vegard's law.

Gomb-Net classifies each chalcogen column of a layer as S–S (two S atoms) or Se–S
(one Se, one S); a Se–Se column class does not exist in the published model but is
accepted here. The stoichiometry x of WS2(1-x)Se2x is the fraction of chalcogen
*atoms* that are Se:

    x = (n_SSe + 2 n_SeSe) / (2 (n_SS + n_SSe + n_SeSe)).

The authors' notebook divided the Se count by ``2 n_SS + n_SSe`` instead: that is the
number of S atoms, so it computed the ratio Se/S rather than the fraction Se/(S + Se).
It overestimates x slightly for small x (n_SSe ≪ n_SS) and by up to ×2 for a pure Janus
layer (1 instead of 0.5).

Vegard's law, as in Fig. 3f–g of the paper, is the straight line from WS2 (x = 0,
a = 3.15 Å) to the Janus WSSe layer (x = 0.5: one chalcogen sublayer fully Se,
a = 3.24 Å). Implantation fills the exposed chalcogen sublayer first, so the measured
layers lie in 0 ≤ x ≤ 0.5; values above 0.5 are an extrapolation of that line (for
reference, WSe2 at x = 1 has a ≈ 3.28 Å, below the extrapolated 3.33 Å).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import GombnetError
from .bonds import _as_values, _positive

__all__ = [
    "A_JANUS_WSSE_ANGSTROM",
    "A_WS2_ANGSTROM",
    "SeFraction",
    "VegardFit",
    "fit_vegard",
    "se_fraction",
    "vegard_lattice_constant",
    "x_from_lattice_constant",
]

A_WS2_ANGSTROM = 3.15
"""Lattice constant of WS2 [Å] (x = 0)."""
A_JANUS_WSSE_ANGSTROM = 3.24
"""Lattice constant of Janus WSSe [Å] (x = 0.5), the upper end point used in the paper."""
X_JANUS = 0.5


def _count(value, name: str) -> int:
    if isinstance(value, bool):
        raise GombnetError(f"{name} must be a whole number >= 0, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a whole number >= 0, got {value!r}") from None
    if not math.isfinite(f) or f < 0 or f != int(f):
        raise GombnetError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(f)


@dataclass(frozen=True)
class SeFraction:
    """Se fraction of one layer from chalcogen-column counts.

    Attributes
    ----------
    x : float
        Se / (S + Se) counted in atoms (the x of WS2(1-x)Se2x).
    x_err : float
        Binomial standard error ``sqrt(x (1 - x) / n_chalcogen)``; it counts only the
        sampling of atoms, not misclassified columns (0 when x is 0 or 1).
    n_se, n_s, n_chalcogen : int
        Se atoms, S atoms and all chalcogen atoms (2 per column).
    n_columns : int
        Chalcogen columns counted.
    """

    x: float
    x_err: float
    n_se: int
    n_s: int
    n_chalcogen: int
    n_columns: int

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def se_fraction(n_s2, n_sse, n_se2=0) -> SeFraction:
    """Se fraction x of a WS2(1-x)Se2x layer from column counts.

    Each S–S column holds 2 S atoms, each Se–S column 1 S + 1 Se, each Se–Se column
    2 Se: ``x = (n_sse + 2 n_se2) / (2 (n_s2 + n_sse + n_se2))``.

    Parameters
    ----------
    n_s2 : int
        Number of S–S columns.
    n_sse : int
        Number of Se–S columns.
    n_se2 : int
        Number of Se–Se columns (not a class of the published model; default 0).

    Returns
    -------
    SeFraction

    Examples
    --------
    >>> se_fraction(90, 10).x          # 10 Se of 200 chalcogen atoms
    0.05
    >>> se_fraction(0, 50).x           # full Janus layer
    0.5
    """
    s2 = _count(n_s2, "n_s2")
    sse = _count(n_sse, "n_sse")
    se2 = _count(n_se2, "n_se2")
    cols = s2 + sse + se2
    if cols == 0:
        raise GombnetError("no chalcogen columns counted; the Se fraction is undefined")
    n_chal = 2 * cols
    n_se = sse + 2 * se2
    x = n_se / n_chal
    return SeFraction(
        x=x,
        x_err=math.sqrt(x * (1.0 - x) / n_chal),
        n_se=n_se,
        n_s=n_chal - n_se,
        n_chalcogen=n_chal,
        n_columns=cols,
    )


def _endpoints(a_ws2_angstrom: float, a_janus_angstrom: float) -> tuple[float, float]:
    a0 = _positive(a_ws2_angstrom, "a_ws2_angstrom", upper=100.0)
    a1 = _positive(a_janus_angstrom, "a_janus_angstrom", upper=100.0)
    if a0 == a1:
        raise GombnetError("a_ws2_angstrom and a_janus_angstrom must differ")
    return a0, a1


def vegard_lattice_constant(
    x,
    *,
    a_ws2_angstrom: float = A_WS2_ANGSTROM,
    a_janus_angstrom: float = A_JANUS_WSSE_ANGSTROM,
):
    """Lattice constant [Å] of WS2(1-x)Se2x from Vegard's law.

    ``a(x) = a_WS2 + (a_Janus - a_WS2) * x / 0.5``: the line from WS2 (x = 0) to Janus
    WSSe (x = 0.5), as in the paper's Fig. 3f. Valid for 0 ≤ x ≤ 0.5; x up to 1 is
    accepted as an extrapolation.

    Parameters
    ----------
    x : float or array
        Se fraction(s), 0 ≤ x ≤ 1.
    a_ws2_angstrom, a_janus_angstrom : float
        End points [Å] at x = 0 and x = 0.5.

    Returns
    -------
    float or array
        Lattice constant(s) [Å].
    """
    a0, a1 = _endpoints(a_ws2_angstrom, a_janus_angstrom)
    try:
        xa = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError("x must be a number or an array of numbers") from None
    if not np.all(np.isfinite(xa)) or np.any(xa < 0) or np.any(xa > 1):
        raise GombnetError("x must be finite and between 0 and 1")
    a = a0 + (a1 - a0) * xa / X_JANUS
    return float(a) if a.ndim == 0 else a


def x_from_lattice_constant(
    a_angstrom,
    *,
    a_ws2_angstrom: float = A_WS2_ANGSTROM,
    a_janus_angstrom: float = A_JANUS_WSSE_ANGSTROM,
    clip: bool = False,
):
    """Se fraction from a measured lattice constant, inverting :func:`vegard_lattice_constant`.

    Parameters
    ----------
    a_angstrom : float or array
        Measured lattice constant(s) [Å], between 1 and 10 Å.
    a_ws2_angstrom, a_janus_angstrom : float
        End points [Å] at x = 0 and x = 0.5.
    clip : bool
        Clip the result to [0, 1]. Off by default: a measured ``a`` slightly below
        ``a_WS2`` gives a slightly negative x, which is the honest result of a noisy
        measurement and should not be hidden before averaging.

    Returns
    -------
    float or array
        Se fraction(s).
    """
    a0, a1 = _endpoints(a_ws2_angstrom, a_janus_angstrom)
    try:
        aa = np.asarray(a_angstrom, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError("a_angstrom must be a number or an array of numbers") from None
    if not np.all(np.isfinite(aa)) or np.any(aa < 1.0) or np.any(aa > 10.0):
        raise GombnetError("a_angstrom must be finite and between 1 and 10 Å")
    x = (aa - a0) / (a1 - a0) * X_JANUS
    if clip:
        x = np.clip(x, 0.0, 1.0)
    return float(x) if x.ndim == 0 else x


@dataclass(frozen=True)
class VegardFit:
    """Straight-line fit ``a = intercept + slope * x`` over several layers/images.

    Attributes
    ----------
    slope, slope_err : float
        [Å per unit x]; Vegard's law with the default end points predicts 0.18 Å.
    intercept, intercept_err : float
        [Å]; the law predicts a_WS2 = 3.15 Å.
    covariance : list of list
        2 × 2 covariance of (slope, intercept).
    chi2 : float
        Sum of squared (weighted) residuals.
    dof : int
        Degrees of freedom, n - 2.
    n : int
        Points fitted.
    weighted : bool
        True if ``a_err`` was given: errors then come from ``a_err`` (absolute);
        otherwise from the scatter of the residuals.
    slope_expected, intercept_expected : float
        Vegard's-law slope [Å] and intercept [Å] of the end points used.
    """

    slope: float
    slope_err: float
    intercept: float
    intercept_err: float
    covariance: list
    chi2: float
    dof: int
    n: int
    weighted: bool
    slope_expected: float
    intercept_expected: float

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields (NaN as None)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        d["covariance"] = [[None if not math.isfinite(v) else v for v in row] for row in self.covariance]
        return d


def fit_vegard(
    x,
    a_angstrom,
    *,
    a_err_angstrom=None,
    a_ws2_angstrom: float = A_WS2_ANGSTROM,
    a_janus_angstrom: float = A_JANUS_WSSE_ANGSTROM,
) -> VegardFit:
    """Fit lattice constant against Se fraction over several layers or images.

    Weighted least squares with weights ``1 / a_err**2`` when ``a_err_angstrom`` is given
    (parameter errors from those absolute errors), ordinary least squares otherwise
    (errors from the residual scatter; needs at least 3 points). Errors in x are
    ignored: with atom counting they are usually much smaller, relative to the x range,
    than the lattice-constant errors.

    Parameters
    ----------
    x : (n,) array
        Se fractions, e.g. :attr:`SeFraction.x` of each layer.
    a_angstrom : (n,) array
        Lattice constants [Å] of the same layers.
    a_err_angstrom : (n,) array, optional
        Standard errors of ``a_angstrom`` [Å], all > 0.
    a_ws2_angstrom, a_janus_angstrom : float
        Vegard end points [Å] reported for comparison.

    Returns
    -------
    VegardFit
    """
    xv = _as_values(x, "x", min_count=2)
    av = _as_values(a_angstrom, "a_angstrom", min_count=2)
    if xv.size != av.size:
        raise GombnetError(f"x and a_angstrom have different lengths ({xv.size} and {av.size})")
    if np.ptp(xv) == 0:
        raise GombnetError("all x are equal; a slope cannot be fitted")
    a0, a1 = _endpoints(a_ws2_angstrom, a_janus_angstrom)
    design = np.column_stack([xv, np.ones_like(xv)])
    if a_err_angstrom is not None:
        err = _as_values(a_err_angstrom, "a_err_angstrom", min_count=2)
        if err.size != xv.size:
            raise GombnetError("a_err_angstrom must have one value per point")
        if np.any(err <= 0):
            raise GombnetError("a_err_angstrom must be > 0")
        wts = 1.0 / err
    else:
        if xv.size < 3:
            raise GombnetError("without a_err_angstrom at least 3 points are needed for errors")
        wts = np.ones_like(xv)
    aw = design * wts[:, None]
    bw = av * wts
    coef, *_ = np.linalg.lstsq(aw, bw, rcond=None)
    cov = np.linalg.inv(aw.T @ aw)
    resid = bw - aw @ coef
    chi2 = float(resid @ resid)
    dof = xv.size - 2
    if a_err_angstrom is None:
        cov = cov * (chi2 / dof)
    return VegardFit(
        slope=float(coef[0]),
        slope_err=float(math.sqrt(cov[0, 0])),
        intercept=float(coef[1]),
        intercept_err=float(math.sqrt(cov[1, 1])),
        covariance=cov.tolist(),
        chi2=chi2,
        dof=dof,
        n=int(xv.size),
        weighted=a_err_angstrom is not None,
        slope_expected=(a1 - a0) / X_JANUS,
        intercept_expected=a0,
    )

"""Column brightness: the Z-contrast of the found columns, measured in the image itself.

In HAADF-STEM a column's brightness grows with its atomic numbers (roughly Z^1.3-1.9, set by
the detector angles), so the brightness ratios of the column classes are a check of the
species a model reports that does not depend on the model: in a WS2 monolayer a W column is
about 4 times as bright as an S-S column and an Se-S column about twice (multislice at 60 kV,
70-200 mrad; the real Janus WSSe image in ``../shared/real/`` shows 4.0 and 2.0). A 2H-stacked
bilayer seen end on puts a W of one layer over the S-S of the other in every column, so the
columns come out nearly equally bright: a layer whose metal columns are barely brighter than
its chalcogen columns was not imaged as a monolayer.

Brightness of a column = the image smoothed by a Gaussian of 0.3 Å, minus a local background
(5th percentile over about 5 Å, smoothed), at the column's position.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import check

__all__ = ["column_brightness", "brightness_ratios"]

SMOOTH_SIGMA_ANGSTROM = 0.3
BACKGROUND_WINDOW_ANGSTROM = 5.0


def column_brightness(image, x_px, y_px, pixel_size_angstrom: float) -> np.ndarray:
    """Background-subtracted brightness of the image at each column.

    Parameters
    ----------
    image : array (H, W)
        The image the columns were found in.
    x_px, y_px : arrays (N,)
        Column positions [px] (x = column, y = row).
    pixel_size_angstrom : float
        [Å/px].

    Returns
    -------
    ndarray (N,)
        Brightness in the image's units above the local background.
    """
    img = np.asarray(image, np.float64)
    check(img.ndim == 2 and min(img.shape) >= 8, f"column brightness needs a 2-D image, got shape {img.shape}")
    check(pixel_size_angstrom > 0, f"pixel size must be positive, got {pixel_size_angstrom}")
    smooth = ndimage.gaussian_filter(img, SMOOTH_SIGMA_ANGSTROM / pixel_size_angstrom)
    # the percentile filter is slow at full size: run it on every 4th pixel, then interpolate back
    step = 4
    coarse = img[::step, ::step]
    window = max(3, int(round(BACKGROUND_WINDOW_ANGSTROM / pixel_size_angstrom / step)))
    background = ndimage.uniform_filter(ndimage.percentile_filter(coarse, 5, size=window), 3)
    background = ndimage.zoom(background, np.array(img.shape) / np.array(background.shape), order=1)
    return ndimage.map_coordinates(smooth - background, [np.asarray(y_px, float), np.asarray(x_px, float)],
                                   order=1, mode="nearest")


def brightness_ratios(brightness, species, *, reference: str = "S2", min_columns: int = 5) -> dict:
    """Median brightness of each species and its ratio to ``reference``'s.

    Parameters
    ----------
    brightness : array (N,)
        From :func:`column_brightness`.
    species : array of str (N,)
        Class of each column.
    reference : str
        Class the ratios are taken to.
    min_columns : int
        Classes with fewer columns are left out.

    Returns
    -------
    dict
        ``median`` per species, ``ratio_to_<reference>`` per species (when the reference has
        ``min_columns`` columns and a positive median), and ``n`` per species.
    """
    brightness, species = np.asarray(brightness, float), np.asarray(species)
    check(brightness.shape == species.shape, "brightness and species must have the same length")
    out = {"median": {}, "n": {}}
    for name in np.unique(species):
        sel = species == name
        if sel.sum() >= min_columns:
            out["median"][str(name)] = float(np.median(brightness[sel]))
            out["n"][str(name)] = int(sel.sum())
    ref = out["median"].get(reference)
    if ref is not None and ref > 0:
        out[f"ratio_to_{reference}"] = {k: v / ref for k, v in out["median"].items()}
    return out

"""Segmentation labels: one binary disk per projected atomic column.

Same pixel convention as the image (x = column, y = row; pixel (r, c) has its centre at
(x, y) = (c, r)), so a disk drawn for a column at (x, y) is centred on the same point as the
column's intensity in the simulated image. A pixel belongs to the disk when its centre lies
within ``radius_px`` of the column (distance <= radius).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GombnetError


def disk_masks(
    x_px: np.ndarray,
    y_px: np.ndarray,
    channel: np.ndarray,
    n_channels: int,
    shape: tuple[int, int],
    *,
    radius_px: float,
) -> np.ndarray:
    """Draw a binary disk of radius ``radius_px`` at every point into its channel.

    Parameters
    ----------
    x_px, y_px : array_like, shape (n,)
        Disk centres [px]; points outside the image still draw the part of their disk that
        falls inside.
    channel : array_like of int, shape (n,)
        Output channel of each disk (for gombnet: ``layer * n_classes + class``).
    n_channels : int
        Number of output channels.
    shape : (int, int)
        Image shape (rows, columns).
    radius_px : float
        Disk radius [px].

    Returns
    -------
    ndarray, uint8, shape (n_channels, rows, columns)
        1 inside a disk, 0 elsewhere.
    """
    h, w = int(shape[0]), int(shape[1])
    x = np.asarray(x_px, dtype=np.float64).ravel()
    y = np.asarray(y_px, dtype=np.float64).ravel()
    ch = np.asarray(channel, dtype=np.intp).ravel()
    if not (x.shape == y.shape == ch.shape):
        raise GombnetError("x_px, y_px and channel must have the same length")
    if ch.size and (ch.min() < 0 or ch.max() >= n_channels):
        raise GombnetError(f"channel values must be in 0..{n_channels - 1}")
    if not radius_px > 0:
        raise GombnetError(f"radius_px must be > 0, got {radius_px}")
    masks = np.zeros((n_channels, h, w), dtype=np.uint8)
    if x.size == 0:
        return masks
    k = int(math.ceil(radius_px)) + 1
    off = np.arange(-k, k + 1)
    cx = np.rint(x).astype(np.intp)[:, None] + off  # (n, K)
    cy = np.rint(y).astype(np.intp)[:, None] + off
    inside = ((cx[:, None, :] - x[:, None, None]) ** 2 + (cy[:, :, None] - y[:, None, None]) ** 2) <= radius_px**2
    inside &= (cx[:, None, :] >= 0) & (cx[:, None, :] < w) & (cy[:, :, None] >= 0) & (cy[:, :, None] < h)
    flat = (ch[:, None, None] * h + cy[:, :, None]) * w + cx[:, None, :]
    masks.reshape(-1)[flat[inside]] = 1
    return masks

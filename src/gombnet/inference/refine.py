"""Sub-pixel refinement of found atoms by a small network (:class:`~gombnet.nn.refiner.PositionRefiner`).

The Gomb-Net paints a disk at every column, and the centre of mass of a painted disk follows
the column to about a third of the precision the image allows (README, "How close to the
physical limit"). The refiner looks again at the image and at both layers' probability maps in a
small window around each found atom and returns a correction to its position. It moves atoms,
never adds, removes or relabels them.

Pixel convention: x = column, y = row; the centre of pixel (row r, col c) is (x, y) = (c, r).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import check


def layer_maps(probabilities: np.ndarray, n_layers: int, classes_per_layer: int) -> np.ndarray:
    """Each layer's probability of an atom of any class: (n_layers, H, W), its classes summed
    and clipped at 1. ``probabilities`` is (C, H, W), layer-major."""
    p = np.asarray(probabilities, np.float32)
    check(p.ndim == 3 and p.shape[0] == n_layers * classes_per_layer,
          f"probabilities of shape {p.shape} do not hold {n_layers} layers x {classes_per_layer} classes")
    return np.minimum(p.reshape(n_layers, classes_per_layer, *p.shape[1:]).sum(axis=1), 1.0)


def atom_crops(image: np.ndarray, maps: np.ndarray, layer, x_px, y_px, *,
               crop_radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of the image and the layer maps around atoms, as the refiner reads them.

    Parameters
    ----------
    image : (H, W) float
        The normalised image the network saw.
    maps : (n_layers, H, W) float
        :func:`layer_maps` of that image.
    layer : (N,) int
        Each atom's layer.
    x_px, y_px : (N,) float
        Atom positions [px].
    crop_radius_px : int
        Half width of the square window: its side is ``2 * crop_radius_px + 1`` px, centred on
        the pixel nearest the atom (the image is extended by its edge values at the border).

    Returns
    -------
    crops : (N, 3, k, k) float32
        The image, the atom's own layer's map and the other layers' summed map (clipped at 1).
    offset_px : (N, 2) float32
        The atom's (x, y) position relative to the window's centre pixel [px], in [-0.5, 0.5].
    """
    r = int(crop_radius_px)
    layer = np.asarray(layer, dtype=np.int64)
    x, y = np.asarray(x_px, np.float64), np.asarray(y_px, np.float64)
    h, w = image.shape
    cx = np.clip(np.rint(x), 0, w - 1).astype(np.int64)
    cy = np.clip(np.rint(y), 0, h - 1).astype(np.int64)
    total = maps.sum(axis=0)
    # channel order per atom: image, own layer, every other layer together
    planes = np.concatenate([np.asarray(image, np.float32)[None], maps, np.minimum(total[None] - maps, 1.0)])
    planes = np.pad(planes, ((0, 0), (r, r), (r, r)), mode="edge")
    n_layers = maps.shape[0]
    k = 2 * r + 1
    # all windows at once: (N, k, k) pixel indices into each padded plane
    rows = cy[:, None, None] + np.arange(k)[None, :, None]
    cols = cx[:, None, None] + np.arange(k)[None, None, :]
    chans = np.stack([np.zeros_like(layer), 1 + layer, 1 + n_layers + layer], axis=1)
    crops = planes[chans[:, :, None, None], rows[:, None], cols[:, None]]
    offset = np.stack([x - cx, y - cy], axis=1).astype(np.float32)
    return crops.astype(np.float32, copy=False), offset


def refine_positions(image: np.ndarray, probabilities: np.ndarray, found: dict, refiner, *, n_layers: int,
                     classes_per_layer: int, pixel_size_angstrom: float, batch_size: int = 4096) -> dict:
    """Move each found atom by the refiner's correction.

    Parameters
    ----------
    image : (H, W) float
        The normalised image the network saw (at ``pixel_size_angstrom``).
    probabilities : (C, H, W) float
        The network's probabilities, layer-major.
    found : dict
        Atoms as :func:`~gombnet.inference.atoms.find_atoms` returns them (``channel``,
        ``x_px``, ``y_px``, ...), in the pixels of ``image``.
    refiner : gombnet.nn.refiner.PositionRefiner
    pixel_size_angstrom : float
        Of ``image`` [Å/px].

    Returns
    -------
    dict
        ``found`` with new ``x_px`` and ``y_px``; every other entry as it was.
    """
    x = np.asarray(found["x_px"], np.float64)
    if x.size == 0:
        return dict(found)
    layer = np.asarray(found["channel"]) // classes_per_layer
    crops, offset = atom_crops(image, layer_maps(probabilities, n_layers, classes_per_layer), layer, x,
                               found["y_px"], crop_radius_px=refiner.crop_radius_px)
    shift = refiner_shifts(refiner, crops, offset, pixel_size_angstrom, batch_size=batch_size).astype(np.float64)
    return {**found, "x_px": x + shift[:, 0], "y_px": np.asarray(found["y_px"], np.float64) + shift[:, 1]}


def refiner_shifts(refiner, crops: np.ndarray, offset_px: np.ndarray, pixel_size_angstrom,
                   batch_size: int = 4096) -> np.ndarray:
    """The refiner's (dx, dy) corrections [px], (N, 2) float32, for :func:`atom_crops` windows
    (any float dtype) and offsets; ``pixel_size_angstrom`` [Å/px] is one number or one per window.
    Runs in eval mode, without gradients, ``batch_size`` windows at a time."""
    n = len(offset_px)
    px = np.array(np.broadcast_to(np.asarray(pixel_size_angstrom, np.float32), (n,)))  # writable, for torch
    device = next(refiner.parameters()).device
    refiner.eval()
    out = [np.zeros((0, 2), np.float32)]
    with torch.no_grad():
        for s in range(0, n, batch_size):
            c = torch.from_numpy(np.asarray(crops[s:s + batch_size], np.float32)).to(device)
            o = torch.from_numpy(np.asarray(offset_px[s:s + batch_size], np.float32)).to(device)
            ps = torch.from_numpy(px[s:s + batch_size]).to(device)
            out.append(refiner(c, o, ps).float().cpu().numpy())
    return np.concatenate(out)


__all__ = ["atom_crops", "layer_maps", "refine_positions", "refiner_shifts"]

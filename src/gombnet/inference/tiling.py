"""Tiled inference on images of any size, with consistent layer order across tiles.

A Gomb-Net has one decoder ("branch") per atomic layer, and the order of the branches is
arbitrary: a network may put physical layer A in branch 0 on one tile and in branch 1 on
the next. :func:`predict_tiled` therefore aligns each tile's branches to what has already
been accumulated in the overlap before blending it in, so that the whole image ends up
with one consistent (but still arbitrary) global layer order.

Conventions
-----------
* Pixel convention: x = column, y = row; the centre of pixel (row r, col c) is
  (x, y) = (c, r).
* Probability maps are ``(C, H, W)`` with ``C = n_layers * classes_per_layer`` in
  layer-major order: channel ``layer * classes_per_layer + cls``.
* ``predict_fn(batch)`` takes ``(B, 1, tile, tile)`` float32 and returns ``(B, C, tile,
  tile)`` probabilities in [0, 1] (apply the sigmoid before returning). Anything that
  ``numpy.asarray`` accepts is fine as a return value (a CPU torch tensor included).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from ..arrays import as_real_array
from ..errors import GombnetError

__all__ = [
    "D4_TRANSFORMS",
    "resample",
    "to_original_px",
    "to_resampled_px",
    "normalize_intensity",
    "tile_starts",
    "blend_window",
    "predict_tiled",
    "align_branches",
    "permute_branches",
    "apply_transform",
    "invert_transform",
    "tta_predict",
    "ensemble_predict",
]

PredictFn = Callable[[np.ndarray], np.ndarray]

#: The eight symmetries of the square (dihedral group D4), as accepted by ``transforms``.
D4_TRANSFORMS = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_h",
    "flip_v",
    "transpose",
    "anti_transpose",
)

# The best layer order must beat the runner-up by this fraction of its score, and by at
# least _ALIGN_MIN_MARGIN (in units of weight x probability^2, i.e. about that many fully
# confident, fully weighted pixels); otherwise the overlap cannot tell the layers apart.
_ALIGN_REL_MARGIN = 1e-3
_ALIGN_MIN_MARGIN = 2.0
# A tile "has atoms" (and so a layer order that matters) if some probability reaches this.
_SIGNAL_PROBABILITY = 0.5
_MAX_LAYERS_TO_PERMUTE = 6  # 6! = 720 candidate orders; more is not a bilayer problem


# --------------------------------------------------------------------------------------
# Resampling and intensity normalisation
# --------------------------------------------------------------------------------------


def _check_image(image, name: str = "image") -> np.ndarray:
    return as_real_array(image, name, (2,), "2-D (H, W)")


def _positive(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise GombnetError(f"{name} must be a positive finite number, got {value!r}")
    return v


def resample(
    image,
    *,
    from_pixel_size_angstrom: float,
    to_pixel_size_angstrom: float,
    order: int = 1,
    anti_aliasing: bool = True,
) -> tuple[np.ndarray, float]:
    """Resample an image to another pixel size.

    The zoom factor is exactly ``from_pixel_size_angstrom / to_pixel_size_angstrom`` (no
    rounding to the output shape): the centre of output pixel ``i`` samples the input at
    ``(i + 0.5) / zoom - 0.5`` along each axis, i.e. pixel *edges* are scaled about the
    image's outer edge at -0.5. Map positions found in the resampled image back with
    :func:`to_original_px`.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Image to resample.
    from_pixel_size_angstrom : float
        Pixel size of ``image`` [Å/px].
    to_pixel_size_angstrom : float
        Wanted pixel size [Å/px], e.g. the one the network was trained at.
    order : int, optional
        Spline interpolation order, 0-5 (1 = bilinear).
    anti_aliasing : bool, optional
        When shrinking (zoom < 1), blur with a Gaussian of ``sigma = (1/zoom - 1) / 2``
        pixels first (as ``skimage.transform.rescale`` does). The blur is symmetric, so it
        does not move atom centres.

    Returns
    -------
    resampled : ndarray, shape (round(H*zoom), round(W*zoom)), float32
        Resampled image; at least one pixel along each axis. Because the shape is rounded,
        the last row/column may extend up to half a pixel past the original field of view
        (filled by reflection).
    zoom : float
        ``from_pixel_size_angstrom / to_pixel_size_angstrom`` (> 1 enlarges the image).
    """
    arr = _check_image(image)
    p_from = _positive(from_pixel_size_angstrom, "from_pixel_size_angstrom")
    p_to = _positive(to_pixel_size_angstrom, "to_pixel_size_angstrom")
    if not (isinstance(order, (int, np.integer)) and 0 <= order <= 5):
        raise GombnetError(f"order must be an integer 0-5, got {order!r}")
    zoom = p_from / p_to
    out_shape = tuple(max(1, int(round(n * zoom))) for n in arr.shape)
    if zoom == 1.0:
        return arr.copy(), 1.0
    if out_shape[0] * out_shape[1] > 2**31:
        raise GombnetError(f"resampled image would be {out_shape[0]}x{out_shape[1]} px; too large")
    if zoom < 1.0 and anti_aliasing:
        arr = ndimage.gaussian_filter(arr, sigma=(1.0 / zoom - 1.0) / 2.0, mode="reflect")
    # input coordinate = output coordinate / zoom + offset  (centre-of-pixel convention)
    offset = 0.5 / zoom - 0.5
    out = ndimage.affine_transform(
        arr,
        matrix=np.array([1.0 / zoom, 1.0 / zoom]),
        offset=offset,
        output_shape=out_shape,
        output=np.float32,
        order=order,
        mode="reflect",
        prefilter=order > 1,
    )
    return out, zoom


def to_original_px(x_px, y_px, zoom: float):
    """Map pixel positions in a resampled image back to the original image.

    Inverse of :func:`to_resampled_px`; consistent with :func:`resample` and the pixel
    convention (centre of pixel (r, c) is (x, y) = (c, r)): ``orig = (res + 0.5) / zoom -
    0.5`` for x and y alike.

    Parameters
    ----------
    x_px, y_px : float or array_like
        Positions in the resampled image [px].
    zoom : float
        Zoom factor returned by :func:`resample`.

    Returns
    -------
    x_px, y_px : float or ndarray
        Positions in the original image [px].
    """
    zoom = _positive(zoom, "zoom")
    x = (np.asarray(x_px, dtype=np.float64) + 0.5) / zoom - 0.5
    y = (np.asarray(y_px, dtype=np.float64) + 0.5) / zoom - 0.5
    return x, y


def to_resampled_px(x_px, y_px, zoom: float):
    """Map pixel positions in an original image into the image resampled by ``zoom``.

    ``res = (orig + 0.5) * zoom - 0.5``; inverse of :func:`to_original_px`.
    """
    zoom = _positive(zoom, "zoom")
    x = (np.asarray(x_px, dtype=np.float64) + 0.5) * zoom - 0.5
    y = (np.asarray(y_px, dtype=np.float64) + 0.5) * zoom - 0.5
    return x, y


def normalize_intensity(
    image,
    *,
    low_percentile: float = 0.5,
    high_percentile: float = 99.5,
    clip: bool = False,
) -> np.ndarray:
    """Robustly scale an image to about [0, 1].

    ``(image - p_low) / (p_high - p_low)`` with ``p_low``/``p_high`` the given percentiles,
    so a few hot or dead pixels do not set the scale (plain min-max scaling would).

    Parameters
    ----------
    image : array_like, shape (H, W)
        Image, any real dtype.
    low_percentile, high_percentile : float, optional
        Percentiles (0-100) mapped to 0 and 1.
    clip : bool, optional
        If True, clip the result to [0, 1]. Off by default: with atoms covering a few
        percent of the image, the 99.5th percentile lies inside the brightest atom
        columns, and clipping would flatten their peaks. Without clipping about
        ``(100 - high_percentile)`` percent of pixels lie slightly above 1 (and as many
        below 0).

    Returns
    -------
    ndarray, shape (H, W), float32

    Raises
    ------
    GombnetError
        If the image contains NaN/inf, or is constant between the two percentiles.
    """
    arr = _check_image(image)
    lo_q, hi_q = float(low_percentile), float(high_percentile)
    if not (0.0 <= lo_q < hi_q <= 100.0):
        raise GombnetError(
            f"need 0 <= low_percentile < high_percentile <= 100, got {low_percentile}, {high_percentile}"
        )
    lo, hi = np.percentile(arr, [lo_q, hi_q])
    if not hi > lo:
        raise GombnetError(
            "image is constant between the chosen percentiles; nothing to normalise"
        )
    out = (arr - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# Branch (layer) permutations
# --------------------------------------------------------------------------------------


def _check_layers(n_layers, classes_per_layer) -> tuple[int, int]:
    for v, name in ((n_layers, "n_layers"), (classes_per_layer, "classes_per_layer")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise GombnetError(f"{name} must be a positive integer, got {v!r}")
    return int(n_layers), int(classes_per_layer)


def _check_perm(perm, n_layers: int) -> tuple[int, ...]:
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(n_layers)):
        raise GombnetError(f"perm must be a permutation of range({n_layers}), got {perm}")
    return perm


def permute_branches(maps, perm, *, n_layers: int, classes_per_layer: int) -> np.ndarray:
    """Reorder the layer groups of a stack of maps.

    Parameters
    ----------
    maps : array_like, shape (C, ...)
        ``C = n_layers * classes_per_layer`` channels, layer-major.
    perm : sequence of int
        ``perm[i]`` is the branch of ``maps`` that becomes layer ``i`` of the output.
    n_layers, classes_per_layer : int

    Returns
    -------
    ndarray, shape (C, ...)
        A new array (a copy, even for the identity).
    """
    n_layers, cpl = _check_layers(n_layers, classes_per_layer)
    maps = np.asarray(maps)
    if maps.ndim < 1 or maps.shape[0] != n_layers * cpl:
        raise GombnetError(
            f"maps must have {n_layers * cpl} channels (n_layers*classes_per_layer) in axis 0, "
            f"got shape {maps.shape}"
        )
    perm = _check_perm(perm, n_layers)
    index = np.concatenate([np.arange(p * cpl, (p + 1) * cpl) for p in perm])
    return maps[index]


def _match_matrix(reference: np.ndarray, candidate: np.ndarray, n_layers: int, cpl: int) -> np.ndarray:
    """``M[i, j] = sum(reference group i * candidate group j)``, accumulated in float64.

    Works on views of any strides (a flipped prediction, a tile of the accumulator)
    without copying them whole: rows are taken in chunks of about 256 k values.
    """
    if reference.ndim != 3:
        reference = reference.reshape(reference.shape[0], 1, -1)
        candidate = candidate.reshape(candidate.shape[0], 1, -1)
    rows = max(1, (1 << 18) // max(1, reference.shape[0] * reference.shape[2]))
    match = np.zeros((n_layers, n_layers))
    for r in range(0, reference.shape[1], rows):
        ref = reference[:, r:r + rows].reshape(n_layers, -1).astype(np.float64)
        cand = candidate[:, r:r + rows].reshape(n_layers, -1).astype(np.float64)
        match += ref @ cand.T
    return match


def _decide_perm(match: np.ndarray) -> tuple[tuple[int, ...], bool]:
    """Permutation maximising ``sum_i match[i, perm[i]]``, and whether it is decided.

    Undecided (too little signal, or a near-tie between two orders) returns the identity
    and False.
    """
    n = match.shape[0]
    identity = tuple(range(n))
    if n == 1:
        return identity, True
    if n > _MAX_LAYERS_TO_PERMUTE:
        raise GombnetError(f"layer alignment supports at most {_MAX_LAYERS_TO_PERMUTE} layers, got {n}")
    rows = np.arange(n)
    perms = list(itertools.permutations(range(n)))
    scores = np.array([match[rows, list(p)].sum() for p in perms])
    order = np.argsort(-scores, kind="stable")
    best, runner_up = float(scores[order[0]]), float(scores[order[1]])
    if best - runner_up <= max(_ALIGN_REL_MARGIN * abs(best), _ALIGN_MIN_MARGIN):
        return identity, False
    return perms[int(order[0])], True


def _best_perm(match: np.ndarray) -> tuple[int, ...]:
    """Best permutation, or the identity when undecided."""
    return _decide_perm(match)[0]


def align_branches(
    reference,
    candidate,
    *,
    n_layers: int,
    classes_per_layer: int,
    weight=None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reorder the layer branches of ``candidate`` to agree best with ``reference``.

    Tries all ``n_layers!`` orders and keeps the one with the largest weighted sum of
    products ``sum w * reference_i * candidate_perm(i)``. Because the sum of squares of all
    branches does not depend on their order, this is also the order with the smallest
    weighted squared difference. If the best order does not beat the runner-up by a
    clear margin (0.1 % of its score and at least 2 in units of weight x probability^2,
    i.e. about two confident pixels of weight 1), e.g. because both maps are empty where
    ``weight > 0``, the identity is kept: an empty overlap cannot decide.

    Parameters
    ----------
    reference, candidate : array_like, shape (C, H, W) (or (C, ...))
        Probability maps, ``C = n_layers * classes_per_layer`` layer-major.
    n_layers, classes_per_layer : int
    weight : array_like, shape (H, W) (or the trailing shape), optional
        Non-negative per-pixel weight; pixels with weight 0 are ignored. Default: all 1.

    Returns
    -------
    permuted : ndarray, shape (C, H, W)
        ``candidate`` with its branches reordered (a copy).
    perm : tuple of int
        ``perm[i]`` = branch of ``candidate`` that became layer ``i``.
    """
    n_layers, cpl = _check_layers(n_layers, classes_per_layer)
    ref = np.asarray(reference, dtype=np.float32)
    cand = np.asarray(candidate, dtype=np.float32)
    if ref.shape != cand.shape:
        raise GombnetError(f"reference {ref.shape} and candidate {cand.shape} shapes differ")
    if ref.ndim < 1 or ref.shape[0] != n_layers * cpl:
        raise GombnetError(
            f"maps must have {n_layers * cpl} channels in axis 0, got shape {ref.shape}"
        )
    if not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        raise GombnetError("reference or candidate contains NaN or infinite values")
    if weight is not None:
        w = np.asarray(weight, dtype=np.float32)
        if w.shape != ref.shape[1:]:
            raise GombnetError(f"weight must have shape {ref.shape[1:]}, got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise GombnetError("weight must be finite and non-negative")
        ref = ref * w
    match = _match_matrix(ref, cand, n_layers, cpl)
    perm = _best_perm(match)
    return permute_branches(cand, perm, n_layers=n_layers, classes_per_layer=cpl), perm


# --------------------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------------------


def tile_starts(length_px: int, tile_px: int, overlap_px: int) -> np.ndarray:
    """Start offsets of tiles covering ``[0, length_px)`` with stride ``tile_px - overlap_px``.

    The last tile is flush with the end (its overlap with the previous one may be larger
    than ``overlap_px``). Requires ``length_px >= tile_px``.
    """
    if length_px <= tile_px:
        return np.zeros(1, dtype=np.int64)
    stride = tile_px - overlap_px
    n = int(math.ceil((length_px - tile_px) / stride)) + 1
    starts = np.arange(n, dtype=np.int64) * stride
    starts[-1] = length_px - tile_px
    return starts


def blend_window(tile_px: int, overlap_px: int, *, at_start: bool = False, at_end: bool = False) -> np.ndarray:
    """1-D blending window: 1 in the middle, raised-cosine ramps of ``overlap_px`` at the ends.

    The ramp is sampled at pixel centres, ``0.5 - 0.5 cos(pi (i + 0.5) / overlap_px)``, so
    it is > 0 everywhere. A side that lies on the image border (``at_start``/``at_end``)
    gets no ramp: no other tile covers it, and its weight stays 1.
    """
    w = np.ones(tile_px, dtype=np.float32)
    if overlap_px > 0:
        i = np.arange(overlap_px, dtype=np.float64)
        ramp = (0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / overlap_px)).astype(np.float32)
        if not at_start:
            w[:overlap_px] = ramp
        if not at_end:
            w[tile_px - overlap_px:] = ramp[::-1]
    return w


class _NoBar:
    def advance(self, n: int) -> None:
        pass

    def add_total(self, n: int) -> None:
        pass


class _RichBar:
    def __init__(self, bar, task, total: int):
        self._bar, self._task, self._total = bar, task, total

    def advance(self, n: int) -> None:
        self._bar.advance(self._task, n)

    def add_total(self, n: int) -> None:
        self._total += n
        self._bar.update(self._task, total=self._total)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool, description: str) -> Iterator[_NoBar | _RichBar]:
    if not enabled:
        yield _NoBar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        yield _RichBar(bar, bar.add_task(description, total=total), total)


def _check_tiling_args(tile_px, overlap_px, batch_size) -> tuple[int, int, int]:
    for v, name in ((tile_px, "tile_px"), (overlap_px, "overlap_px"), (batch_size, "batch_size")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise GombnetError(f"{name} must be an integer, got {v!r}")
    if tile_px < 8:
        raise GombnetError(f"tile_px must be >= 8, got {tile_px}")
    if not 0 <= overlap_px <= tile_px // 2:
        raise GombnetError(f"overlap_px must be in [0, tile_px/2] = [0, {tile_px // 2}], got {overlap_px}")
    if batch_size < 1:
        raise GombnetError(f"batch_size must be >= 1, got {batch_size}")
    return int(tile_px), int(overlap_px), int(batch_size)


def _check_prediction(out: np.ndarray, expected: tuple[int, ...], n_layers: int, cpl: int) -> None:
    if out.shape != expected:
        raise GombnetError(
            f"predict_fn returned shape {out.shape}, expected {expected} "
            f"(n_layers={n_layers} x classes_per_layer={cpl} channels)"
        )
    if not np.isfinite(out).all():
        raise GombnetError("predict_fn returned NaN or infinite values")
    lo, hi = float(out.min()), float(out.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise GombnetError(
            "predict_fn must return probabilities in [0, 1] (apply the sigmoid), "
            f"got range [{lo:.3g}, {hi:.3g}]"
        )


def predict_tiled(
    image,
    predict_fn: PredictFn,
    *,
    n_layers: int,
    classes_per_layer: int,
    tile_px: int = 256,
    overlap_px: int = 64,
    batch_size: int = 4,
    align_layers: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Run ``predict_fn`` over overlapping tiles and blend the results.

    Tiles of ``tile_px`` lie on a regular grid (stride ``tile_px - overlap_px``, last tile
    flush with the border) and are blended with a separable raised-cosine window that is
    > 0 everywhere and 1 on sides touching the image border. An image smaller than a tile
    along an axis is reflect-padded (centred) to one tile and cropped back. Memory holds
    the ``(C, H, W)`` float32 result, an ``(H, W)`` weight map and one batch of tiles.

    With ``align_layers``, tiles are blended in raster order and each tile's layer
    branches are first reordered (:func:`align_branches` logic, all ``n_layers!`` orders)
    to agree best with what earlier tiles wrote in the overlap, weighted by their blending
    weight; the first tile sets the reference. The result has one consistent layer order
    that is still arbitrary globally.

    A tile whose overlap cannot decide (empty: vacuum, a hole, nothing detected; or a
    near-tie) but that contains atoms (some probability >= 0.5) is deferred: it is
    predicted again after the raster pass, when its right and lower neighbours are in,
    and retried while that makes progress. A tile without atoms is blended as it is.
    Deferred tiles are predicted again rather than kept, so memory stays bounded; each
    retry pass costs one prediction per still-deferred tile.

    Limitation: an island of atoms whose tiles share no signal with the rest of the image
    (e.g. a flake separated from the rest by vacuum wider than about ``overlap_px``) is
    consistent in itself (its first tile sets its order) but its order relative to the
    rest is the network's choice and may be swapped; each such island costs extra retry
    passes. Alignment is also greedy: a wrong decision (e.g. on a very noisy overlap)
    propagates to later tiles. Check the layer maps of images with large empty regions.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Input image, already normalised as the network expects (see
        :func:`normalize_intensity`) and at the network's pixel size (see :func:`resample`).
    predict_fn : callable
        ``(B, 1, tile_px, tile_px) float32 -> (B, C, tile_px, tile_px)`` probabilities.
    n_layers, classes_per_layer : int
        ``C = n_layers * classes_per_layer``; channels are layer-major.
    tile_px, overlap_px : int, optional
        Tile size and minimum overlap between neighbouring tiles [px];
        ``0 <= overlap_px <= tile_px / 2``.
    batch_size : int, optional
        Tiles per ``predict_fn`` call.
    align_layers : bool, optional
        Align branch order across tiles (needs ``overlap_px > 0`` when ``n_layers > 1``).
    progress : bool, optional
        Show a progress bar (rich).

    Returns
    -------
    ndarray, shape (C, H, W), float32
        Blended probabilities.
    """
    arr = _check_image(image)
    n_layers, cpl = _check_layers(n_layers, classes_per_layer)
    tile_px, overlap_px, batch_size = _check_tiling_args(tile_px, overlap_px, batch_size)
    if not callable(predict_fn):
        raise GombnetError("predict_fn must be callable")
    align = bool(align_layers) and n_layers > 1
    n_ch = n_layers * cpl
    height, width = arr.shape

    # pad (reflect, centred) any axis shorter than one tile
    pads = [(0, 0), (0, 0)]
    for ax, n in enumerate(arr.shape):
        if n < tile_px:
            before = (tile_px - n) // 2
            pads[ax] = (before, tile_px - n - before)
    if any(p != (0, 0) for p in pads):
        arr = np.pad(arr, pads, mode="reflect" if min(arr.shape) > 1 else "edge")
    ph, pw = arr.shape
    ys = tile_starts(ph, tile_px, overlap_px)
    xs = tile_starts(pw, tile_px, overlap_px)
    if align and overlap_px == 0 and (len(ys) > 1 or len(xs) > 1):
        raise GombnetError("align_layers needs overlap_px > 0 when the image spans several tiles")

    # windows per border situation, built once
    win_y = {(a, b): blend_window(tile_px, overlap_px, at_start=a, at_end=b) for a in (0, 1) for b in (0, 1)}
    win_x = win_y
    positions = [(int(y), int(x)) for y in ys for x in xs]  # raster order

    acc = np.zeros((n_ch, ph, pw), dtype=np.float32)
    weight = np.zeros((ph, pw), dtype=np.float32)
    batch = np.empty((batch_size, 1, tile_px, tile_px), dtype=np.float32)

    def predicted(todo: list[tuple[int, int]], bar) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (y, x, probabilities) for the tiles in ``todo``, one batch in memory."""
        for b0 in range(0, len(todo), batch_size):
            chunk = todo[b0:b0 + batch_size]
            for k, (y, x) in enumerate(chunk):
                batch[k, 0] = arr[y:y + tile_px, x:x + tile_px]
            out = np.asarray(predict_fn(batch[: len(chunk)]), dtype=np.float32)
            _check_prediction(out, (len(chunk), n_ch, tile_px, tile_px), n_layers, cpl)
            for k, (y, x) in enumerate(chunk):
                yield y, x, out[k]
            bar.advance(len(chunk))

    def accumulate(y: int, x: int, tile: np.ndarray) -> None:
        sl = (slice(None), slice(y, y + tile_px), slice(x, x + tile_px))
        w2 = win_y[(y == 0, y + tile_px == ph)][:, None] * win_x[(x == 0, x + tile_px == pw)][None, :]
        acc[sl] += tile * w2
        weight[sl[1:]] += w2

    def try_align(y: int, x: int, tile: np.ndarray) -> np.ndarray | None:
        """The tile in the image's layer order, or None when the overlap cannot decide."""
        # acc = sum(window * p) = weight * normalised reference, so matching against acc
        # weights each overlap pixel by its accumulated weight (0 where nothing written yet)
        ref = acc[:, y:y + tile_px, x:x + tile_px]
        perm, decided = _decide_perm(_match_matrix(ref, tile, n_layers, cpl))
        if not decided:
            return None
        if perm != tuple(range(n_layers)):
            tile = permute_branches(tile, perm, n_layers=n_layers, classes_per_layer=cpl)
        return tile

    with _progress_bar(len(positions), bool(progress), "tiles") as bar:
        have_reference = False  # has a tile with atoms been blended in yet?
        deferred: list[tuple[int, int]] = []
        for y, x, tile in predicted(positions, bar):
            if not align:
                accumulate(y, x, tile)
                continue
            has_atoms = float(tile.max()) >= _SIGNAL_PROBABILITY
            if not have_reference:
                accumulate(y, x, tile)  # the first tile with atoms sets the layer order
                have_reference = has_atoms
                continue
            aligned = try_align(y, x, tile)
            if aligned is not None:
                accumulate(y, x, aligned)
            elif not has_atoms:
                accumulate(y, x, tile)  # nothing whose layer order could matter
            else:
                # atoms, but an empty (or ambiguous) overlap: retry once more of its
                # neighbours (right, below) are in; predicted again, not kept in memory
                deferred.append((y, x))
        seed = False
        while deferred:
            # retry in raster order while that makes progress; when it does not, the
            # rest is cut off from everything blended so far (an island of atoms): its
            # first tile then sets the island's order, like the first tile of the image
            bar.add_total(len(deferred))
            retry, deferred = deferred, []
            for y, x, tile in predicted(retry, bar):
                aligned = try_align(y, x, tile)
                if aligned is None and seed:
                    aligned, seed = tile, False
                if aligned is not None:
                    accumulate(y, x, aligned)
                else:
                    deferred.append((y, x))
            seed = len(deferred) == len(retry)

    # every pixel is covered with weight > 0 (windows never reach 0)
    acc /= weight
    if any(p != (0, 0) for p in pads):
        acc = np.ascontiguousarray(acc[:, pads[0][0]:pads[0][0] + height, pads[1][0]:pads[1][0] + width])
    np.clip(acc, 0.0, 1.0, out=acc)
    return acc


# --------------------------------------------------------------------------------------
# Test-time augmentation and ensembles
# --------------------------------------------------------------------------------------

# transform name -> (forward, inverse) acting on the last two axes
_TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "identity": (lambda a: a, lambda a: a),
    "rot90": (lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda a: np.rot90(a, -1, axes=(-2, -1))),
    "rot180": (lambda a: np.rot90(a, 2, axes=(-2, -1)), lambda a: np.rot90(a, 2, axes=(-2, -1))),
    "rot270": (lambda a: np.rot90(a, -1, axes=(-2, -1)), lambda a: np.rot90(a, 1, axes=(-2, -1))),
    "flip_h": (lambda a: np.flip(a, -1), lambda a: np.flip(a, -1)),  # mirror left-right
    "flip_v": (lambda a: np.flip(a, -2), lambda a: np.flip(a, -2)),  # mirror top-bottom
    "transpose": (lambda a: np.swapaxes(a, -2, -1), lambda a: np.swapaxes(a, -2, -1)),
    "anti_transpose": (
        lambda a: np.rot90(np.swapaxes(a, -2, -1), 2, axes=(-2, -1)),
        lambda a: np.rot90(np.swapaxes(a, -2, -1), 2, axes=(-2, -1)),
    ),
}


def _check_transforms(transforms) -> tuple[str, ...]:
    if isinstance(transforms, str):
        transforms = D4_TRANSFORMS if transforms == "d4" else (transforms,)
    transforms = tuple(transforms)
    if not transforms:
        raise GombnetError("transforms is empty")
    for t in transforms:
        if t not in _TRANSFORMS:
            raise GombnetError(f"unknown transform {t!r}; choose from {', '.join(D4_TRANSFORMS)}")
    return transforms


def apply_transform(array, name: str) -> np.ndarray:
    """Apply a D4 transform (see :data:`D4_TRANSFORMS`) to the last two axes of ``array``."""
    (name,) = _check_transforms((name,))
    return np.ascontiguousarray(_TRANSFORMS[name][0](np.asarray(array)))


def invert_transform(array, name: str) -> np.ndarray:
    """Undo :func:`apply_transform` ``name`` on the last two axes of ``array``."""
    (name,) = _check_transforms((name,))
    return np.ascontiguousarray(_TRANSFORMS[name][1](np.asarray(array)))


def _align_blocks(mean: np.ndarray, pred: np.ndarray, n_layers: int, cpl: int, block_px: int) -> np.ndarray:
    """``pred`` (changed in place) with its layer order matched to ``mean`` block by block.

    Over a large field two passes can disagree about which layer a region belongs to in
    places; one order for the whole pass then averages those regions' atoms into both
    layers. Each block of ``block_px`` takes the order that matches best there, blocks that
    cannot decide (empty, a near-tie) the order of the whole pass.
    """
    height, width = pred.shape[1:]
    blocks = [(slice(None), slice(y, y + block_px), slice(x, x + block_px))
              for y in range(0, height, block_px) for x in range(0, width, block_px)]
    matches = [_match_matrix(mean[sl], pred[sl], n_layers, cpl) for sl in blocks]
    overall = _best_perm(np.sum(matches, axis=0))  # the whole field's match is the blocks' sum
    identity = tuple(range(n_layers))
    for sl, match in zip(blocks, matches):
        perm, decided = _decide_perm(match)
        perm = perm if decided else overall
        if perm != identity:  # in place, one block at a time: no second copy of the pass
            pred[sl] = permute_branches(pred[sl], perm, n_layers=n_layers, classes_per_layer=cpl)
    return pred


def _aggregate(
    image: np.ndarray,
    passes: Sequence[tuple[PredictFn, str]],
    *,
    n_layers: int,
    classes_per_layer: int,
    tile_kwargs: dict,
    align_layers: bool,
    progress: bool,
    align_block_px: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over passes, each aligned to the running mean (Welford update), block by
    block of ``align_block_px`` (default the tile size)."""
    block = int(align_block_px or tile_kwargs["tile_px"])
    mean = m2 = None
    for k, (fn, name) in enumerate(passes, start=1):
        fwd, inv = _TRANSFORMS[name]
        pred = predict_tiled(
            np.ascontiguousarray(fwd(image)),
            fn,
            n_layers=n_layers,
            classes_per_layer=classes_per_layer,
            align_layers=align_layers,
            progress=progress,
            **tile_kwargs,
        )
        pred = inv(pred)  # a view
        if mean is None:
            mean = np.ascontiguousarray(pred)  # the first pass sets the layer order
            m2 = np.zeros_like(mean)
            continue
        if align_layers and n_layers > 1:
            # the running mean keeps the first pass's order and is less noisy than it
            pred = _align_blocks(mean, pred, n_layers, classes_per_layer, block)
        # Welford update channel by channel: temporaries stay (H, W)
        inv_k = np.float32(1.0 / k)
        for c_out in range(mean.shape[0]):
            p = pred[c_out]
            delta = p - mean[c_out]
            mean[c_out] += delta * inv_k
            delta *= p - mean[c_out]
            m2[c_out] += delta
        del pred, p, delta  # p is a view that would keep this pass alive
    m2 /= np.float32(len(passes))
    np.maximum(m2, 0.0, out=m2)  # rounding can leave tiny negatives
    return mean, np.sqrt(m2, out=m2)


def tta_predict(
    image,
    predict_fn: PredictFn,
    *,
    n_layers: int,
    classes_per_layer: int,
    transforms: Sequence[str] | str = ("identity", "flip_h", "flip_v", "rot90"),
    tile_px: int = 256,
    overlap_px: int = 64,
    batch_size: int = 4,
    align_layers: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Test-time augmentation: average :func:`predict_tiled` over D4 transforms.

    Each pass transforms the image, predicts it tile by tile, transforms the
    probabilities back, and aligns its layer branches to the running mean of the
    previous passes, so the first pass sets the layer order (a network may order its
    branches differently on a flipped image).

    Parameters
    ----------
    image, predict_fn, n_layers, classes_per_layer, tile_px, overlap_px, batch_size,
    align_layers, progress
        As in :func:`predict_tiled`.
    transforms : sequence of str or "d4", optional
        Names from :data:`D4_TRANSFORMS`; ``"d4"`` means all eight.

    Returns
    -------
    mean : ndarray, shape (C, H, W), float32
        Mean probability over passes.
    std : ndarray, shape (C, H, W), float32
        Per-pixel standard deviation over passes (population, ddof=0): an uncertainty
        map; 0 for a single pass.

    Notes
    -----
    Peak memory is about three ``(C, H, W)`` float32 arrays (mean, running sum of
    squares, current pass) plus what :func:`predict_tiled` needs.
    """
    arr = _check_image(image)
    n_layers, cpl = _check_layers(n_layers, classes_per_layer)
    transforms = _check_transforms(transforms)
    if not callable(predict_fn):
        raise GombnetError("predict_fn must be callable")
    return _aggregate(
        arr,
        [(predict_fn, t) for t in transforms],
        n_layers=n_layers,
        classes_per_layer=cpl,
        tile_kwargs=dict(tile_px=tile_px, overlap_px=overlap_px, batch_size=batch_size),
        align_layers=align_layers,
        progress=progress,
    )


def ensemble_predict(
    image,
    predict_fns: Sequence[PredictFn],
    *,
    n_layers: int,
    classes_per_layer: int,
    transforms: Sequence[str] | str = ("identity",),
    tile_px: int = 256,
    overlap_px: int = 64,
    batch_size: int = 4,
    align_layers: bool = True,
    progress: bool = False,
    align_block_px: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Average several models (each optionally with test-time augmentation).

    Every (model, transform) pair is one pass; each is aligned to the running mean of
    the passes before it, block by block of ``align_block_px`` (default ``tile_px``), so
    the first pass (first model, first transform) sets the layer order. Returns
    ``(mean, std)`` like :func:`tta_predict`.

    Parameters
    ----------
    predict_fns : sequence of callable
        Models with the ``predict_fn`` contract of :func:`predict_tiled`; all must have
        the same ``n_layers`` and ``classes_per_layer``.
    transforms : sequence of str or "d4", optional
        D4 transforms applied to every model; default no augmentation.
    """
    arr = _check_image(image)
    n_layers, cpl = _check_layers(n_layers, classes_per_layer)
    transforms = _check_transforms(transforms)
    if callable(predict_fns):
        predict_fns = [predict_fns]
    predict_fns = list(predict_fns)
    if not predict_fns:
        raise GombnetError("predict_fns is empty")
    if not all(callable(f) for f in predict_fns):
        raise GombnetError("every entry of predict_fns must be callable")
    return _aggregate(
        arr,
        [(fn, t) for fn in predict_fns for t in transforms],
        n_layers=n_layers,
        classes_per_layer=cpl,
        tile_kwargs=dict(tile_px=tile_px, overlap_px=overlap_px, batch_size=batch_size),
        align_layers=align_layers,
        progress=progress,
        align_block_px=align_block_px,
    )

"""Atom positions from per-class probability maps.

Each channel of a ``(C, H, W)`` probability map is thresholded, split into connected
blobs (touching blobs that look like two atoms are separated by a watershed), and every
blob becomes one atom at its probability-weighted centre of mass. Channels of classes that
share a site (S-S and Se-S columns of one layer) are summed first, and each blob of the sum
takes the more probable class.

Pixel convention: x = column, y = row; the centre of pixel (row r, col c) is (x, y) =
(c, r).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..arrays import as_real_array
from ..errors import GombnetError

__all__ = ["find_atoms", "site_grouping", "ATOM_KEYS", "DEFAULT_SITE_GROUPS"]

#: Classes that are alternatives at one kind of site, used when a model card names none:
#: an S-S or an Se-S column sits on each chalcogen site of a WS2(1-x)Se2x layer.
DEFAULT_SITE_GROUPS = (("S2", "SSe"),)

#: Keys of the dict returned by :func:`find_atoms`, with their dtypes.
ATOM_KEYS = {
    "channel": np.int64,
    "x_px": np.float64,
    "y_px": np.float64,
    "score": np.float32,
    "area_px": np.int64,
}

# A blob is a candidate for splitting when larger than this multiple of one atom's area.
_SPLIT_AREA_FACTOR = 1.5
# Weight of the distance-to-edge tie-breaker added to the probability when looking for
# split markers: separates two peaks of a saturated (flat, ~1) probability plateau
# without moving peaks of a smooth map.
_EDT_TIEBREAK = 1e-3
# Blobs to split are processed together per block of this many pixels (see _split_touching).
_SPLIT_BLOCK_PX = 128


def _empty_result() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=t) for k, t in ATOM_KEYS.items()}


def _split_touching(
    prob: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    areas: np.ndarray,
    *,
    threshold: float,
    min_distance_px: int,
    atom_area_px: float | None,
    min_area_px: int,
) -> np.ndarray:
    """Re-label blobs whose area suggests several atoms by a marker watershed.

    Candidate blobs are split together per block of :data:`_SPLIT_BLOCK_PX` (by where their
    bounding box starts), each block's work confined to its candidates' bounding box padded so
    that everything that decides their markers lies inside (the distance to the nearest
    background pixel, neighbours within ``min_distance_px``). Candidates are usually rare (one
    blob in 800 of a 4096 px graphene map: 7.7 -> 1.5-1.9 s for its atoms), and when they are not
    the blocks together cover about the image once, as one box around all of them did.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if atom_area_px is None:
        sizes = areas[1:][areas[1:] >= max(min_area_px, 1)]
        if sizes.size == 0:
            return labels
        atom_area_px = float(np.median(sizes))
    big = areas > _SPLIT_AREA_FACTOR * atom_area_px
    big[0] = False
    if not big.any():
        return labels
    boxes = ndimage.find_objects(labels)
    blocks: dict[tuple[int, int], list[int]] = {}
    for label in np.flatnonzero(big):
        rows, cols = boxes[label - 1]
        blocks.setdefault((rows.start // _SPLIT_BLOCK_PX, cols.start // _SPLIT_BLOCK_PX), []).append(label)
    out, next_label = None, n_labels + 1
    for group in blocks.values():
        rows = [boxes[g - 1][0] for g in group]
        cols = [boxes[g - 1][1] for g in group]
        # a blob pixel's nearest background pixel is at most half its box's longer side (+1)
        # away; markers look min_distance_px further
        longest = max(max(r.stop - r.start, c.stop - c.start) for r, c in zip(rows, cols))
        pad = longest // 2 + 2 + int(min_distance_px)
        box = (slice(max(min(r.start for r in rows) - pad, 0), max(r.stop for r in rows) + pad),
               slice(max(min(c.start for c in cols) - pad, 0), max(c.stop for c in cols) + pad))
        sub = labels[box]
        cmask = big[sub]  # every candidate, this block's or not: the surroundings as they are
        elev = prob[box].astype(np.float64) + _EDT_TIEBREAK * ndimage.distance_transform_edt(cmask)
        elev[~cmask] = 0.0
        peaks = peak_local_max(elev, min_distance=int(min_distance_px), threshold_abs=float(threshold),
                               exclude_border=False)
        if len(peaks) == 0:
            continue
        # keep the markers of this block's blobs that got two or more
        peak_blob = sub[peaks[:, 0], peaks[:, 1]]
        mine = np.isin(peak_blob, group)
        peaks, peak_blob = peaks[mine], peak_blob[mine]
        blob_ids, counts = np.unique(peak_blob, return_counts=True)
        split_ids = blob_ids[counts >= 2]
        if split_ids.size == 0:
            continue
        keep = np.isin(peak_blob, split_ids)
        peaks = peaks[keep]
        smask = np.isin(sub, split_ids)
        markers = np.zeros(sub.shape, dtype=np.int64)
        markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
        ws = watershed(-elev, markers, mask=smask)
        if out is None:
            out = labels.astype(np.int64, copy=True)
        # pixels of a split blob that no marker reached keep their old label
        reached = smask & (ws > 0)
        out[box][reached] = next_label - 1 + ws[reached]
        next_label += len(peaks)
    return labels if out is None else out


def _check_probabilities(probabilities) -> np.ndarray:
    prob = as_real_array(probabilities, "probabilities", (2, 3), "(C, H, W) or (H, W)")
    return prob[None] if prob.ndim == 2 else prob


def find_atoms(
    probabilities,
    *,
    threshold: float = 0.5,
    method: str = "threshold",
    min_area_px: int = 3,
    split_touching: bool = True,
    min_distance_px: int = 3,
    atom_area_px: float | None = None,
    site_groups=None,
    class_weights=None,
) -> dict[str, np.ndarray]:
    """Find atoms as blobs in probability maps.

    Per channel (or per site group, on its summed map): threshold, connected components
    (4-connectivity), optionally split blobs of touching atoms, drop blobs smaller than
    ``min_area_px``, and place each atom at the centre of mass of ``probability -
    threshold`` over its blob.

    Weighting by the excess over the threshold rather than by the probability itself
    makes the weight go continuously to 0 at the blob edge, so which edge pixels happen
    to pass the threshold hardly moves the centre (sub-pixel positions stay unbiased for
    atoms at non-integer positions).

    Parameters
    ----------
    probabilities : array_like, shape (C, H, W) or (H, W)
        Probability maps, e.g. from :func:`gombnet.inference.tiling.predict_tiled`.
    threshold : float, optional
        Pixels with probability > ``threshold`` belong to atoms (``method="threshold"``).
    method : {"threshold", "otsu"}, optional
        ``"otsu"`` picks one threshold per channel with Otsu's method
        (``skimage.filters.threshold_otsu``), ignoring ``threshold``.
    min_area_px : int, optional
        Blobs (after splitting) with fewer pixels are dropped as noise.
    split_touching : bool, optional
        Split blobs larger than 1.5x one atom's area that hold two or more probability
        peaks at least ``min_distance_px`` apart, by a watershed on ``-probability``
        seeded at those peaks.
    min_distance_px : int, optional
        Minimum distance between the peaks of atoms in one blob [px].
    atom_area_px : float, optional
        Area of one atom's blob [px]. Default: the median blob area of the channel (this
        assumes most blobs are single atoms; in a channel with only a few blobs, all of
        them touching pairs, pass it explicitly).
    site_groups : sequence of sequence of int, optional
        Channels whose classes are alternatives at one kind of site, e.g. the S-S and Se-S
        channels of one layer (see :func:`site_grouping`). The atoms of a group are found
        once, on the group's summed probability map (clipped at 1), so a column whose
        probability is split between its classes is neither missed nor reported twice; each
        takes the channel with the largest weighted probability mass over its blob.
    class_weights : sequence of float, optional
        One positive weight per channel for that choice (default all 1: the most probable
        class). With weights 1 and w for S-S and Se-S, a column is called Se-S when its Se-S
        mass is more than 1 / (1 + w) of the two together.

    Returns
    -------
    dict of ndarray, all of length N (number of atoms), sorted by channel then raster
    order of the blobs (split atoms come after the unsplit blobs of their channel):

    - ``"channel"`` (int64): channel index.
    - ``"x_px"``, ``"y_px"`` (float64): sub-pixel position, x = column, y = row.
    - ``"score"`` (float32): maximum probability in the blob (of the summed map, for a
      site group).
    - ``"area_px"`` (int64): blob area in pixels.

    Raises
    ------
    GombnetError
        NaN/inf, wrong number of dimensions, or bad parameters.
    """
    prob = _check_probabilities(probabilities)
    if method not in ("threshold", "otsu"):
        raise GombnetError(f"method must be 'threshold' or 'otsu', got {method!r}")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise GombnetError(f"threshold must be a number, got {threshold!r}") from None
    if method == "threshold" and not (0.0 <= threshold < 1.0):
        raise GombnetError(f"threshold must be in [0, 1), got {threshold}")
    for v, name in ((min_area_px, "min_area_px"), (min_distance_px, "min_distance_px")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (0 if name == "min_area_px" else 1):
            raise GombnetError(f"{name} must be an integer >= {0 if name == 'min_area_px' else 1}, got {v!r}")
    if atom_area_px is not None and not (np.isfinite(atom_area_px) and atom_area_px > 0):
        raise GombnetError(f"atom_area_px must be a positive number, got {atom_area_px!r}")

    n_ch = prob.shape[0]
    groups = _check_site_groups(site_groups, n_ch)
    weights = _check_class_weights(class_weights, n_ch)
    grouped = {c for g in groups for c in g}
    parts: list[dict[str, np.ndarray]] = []
    for chans in [(c,) for c in range(n_ch) if c not in grouped] + groups:
        # alternatives at one site: one atom wherever their summed probability says so
        p = prob[chans[0]] if len(chans) == 1 else np.minimum(prob[list(chans)].sum(axis=0), 1.0)
        if method == "otsu":
            if float(p.min()) == float(p.max()):
                continue  # constant map: nothing to separate
            from skimage.filters import threshold_otsu

            thr = float(threshold_otsu(p))
        else:
            thr = threshold
        blobs = _blobs(p, thr, split_touching=split_touching, min_distance_px=min_distance_px,
                       atom_area_px=atom_area_px, min_area_px=min_area_px)
        if blobs is None:
            continue
        table, lab, idx, keep = blobs
        if len(chans) == 1:
            channel = np.full(keep.size, chans[0], dtype=np.int64)
        else:
            # species: the class with the largest weighted probability mass in the blob
            n_lab = int(lab.max()) + 1
            mass = np.stack([weights[c] * np.bincount(lab, weights=prob[c].ravel()[idx], minlength=n_lab)[keep]
                             for c in chans])
            channel = np.asarray(chans, dtype=np.int64)[mass.argmax(axis=0)]
        parts.append({"channel": channel, **table})
    if not parts:
        return _empty_result()
    out = {k: np.concatenate([d[k] for d in parts]).astype(t, copy=False) for k, t in ATOM_KEYS.items()}
    if groups:  # grouped atoms came last: back to channel order
        order = np.argsort(out["channel"], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out


def _blobs(p: np.ndarray, thr: float, *, split_touching: bool, min_distance_px: int,
           atom_area_px: float | None, min_area_px: int):
    """Atoms of one probability map: (table of x_px, y_px, score, area_px; the blob label
    of every foreground pixel; those pixels' flat indices; the labels kept), or None."""
    width = p.shape[1]
    labels, n = ndimage.label(p > thr)
    if n == 0:
        return None
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    if split_touching:
        labels = _split_touching(p, labels, n, areas, threshold=thr, min_distance_px=min_distance_px,
                                 atom_area_px=atom_area_px, min_area_px=min_area_px)
    # statistics over foreground pixels only, all blobs at once
    idx = np.flatnonzero(labels)
    lab = labels.ravel()[idx]
    n_lab = int(lab.max()) + 1
    area = np.bincount(lab, minlength=n_lab)
    pv = p.ravel()[idx]
    w = (pv - np.float32(thr)).astype(np.float64)
    w_sum = np.bincount(lab, weights=w, minlength=n_lab)
    y_sum = np.bincount(lab, weights=w * (idx // width), minlength=n_lab)
    x_sum = np.bincount(lab, weights=w * (idx % width), minlength=n_lab)
    order = np.argsort(lab, kind="stable")
    lab_sorted = lab[order]
    starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]])
    present = lab_sorted[starts]
    peak = np.zeros(n_lab, dtype=np.float32)
    peak[present] = np.maximum.reduceat(pv[order], starts)
    keep = np.flatnonzero((area >= max(min_area_px, 1)) & (w_sum > 0))
    keep = keep[keep > 0]
    if keep.size == 0:
        return None
    table = {"x_px": x_sum[keep] / w_sum[keep], "y_px": y_sum[keep] / w_sum[keep], "score": peak[keep],
             "area_px": area[keep].astype(np.int64)}
    return table, lab, idx, keep


def site_grouping(class_names, n_layers: int, site_groups=None, class_weights=None) -> dict:
    """:func:`find_atoms` arguments ``site_groups`` and ``class_weights`` for a model's classes.

    Parameters
    ----------
    class_names : list of str
        Classes of one layer, in channel order (channels are layer-major).
    n_layers : int
    site_groups : list of list of str, optional
        Groups of class names that are alternatives at one site (a model card's
        ``site_groups``); default: those of :data:`DEFAULT_SITE_GROUPS` whose classes the
        model has. ``[]`` finds every class on its own map.
    class_weights : dict of str to float, optional
        Weight of a class when a grouped atom's species is chosen (a model card's
        ``class_weights``); classes not named weigh 1.

    Returns
    -------
    dict with ``site_groups`` (channel indices, one group per layer and class group) and
    ``class_weights`` (one per channel).
    """
    names = list(class_names)
    if site_groups is None:
        site_groups = [g for g in DEFAULT_SITE_GROUPS if all(c in names for c in g)]
    weights = dict(class_weights or {})
    unknown = sorted(({c for g in site_groups for c in g} | set(weights)) - set(names))
    if unknown:
        raise GombnetError(f"site groups or class weights name classes {unknown} that the model lacks ({names})")
    k = len(names)
    groups = [[layer * k + names.index(c) for c in g] for layer in range(n_layers) for g in site_groups]
    return {"site_groups": groups,
            "class_weights": [float(weights.get(names[ch % k], 1.0)) for ch in range(n_layers * k)]}


def _check_site_groups(site_groups, n_channels: int) -> list[tuple[int, ...]]:
    if site_groups is None:
        return []
    try:
        groups = [tuple(int(c) for c in g) for g in site_groups]
    except (TypeError, ValueError):
        raise GombnetError(f"site_groups must be lists of channel indices, got {site_groups!r}") from None
    flat = [c for g in groups for c in g]
    if any(len(g) < 2 for g in groups) or len(set(flat)) != len(flat) or any(not 0 <= c < n_channels for c in flat):
        raise GombnetError(f"site_groups must be groups of >= 2 distinct channels out of 0..{n_channels - 1}, "
                           f"each in one group at most; got {site_groups!r}")
    return groups


def _check_class_weights(class_weights, n_channels: int) -> np.ndarray:
    if class_weights is None:
        return np.ones(n_channels)
    w = np.asarray(class_weights, dtype=np.float64)
    if w.shape != (n_channels,) or not (np.isfinite(w).all() and (w > 0).all()):
        raise GombnetError(f"class_weights must be {n_channels} positive numbers (one per channel), "
                           f"got {class_weights!r}")
    return w

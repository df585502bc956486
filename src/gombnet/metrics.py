"""Evaluation metrics for multi-branch (one decoder per atomic layer) segmentation.

Pixel-level metrics on binary masks and atom-level metrics on atom tables, with one
assignment of predicted branches to true layers per image.

Conventions
-----------
* Masks and probability maps are ``(C, H, W)`` with ``C = n_layers * n_classes``,
  layer-major: channel ``layer * n_classes + class``.
* Predicted atoms: dict of 1-D arrays ``{"channel", "x_px", "y_px", "score"}``
  (``score`` is optional and unused here).
* True columns: dict of 1-D arrays ``{"x_px", "y_px", "layer", "class"}``; ``class`` is a
  class index or a class name from ``class_names``.
* A layer permutation ``perm`` means "true layer ``i`` is predicted by branch
  ``perm[i]``", as in :func:`permute_layers`.
* Undefined ratios (e.g. IoU of a channel that is empty in both prediction and truth,
  precision with no prediction) are ``nan`` and are left out of means. All returned
  numbers are plain Python ``int``/``float``/``list``/``dict`` so that the results can be
  written with :func:`json.dump` (which writes ``nan`` as ``NaN``).

Differences from the Gomb-Net authors' evaluation: they took the better of the two layer
orders independently for each metric and only reported foreground IoU/Dice pooled over all
channels. Here one order is chosen per image (:func:`best_layer_assignment`) and used for
every metric, metrics are reported per layer and class, and atom-level detection,
localisation, species and cross-layer errors are measured.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import GombnetError, check

__all__ = [
    "layer_permutations",
    "permute_layers",
    "best_layer_assignment",
    "pixel_metrics",
    "match_points",
    "atom_metrics",
    "aggregate",
    "format_table",
]

NAN = float("nan")
SPURIOUS = "(spurious)"
MISSED = "(missed)"


# ----------------------------------------------------------------------------- helpers


def _check_n_layers(n_layers) -> int:
    check(
        isinstance(n_layers, (int, np.integer)) and not isinstance(n_layers, bool) and n_layers >= 1,
        f"n_layers must be a positive integer, got {n_layers!r}",
    )
    return int(n_layers)


def _check_class_names(class_names) -> list[str]:
    check(
        isinstance(class_names, Sequence) and not isinstance(class_names, str) and len(class_names) >= 1,
        f"class_names must be a non-empty list of names, got {class_names!r}",
    )
    names = [str(c) for c in class_names]
    check(len(set(names)) == len(names), f"class_names has duplicates: {names}")
    return names


def _check_perm(perm, n_layers: int) -> tuple[int, ...]:
    try:
        p = tuple(int(v) for v in perm)
    except (TypeError, ValueError):
        raise GombnetError(f"layer permutation must be a sequence of integers, got {perm!r}") from None
    check(
        sorted(p) == list(range(n_layers)),
        f"layer permutation {list(p)} is not a permutation of 0..{n_layers - 1}",
    )
    return p


def _as_binary(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    check(a.dtype.kind in "biuf", f"{name} must be a numeric or boolean array, got dtype {a.dtype}")
    check(bool(((a == 0) | (a == 1)).all()), f"{name} must be binary (only 0 and 1); threshold it first")
    return a.astype(bool)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else NAN


def _nanmean(values) -> float:
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else NAN


def _channel_name(layer: int, class_name: str) -> str:
    return f"layer{layer}/{class_name}"


def _check_masks(pred_binary, true_binary, n_layers, class_names=None):
    n_layers = _check_n_layers(n_layers)
    pred = _as_binary(pred_binary, "pred_binary")
    true = _as_binary(true_binary, "true_binary")
    check(pred.ndim == 3, f"pred_binary must be (C, H, W), got shape {pred.shape}")
    check(pred.shape == true.shape, f"pred_binary {pred.shape} and true_binary {true.shape} differ in shape")
    n_channels = pred.shape[0]
    check(
        n_channels % n_layers == 0,
        f"{n_channels} channels cannot be split into {n_layers} layers",
    )
    if class_names is not None:
        check(
            n_channels == n_layers * len(class_names),
            f"{n_channels} channels != n_layers ({n_layers}) x {len(class_names)} classes",
        )
    return pred, true, n_layers, n_channels // n_layers


# ----------------------------------------------------------------- layer assignment


def layer_permutations(n_layers: int) -> list[tuple[int, ...]]:
    """All assignments of predicted branches to true layers.

    Parameters
    ----------
    n_layers : int
        Number of atomic layers (= decoder branches).

    Returns
    -------
    list of tuple of int
        All ``n_layers!`` permutations; the identity comes first. ``perm[i]`` is the
        branch that predicts true layer ``i``.
    """
    n_layers = _check_n_layers(n_layers)
    return list(itertools.permutations(range(n_layers)))


def permute_layers(maps, perm, n_layers: int) -> np.ndarray:
    """Reorder the layer groups of a layer-major channel stack.

    Parameters
    ----------
    maps : array_like, shape (C, H, W) or (B, C, H, W)
        Masks or probabilities with ``C = n_layers * n_classes`` channels, layer-major.
    perm : sequence of int
        Output layer ``i`` is taken from input branch ``perm[i]``.
    n_layers : int
        Number of layers.

    Returns
    -------
    numpy.ndarray
        Array of the same shape with the layer groups reordered (a copy).
    """
    n_layers = _check_n_layers(n_layers)
    maps = np.asarray(maps)
    check(maps.ndim in (3, 4), f"maps must be (C, H, W) or (B, C, H, W), got shape {maps.shape}")
    n_channels = maps.shape[-3]
    check(n_channels % n_layers == 0, f"{n_channels} channels cannot be split into {n_layers} layers")
    perm = _check_perm(perm, n_layers)
    n_classes = n_channels // n_layers
    index = np.concatenate([np.arange(b * n_classes, (b + 1) * n_classes) for b in perm])
    return np.take(maps, index, axis=-3)


def permute_found_layers(found: Mapping, perm, *, n_layers: int, classes_per_layer: int) -> dict:
    """Renumber the layers of an atom table the way :func:`permute_layers` reorders maps.

    ``found["channel"]`` is layer-major (``layer * classes_per_layer + class``); an atom of input
    branch ``perm[i]`` ends up in layer ``i``. Returns a new table (rows in the same order).
    """
    perm = _check_perm(perm, _check_n_layers(n_layers))
    channel = np.asarray(found["channel"], int)
    to_layer = np.argsort(perm)
    out = dict(found)
    out["channel"] = (to_layer[channel // classes_per_layer] * classes_per_layer
                      + channel % classes_per_layer).astype(np.asarray(found["channel"]).dtype)
    return out


def _branch_layer_dice(pred: np.ndarray, true: np.ndarray, n_layers: int, n_classes: int) -> np.ndarray:
    """Dice of every (branch, true layer, class) pairing; 1 where both are empty."""
    p = pred.reshape(n_layers, n_classes, -1)
    t = true.reshape(n_layers, n_classes, -1)
    p_sum = p.sum(axis=-1, dtype=np.int64)
    t_sum = t.sum(axis=-1, dtype=np.int64)
    dice = np.ones((n_layers, n_layers, n_classes))
    for b in range(n_layers):
        for layer in range(n_layers):
            for k in range(n_classes):
                den = p_sum[b, k] + t_sum[layer, k]
                if den > 0:
                    inter = np.count_nonzero(p[b, k] & t[layer, k])
                    dice[b, layer, k] = 2.0 * inter / den
    return dice


def best_layer_assignment(pred_binary, true_binary, n_layers: int) -> tuple[int, ...]:
    """The single assignment of predicted branches to true layers that fits best.

    The branches of a Gomb-Net are trained with a loss that is invariant to their order,
    so branch ``b`` may predict any true layer. This picks one order per image, the one
    with the highest Dice averaged over all channels, to be used for every metric of that
    image (the original evaluation picked the best order separately for each metric,
    which flatters the results).

    Parameters
    ----------
    pred_binary, true_binary : array_like of bool, shape (C, H, W)
        Predicted and true binary masks, ``C = n_layers * n_classes``, layer-major.
    n_layers : int
        Number of layers.

    Returns
    -------
    tuple of int
        ``perm`` with ``perm[i]`` = branch that predicts true layer ``i``; pass it to
        :func:`permute_layers`, :func:`pixel_metrics` and :func:`atom_metrics`. Ties go
        to the permutation listed first by :func:`layer_permutations` (identity first).

    Notes
    -----
    A channel empty in both prediction and truth counts as Dice 1 here (the prediction
    is right), so that the score is comparable between permutations.
    """
    pred, true, n_layers, n_classes = _check_masks(pred_binary, true_binary, n_layers)
    dice = _branch_layer_dice(pred, true, n_layers, n_classes)
    best, best_score = None, -np.inf
    for perm in layer_permutations(n_layers):
        score = float(np.mean([dice[perm[i], i] for i in range(n_layers)]))
        if score > best_score:
            best, best_score = perm, score
    return tuple(int(b) for b in best)


# --------------------------------------------------------------------- pixel metrics


def _pixel_channel_stats(tp: int, fp: int, fn: int, tn: int) -> dict:
    n = tp + fp + fn + tn
    return {
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "tn": int(tn),
        "pixel_accuracy": _ratio(tp + tn, n),
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _pixel_summary(counts: np.ndarray, n_layers: int, class_names: list[str], layer_perm) -> dict:
    """Build the pixel result dict from per-channel (tp, fp, fn, tn) counts, shape (C, 4)."""
    per_channel = {}
    for layer in range(n_layers):
        for k, name in enumerate(class_names):
            per_channel[_channel_name(layer, name)] = _pixel_channel_stats(*counts[layer * len(class_names) + k])
    per_class = {}
    for k, name in enumerate(class_names):
        chans = [per_channel[_channel_name(layer, name)] for layer in range(n_layers)]
        per_class[name] = {
            "iou": _nanmean(c["iou"] for c in chans),
            "dice": _nanmean(c["dice"] for c in chans),
            "pixel_accuracy": _nanmean(c["pixel_accuracy"] for c in chans),
        }
    tp, fp, fn, tn = (int(v) for v in counts.sum(axis=0))
    return {
        "kind": "pixel",
        "n_layers": n_layers,
        "class_names": list(class_names),
        "layer_perm": layer_perm,
        "pixel_accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "mean_iou": _nanmean(c["iou"] for c in per_channel.values()),
        "mean_dice": _nanmean(c["dice"] for c in per_channel.values()),
        "pooled_foreground": {"iou": _ratio(tp, tp + fp + fn), "dice": _ratio(2 * tp, 2 * tp + fp + fn)},
        "per_channel": per_channel,
        "per_class": per_class,
    }


def pixel_metrics(pred_binary, true_binary, n_layers: int, class_names, *, layer_perm=None) -> dict:
    """Pixel accuracy, IoU and Dice per channel, per class and on average.

    Parameters
    ----------
    pred_binary, true_binary : array_like of bool, shape (C, H, W)
        Predicted (thresholded) and true masks, ``C = n_layers * len(class_names)``,
        layer-major.
    n_layers : int
        Number of layers.
    class_names : sequence of str
        Class names of one layer, in channel order.
    layer_perm : sequence of int, optional
        Branch-to-layer assignment applied to ``pred_binary`` first (see
        :func:`best_layer_assignment`); identity if omitted.

    Returns
    -------
    dict
        ``pixel_accuracy``
            Correct pixels over all pixels of all channels (as in the paper).
        ``mean_iou``, ``mean_dice``
            Mean over channels (mIoU / mDice) of the per-channel values.
        ``pooled_foreground``
            ``{"iou", "dice"}`` of the foreground pooled over all channels: the
            number the Gomb-Net paper reports, given for comparison only (it is
            dominated by the most frequent class).
        ``per_channel``
            ``{"layer0/<class>": {"tp", "fp", "fn", "tn", "pixel_accuracy", "iou",
            "dice"}, ...}``.
        ``per_class``
            ``{"<class>": {"iou", "dice", "pixel_accuracy"}}``, averaged over layers.
        plus ``kind`` (``"pixel"``), ``n_layers``, ``class_names``, ``layer_perm``.

    Notes
    -----
    A channel that is empty in both prediction and truth has IoU and Dice ``nan``
    (undefined, nothing to find) and is left out of ``mean_iou``, ``mean_dice`` and the
    per-class means; its pixel accuracy is 1.
    """
    class_names = _check_class_names(class_names)
    pred, true, n_layers, n_classes = _check_masks(pred_binary, true_binary, n_layers, class_names)
    perm = tuple(range(n_layers)) if layer_perm is None else _check_perm(layer_perm, n_layers)
    pred = permute_layers(pred, perm, n_layers)
    p = pred.reshape(pred.shape[0], -1)
    t = true.reshape(true.shape[0], -1)
    n = p.shape[1]
    tp = np.count_nonzero(p & t, axis=1)
    p_sum = np.count_nonzero(p, axis=1)
    t_sum = np.count_nonzero(t, axis=1)
    fp = p_sum - tp
    fn = t_sum - tp
    tn = n - tp - fp - fn
    counts = np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)
    return _pixel_summary(counts, n_layers, class_names, list(perm))


# --------------------------------------------------------------------- point matching


def _as_xy(xy, name: str) -> np.ndarray:
    a = np.asarray(xy, dtype=float)
    if a.size == 0:
        return np.zeros((0, 2))
    check(a.ndim == 2 and a.shape[1] == 2, f"{name} must have shape (N, 2), got {a.shape}")
    check(bool(np.isfinite(a).all()), f"{name} contains NaN or infinite coordinates")
    return a


def match_points(pred_xy, true_xy, radius: float):
    """Optimal one-to-one matching of predicted to true points within a radius.

    Among all one-to-one matchings that only pair points at most ``radius`` apart, this
    returns one with the largest number of pairs and, among those, the smallest total
    distance (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`, solved
    separately on each connected group of nearby points so that thousands of points are
    matched in milliseconds).

    Parameters
    ----------
    pred_xy : array_like, shape (N, 2)
        Predicted positions (x, y).
    true_xy : array_like, shape (M, 2)
        True positions (x, y), same units as ``pred_xy``.
    radius : float
        Largest distance of a matched pair (inclusive), same units.

    Returns
    -------
    pred_idx, true_idx : numpy.ndarray of int
        Indices of the matched pairs, sorted by ``pred_idx``.
    distances : numpy.ndarray of float
        Distance of each pair.
    """
    p = _as_xy(pred_xy, "pred_xy")
    t = _as_xy(true_xy, "true_xy")
    check(
        isinstance(radius, (int, float, np.integer, np.floating)) and math.isfinite(radius) and radius > 0,
        f"radius must be a positive number, got {radius!r}",
    )
    empty = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), np.zeros(0))
    n, m = len(p), len(t)
    if n == 0 or m == 0:
        return empty
    pairs = cKDTree(p).sparse_distance_matrix(cKDTree(t), float(radius), output_type="ndarray")
    if len(pairs) == 0:
        return empty
    ei = pairs["i"].astype(np.intp)
    ej = pairs["j"].astype(np.intp)
    ed = pairs["v"].astype(float)

    # Connected groups of the bipartite "within radius" graph can be solved independently.
    graph = coo_matrix((np.ones(len(ei)), (ei, n + ej)), shape=(n + m, n + m))
    _, labels = connected_components(graph, directed=False)
    edge_label = labels[ei]
    order = np.argsort(edge_label, kind="stable")
    ei, ej, ed, edge_label = ei[order], ej[order], ed[order], edge_label[order]
    _, starts, n_edges = np.unique(edge_label, return_index=True, return_counts=True)

    # A group with one edge is one isolated pair: matched as is.
    single = starts[n_edges == 1]
    out_i, out_j, out_d = [ei[single]], [ej[single]], [ed[single]]
    for s, c in zip(starts[n_edges > 1], n_edges[n_edges > 1]):
        gi, gj, gd = ei[s : s + c], ej[s : s + c], ed[s : s + c]
        pi, li = np.unique(gi, return_inverse=True)
        tj, lj = np.unique(gj, return_inverse=True)
        # Any non-edge costs more than all real edges together, so the number of real
        # pairs is maximised first, then their total distance minimised.
        big = 2.0 * float(radius) * (min(len(pi), len(tj)) + 1) + 1.0
        cost = np.full((len(pi), len(tj)), big)
        cost[li, lj] = gd
        allowed = np.zeros(cost.shape, dtype=bool)
        allowed[li, lj] = True
        r, c_ = linear_sum_assignment(cost)
        keep = allowed[r, c_]
        out_i.append(pi[r[keep]])
        out_j.append(tj[c_[keep]])
        out_d.append(cost[r[keep], c_[keep]])
    mi = np.concatenate(out_i)
    mj = np.concatenate(out_j)
    md = np.concatenate(out_d)
    order = np.argsort(mi, kind="stable")
    return mi[order], mj[order], md[order]


# ---------------------------------------------------------------------- atom metrics


def _column(table: Mapping, key: str, table_name: str) -> np.ndarray:
    check(isinstance(table, Mapping), f"{table_name} must be a dict of 1-D arrays")
    check(key in table, f"{table_name} has no '{key}' column")
    a = np.asarray(table[key])
    check(a.ndim == 1, f"{table_name}['{key}'] must be 1-D, got shape {a.shape}")
    return a


def _int_column(table, key, table_name, upper: int) -> np.ndarray:
    a = _column(table, key, table_name)
    if a.size == 0:
        return np.zeros(0, dtype=np.intp)
    check(a.dtype.kind in "biuf", f"{table_name}['{key}'] must hold integers, got dtype {a.dtype}")
    check(bool(np.isfinite(a).all()) and bool((a == np.round(a)).all()), f"{table_name}['{key}'] must hold integers")
    a = a.astype(np.intp)
    check(
        bool(((a >= 0) & (a < upper)).all()),
        f"{table_name}['{key}'] has values outside 0..{upper - 1}",
    )
    return a


def _class_column(table, class_names: list[str]) -> np.ndarray:
    a = _column(table, "class", "true_columns")
    if a.size and a.dtype.kind in "USO":
        lookup = {name: k for k, name in enumerate(class_names)}
        unknown = sorted({str(v) for v in a} - set(lookup))
        check(not unknown, f"true_columns['class'] has unknown class names {unknown}; known: {class_names}")
        return np.array([lookup[str(v)] for v in a], dtype=np.intp)
    return _int_column(table, "class", "true_columns", len(class_names))


def _xy(table, table_name: str) -> np.ndarray:
    x = _column(table, "x_px", table_name).astype(float)
    y = _column(table, "y_px", table_name).astype(float)
    check(len(x) == len(y), f"{table_name}: x_px and y_px differ in length")
    check(bool(np.isfinite(x).all() and np.isfinite(y).all()), f"{table_name} has NaN or infinite positions")
    return np.stack([x, y], axis=1) if len(x) else np.zeros((0, 2))


def _detection_stats(tp: int, fp: int, fn: int, sse_px2: float, sse_a2: float) -> dict:
    return {
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "rmse_px": math.sqrt(sse_px2 / tp) if tp > 0 else NAN,
        "rmse_angstrom": math.sqrt(sse_a2 / tp) if tp > 0 else NAN,
        "sse_px2": float(sse_px2),
        "sse_angstrom2": float(sse_a2),
    }


def _detection_groups(counts: np.ndarray, n_layers: int, class_names: list[str]) -> dict:
    """Per layer x class, per class, per layer and overall detection stats.

    ``counts`` has shape (n_layers, n_classes, 5): tp, fp, fn, sse_px2, sse_angstrom2.
    """
    def stats(c):
        return _detection_stats(int(c[0]), int(c[1]), int(c[2]), float(c[3]), float(c[4]))

    return {
        "per_layer_class": {
            _channel_name(layer, name): stats(counts[layer, k])
            for layer in range(n_layers)
            for k, name in enumerate(class_names)
        },
        "per_class": {name: stats(counts[:, k].sum(axis=0)) for k, name in enumerate(class_names)},
        "per_layer": {f"layer{layer}": stats(counts[layer].sum(axis=0)) for layer in range(n_layers)},
        "overall": stats(counts.sum(axis=(0, 1))),
    }


def _confusion_dict(matrix: np.ndarray, class_names: list[str]) -> dict:
    matched = matrix[:-1, :-1]
    return {
        "rows_true": [*class_names, SPURIOUS],
        "cols_pred": [*class_names, MISSED],
        "matrix": [[int(v) for v in row] for row in matrix],
        "species_accuracy": _ratio(np.trace(matched), matched.sum()),
    }


def _cross_dopant_dicts(cross: np.ndarray, dop: np.ndarray | None, dopant_class, n_layers: int):
    """``cross``: (n_layers, 2) = cross-layer errors, predicted atoms per layer.
    ``dop``: (n_layers, 4) = predicted dopant, predicted dopant in a layer without
    true dopant, true dopant columns, predicted dopant-site columns in a layer without
    true dopant."""
    cross_d = {
        "n_cross_layer": int(cross[:, 0].sum()),
        "n_pred": int(cross[:, 1].sum()),
        "rate": _ratio(cross[:, 0].sum(), cross[:, 1].sum()),
        "per_layer": {
            f"layer{layer}": {
                "n_cross_layer": int(cross[layer, 0]),
                "n_pred": int(cross[layer, 1]),
                "rate": _ratio(cross[layer, 0], cross[layer, 1]),
            }
            for layer in range(n_layers)
        },
    }
    if dop is None:
        return cross_d, None
    dop_d = {
        "class": dopant_class,
        "n_pred": int(dop[:, 0].sum()),
        "n_wrong_layer": int(dop[:, 1].sum()),
        "wrong_layer_rate": _ratio(dop[:, 1].sum(), dop[:, 0].sum()),
        "n_sites_clean_layers": int(dop[:, 3].sum()),
        "clean_layer_site_rate": _ratio(dop[:, 1].sum(), dop[:, 3].sum()),
        "per_layer": {
            f"layer{layer}": {
                "n_pred": int(dop[layer, 0]),
                "n_wrong_layer": int(dop[layer, 1]),
                "n_true": int(dop[layer, 2]),
                "n_sites_clean": int(dop[layer, 3]),
            }
            for layer in range(n_layers)
        },
    }
    return cross_d, dop_d


def atom_metrics(
    pred_atoms: Mapping,
    true_columns: Mapping,
    *,
    n_layers: int,
    class_names,
    radius_px: float,
    pixel_size_angstrom: float,
    layer_perm=None,
    dopant_class: str | None = None,
    dopant_sites=None,
) -> dict:
    """Atom-level detection, localisation, species and layer errors of one image.

    Parameters
    ----------
    pred_atoms : dict of 1-D arrays
        ``{"channel", "x_px", "y_px"[, "score"]}``; ``channel = branch * n_classes +
        class``.
    true_columns : dict of 1-D arrays
        ``{"x_px", "y_px", "layer", "class"}``; ``class`` as index or name.
    n_layers : int
        Number of layers.
    class_names : sequence of str
        Class names of one layer, in channel order.
    radius_px : float
        Largest distance [px] at which a prediction counts as finding a column. Keep it
        below half the smallest distance between projected columns of one layer (e.g.
        < 0.9 Å for WS2, < 0.7 Å for graphene) so that the species-agnostic matching is
        unambiguous.
    pixel_size_angstrom : float
        Pixel size [Å/px], for errors in Å.
    layer_perm : sequence of int, optional
        ``layer_perm[i]`` = predicted branch that corresponds to true layer ``i`` (from
        :func:`best_layer_assignment`); identity if omitted.
    dopant_class : str, optional
        Class name of a dopant column (e.g. ``"SSe"``) for the wrong-layer dopant rate.
    dopant_sites : sequence of str, optional
        Classes whose columns the dopant can replace, the dopant included (``("S2", "SSe")``:
        chalcogen columns); default every class. The denominator of
        ``clean_layer_site_rate``.

    Returns
    -------
    dict
        ``per_layer_class`` (``"layer0/<class>"``), ``per_class`` (summed over layers),
        ``per_layer`` (summed over classes) and ``overall``
            ``{"tp", "fp", "fn", "precision", "recall", "f1", "rmse_px",
            "rmse_angstrom", "sse_px2", "sse_angstrom2"}``: a prediction is a true
            positive if it is matched (one-to-one, :func:`match_points`) to a true
            column of the same layer and class within ``radius_px``; the RMSE is over
            these matched pairs.
        ``confusion``
            ``{"layer0": {"rows_true", "cols_pred", "matrix", "species_accuracy"}}``:
            predictions of any class matched one-to-one to true columns of the same
            layer; ``matrix[true class][predicted class]`` counts the pairs, the last
            row counts unmatched predictions (spurious) and the last column unmatched
            true columns (missed). ``species_accuracy`` = correct class among the
            matched pairs.
        ``cross_layer``
            ``{"n_cross_layer", "n_pred", "rate", "per_layer"}``: predicted atoms that
            match no true column of their assigned layer (spurious in the confusion
            matching) but lie within ``radius_px`` of a true column of another layer,
            over all predicted atoms. In regions where the layers' columns overlap in
            projection a random false positive may also count, so this is an upper
            bound.
        ``dopant`` (``None`` without ``dopant_class``)
            ``{"class", "n_pred", "n_wrong_layer", "wrong_layer_rate", "per_layer"}``:
            predicted dopant columns in a layer whose truth holds no dopant column,
            over all predicted dopant columns. ``clean_layer_site_rate``: the same
            wrong columns over all predicted ``dopant_sites`` columns in layers whose
            truth holds no dopant (``n_sites_clean_layers``) - the Gomb-Net paper's
            "falsely predicts Se atoms in the other layer" rate, per chalcogen column.
            ``per_layer`` gives predicted, wrong and true dopant counts and
            ``n_sites_clean`` per layer.
        ``column_error_px``
            list of float, one value per true column in the order given: the distance [px] to
            the prediction it was matched to (same layer and class), NaN where missed.
            Per image only; :func:`aggregate` leaves it out.
        plus ``kind`` (``"atoms"``), ``n_layers``, ``class_names``, ``layer_perm``,
        ``radius_px``, ``pixel_size_angstrom``, ``n_pred``, ``n_true``.
    """
    n_layers = _check_n_layers(n_layers)
    class_names = _check_class_names(class_names)
    n_classes = len(class_names)
    check(
        isinstance(radius_px, (int, float, np.integer, np.floating)) and math.isfinite(radius_px) and radius_px > 0,
        f"radius_px must be a positive number, got {radius_px!r}",
    )
    check(
        isinstance(pixel_size_angstrom, (int, float, np.integer, np.floating))
        and math.isfinite(pixel_size_angstrom)
        and pixel_size_angstrom > 0,
        f"pixel_size_angstrom must be a positive number, got {pixel_size_angstrom!r}",
    )
    perm = tuple(range(n_layers)) if layer_perm is None else _check_perm(layer_perm, n_layers)
    if dopant_class is not None:
        check(dopant_class in class_names, f"dopant_class {dopant_class!r} is not one of {class_names}")
        sites = list(class_names) if dopant_sites is None else list(dopant_sites)
        check(set(sites) <= set(class_names) and dopant_class in sites,
              f"dopant_sites {sites} must be classes of {class_names} and include {dopant_class!r}")

    p_xy = _xy(pred_atoms, "pred_atoms")
    channel = _int_column(pred_atoms, "channel", "pred_atoms", n_layers * n_classes)
    check(len(channel) == len(p_xy), "pred_atoms: channel and x_px differ in length")
    t_xy = _xy(true_columns, "true_columns")
    t_layer = _int_column(true_columns, "layer", "true_columns", n_layers)
    t_class = _class_column(true_columns, class_names)
    check(
        len(t_layer) == len(t_xy) and len(t_class) == len(t_xy),
        "true_columns: x_px, layer and class differ in length",
    )

    # branch b predicts true layer inverse[b]
    inverse = np.empty(n_layers, dtype=np.intp)
    inverse[list(perm)] = np.arange(n_layers)
    p_layer = inverse[channel // n_classes] if len(channel) else np.zeros(0, dtype=np.intp)
    p_class = channel % n_classes
    a2 = float(pixel_size_angstrom) ** 2

    counts = np.zeros((n_layers, n_classes, 5))
    column_error = np.full(len(t_xy), np.nan)
    for layer in range(n_layers):
        for k in range(n_classes):
            ip = np.flatnonzero((p_layer == layer) & (p_class == k))
            it = np.flatnonzero((t_layer == layer) & (t_class == k))
            _, mj, d = match_points(p_xy[ip], t_xy[it], radius_px)
            column_error[it[mj]] = d
            sse = float(np.sum(d**2))
            counts[layer, k] = [len(d), len(ip) - len(d), len(it) - len(d), sse, sse * a2]

    confusion = {}
    cross = np.zeros((n_layers, 2), dtype=np.int64)
    for layer in range(n_layers):
        ip = np.flatnonzero(p_layer == layer)
        it = np.flatnonzero(t_layer == layer)
        mi, mj, _ = match_points(p_xy[ip], t_xy[it], radius_px)
        matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
        np.add.at(matrix, (t_class[it[mj]], p_class[ip[mi]]), 1)
        spurious = np.ones(len(ip), dtype=bool)
        spurious[mi] = False
        missed = np.ones(len(it), dtype=bool)
        missed[mj] = False
        np.add.at(matrix, (n_classes, p_class[ip[spurious]]), 1)
        np.add.at(matrix, (t_class[it[missed]], n_classes), 1)
        confusion[f"layer{layer}"] = _confusion_dict(matrix, class_names)

        other = np.flatnonzero(t_layer != layer)
        n_cross = 0
        if spurious.any() and len(other):
            near = cKDTree(t_xy[other]).query_ball_point(p_xy[ip[spurious]], float(radius_px), return_length=True)
            n_cross = int(np.count_nonzero(near))
        cross[layer] = [n_cross, len(ip)]

    dop = None
    if dopant_class is not None:
        kd = class_names.index(dopant_class)
        site_ids = [class_names.index(c) for c in sites]
        dop = np.zeros((n_layers, 4), dtype=np.int64)
        for layer in range(n_layers):
            n_true = int(np.count_nonzero((t_layer == layer) & (t_class == kd)))
            n_pred = int(np.count_nonzero((p_layer == layer) & (p_class == kd)))
            n_sites = int(np.count_nonzero((p_layer == layer) & np.isin(p_class, site_ids)))
            clean = n_true == 0
            dop[layer] = [n_pred, n_pred if clean else 0, n_true, n_sites if clean else 0]
    cross_d, dop_d = _cross_dopant_dicts(cross, dop, dopant_class, n_layers)

    return {
        "kind": "atoms",
        "n_layers": n_layers,
        "class_names": class_names,
        "layer_perm": list(perm),
        "radius_px": float(radius_px),
        "pixel_size_angstrom": float(pixel_size_angstrom),
        "n_pred": int(len(p_xy)),
        "n_true": int(len(t_xy)),
        **_detection_groups(counts, n_layers, class_names),
        "confusion": confusion,
        "cross_layer": cross_d,
        "dopant": dop_d,
        "column_error_px": column_error.tolist(),
    }


# ------------------------------------------------------------------------- aggregate


def _same(values, what: str):
    values = list(values)
    first = values[0]
    check(all(v == first for v in values), f"cannot aggregate results with different {what}")
    return first


def _aggregate_pixel(results: list[dict]) -> dict:
    n_layers = _same((r["n_layers"] for r in results), "n_layers")
    class_names = _same((r["class_names"] for r in results), "class_names")
    keys = [_channel_name(layer, name) for layer in range(n_layers) for name in class_names]
    counts = np.zeros((len(keys), 4), dtype=np.int64)
    for r in results:
        for c, key in enumerate(keys):
            ch = r["per_channel"][key]
            counts[c] += [ch["tp"], ch["fp"], ch["fn"], ch["tn"]]
    out = _pixel_summary(counts, n_layers, class_names, None)
    out["layer_perm"] = [r["layer_perm"] for r in results]
    out["n_images"] = len(results)
    out["mean_over_images"] = {
        "pixel_accuracy": _nanmean(r["pixel_accuracy"] for r in results),
        "mean_iou": _nanmean(r["mean_iou"] for r in results),
        "mean_dice": _nanmean(r["mean_dice"] for r in results),
        "pooled_foreground": {
            m: _nanmean(r["pooled_foreground"][m] for r in results) for m in ("iou", "dice")
        },
        "per_channel": {
            key: {m: _nanmean(r["per_channel"][key][m] for r in results) for m in ("pixel_accuracy", "iou", "dice")}
            for key in keys
        },
    }
    return out


def _aggregate_atoms(results: list[dict]) -> dict:
    n_layers = _same((r["n_layers"] for r in results), "n_layers")
    class_names = _same((r["class_names"] for r in results), "class_names")
    n_classes = len(class_names)
    counts = np.zeros((n_layers, n_classes, 5))
    for r in results:
        for layer in range(n_layers):
            for k, name in enumerate(class_names):
                s = r["per_layer_class"][_channel_name(layer, name)]
                counts[layer, k] += [s["tp"], s["fp"], s["fn"], s["sse_px2"], s["sse_angstrom2"]]
    confusion = {}
    for layer in range(n_layers):
        key = f"layer{layer}"
        matrix = sum(np.asarray(r["confusion"][key]["matrix"], dtype=np.int64) for r in results)
        confusion[key] = _confusion_dict(matrix, class_names)
    cross = np.zeros((n_layers, 2), dtype=np.int64)
    for r in results:
        for layer in range(n_layers):
            c = r["cross_layer"]["per_layer"][f"layer{layer}"]
            cross[layer] += [c["n_cross_layer"], c["n_pred"]]
    dopants = [r["dopant"] for r in results]
    dop, dopant_class = None, None
    if any(d is not None for d in dopants):
        check(all(d is not None for d in dopants), "cannot aggregate results with and without dopant_class")
        dopant_class = _same((d["class"] for d in dopants), "dopant_class")
        dop = np.zeros((n_layers, 4), dtype=np.int64)
        for d in dopants:
            for layer in range(n_layers):
                c = d["per_layer"][f"layer{layer}"]
                dop[layer] += [c["n_pred"], c["n_wrong_layer"], c["n_true"], c.get("n_sites_clean", 0)]
    cross_d, dop_d = _cross_dopant_dicts(cross, dop, dopant_class, n_layers)
    radii = {r["radius_px"] for r in results}
    sizes = {r["pixel_size_angstrom"] for r in results}
    return {
        "kind": "atoms",
        "n_images": len(results),
        "n_layers": n_layers,
        "class_names": class_names,
        "layer_perm": [r["layer_perm"] for r in results],
        # None where the images differ
        "radius_px": radii.pop() if len(radii) == 1 else None,
        "pixel_size_angstrom": sizes.pop() if len(sizes) == 1 else None,
        "n_pred": int(sum(r["n_pred"] for r in results)),
        "n_true": int(sum(r["n_true"] for r in results)),
        **_detection_groups(counts, n_layers, class_names),
        "confusion": confusion,
        "cross_layer": cross_d,
        "dopant": dop_d,
    }


def aggregate(per_image: Sequence[dict]) -> dict:
    """Combine the metrics of several images.

    Counts are pooled before ratios are taken: detection TP/FP/FN are summed over images
    and precision/recall/F1 computed from the sums (micro average); RMSE from the pooled
    squared errors; confusion matrices, cross-layer and dopant counts summed. Pixel
    metrics are given both pooled (from summed per-channel counts, top-level keys) and
    as the mean over images (``mean_over_images``, ``nan`` values left out).

    Parameters
    ----------
    per_image : list of dict
        Results of :func:`pixel_metrics` or of :func:`atom_metrics`, or dicts
        ``{"pixel": ..., "atoms": ...}`` holding either or both; all of one form.

    Returns
    -------
    dict
        Same form as the inputs (so :func:`format_table` works on it), with
        ``n_images`` added and ``layer_perm`` the list of the per-image assignments.
    """
    results = list(per_image)
    check(len(results) > 0, "aggregate needs at least one result")
    check(all(isinstance(r, Mapping) for r in results), "aggregate expects a list of result dicts")
    kinds = {r.get("kind") for r in results}
    check(len(kinds) == 1, "cannot aggregate pixel and atom results together; pass {'pixel':..., 'atoms':...} dicts")
    kind = kinds.pop()
    if kind == "pixel":
        return _aggregate_pixel(results)
    if kind == "atoms":
        return _aggregate_atoms(results)
    check(kind is None and all(("pixel" in r or "atoms" in r) for r in results), "unrecognised result dicts")
    out: dict = {"n_images": len(results)}
    for key, func in (("pixel", _aggregate_pixel), ("atoms", _aggregate_atoms)):
        parts = [r.get(key) for r in results]
        if any(p is not None for p in parts):
            check(all(p is not None for p in parts), f"some results lack '{key}' metrics")
            out[key] = func(parts)
    return out


# ---------------------------------------------------------------------------- format


def _f(v, width: int = 7, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-".rjust(width)
    return f"{v:{width}.{digits}f}"


def _format_atoms(r: dict) -> list[str]:
    size = r.get("pixel_size_angstrom")
    radius = r.get("radius_px")
    head = "Atom detection"
    if radius is not None:
        head += f" (match radius {radius:g} px" + (f" = {radius * size:.2f} Å)" if size else ")")
    if "n_images" in r:
        head += f", {r['n_images']} images"
    lines = [head + f": {r['n_pred']} predicted, {r['n_true']} true columns"]
    lines.append(
        f"{'layer':<8}{'class':<10}{'TP':>7}{'FP':>7}{'FN':>7}{'prec':>8}{'recall':>8}{'F1':>8}{'RMSE[Å]':>9}{'RMSE[px]':>9}"
    )

    def row(layer, cls, s):
        return (
            f"{layer:<8}{cls:<10}{s['tp']:>7d}{s['fp']:>7d}{s['fn']:>7d}"
            f"{_f(s['precision'], 8)}{_f(s['recall'], 8)}{_f(s['f1'], 8)}"
            f"{_f(s['rmse_angstrom'], 9)}{_f(s['rmse_px'], 9, 2)}"
        )

    for key, s in r["per_layer_class"].items():
        layer, cls = key.split("/", 1)
        lines.append(row(layer, cls, s))
    for cls, s in r["per_class"].items():
        lines.append(row("all", cls, s))
    lines.append(row("all", "all", r["overall"]))
    species = ", ".join(
        f"{layer} {_f(c['species_accuracy'], 0)}" for layer, c in r["confusion"].items()
    )
    lines.append(f"Species accuracy of matched columns: {species}")
    c = r["cross_layer"]
    lines.append(f"Cross-layer error rate: {_f(c['rate'], 0, 4)} ({c['n_cross_layer']} / {c['n_pred']} predicted atoms)")
    d = r.get("dopant")
    if d is not None:
        lines.append(
            f"{d['class']} predicted in a layer without {d['class']}: {_f(d['wrong_layer_rate'], 0, 4)} "
            f"({d['n_wrong_layer']} / {d['n_pred']} predicted {d['class']} columns); "
            f"per site of layers without {d['class']}: {_f(d.get('clean_layer_site_rate'), 0, 4)} "
            f"(/ {d.get('n_sites_clean_layers', 0)})"
        )
    return lines


def _format_pixel(r: dict) -> list[str]:
    head = "Pixel metrics" + (f", {r['n_images']} images (pooled counts)" if "n_images" in r else "")
    lines = [
        head + f": pixel accuracy {_f(r['pixel_accuracy'], 0, 4)}, mIoU {_f(r['mean_iou'], 0, 4)}, "
        f"mDice {_f(r['mean_dice'], 0, 4)}",
        f"  pooled foreground (as in the Gomb-Net paper): IoU {_f(r['pooled_foreground']['iou'], 0, 4)}, "
        f"Dice {_f(r['pooled_foreground']['dice'], 0, 4)}",
    ]
    if "mean_over_images" in r:
        m = r["mean_over_images"]
        lines.append(
            f"  mean over images: pixel accuracy {_f(m['pixel_accuracy'], 0, 4)}, mIoU {_f(m['mean_iou'], 0, 4)}, "
            f"mDice {_f(m['mean_dice'], 0, 4)}"
        )
    lines.append(f"{'channel':<18}{'IoU':>8}{'Dice':>8}{'acc':>8}")
    for key, s in r["per_channel"].items():
        lines.append(f"{key:<18}{_f(s['iou'], 8)}{_f(s['dice'], 8)}{_f(s['pixel_accuracy'], 8, 4)}")
    return lines


def format_table(results: dict) -> str:
    """A fixed-width text summary of metrics, for the command line.

    Parameters
    ----------
    results : dict
        Output of :func:`pixel_metrics`, :func:`atom_metrics`, :func:`aggregate`, or a
        dict ``{"pixel": ..., "atoms": ...}``.

    Returns
    -------
    str
        Per layer x class precision/recall/F1 and RMSE [Å], species accuracy, cross-layer
        and dopant error rates, pixel accuracy, mIoU and per-channel IoU/Dice. Undefined
        values are shown as ``-``.
    """
    check(isinstance(results, Mapping), "format_table expects a result dict")
    kind = results.get("kind")
    if kind == "atoms":
        return "\n".join(_format_atoms(results))
    if kind == "pixel":
        return "\n".join(_format_pixel(results))
    parts = []
    if results.get("atoms") is not None:
        parts.append("\n".join(_format_atoms(results["atoms"])))
    if results.get("pixel") is not None:
        parts.append("\n".join(_format_pixel(results["pixel"])))
    check(bool(parts), "format_table: no pixel or atom metrics in the result dict")
    return "\n\n".join(parts)

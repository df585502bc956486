"""Tests of gombnet.metrics: expected values are worked out by hand or by brute force."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.metrics import (
    aggregate,
    atom_metrics,
    best_layer_assignment,
    format_table,
    layer_permutations,
    match_points,
    permute_layers,
    pixel_metrics,
)


def _plain(obj) -> None:
    """Assert that a result is made only of plain Python types."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            _plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _plain(v)
    else:
        assert obj is None or type(obj) in (int, float, str, bool), type(obj)


def _atoms(xy, channel):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return {"channel": np.asarray(channel, dtype=int), "x_px": xy[:, 0], "y_px": xy[:, 1], "score": np.ones(len(xy))}


def _columns(xy, layer, cls):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return {"x_px": xy[:, 0], "y_px": xy[:, 1], "layer": np.asarray(layer, dtype=int), "class": np.asarray(cls)}


def _random_masks(rng, n_channels, size=32, n_disks=6):
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n_channels, size, size), dtype=bool)
    for c in range(n_channels):
        for x, y in rng.uniform(3, size - 3, (n_disks, 2)):
            masks[c] |= (xx - x) ** 2 + (yy - y) ** 2 <= 4
    return masks


# ---------------------------------------------------------------- permutations


def test_layer_permutations():
    assert layer_permutations(1) == [(0,)]
    perms = layer_permutations(3)
    assert perms[0] == (0, 1, 2)
    assert len(perms) == 6 and len(set(perms)) == 6


def test_permute_layers_moves_whole_layer_groups():
    maps = np.arange(6)[:, None, None] * np.ones((1, 2, 2))  # channel c holds value c
    out = permute_layers(maps, (1, 2, 0), 3)  # 3 layers x 2 classes
    assert out[:, 0, 0].tolist() == [2, 3, 4, 5, 0, 1]
    batch = np.stack([maps, maps + 10])
    out4 = permute_layers(batch, (2, 0, 1), 3)
    assert out4.shape == batch.shape
    assert out4[1, :, 0, 0].tolist() == [14, 15, 10, 11, 12, 13]
    with pytest.raises(GombnetError):
        permute_layers(maps, (0, 0, 1), 3)
    with pytest.raises(GombnetError):
        permute_layers(maps, (0, 1), 4)


@pytest.mark.parametrize("n_layers,q", [(2, (1, 0)), (3, (1, 2, 0)), (3, (0, 2, 1))])
def test_best_layer_assignment_recovers_swap(n_layers, q):
    rng = np.random.default_rng(1)
    true = _random_masks(rng, n_layers * 2)
    # branch i predicts true layer q[i]; some noise
    pred = permute_layers(true, q, n_layers)
    flip = rng.random(pred.shape) < 0.01
    pred = pred ^ flip
    expected = tuple(int(np.argsort(q)[i]) for i in range(n_layers))  # branch of true layer i
    assert [q[b] for b in expected] == list(range(n_layers))  # sanity of the hand inversion
    perm = best_layer_assignment(pred, true, n_layers)
    assert perm == expected
    assert np.array_equal(permute_layers(pred ^ flip, perm, n_layers), true)


def test_best_layer_assignment_identity_on_tie():
    empty = np.zeros((4, 8, 8), dtype=bool)
    assert best_layer_assignment(empty, empty, 2) == (0, 1)


def test_best_layer_assignment_rejects_non_binary():
    with pytest.raises(GombnetError):
        best_layer_assignment(np.full((2, 4, 4), 0.5), np.zeros((2, 4, 4)), 2)
    with pytest.raises(GombnetError):
        best_layer_assignment(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)), 2)


# --------------------------------------------------------------- pixel metrics


def test_pixel_metrics_by_hand():
    # 2 layers x 1 class, 2x3 pixels
    true = np.zeros((2, 2, 3), dtype=bool)
    pred = np.zeros((2, 2, 3), dtype=bool)
    true[0, 0, :2] = True  # pixels (0,0), (0,1)
    pred[0, 0, 0] = pred[0, 0, 2] = True  # (0,0) right, (0,2) wrong: TP1 FP1 FN1 TN3
    res = pixel_metrics(pred, true, 2, ["C"])
    ch0 = res["per_channel"]["layer0/C"]
    assert (ch0["tp"], ch0["fp"], ch0["fn"], ch0["tn"]) == (1, 1, 1, 3)
    assert ch0["iou"] == pytest.approx(1 / 3)
    assert ch0["dice"] == pytest.approx(1 / 2)
    assert ch0["pixel_accuracy"] == pytest.approx(4 / 6)
    ch1 = res["per_channel"]["layer1/C"]  # empty in both: undefined, left out
    assert math.isnan(ch1["iou"]) and math.isnan(ch1["dice"])
    assert ch1["pixel_accuracy"] == 1.0
    assert res["mean_iou"] == pytest.approx(1 / 3)
    assert res["mean_dice"] == pytest.approx(1 / 2)
    assert res["per_class"]["C"]["iou"] == pytest.approx(1 / 3)
    assert res["pixel_accuracy"] == pytest.approx(10 / 12)
    assert res["pooled_foreground"]["iou"] == pytest.approx(1 / 3)
    _plain(res)
    json.dumps(res)


def test_pixel_metrics_mean_differs_from_pooled():
    # 1 layer x 2 classes: class A TP1 FP1 FN1, class B TP2 exact
    true = np.zeros((2, 2, 3), dtype=bool)
    pred = np.zeros((2, 2, 3), dtype=bool)
    true[0, 0, :2] = True
    pred[0, 0, 0] = pred[0, 0, 2] = True
    true[1, 1, :2] = pred[1, 1, :2] = True
    res = pixel_metrics(pred, true, 1, ["A", "B"])
    assert res["per_channel"]["layer0/B"]["iou"] == 1.0
    assert res["mean_iou"] == pytest.approx((1 / 3 + 1) / 2)
    assert res["pooled_foreground"]["iou"] == pytest.approx(3 / 5)
    assert res["pooled_foreground"]["dice"] == pytest.approx(6 / 8)
    assert res["mean_dice"] == pytest.approx((1 / 2 + 1) / 2)


def test_pixel_metrics_applies_layer_perm():
    rng = np.random.default_rng(2)
    true = _random_masks(rng, 4)
    pred = permute_layers(true, (1, 0), 2)
    res = pixel_metrics(pred, true, 2, ["A", "B"], layer_perm=(1, 0))
    assert res["layer_perm"] == [1, 0]
    assert res["mean_iou"] == 1.0 and res["mean_dice"] == 1.0 and res["pixel_accuracy"] == 1.0
    for ch in res["per_channel"].values():
        assert ch["iou"] == 1.0 and ch["dice"] == 1.0
    wrong = pixel_metrics(pred, true, 2, ["A", "B"])
    assert wrong["mean_iou"] < 0.5


def test_pixel_metrics_shape_errors():
    with pytest.raises(GombnetError):
        pixel_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), 2, ["A", "B"])
    with pytest.raises(GombnetError):
        pixel_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), 2, ["A"])


# -------------------------------------------------------------------- matching


def test_match_points_beats_greedy():
    # Greedy (closest pair first) takes P0-T0 (0.8) and then cannot match anything else;
    # the optimum pairs P0-T1 (0.9) and P1-T0 (1.0).
    pred = [[0.0, 0.0], [1.8, 0.0]]
    true = [[0.8, 0.0], [-0.9, 0.0]]
    pi, ti, d = match_points(pred, true, 1.05)
    assert pi.tolist() == [0, 1]
    assert ti.tolist() == [1, 0]
    assert d == pytest.approx([0.9, 1.0])


def _brute_force(p, t, r):
    """Largest number of pairs within r, then smallest total distance."""
    dist = np.hypot(*(p[:, None, :] - t[None, :, :]).transpose(2, 0, 1))
    best = (0, 0.0)
    options = [None, *range(len(t))]
    for assign in itertools.product(options, repeat=len(p)):
        used = [a for a in assign if a is not None]
        if len(used) != len(set(used)):
            continue
        if any(a is not None and dist[i, a] > r for i, a in enumerate(assign)):
            continue
        key = (len(used), sum(dist[i, a] for i, a in enumerate(assign) if a is not None))
        if key[0] > best[0] or (key[0] == best[0] and key[1] < best[1] - 1e-12):
            best = key
    return best


def test_match_points_optimal_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(30):
        p = rng.uniform(0, 3, (rng.integers(1, 6), 2))
        t = rng.uniform(0, 3, (rng.integers(1, 6), 2))
        pi, ti, d = match_points(p, t, 1.0)
        assert len(set(pi.tolist())) == len(pi) and len(set(ti.tolist())) == len(ti)
        assert np.all(d <= 1.0)
        assert d == pytest.approx(np.hypot(*(p[pi] - t[ti]).T))
        n, total = _brute_force(p, t, 1.0)
        assert len(pi) == n
        assert d.sum() == pytest.approx(total)


def test_match_points_empty_and_errors():
    pi, ti, d = match_points(np.zeros((0, 2)), [[1.0, 2.0]], 1.0)
    assert len(pi) == len(ti) == len(d) == 0
    pi, ti, d = match_points([[0.0, 0.0]], [[5.0, 5.0]], 1.0)
    assert len(pi) == 0
    pi, ti, d = match_points([[1.0, 1.0]], [[1.0, 1.0]], 0.5)  # zero distance counts
    assert pi.tolist() == [0] and d.tolist() == [0.0]
    with pytest.raises(GombnetError):
        match_points([[0.0, np.nan]], [[0.0, 0.0]], 1.0)
    with pytest.raises(GombnetError):
        match_points([[0.0, 0.0]], [[0.0, 0.0]], 0.0)
    with pytest.raises(GombnetError):
        match_points([[0.0, 0.0, 0.0]], [[0.0, 0.0]], 1.0)


def test_match_points_3000():
    rng = np.random.default_rng(4)
    grid = np.stack(np.meshgrid(np.arange(60), np.arange(50)), -1).reshape(-1, 2) * 10.0
    true = grid + rng.normal(0, 0.3, grid.shape)
    pred = rng.permutation(grid + rng.normal(0, 0.3, grid.shape))
    pi, ti, d = match_points(pred, true, 4.0)
    assert len(pi) == 3000
    assert np.array_equal(np.sort(ti), np.arange(3000))
    assert np.max(d) < 4.0


# ---------------------------------------------------------------- atom metrics

CLASSES = ["W", "S2"]


def _scene():
    """Two layers, 2 classes: 4 columns per layer and class on separate grids."""
    cols_xy, layer, cls = [], [], []
    for lay in range(2):
        for k in range(2):
            for i in range(4):
                cols_xy.append([10.0 + 20 * i + 5 * k, 10.0 + 40 * lay])
                layer.append(lay)
                cls.append(k)
    return np.array(cols_xy), np.array(layer), np.array(cls)


def test_atom_metrics_perfect():
    xy, layer, cls = _scene()
    res = atom_metrics(
        _atoms(xy, layer * 2 + cls), _columns(xy, layer, cls),
        n_layers=2, class_names=CLASSES, radius_px=3.0, pixel_size_angstrom=0.1, dopant_class="S2",
    )
    for group in ("per_layer_class", "per_class", "per_layer"):
        for s in res[group].values():
            assert s["precision"] == s["recall"] == s["f1"] == 1.0
            assert s["rmse_px"] == 0.0 and s["rmse_angstrom"] == 0.0
    assert res["overall"]["tp"] == 16
    assert res["cross_layer"]["n_cross_layer"] == 0 and res["cross_layer"]["rate"] == 0.0
    assert res["confusion"]["layer0"]["species_accuracy"] == 1.0
    assert res["confusion"]["layer0"]["matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 0]]
    assert res["dopant"]["n_wrong_layer"] == 0
    _plain(res)
    json.dumps(res)


def test_atom_metrics_shift_missing_extra():
    xy, layer, cls = _scene()
    truth = _columns(xy, layer, cls)
    pred_xy = xy + [0.3, 0.4]  # every error 0.5 px
    channel = layer * 2 + cls
    keep = np.ones(len(xy), dtype=bool)
    keep[[0, 1]] = False  # two layer-0 W columns not found
    extra_xy = [[200.0, 200.0], [220.0, 200.0], [240.0, 200.0]]  # far from everything
    pred = _atoms(np.vstack([pred_xy[keep], extra_xy]), np.concatenate([channel[keep], [3, 3, 3]]))
    res = atom_metrics(pred, truth, n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.2)
    w0 = res["per_layer_class"]["layer0/W"]
    assert (w0["tp"], w0["fp"], w0["fn"]) == (2, 0, 2)
    assert w0["precision"] == 1.0 and w0["recall"] == 0.5 and w0["f1"] == pytest.approx(2 / 3)
    s1 = res["per_layer_class"]["layer1/S2"]  # layer 1 S2: 4 found + 3 extra
    assert (s1["tp"], s1["fp"], s1["fn"]) == (4, 3, 0)
    assert s1["precision"] == pytest.approx(4 / 7) and s1["recall"] == 1.0
    ov = res["overall"]
    assert (ov["tp"], ov["fp"], ov["fn"]) == (14, 3, 2)
    assert ov["precision"] == pytest.approx(14 / 17) and ov["recall"] == pytest.approx(14 / 16)
    assert ov["rmse_px"] == pytest.approx(0.5)
    assert ov["rmse_angstrom"] == pytest.approx(0.1)
    assert res["per_class"]["W"]["tp"] == 6
    # layer 1 confusion: 3 spurious S2 predictions
    assert res["confusion"]["layer1"]["matrix"] == [[4, 0, 0], [0, 4, 0], [0, 3, 0]]
    assert res["confusion"]["layer0"]["matrix"] == [[2, 0, 2], [0, 4, 0], [0, 0, 0]]
    assert res["cross_layer"]["n_cross_layer"] == 0  # extras are near nothing


def test_atom_metrics_wrong_species_in_confusion():
    xy, layer, cls = _scene()
    channel = layer * 2 + cls
    channel[0] = 1  # layer-0 W column predicted as S2
    res = atom_metrics(
        _atoms(xy, channel), _columns(xy, layer, cls),
        n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.1,
    )
    m = res["confusion"]["layer0"]["matrix"]
    assert m[0][1] == 1 and m[0][0] == 3
    assert res["confusion"]["layer0"]["species_accuracy"] == pytest.approx(7 / 8)
    assert res["per_layer_class"]["layer0/W"]["fn"] == 1
    assert res["per_layer_class"]["layer0/S2"]["fp"] == 1
    assert res["cross_layer"]["n_cross_layer"] == 0


def test_atom_metrics_layer_perm_and_cross_layer():
    xy, layer, cls = _scene()
    # the network put true layer 0 into branch 1 and true layer 1 into branch 0
    branch = 1 - layer
    channel = branch * 2 + cls
    # ... and moved two true layer-1 columns into the branch of layer 0 (wrong layer)
    moved = np.flatnonzero(layer == 1)[:2]
    channel[moved] = 1 * 2 + cls[moved]
    pred, truth = _atoms(xy, channel), _columns(xy, layer, cls)
    kw = dict(n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.1)
    res = atom_metrics(pred, truth, layer_perm=(1, 0), **kw)
    assert res["layer_perm"] == [1, 0]
    assert res["cross_layer"]["n_cross_layer"] == 2
    assert res["cross_layer"]["rate"] == pytest.approx(2 / 16)
    assert res["cross_layer"]["per_layer"]["layer0"] == {"n_cross_layer": 2, "n_pred": 10, "rate": 0.2}
    assert res["per_layer"]["layer0"]["fp"] == 2 and res["per_layer"]["layer1"]["fn"] == 2
    assert res["overall"]["tp"] == 14
    # without the assignment almost everything is a cross-layer error
    bad = atom_metrics(pred, truth, **kw)
    assert bad["overall"]["tp"] == 2
    assert bad["cross_layer"]["n_cross_layer"] == 14


def test_atom_metrics_three_layer_perm():
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (30, 2))
    xy = xy[np.argsort(xy[:, 0])]
    layer = np.arange(30) % 3
    cls = np.zeros(30, dtype=int)
    q = (1, 2, 0)  # branch i holds true layer q[i]
    branch = np.array([q.index(lay) for lay in layer])
    res = atom_metrics(
        _atoms(xy, branch), _columns(xy, layer, cls),
        n_layers=3, class_names=["C"], radius_px=0.5, pixel_size_angstrom=0.1, layer_perm=(2, 0, 1),
    )
    assert res["overall"]["f1"] == 1.0


def test_cross_layer_counts_each_atom_once():
    # 3 layers, 1 class; a spurious layer-0 atom lies near columns of layers 1 AND 2
    t_xy = [[50, 50], [10, 10], [10.5, 10]]
    p_xy = [[10, 10], [50, 50], [10, 10], [10.5, 10]]
    res = atom_metrics(
        _atoms(p_xy, [0, 0, 1, 2]), _columns(t_xy, [0, 1, 2], [0, 0, 0]),
        n_layers=3, class_names=["C"], radius_px=2.0, pixel_size_angstrom=0.1,
    )
    assert res["cross_layer"]["n_cross_layer"] == 1
    assert res["cross_layer"]["rate"] == pytest.approx(1 / 4)
    assert (res["overall"]["tp"], res["overall"]["fp"], res["overall"]["fn"]) == (3, 1, 0)


def test_atom_metrics_dopant_wrong_layer():
    # layer 0 has SSe columns in truth, layer 1 has none.
    classes = ["S2", "SSe", "W"]
    t_xy = [[10, 10], [20, 10], [30, 10], [10, 50], [20, 50]]
    t_layer = [0, 0, 0, 1, 1]
    t_cls = ["SSe", "SSe", "W", "S2", "W"]  # class names are accepted too
    # predictions: 2 SSe in layer 0 (right layer), 1 SSe in layer 1 (wrong), plus
    # 1 SSe in layer 1 far from everything (also wrong layer), and some S2/W
    p_xy = [[10, 10], [20, 10], [10, 50], [70, 70], [30, 10], [20, 50]]
    p_ch = [0 * 3 + 1, 0 * 3 + 1, 1 * 3 + 1, 1 * 3 + 1, 0 * 3 + 2, 1 * 3 + 2]
    res = atom_metrics(
        _atoms(p_xy, p_ch), _columns(t_xy, t_layer, t_cls),
        n_layers=2, class_names=classes, radius_px=2.0, pixel_size_angstrom=0.1, dopant_class="SSe",
    )
    d = res["dopant"]
    assert d["n_pred"] == 4
    assert d["n_wrong_layer"] == 2
    assert d["wrong_layer_rate"] == pytest.approx(0.5)
    assert d["per_layer"]["layer0"] == {"n_pred": 2, "n_wrong_layer": 0, "n_true": 2, "n_sites_clean": 0}
    assert d["per_layer"]["layer1"] == {"n_pred": 2, "n_wrong_layer": 2, "n_true": 0, "n_sites_clean": 3}
    # per predicted column of layer 1 (no SSe in truth): every class by default ...
    assert d["clean_layer_site_rate"] == pytest.approx(2 / 3)
    # ... or only the chalcogen columns the dopant can replace (the W column left out)
    chalcogen = atom_metrics(
        _atoms(p_xy, p_ch), _columns(t_xy, t_layer, t_cls), n_layers=2, class_names=classes,
        radius_px=2.0, pixel_size_angstrom=0.1, dopant_class="SSe", dopant_sites=["S2", "SSe"],
    )["dopant"]
    assert chalcogen["n_sites_clean_layers"] == 2 and chalcogen["clean_layer_site_rate"] == pytest.approx(1.0)
    pooled = aggregate([res, res])["dopant"]
    assert pooled["n_sites_clean_layers"] == 6 and pooled["clean_layer_site_rate"] == pytest.approx(2 / 3)
    with pytest.raises(GombnetError, match="dopant_sites"):
        atom_metrics(_atoms(p_xy, p_ch), _columns(t_xy, t_layer, t_cls), n_layers=2, class_names=classes,
                     radius_px=2.0, pixel_size_angstrom=0.1, dopant_class="SSe", dopant_sites=["S2"])
    # the layer-1 column at (10, 50) is S2 predicted as SSe
    m1 = res["confusion"]["layer1"]["matrix"]
    assert m1[0][1] == 1
    assert m1[3][1] == 1  # spurious SSe at (70, 70)


def test_atom_metrics_input_errors():
    xy, layer, cls = _scene()
    kw = dict(n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.1)
    truth = _columns(xy, layer, cls)
    with pytest.raises(GombnetError):
        atom_metrics(_atoms(xy, np.full(len(xy), 4)), truth, **kw)  # channel out of range
    with pytest.raises(GombnetError):
        atom_metrics({"x_px": xy[:, 0], "y_px": xy[:, 1]}, truth, **kw)  # no channel
    with pytest.raises(GombnetError):
        atom_metrics(_atoms(xy, layer * 2), truth, **{**kw, "radius_px": -1.0})
    with pytest.raises(GombnetError):
        atom_metrics(_atoms(xy, layer * 2), truth, dopant_class="Se", **kw)
    with pytest.raises(GombnetError):
        atom_metrics(_atoms(xy, layer * 2), _columns(xy, layer, np.full(len(xy), "Mo")), **kw)


def test_atom_metrics_empty_prediction():
    xy, layer, cls = _scene()
    res = atom_metrics(
        _atoms(np.zeros((0, 2)), []), _columns(xy, layer, cls),
        n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.1, dopant_class="S2",
    )
    assert res["overall"]["recall"] == 0.0 and res["overall"]["f1"] == 0.0
    assert math.isnan(res["overall"]["precision"]) and math.isnan(res["overall"]["rmse_px"])
    assert math.isnan(res["cross_layer"]["rate"])
    assert "-" in format_table(res)


# ------------------------------------------------------------------- aggregate


def test_aggregate_micro_average():
    kw = dict(n_layers=1, class_names=["C"], radius_px=5.0, pixel_size_angstrom=0.5)
    t1 = _columns([[10, 10], [30, 10], [50, 10]], [0, 0, 0], [0, 0, 0])
    p1 = _atoms([[11, 10], [31, 10], [51, 10], [90, 90]], [0, 0, 0, 0])  # TP3 FP1, errors 1 px
    t2 = _columns([[10, 10], [30, 10], [50, 10], [70, 10]], [0] * 4, [0] * 4)
    p2 = _atoms([[10, 13]], [0])  # TP1 FN3, error 3 px
    r1, r2 = atom_metrics(p1, t1, **kw), atom_metrics(p2, t2, **kw)
    agg = aggregate([r1, r2])
    ov = agg["overall"]
    assert (ov["tp"], ov["fp"], ov["fn"]) == (4, 1, 3)
    assert ov["precision"] == pytest.approx(4 / 5)  # macro would be (3/4 + 1) / 2
    assert ov["recall"] == pytest.approx(4 / 7)  # macro would be (1 + 1/4) / 2
    assert ov["f1"] == pytest.approx(2 / 3)  # 2TP / (2TP + FP + FN) = 8 / 12
    assert ov["rmse_px"] == pytest.approx(math.sqrt((3 * 1 + 9) / 4))
    assert ov["rmse_angstrom"] == pytest.approx(0.5 * math.sqrt(3))
    assert agg["confusion"]["layer0"]["matrix"] == [[4, 3], [1, 0]]
    assert agg["n_images"] == 2 and agg["n_pred"] == 5 and agg["n_true"] == 7
    _plain(agg)
    assert "layer0" in format_table(agg)


def test_aggregate_pixel_mean_and_pooled():
    true1 = np.zeros((1, 2, 2), dtype=bool)
    true1[0, 0, 0] = True
    pred1 = true1.copy()  # IoU 1
    true2 = np.zeros((1, 2, 2), dtype=bool)
    true2[0, :, :] = [[1, 1], [1, 0]]
    pred2 = np.zeros((1, 2, 2), dtype=bool)
    pred2[0, 0, 0] = True  # IoU 1/3
    r = [pixel_metrics(pred1, true1, 1, ["C"]), pixel_metrics(pred2, true2, 1, ["C"])]
    agg = aggregate(r)
    assert agg["mean_over_images"]["mean_iou"] == pytest.approx((1 + 1 / 3) / 2)
    assert agg["mean_iou"] == pytest.approx(2 / 4)  # pooled TP2 FN2
    assert agg["pixel_accuracy"] == pytest.approx(6 / 8)
    both = aggregate([{"pixel": r[0]}, {"pixel": r[1]}])
    assert both["pixel"]["mean_iou"] == agg["mean_iou"]
    text = format_table(both)
    assert "mIoU" in text and "mean over images" in text


def test_aggregate_errors():
    r = pixel_metrics(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 1, ["C"])
    with pytest.raises(GombnetError):
        aggregate([])
    with pytest.raises(GombnetError):
        aggregate([r, pixel_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), 1, ["C", "D"])])


def test_format_table_lists_every_layer_and_class():
    xy, layer, cls = _scene()
    res = atom_metrics(
        _atoms(xy, layer * 2 + cls), _columns(xy, layer, cls),
        n_layers=2, class_names=CLASSES, radius_px=2.0, pixel_size_angstrom=0.1, dopant_class="S2",
    )
    pix = pixel_metrics(np.ones((4, 4, 4)), np.ones((4, 4, 4)), 2, CLASSES)
    text = format_table({"atoms": res, "pixel": pix})
    for key in ("layer0", "layer1", "W", "S2", "RMSE[Å]", "Cross-layer", "mIoU", "layer1/S2"):
        assert key in text
    lines = [ln for ln in text.splitlines() if ln.startswith("layer1  S2")]
    assert len(lines) == 1 and "1.000" in lines[0]

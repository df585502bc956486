"""Tests for gombnet.analysis.moire: order parameters and stacking-order maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gombnet.analysis.moire import (
    site_order_parameters,
    stacking_at,
    stacking_map,
    stacking_reference_values,
)
from gombnet.errors import GombnetError

A = 3.15
B = A / math.sqrt(3)  # projected W–X distance, 1.8187 Å
DELTA = np.array([A / 2, A * math.sqrt(3) / 6])  # W -> X vector of layer A (length B)
EXTENT = 24.0
SHAPE = (80, 80)
PX = 0.2
ORIGIN = (2.0, 2.0)  # map covers 2–18 Å: well inside the built lattices


def _bilayer(tmd_layer, w_shift_b, chalcogen_side_b):
    wa, xa = tmd_layer(A, EXTENT, margin=4.0)
    wb, xb = tmd_layer(A, EXTENT, w_shift=w_shift_b, chalcogen_side=chalcogen_side_b, margin=4.0)
    return wa, xa, wb, xb


# (layer-B W shift, layer-B chalcogen side) -> expected (u_WX, u_XW) in units of B.
REGISTRIES = {
    # W_A on X_B and X_A on W_B (2H-like): the paper's "AB", stacking 0.
    "AB": ((DELTA), -1, (0.0, 0.0)),
    # Only W_A on X_B (R-type, X_A over a hollow of B): paper's "AA'", stacking B.
    "AA'": ((-DELTA), +1, (0.0, 1.0)),
    # Only X_A on W_B: also one coincidence.
    "AA' (X on W)": ((DELTA), +1, (1.0, 0.0)),
    # W on W and X on X: no W–X coincidence, paper's "A'B", stacking B sqrt(2).
    "A'B": ((0.0, 0.0), +1, (1.0, 1.0)),
    # H-type X on X, W over hollows: also no coincidence.
    "A'B (X on X)": ((2 * DELTA), -1, (1.0, 1.0)),
}


@pytest.mark.parametrize("name", list(REGISTRIES))
def test_registry_values(tmd_layer, name):
    shift, side, (uwx, uxw) = REGISTRIES[name]
    wa, xa, wb, xb = _bilayer(tmd_layer, shift, side)
    maps = stacking_map(wa, xa, wb, xb, SHAPE, PX, origin_angstrom=ORIGIN)
    assert set(maps) == {"u_wx", "u_xw", "stacking"}
    assert maps["stacking"].shape == SHAPE
    assert np.median(maps["u_wx"]) == pytest.approx(uwx * B, abs=1e-4)
    assert np.median(maps["u_xw"]) == pytest.approx(uxw * B, abs=1e-4)
    expected = math.hypot(uwx, uxw) * B
    assert np.median(maps["stacking"]) == pytest.approx(expected, abs=1e-4)
    # Ideal registries are uniform, not just in the median.
    assert np.nanmax(np.abs(maps["stacking"] - expected)) < 1e-4
    key = name.split(" ")[0]
    assert stacking_reference_values(A)[key] == pytest.approx(expected, abs=1e-9)


def test_reference_values():
    ref = stacking_reference_values(3.15)
    assert ref["AB"] == 0.0
    assert ref["AA'"] == pytest.approx(1.8187, abs=1e-4)
    assert ref["A'B"] == pytest.approx(1.8187 * math.sqrt(2), abs=1e-4)
    with pytest.raises(GombnetError):
        stacking_reference_values(-1.0)


def test_map_matches_point_evaluation_and_pixel_convention(tmd_layer):
    wa, xa = tmd_layer(A, EXTENT, margin=4.0)
    wb, xb = tmd_layer(3.22, EXTENT, angle_deg=6.0, chalcogen_side=-1, margin=4.0)
    maps = stacking_map(wa, xa, wb, xb, (40, 50), 0.37, origin_angstrom=(1.5, 2.5))
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 40, 30)
    cols = rng.integers(0, 50, 30)
    centres = np.column_stack([1.5 + 0.37 * cols, 2.5 + 0.37 * rows])  # x = column, y = row
    at = stacking_at(centres, wa, xa, wb, xb)
    for key in ("u_wx", "u_xw", "stacking"):
        assert np.allclose(maps[key][rows, cols], at[key], atol=1e-5)
    # Twisted bilayer: values span the range between the registries, never beyond.
    s = maps["stacking"]
    assert s.min() >= 0 and s.max() <= B * math.sqrt(2) * 1.05
    assert s.max() - s.min() > 1.0


def test_chunking_does_not_change_result(tmd_layer):
    wa, xa = tmd_layer(A, EXTENT, margin=4.0)
    wb, xb = tmd_layer(A, EXTENT, angle_deg=9.0, margin=4.0)
    big = stacking_map(wa, xa, wb, xb, (37, 53), 0.4, chunk_pixels=1 << 20)
    small = stacking_map(wa, xa, wb, xb, (37, 53), 0.4, chunk_pixels=7, dtype=np.float64)
    for key in big:
        assert np.allclose(big[key], small[key], atol=1e-5)
    assert big["stacking"].dtype == np.float32 and small["stacking"].dtype == np.float64


def test_site_values_and_masking(tmd_layer):
    wa, xa = tmd_layer(A, EXTENT)
    wb, xb = tmd_layer(A, EXTENT, w_shift=DELTA, chalcogen_side=-1)
    # Layer B only on the left half: right-half layer-A columns have no partner.
    keep_w = wb[:, 0] < EXTENT / 2
    keep_x = xb[:, 0] < EXTENT / 2
    site = site_order_parameters(wa, xa, wb[keep_w], xb[keep_x], max_u_angstrom=2.3)
    left = wa[:, 0] < EXTENT / 2 - 1.0
    assert np.allclose(site["u_wx"][left], 0.0, atol=1e-9)
    assert np.all(np.isnan(site["u_wx"][wa[:, 0] > EXTENT / 2 + 3.0]))
    maps = stacking_map(wa, xa, wb[keep_w], xb[keep_x], (60, 60), 0.4, max_u_angstrom=2.3)
    assert np.isnan(maps["stacking"][30, 55]) and maps["stacking"][30, 10] == pytest.approx(0.0, abs=1e-6)
    # Points far from every layer-A column are NaN with max_site_distance_angstrom.
    far = stacking_at([[100.0, 100.0], [10.0, 10.0]], wa, xa, wb, xb, max_site_distance_angstrom=3.0)
    assert np.isnan(far["stacking"][0]) and np.isfinite(far["stacking"][1])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(shape=(0, 10), pixel_size_angstrom=0.1),
        dict(shape=(10,), pixel_size_angstrom=0.1),
        dict(shape=(10.5, 10), pixel_size_angstrom=0.1),
        dict(shape=(10, 10), pixel_size_angstrom=0.0),
        dict(shape=(10, 10), pixel_size_angstrom=0.1, chunk_pixels=0),
        dict(shape=(10, 10), pixel_size_angstrom=0.1, dtype=np.int32),
        dict(shape=(10, 10), pixel_size_angstrom=0.1, origin_angstrom=(np.nan, 0)),
        dict(shape=(10, 10), pixel_size_angstrom=0.1, max_u_angstrom=-1),
        dict(shape=(100000, 100000), pixel_size_angstrom=0.1),
    ],
)
def test_bad_map_parameters(tmd_layer, kwargs):
    wa, xa = tmd_layer(A, 10.0)
    with pytest.raises(GombnetError):
        stacking_map(wa, xa, wa, xa, **kwargs)


def test_bad_positions():
    good = np.zeros((3, 2))
    with pytest.raises(GombnetError):
        stacking_map(np.zeros((0, 2)), good, good, good, (5, 5), 0.1)
    with pytest.raises(GombnetError):
        stacking_at(np.zeros((2, 3)), good, good, good, good)
    with pytest.raises(GombnetError):
        site_order_parameters(good, good, [[np.nan, 0.0]], good)

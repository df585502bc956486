import numpy as np
import pytest

from gombnet.analysis.bonds import neighbor_pairs
from gombnet.analysis.strain import deformation_maps, lattice_distortion, local_deformation
from gombnet.errors import GombnetError


def _rot(deg):
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


@pytest.mark.parametrize("kind,a", [("honeycomb", 2.46), ("triangular", 3.153)])
def test_uniform_deformation_is_recovered_exactly(kind, a, honeycomb, triangular):
    build = honeycomb if kind == "honeycomb" else triangular
    pos = build(a, 50.0, angle_deg=17.0)
    strain = np.array([[0.01, 0.004], [0.004, -0.005]])
    f = _rot(0.7) @ (np.eye(2) + strain)
    d = local_deformation(pos @ f.T, kind=kind, a_angstrom=a, orientation_deg=17.0)
    ok = np.isfinite(d.rotation_deg)
    assert ok.mean() > 0.98  # only corner atoms lack a window's worth of vectors
    np.testing.assert_allclose(d.rotation_deg[ok], 0.7, atol=1e-9)
    np.testing.assert_allclose(d.exx[ok], 0.01, atol=1e-9)
    np.testing.assert_allclose(d.eyy[ok], -0.005, atol=1e-9)
    np.testing.assert_allclose(d.exy[ok], 0.004, atol=1e-9)
    np.testing.assert_allclose(d.a_local_angstrom[ok], a * np.sqrt(np.linalg.det(f)), rtol=1e-9)
    assert d.kind == kind and d.reference_a_angstrom == a


def test_default_reference_is_the_layers_mean_lattice(honeycomb):
    rng = np.random.default_rng(0)
    f = _rot(0.7) @ np.array([[1.01, 0.004], [0.004, 0.995]])
    pos = honeycomb(2.46, 60.0, angle_deg=17.0) @ f.T
    noisy = pos + rng.normal(0.0, 0.05, pos.shape)
    d = local_deformation(noisy)
    assert d.kind == "honeycomb"
    assert d.reference_a_angstrom == pytest.approx(2.46 * np.sqrt(np.linalg.det(f)), abs=0.003)
    assert d.reference_orientation_deg == pytest.approx(17.7, abs=0.02)
    s = d.summary()
    assert abs(s["rotation_deg"]["median"]) < 0.02 and abs(s["dilatation_percent"]["median"]) < 0.05
    # 0.05 Å position noise leaves a rotation spread of a few hundredths of a degree at sigma = 2a
    assert 0.01 < s["rotation_deg"]["std"] < 0.1
    # the anisotropic part of f stays in the map: exx - eyy = 1.5 %
    assert s["exx_percent"]["median"] - s["eyy_percent"]["median"] == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("twist", [13.0, 47.0])
def test_twist_map_follows_a_rotation_gradient(twist, honeycomb):
    # layer b gets u_y = c (x - 30)^2 / 2: a local rotation c (x - 30) / 2 [rad] growing along x
    c = 5.8e-4
    a_pos = honeycomb(2.46, 60.0, angle_deg=5.0)
    b_pos = honeycomb(2.46, 60.0, angle_deg=5.0 + twist, shift=(0.7, 0.4), margin=5.0)
    b_pos[:, 1] += 0.5 * c * (b_pos[:, 0] - 30.0) ** 2
    maps = deformation_maps([a_pos, b_pos], field_of_view_angstrom=(0.0, 0.0, 60.0, 60.0))
    assert maps.twist_of_mean_lattices_deg == pytest.approx(13.0, abs=0.01)
    gx, gy = np.meshgrid(maps.x_angstrom, maps.y_angstrom)
    inner = (gx > 10) & (gx < 50) & (gy > 10) & (gy < 50)
    slope = np.polyfit(gx[inner], maps.twist_deg[inner], 1)[0]
    # a twist of 47 degrees is the mirror image of 13: the same rotation lowers it
    expected = np.degrees(c / 2) * (1 if twist < 30 else -1)
    assert slope == pytest.approx(expected, rel=0.02)
    assert maps.summary()["local_twist_deg"]["std"] > 0.2
    assert np.nanstd(maps.layers[0].rotation_deg) < 1e-9  # layer a is perfect


def test_no_lattice_no_value(triangular):
    pos = triangular(3.15, 100.0)
    hole = np.hypot(pos[:, 0] - 50.0, pos[:, 1] - 50.0) < 12.0
    d = local_deformation(pos[~hole], at_angstrom=[[50.0, 50.0], [25.0, 80.0], [50.0, 2.0]])
    assert np.isnan(d.rotation_deg[0]) and d.coverage[0] < 0.25
    assert np.isfinite(d.rotation_deg[1:]).all() and d.coverage[1] > 0.95
    assert 0.4 < d.coverage[2] < 0.8  # near the edge of the field


def _direction_means(pos):
    i, j, dist = neighbor_pairs(pos, max_distance_angstrom=1.75, edge_exclusion_angstrom=3.0)
    v = pos[j] - pos[i]
    angle = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 180.0
    group = np.floor(((angle - 5.0) % 180.0) / 60.0).astype(int)  # three bond directions
    return np.array([dist[group == g].mean() for g in range(3)])


def test_common_distortion_and_heterostrain(honeycomb):
    rng = np.random.default_rng(1)
    scan = np.array([[1.0, 0.03], [0.0, 0.98]])  # slow-scan drift: shear and stretch along y
    a_pos = honeycomb(2.46, 60.0, angle_deg=5.0) @ scan.T
    b_pos = honeycomb(2.47, 60.0, angle_deg=35.0, shift=(0.7, 0.4)) @ scan.T
    a_pos += rng.normal(0.0, 0.02, a_pos.shape)
    b_pos += rng.normal(0.0, 0.02, b_pos.shape)
    dist = lattice_distortion([a_pos, b_pos])
    # symmetric part of the scan matrix without its area change: exx = -eyy = 1 %, exy = 1.5 %
    assert dist.common["exx"] == pytest.approx(1.0, abs=0.05)
    assert dist.common["eyy"] == pytest.approx(-1.0, abs=0.05)
    assert dist.common["exy"] == pytest.approx(1.5, abs=0.05)
    assert np.linalg.det(dist.matrix) == pytest.approx(1.0)
    assert dist.heterostrain["max_shear"] < 0.05
    assert dist.heterostrain["isotropic"] == pytest.approx(100 * (2.47 / 2.46 - 1), abs=0.03)
    # bonds along the three directions differ by the distortion, and agree after undoing it
    before, after = _direction_means(a_pos), _direction_means(dist.undistort(a_pos, (30.0, 30.0)))
    assert np.ptp(before) > 0.04 and np.ptp(after) < 0.006  # 0.02 Å noise: +-0.0012 Å per mean
    assert after.mean() == pytest.approx(before.mean(), abs=0.003)  # area kept: calibration untouched


def test_bad_input(honeycomb, triangular):
    pos = honeycomb(2.46, 30.0)
    with pytest.raises(GombnetError, match="at least 7"):
        local_deformation(pos[:5])
    with pytest.raises(GombnetError, match="NaN"):
        local_deformation(np.vstack([pos, [np.nan, 1.0]]))
    with pytest.raises(GombnetError, match="min_coverage"):
        local_deformation(pos, min_coverage=1.5)
    with pytest.raises(GombnetError, match="smoothing_sigma_angstrom"):
        local_deformation(pos, smoothing_sigma_angstrom=-1.0)
    with pytest.raises(GombnetError, match="too few honeycomb lattice vectors"):
        local_deformation(pos, kind="honeycomb", a_angstrom=1.0, orientation_deg=0.0)
    chain = np.column_stack([np.arange(20) * 3.15, np.zeros(20)])  # no second direction: no 2-D strain
    with pytest.raises(GombnetError, match="all point one way"):
        local_deformation(chain, kind="triangular")
    assert np.isnan(local_deformation(chain, kind="triangular", a_angstrom=3.15, orientation_deg=0.0).exx).all()
    with pytest.raises(GombnetError, match="empty"):
        deformation_maps([])
    with pytest.raises(GombnetError, match="coarser grid"):
        deformation_maps([pos], grid_spacing_angstrom=0.001)
    with pytest.raises(GombnetError, match="kind="):
        deformation_maps([pos, triangular(3.15, 30.0)], kind="auto")

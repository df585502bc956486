import dataclasses
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from gombnet.analysis.graphene_stacking import (
    STACKING_CLASSES,
    graphene_stacking_map,
    honeycomb_sublattices,
    stacking_fractions,
)
from gombnet.errors import GombnetError

A = 2.46
ANGLE = 17.0


def _bond(angle_deg=ANGLE):
    """The vector from a honeycomb fixture's first sublattice to its second [Å]."""
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return rot @ np.array([A / 2, A * np.sqrt(3) / 6])


def test_sublattices_alternate(honeycomb):
    pos = honeycomb(A, 40.0, angle_deg=ANGLE)
    sub = honeycomb_sublattices(pos)
    assert set(np.unique(sub)) == {0, 1} and abs(np.sum(sub == 0) - np.sum(sub == 1)) <= 2
    inner = np.all((pos > 5.0) & (pos < 35.0), axis=1)
    _, nn = cKDTree(pos).query(pos[inner], k=4)
    assert np.all(sub[nn[:, 1:]] != sub[inner][:, None])  # every bond joins the two sublattices


@pytest.mark.parametrize("shift,expected", [(0.0, "AA"), (0.5, "SP")])
def test_high_symmetry_registries(honeycomb, shift, expected):
    a_pos = honeycomb(A, 40.0, angle_deg=ANGLE)
    b_pos = honeycomb(A, 40.0, angle_deg=ANGLE, shift=tuple(shift * _bond()), margin=3.0)
    shares = stacking_fractions(graphene_stacking_map(a_pos, b_pos, (150, 150), 0.25)["registry"])
    assert shares[expected] == 1.0


def test_the_two_bernal_domains(honeycomb):
    a_pos = honeycomb(A, 40.0, angle_deg=ANGLE)
    maps = [graphene_stacking_map(a_pos, honeycomb(A, 40.0, angle_deg=ANGLE, shift=tuple(sign * _bond()), margin=3.0),
                                  (150, 150), 0.25) for sign in (1, -1)]
    shares = [stacking_fractions(m["registry"]) for m in maps]
    assert {max(s, key=s.get) for s in shares} == {"AB", "BA"}  # one each
    assert all(max(s.values()) == 1.0 for s in shares)
    assert maps[0]["b_angstrom"] == pytest.approx(A / np.sqrt(3), rel=1e-6)
    # u of the coinciding sublattice is 0, of the other one C-C bond
    u = np.sort([np.nanmedian(maps[0]["u_alpha"]), np.nanmedian(maps[0]["u_beta"])])
    np.testing.assert_allclose(u, [0.0, A / np.sqrt(3)], atol=1e-6)


def test_rigid_small_twist_has_both_bernal_domains_alike(honeycomb):
    a_pos = honeycomb(A, 150.0)
    b_pos = honeycomb(A, 150.0, angle_deg=3.0, margin=5.0)
    reg = graphene_stacking_map(a_pos, b_pos, (600, 600), 0.25)["registry"]
    shares = stacking_fractions(reg)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["AB"] == pytest.approx(shares["BA"], abs=0.03)
    assert all(shares[c] > 0.03 for c in STACKING_CLASSES)


def test_bad_input(honeycomb, triangular):
    pos = honeycomb(A, 20.0)
    with pytest.raises(GombnetError, match="at least 7"):
        graphene_stacking_map(pos[:4], pos, (10, 10), 0.5)
    with pytest.raises(GombnetError, match="shape"):
        graphene_stacking_map(pos, pos, (0, 10), 0.5)
    with pytest.raises(GombnetError):
        graphene_stacking_map(triangular(3.15, 20.0), pos, (10, 10), 0.5)


def test_analyze_maps_the_stacking_of_a_small_twist(tmp_path):
    from typer.testing import CliRunner

    from gombnet.cli import app
    from gombnet.demo import DEMO_CONDITIONS
    from gombnet.simulation import load_preset, simulate_sample

    preset = dataclasses.replace(load_preset("graphene"), **{**DEMO_CONDITIONS, "twist_deg": (3.0, 3.0)})
    sample = simulate_sample(preset, np.random.default_rng(3), image_size_px=256)
    np.save(tmp_path / "tblg3.npy", sample.image)
    runner = CliRunner()
    out = tmp_path / "results"
    result = runner.invoke(app, ["predict", str(tmp_path / "tblg3.npy"), "--model", "graphene", "--out", str(out),
                                 "--pixel-size", str(sample.params["pixel_size_angstrom"]), "--analyze"])
    assert result.exit_code == 0, result.output
    folder = out / "tblg3"
    stacking = json.loads((folder / "analysis.json").read_text())["stacking"]
    assert (folder / "stacking.png").is_file()
    shares = stacking["fractions"]
    assert sum(shares.values()) == pytest.approx(1.0) and min(shares.values()) > 0.0

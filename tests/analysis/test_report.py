import json

import pytest

from gombnet.analysis.composition import A_WS2_ANGSTROM, vegard_lattice_constant
from gombnet.analysis.report import _headline, calibration_check


def _fft(*pairs):
    return {"lattices": [{"a_angstrom": a, "strength": s} for a, s in pairs]}


def test_consistent_graphene_calibration():
    cal = calibration_check("graphene", {"fft": _fft((2.45, 1.0))}, 0.1)
    assert cal["consistent"] and cal["source"] == "fft"
    assert cal["suggested_pixel_size_angstrom"] == pytest.approx(0.1 * 2.46 / 2.45)


def test_wrong_pixel_size_is_flagged_with_the_right_one():
    # an image of 0.11 Å/px read as 0.10: the lattice comes out 10 % small
    cal = calibration_check("graphene", {"fft": _fft((2.46 / 1.1, 1.0), (1.9, 0.3))}, 0.10)
    assert not cal["consistent"]
    assert cal["measured_a_angstrom"] == pytest.approx(2.46 / 1.1)  # the strongest lattice
    assert cal["suggested_pixel_size_angstrom"] == pytest.approx(0.11)
    headline = _headline("graphene", {"layers": {}, "calibration": cal})
    assert "CHECK THE PIXEL SIZE" in headline and "0.1100" in headline


def test_tmd_reference_follows_the_se_fraction():
    x = 0.5
    layers = {"layer0": {"vegard_lattice_constant_angstrom": vegard_lattice_constant(x)}}
    cal = calibration_check("tmd", {"fft": _fft((vegard_lattice_constant(x), 1.0)), "layers": layers}, 0.1)
    assert cal["expected_a_angstrom"] == pytest.approx(vegard_lattice_constant(x))
    assert cal["scale"] == pytest.approx(1.0)
    no_se = calibration_check("tmd", {"fft": _fft((3.0, 1.0))}, 0.1)
    assert no_se["expected_a_angstrom"] == A_WS2_ANGSTROM and not no_se["consistent"]


def test_atoms_stand_in_when_the_fft_found_no_lattice():
    result = {"fft": {"error": "no lattice"}, "layers": {"layer0": {"lattice": {"a_angstrom": 2.40}},
                                                         "layer1": {"lattice": {"error": "too few atoms"}}}}
    cal = calibration_check("graphene", result, 0.1)
    assert cal["source"] == "atoms" and cal["measured_a_angstrom"] == pytest.approx(2.40)
    assert calibration_check("graphene", {"fft": {"error": "x"}, "layers": {}}, 0.1) is None
    assert calibration_check("other", {"fft": _fft((2.0, 1.0))}, 0.1) is None


def test_monolayer_result_with_dim_metal_columns_is_questioned():
    def headline(ratio, n_layers=1):
        layers = {f"layer{k}": {"counts": {"W": 10}, "brightness": {"metal_over_chalcogen": ratio}}
                  for k in range(n_layers)}
        return _headline("tmd", {"layers": layers})

    assert "NOT A MONOLAYER?" in headline(1.16)
    assert "NOT A MONOLAYER?" not in headline(3.9)
    assert "NOT A MONOLAYER?" not in headline(1.16, n_layers=2)  # bilayer columns overlap: no rule


def test_headline_names_a_distortion_shared_by_the_layers():
    layers = {f"layer{k}": {"n_atoms": 100, "bonds": {}} for k in range(2)}
    shared = {"common": {"max_shear": 3.1, "stretch_axis_deg": 30.0}}
    assert "3.1 % shear (stretched along 30°, alike in every layer: scan distortion?)" in _headline(
        "graphene", {"layers": layers, "distortion": shared})
    with_maps = {"layers": layers, "twist": {"twist_deg": 2.1}, "strain": {"local_twist_deg": {"std": 0.18}},
                 "stacking": {"fractions": {"AA": 0.05, "AB": 0.1, "BA": 0.06, "SP": 0.79}}}
    assert "twist 2.10° (local spread 0.18°); stacking AA 5 % AB 10 % BA 6 % SP 79 %" in _headline("graphene", with_maps)
    weak = {"common": {"max_shear": 0.4, "stretch_axis_deg": 30.0}}
    assert "distorted" not in _headline("graphene", {"layers": layers, "distortion": weak})
    one = {"layer0": {"counts": {"W": 10}}}
    assert "scan distortion?" not in _headline("tmd", {"layers": one, "distortion": shared})


def test_analyze_vector_figures(tmp_path, real_data):
    import numpy as np
    from typer.testing import CliRunner

    from gombnet.cli import app

    runner = CliRunner()
    with np.load(real_data / "twisted_bilayer_graphene.npz") as z:
        np.save(tmp_path / "crop.npy", z["im_array"][:160, :160].astype(np.float32))
    out = tmp_path / "results"
    result = runner.invoke(app, ["predict", str(tmp_path / "crop.npy"), "--model", "graphene", "--out", str(out),
                                 "--pixel-size", "0.1062"])
    assert result.exit_code == 0, result.output
    folder = out / "crop"
    result = runner.invoke(app, ["analyze", str(folder), "--bootstrap", "0", "--figure-format", "svg"])
    assert result.exit_code == 0, result.output
    for name in ("overlay", "bonds", "reconstruction", "strain"):
        text = (folder / f"{name}.svg").read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text, name
        assert (name == "overlay") or (folder / f"{name}.png").is_file()
    # the overlay holds one marker per atom (vector paths, not a bitmap of them)
    n_atoms = len((folder / "atoms.csv").read_text().splitlines()) - 1
    assert n_atoms > 100 and (folder / "overlay.svg").read_text().count("<use ") >= 2 * n_atoms
    # the crop's lattices show the image's scan distortion alike in both layers (about 3 %); the
    # layers' difference (heterostrain) is much smaller, and undoing it narrows the C-C peak
    numbers = json.loads((folder / "analysis.json").read_text())
    shear = [layer["max_shear"] for layer in numbers["distortion"]["layers"]]
    assert min(shear) > 1.5 and abs(shear[0] - shear[1]) < 1.0
    assert numbers["distortion"]["heterostrain"]["max_shear"] < 0.5 * numbers["distortion"]["common"]["max_shear"]
    assert "scan distortion?" in numbers["headline"]
    spread = {"bonds": 0.0, "bonds_undistorted": 0.0}  # ~110 bonds per layer here: std, not FWHM
    for layer in ("layer0", "layer1"):
        entry = numbers["layers"][layer]
        for key in spread:
            spread[key] += entry[key]["std"]
        assert entry["bonds_undistorted"]["mean"] == pytest.approx(entry["bonds"]["mean"], abs=0.01)
        assert numbers["strain"]["layers"][layer]["n_points"] > 100
    assert spread["bonds_undistorted"] < spread["bonds"] - 0.003
    assert 28.0 < numbers["strain"]["local_twist_deg"]["median"] < 31.0
    with np.load(folder / "strain.npz") as maps:  # the figure's maps as arrays, on a 1 Å grid
        assert maps["twist_deg"].shape == (len(maps["y_angstrom"]), len(maps["x_angstrom"])) == (17, 17)
        assert maps["layer1_rotation_deg"].shape == maps["twist_deg"].shape
        assert np.nanmedian(maps["twist_deg"]) == pytest.approx(numbers["strain"]["local_twist_deg"]["median"])
    # an existing vector file is not replaced without --overwrite
    result = runner.invoke(app, ["analyze", str(folder), "--overwrite", "--bootstrap", "0", "--figure-format", "pdf"])
    assert result.exit_code == 0 and (folder / "overlay.pdf").read_bytes().startswith(b"%PDF")
    (folder / "analysis.json").unlink()
    result = runner.invoke(app, ["analyze", str(folder), "--bootstrap", "0", "--figure-format", "pdf"])
    assert result.exit_code == 2 and "overwrite" in result.output
    result = runner.invoke(app, ["analyze", str(folder), "--figure-format", "eps"])
    assert result.exit_code == 2 and "--figure-format must be one of pdf, svg" in result.output
    # the strain maps' window is the user's to choose, within reason
    result = runner.invoke(app, ["analyze", str(folder), "--overwrite", "--bootstrap", "0", "--strain-sigma", "7.5"])
    assert result.exit_code == 0, result.output
    numbers = json.loads((folder / "analysis.json").read_text())
    assert numbers["strain"]["layers"]["layer1"]["smoothing_sigma_angstrom"] == 7.5
    result = runner.invoke(app, ["analyze", str(folder), "--overwrite", "--strain-sigma", "0"])
    assert result.exit_code == 2 and "--strain-sigma must be from 0.5 to 1000 Å" in result.output


def test_report_says_when_positions_were_refined(tmp_path):
    from gombnet.analysis.report import html_report

    summary = {"pixel_size_angstrom": 0.1, "model": "graphene", "n_atoms": 3, "layer_check": None}
    assert "position refiner" not in html_report(tmp_path, summary, {}, [])
    assert "position refiner" in html_report(tmp_path, {**summary, "positions_refined": True}, {}, [])


def test_report_says_what_the_site_check_did(tmp_path):
    from gombnet.analysis.report import html_report

    summary = {"pixel_size_angstrom": 0.1, "model": "graphene", "n_atoms": 3, "layer_check": None}
    check = {"n_moved": 40, "n_dropped": 2, "n_too_close": 1, "n_cells_fitted": 9, "n_cells": 9, "n_cells_swapped": 0}
    page = html_report(tmp_path, {**summary, "site_check": check}, {}, [])
    assert "honeycomb fitted in 9 of 9 cells" in page and "40 atoms moved" in page and "swapped" not in page
    page = html_report(tmp_path, {**summary, "site_check": {**check, "n_cells_swapped": 3}}, {}, [])
    assert "(3 cells the network had swapped as a whole)" in page

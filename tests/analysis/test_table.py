"""The CSV table across analysed results: one row per image and layer."""

import csv
import json

import pytest

from gombnet.analysis.table import results_table_rows, write_results_table
from gombnet.errors import GombnetError

GRAPHENE = {
    "material": "graphene", "pixel_size_angstrom": 0.1062, "counts": {"layer0": {"C": 10}, "layer1": {"C": 12}},
    "twist": {"twist_deg": 28.9},
    "distortion": {"common": {"max_shear": 3.1}, "heterostrain": {"max_shear": 0.2}},
    "stacking": {"fractions": {"AA": 0.08, "AB": 0.3, "BA": 0.25, "SP": 0.37}},
    "strain": {"local_twist_deg": {"std": 0.19}, "layers": {"layer0": {"rotation_deg": {"std": 0.45}}}},
    "calibration": {"consistent": True, "suggested_pixel_size_angstrom": 0.1065},
    "layers": {"layer0": {"n_atoms": 10, "bonds": {"mean": 1.42, "std": 0.08, "fwhm": 0.15, "count": 14},
                          "bonds_undistorted": {"fwhm": 0.136},
                          "lattice": {"a_angstrom": 2.45, "a_sem_angstrom": 0.01, "orientation_deg": 3.0}},
               "layer1": {"n_atoms": 12, "bonds": {"error": "too few atoms"}, "lattice": {"error": "too few"}}},
}
TMD = {
    "material": "tmd", "pixel_size_angstrom": 0.0861, "counts": {"layer0": {"W": 5, "S2": 7, "SSe": 3}},
    "layers": {"layer0": {"counts": {"W": 5, "S2": 7, "SSe": 3},
                          "w_x_projected_bonds": {"mean": 1.83, "std": 0.1, "fwhm": 0.2, "count": 9},
                          "se_fraction": {"x": 0.15, "x_err": 0.06}, "vegard_lattice_constant_angstrom": 3.17}},
}


def test_rows_per_image_and_layer():
    columns, rows = results_table_rows({"tblg": GRAPHENE, "janus": TMD})
    assert [(r["result"], r["layer"]) for r in rows] == [("tblg", "layer0"), ("tblg", "layer1"), ("janus", "layer0")]
    assert {"count_C", "count_W", "count_S2", "count_SSe"} <= set(columns)
    first, second, janus = rows
    assert first["bond_mean_angstrom"] == 1.42 and first["lattice_a_angstrom"] == 2.45 and first["twist_deg"] == 28.9
    assert first["n_atoms"] == 10 and first["count_W"] == 0 and first["calibration_consistent"] is True
    # unmeasured quantities stay empty, not zero
    assert second["bond_mean_angstrom"] is None and second["lattice_a_angstrom"] is None
    assert first["bond_fwhm_undistorted_angstrom"] == 0.136 and first["local_rotation_std_deg"] == 0.45
    assert first["distortion_max_shear_percent"] == second["distortion_max_shear_percent"] == 3.1
    assert second["heterostrain_max_shear_percent"] == 0.2 and second["local_twist_std_deg"] == 0.19
    assert second["local_rotation_std_deg"] is None and janus["distortion_max_shear_percent"] is None
    assert second["stacking_ab_share"] == 0.3 and janus["stacking_aa_share"] is None
    assert janus["n_atoms"] == 15 and janus["se_fraction"] == 0.15 and janus["bond_fwhm_angstrom"] == 0.2
    assert janus["twist_deg"] is None and janus["calibration_consistent"] is None


def test_written_csv_reads_back(tmp_path):
    path = write_results_table({"tblg": GRAPHENE, "janus": TMD}, tmp_path / "table.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert float(rows[0]["bond_fwhm_angstrom"]) == 0.15 and rows[1]["bond_fwhm_angstrom"] == ""
    assert rows[2]["count_SSe"] == "3"
    with pytest.raises(GombnetError, match="overwrite"):
        write_results_table({"tblg": GRAPHENE}, path)
    with pytest.raises(GombnetError, match="no analysed results"):
        write_results_table({}, tmp_path / "empty.csv")


def test_analyze_table_command(tmp_path, real_data):
    from typer.testing import CliRunner

    from gombnet.cli import app

    runner = CliRunner()
    out = tmp_path / "results"
    result = runner.invoke(app, ["predict", str(real_data / "twisted_bilayer_graphene.npz"), "--model", "graphene",
                                 "--out", str(out), "--analyze"])
    assert result.exit_code == 0, result.output
    assert "C-C 1.4" in result.output  # --analyze prints each image's headline
    folder = out / "twisted_bilayer_graphene"
    table = tmp_path / "table.csv"
    result = runner.invoke(app, ["analyze", str(folder), "--bootstrap", "0", "--table", str(table), "--overwrite"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((folder / "analysis.json").read_text())
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["layer"] for r in rows] == ["layer0", "layer1"]
    for row in rows:
        layer = analysis["layers"][row["layer"]]
        assert int(row["n_atoms"]) == layer["n_atoms"] == int(row["count_C"])
        assert float(row["bond_mean_angstrom"]) == pytest.approx(layer["bonds"]["mean"], rel=1e-5)
        assert float(row["bond_mean_angstrom"]) == pytest.approx(1.42, abs=0.03)  # the real image's physics
    assert float(rows[0]["twist_deg"]) == pytest.approx(analysis["twist"]["twist_deg"], rel=1e-5)
    # an existing table is replaced only with --overwrite, and refused before any analysis
    table.write_text("keep me")
    (folder / "analysis.json").unlink()
    result = runner.invoke(app, ["analyze", str(folder), "--bootstrap", "0", "--table", str(table)])
    assert not (folder / "analysis.json").exists()
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("error:")
    assert "--overwrite" in result.output and table.read_text() == "keep me"
    result = runner.invoke(app, ["analyze", str(folder), "--overwrite", "--bootstrap", "0", "--table", str(table)])
    assert result.exit_code == 0, result.output
    assert table.read_text().startswith("result,material,")


"""The command line: one-line errors with exit code 2, nothing overwritten, batch mode."""

import html
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from gombnet.cli import app
from gombnet.data import read_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def strict(constant):
    raise AssertionError(f"non-standard JSON constant {constant}")


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output


def test_presets_lists_both():
    result = run("presets")
    assert result.exit_code == 0
    assert "graphene" in result.output and "ws2-wsse" in result.output


def test_simulate_and_refuse_overwrite(tmp_path):
    out = tmp_path / "d.h5"
    result = run("simulate", "--preset", "graphene", "--n", 3, "--size", 48, "--workers", 1, "--out", out)
    assert result.exit_code == 0, result.output
    assert "3 graphene images" in result.output
    one_line_error(run("simulate", "--n", 3, "--size", 48, "--out", out), "--overwrite")


def test_simulate_with_preset_settings(tmp_path):
    out = tmp_path / "d.h5"
    result = run("simulate", "--preset", "graphene", "--n", 2, "--size", 32, "--workers", 1, "--out", out,
                 "--set", "probe.energy_kev=80", "--set", "noise.dose_counts_per_px=[100, 200]")
    assert result.exit_code == 0, result.output
    ds = read_dataset(out)
    assert (ds.params["energy_kev"] == 80).all()
    assert ((ds.params["dose_counts_per_px"] >= 100) & (ds.params["dose_counts_per_px"] <= 200)).all()
    with h5py.File(out) as f:
        assert "energy_kev = [80.0, 80.0]" in f.attrs["preset_toml"]


@pytest.mark.parametrize("args, words", [
    (("--preset", "nonsense", "--n", 2), ("nonsense",)),
    (("--n", 2, "--set", "probe.nonsense=1"), ("probe.nonsense",)),
    (("--n", 2, "--set", "noise.dose_counts_per_px=-5"), ("dose_counts_per_px",)),
    (("--n", 0), ("> 0",)),
    (("--n", 2, "--size", 4), ("image size",)),
    ((), ("--out",)),
])
def test_simulate_bad_input(tmp_path, args, words):
    extra = () if args == () else ("--out", tmp_path / "x.h5")
    one_line_error(run("simulate", *args, *extra), *words)
    assert not (tmp_path / "x.h5").exists()


def test_simulate_malformed_preset_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is [not toml")
    one_line_error(run("simulate", "--preset", bad, "--n", 1, "--out", tmp_path / "x.h5"))


def test_preview(tmp_path):
    png = tmp_path / "p.png"
    result = run("simulate", "--preset", "ws2-wsse", "--preview", png, "--preview-samples", 1)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_and_evaluate(tmp_path, tiny_graphene):
    out = tmp_path / "run"
    result = run("train", "--data", tiny_graphene, "--out", out, "--epochs", 1, "--filters", "4,8",
                 "--batch-size", 3, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "best model" in result.output
    one_line_error(run("train", "--data", tiny_graphene, "--out", out, "--epochs", 1, "--filters", "4,8"),
                   "--resume")
    report = tmp_path / "eval.json"
    result = run("evaluate", "--model", out, "--data", tiny_graphene, "--split", "all", "--json", report)
    assert result.exit_code == 0, result.output
    numbers = json.loads(report.read_text(), parse_constant=strict)
    assert numbers["meta"]["n_images"] == 12
    assert f"judged {numbers['layer_check']['n_applied']} of 12 images" in result.output
    assert f"dropped {numbers['site_check']['n_dropped']} copies" in result.output
    assert numbers["meta"]["lattice_sites"] is True
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--json", report), "--overwrite")
    one_line_error(run("evaluate", "--model", tmp_path / "nope", "--data", tiny_graphene), "not found")
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--device", "warp-drive"),
                   "unknown device")
    result = run("evaluate", "--model", out, "--data", tiny_graphene, "--split", "all", "--by", "twist_deg",
                 "--groups", 2)
    assert result.exit_code == 0, result.output
    assert "twist_deg" in result.output
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--by", "twist"), "twist_deg")
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--class-weight", "C"), "--class-weight")
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--class-weight", "C=-1"), "positive")
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--class-weight", "SSe=2"), "lacks")
    one_line_error(run("evaluate", "--model", out, "--data", tiny_graphene, "--tta", "d5"), "--tta")
    result = run("evaluate", "--model", out, "--data", tiny_graphene, "--split", "test", "--tta", "flips")
    assert result.exit_code == 0, result.output
    one_line_error(run("train", "--data", tmp_path / "missing.h5", "--out", tmp_path / "r2"), "missing.h5")
    one_line_error(run("train", "--data", tiny_graphene, "--out", tmp_path / "r3", "--filters", "a,b"),
                   "--filters")


def test_predict_refines_positions_when_asked(tmp_path, real_data):
    good = real_data / "twisted_bilayer_graphene.npz"
    assert run("predict", good, "--model", "graphene", "--out", tmp_path / "a", "--refine").exit_code == 0
    assert run("predict", good, "--model", "graphene", "--out", tmp_path / "b").exit_code == 0
    tables, summaries = [], []
    for name in ("a", "b"):
        folder = tmp_path / name / "twisted_bilayer_graphene"
        summaries.append(json.loads((folder / "summary.json").read_text()))
        tables.append(np.genfromtxt(folder / "atoms.csv", delimiter=",", names=True, dtype=None, encoding="utf-8"))
    assert summaries[0]["positions_refined"] is True and summaries[1]["positions_refined"] is False
    one_line_error(run("predict", good, "--model", "graphene-wide", "--out", tmp_path / "c", "--refine"),
                   "no position refiner")
    # the same atoms in the same layers, moved by a fraction of a pixel
    assert summaries[0]["counts"] == summaries[1]["counts"]
    np.testing.assert_array_equal(tables[0]["layer"], tables[1]["layer"])
    a, b = tables
    shift = np.hypot(a["x_angstrom"] - b["x_angstrom"], a["y_angstrom"] - b["y_angstrom"])
    assert 0.005 < np.median(shift) < 0.1 and shift.max() < 0.5


def test_predict_analyze_batch(tmp_path, tiny_run, real_data):
    good = real_data / "twisted_bilayer_graphene.npz"
    broken = tmp_path / "broken.dm4"
    broken.write_bytes(b"\x00" * 500)
    out = tmp_path / "results"
    result = run("predict", good, broken, "--model", tiny_run, "--out", out)
    # the broken file is reported at the end, the good one still finishes
    assert result.exit_code == 2
    assert "1 of 2 failed" in result.output and "broken.dm4" in result.output
    folder = out / "twisted_bilayer_graphene"
    for name in ("atoms.csv", "summary.json", "overlay.png", "probabilities.npz", "structure.extxyz",
                 "structure.cif", "image.npy"):
        assert (folder / name).is_file(), name
    header = (folder / "atoms.csv").read_text().splitlines()[0]
    assert header == "layer,species,x_px,y_px,x_angstrom,y_angstrom,score"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["pixel_size_angstrom"] == pytest.approx(0.1062, abs=1e-3)
    n_rows = len((folder / "atoms.csv").read_text().splitlines()) - 1
    assert sum(sum(c.values()) for c in summary["counts"].values()) == n_rows
    assert set(summary["layer_check"]) >= {"applied", "reason", "n_moved"}
    plain = tmp_path / "plain"
    assert run("predict", good, "--model", tiny_run, "--out", plain, "--no-lattice-layers").exit_code == 0
    assert json.loads((plain / "twisted_bilayer_graphene" / "summary.json").read_text())["layer_check"] is None
    assert set(summary["site_check"]) >= {"n_moved", "n_dropped", "n_cells_fitted", "n_cells", "n_cells_swapped"}
    no_sites = tmp_path / "no_sites"
    assert run("predict", good, "--model", tiny_run, "--out", no_sites, "--no-lattice-sites").exit_code == 0
    no_sites_summary = json.loads((no_sites / "twisted_bilayer_graphene" / "summary.json").read_text())
    assert no_sites_summary["site_check"] is None and no_sites_summary["layer_check"] is not None
    before = (folder / "atoms.csv").read_bytes()
    one_line_error(run("predict", good, "--model", tiny_run, "--out", out), "--overwrite")
    assert (folder / "atoms.csv").read_bytes() == before

    result = run("analyze", folder, "--bootstrap", 10)
    assert result.exit_code == 0, result.output
    analysis = json.loads((folder / "analysis.json").read_text(), parse_constant=strict)
    json.loads((folder / "summary.json").read_text(), parse_constant=strict)
    assert analysis["material"] == "graphene"
    report = (folder / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>")
    check = summary["layer_check"]
    assert ("Lattice check of the layers" in report) == check["applied"]
    assert check["applied"] or html.escape(check["reason"]) in report
    one_line_error(run("analyze", folder), "--overwrite")
    one_line_error(run("analyze", tmp_path / "nothing"), "no such result folder")


def test_analyze_checks_the_pixel_size(tmp_path, tiny_run, real_data):
    image = real_data / "twisted_bilayer_graphene.npz"  # 0.1062 Å/px in the file, a = 2.46 Å
    for name, pixel_size, consistent in (("file", None, True), ("wrong", 0.0956, False)):
        out = tmp_path / name
        extra = () if pixel_size is None else ("--pixel-size", pixel_size)
        assert run("predict", image, "--model", tiny_run, "--out", out, *extra).exit_code == 0
        result = run("analyze", out / "twisted_bilayer_graphene", "--bootstrap", 0)
        assert result.exit_code == 0, result.output
        cal = json.loads((out / "twisted_bilayer_graphene" / "analysis.json").read_text())["calibration"]
        assert cal["consistent"] is consistent
        assert cal["suggested_pixel_size_angstrom"] == pytest.approx(0.1062, rel=0.02)
        assert ("CHECK THE PIXEL SIZE" in result.output) is not consistent


def test_predict_bad_pixel_size(tmp_path, tiny_run, real_data):
    result = run("predict", real_data / "twisted_bilayer_graphene.npz", "--model", tiny_run, "--out", tmp_path,
                 "--pixel-size", 0.9)
    one_line_error(result, "twisted_bilayer_graphene.npz", "off the model")
    assert not (tmp_path / "twisted_bilayer_graphene").exists()


def test_models_lists_shipped():
    result = run("models")
    assert result.exit_code == 0
    assert "graphene:" in result.output and "ws2-wsse:" in result.output
    assert "command:" in result.output and "test metrics" in result.output
    assert "position refiner: position error on validation images" in result.output
    # both bilayer models carry their scores under the current evaluation defaults
    assert result.output.count("test metrics with the defaults of 2026-11-28, --tta d4: mIoU") == 2


def test_train_config_file_and_explicit_options(tmp_path, tiny_graphene):
    cfg = tmp_path / "best.json"
    cfg.write_text(json.dumps({"epochs": 3, "filters": [4, 8], "lr": 0.002, "batch_size": 3, "device": "cpu"}))
    out = tmp_path / "run"
    # --epochs on the command line wins over the file's 3
    result = run("train", "--data", tiny_graphene, "--out", out, "--config", cfg, "--epochs", 1)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["epochs"] == 1 and config["training"]["lr"] == 0.002
    assert config["architecture"]["filters"] == [4, 8]
    # a run's own config.json (time limit null) does not cancel --time-limit-minutes
    result = run("train", "--data", tiny_graphene, "--out", tmp_path / "r3", "--config", out / "config.json",
                 "--epochs", 3, "--time-limit-minutes", 1e-6)
    assert result.exit_code == 0, result.output
    assert "time limit" in result.output
    assert json.loads((tmp_path / "r3" / "state.json").read_text())["epoch"] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 1}))
    one_line_error(run("train", "--data", tiny_graphene, "--out", tmp_path / "r2", "--config", bad),
                   "learning_rate")


def test_train_fine_tunes_with_per_class_dice(tmp_path, tiny_graphene):
    base = tmp_path / "base"
    assert run("train", "--data", tiny_graphene, "--out", base, "--epochs", 1, "--filters", "4,8",
               "--batch-size", 3, "--device", "cpu").exit_code == 0
    out = tmp_path / "tuned"
    # no --filters: the starting model's own widths, not the from-scratch default
    result = run("train", "--data", tiny_graphene, "--out", out, "--epochs", 1,
                 "--batch-size", 3, "--device", "cpu", "--init", base, "--per-class-dice", "--bce-weight", 0.5)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["filters"] == [4, 8]
    training = config["training"]
    assert training["init_weights"] == str(base) and training["per_class_dice"] is True
    assert training["bce_weight"] == 0.5
    one_line_error(run("train", "--data", tiny_graphene, "--out", tmp_path / "z", "--epochs", 1,
                       "--bce-weight", -1), "BCE weight")
    one_line_error(run("train", "--data", tiny_graphene, "--out", tmp_path / "x", "--epochs", 1,
                       "--init", tmp_path / "nope"), "not found")
    one_line_error(run("train", "--data", tiny_graphene, "--out", tmp_path / "y", "--epochs", 1,
                       "--filters", "4,16", "--batch-size", 3, "--device", "cpu", "--init", base), "architecture")
    # one more width: the trained model is deepened by one level
    deeper = run("train", "--data", tiny_graphene, "--out", tmp_path / "deep", "--epochs", 1, "--filters", "4,8,16",
                 "--batch-size", 3, "--device", "cpu", "--init", base)
    assert deeper.exit_code == 0, deeper.output


def test_tune_command(tmp_path, tiny_graphene):
    pytest.importorskip("optuna")
    out = tmp_path / "search"
    result = run("tune", "--data", tiny_graphene, "--out", out, "--n-trials", 1, "--epochs", 1,
                 "--batch-size", 3, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (out / "trials.csv").is_file() and (out / "best.json").is_file()
    one_line_error(run("tune", "--data", tiny_graphene, "--out", out, "--n-trials", 1), "overwrite")

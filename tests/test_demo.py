import json

import pytest

from gombnet.demo import run_demo
from gombnet.errors import GombnetError
from gombnet.nn import checkpoint
from gombnet.nn.checkpoint import load_model, save_model


@pytest.fixture()
def shipped(tmp_path, monkeypatch, tiny_run):
    """The tiny test model shipped under the name 'graphene' in a temporary weights folder."""
    weights = tmp_path / "weights"
    model = load_model(tiny_run)
    save_model(model, weights, model.gombnet_config, stem="graphene", half=True)
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", weights)
    return weights


def test_demo_writes_results_and_scores(tmp_path, shipped):
    lines = []
    summary = run_demo(tmp_path / "demo", size_px=128, echo=lines.append)
    folder = tmp_path / "demo" / "graphene"
    for name in ("atoms.csv", "overlay.png", "report.html", "analysis.json", "summary.json"):
        assert (folder / name).is_file(), name
    f1 = summary["graphene"]["f1_per_layer"]
    assert set(f1) == {"layer0", "layer1"} and all(0 <= v <= 1 for v in f1.values())
    assert any("accuracy against the simulation" in line for line in lines)
    json.loads((folder / "analysis.json").read_text())
    with pytest.raises(GombnetError, match="--overwrite"):
        run_demo(tmp_path / "demo", size_px=128, echo=lines.append)


def test_demo_without_models(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(GombnetError, match="no shipped models"):
        run_demo(tmp_path / "demo")

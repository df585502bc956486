import json

import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.nn.checkpoint import load_model, save_model
from gombnet.nn.model import GombNet


def test_round_trip_and_half(tmp_path):
    model = GombNet(n_layers=2, classes_per_layer=3, filters=(4, 8), dropout=0.1).eval()
    save_model(model, tmp_path / "run", {"n_layers": 2, "class_names": ["W", "S2", "SSe"]})
    again = load_model(tmp_path / "run")
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model(x), again(x))
    assert again.gombnet_config["architecture"]["classes_per_layer"] == 3
    save_model(model, tmp_path / "ship", {"n_layers": 2, "class_names": ["W", "S2", "SSe"]}, stem="tiny",
               half=True)
    small = load_model(tmp_path / "ship" / "tiny.safetensors")
    assert (tmp_path / "ship" / "tiny.json").is_file()
    torch.testing.assert_close(model(x), small(x), atol=5e-2, rtol=5e-2)


def test_errors(tmp_path):
    with pytest.raises(GombnetError, match="not found"):
        load_model("no-such-model")
    model = GombNet(filters=(4, 8))
    save_model(model, tmp_path / "run", {"n_layers": 2, "class_names": ["C"]})
    (tmp_path / "run" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(GombnetError, match="cannot read weights"):
        load_model(tmp_path / "run")
    save_model(model, tmp_path / "run2", {"n_layers": 2, "class_names": ["C"]})
    cfg = json.loads((tmp_path / "run2" / "config.json").read_text())
    cfg["architecture"]["filters"] = [8, 16]
    (tmp_path / "run2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GombnetError, match="shape"):
        load_model(tmp_path / "run2")

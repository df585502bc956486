import csv
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gombnet.errors import GombnetError
from gombnet.nn.checkpoint import load_model
from gombnet.nn.train import DEFAULT_FILTERS, TrainConfig, train, with_filters

TINY = dict(filters=(4, 8, 16), batch_size=3, lr=2e-3, device="cpu", seed=1)


def weights(path):
    return load_file(str(path))


def test_run_folder_and_reload(tmp_path, tiny_graphene):
    out = tmp_path / "run"
    config = train(tiny_graphene, out, TrainConfig(epochs=2, **TINY))
    for name in ("model.safetensors", "config.json", "metrics.csv", "last.safetensors", "state.json"):
        assert (out / name).is_file()
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["train_loss"])) and 0 <= float(r["val_miou"]) <= 1 for r in rows)
    assert config["class_names"] == ["C"] and config["n_layers"] == 2
    assert 0.09 < config["pixel_size_angstrom"] < 0.13
    assert len(config["data"]["sha256"]) == 64
    assert config["metrics"]["best_epoch"] in (1, 2)
    model = load_model(out)
    # the reloaded model reproduces the stored weights exactly
    stored = weights(out / "model.safetensors")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, stored[k])
    x = torch.rand(1, 1, 64, 64)
    assert model(x).shape == (1, 2, 64, 64)


def test_training_reduces_the_loss(tmp_path, tiny_graphene):
    train(tiny_graphene, tmp_path / "run", TrainConfig(epochs=4, augment=False, **TINY))
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_reproducible_and_resumable(tmp_path, tiny_graphene):
    cfg = dict(epochs=2, **TINY)
    train(tiny_graphene, tmp_path / "a", TrainConfig(**cfg))
    train(tiny_graphene, tmp_path / "b", TrainConfig(**{**cfg, "epochs": 1}))
    # interrupted after one epoch, resumed to two: identical to the uninterrupted run
    train(tiny_graphene, tmp_path / "b", TrainConfig(**cfg), resume=True)
    a, b = weights(tmp_path / "a" / "last.safetensors"), weights(tmp_path / "b" / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_unet_baseline_and_dice(tmp_path, tiny_wsse):
    config = train(tiny_wsse, tmp_path / "u", TrainConfig(epochs=1, arch="unet", loss="dice", **TINY))
    assert config["architecture"]["n_layers"] == 1
    assert config["architecture"]["classes_per_layer"] == 6
    assert config["class_names"] == ["W", "S2", "SSe"]


def test_existing_run_is_kept(tmp_path, tiny_graphene):
    out = tmp_path / "run"
    train(tiny_graphene, out, TrainConfig(epochs=1, **TINY))
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(GombnetError, match="--resume"):
        train(tiny_graphene, out, TrainConfig(epochs=1, **TINY))
    assert (out / "model.safetensors").read_bytes() == before


def test_bad_settings(tmp_path, tiny_graphene):
    with pytest.raises(GombnetError, match="batch size 50"):
        train(tiny_graphene, tmp_path / "r", TrainConfig(epochs=1, **{**TINY, "batch_size": 50}))
    with pytest.raises(GombnetError, match="unknown architecture"):
        train(tiny_graphene, tmp_path / "r", TrainConfig(arch="resnet"))
    with pytest.raises(GombnetError, match="nothing to resume"):
        train(tiny_graphene, tmp_path / "none", resume=True)
    with pytest.raises(GombnetError, match="no such dataset"):
        train(tmp_path / "missing.h5", tmp_path / "r", TrainConfig(epochs=1, **TINY))


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path, tiny_graphene, monkeypatch):
    out = tmp_path / "run"
    train(tiny_graphene, out, TrainConfig(epochs=1, **TINY))
    good = (out / "last.safetensors").read_bytes()
    import gombnet.nn.train as tr

    monkeypatch.setattr(tr, "_loss_fn", lambda cfg, n: (lambda logits, y: logits.sum() * float("nan")))
    with pytest.raises(GombnetError, match="loss became nan"):
        train(tiny_graphene, out, TrainConfig(epochs=2, **TINY), resume=True)
    assert (out / "last.safetensors").read_bytes() == good
    assert json.loads((out / "state.json").read_text())["epoch"] == 0


def test_time_limit_stops_after_an_epoch_and_resumes(tmp_path, tiny_graphene):
    out = tmp_path / "run"
    lines = []
    train(tiny_graphene, out, TrainConfig(epochs=3, time_limit_seconds=1e-6, **TINY), log=lines.append)
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 0 and any("time limit" in line for line in lines)
    assert (out / "model.safetensors").is_file()
    config = train(tiny_graphene, out, TrainConfig(epochs=3, **TINY), resume=True)
    assert config["training"]["epochs_done"] == 3
    assert [int(r["epoch"]) for r in csv.DictReader((out / "metrics.csv").open())] == [1, 2, 3]


def test_cosine_schedule_follows_the_time_limit_when_it_comes_first():
    from gombnet.nn.train import _lr_at

    cfg = TrainConfig(epochs=10, lr=1e-3, schedule="cosine", time_limit_seconds=100.0)
    assert _lr_at(cfg, 0, 0.0) == pytest.approx(1e-3)
    assert _lr_at(cfg, 1, 50.0) == pytest.approx(0.5e-3)  # half the time gone after one epoch of ten
    assert _lr_at(cfg, 5, 10.0) == pytest.approx(0.5e-3)  # epochs ahead of the clock: epochs rule
    assert _lr_at(cfg, 9, 150.0) == pytest.approx(0.0)
    assert _lr_at(TrainConfig(epochs=10, lr=1e-3, schedule="cosine"), 1, 50.0) == pytest.approx(
        1e-3 * 0.5 * (1 + math.cos(math.pi / 10)))


def test_max_val_images_limits_validation(tmp_path, tiny_graphene, monkeypatch):
    import gombnet.nn.train as train_module

    seen = []
    real = train_module.validate

    def spy(model, dataset, indices, *args, **kwargs):
        seen.append(len(indices))
        return real(model, dataset, indices, *args, **kwargs)

    monkeypatch.setattr(train_module, "validate", spy)
    train(tiny_graphene, tmp_path / "run", TrainConfig(epochs=1, max_val_images=1, **TINY))
    assert seen == [1]


def test_per_class_dice_reaches_the_loss(tmp_path, tiny_wsse):
    import gombnet.nn.train as train_module

    assert train_module._loss_fn(TrainConfig(per_class_dice=True), 2).per_class
    assert not train_module._loss_fn(TrainConfig(), 2).per_class
    assert train_module._loss_fn(TrainConfig(loss="dice", dice_smooth=1.0), 2).smooth == 1.0
    assert train_module._loss_fn(TrainConfig(bce_weight=0.5), 2).bce_weight == 0.5
    with pytest.raises(GombnetError, match="gomb loss only"):
        TrainConfig(loss="dice", bce_weight=1.0).validate()
    with pytest.raises(GombnetError, match="dice smoothing"):
        train(tiny_wsse, tmp_path / "bad", TrainConfig(dice_smooth=0.0))
    train(tiny_wsse, tmp_path / "pooled", TrainConfig(epochs=1, augment=False, **TINY))
    per_class = train(tiny_wsse, tmp_path / "per_class",
                      TrainConfig(epochs=1, augment=False, per_class_dice=True, **TINY))
    assert per_class["training"]["per_class_dice"] is True
    with_bce = train(tiny_wsse, tmp_path / "bce",
                     TrainConfig(epochs=1, augment=False, per_class_dice=True, bce_weight=1.0, **TINY))
    assert with_bce["training"]["bce_weight"] == 1.0
    loss = [float(next(csv.DictReader((tmp_path / r / "metrics.csv").open()))["train_loss"])
            for r in ("pooled", "per_class", "bce")]
    assert loss[0] != pytest.approx(loss[1], rel=1e-3)
    assert loss[2] > loss[1]   # the same run plus a non-negative term


def test_init_weights_fine_tunes_a_trained_model(tmp_path, tiny_graphene, tiny_wsse):
    train(tiny_graphene, tmp_path / "a", TrainConfig(epochs=1, **TINY))
    start = weights(tmp_path / "a" / "model.safetensors")
    # a vanishing learning rate: the fine-tuned run must still hold the weights it started from
    config = train(tiny_graphene, tmp_path / "b",
                   TrainConfig(epochs=1, init_weights=str(tmp_path / "a"), **{**TINY, "lr": 1e-9, "seed": 7}))
    assert config["training"]["init_weights"] == str(tmp_path / "a")
    tuned = weights(tmp_path / "b" / "last.safetensors")
    fresh = train(tiny_graphene, tmp_path / "c", TrainConfig(epochs=1, **{**TINY, "lr": 1e-9, "seed": 7}))
    assert fresh["training"]["init_weights"] is None
    other = weights(tmp_path / "c" / "last.safetensors")
    conv = next(k for k in start if k.endswith("weight") and start[k].ndim == 4)
    torch.testing.assert_close(tuned[conv], start[conv], atol=1e-6, rtol=0)
    assert not torch.allclose(other[conv], start[conv], atol=1e-3)
    with pytest.raises(GombnetError, match="do not match the data"):
        train(tiny_wsse, tmp_path / "d", TrainConfig(epochs=1, init_weights=str(tmp_path / "a"), **TINY))
    with pytest.raises(GombnetError, match="architecture"):
        train(tiny_graphene, tmp_path / "e",
              TrainConfig(epochs=1, init_weights=str(tmp_path / "a"), **{**TINY, "filters": (4, 8)}))


def test_monolayer_model_starts_from_a_bilayer_one(tmp_path, tiny_graphene):
    from gombnet.data import write_dataset
    from gombnet.simulation.presets import with_overrides

    mono = with_overrides("graphene", ['structure.materials=["graphene"]', "n_layers=1"])
    data = write_dataset(tmp_path / "mono.h5", mono, 6, seed=3, workers=1, image_size_px=64)
    train(tiny_graphene, tmp_path / "bi", TrainConfig(epochs=1, **TINY))
    start = weights(tmp_path / "bi" / "model.safetensors")
    config = train(data, tmp_path / "mono",
                   TrainConfig(epochs=1, init_weights=str(tmp_path / "bi"), **{**TINY, "lr": 1e-9}))
    assert config["n_layers"] == 1
    tuned = weights(tmp_path / "mono" / "last.safetensors")
    # the encoder and the first decoder come over; the second decoder has no place to go
    assert set(tuned) < set(start) and not any(k.startswith("decoders.1.") for k in tuned)
    for key in ("encoder", "decoders.0."):
        conv = next(k for k in tuned if k.startswith(key) and tuned[k].ndim == 4)
        torch.testing.assert_close(tuned[conv], start[conv], atol=1e-6, rtol=0)
    with pytest.raises(GombnetError, match="do not match the data"):  # more layers than the source
        train(tiny_graphene, tmp_path / "back", TrainConfig(epochs=1, init_weights=str(tmp_path / "mono"), **TINY))


def test_filters_default_to_the_init_model(tiny_graphene, tmp_path):
    assert with_filters(TrainConfig()).filters == DEFAULT_FILTERS
    assert with_filters(TrainConfig(filters=(4, 8))).filters == (4, 8)
    train(tiny_graphene, tmp_path / "a", TrainConfig(epochs=1, **TINY))
    assert with_filters(TrainConfig(init_weights=str(tmp_path / "a"))).filters == TINY["filters"]
    shipped = tuple(load_model("graphene").config["filters"])  # found by name too
    assert with_filters(TrainConfig(init_weights="graphene")).filters == shipped
    with pytest.raises(GombnetError, match="not found"):
        with_filters(TrainConfig(init_weights=str(tmp_path / "nope")))

import csv
import importlib
import json
import math
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from gombnet.errors import GombnetError
from gombnet.nn.train import TrainConfig
from gombnet.nn.tune import tune

# the module itself (gombnet.nn may one day export the function under the same name)
tune_module = importlib.import_module("gombnet.nn.tune")

TINY = dict(filters_choices=((4, 8),), batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 graphene images of 32 px (7 train, 1 val)."""
    from gombnet.data import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tune") / "graphene.h5", "graphene", 8, seed=0,
                         workers=1, image_size_px=32)


def read_trials(folder: Path) -> list[dict]:
    with (folder / "trials.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def fake_train(score, *, fail=None):
    """A stand-in for train(): writes metrics.csv with val mIoU = score(cfg, epoch).

    ``fail(cfg)`` may return an exception to raise instead.
    """
    calls = []

    def run(data, out, cfg, *, resume=False, overwrite=False, progress=False, log=None):
        calls.append((Path(out).name, cfg.epochs, resume))
        if fail is not None and (exc := fail(cfg, len(calls))) is not None:
            raise exc
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "metrics.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", "val_miou"])
            writer.writeheader()
            writer.writerows({"epoch": e, "val_miou": score(cfg, e)} for e in range(1, cfg.epochs + 1))
        return {}

    run.calls = calls
    return run


def lr_score(cfg, epoch):
    # best near lr = 10^-3.5, improving with epochs
    return min(1.0, 0.5 + 0.04 * epoch - 0.1 * abs(math.log10(cfg.lr) + 3.5))


def test_search_table_and_best_config(tmp_path, data):
    from typer.testing import CliRunner

    from gombnet.cli import app

    out = tmp_path / "search"
    lines = []
    result = tune(data, out, n_trials=2, epochs=1, seed=0, log=lines.append, **TINY)
    rows = read_trials(out)
    assert [int(r["trial"]) for r in rows] == [0, 1]
    assert all(r["state"] == "complete" and r["filters"] == "4,8" and int(r["epochs_run"]) == 1 for r in rows)
    for r in rows:
        assert 1e-5 <= float(r["lr"]) <= 1e-2
        assert 0.1 <= float(r["dropout"]) <= 0.5
        assert 1.0 <= float(r["alpha"]) <= 5.0
        assert 0.0 <= float(r["best_val_miou"]) <= 1.0
        assert float(r["seconds"]) > 0
    # each trial is a real run folder whose best val mIoU is the table's
    for r in rows:
        run = out / f"trial_{r['trial']}"
        assert (run / "model.safetensors").is_file()
        config = json.loads((run / "config.json").read_text())
        assert config["metrics"]["val_miou"] == pytest.approx(float(r["best_val_miou"]))
        assert config["training"]["lr"] == pytest.approx(float(r["lr"]))
    best_row = max(rows, key=lambda r: float(r["best_val_miou"]))
    assert result["n_complete"] == 2 and result["n_pruned"] == 0 and result["n_failed"] == 0
    assert result["best_value"] == pytest.approx(float(best_row["best_val_miou"]))
    assert any("trial 1" in line for line in lines)

    best = json.loads((out / "best.json").read_text())
    assert best["lr"] == pytest.approx(float(rows[result["best_trial"]]["lr"]))
    assert best["filters"] == [4, 8] and best["epochs"] == 1 and best["batch_size"] == 2
    cfg = TrainConfig(**{**best, "filters": tuple(best["filters"])})
    cfg.validate()
    assert cfg.dropout == pytest.approx(result["best_params"]["dropout"])
    assert cfg.alpha == pytest.approx(result["best_params"]["alpha"])

    # the CLI trains from best.json as it is
    run = tmp_path / "final"
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(run), "--config",
                                   str(out / "best.json"), "--epochs", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    trained = json.loads((run / "config.json").read_text())["training"]
    assert trained["lr"] == pytest.approx(best["lr"]) and trained["filters"] == [4, 8]
    assert trained["alpha"] == pytest.approx(best["alpha"])

    # a second search into the same folder needs overwrite
    with pytest.raises(GombnetError, match="overwrite"):
        tune(data, out, n_trials=1, epochs=1, **TINY)
    tune(data, out, n_trials=1, epochs=1, overwrite=True, **TINY)
    assert len(read_trials(out)) == 1
    assert not (out / "trial_1").exists()  # the stale run of the old search is gone


def sampled(folder):
    return [(r["filters"], float(r["lr"]), float(r["dropout"]), float(r["alpha"])) for r in read_trials(folder)]


def test_seed_reproducible_and_pruning(tmp_path, data, monkeypatch):
    fake = fake_train(lr_score)
    monkeypatch.setattr(tune_module, "train", fake)
    kw = dict(n_trials=24, epochs=9, batch_size=2, device="cpu", filters_choices=((4, 8), (4, 8, 16)))
    a = tune(data, tmp_path / "a", seed=3, **kw)
    calls_a = list(fake.calls)
    b = tune(data, tmp_path / "b", seed=3, **kw)
    tune(data, tmp_path / "c", seed=4, **kw)
    # past TPE's 10 random start-up trials too, the same seed samples the same sequence
    assert sampled(tmp_path / "a") == sampled(tmp_path / "b")
    assert [r["state"] for r in read_trials(tmp_path / "a")] == [r["state"] for r in read_trials(tmp_path / "b")]
    assert sampled(tmp_path / "a") != sampled(tmp_path / "c")
    assert a["best_params"] == b["best_params"]

    rows = read_trials(tmp_path / "a")
    pruned = [r for r in rows if r["state"] == "pruned"]
    complete = [r for r in rows if r["state"] == "complete"]
    assert a["n_pruned"] == len(pruned) > 0 and a["n_complete"] == len(complete) > 0
    assert all(int(r["epochs_run"]) < 9 for r in pruned)
    assert all(int(r["epochs_run"]) == 9 for r in complete)
    # the trial was trained one epoch per call, resuming after the first
    first = [c for c in calls_a if c[0] == "trial_0"]
    assert [(e, resume) for _, e, resume in first] == [(e, e > 1) for e in range(1, 10)]
    # best.json is the best complete trial, and its value follows the fake score
    best = json.loads((tmp_path / "a" / "best.json").read_text())
    top = max(complete, key=lambda r: float(r["best_val_miou"]))
    assert best["lr"] == pytest.approx(float(top["lr"]))
    assert a["best_value"] == pytest.approx(lr_score(TrainConfig(lr=best["lr"]), 9))
    assert best["filters"] == [int(f) for f in top["filters"].split(",")]


def test_diverging_trials_fail_and_search_goes_on(tmp_path, data, monkeypatch):
    def fail(cfg, n_calls):  # one call per trial with epochs=1: trials 1 and 4 diverge
        return GombnetError("loss became nan at epoch 1 step 1") if n_calls in (2, 5) else None

    monkeypatch.setattr(tune_module, "train", fake_train(lr_score, fail=fail))
    result = tune(data, tmp_path / "s", n_trials=6, epochs=1, seed=0, **TINY)
    rows = read_trials(tmp_path / "s")
    assert [r["state"] for r in rows] == ["complete", "fail", "complete", "complete", "fail", "complete"]
    assert [("loss became nan" in r["error"]) for r in rows] == [r["state"] == "fail" for r in rows]
    assert all(r["best_val_miou"] == "" and int(r["epochs_run"]) == 0 for r in rows if r["state"] == "fail")
    assert result["n_failed"] == 2 and result["n_complete"] == 4


def test_other_errors_stop_the_search(tmp_path, data, monkeypatch):
    monkeypatch.setattr(tune_module, "train",
                        fake_train(lr_score, fail=lambda cfg, n: GombnetError("disk full")))
    with pytest.raises(GombnetError, match="disk full"):
        tune(data, tmp_path / "s", n_trials=3, epochs=1, **TINY)


def test_interrupted_search_leaves_a_valid_table(tmp_path, data, monkeypatch):
    # the fourth trial (one call per trial with epochs=1) is interrupted
    monkeypatch.setattr(tune_module, "train",
                        fake_train(lr_score, fail=lambda cfg, n: KeyboardInterrupt() if n == 4 else None))
    with pytest.raises(KeyboardInterrupt):
        tune(data, tmp_path / "s", n_trials=10, epochs=1, **TINY)
    rows = read_trials(tmp_path / "s")
    assert [r["state"] for r in rows] == ["complete"] * 3 + ["fail"]
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    top = max(rows[:3], key=lambda r: float(r["best_val_miou"]))
    assert best["lr"] == pytest.approx(float(top["lr"]))


def test_other_loss_does_not_search_alpha(tmp_path, data, monkeypatch):
    monkeypatch.setattr(tune_module, "train", fake_train(lr_score))
    result = tune(data, tmp_path / "s", n_trials=2, epochs=1, loss="dice", **TINY)
    assert {float(r["alpha"]) for r in read_trials(tmp_path / "s")} == {TrainConfig.alpha}
    assert result["best_config"]["loss"] == "dice"


@pytest.mark.parametrize("bad", [
    dict(n_trials=0), dict(epochs=0), dict(n_trials=1.5), dict(seed=-1),
    dict(lr_range=(1e-2, 1e-5)), dict(dropout_range=(0.5, 0.1)), dict(alpha_range=(5.0, 1.0)),
    dict(lr_range=(0.0, 1e-2)), dict(dropout_range=(0.1, 1.0)), dict(alpha_range=(0.0, 1.0)),
    dict(lr_range=(1e-5,)), dict(lr_range=(1e-5, float("nan"))),
    dict(filters_choices=()), dict(filters_choices=((8,),)), dict(filters_choices=((4, 0),)),
    dict(filters_choices=((4, 8, 16, 32, 64, 128, 256),)),  # needs 64 px images
    dict(batch_size=8),  # larger than the 7 training images
    dict(arch="resnet"), dict(timeout_s=0), dict(device="nonsense"),
])
def test_bad_input(tmp_path, data, monkeypatch, bad):
    monkeypatch.setattr(tune_module, "train", fake_train(lr_score))
    kw = {"n_trials": 1, "epochs": 1, **TINY, **bad}
    with pytest.raises(GombnetError):
        tune(data, tmp_path / "s", **kw)
    assert not (tmp_path / "s").exists()


def test_missing_dataset_and_optuna(tmp_path, data, monkeypatch):
    with pytest.raises(GombnetError, match="no such dataset"):
        tune(tmp_path / "missing.h5", tmp_path / "s", n_trials=1, epochs=1, **TINY)
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(GombnetError, match=r"pip install 'gombnet\[tune\]'"):
        tune(data, tmp_path / "s", n_trials=1, epochs=1, **TINY)

"""Fit a training run into a wall-clock budget: time a short trial run, then choose the epochs.

Used by ``train_models.py`` and ``fig1e.py`` on a lent GPU, where device time is counted in
minutes and the throughput of a network is not known before it runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from gombnet.data import read_dataset
from gombnet.nn.train import TrainConfig, train


def epochs_for_budget(data: Path, cfg: TrainConfig, seconds: float, probe_dir: Path, *,
                      safety: float = 0.85, probe_batches: int = 24) -> dict:
    """Epochs of ``cfg`` (at most ``cfg.epochs``) that fit in ``seconds`` of wall time.

    Two short epochs on ``probe_batches`` batches are run in ``probe_dir``; the second one
    (after cuDNN has picked its kernels) gives the training throughput, and the validation
    time of ``cfg`` comes from the same run.
    """
    ds = read_dataset(data, in_memory=False)
    n_train = len(ds.indices("train")) if cfg.max_train_images is None else min(
        cfg.max_train_images, len(ds.indices("train")))
    n_probe = min(n_train, probe_batches * cfg.batch_size)
    probe = replace(cfg, epochs=2, schedule="none", max_train_images=n_probe)
    train(data, probe_dir, probe, overwrite=True)
    last = json.loads((probe_dir / "state.json").read_text())["rows"][-1]
    images_per_second = last["images_per_second"]
    validation_seconds = max(0.0, last["epoch_seconds"] - n_probe / images_per_second)
    epoch_seconds = n_train / images_per_second + validation_seconds
    epochs = max(1, min(cfg.epochs, int(seconds * safety / epoch_seconds)))
    return {"epochs": epochs, "images_per_second": images_per_second, "epoch_seconds": epoch_seconds,
            "validation_seconds": validation_seconds, "n_train": n_train}


def planned_epochs(plan_file: Path, data: Path, cfg: TrainConfig, seconds: float | None, probe_dir: Path) -> dict:
    """The plan of :func:`epochs_for_budget`, kept in ``plan_file``: a rerun (resuming an
    interrupted run) reads the epochs chosen the first time instead of timing again."""
    if plan_file.is_file():
        return json.loads(plan_file.read_text())
    plan = {"budget_seconds": seconds, **epochs_for_budget(data, cfg, seconds, probe_dir)}
    plan_file.write_text(json.dumps(plan))
    return plan

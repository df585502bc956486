"""Training: Adam, augmentation, validation every epoch, best checkpoint, resume.

A run folder holds

``model.safetensors`` + ``config.json``   the best model so far (by validation mIoU)
``metrics.csv``                          one row per epoch
``last.safetensors``, ``optimizer.safetensors``, ``state.json``   what ``--resume`` needs

Each epoch ends by writing these files atomically, so an interrupted run loses at most the
epoch in progress and continues with ``resume=True`` exactly where it stopped: the random
states of the shuffling and the augmentation are saved with the weights.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..atomic import atomic_path, write_text_atomic
from ..data import Dataset, file_sha256, read_dataset
from ..errors import GombnetError, check
from ..jsonio import dumps
from .checkpoint import load_state, save_model, save_weights
from .dataset import Augmentation, TrainingBatches, augment_batch, normalize_batch
from .losses import DEFAULT_SMOOTH, make_loss
from .model import GombNet

# the paper's graphene widths, the default of a run from scratch
DEFAULT_FILTERS = (32, 64, 128, 256)

ARCHITECTURES = ("gombnet", "unet")
LOSSES = ("gomb", "dice", "bce")
SCHEDULES = ("none", "cosine")
METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "val_miou", "val_dice", "val_pixel_accuracy",
                 "lr", "epoch_seconds", "images_per_second")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``config.json``).

    Attributes
    ----------
    arch : {"gombnet", "unet"}
        Multi-branch Gomb-Net (one decoder per layer) or the single-decoder U-Net baseline.
    loss : {"gomb", "dice", "bce"}
        Gomb loss (layer-order invariant), plain Dice or binary cross-entropy.
    epochs, batch_size : int
    lr : float
        Adam learning rate.
    filters : tuple of int, optional
        Encoder widths; the last one is the bottleneck. None (default): the ``init_weights``
        model's own widths when fine-tuning, else :data:`DEFAULT_FILTERS`.
    dropout : float
        Bottleneck dropout probability.
    alpha : float
        False-positive weight of the Gomb loss's Dice.
    normalized_dice : bool
        Use the Dice normalised so that a perfect prediction scores loss 0.
    per_class_dice : bool
        Average one Dice per class inside each layer instead of pooling a layer's classes:
        a rare class (Se-S columns in a layer with little Se) then weighs as much as a common
        one, instead of being cheaper to leave out.
    dice_smooth : float
        Smoothing term of the Dice [pixels]. With ``per_class_dice`` it decides what a class
        absent from an image costs: 1e-6 (default) makes it a constant, so false positives of
        that class go unpunished; 1 penalises them. Fine-tuning the shipped ws2-wsse model for
        20 epochs, 1 lowered Se-S columns reported in a layer without Se from 27.5 % to 10.0 %
        of predicted Se-S columns but made the model call whole layers S2 again (atom F1 0.69
        instead of 0.79), so the default stays 1e-6.
    bce_weight : float
        Weight of a binary cross-entropy term added to the Gomb loss under each image's best
        layer assignment (0: the paper's loss). It charges false positives of classes absent
        from an image, which no Dice with a tiny smoothing does.
    init_weights : str, optional
        Start from the weights of a trained model (a shipped model's name or a run folder)
        instead of random ones: fine-tuning. Its classes must match, and its architecture
        too, or ``filters`` is its filters plus one more width: the trained model is then
        embedded in a network one level deeper (:func:`gombnet.nn.deepen.deepen_into`).
    schedule : {"none", "cosine"}
        Learning-rate schedule over the epochs. With ``time_limit_seconds`` the cosine follows
        whichever runs out first, the epochs or the time, so a run stopped by the limit still
        ends at a small learning rate.
    augment : bool
        Flips, 90-degree turns, contrast, gamma and extra noise on training images.
    seed : int
        Seeds weights, shuffling and augmentation.
    device : str
        "auto" (cuda, then mps, then cpu), or a torch device string.
    max_train_images : int, optional
        Use only the first N training images (quick runs).
    max_val_images : int, optional
        Validate every epoch on only the first N validation images (large datasets: the
        per-image metrics run on the CPU and would otherwise dominate a fast GPU epoch).
    time_limit_seconds : float, optional
        Stop, with everything saved, before an epoch that would end after this much wall time
        [s] in this call (judged by the last epoch's duration); ``resume=True`` continues later.
        Guards a run on borrowed machine time against an epoch count that turns out too large.
    """

    arch: str = "gombnet"
    loss: str = "gomb"
    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    filters: tuple | None = None
    dropout: float = 0.2
    alpha: float = 2.0
    normalized_dice: bool = False
    per_class_dice: bool = False
    dice_smooth: float = DEFAULT_SMOOTH
    bce_weight: float = 0.0
    init_weights: str | None = None
    schedule: str = "none"
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    max_train_images: int | None = None
    max_val_images: int | None = None
    time_limit_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        check(self.arch in ARCHITECTURES, f"unknown architecture {self.arch!r}; choose {', '.join(ARCHITECTURES)}")
        check(self.loss in LOSSES, f"unknown loss {self.loss!r}; choose {', '.join(LOSSES)}")
        check(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        check(0 < self.lr < 1, f"learning rate must be in (0, 1), got {self.lr}")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
        check(0 < self.dice_smooth <= 100, f"dice smoothing must be in (0, 100] pixels, got {self.dice_smooth}")
        check(0 <= self.bce_weight <= 100, f"BCE weight must be in [0, 100], got {self.bce_weight}")
        check(self.bce_weight == 0 or self.loss == "gomb", "a BCE weight applies to the gomb loss only")
        check(self.filters is not None and len(self.filters) >= 2 and all(int(f) > 0 for f in self.filters),
              f"filters must be >= 2 positive widths, got {self.filters}")
        check(self.max_train_images is None or self.max_train_images >= 1,
              f"max_train_images must be >= 1, got {self.max_train_images}")
        check(self.max_val_images is None or self.max_val_images >= 1,
              f"max_val_images must be >= 1, got {self.max_val_images}")
        check(self.time_limit_seconds is None or self.time_limit_seconds > 0,
              f"time limit must be > 0 s, got {self.time_limit_seconds}")


def init_filters(source: str) -> tuple:
    """Encoder widths of a trained model (shipped name or run folder), read from its config."""
    from .checkpoint import read_config, resolve_model_files

    return tuple(int(f) for f in read_config(resolve_model_files(source)[1])["architecture"]["filters"])


def with_filters(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its filters filled in when not given: the ``init_weights`` model's own
    (fine-tuning keeps the architecture unless asked to deepen), else :data:`DEFAULT_FILTERS`."""
    if cfg.filters is not None:
        return cfg
    return replace(cfg, filters=init_filters(cfg.init_weights) if cfg.init_weights else DEFAULT_FILTERS)


def pick_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GombnetError(f"unknown device {name!r}") from None
    check(device.type != "cuda" or torch.cuda.is_available(), "device cuda requested but no CUDA GPU is available")
    return device


def make_network(cfg: TrainConfig, n_layers: int, n_classes: int) -> GombNet:
    """Gomb-Net (one branch per layer) or U-Net (one branch with all channels)."""
    # weight init draws from torch's global generator: fork it so the run seed decides the
    # initial weights without touching the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.arch == "gombnet":
            return GombNet(n_layers=n_layers, classes_per_layer=n_classes, filters=tuple(cfg.filters),
                           dropout=cfg.dropout)
        return GombNet(n_layers=1, classes_per_layer=n_layers * n_classes, filters=tuple(cfg.filters),
                       dropout=cfg.dropout)


def _init_from(model: GombNet, source: str, n_layers: int, class_names: list, sample_images) -> None:
    """Copy the weights of a trained model (name or run folder) into ``model`` (fine-tuning).

    If ``model`` has one level more than the trained model, the trained model is embedded in
    it (:func:`gombnet.nn.deepen.deepen_into`; ``sample_images()`` gives the normalised images
    for the new level's batch-norm statistics). A model with fewer layers (e.g. a monolayer
    model from a bilayer one with the same classes) takes the shared encoder and the first
    ``n_layers`` decoders; the branches are interchangeable, as the Gomb loss trains them.
    """
    from .checkpoint import load_model
    from .deepen import deepen_into

    src = load_model(source)  # float32 whatever the stored dtype (load_state converts)
    cfg = src.gombnet_config
    check(list(cfg["class_names"]) == list(class_names) and 1 <= n_layers <= int(cfg["n_layers"]),
          f"--init {source}: its classes {cfg['class_names']} x {cfg['n_layers']} layers do not match the "
          f"data's {class_names} x {n_layers} layers")
    theirs_filters, own_filters = list(src.config["filters"]), list(model.config["filters"])
    if own_filters[:-1] == theirs_filters and len(src.decoders) == len(model.decoders):
        deepen_into(model, src, sample_images())
        return
    own, theirs = model.state_dict(), src.state_dict()
    if n_layers < int(cfg["n_layers"]):  # the surplus decoders' weights are not needed
        theirs = {k: v for k, v in theirs.items() if k in own}
    check(set(own) == set(theirs) and all(own[k].shape == theirs[k].shape for k in own),
          f"--init {source}: its architecture ({cfg['architecture']}) differs from this run's; "
          f"use the same --arch and --filters ({','.join(map(str, theirs_filters))}), or these filters plus "
          f"one more width to deepen it")
    model.load_state_dict(theirs)


def _loss_fn(cfg: TrainConfig, n_layers: int):
    if cfg.loss == "gomb":
        return make_loss("gomb", n_layers, alpha=cfg.alpha, normalized=cfg.normalized_dice,
                         per_class=cfg.per_class_dice, smooth=cfg.dice_smooth, bce_weight=cfg.bce_weight)
    if cfg.loss == "dice":
        return make_loss("dice", n_layers, normalized=cfg.normalized_dice, per_class=cfg.per_class_dice,
                         smooth=cfg.dice_smooth)
    return make_loss("bce", n_layers)


@torch.no_grad()
def predict_probabilities(model, images, *, batch_size: int = 8, device=None) -> np.ndarray:
    """Sigmoid probabilities (N, C, H, W) float32 for images (N, H, W), normalised as in training."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(normalize_batch(images[start:start + batch_size])[:, None]).to(device)
        with _autocast(device):
            out.append(torch.sigmoid(model(x).float()).cpu().numpy())
    return np.concatenate(out)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def validate(model, dataset: Dataset, indices, loss_fn, *, batch_size: int, device) -> dict:
    """Validation loss and pixel metrics (one layer assignment per image, by Dice)."""
    from ..metrics import best_layer_assignment, permute_layers, pixel_metrics

    model.eval()
    losses, scores = [], {"miou": [], "dice": [], "pixel_accuracy": []}
    for start in range(0, len(indices), batch_size):
        idx = np.sort(indices[start:start + batch_size])
        images = normalize_batch(dataset.images[idx])
        masks = np.asarray(dataset.masks[idx])
        with torch.no_grad():
            x = torch.from_numpy(images[:, None]).to(device)
            with _autocast(device):
                logits = model(x)
            losses.append(float(loss_fn(logits.float(), torch.from_numpy(masks.astype(np.float32)).to(device))))
            probs = torch.sigmoid(logits.float()).cpu().numpy()
        for p, t in zip(probs > 0.5, masks.astype(bool)):
            perm = best_layer_assignment(p, t, dataset.n_layers)
            m = pixel_metrics(permute_layers(p, perm, dataset.n_layers), t, dataset.n_layers,
                              dataset.class_names)
            scores["miou"].append(m["mean_iou"])
            scores["dice"].append(m["mean_dice"])
            scores["pixel_accuracy"].append(m["pixel_accuracy"])
    return {"val_loss": float(np.mean(losses)),
            **{f"val_{k}": float(np.nanmean(v)) for k, v in scores.items()}}


def _training_pixel_size(dataset: Dataset, indices) -> float:
    px = dataset.params.get("pixel_size_angstrom")
    check(px is not None, f"{dataset.path}: dataset has no params/pixel_size_angstrom")
    return float(np.median(px[indices]))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Adam state as flat tensors (safetensors) plus JSON-able scalars."""
    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        scalars["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars["state"][str(pid)][k] = float(v)
    return tensors, scalars


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, scalars: dict) -> None:
    state = {}
    for pid, st in scalars["state"].items():
        entry = {k: torch.tensor(v) for k, v in st.items()}
        for name, t in tensors.items():
            p, k = name.split(".", 1)
            if p == pid:
                entry[k] = t
        state[int(pid)] = entry
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in METRIC_FIELDS})
    write_text_atomic(path, buf.getvalue(), overwrite=True)


def _lr_at(cfg: TrainConfig, epoch: int, seconds_spent: float = 0.0) -> float:
    """Learning rate of ``epoch`` (0-based) after ``seconds_spent`` [s] of this call."""
    if cfg.schedule == "cosine":
        progress = epoch / cfg.epochs
        if cfg.time_limit_seconds:  # a GPU shared with other runs may be slower than planned
            progress = max(progress, min(1.0, seconds_spent / cfg.time_limit_seconds))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def train(data: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig | None = None, *,
          resume: bool = False, overwrite: bool = False, progress: bool = False,
          log=None) -> dict:
    """Train a model on a dataset file and write a run folder.

    Parameters
    ----------
    data : path-like
        HDF5 dataset written by ``gombnet simulate``.
    out : path-like
        Run folder.
    cfg : TrainConfig
    resume : bool
        Continue an interrupted run in ``out`` (the config of the run is used).
    overwrite : bool
        Start afresh in an existing run folder.
    progress : bool
        Show a progress bar with the running loss.
    log : callable, optional
        Called with one line of text per epoch.

    Returns
    -------
    dict
        The final config (including best metrics).
    """
    cfg = cfg or TrainConfig()
    out = Path(out)
    state_path = out / "state.json"
    if resume:
        check(state_path.is_file(), f"{out}: nothing to resume (no state.json); start without --resume")
        state = json.loads(state_path.read_text())
        saved = state["train_config"]
        saved["filters"] = tuple(saved["filters"])
        # the time limit belongs to this call, not to the interrupted one
        cfg = TrainConfig(**{**saved, "epochs": max(cfg.epochs, saved["epochs"]),
                             "time_limit_seconds": cfg.time_limit_seconds})
    elif out.exists() and any(out.iterdir()):
        check(overwrite, f"{out} already holds a run; pass --resume to continue it or --overwrite to start again")
        for name in ("model.safetensors", "config.json", "metrics.csv", "last.safetensors",
                     "optimizer.safetensors", "state.json"):
            (out / name).unlink(missing_ok=True)
    cfg = with_filters(cfg)
    cfg.validate()
    dataset = read_dataset(data)
    n_layers, class_names = dataset.n_layers, dataset.class_names
    train_idx, val_idx = dataset.indices("train"), dataset.indices("val")
    if cfg.max_train_images:
        train_idx = train_idx[:cfg.max_train_images]
    check(len(train_idx) > 0, f"{data}: no training images in the split")
    check(cfg.batch_size <= len(train_idx),
          f"batch size {cfg.batch_size} is larger than the {len(train_idx)} training images")
    if len(val_idx) == 0:
        val_idx = train_idx[: max(1, len(train_idx) // 5)]
    if cfg.max_val_images:
        val_idx = val_idx[:cfg.max_val_images]
    size = dataset.images.shape[-1]
    device = pick_device(cfg.device)
    model = make_network(cfg, n_layers, len(class_names))
    if cfg.init_weights and not resume:
        # batch-norm statistics for a new level: up to 64 training images, as the network sees them
        _init_from(model, cfg.init_weights, n_layers, class_names,
                   lambda: normalize_batch(dataset.images[np.sort(train_idx[:64])]))
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = _loss_fn(cfg, n_layers)

    aug_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    shuffle = torch.Generator().manual_seed(cfg.seed)
    rows, start_epoch, best, wall_before, best_metrics = [], 0, -np.inf, 0.0, None
    if resume:
        load_state(model, out / "last.safetensors")
        opt_tensors = load_file(str(out / "optimizer.safetensors"))
        _restore_optimizer(opt, {k: v for k, v in opt_tensors.items() if not k.startswith("rng.")},
                           state["optimizer"])
        shuffle.set_state(opt_tensors["rng.shuffle"])
        aug_rng.bit_generator.state = state["aug_rng"]
        start_epoch, best = state["epoch"] + 1, state["best_metric"]
        rows, wall_before = state["rows"], state["wall_seconds"]
        if (out / "config.json").is_file():
            best_metrics = json.loads((out / "config.json").read_text()).get("metrics")
    out.mkdir(parents=True, exist_ok=True)

    config = {
        "gombnet_version": __version__,
        "n_layers": n_layers,
        "class_names": class_names,
        "pixel_size_angstrom": _training_pixel_size(dataset, train_idx),
        "tile_px": int(size),
        "normalization": {"method": "percentile", "low_percentile": 0.5, "high_percentile": 99.5},
        "data": {"path": str(Path(data).resolve()), "sha256": file_sha256(data),
                 "preset": dataset.attrs.get("preset"), "n_images": int(len(dataset.split)),
                 "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                 "seed": dataset.attrs.get("seed")},
        "training": {**asdict(cfg), "device": str(device)},
    }
    if best_metrics:
        config["metrics"] = best_metrics
    loader = TrainingBatches(dataset.images, dataset.masks, train_idx, cfg.batch_size, shuffle)
    augmentation = Augmentation() if cfg.augment else None
    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                       TimeRemainingColumn())
        bar.start()
    t_run = time.perf_counter()
    # dropout draws from torch's global generator: fork it and seed it per epoch, so a run
    # is reproducible and a resumed run continues exactly as the uninterrupted one would
    rng_fork = torch.random.fork_rng(devices=[])
    rng_fork.__enter__()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, 3, epoch]).generate_state(1)[0]))
            lr = _lr_at(cfg, epoch, time.perf_counter() - t_run)
            for g in opt.param_groups:
                g["lr"] = lr
            model.train()
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(loader), info="") if bar else None
            t0, total, count = time.perf_counter(), 0.0, 0
            for step, (x, y) in enumerate(loader):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True).float()
                if augmentation is not None:
                    x, y = augment_batch(x, y, augmentation, aug_rng)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(device):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                if not torch.isfinite(loss):
                    raise GombnetError(
                        f"loss became {float(loss.detach())} at epoch {epoch + 1} step {step + 1}; "
                        f"the last good checkpoint is kept in {out} (try a lower --lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(x)
                count += len(x)
                if bar:
                    bar.update(task, advance=1, info=f"loss {total / count:.4f}")
            train_seconds = time.perf_counter() - t0
            val = validate(model, dataset, val_idx, loss_fn, batch_size=max(cfg.batch_size, 4), device=device)
            row = {"epoch": epoch + 1, "train_loss": total / count, **val, "lr": lr,
                   "epoch_seconds": time.perf_counter() - t0, "images_per_second": count / train_seconds}
            rows.append(row)
            if bar:
                bar.update(task, info=f"loss {row['train_loss']:.4f}  val mIoU {val['val_miou']:.3f}")
            if log:
                log(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}, val loss "
                    f"{val['val_loss']:.4f}, val mIoU {val['val_miou']:.3f}, val Dice {val['val_dice']:.3f}, "
                    f"{row['images_per_second']:.1f} images/s")
            improved = val["val_miou"] > best
            if improved:
                best = val["val_miou"]
                config["metrics"] = {"best_epoch": epoch + 1, **val}
            config["training"]["epochs_done"] = epoch + 1
            wall = wall_before + time.perf_counter() - t_run
            config["training"]["wall_seconds"] = round(wall, 2)
            if improved:
                save_model(model, out, config)
            else:  # keep the best weights, record the progress
                config["architecture"] = {"name": type(model).__name__, **model.config}
                write_text_atomic(out / "config.json", dumps(config), overwrite=True)
            _write_metrics(out / "metrics.csv", rows)
            save_weights(model, out / "last.safetensors")
            opt_tensors, opt_scalars = _optimizer_tensors(opt)
            opt_tensors["rng.shuffle"] = shuffle.get_state()
            with atomic_path(out / "optimizer.safetensors", overwrite=True) as tmp:
                save_file(opt_tensors, str(tmp))
            write_text_atomic(state_path, json.dumps({
                "epoch": epoch, "best_metric": best, "rows": rows, "optimizer": opt_scalars,
                "aug_rng": aug_rng.bit_generator.state, "train_config": asdict(cfg),
                "wall_seconds": wall}), overwrite=True)
            spent = time.perf_counter() - t_run
            if cfg.time_limit_seconds and spent + row["epoch_seconds"] > cfg.time_limit_seconds \
                    and epoch + 1 < cfg.epochs:
                if log:
                    log(f"time limit of {cfg.time_limit_seconds:.0f} s would pass during the next epoch: stopped "
                        f"after epoch {epoch + 1}/{cfg.epochs}; everything is saved, continue with --resume")
                break
    finally:
        rng_fork.__exit__(None, None, None)
        if bar:
            bar.stop()
    return json.loads((out / "config.json").read_text())

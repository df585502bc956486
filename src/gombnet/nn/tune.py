"""Hyperparameter search for training: Optuna, TPE sampling, Hyperband pruning.

Searches what the Gomb-Net authors searched (encoder widths, bottleneck dropout, Adam learning
rate and the false-positive weight ``alpha`` of the Gomb loss) and maximises the validation
mIoU. Every trial is an ordinary training run (:func:`gombnet.nn.train.train`) in
``out/trial_<k>/``; the run is advanced one epoch at a time (``train`` resumes exactly), so
the validation mIoU of each epoch reaches the pruner, which stops unpromising trials early.

``out`` receives

``trials.csv``   one row per finished trial (state, hyperparameters, best val mIoU, epochs, s),
                 rewritten atomically after every trial, so an interrupted search leaves a
                 valid table
``best.json``    the best trial's training settings, for ``gombnet train --config best.json``
``trial_<k>/``   the run folder of trial ``k`` (weights, config, metrics.csv)
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import GombnetError, check
from ..jsonio import dumps
from .train import TrainConfig, pick_device, train

__all__ = ["DEFAULT_FILTERS_CHOICES", "tune"]

DEFAULT_FILTERS_CHOICES = ((16, 32, 64, 128), (32, 64, 128, 256), (16, 32, 64, 128, 256),
                           (32, 64, 128, 256, 512))
TRIAL_FIELDS = ("trial", "state", "filters", "lr", "dropout", "alpha", "best_val_miou", "epochs_run",
                "seconds", "error")
# training settings written to best.json; device and max_train_images are left out on purpose:
# they describe the machine and the quick search, not the model, and would override the
# command line of the final `gombnet train --config best.json`
BEST_KEYS = ("arch", "loss", "epochs", "batch_size", "lr", "filters", "dropout", "alpha",
             "normalized_dice", "schedule", "augment", "seed")
_RUN_FILES = ("model.safetensors", "config.json", "metrics.csv", "last.safetensors",
              "optimizer.safetensors", "state.json")


class _Diverged(Exception):
    """A trial whose loss became NaN/inf: recorded as failed, the search goes on."""


def _check_int(name: str, value, minimum: int) -> int:
    check(isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum,
          f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_range(name: str, value, *, low: float, high: float, low_open: bool, high_open: bool):
    """A (min, max) pair of finite numbers inside the allowed interval, min <= max."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise GombnetError(f"{name} must be a pair (min, max) of numbers, got {value!r}") from None
    check(math.isfinite(lo) and math.isfinite(hi), f"{name} must be finite, got {value!r}")
    check(lo <= hi, f"{name} is inverted: min {lo:g} > max {hi:g}")
    ok_lo = lo > low if low_open else lo >= low
    ok_hi = hi < high if high_open else hi <= high
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    check(ok_lo and ok_hi, f"{name} must lie in {interval}, got ({lo:g}, {hi:g})")
    return lo, hi


def _check_filters(choices) -> list[tuple[int, ...]]:
    try:
        parsed = [tuple(c) for c in choices]
    except TypeError:
        raise GombnetError(f"filters_choices must be a list of width lists, got {choices!r}") from None
    check(len(parsed) > 0, "filters_choices is empty; give at least one list of encoder widths")
    out = []
    for c in parsed:
        check(len(c) >= 2 and all(isinstance(f, numbers.Integral) and not isinstance(f, bool) and f > 0
                                  for f in c),
              f"each filters choice must be >= 2 positive integer widths, got {c!r}")
        c = tuple(int(f) for f in c)
        if c not in out:
            out.append(c)
    return out


def _filters_key(filters) -> str:
    return ",".join(str(f) for f in filters)


def _check_data(data, base: TrainConfig, filters_choices) -> None:
    """Fail before the search on what would make every trial fail."""
    from ..data import read_dataset

    ds = read_dataset(data, in_memory=False)
    try:
        size = min(ds.images.shape[-2:])
        n_train = len(ds.indices("train"))
    finally:
        ds.images.file.close()
    if base.max_train_images:
        n_train = min(n_train, base.max_train_images)
    check(n_train > 0, f"{data}: no training images in the split")
    check(base.batch_size <= n_train,
          f"batch size {base.batch_size} is larger than the {n_train} training images")
    for f in filters_choices:
        need = 2 ** (len(f) - 1)
        check(size >= need, f"filters {_filters_key(f)} need images of at least {need} px; "
                            f"{data} has {size} px")


def _clear_run_folder(folder: Path) -> None:
    """Remove the files a training run writes (nothing else), and the folder if then empty."""
    for name in _RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # holds files that are not ours: keep them
        pass


def _prepare_out(out: Path, overwrite: bool) -> None:
    check(not out.exists() or out.is_dir(), f"{out} is a file, not a folder")
    old = [p for p in (out / "trials.csv", out / "best.json") if p.exists()]
    trial_dirs = sorted(p for p in out.glob("trial_*") if p.is_dir() and p.name[6:].isdigit()) \
        if out.is_dir() else []
    used = [p for p in trial_dirs if any(p.iterdir())]
    if (old or used) and not overwrite:
        raise GombnetError(f"{out} already holds a search ({(old or used)[0].name}); "
                           f"pass --overwrite to start again")
    for p in old:
        p.unlink()
    for p in trial_dirs:
        _clear_run_folder(p)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GombnetError(f"cannot create folder {out}: {exc.strerror}") from None


def _last_val_miou(run: Path) -> float:
    with (run / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    value = float(rows[-1]["val_miou"])
    # no foreground anywhere gives NaN: as bad as it gets for the search
    return value if math.isfinite(value) else 0.0


def _trial_row(t) -> dict:
    import optuna

    attrs = t.user_attrs
    best = t.value if t.state == optuna.trial.TrialState.COMPLETE else attrs.get("best_val_miou")
    return {
        "trial": t.number,
        "state": t.state.name.lower(),
        "filters": t.params.get("filters", ""),
        "lr": t.params.get("lr", ""),
        "dropout": t.params.get("dropout", ""),
        "alpha": t.params.get("alpha", attrs.get("alpha", "")),
        "best_val_miou": "" if best is None else best,
        "epochs_run": attrs.get("epochs_run", 0),
        "seconds": round(attrs.get("seconds", 0.0), 2),
        "error": attrs.get("error", ""),
    }


def _fmt(value, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, numbers.Real) else "-"


def _write_trials(path: Path, study) -> None:
    import optuna

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRIAL_FIELDS, lineterminator="\n")
    writer.writeheader()
    done = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.RUNNING]
    for t in done:
        writer.writerow(_trial_row(t))
    write_text_atomic(path, buf.getvalue(), overwrite=True)


def _best_settings(base: TrainConfig, trial, data, n_trials: int) -> dict:
    cfg = replace(base, filters=tuple(int(f) for f in trial.params["filters"].split(",")),
                  lr=trial.params["lr"], dropout=trial.params["dropout"],
                  alpha=trial.params.get("alpha", base.alpha))
    settings = {k: v for k, v in asdict(cfg).items() if k in BEST_KEYS}
    settings["filters"] = list(cfg.filters)
    # provenance only; `gombnet train --config` ignores "extra"
    settings["extra"] = {"tune": {"trial": trial.number, "val_miou": trial.value,
                                  "epochs_run": trial.user_attrs.get("epochs_run"),
                                  "n_trials": n_trials, "data": str(Path(data).resolve())}}
    return settings


def tune(data: str | os.PathLike, out: str | os.PathLike, *, n_trials: int = 50, epochs: int = 20,
         seed: int = 0, arch: str = "gombnet", loss: str = "gomb", batch_size: int = 8,
         filters_choices=DEFAULT_FILTERS_CHOICES, lr_range=(1e-5, 1e-2), dropout_range=(0.1, 0.5),
         alpha_range=(1.0, 5.0), device: str = "auto", max_train_images: int | None = None,
         timeout_s: float | None = None, overwrite: bool = False, progress: bool = False,
         log=None) -> dict:
    """Search training hyperparameters that maximise the validation mIoU.

    An Optuna study with a seeded TPE sampler and a Hyperband pruner (resource = epochs).
    Each trial samples the encoder widths (from ``filters_choices``), the learning rate
    (log-uniform in ``lr_range``), the bottleneck dropout (uniform in ``dropout_range``) and,
    for the Gomb loss only, its false-positive weight ``alpha`` (uniform in ``alpha_range``);
    trains for up to ``epochs`` epochs in ``out/trial_<k>/`` with the training seed ``seed``
    (the same initialisation for every trial, so trials differ only by their
    hyperparameters) and reports the validation mIoU after each epoch. A trial's value is
    its best validation mIoU (the epoch whose weights the run keeps).

    Parameters
    ----------
    data : path-like
        HDF5 dataset written by ``gombnet simulate`` (its ``val`` split scores the trials).
    out : path-like
        Folder for ``trials.csv``, ``best.json`` and the ``trial_<k>/`` run folders.
    n_trials : int
        Number of trials (>= 1); the authors ran 50.
    epochs : int
        Maximum epochs per trial (>= 1), also Hyperband's maximum resource.
    seed : int
        Seeds the sampler and every trial's training: the same seed gives the same sequence
        of sampled hyperparameters (and, on deterministic hardware, the same results).
    arch, loss : str
        As in :class:`gombnet.nn.train.TrainConfig`; fixed during the search.
    batch_size : int
        Fixed during the search.
    filters_choices : sequence of sequences of int
        Encoder width lists to choose from (each >= 2 positive widths).
    lr_range : (float, float)
        Learning-rate interval, inside (0, 1); sampled on a log scale.
    dropout_range : (float, float)
        Dropout interval, inside [0, 1).
    alpha_range : (float, float)
        Interval of the Gomb loss's false-positive weight, > 0; ignored for other losses.
    device : str
        Torch device of the training ("auto": cuda, then mps, then cpu).
    max_train_images : int, optional
        Train every trial on only the first N training images (quicker search).
    timeout_s : float, optional
        Start no new trial after this many seconds [s].
    overwrite : bool
        Start afresh in a folder that already holds a search (removes its table, best.json
        and the run files of its trial folders).
    progress : bool
        Show the training progress bars.
    log : callable, optional
        Called with one line of text per epoch and per finished trial.

    Returns
    -------
    dict
        ``best_trial``, ``best_value`` (val mIoU), ``best_params`` (filters as a tuple, lr,
        dropout, alpha), ``best_config`` (the content of best.json), ``n_complete``,
        ``n_pruned``, ``n_failed``, ``trials_csv`` and ``best_json`` (paths).

    Raises
    ------
    GombnetError
        Bad parameters or dataset, an existing search in ``out`` without ``overwrite``,
        optuna not installed, or no trial completed.
    """
    n_trials = _check_int("n_trials", n_trials, 1)
    epochs = _check_int("epochs", epochs, 1)
    seed = _check_int("seed", seed, 0)
    choices = _check_filters(filters_choices)
    lr_range = _check_range("lr_range", lr_range, low=0.0, high=1.0, low_open=True, high_open=True)
    dropout_range = _check_range("dropout_range", dropout_range, low=0.0, high=1.0, low_open=False,
                                 high_open=True)
    alpha_range = _check_range("alpha_range", alpha_range, low=0.0, high=math.inf, low_open=True,
                               high_open=True)
    check(timeout_s is None or (isinstance(timeout_s, numbers.Real) and timeout_s > 0),
          f"timeout_s must be > 0 seconds, got {timeout_s!r}")
    base = TrainConfig(arch=arch, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr_range[0],
                       filters=choices[0], dropout=dropout_range[0], seed=seed, device=device,
                       max_train_images=max_train_images)
    base.validate()
    pick_device(device)  # an unavailable device fails now, not in every trial
    _check_data(data, base, choices)
    try:
        import optuna
    except ImportError:
        raise GombnetError("gombnet tune needs optuna: pip install 'gombnet[tune]'") from None
    out = Path(out)
    _prepare_out(out, overwrite)
    trials_csv, best_json = out / "trials.csv", out / "best.json"
    keys = [_filters_key(c) for c in choices]
    say = log or (lambda line: None)

    def objective(trial) -> float:
        params = {"filters": trial.suggest_categorical("filters", keys),
                  "lr": trial.suggest_float("lr", *lr_range, log=True),
                  "dropout": trial.suggest_float("dropout", *dropout_range)}
        if loss == "gomb":
            params["alpha"] = trial.suggest_float("alpha", *alpha_range)
        else:  # alpha has no effect on other losses: keep it out of the search space
            trial.set_user_attr("alpha", base.alpha)
        cfg = replace(base, filters=tuple(int(f) for f in params["filters"].split(",")),
                      lr=params["lr"], dropout=params["dropout"], alpha=params.get("alpha", base.alpha))
        run = out / f"trial_{trial.number}"
        t0, best, done = time.perf_counter(), -math.inf, 0
        try:
            for epoch in range(1, epochs + 1):
                # one epoch per call: train() resumes exactly, so this equals one long run
                # but lets the pruner see every epoch
                try:
                    train(data, run, replace(cfg, epochs=epoch), resume=epoch > 1, overwrite=True,
                          progress=progress)
                except GombnetError as exc:
                    if "loss became" in str(exc):
                        raise _Diverged(str(exc)) from None
                    raise
                done = epoch
                value = _last_val_miou(run)
                best = max(best, value)
                say(f"trial {trial.number} epoch {epoch}/{epochs}: val mIoU {value:.3f}")
                trial.set_user_attr("best_val_miou", best)
                trial.report(value, epoch)
                if epoch < epochs and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        except _Diverged as exc:
            trial.set_user_attr("error", str(exc))
            raise
        finally:
            trial.set_user_attr("epochs_run", done)
            trial.set_user_attr("seconds", time.perf_counter() - t0)
        return best

    def after_trial(study, trial) -> None:
        _write_trials(trials_csv, study)
        row = _trial_row(trial)
        say(f"trial {trial.number} {row['state']}: filters {row['filters']}, lr {_fmt(row['lr'], '.2e')}, "
            f"dropout {_fmt(row['dropout'])}, alpha {_fmt(row['alpha'])}, "
            f"best val mIoU {_fmt(row['best_val_miou'])}, {row['epochs_run']} epochs")
        if trial.state == optuna.trial.TrialState.COMPLETE and study.best_trial.number == trial.number:
            write_text_atomic(best_json, dumps(_best_settings(base, trial, data, n_trials)), overwrite=True)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines replace optuna's
    study = None
    try:
        # Hyperband assigns trials to brackets by hashing the study name: a fixed name keeps
        # a seeded search reproducible
        study = optuna.create_study(
            study_name=f"gombnet-tune-seed{seed}", direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3))
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s, catch=(_Diverged,),
                       callbacks=[after_trial])
    finally:
        optuna.logging.set_verbosity(verbosity)
        if study is not None and study.trials:  # an interrupted search still leaves a complete table
            _write_trials(trials_csv, study)

    states = [t.state for t in study.trials]
    counts = {name: states.count(getattr(optuna.trial.TrialState, name.upper()))
              for name in ("complete", "pruned", "fail")}
    check(counts["complete"] > 0,
          f"no trial completed ({counts['pruned']} pruned, {counts['fail']} failed); see {trials_csv}")
    best = study.best_trial
    best_config = _best_settings(base, best, data, n_trials)
    return {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": {"filters": tuple(best_config["filters"]), "lr": best_config["lr"],
                        "dropout": best_config["dropout"], "alpha": best_config["alpha"]},
        "best_config": best_config,
        "n_complete": counts["complete"],
        "n_pruned": counts["pruned"],
        "n_failed": counts["fail"],
        "trials_csv": str(trials_csv),
        "best_json": str(best_json),
    }

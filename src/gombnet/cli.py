"""The ``gombnet`` command line: parses, calls the Python API, prints.

User mistakes (:class:`gombnet.errors.GombnetError`) print one line ``error: ...`` and exit
with code 2; Ctrl-C exits with 130 and leaves no half-written file (writes are atomic).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import GombnetError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find every atom in HAADF-STEM images of twisted bilayers, per layer and species.")


# options of both `evaluate` and `predict`: how atoms are read from the probability maps
CLASS_WEIGHT_OPTION = typer.Option(
    None, "--class-weight", help="NAME=WEIGHT: weight of a class when choosing the species of a column "
                                 "whose classes share a site (e.g. SSe=1.5 calls more columns Se-S); "
                                 "repeatable; default the model card's.")
LATTICE_LAYERS_OPTION = typer.Option(True, help="Give regions where the network swapped the two layers back "
                                                "to the layer whose lattice orientation they have (bond "
                                                "orientations from 8 degrees of twist, each layer's local "
                                                "lattice rotation below).")
LATTICE_SITES_OPTION = typer.Option(True, help="Then fit each layer's honeycomb and give a single atom that sits on "
                                                "another layer's honeycomb, far from its own, to that layer (or drop "
                                                "it where that layer already has it); of two atoms of one layer "
                                                "closer than 0.6 bond lengths, drop the one off the lattice. On large "
                                                "fields, fitted in cells; a cell the network swapped as a "
                                                "whole is named after its neighbours.")
REFINE_OPTION = typer.Option(False, help="Move each atom by the model's position refiner "
                                         "(the shipped graphene has one): a few per cent lower position error, "
                                         "but bond lengths of a distorted lattice evened out (README).")


def _layers(n: int) -> str:
    return f"{n} layer{'s' if n != 1 else ''}"


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn user mistakes into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GombnetError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; nothing half-written was kept", 130)

    return wrapper


@app.command()
@user_errors
def presets(details: bool = typer.Option(False, "--details", help="Print each preset's TOML.")):
    """List the built-in simulation presets."""
    from .simulation.presets import list_presets, load_preset

    names = list_presets()
    width = max(len(n) for n in names)
    for name in names:
        p = load_preset(name)
        typer.echo(f"{name:{width}s} {_layers(p.n_layers)}, classes {', '.join(p.class_names)}, "
                   f"{p.image_size_px}x{p.image_size_px} px")
        if details:
            typer.echo(p.to_toml())


@app.command()
@user_errors
def simulate(
    preset: str = typer.Option("graphene", help="Preset name (see `gombnet presets`) or a .toml file."),
    n: int = typer.Option(2000, "--n", help="Number of images."),
    seed: int = typer.Option(0, help="Seed of the whole dataset."),
    out: Optional[Path] = typer.Option(None, help="Output HDF5 dataset file."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores)."),
    size: Optional[int] = typer.Option(None, help="Override the preset image size [px]."),
    set_: List[str] = typer.Option([], "--set", help="Change one preset key, SECTION.KEY=VALUE with a TOML value, "
                                                     "e.g. --set probe.energy_kev=80 --set 'noise.dose_counts_per_px=[100, "
                                                     "1000]'; repeatable."),
    preview: Optional[Path] = typer.Option(None, help="Write a PNG preview of a few samples."),
    preview_samples: int = typer.Option(3, help="Samples in the preview."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Simulate a training set of HAADF-STEM images with per-layer atom masks.

    With --preview only, writes the preview PNG and no dataset.
    """
    import time

    from .simulation.presets import with_overrides

    p = with_overrides(preset, set_)
    if out is None and preview is None:
        _fail("give --out for a dataset file and/or --preview for a PNG preview")
    if preview is not None:
        from .report.preview import save_preview

        save_preview(p, preview, n_samples=preview_samples, seed=seed, overwrite=overwrite)
        typer.echo(f"preview of {p.name} written to {preview}")
    if out is not None:
        from .data import write_dataset

        t0 = time.perf_counter()
        write_dataset(out, p, n, seed=seed, workers=workers, image_size_px=size, overwrite=overwrite,
                      progress=sys.stderr.isatty())
        dt = time.perf_counter() - t0
        typer.echo(f"{n} {p.name} images written to {out} in {dt:.1f} s ({n / dt:.0f} images/s)")


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="HDF5 dataset from `gombnet simulate`."),
    out: Path = typer.Option(..., help="Run folder for weights, config and metrics."),
    arch: str = typer.Option("gombnet", help="gombnet (one decoder per layer) or unet (single decoder)."),
    loss: str = typer.Option("gomb", help="gomb, dice or bce."),
    epochs: int = typer.Option(50),
    batch_size: int = typer.Option(4),
    lr: float = typer.Option(1e-4, help="Adam learning rate."),
    filters: Optional[str] = typer.Option(None, help="Encoder widths, comma separated [default: the --init "
                                                     "model's, else 32,64,128,256]."),
    dropout: float = typer.Option(0.2, help="Bottleneck dropout."),
    alpha: float = typer.Option(2.0, help="False-positive weight of the Dice in the Gomb loss."),
    normalized_dice: bool = typer.Option(False, help="Dice normalised so a perfect prediction gives loss 0."),
    per_class_dice: bool = typer.Option(False, help="One Dice per class inside each layer (rare classes weigh "
                                                    "as much as common ones) instead of one per layer."),
    dice_smooth: float = typer.Option(1e-6, help="Dice smoothing [px]; with --per-class-dice, 1 penalises "
                                                 "false positives of a class absent from an image."),
    bce_weight: float = typer.Option(0.0, help="Add this weight times a cross-entropy under the best layer "
                                               "assignment to the Gomb loss (charges every false positive)."),
    init: Optional[str] = typer.Option(None, help="Start from this trained model's weights (shipped name or run "
                                                  "folder): fine-tuning. Same --arch and --filters (its "
                                                  "own by default), or its filters plus one more width "
                                                  "to deepen it by one level (the new level starts as the "
                                                  "identity)."),
    schedule: str = typer.Option("none", help="Learning-rate schedule: none or cosine."),
    augment: bool = typer.Option(True, help="Flips, turns, contrast and noise augmentation."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    max_train_images: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    max_val_images: Optional[int] = typer.Option(None, help="Validate on only the first N validation images."),
    time_limit_minutes: Optional[float] = typer.Option(
        None, help="Stop after the epoch that passes this wall time [min]; --resume continues."),
    config: Optional[Path] = typer.Option(None, help="JSON of training settings (e.g. best.json of `gombnet tune`); "
                                                     "options given on the command line win over it."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, help="Start afresh in an existing run folder."),
):
    """Train a Gomb-Net (or U-Net baseline) on a simulated dataset."""
    from .nn.train import TrainConfig, train as run_training

    try:
        widths = None if filters is None else tuple(int(f) for f in filters.split(","))
    except ValueError:
        _fail(f"--filters must be comma-separated integers, got {filters!r}")
    settings = dict(arch=arch, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, filters=widths,
                    dropout=dropout, alpha=alpha, normalized_dice=normalized_dice,
                    per_class_dice=per_class_dice, dice_smooth=dice_smooth, bce_weight=bce_weight,
                    init_weights=init, schedule=schedule,
                    augment=augment, seed=seed, device=device, max_train_images=max_train_images,
                    max_val_images=max_val_images,
                    time_limit_seconds=None if time_limit_minutes is None else 60.0 * time_limit_minutes)
    if config is not None:
        if not config.is_file():
            _fail(f"{config}: no such config file")
        try:
            loaded = json.loads(config.read_text())
        except json.JSONDecodeError:
            _fail(f"{config}: not valid JSON")
        loaded = loaded.get("training", loaded)
        unknown = sorted(set(loaded) - set(settings) - {"extra", "device", "epochs_done", "wall_seconds"})
        if unknown:
            _fail(f"{config}: unknown training settings {', '.join(unknown)}")
        # compared by name: typer vendors click in recent releases, older ones use click's enum
        # settings named otherwise on the command line
        option_of = {"time_limit_seconds": "time_limit_minutes", "init_weights": "init"}
        given = {k for k in settings
                 if getattr(ctx.get_parameter_source(option_of.get(k, k)), "name", "") == "COMMANDLINE"}
        settings.update({k: (tuple(v) if k == "filters" else v) for k, v in loaded.items()
                         if k in settings and k not in given})
    cfg = TrainConfig(**settings)
    final = run_training(data, out, cfg, resume=resume, overwrite=overwrite, progress=sys.stderr.isatty(),
                         log=typer.echo)
    m = final.get("metrics", {})
    typer.echo(f"best model (epoch {m.get('best_epoch')}, val mIoU {m.get('val_miou', float('nan')):.3f}) "
               f"saved in {out}")


@app.command()
@user_errors
def tune(
    data: Path = typer.Option(..., help="HDF5 dataset from `gombnet simulate`."),
    out: Path = typer.Option(..., help="Folder for the trials, trials.csv and best.json."),
    n_trials: int = typer.Option(50, help="Number of Optuna trials."),
    epochs: int = typer.Option(20, help="Epochs per trial (bad trials are pruned early)."),
    arch: str = typer.Option("gombnet"),
    loss: str = typer.Option("gomb"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    max_train_images: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    timeout: Optional[float] = typer.Option(None, help="Stop starting new trials after this many seconds."),
    overwrite: bool = typer.Option(False, help="Start afresh in an existing search folder."),
):
    """Hyperparameter search (filters, dropout, lr, alpha) with Optuna (install the 'tune' extra)."""
    from .nn.tune import tune as run_tune

    result = run_tune(data, out, n_trials=n_trials, epochs=epochs, seed=seed, arch=arch, loss=loss,
                      batch_size=batch_size, device=device, max_train_images=max_train_images,
                      timeout_s=timeout, overwrite=overwrite, progress=sys.stderr.isatty(), log=typer.echo)
    typer.echo(f"best trial: {json.dumps(result.get('best_params'))} (val mIoU {result.get('best_value')}); "
               f"train with it: gombnet train --config {out / 'best.json'} ...")


@app.command()
@user_errors
def evaluate(
    model: str = typer.Option(..., help="Run folder, model file or shipped model name."),
    data: Path = typer.Option(..., help="HDF5 dataset with ground truth."),
    split: str = typer.Option("test", help="train, val, test or all."),
    radius_angstrom: float = typer.Option(0.5, help="Matching radius for atoms [Å]."),
    threshold: float = typer.Option(0.5, help="Probability threshold for masks and atoms."),
    max_images: Optional[int] = typer.Option(None, help="Evaluate only the first N images of the split."),
    by: Optional[str] = typer.Option(None, help="Also score groups of images by this simulation parameter "
                                                "(e.g. dose_counts_per_px, twist_deg)."),
    groups: int = typer.Option(4, help="Number of equal-size groups for --by."),
    workers: int = typer.Option(1, help="Processes scoring the images (the network runs in the main one)."),
    device: Optional[str] = typer.Option(None, help="torch device for the network: auto, cpu, cuda, mps "
                                                    "(default cpu)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every number to a JSON file."),
    class_weight: Optional[List[str]] = CLASS_WEIGHT_OPTION,
    lattice_layers: bool = LATTICE_LAYERS_OPTION,
    lattice_sites: bool = LATTICE_SITES_OPTION,
    tta: str = typer.Option("none", help="Test-time augmentation: none, flips (4 passes per image) or d4 (8)."),
    refine: bool = REFINE_OPTION,
    overwrite: bool = typer.Option(False, help="Replace an existing JSON file."),
):
    """Pixel and atom metrics of a model on simulated data with known atoms."""
    from .atomic import check_output_path, write_text_atomic
    from .evaluate import evaluate_model, format_groups
    from .jsonio import dumps
    from .metrics import format_table

    if tta not in TTA_CHOICES:
        _fail(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
    if json_out is not None:
        check_output_path(json_out, overwrite)
    results = evaluate_model(model, data, split=split, radius_angstrom=radius_angstrom,
                             threshold=threshold, max_images=max_images, group_by=by, n_groups=groups,
                             workers=workers, device=device, progress=sys.stderr.isatty(),
                             class_weights=_class_weights(class_weight), lattice_layers=lattice_layers,
                             lattice_sites=lattice_sites, tta=TTA_CHOICES[tta], refine=refine)
    typer.echo(format_table(results))
    if "layer_check" in results:
        c = results["layer_check"]
        typer.echo(f"Lattice check of the layers: judged {c['n_applied']} of {c['n_images']} images, moved "
                   f"{c['n_moved']} atoms in {c['n_changed']} (--no-lattice-layers to score without it)")
    if "site_check" in results:
        c = results["site_check"]
        swapped = f"; relabelled {c['n_cells_swapped']} cells swapped as a whole" if c["n_cells_swapped"] else ""
        typer.echo(f"Site check: honeycombs fitted in {c['n_fitted']} of {c['n_images']} images, moved {c['n_moved']} "
                   f"atoms to another layer, dropped {c['n_dropped']} copies and {c['n_too_close']} atoms too close "
                   f"to another of their layer{swapped} (--no-lattice-sites to score without it)")
    if by is not None:
        typer.echo(format_groups(results["groups"]))
    if json_out is not None:
        write_text_atomic(json_out, dumps(results), overwrite=overwrite)
        typer.echo(f"all numbers written to {json_out}")


TTA_CHOICES = {"none": None, "flips": ("identity", "flip_h", "flip_v", "rot90"), "d4": "d4"}


def _class_weights(items: Optional[List[str]]) -> Optional[dict]:
    """--class-weight NAME=WEIGHT options as a dict (None when none given)."""
    if not items:
        return None
    weights = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            _fail(f"--class-weight must be NAME=WEIGHT, got {item!r}")
        if not (weight > 0 and weight < float("inf")):
            _fail(f"--class-weight {item!r}: the weight must be a positive number")
        weights[name.strip()] = weight
    return weights


def _result_names(files: List[Path]) -> list[str]:
    """One folder name per input file: its stem, or its full name where stems collide."""
    stems = [f.stem for f in files]
    return [f.stem if stems.count(f.stem) == 1 else f.name.replace(".", "_") for f in files]


def _naming(item, message: str) -> str:
    """``message`` led by ``item`` unless it already names that file."""
    return message if Path(str(item)).name in message else f"{item}: {message}"


def _run_batch(items, work, what: str) -> None:
    """Run ``work(item)`` for each item; report failures at the end, exit 2 if any."""
    failures = []
    progress = None
    if len(items) > 1 and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True)
        task = progress.add_task(what, total=len(items))
        progress.start()
    try:
        for item in items:
            try:
                work(item)
            except GombnetError as exc:
                failures.append((item, str(exc)))
            if progress:
                progress.advance(task)
    finally:
        if progress:
            progress.stop()
    if len(items) == 1 and failures:
        _fail(_naming(*failures[0]))
    if failures:
        typer.echo(f"error: {len(failures)} of {len(items)} failed:", err=True)
        for item, message in failures:
            typer.echo(f"  {item}: {message}", err=True)
        raise typer.Exit(2)


@app.command()
@user_errors
def predict(
    files: Optional[List[Path]] = typer.Argument(
        None, help="Microscope files (.emd, .dm3/.dm4, .ser, .tif, .mrc, .npy/.npz, .png), or folders of them."),
    model: str = typer.Option(..., help="Shipped model name (see `gombnet models`), run folder or model file."),
    out: Path = typer.Option(Path("results"), help="Folder that receives one result folder per file."),
    pixel_size: Optional[float] = typer.Option(None, help="Pixel size [Å/px], overriding the file's calibration."),
    frame: str = typer.Option("sum", help="Frame stacks: 'sum' or a frame index."),
    align_frames: bool = typer.Option(False, help="Align frames (rigid) before summing."),
    threshold: float = typer.Option(0.5, help="Probability threshold for atoms."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, flips or d4 (adds an uncertainty map)."),
    device: Optional[str] = typer.Option(None, help="torch device (default cpu)."),
    analyze: bool = typer.Option(False, "--analyze", help="Also run `gombnet analyze` on each result."),
    class_weight: Optional[List[str]] = CLASS_WEIGHT_OPTION,
    lattice_layers: bool = LATTICE_LAYERS_OPTION,
    lattice_sites: bool = LATTICE_SITES_OPTION,
    refine: bool = REFINE_OPTION,
    overwrite: bool = typer.Option(False, help="Replace existing result folders."),
    watch: Optional[Path] = typer.Option(
        None, help="Instead of FILES: process every image that appears in this folder, as soon as it is "
                   "completely written (during an experiment); Ctrl+C stops. Files that already have "
                   "results in --out are skipped."),
    interval: float = typer.Option(1.0, help="With --watch: seconds between looks at the folder."),
    idle_exit: Optional[float] = typer.Option(
        None, help="With --watch: stop after this many seconds without a new file (default: until Ctrl+C)."),
):
    """Find the atoms of every layer in microscope images; one result folder per file."""
    import time

    from .inference.io import read_image
    from .inference.predict import predict as run_predict
    from .nn.checkpoint import load_model
    from .report.outputs import write_prediction

    if (watch is None) == (not files):
        _fail("give image files or --watch FOLDER" + (", not both" if files else ""))
    if tta not in TTA_CHOICES:
        _fail(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
    try:
        frame_value = frame if frame == "sum" else int(frame)
    except ValueError:
        _fail(f"--frame must be 'sum' or an integer, got {frame!r}")
    weights = _class_weights(class_weight)
    loaded = load_model(model, device=device or "cpu")

    def work(path: Path, name: str) -> None:
        folder = out / name
        if folder.exists() and not overwrite:
            raise GombnetError(f"{folder} exists; pass --overwrite to replace it")
        t0 = time.perf_counter()
        image, px, meta = read_image(path, pixel_size_angstrom=pixel_size, frame=frame_value,
                                     align_frames=align_frames)
        try:
            result = run_predict(image, loaded, pixel_size_angstrom=px, threshold=threshold,
                                 tta=TTA_CHOICES[tta], device=device, class_weights=weights,
                                 lattice_layers=lattice_layers, lattice_sites=lattice_sites, refine=refine)
        except GombnetError as exc:
            raise GombnetError(f"{path.name}: {exc}") from None
        result.timings["total_with_reading"] = time.perf_counter() - t0
        write_prediction(folder, image, result, source=meta, model_name=model, overwrite=overwrite)
        counts = "; ".join(f"{layer}: " + ", ".join(f"{n} {s}" for s, n in c.items())
                           for layer, c in result.counts().items())
        typer.echo(f"{path.name}: {counts} ({px:.4f} Å/px, {result.timings['total_with_reading']:.2f} s) -> {folder}")
        if analyze:
            from .analysis.report import analyze_folder

            typer.echo(f"  {analyze_folder(folder, overwrite=True)['headline']}")

    if watch is None:
        files = _expand_folders(files)
        names = dict(zip(files, _result_names(files)))
        _run_batch(list(files), lambda path: work(path, names[path]), "predicting")
    else:
        _watch(watch, out, work, interval_s=interval, idle_exit_s=idle_exit)


def _expand_folders(paths: List[Path]) -> List[Path]:
    """Replace each folder among ``paths`` by the microscope images in it (not its subfolders)."""
    from .inference.watch import image_files

    files = []
    for path in paths:
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise GombnetError(f"{path}: folder without microscope images")
            files.extend(found)
        else:
            files.append(path)
    return files


def _watch(folder: Path, out: Path, work, *, interval_s: float, idle_exit_s: Optional[float]) -> None:
    """Run ``work(path, result_name)`` on each new image of ``folder``; errors are printed as they come."""
    from .inference.watch import image_files, new_images

    names: dict[Path, str] = {}

    def result_name(path: Path) -> str:
        # the same names as `gombnet predict` on the folder's files of the moment; the folder is
        # listed again only when a file arrives (which may make two stems collide), not per file
        if path not in names:
            files = image_files(folder)
            names.clear()
            names.update(zip(files, _result_names(files)))
        return names.get(path, path.stem)

    images = new_images(folder, interval_s=interval_s, idle_exit_s=idle_exit_s,
                        is_done=lambda path: (out / result_name(path)).exists())
    done, failed = 0, 0
    typer.echo(f"watching {folder} for new images (Ctrl+C to stop); results -> {out}")
    try:
        for path in images:
            try:
                work(path, result_name(path))
                done += 1
            except GombnetError as exc:
                failed += 1
                typer.echo(f"error: {_naming(path.name, str(exc))}", err=True)
    except KeyboardInterrupt:
        pass  # the normal way to stop watching; results are written atomically, nothing is half-written
    typer.echo(f"stopped watching {folder}: {done} new result(s)" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(2)


@app.command()
@user_errors
def analyze(
    folders: List[Path] = typer.Argument(..., help="Result folders written by `gombnet predict`."),
    vegard: Optional[Path] = typer.Option(None, help="Also write a Vegard's-law plot across all folders here (PNG)."),
    table: Optional[Path] = typer.Option(None, help="Also write one CSV table across all folders here: a row "
                                                    "per image and layer (atoms, lattice, bonds, Se fraction)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap resampling."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the Se-site statistics."),
    figure_format: Optional[str] = typer.Option(
        None, help="Also save every figure and the overlay as pdf or svg (vector, for papers)."),
    strain_sigma: Optional[float] = typer.Option(
        None, help="Gaussian window of the strain and local-twist maps [Å] (default: 2 lattice constants)."),
    overwrite: bool = typer.Option(False, help="Replace existing analysis files."),
):
    """Bond lengths, lattice and twist, strain and local twist, composition, stacking maps, an HTML report."""
    from .analysis.report import VECTOR_FORMATS, analyze_folder, vegard_across
    from .atomic import check_output_path

    if figure_format not in (None, *VECTOR_FORMATS):
        _fail(f"--figure-format must be one of {', '.join(VECTOR_FORMATS)}, got {figure_format!r}")
    if strain_sigma is not None and not 0.5 <= strain_sigma <= 1000.0:
        _fail(f"--strain-sigma must be from 0.5 to 1000 Å, got {strain_sigma}")
    for path in (vegard, table):  # refuse before a long batch, not after it
        if path is not None:
            check_output_path(path, overwrite)
    results = {}

    def work(folder: Path) -> None:
        results[folder] = analyze_folder(folder, overwrite=overwrite, seed=seed, n_bootstrap=bootstrap,
                                         figure_format=figure_format, strain_sigma_angstrom=strain_sigma)
        typer.echo(f"{folder}: {results[folder]['headline']} -> {folder / 'report.html'}")

    try:
        _run_batch(list(folders), work, "analysing")
    finally:
        if vegard is not None and len(results) > 0:
            vegard_across(list(results.values()), vegard, overwrite=overwrite)
            typer.echo(f"Vegard plot of {len(results)} results written to {vegard}")
        if table is not None and len(results) > 0:
            from .analysis.table import write_results_table

            write_results_table({str(k): v for k, v in results.items()}, table, overwrite=overwrite)
            typer.echo(f"table of {len(results)} results written to {table}")


@app.command()
@user_errors
def models():
    """List the models shipped with gombnet and their model cards."""
    from .nn.checkpoint import WEIGHTS_DIR, list_shipped_models, read_config

    names = list_shipped_models()
    if not names:
        typer.echo("no models are shipped in this installation")
    for name in names:
        card = read_config(WEIGHTS_DIR / f"{name}.json")
        typer.echo(f"{name}: {', '.join(card['class_names'])} x {_layers(int(card['n_layers']))}, "
                   f"{card.get('pixel_size_angstrom', float('nan')):.3f} Å/px")
        for key in ("description", "command"):
            if key in card:
                typer.echo(f"  {key}: {card[key]}")
        if "test_metrics" in card:
            typer.echo(f"  test metrics: {json.dumps(card['test_metrics'])}")
        current = card.get("test_metrics_current")
        if current:
            for key, label in (("plain", ""), ("tta_d4", ", --tta d4")):
                m = current.get(key)
                if m:
                    typer.echo(f"  test metrics with the defaults of {current.get('date', '?')}{label}: mIoU "
                               f"{m['mean_iou']:.3f}, atom F1 {m['atom_f1']:.3f}, RMSE {m['rmse_angstrom']:.3f} Å, "
                               f"wrong layer {100 * m['cross_layer_rate']:.1f} %")
        refiner = card.get("refiner")
        if refiner:
            v = refiner.get("card", {}).get("validation", {})
            gain = (f": position error on validation images {v['before']['rmse_angstrom']} -> "
                    f"{v['after']['rmse_angstrom']} Å RMS" if "before" in v and "after" in v else "")
            typer.echo(f"  position refiner{gain} (--refine to use it)")
        if card.get("site_groups"):
            weights = f", species weights {json.dumps(card['class_weights'])}" if card.get("class_weights") else ""
            typer.echo(f"  classes found together at one site: {json.dumps(card['site_groups'])}{weights} "
                       f"(--class-weight NAME=W to favour one)")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("gombnet-demo"), help="Folder for the demo results."),
    seed: int = typer.Option(0, help="Seed of the simulated images."),
    overwrite: bool = typer.Option(False, help="Replace an existing demo folder."),
):
    """Simulate typical images, find their atoms with the shipped models, analyse, score."""
    from .demo import run_demo

    run_demo(out, seed=seed, overwrite=overwrite, echo=typer.echo)


def main() -> None:  # pragma: no cover - console entry point
    app()

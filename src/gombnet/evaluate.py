"""Evaluate a model on simulated images with known atoms.

For every image ONE assignment of predicted branches to true layers is chosen (the best by
Dice over all channels) and used for every metric - pixel metrics, atom detection,
localisation and species. Atoms are extracted with :func:`gombnet.inference.atoms.find_atoms`,
the same function ``gombnet predict`` uses.
"""

from __future__ import annotations

import copy
import os
import time
from concurrent.futures import Future

import numpy as np
import torch

from .data import read_dataset
from .errors import check
from .inference.atoms import DEFAULT_SITE_GROUPS, find_atoms
from .inference.lattice_sites import check_found_layers
from .inference.predict import atom_settings, inference_network, torch_predict_fn
from .inference.refine import refine_positions
from .inference.tiling import ensemble_predict
from .metrics import aggregate, atom_metrics, best_layer_assignment, permute_found_layers, permute_layers, pixel_metrics
from .nn.checkpoint import load_model
from .nn.dataset import normalize_batch
from .nn.train import pick_device, predict_probabilities


def dopant_class(class_names) -> str | None:
    """The class whose presence per layer is tracked (Se-S columns), if the data has one."""
    return "SSe" if "SSe" in class_names else None


def dopant_sites(class_names) -> list | None:
    """Classes whose columns the tracked dopant replaces: the dopant's site group of
    :data:`~gombnet.inference.atoms.DEFAULT_SITE_GROUPS` (chalcogen columns: S2 and SSe)."""
    dopant = dopant_class(class_names)
    if dopant is None:
        return None
    group = next((g for g in DEFAULT_SITE_GROUPS if dopant in g), (dopant,))
    return [c for c in group if c in class_names]


def evaluate_image(probs: np.ndarray, true_masks: np.ndarray, true_columns: dict, *, n_layers: int,
                   class_names, pixel_size_angstrom: float, radius_angstrom: float = 0.5,
                   threshold: float = 0.5, grouping: dict | None = None,
                   lattice_class: int | None = 0, lattice_sites: bool = True, image: np.ndarray | None = None,
                   refiner=None) -> dict:
    """Pixel and atom metrics of one image.

    Parameters
    ----------
    probs : (C, H, W) float
        Predicted probabilities, branches in the network's order.
    true_masks : (C, H, W) {0, 1}
    true_columns : dict
        ``x_px``, ``y_px``, ``layer``, ``class`` of the true columns.
    pixel_size_angstrom : float
        [Å/px] of this image.
    radius_angstrom : float
        Matching radius [Å]. Atoms and columns closer than this to the image border are
        left out of the atom metrics (a column just outside the frame shows part of its disk).
    grouping : dict, optional
        ``site_groups`` and ``class_weights`` for :func:`~gombnet.inference.atoms.find_atoms`
        (:func:`~gombnet.inference.atoms.site_grouping` of the model), as in ``gombnet predict``.
    lattice_class : int or None
        Class of a layer that forms its lattice, for the lattice-orientation check of the
        layers that ``gombnet predict`` runs (:func:`~gombnet.inference.layers.relabel_found_atoms`);
        None skips it and the site check.
    lattice_sites : bool
        With ``lattice_class``, also give single atoms to the layer whose fitted honeycomb they
        sit on (:func:`~gombnet.inference.lattice_sites.site_check_found_atoms`), as ``gombnet
        predict`` does. The maps follow the moved atoms; the layer order scored is chosen after.
    image : (H, W) float, optional
        The normalised image the network saw; needed with ``refiner``.
    refiner : gombnet.nn.refiner.PositionRefiner, optional
        Move the found atoms as ``gombnet predict`` does
        (:func:`~gombnet.inference.refine.refine_positions`) before they are scored.

    Returns
    -------
    dict with keys ``layer_perm``, ``pixel``, ``atoms``, ``layer_check`` (what the lattice
    check of the layers did, or None), ``site_check`` (what the site check did, or None) and
    ``column_errors``: ``index`` (the true columns scored, those away from the border, as indices
    into ``true_columns``) and ``error_px`` (distance to each one's matched atom [px], NaN where missed).
    """
    truth = np.asarray(true_masks).astype(bool)
    found = find_atoms(probs, threshold=threshold, **(grouping or {}))
    layer_check = site_check = None
    if lattice_class is not None:
        # the maps follow the atoms, as in ``gombnet predict``
        found, probs, layer_check, site_check, _ = check_found_layers(
            found, probs, n_layers=n_layers, classes_per_layer=len(class_names),
            pixel_size_angstrom=pixel_size_angstrom, lattice_class=lattice_class, lattice_sites=lattice_sites)
    # one layer order for every metric, chosen on the maps as they are reported
    perm = best_layer_assignment(probs > threshold, truth, n_layers)
    probs = permute_layers(probs, perm, n_layers)
    found = permute_found_layers(found, perm, n_layers=n_layers, classes_per_layer=len(class_names))
    pixel = pixel_metrics(probs > threshold, truth, n_layers, class_names)
    if refiner is not None:
        check(image is not None, "evaluate_image: the refiner needs the image")
        found = refine_positions(image, probs, found, refiner, n_layers=n_layers,
                                 classes_per_layer=len(class_names), pixel_size_angstrom=pixel_size_angstrom)
    # a column just outside the frame leaves part of its disk inside: compare atoms only
    # away from the border, where a found atom and its true column are both visible
    border_px = radius_angstrom / pixel_size_angstrom
    h, w = truth.shape[-2:]
    found = inside_border(found, h, w, border_px)
    n_true = len(np.asarray(true_columns["x_px"]))
    true_columns = inside_border({**true_columns, "index": np.arange(n_true)}, h, w, border_px)
    atoms = atom_metrics(found, true_columns, n_layers=n_layers, class_names=class_names,
                         radius_px=radius_angstrom / pixel_size_angstrom,
                         pixel_size_angstrom=pixel_size_angstrom, dopant_class=dopant_class(class_names),
                         dopant_sites=dopant_sites(class_names))
    # which true columns were scored, and how far each one's match was
    errors = {"index": true_columns["index"], "error_px": np.asarray(atoms.pop("column_error_px"), dtype=float)}
    return {"layer_perm": [int(p) for p in perm], "pixel": pixel, "atoms": atoms, "layer_check": layer_check,
            "site_check": site_check, "column_errors": errors}


def inside_border(table: dict, h: int, w: int, border_px: float) -> dict:
    """Rows of an atom table (``x_px``, ``y_px``, ...) at least ``border_px`` inside an
    image of ``h`` x ``w`` px (pixel edges at -0.5 and n - 0.5)."""
    x, y = np.asarray(table["x_px"]), np.asarray(table["y_px"])
    keep = (x >= border_px - 0.5) & (x <= w - 0.5 - border_px) & (y >= border_px - 0.5) & (y <= h - 0.5 - border_px)
    return {k: np.asarray(v)[keep] for k, v in table.items()}


def evaluate_model(model, data: str | os.PathLike, *, split: str = "test", radius_angstrom: float = 0.5,
                   threshold: float = 0.5, max_images: int | None = None, batch_size: int = 8,
                   group_by: str | None = None, n_groups: int = 4, workers: int = 1,
                   device: str | None = None, progress: bool = False, class_weights: dict | None = None,
                   lattice_layers: bool = True, lattice_sites: bool = True, tta=None,
                   keep_per_image: bool = False, refine: bool = False) -> dict:
    """Evaluate ``model`` (a loaded model, run folder or shipped name) on a dataset split.

    Parameters
    ----------
    group_by : str, optional
        A simulation parameter of the dataset (``params/<name>``, e.g. ``dose_counts_per_px``
        or ``twist_deg``): the images are also split into ``n_groups`` groups of equal size
        by its value, and each group is scored on its own, to show where the model fails.
    n_groups : int
        Number of groups for ``group_by``.
    workers : int
        Processes that score the images (atom finding and matching run on the CPU, one image
        at a time; on a GPU machine they are the slow part). The network runs in this process.
        Each worker starts by importing PyTorch, so this pays off only with many images and
        cores: on a 2-core CPU, 200 test images took 8.5 s with 1 worker and 11.6 s with 2.
    device : str, optional
        Torch device for the network when ``model`` is loaded here (``"auto"`` picks a GPU when
        there is one); default the CPU. A loaded model stays where it is.
    class_weights : dict of str to float, optional
        Species weights for classes that share a site (as in :func:`gombnet.predict`);
        default the model card's.
    lattice_layers : bool
        Run the lattice-orientation check of the layers, as ``gombnet predict`` does.
    lattice_sites : bool
        With ``lattice_layers``, also run the site check (single atoms to the layer whose
        fitted honeycomb they sit on), as ``gombnet predict`` does.
    tta : sequence of str, "d4" or None
        Test-time augmentation, as in :func:`gombnet.predict`: each image is predicted once
        per transform, the passes' layer orders aligned and the probabilities averaged (the
        whole image in one pass each, as without it). Costs one network pass per transform.
    keep_per_image : bool
        Also return every image's own result (:func:`evaluate_image`) under ``per_image``, with
        its index in the data file as ``image_index`` (not JSON-ready: it holds arrays).
    refine : bool
        Move the atoms by the model's position refiner before scoring, as ``gombnet predict
        --refine`` does; the model must have one.

    Returns
    -------
    dict
        Aggregated metrics (see :func:`gombnet.metrics.aggregate`) plus ``meta``
        (model, data, split, number of images, radius, threshold, seconds), with
        ``group_by``, ``groups``: one summary per group (see :func:`group_summary`), and with
        ``lattice_layers``, ``layer_check``: images judged (``n_applied``), images changed
        (``n_changed``) and atoms moved (``n_moved``) by the lattice check of the layers, and
        ``site_check``: images whose honeycombs were fitted (``n_fitted``), atoms moved
        (``n_moved``), copies dropped (``n_dropped``), atoms dropped as too close to another
        of their layer (``n_too_close``) and cells relabelled as a whole (``n_cells_swapped``) by the
        site check.
    """
    check(0 < threshold < 1, f"threshold must be in (0, 1), got {threshold}")
    check(radius_angstrom > 0, f"matching radius must be > 0 Å, got {radius_angstrom}")
    name = str(model)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model, device=pick_device(device) if device else "cpu")
    config = model.gombnet_config
    ds = read_dataset(data)
    check(list(config["class_names"]) == list(ds.class_names) and config["n_layers"] == ds.n_layers,
          f"model classes {config['class_names']} x {config['n_layers']} layers do not match the data's "
          f"{ds.class_names} x {ds.n_layers} layers")
    grouping, lattice_class = atom_settings(config, class_weights)
    if not lattice_layers:
        lattice_class = None
    refiner = getattr(model, "gombnet_refiner", None) if refine else None
    check(refiner is not None or not refine,
          f"{name}: this model has no position refiner; run without refine (--refine)")
    if refiner is not None and next(refiner.parameters()).device.type != "cpu":
        refiner = copy.deepcopy(refiner).cpu()  # it runs beside the scoring, in CPU worker processes
    idx = ds.indices(split)
    if max_images:
        idx = idx[:max_images]
    check(len(idx) > 0, f"{data}: the {split} split is empty")
    if group_by is not None:
        check(group_by in ds.params, f"{data}: no simulation parameter {group_by!r}; "
                                     f"choose one of {', '.join(sorted(ds.params))}")
        check(1 <= n_groups <= len(idx), f"n_groups must be in 1..{len(idx)} (images), got {n_groups}")
    check(workers >= 1, f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("evaluating", total=len(idx))
        bar.start()
    submit, pool = _run_now, None
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .data import limit_blas_threads

        # spawn, not fork: this process may hold a CUDA context, which forked children must not inherit
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=limit_blas_threads)
        submit = pool.submit
    scored = []
    if tta:  # one pass per transform, aligned and averaged, each over the whole image
        fn = torch_predict_fn(model)
        # passes aligned block by block of the training image size, as predict's tiles are
        layout = dict(n_layers=int(config["n_layers"]), classes_per_layer=len(config["class_names"]),
                      align_block_px=int(config.get("tile_px", 128)))

        def probabilities(images):
            return np.stack([ensemble_predict(im, [fn], transforms=tta, tile_px=max(im.shape), overlap_px=0,
                                              **layout)[0] for im in normalize_batch(images)])
    else:
        net = inference_network(model, next(model.parameters()).device)

        def probabilities(images):
            return predict_probabilities(net, images, batch_size=batch_size)
    try:
        for start in range(0, len(idx), batch_size):
            batch = idx[start:start + batch_size]
            # split indices come sorted (np.flatnonzero), as h5py's fancy indexing needs
            images = ds.images[batch]
            probs = probabilities(images)
            # the refiner reads the image as the network saw it
            seen = normalize_batch(images) if refiner is not None else [None] * len(batch)
            for i, p, image in zip(batch, probs, seen):
                future = submit(evaluate_image, p, ds.masks[i], ds.columns_of(i), n_layers=ds.n_layers,
                                class_names=ds.class_names, pixel_size_angstrom=ds.pixel_size_angstrom(i),
                                radius_angstrom=radius_angstrom, threshold=threshold, grouping=grouping,
                                lattice_class=lattice_class, lattice_sites=lattice_sites, image=image,
                                refiner=refiner)
                if bar:
                    future.add_done_callback(lambda _: bar.advance(task))
                scored.append(future)
        per_image = [f.result() for f in scored]  # in image order, whatever order the workers finish in
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
        if bar:
            bar.stop()
    results = aggregate(per_image)
    if lattice_class is not None:
        checks = [r["layer_check"] for r in per_image]
        results["layer_check"] = {"n_images": len(checks), "n_applied": sum(c["applied"] for c in checks),
                                  "n_changed": sum(c["n_moved"] > 0 for c in checks),
                                  "n_moved": sum(c["n_moved"] for c in checks)}
    sites = [r["site_check"] for r in per_image if r["site_check"] is not None]
    if sites:
        results["site_check"] = {"n_images": len(sites), "n_fitted": sum(c["n_cells_fitted"] > 0 for c in sites),
                                 "n_moved": sum(c["n_moved"] for c in sites),
                                 "n_dropped": sum(c["n_dropped"] for c in sites),
                                 "n_too_close": sum(c["n_too_close"] for c in sites),
                                 "n_cells_swapped": sum(c["n_cells_swapped"] for c in sites)}
    results["meta"] = {"model": name, "data": str(data), "split": split, "n_images": int(len(idx)),
                       "radius_angstrom": radius_angstrom, "threshold": threshold, **grouping,
                       "lattice_layers": lattice_layers, "lattice_sites": bool(lattice_layers and lattice_sites),
                       "tta": tta, "refined": refiner is not None,
                       "seconds": round(time.perf_counter() - t0, 2)}
    if keep_per_image:
        results["per_image"] = [{**r, "image_index": int(i)} for r, i in zip(per_image, idx)]
    if group_by is not None:
        values = np.asarray(ds.params[group_by])[idx].astype(float)
        order = np.argsort(values, kind="stable")
        results["groups"] = [group_summary(group_by, values[g], [per_image[k] for k in g])
                             for g in np.array_split(order, n_groups)]
    return results


def _run_now(fn, *args, **kwargs) -> Future:
    """Call ``fn`` here and now, as a finished future (the one-process twin of ``pool.submit``)."""
    future = Future()
    future.set_result(fn(*args, **kwargs))
    return future


def group_summary(parameter: str, values: np.ndarray, per_image: list) -> dict:
    """Headline metrics of a group of images whose ``parameter`` lies in ``values``' range:
    ``parameter``, ``low``, ``high``, ``n_images``, ``mean_iou`` (pooled, as the overall one), ``atom_f1``,
    ``f1_per_layer``, ``rmse_angstrom``, ``cross_layer_rate``."""
    r = aggregate(per_image)
    atoms = r["atoms"]
    return {"parameter": parameter, "low": float(values.min()), "high": float(values.max()),
            "n_images": len(per_image), "mean_iou": r["pixel"]["mean_iou"],
            "atom_f1": atoms["overall"]["f1"],
            "f1_per_layer": {k: v["f1"] for k, v in sorted(atoms["per_layer"].items())},
            "rmse_angstrom": atoms["overall"]["rmse_angstrom"], "cross_layer_rate": atoms["cross_layer"]["rate"]}


def format_groups(groups: list) -> str:
    """The ``groups`` of :func:`evaluate_model` as a fixed-width table."""
    head = f"{groups[0]['parameter']:>24s} {'images':>6s} {'mIoU':>6s} {'atomF1':>6s} {'F1 per layer':>14s} " \
           f"{'RMSE Å':>7s} {'x-layer':>7s}"
    lines = [head]
    for g in groups:
        rmse = g["rmse_angstrom"] if g["rmse_angstrom"] is not None else float("nan")
        f1 = "/".join(f"{v:.3f}" for v in g["f1_per_layer"].values())
        lines.append(f"{g['low']:>11.4g} – {g['high']:<10.4g} {g['n_images']:6d} {g['mean_iou']:6.3f} "
                     f"{g['atom_f1']:6.3f} {f1:>14s} {rmse:7.3f} {g['cross_layer_rate']:7.3f}")
    return "\n".join(lines)

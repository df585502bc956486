"""How far a model's atom positions are from what the images allow: the Cramér-Rao bound.

For every scored column of a simulated test split this recomputes the image's scene from the
dataset's seed (:func:`gombnet.simulation.sample.simulate_scene`), takes the Cramér-Rao bound on
the column's position (:func:`gombnet.simulation.precision.column_position_bound`: Poisson and
read noise, all columns fitted together; the Bayesian form adds the thermal-displacement prior
that an estimator knowing the ideal lattice has) and sets it beside the model's error on the
same column (``gombnet evaluate``'s matching, radius 0.5 Å). Printed per group of a simulation
parameter (dose by default) and per distance to the nearest column of the other layer:

- the model's RMSE and median error and the Bayesian bound's (no estimator that knows the
  ideal lattice and the microscope does better on average), in Å, over the columns the model
  found, with their ratio; the median of the plain bound (no prior; infinite for columns
  exactly on top of each other, hence no RMS);
- the pooled IoU of label disks drawn at positions off by the Bayesian bound's error, set
  beside the model's mIoU (a guide to what the pixel metric allows, not a strict ceiling).

    python benchmarks/bench_precision_limit.py --model graphene --data test.h5 --max-images 200

``test.h5`` as in the README (``gombnet simulate --preset graphene --n 6000 --size 128 --seed 1``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from gombnet.atomic import atomic_path, write_text_atomic
from gombnet.data import limit_blas_threads, read_dataset
from gombnet.evaluate import evaluate_model
from gombnet.jsonio import dumps
from gombnet.simulation.precision import column_position_bound
from gombnet.simulation.presets import load_preset
from gombnet.simulation.sample import simulate_scene

NEAR_BINS_ANGSTROM = (0.0, 0.3, 0.6, 1.0, np.inf)  # distance to the nearest other-layer column
COLUMN_FIELDS = ("image", "model_error_angstrom", "bound_angstrom", "bayes_bound_angstrom",
                 "nearest_other_layer_angstrom", "disk_intersection_px2", "disk_union_px2")


def disk_iou(offset_px: np.ndarray, radius_px: float) -> np.ndarray:
    """IoU of two disks of radius ``radius_px`` whose centres are ``offset_px`` apart."""
    d = np.minimum(np.asarray(offset_px, dtype=float), 2 * radius_px)
    r = radius_px
    lens = 2 * r * r * np.arccos(d / (2 * r)) - 0.5 * d * np.sqrt(np.maximum(4 * r * r - d * d, 0.0))
    return lens / (2 * np.pi * r * r - lens)


def expected_disk_overlap(sigma_x_px, sigma_y_px, radius_px: float, normals: np.ndarray):
    """Expected intersection and union areas [px^2] of a disk and its copy displaced by a
    Gaussian error of standard deviations (sigma_x, sigma_y), from fixed standard normals."""
    sx = np.minimum(np.asarray(sigma_x_px, float), 10 * radius_px)[:, None]
    sy = np.minimum(np.asarray(sigma_y_px, float), 10 * radius_px)[:, None]
    d = np.hypot(sx * normals[:, 0], sy * normals[:, 1])
    iou = disk_iou(d, radius_px)
    area = np.pi * radius_px**2
    inter = 2 * area * iou / (1 + iou)
    return inter.mean(axis=1), (2 * area - inter).mean(axis=1)


def image_rows(job) -> np.ndarray:
    """Per scored column of one image, the fields :data:`COLUMN_FIELDS` (model error NaN where
    the column was missed)."""
    preset_path, seed, n_images, size, i, stored_x, scored, error_px = job
    preset = load_preset(preset_path)
    seeds = np.random.SeedSequence(seed).spawn(n_images)
    scene = simulate_scene(preset, np.random.default_rng(seeds[i]), image_size_px=size)
    if not np.array_equal(scene.column_x_px[scene.in_fov].astype(np.float32), stored_x):
        raise SystemExit(f"error: image {i}: the recomputed scene does not match the file (another gombnet version?)")
    px = scene.params["pixel_size_angstrom"]
    bound = column_position_bound(scene)
    cols = np.flatnonzero(scene.in_fov)[scored]
    xy = np.c_[scene.column_x_px, scene.column_y_px] * px
    layer = scene.column_layer
    near = np.full(len(cols), np.inf)
    for lay in np.unique(layer[cols]):
        other, mine = np.flatnonzero(layer != lay), layer[cols] == lay
        if other.size:
            near[mine] = cKDTree(xy[other]).query(xy[cols[mine]])[0]
    normals = np.random.default_rng(0).standard_normal((256, 2))
    inter, union = expected_disk_overlap(bound["sigma_x_prior_px"][scored], bound["sigma_y_prior_px"][scored],
                                         preset.disk_radius_angstrom / px, normals)
    return np.c_[np.full(len(cols), i), error_px * px, bound["rms_angstrom"][scored],
                 bound["rms_prior_angstrom"][scored], near, inter, union]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="shipped model name or run folder")
    ap.add_argument("--data", required=True, type=Path, help="simulated dataset file (gombnet simulate)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--by", default="dose_counts_per_px", help="simulation parameter to group the images by")
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="processes scoring the images and computing bounds")
    ap.add_argument("--json", type=Path, help="save every number here")
    ap.add_argument("--table", type=Path, help="save the per-column table here (.npz, with each image's parameters)")
    args = ap.parse_args(argv)
    for path in (args.json, args.table):
        if path and path.exists():
            sys.exit(f"error: {path} exists; remove it first")

    t0 = time.perf_counter()
    res = evaluate_model(args.model, args.data, split=args.split, max_images=args.max_images, group_by=args.by,
                         n_groups=args.groups, workers=args.workers, keep_per_image=True)
    t_eval = time.perf_counter() - t0
    ds = read_dataset(args.data, in_memory=False)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        preset_path = Path(tmp) / "preset.toml"
        preset_path.write_text(ds.attrs["preset_toml"])
        jobs = [(preset_path, int(ds.attrs["seed"]), len(ds.images), int(ds.images.shape[-1]), r["image_index"],
                 ds.columns_of(r["image_index"])["x_px"], r["column_errors"]["index"], r["column_errors"]["error_px"])
                for r in res["per_image"]]
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=limit_blas_threads) as pool:
                rows = list(pool.map(image_rows, jobs))
        else:
            rows = [image_rows(job) for job in jobs]
    t_bound = time.perf_counter() - t1
    table = np.concatenate(rows)
    image_idx, err, crb, bcrb, near, inter, union = table.T
    values = np.asarray(ds.params[args.by])[image_idx.astype(int)]

    def summary(sel) -> dict:
        found = sel & np.isfinite(err)
        return {"n_columns": int(sel.sum()), "recall": float(found.sum() / max(sel.sum(), 1)),
                "model_rmse_angstrom": float(np.sqrt(np.mean(err[found] ** 2))),
                "model_median_angstrom": float(np.median(err[found])),
                "bayes_bound_rms_angstrom": float(np.sqrt(np.mean(bcrb[found] ** 2))),
                "bayes_bound_median_angstrom": float(np.median(bcrb[found])),
                "bound_median_angstrom": float(np.median(crb[found])),
                "bound_finite_fraction": float(np.isfinite(crb[found]).mean()),
                "disk_iou_at_bound": float(inter[sel].sum() / union[sel].sum()),
                "share_of_model_sse": float(np.sum(err[found] ** 2) / np.nansum(err**2))}

    out = {"model": args.model, "data": str(args.data), "n_images": len(res["per_image"]),
           "model_mean_iou": res["pixel"]["mean_iou"], "model_f1": res["atoms"]["overall"]["f1"],
           "all": summary(np.ones(len(err), bool)), "groups": [], "by_nearest_other_layer": [],
           "seconds": {"evaluate": round(t_eval, 1), "bound": round(t_bound, 1)},
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.workers} workers"}
    print(f"{args.model} on {args.data} ({args.split}, {out['n_images']} images): {len(err)} columns scored; "
          f"evaluate {t_eval:.0f} s, bounds {t_bound:.0f} s")
    head = (f"{'':>28} {'cols':>6} {'recall':>6} | {'RMSE Å: model':>13} {'Bayes':>6} {'ratio':>5} | "
            f"{'median Å: model':>15} {'Bayes':>6} {'CRB':>6} | {'IoU@bound':>9} {'model mIoU':>10}")
    print(head)

    def line(label, s, miou=None):
        ratio = s["model_rmse_angstrom"] / s["bayes_bound_rms_angstrom"]
        print(f"{label:>28} {s['n_columns']:6d} {s['recall']:6.3f} | {s['model_rmse_angstrom']:13.4f} "
              f"{s['bayes_bound_rms_angstrom']:6.4f} {ratio:5.1f} | {s['model_median_angstrom']:15.4f} "
              f"{s['bayes_bound_median_angstrom']:6.4f} {s['bound_median_angstrom']:6.4f} | "
              f"{s['disk_iou_at_bound']:9.3f} " + (f"{miou:10.3f}" if miou is not None else f"{'':>10}"))

    line("all", out["all"], out["model_mean_iou"])
    for g in res["groups"]:
        lo, hi = g["low"], g["high"]
        sel = (values >= lo) & (values <= hi)
        s = summary(sel)
        s.update(range=[lo, hi], model_mean_iou=g["mean_iou"])
        out["groups"].append(s)
        line(f"{args.by[:10]} {lo:.3g}-{hi:.3g}", s, g["mean_iou"])
    print("by distance to the nearest column of the other layer [Å]:")
    for lo, hi in zip(NEAR_BINS_ANGSTROM[:-1], NEAR_BINS_ANGSTROM[1:]):
        sel = (near >= lo) & (near < hi)
        if sel.any():
            s = summary(sel)
            s.update(range=[lo, hi])
            out["by_nearest_other_layer"].append(s)
            line(f"{lo:.1f}-{hi:.1f} Å ({s['share_of_model_sse']:.0%} SSE)", s)
    if args.table:
        images = np.unique(image_idx.astype(int))
        with atomic_path(args.table) as tmp, open(tmp, "wb") as fh:  # a file object: savez adds no suffix
            np.savez_compressed(fh, columns=table, columns_fields=np.array(COLUMN_FIELDS), images=images,
                                **{f"param_{k}": np.asarray(v)[images] for k, v in ds.params.items()})
        print(f"per-column table written to {args.table}")
    if args.json:
        write_text_atomic(args.json, dumps(out))
        print(f"all numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

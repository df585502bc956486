"""Whole-image inference against tiles: accuracy and time on a simulated dataset.

    python benchmarks/bench_whole_image.py --data graphene512.h5 --model graphene
    python benchmarks/bench_whole_image.py --data ws512.h5 --model ws2-wsse --tiles 128,256

Every image of the file goes through the same network (``torch_predict_fn``) and the same
blending code (``predict_tiled``) once as one tile covering the whole image and once per tile
size (overlap a quarter of the tile, as ``gombnet predict`` uses), and is scored like
``gombnet evaluate`` (one layer assignment per image, atoms within 0.5 Å, lattice check of
the layers on). Prints pooled atom F1, mean F1 per image, mIoU, RMSE [Å], atoms in the wrong
layer and the seconds of inference per variant; ``--json`` saves them.

Make a dataset with e.g. ``gombnet simulate --preset graphene --n 24 --size 512 --seed 21``.

    python benchmarks/bench_whole_image.py --demo graphene --seeds 8

scores the demo's images instead (typical conditions, 512 px, seeds 0..N-1) through ``predict``
itself, with ``tile_px`` the image's size against the default tiles (atom F1 and RMSE under the
best layer assignment, as ``gombnet demo`` prints them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gombnet.data import read_dataset
from gombnet.evaluate import evaluate_image
from gombnet.inference.predict import atom_settings, torch_predict_fn
from gombnet.inference.tiling import normalize_intensity, predict_tiled
from gombnet.metrics import aggregate
from gombnet.nn.checkpoint import load_model


def demo_images(preset: str, seeds: int) -> None:
    from gombnet.demo import best_atom_assignment, demo_image
    from gombnet.evaluate import dopant_class
    from gombnet.inference.predict import predict

    model = load_model(preset)
    class_names = list(model.gombnet_config["class_names"])
    rows = {"whole": [], "tiles": []}
    for seed in range(seeds):
        sample = demo_image(preset, seed=seed, size_px=512)
        px = float(sample.params["pixel_size_angstrom"])
        for name, tile in (("whole", max(sample.image.shape)), ("tiles", None)):
            result = predict(sample.image, model, pixel_size_angstrom=px, tile_px=tile,
                             overlap_px=0 if tile else None)
            found = {k: result.atoms[k] for k in ("channel", "x_px", "y_px", "score")}
            m = best_atom_assignment(found, sample.columns, n_layers=result.n_layers, class_names=class_names,
                                     radius_px=0.5 / px, pixel_size_angstrom=px,
                                     dopant_class=dopant_class(class_names))
            rows[name].append((m["overall"]["f1"], m["overall"]["rmse_angstrom"]))
        print(f"seed {seed}: " + ", ".join(f"{k} F1 {v[-1][0]:.4f} RMSE {v[-1][1]:.4f} Å" for k, v in rows.items()))
    for name, v in rows.items():
        f1, rmse = np.mean(v, axis=0)
        print(f"{preset} demo images, {name}: mean atom F1 {f1:.4f}, mean RMSE {rmse:.4f} Å")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset file (gombnet simulate)")
    ap.add_argument("--demo", help="score the demo images of this shipped model instead")
    ap.add_argument("--seeds", type=int, default=8, help="demo images (seeds 0..N-1)")
    ap.add_argument("--model", default="graphene", help="shipped model name or run folder")
    ap.add_argument("--tiles", default="128", help="tile sizes [px] to compare, comma-separated")
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.demo:
        demo_images(args.demo, args.seeds)
        return
    if not args.data:
        ap.error("give --data or --demo")
    ds = read_dataset(args.data)
    model = load_model(args.model)
    config = model.gombnet_config
    grouping, lattice_class = atom_settings(config)
    n_layers, cpl = int(config["n_layers"]), len(config["class_names"])
    norm = config.get("normalization", {})
    fn = torch_predict_fn(model, "cpu")
    variants = {"whole": None, **{f"tiles {t}": int(t) for t in args.tiles.split(",")}}
    scores = {k: [] for k in variants}
    seconds = dict.fromkeys(variants, 0.0)
    n = len(ds.images) if args.max_images is None else min(args.max_images, len(ds.images))
    for i in range(n):
        image = normalize_intensity(ds.images[i], low_percentile=norm.get("low_percentile", 0.5),
                                    high_percentile=norm.get("high_percentile", 99.5))
        for name, tile in variants.items():
            t0 = time.perf_counter()
            tile_px, overlap_px = (max(image.shape), 0) if tile is None else (tile, tile // 4)
            probs = predict_tiled(image, fn, n_layers=n_layers, classes_per_layer=cpl, tile_px=tile_px,
                                  overlap_px=overlap_px)
            seconds[name] += time.perf_counter() - t0
            scores[name].append(evaluate_image(probs, ds.masks[i], ds.columns_of(i), n_layers=n_layers,
                                               class_names=ds.class_names,
                                               pixel_size_angstrom=ds.pixel_size_angstrom(i),
                                               grouping=grouping, lattice_class=lattice_class))
    out = {}
    print(f"{args.model} on {n} images of {args.data} ({ds.images.shape[1]} x {ds.images.shape[2]} px)")
    print(f"{'variant':10s} {'F1':>6s} {'mean F1':>8s} {'mIoU':>6s} {'RMSE Å':>7s} {'x-layer':>8s} {'seconds':>8s}")
    for name in variants:
        agg = aggregate(scores[name])
        atoms = agg["atoms"]
        out[name] = {"f1": atoms["overall"]["f1"],
                     "mean_f1": float(np.mean([s["atoms"]["overall"]["f1"] for s in scores[name]])),
                     "miou": agg["pixel"]["mean_iou"], "rmse_angstrom": atoms["overall"]["rmse_angstrom"],
                     "cross_layer_rate": atoms["cross_layer"]["rate"], "seconds": seconds[name]}
        r = out[name]
        print(f"{name:10s} {r['f1']:6.4f} {r['mean_f1']:8.4f} {r['miou']:6.3f} {r['rmse_angstrom']:7.4f} "
              f"{r['cross_layer_rate']:8.4f} {r['seconds']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "model": args.model, "n_images": n,
                                         "results": out}, indent=2))


if __name__ == "__main__":
    main()

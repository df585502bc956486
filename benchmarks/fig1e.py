"""Reproduce the paper's Fig. 1e: why Gomb-Net needs both the branches and the Gomb loss.

Trains, on the same simulated twisted bilayer graphene data, a U-Net with Dice loss, a
U-Net with the Gomb loss and a Gomb-Net (one decoder per layer) with the Gomb loss, then
evaluates them and random guessing on the test split with ``gombnet evaluate``'s code
(one layer assignment per image for every metric) and prints one table.

Default size (2000 images of 128 px, filters 16-128, 16 epochs) takes about an hour on a 2-core
CPU: enough training steps for the Gomb-loss networks to start separating the layers (with 600
images and 12 epochs they had not, and the table showed no ordering). ``--paper`` uses the
paper's size (2000 images of 256 px, filters 32-256, 100 epochs) for a GPU.

    python benchmarks/fig1e.py --work fig1e-work            # CPU size
    python benchmarks/fig1e.py --work fig1e-work --paper    # GPU size

On a GPU with little time, ``--budget-seconds S`` gives each run S seconds (a short timed
trial picks the epochs, at most the paper's 100), and ``--only NAME`` trains one run, so the
three can share the GPU as three processes; a last call with ``--evaluate-only`` evaluates the
runs as they are (one stopped by its time limit is not continued) and prints the table.

Authors' figures (pixel accuracy / IoU): random 0.500/0.138, U-Net+Dice 0.631/0.273,
U-Net+Gomb 0.856/0.390, Gomb-Net 0.952/0.737.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gombnet.data import read_dataset, write_dataset
from gombnet.evaluate import evaluate_image, evaluate_model
from gombnet.metrics import aggregate
from gombnet.nn.train import TrainConfig, train

from _budget import planned_epochs

AUTHORS = {"random": (0.500, 0.138), "unet+dice": (0.631, 0.273), "unet+gomb": (0.856, 0.390),
           "gombnet+gomb": (0.952, 0.737)}
RUNS = {"unet+dice": ("unet", "dice"), "unet+gomb": ("unet", "gomb"), "gombnet+gomb": ("gombnet", "gomb")}


def random_guessing(data: Path, split: str, seed: int, max_images: int | None = None) -> dict:
    """Every pixel foreground with probability 0.5, evaluated like a model."""
    ds = read_dataset(data)
    rng = np.random.default_rng(seed)
    per_image = []
    for i in ds.indices(split)[:max_images]:
        probs = rng.random(ds.masks[i].shape).astype(np.float32)
        per_image.append(evaluate_image(probs, ds.masks[i], ds.columns_of(i), n_layers=ds.n_layers,
                                        class_names=ds.class_names,
                                        pixel_size_angstrom=ds.pixel_size_angstrom(i)))
    return aggregate(per_image)


def row(results: dict) -> dict:
    atoms = results["atoms"]
    per_layer = atoms["per_layer"]
    return {"pixel_accuracy": results["pixel"]["pixel_accuracy"], "miou": results["pixel"]["mean_iou"],
            "atom_f1": atoms["overall"]["f1"],
            "atom_f1_per_layer": [per_layer[k]["f1"] for k in sorted(per_layer)],
            "rmse_angstrom": atoms["overall"]["rmse_angstrom"], "cross_layer_rate": atoms["cross_layer"]["rate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("fig1e-work"))
    ap.add_argument("--paper", action="store_true", help="the paper's size (GPU)")
    ap.add_argument("--n", type=int, help="images in the dataset")
    ap.add_argument("--size", type=int, help="image size [px]")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--filters", type=str, help="comma-separated widths")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-val-images", type=int, help="validate each epoch on this many images")
    ap.add_argument("--budget-seconds", type=float, help="wall time per training run (picks the epochs)")
    ap.add_argument("--max-test-images", type=int, help="evaluate on the first N test images only")
    ap.add_argument("--eval-workers", type=int, default=1, help="processes scoring the test images")
    ap.add_argument("--only", choices=list(RUNS), help="train this run only (no evaluation)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="evaluate the runs in WORK as they are, without training or continuing them")
    args = ap.parse_args()
    n, size, epochs, filters = (2000, 256, 100, "32,64,128,256") if args.paper else (2000, 128, 16, "16,32,64,128")
    n, size, epochs = args.n or n, args.size or size, args.epochs or epochs
    filters = tuple(int(f) for f in (args.filters or filters).split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "graphene.h5"
    if not data.exists():
        t0 = time.perf_counter()
        write_dataset(data, "graphene", n, seed=args.seed, image_size_px=size)
        print(f"simulated {n} images of {size} px in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.only is None:
        table = {"random": row(random_guessing(data, "test", args.seed, args.max_test_images))}
    timing = {}
    for name, (arch, loss) in RUNS.items():
        if args.only not in (None, name):
            continue
        out = args.work / name
        cfg = TrainConfig(arch=arch, loss=loss, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                          filters=filters, seed=args.seed, device=args.device, normalized_dice=False,
                          max_val_images=args.max_val_images)
        resume = (out / "state.json").is_file()  # a finished run is only evaluated again
        if args.evaluate_only and not resume:
            raise SystemExit(f"{out}: no training run to evaluate")
        plan_file = args.work / f"{name}.budget.json"
        if not args.evaluate_only and (plan_file.is_file() or (args.budget_seconds and not resume)):
            plan = planned_epochs(plan_file, data, cfg, args.budget_seconds, args.work / f"{name}.probe")
            print(f"[{name}] time budget: {json.dumps(plan)}", flush=True)
            cfg.epochs = plan["epochs"]
        if args.budget_seconds:  # the trial can misjudge a shared GPU: a hard stop keeps the budget
            cfg.time_limit_seconds = 1.15 * args.budget_seconds
        if args.evaluate_only:
            config = json.loads((out / "config.json").read_text())
        else:
            config = train(data, out, cfg, resume=resume, log=lambda line, name=name: print(f"[{name}] {line}",
                                                                                         flush=True))
        rows = json.loads((out / "state.json").read_text())["rows"]
        timing[name] = {"seconds": config["training"]["wall_seconds"], "device": config["training"]["device"],
                        "epochs": len(rows),
                        "images_per_second": float(np.median([r["images_per_second"] for r in rows]))}
        if args.only is None:
            table[name] = row(evaluate_model(out, data, split="test", max_images=args.max_test_images,
                                             workers=args.eval_workers, device=args.device))
    if args.only is not None:
        return
    print()
    ran = sorted({t["epochs"] for t in timing.values()})
    print(f"Fig. 1e on graphene test split ({n} images of {size} px, filters {filters}, "
          f"{'/'.join(map(str, ran))} epochs)")
    print(f"{'method':14s} {'pix.acc':>8s} {'mIoU':>7s} {'atomF1':>7s} {'F1 L0/L1':>11s} {'RMSE Å':>7s}"
          f" {'x-layer':>8s}   authors acc/IoU")
    for name, r in table.items():
        a = AUTHORS[name]
        f1l = "/".join(f"{v:.3f}" for v in r["atom_f1_per_layer"])
        print(f"{name:14s} {r['pixel_accuracy']:8.3f} {r['miou']:7.3f} {r['atom_f1']:7.3f} {f1l:>11s} "
              f"{r['rmse_angstrom'] if r['rmse_angstrom'] is not None else float('nan'):7.3f} "
              f"{r['cross_layer_rate']:8.3f}   {a[0]:.3f}/{a[1]:.3f}")
    for name, t in timing.items():
        print(f"training {name}: {t['epochs']} epochs, {t['seconds']:.0f} s on {t['device']}, "
              f"median {t['images_per_second']:.1f} images/s")
    (args.work / "fig1e.json").write_text(json.dumps({"table": table, "timing": timing, "n": n, "size": size,
                                                      "epochs": epochs, "filters": filters}, indent=2,
                                                     default=float))


if __name__ == "__main__":
    main()

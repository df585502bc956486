"""Train the position refiner of a Gomb-Net model and store it beside the model.

The model finds atoms in the training split of a simulated dataset; a small network
(:class:`gombnet.nn.refiner.PositionRefiner`) learns to correct their positions from a window
of the image and the layer maps around each; the validation split measures the remaining error
before and after. The refiner is written as ``<model>.refiner.safetensors`` with a card in the
model's JSON config (``--attach``); without it only the numbers are printed.

    python benchmarks/train_refiner.py --model graphene --data graphene.h5 --max-train-images 3000 \
        --max-val-images 400 --epochs 8 --attach src/gombnet/weights/graphene.json
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time

import numpy as np
import torch

from gombnet.data import file_sha256, read_dataset
from gombnet.nn.checkpoint import load_model
from gombnet.nn.refiner import (DEFAULT_CROP_RADIUS_PX, PositionRefiner, position_errors_angstrom,
                                refiner_training_set, save_refiner, train_refiner)


def summary(errors: np.ndarray) -> dict:
    return {"rmse_angstrom": round(float(np.sqrt(np.mean(errors ** 2))), 4),
            "median_angstrom": round(float(np.median(errors)), 4), "n_atoms": int(errors.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped model name, run folder or model file")
    ap.add_argument("--data", required=True, help="simulated dataset of the model's preset (gombnet simulate)")
    ap.add_argument("--max-train-images", type=int, default=3000)
    ap.add_argument("--max-val-images", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--crop-radius", type=int, default=DEFAULT_CROP_RADIUS_PX)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attach", help="store the refiner with this model (run folder or .json of a model file)")
    ap.add_argument("--overwrite", action="store_true", help="replace the model's existing refiner")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = load_model(args.model)
    kw = dict(crop_radius_px=args.crop_radius, progress=sys.stderr.isatty())
    train = refiner_training_set(model, args.data, split="train", max_images=args.max_train_images, **kw)
    val = refiner_training_set(model, args.data, split="val", max_images=args.max_val_images, **kw)
    t_data = time.perf_counter() - t0
    print(f"{len(train['offset_px'])} training atoms, {len(val['offset_px'])} validation atoms "
          f"({t_data:.0f} s)", flush=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # the refiner's initial weights
        refiner = PositionRefiner(width=args.width, crop_radius_px=args.crop_radius)
    before = summary(position_errors_angstrom(None, val))
    print(f"validation before: RMSE {before['rmse_angstrom']} Å, median {before['median_angstrom']} Å", flush=True)
    history = train_refiner(refiner, train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, val_samples=val, progress=sys.stderr.isatty())
    for row in history:
        print(f"epoch {row['epoch']}: loss {row['train_loss']:.5f}, validation RMSE {row['val_rmse_angstrom']:.4f} Å, "
              f"median {row['val_median_angstrom']:.4f} Å ({row['seconds']:.0f} s)", flush=True)
    after = summary(position_errors_angstrom(refiner, val))
    wall = time.perf_counter() - t0
    ds = read_dataset(args.data, in_memory=False)
    card = {
        "command": "python " + shlex.join(sys.argv),
        "data": {"file": str(args.data), "sha256": file_sha256(args.data), "preset": ds.attrs.get("preset"),
                 "seed": ds.attrs.get("seed"), "train_images": args.max_train_images,
                 "val_images": args.max_val_images, "train_atoms": int(len(train["offset_px"]))},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "history": history},
        "hardware": f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                    f"torch {torch.__version__}",
        "wall_seconds": round(wall, 1),
        "validation": {"before": before, "after": after},
    }
    print(f"validation after: RMSE {after['rmse_angstrom']} Å, median {after['median_angstrom']} Å "
          f"({wall:.0f} s in all)")
    if args.attach:
        path = save_refiner(refiner, args.attach, card=card, overwrite=args.overwrite)
        print(f"refiner written to {path}")


if __name__ == "__main__":
    main()

"""Training throughput (images/s) of Gomb-Net and the U-Net baseline on this machine.

    python benchmarks/bench_train.py --data graphene.h5 --filters 32,64,128,256 --batch-size 16

Trains each architecture for a few short epochs (``--images`` training images each) and
prints the median images/s of the epochs after the first (the first includes start-up and,
on CUDA, cuDNN's kernel search). Validation is left out of the figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from gombnet.data import read_dataset
from gombnet.nn.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset from `gombnet simulate`")
    ap.add_argument("--filters", default="32,64,128,256")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=512, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    ds = read_dataset(args.data, in_memory=False)
    size = ds.images.shape[-1]
    results = {}
    for arch in ("gombnet", "unet"):
        cfg = TrainConfig(arch=arch, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                          filters=tuple(int(f) for f in args.filters.split(",")), device=args.device,
                          max_train_images=args.images, max_val_images=args.batch_size)
        with tempfile.TemporaryDirectory() as tmp:
            config = train(args.data, Path(tmp) / "run", cfg)
            rows = json.loads((Path(tmp) / "run" / "state.json").read_text())["rows"]
        speed = statistics.median(r["images_per_second"] for r in rows[1:] or rows)
        results[arch] = {"images_per_second": speed, "device": config["training"]["device"]}
        print(f"{arch:8s} filters {args.filters} {size} px batch {args.batch_size} on "
              f"{config['training']['device']}: {speed:.1f} images/s (median of {len(rows[1:] or rows)} epochs)",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps({"filters": args.filters, "size_px": int(size),
                                         "batch_size": args.batch_size, **results}, indent=2))


if __name__ == "__main__":
    main()

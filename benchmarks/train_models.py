"""Train a shippable model end to end and write it into the package with its model card.

simulate -> train -> evaluate (test split) -> fp16 safetensors + JSON card in
``src/gombnet/weights/<name>.*``. Every step is a ``gombnet`` command, recorded in the card.
Re-running continues an interrupted run (the dataset is kept, training resumes).

    python benchmarks/train_models.py graphene --work models-work --n 1500 --size 128 \
        --epochs 20 --filters 16,32,64,128 --lr 1e-3 --batch-size 8

Fine-tuning a shipped model (its card goes into the new card under ``fine_tuned_from``):

    python benchmarks/train_models.py ws2-wsse --work models-work --n 2500 --run ft \
        --init ws2-wsse --per-class-dice --epochs 20 --lr 3e-4 --max-val-images 200
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from gombnet.nn.checkpoint import WEIGHTS_DIR, load_model, read_config, resolve_model_files, save_model
from gombnet.nn.train import TrainConfig, init_filters


def sh(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", help="graphene or ws2-wsse")
    ap.add_argument("--name", help="shipped model name (default: the preset)")
    ap.add_argument("--work", type=Path, default=Path("models-work"))
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--filters", help="encoder widths (default: the --init model's own, else 16,32,64,128)")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change a preset key of the simulated data (gombnet simulate --set); repeatable")
    ap.add_argument("--max-test-images", type=int, help="evaluate on the first N test images only")
    ap.add_argument("--eval-workers", type=int, default=1, help="processes scoring the test images")
    ap.add_argument("--max-val-images", type=int, help="validate each epoch on this many images")
    ap.add_argument("--budget-seconds", type=float,
                    help="wall time for training: a short timed trial picks the epochs (at most --epochs)")
    ap.add_argument("--per-class-dice", action="store_true", help="one Dice per class inside each layer")
    ap.add_argument("--dice-smooth", type=float, help="Dice smoothing [px] (gombnet train --dice-smooth)")
    ap.add_argument("--bce-weight", type=float, help="cross-entropy weight (gombnet train --bce-weight)")
    ap.add_argument("--init", help="fine-tune: start from this model (shipped name or run folder)")
    ap.add_argument("--run", default="run", help="run folder name inside WORK/NAME (default: run)")
    ap.add_argument("--no-ship", action="store_true", help="train and evaluate only")
    ap.add_argument("--note", default="", help="remark for the model card (e.g. where and why so trained)")
    args = ap.parse_args()
    name = args.name or args.preset
    if args.filters is None:  # written out, so that the card's command says which
        args.filters = ",".join(map(str, init_filters(args.init))) if args.init else "16,32,64,128"
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    data, run = work / "data.h5", work / args.run
    report = work / ("test.json" if args.run == "run" else f"test-{args.run}.json")
    gombnet = [sys.executable, "-m", "gombnet"]
    simulate = [*gombnet, "simulate", "--preset", args.preset, "--n", str(args.n), "--size", str(args.size),
                "--seed", str(args.seed), "--out", str(data)]
    if args.workers:
        simulate += ["--workers", str(args.workers)]
    for setting in args.settings:
        simulate += ["--set", setting]
    train = [*gombnet, "train", "--data", str(data), "--out", str(run), "--epochs", str(args.epochs),
             "--filters", args.filters, "--dropout", str(args.dropout), "--lr", str(args.lr),
             "--batch-size", str(args.batch_size), "--schedule", args.schedule, "--seed", str(args.seed)]
    if args.per_class_dice:
        train.append("--per-class-dice")
    if args.dice_smooth is not None:
        train += ["--dice-smooth", str(args.dice_smooth)]
    if args.bce_weight is not None:
        train += ["--bce-weight", str(args.bce_weight)]
    origin = None
    if args.init:
        train += ["--init", args.init]
        # the starting model's own card: read now, shipping may replace it under the same name
        origin = {k: v for k, v in read_config(resolve_model_files(args.init)[1]).items()
                  if k in ("name", "command", "hardware", "wall_seconds", "training", "test_metrics", "note",
                           "fine_tuned_from")}
    evaluate = [*gombnet, "evaluate", "--model", str(run), "--data", str(data), "--split", "test",
                "--json", str(report), "--overwrite", "--device", "auto"]
    if args.max_test_images:
        evaluate += ["--max-images", str(args.max_test_images)]
    if args.eval_workers > 1:
        evaluate += ["--workers", str(args.eval_workers)]
    t_sim = None  # unknown when the dataset of an earlier call is reused
    if not data.exists():
        t0 = time.perf_counter()
        sh(simulate)
        t_sim = round(time.perf_counter() - t0, 1)
    if args.max_val_images:
        train += ["--max-val-images", str(args.max_val_images)]
    resume = (run / "state.json").is_file()
    if args.budget_seconds:
        from _budget import planned_epochs

        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
                          filters=tuple(int(f) for f in args.filters.split(",")), seed=args.seed,
                          max_val_images=args.max_val_images)
        plan = planned_epochs(work / "budget.json", data, cfg, args.budget_seconds, work / "probe")
        print(f"time budget: {json.dumps(plan)}", flush=True)
        train[train.index("--epochs") + 1] = str(plan["epochs"])
        # the trial can misjudge a GPU shared with other runs: a hard stop keeps the budget
        train += ["--time-limit-minutes", f"{1.15 * args.budget_seconds / 60:.2f}"]
    sh(train + (["--resume"] if resume else []))
    sh(evaluate)
    if args.no_ship:
        return
    results = json.loads(report.read_text())
    model = load_model(run)
    config = dict(model.gombnet_config)
    atoms, pixel = results["atoms"], results["pixel"]
    config.update({
        "name": name,
        "description": f"Gomb-Net for {args.preset} ({', '.join(config['class_names'])} per layer, "
                       f"{config['n_layers']} layer{'s' if config['n_layers'] > 1 else ''}), "
                       "trained on gombnet's own simulator",
        "command": " && ".join(shlex.join(c[2:]).replace(str(args.work), "WORK") for c in (simulate, train, evaluate)),
        "hardware": machine(),
        "wall_seconds": {"simulate": t_sim, "train": config["training"].get("wall_seconds")},
        "test_metrics": {
            "n_images": results["meta"]["n_images"],
            "pixel_accuracy": pixel["pixel_accuracy"], "mean_iou": pixel["mean_iou"],
            "atom_f1_per_layer_class": {k: v["f1"] for k, v in atoms["per_layer_class"].items()},
            "atom_f1": atoms["overall"]["f1"],
            "rmse_angstrom": atoms["overall"]["rmse_angstrom"],
            "cross_layer_rate": atoms["cross_layer"]["rate"],
            "dopant_wrong_layer_rate": (atoms.get("dopant") or {}).get("wrong_layer_rate"),
            "dopant_clean_layer_site_rate": (atoms.get("dopant") or {}).get("clean_layer_site_rate"),
        },
    })
    if origin:
        config["fine_tuned_from"] = origin
    if args.note:
        config["note"] = args.note
    config["data"].pop("path", None)  # a path on the training machine means nothing to users
    save_model(model, WEIGHTS_DIR, config, stem=name, half=True)
    size = (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size / 1e6
    print(f"shipped {name}: {size:.1f} MB, test metrics {json.dumps(config['test_metrics'])}")


if __name__ == "__main__":
    main()

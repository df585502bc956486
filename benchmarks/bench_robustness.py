"""How atom-finding accuracy falls as imaging conditions leave the training range.

    python benchmarks/bench_robustness.py --model graphene --preset graphene --n 6 --size 256
    python benchmarks/bench_robustness.py --model ws2-wsse --factors dose,pixel_size --json out.json
    python benchmarks/bench_robustness.py --model /path/to/run --factors probe --values defocus=0,50,150

Starts from the demo's typical experiment (:data:`gombnet.demo.DEMO_CONDITIONS` applied to the
preset) and sweeps ONE simulation parameter at a time, fixed to each value as a ``(v, v)``
range, over values inside and outside the preset's training range; every other parameter
keeps its demo-condition range. Each value sees the same ``--n`` seeded images
(``numpy.random.default_rng(seed)`` for seeds ``--seed`` ... ``--seed + n - 1``): every
parameter is drawn before the structure is built, so twist, rotation, lattice and defects
are the same at every value (except for pixel size and drift, which change the simulated
box and hence the number of random per-atom draws).

Each image is simulated with :func:`gombnet.simulation.simulate_sample`, its atoms found with
:func:`gombnet.inference.predict.predict` at the image's true pixel size (so the pixel-size
sweep also tests predict's resampling to the model's pixel size) and scored with
:func:`gombnet.demo.best_atom_assignment` like ``gombnet evaluate``: matching radius 0.5 Å,
atoms and columns within that radius of the border left out, the layer order with the best F1.

Factors (``--factors``, comma separated; groups: ``probe``, ``contamination``, ``scan``, ``all``):
dose, source_sigma, defocus, convergence, pixel_size, background, carbon, jitter,
drift_shear, drift_stretch.

Prints a progress line per value and then a table: factor, parameter value, the preset's
training range, in/out of it, median atom F1 per layer (species must match), median RMSE [Å]
of the matched atoms; for presets with several classes also the median species-agnostic
detection F1 and species accuracy. A first ``demo`` row is the unchanged demo conditions.
``--json`` saves every per-image number.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import time

import numpy as np

# (factor name, Preset field, values); values outside the training range are intended
FACTORS: dict[str, tuple[str, tuple[float, ...]]] = {
    "dose": ("dose_counts_per_px", (3, 10, 30, 100, 300, 1000, 3000, 10000, 30000)),
    "source_sigma": ("source_sigma_angstrom", (0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8)),
    "defocus": ("defocus_angstrom", (0, 30, 60, 100)),
    "convergence": ("convergence_mrad", (15, 20, 30, 35)),
    "pixel_size": ("pixel_size_angstrom", (0.07, 0.08, 0.09, 0.106, 0.125, 0.14, 0.15)),
    "background": ("background_amplitude", (0, 0.5, 1, 2, 3)),
    "carbon": ("amorphous_carbon_per_angstrom2", (0, 0.1, 0.3)),
    "jitter": ("jitter_sigma_angstrom", (0, 0.03, 0.06, 0.1, 0.2)),
    "drift_shear": ("drift_shear", (0, 0.01, 0.03)),
    "drift_stretch": ("drift_stretch", (0, 0.01, 0.03)),
}
GROUPS = {
    "probe": ("source_sigma", "defocus", "convergence"),
    "contamination": ("background", "carbon"),
    "scan": ("jitter", "drift_shear", "drift_stretch"),
    "all": tuple(FACTORS),
}
RADIUS_ANGSTROM = 0.5  # matching radius, as `gombnet evaluate`


def parse_factors(text: str) -> list[str]:
    """``"dose,probe"`` -> ``["dose", "source_sigma", "defocus", "convergence"]`` (order kept)."""
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        if not name:
            continue
        if name in GROUPS:
            out += [f for f in GROUPS[name] if f not in out]
        elif name in FACTORS or any(name == field for field, _ in FACTORS.values()):
            name = name if name in FACTORS else next(k for k, (f, _) in FACTORS.items() if f == name)
            if name not in out:
                out.append(name)
        else:
            raise SystemExit(f"unknown factor {name!r}; known: {', '.join(FACTORS)} "
                             f"(groups: {', '.join(GROUPS)})")
    if not out:
        raise SystemExit("no factors selected")
    return out


def parse_values(items: list[str]) -> dict[str, tuple[float, ...]]:
    """``["dose=10,100"]`` -> ``{"dose": (10.0, 100.0)}``."""
    out = {}
    for item in items:
        name, sep, vals = item.partition("=")
        name = name.strip()
        if not sep or name not in FACTORS:
            raise SystemExit(f"--values wants FACTOR=v1,v2,... with FACTOR one of {', '.join(FACTORS)}; "
                             f"got {item!r}")
        try:
            out[name] = tuple(float(v) for v in vals.split(",") if v.strip())
        except ValueError:
            raise SystemExit(f"--values {item!r}: values must be numbers") from None
        if not out[name]:
            raise SystemExit(f"--values {item!r}: no values")
    return out


def in_range(value: float, low: float, high: float) -> bool:
    """Whether ``value`` lies in the training range ``[low, high]`` (ends included)."""
    tol = 1e-9 * max(abs(low), abs(high), 1.0)
    return low - tol <= value <= high + tol


def score_image(sample, result, *, class_names, n_layers: int, dopant) -> dict:
    """Per-image metrics, computed as `gombnet evaluate` does (border exclusion, 0.5 Å radius)."""
    from gombnet.demo import best_atom_assignment
    from gombnet.evaluate import inside_border

    px = float(sample.params["pixel_size_angstrom"])
    h, w = sample.image.shape
    found = {k: result.atoms[k] for k in ("channel", "x_px", "y_px", "score")}
    border_px = RADIUS_ANGSTROM / px
    found = inside_border(found, h, w, border_px)
    columns = inside_border(sample.columns, h, w, border_px)
    m = best_atom_assignment(found, columns, n_layers=n_layers, class_names=class_names,
                             radius_px=RADIUS_ANGSTROM / px, pixel_size_angstrom=px, dopant_class=dopant)
    out = {"layer_perm": m["layer_perm"], "n_pred": m["n_pred"], "n_true": m["n_true"],
           "f1": {}, "precision": {}, "recall": {}, "detection_f1": {}, "species_accuracy": {},
           "rmse_angstrom": m["overall"]["rmse_angstrom"], "f1_overall": m["overall"]["f1"]}
    for layer in range(n_layers):
        key = f"layer{layer}"
        s = m["per_layer"][key]
        out["f1"][key], out["precision"][key], out["recall"][key] = s["f1"], s["precision"], s["recall"]
        # species-agnostic detection from the confusion matching (same layer order)
        mat = np.asarray(m["confusion"][key]["matrix"])
        matched, spurious, missed = mat[:-1, :-1].sum(), mat[-1, :-1].sum(), mat[:-1, -1].sum()
        den = 2 * matched + spurious + missed
        out["detection_f1"][key] = float(2 * matched / den) if den else float("nan")
        out["species_accuracy"][key] = m["confusion"][key]["species_accuracy"]
    return out


def _median(values) -> float:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def summarize(per_image: list[dict], n_layers: int) -> dict:
    """Medians over images of the per-image metrics."""
    layers = [f"layer{i}" for i in range(n_layers)]
    ok = [r for r in per_image if "error" not in r]
    return {
        "f1": {k: _median(r["f1"][k] for r in ok) for k in layers},
        "detection_f1": {k: _median(r["detection_f1"][k] for r in ok) for k in layers},
        "species_accuracy": {k: _median(r["species_accuracy"][k] for r in ok) for k in layers},
        "rmse_angstrom": _median(r["rmse_angstrom"] for r in ok),
        "f1_overall": _median(r["f1_overall"] for r in ok),
        "n_ok": len(ok),
    }


def run_value(base, field: str | None, value: float | None, *, model, seeds, size_px: int, device,
              class_names, n_layers: int, dopant) -> list[dict]:
    """Simulate, predict and score one image per seed with ``field`` fixed to ``value``."""
    from gombnet.errors import GombnetError
    from gombnet.inference.predict import predict
    from gombnet.simulation import simulate_sample

    preset = base if field is None else dataclasses.replace(base, **{field: (value, value)})
    rows = []
    for seed in seeds:
        try:
            sample = simulate_sample(preset, np.random.default_rng(seed), image_size_px=size_px)
            px = float(sample.params["pixel_size_angstrom"])
            result = predict(sample.image, model, pixel_size_angstrom=px, device=device)
            row = {"seed": int(seed), "pixel_size_angstrom": px,
                   **score_image(sample, result, class_names=class_names, n_layers=n_layers, dopant=dopant)}
            if field is not None:
                row["drawn"] = float(sample.params[field])  # the value the simulator really used
        except GombnetError as exc:  # e.g. a pixel size too far from the model's: record, go on
            row = {"seed": int(seed), "error": str(exc)}
        rows.append(row)
    return rows


def _fmt(v: float, width: int, digits: int = 3) -> str:
    return f"{v:{width}.{digits}f}" if v is not None and math.isfinite(v) else f"{'-':>{width}s}"


def _fmt_value(v) -> str:
    if v is None:
        return "-"
    return f"{v:g}"


def print_table(rows: list[dict], n_layers: int, multi_class: bool) -> None:
    layers = [f"layer{i}" for i in range(n_layers)]
    head = (f"{'factor':13s} {'parameter':31s} {'value':>8s} {'training range':>17s} {'range':>5s} "
            + " ".join(f"{'F1 L' + str(i):>6s}" for i in range(n_layers)) + f" {'RMSE Å':>7s}")
    if multi_class:
        head += " " + " ".join(f"{'det L' + str(i):>6s}" for i in range(n_layers))
        head += " " + " ".join(f"{'spc L' + str(i):>6s}" for i in range(n_layers))
    head += f" {'n':>3s}"
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last is not None and r["factor"] != last:
            print()
        last = r["factor"]
        med = r["median"]
        lo_hi = r["training_range"]
        rng_txt = "-" if lo_hi is None else f"[{lo_hi[0]:g}, {lo_hi[1]:g}]"
        where = "-" if r["in_training_range"] is None else ("in" if r["in_training_range"] else "OUT")
        line = (f"{r['factor']:13s} {r['parameter'] or '(demo conditions)':31s} {_fmt_value(r['value']):>8s} "
                f"{rng_txt:>17s} {where:>5s} "
                + " ".join(_fmt(med["f1"][k], 6) for k in layers) + f" {_fmt(med['rmse_angstrom'], 7)}")
        if multi_class:
            line += " " + " ".join(_fmt(med["detection_f1"][k], 6) for k in layers)
            line += " " + " ".join(_fmt(med["species_accuracy"][k], 6) for k in layers)
        line += f" {med['n_ok']:3d}"
        if med["n_ok"] < r["n_images"]:
            line += f"  ({r['n_images'] - med['n_ok']} failed: {r['errors'][0]})"
        print(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="graphene", help="shipped model name, run folder or model file")
    ap.add_argument("--preset", default=None,
                    help="simulation preset (built-in name or .toml); default: the preset the model was trained on")
    ap.add_argument("--n", type=int, default=6, help="images per value (default 6)")
    ap.add_argument("--size", type=int, default=256, help="image size [px] (default 256)")
    ap.add_argument("--seed", type=int, default=0, help="first seed; images use seed .. seed+n-1")
    ap.add_argument("--factors", default="all",
                    help=f"comma-separated factors or groups (default all): {', '.join(FACTORS)}; "
                         f"groups {', '.join(g for g in GROUPS if g != 'all')}")
    ap.add_argument("--values", action="append", default=[], metavar="FACTOR=v1,v2,...",
                    help="replace a factor's values (repeatable)")
    ap.add_argument("--no-demo-row", action="store_true", help="skip the unchanged demo-conditions row")
    ap.add_argument("--device", default=None, help="torch device (default cpu)")
    ap.add_argument("--json", default=None, help="save every number to this JSON file")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = ap.parse_args(argv)

    factors = parse_factors(args.factors)
    overrides = parse_values(args.values)
    if args.n < 1:
        raise SystemExit("--n must be >= 1")

    import torch

    from gombnet.atomic import check_output_path, write_text_atomic
    from gombnet.demo import DEMO_CONDITIONS
    from gombnet.errors import GombnetError
    from gombnet.evaluate import dopant_class
    from gombnet.jsonio import dumps
    from gombnet.nn.checkpoint import load_model
    from gombnet.simulation import load_preset
    from gombnet.simulation.presets import list_presets

    try:
        if args.json:
            check_output_path(args.json, overwrite=args.overwrite)
        model = load_model(args.model, device=args.device or "cpu")
        config = model.gombnet_config
        preset_name = args.preset or (config.get("data") or {}).get("preset")
        if not preset_name:
            raise GombnetError(f"model {args.model} does not name its training preset; pass --preset")
        if preset_name not in list_presets() and not str(preset_name).lower().endswith(".toml"):
            raise GombnetError(f"preset {preset_name!r} is not built in; pass --preset NAME_OR_TOML")
        training = load_preset(preset_name)
    except GombnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    class_names = list(config["class_names"])
    n_layers = int(config["n_layers"])
    if list(training.class_names) != class_names or training.n_layers != n_layers:
        print(f"error: model classes {class_names} x {n_layers} layers do not match preset {training.name}'s "
              f"{list(training.class_names)} x {training.n_layers} layers", file=sys.stderr)
        return 2
    base = dataclasses.replace(training, **DEMO_CONDITIONS)
    dopant = dopant_class(class_names)
    seeds = list(range(args.seed, args.seed + args.n))

    plan: list[tuple[str, str | None, float | None]] = [] if args.no_demo_row else [("demo", None, None)]
    for name in factors:
        field, values = FACTORS[name]
        plan += [(name, field, float(v)) for v in overrides.get(name, values)]

    print(f"robustness of {args.model} (model pixel size {float(config['pixel_size_angstrom']):.4f} Å/px) on "
          f"{training.name}: {len(plan)} settings x {args.n} images of {args.size} px, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    t_start = time.perf_counter()
    rows = []
    for i, (name, field, value) in enumerate(plan, 1):
        t0 = time.perf_counter()
        per_image = run_value(base, field, value, model=model, seeds=seeds, size_px=args.size,
                              device=args.device, class_names=class_names, n_layers=n_layers, dopant=dopant)
        lo_hi = None if field is None else tuple(float(v) for v in getattr(training, field))
        med = summarize(per_image, n_layers)
        row = {"factor": name, "parameter": field, "value": value,
               "training_range": None if lo_hi is None else list(lo_hi),
               "in_training_range": None if lo_hi is None else in_range(value, *lo_hi),
               "demo_range": None if field is None else list(getattr(base, field)),
               "n_images": len(per_image), "median": med, "per_image": per_image,
               "errors": [r["error"] for r in per_image if "error" in r],
               "seconds": round(time.perf_counter() - t0, 2)}
        rows.append(row)
        f1 = "/".join(_fmt(med["f1"][f"layer{k}"], 0) for k in range(n_layers))
        where = "" if lo_hi is None else (" (in range)" if row["in_training_range"] else " (OUT of range)")
        print(f"[{i}/{len(plan)}] {name} {field or '(demo conditions)'} = {_fmt_value(value)}{where}: "
              f"median F1 {f1}, RMSE {_fmt(med['rmse_angstrom'], 0)} Å, {med['n_ok']}/{len(per_image)} images "
              f"({row['seconds']:.1f} s)", flush=True)
    total = time.perf_counter() - t_start

    print()
    print(f"median over {args.n} images (seeds {seeds[0]}..{seeds[-1]}, {args.size} px) of atom F1 per layer "
          f"(species must match) and RMSE [Å] of matched atoms; radius {RADIUS_ANGSTROM} Å, border excluded")
    print_table(rows, n_layers, multi_class=len(class_names) > 1)
    print(f"\n{total:.0f} s in all", flush=True)

    if args.json:
        meta = {"model": str(args.model), "model_pixel_size_angstrom": float(config["pixel_size_angstrom"]),
                "model_training_data": config.get("data"), "preset": training.name, "preset_source": training.source,
                "class_names": class_names, "n_layers": n_layers, "n_images": args.n, "size_px": args.size,
                "seeds": seeds, "radius_angstrom": RADIUS_ANGSTROM, "threshold": 0.5,
                "demo_conditions": {k: list(v) if isinstance(v, tuple) else v for k, v in DEMO_CONDITIONS.items()},
                "factors": {name: {"parameter": FACTORS[name][0], "values": list(overrides.get(name, FACTORS[name][1]))}
                            for name in factors},
                "torch_threads": torch.get_num_threads(), "device": args.device or "cpu",
                "python": platform.python_version(), "torch": torch.__version__,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "seconds": round(total, 1)}
        write_text_atomic(args.json, dumps({"meta": meta, "rows": rows}), overwrite=args.overwrite)
        print(f"saved {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gombnet demo``: simulate typical images, find their atoms with the shipped models,
analyse them and compare with the simulation's ground truth - offline, on a laptop CPU."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import check
from .metrics import atom_metrics, layer_permutations

# a typical experiment rather than the training set's extremes: 60 kV probe-corrected
# Spectra-like conditions at a moderate dose, a large twist, no holes
DEMO_CONDITIONS = dict(
    twist_deg=(10.0, 50.0), small_twist_probability=0.0, n_holes=(0, 0), edge_probability=0.0,
    energy_kev=(60.0, 60.0), convergence_mrad=(30.0, 30.0), pixel_size_angstrom=(0.106, 0.106),
    dose_counts_per_px=(2000.0, 2000.0), background_amplitude=(0.0, 0.2), probe_tail_fraction=(0.0, 0.1),
    jitter_sigma_angstrom=(0.0, 0.02), amorphous_carbon_per_angstrom2=(0.0, 0.02),
)
DEMO_MODELS = ("graphene", "ws2-wsse")


def best_atom_assignment(found: dict, columns: dict, *, n_layers: int, class_names, radius_px: float,
                         pixel_size_angstrom: float, dopant_class: str | None = None,
                         dopant_sites=None) -> dict:
    """Atom metrics under the layer assignment (predicted -> true layer) with the best F1.

    For comparing atom tables when no masks are at hand; one assignment for all metrics.
    ``dopant_class`` and ``dopant_sites`` as in :func:`gombnet.metrics.atom_metrics`.
    """
    best = None
    for perm in layer_permutations(n_layers):
        m = atom_metrics(found, columns, n_layers=n_layers, class_names=class_names, radius_px=radius_px,
                         pixel_size_angstrom=pixel_size_angstrom, layer_perm=perm, dopant_class=dopant_class,
                         dopant_sites=dopant_sites)
        if best is None or m["overall"]["f1"] > best["overall"]["f1"]:
            best = m
    return best


def demo_image(preset_name: str, *, seed: int, size_px: int = 512):
    """One simulated image of typical experimental conditions, with its ground truth."""
    from .simulation import load_preset, simulate_sample

    preset = dataclasses.replace(load_preset(preset_name), **DEMO_CONDITIONS)
    return simulate_sample(preset, np.random.default_rng(seed), image_size_px=size_px)


def run_demo(out: str | os.PathLike = "gombnet-demo", *, seed: int = 0, overwrite: bool = False,
             size_px: int = 512, echo=print) -> dict:
    """Simulate, predict, analyse and score one image per shipped demo model.

    Returns
    -------
    dict
        Per model: atom counts per layer, headline analysis numbers and the atom F1 per
        layer against the simulation's ground truth.
    """
    import time

    from .analysis.report import analyze_folder
    from .evaluate import dopant_class
    from .inference.predict import predict
    from .nn.checkpoint import list_shipped_models, load_model
    from .report.outputs import write_prediction

    available = [m for m in DEMO_MODELS if m in list_shipped_models()]
    check(len(available) > 0, "no shipped models in this installation; train one with `gombnet train`")
    out = Path(out)
    summary = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name in available:
            t0 = time.perf_counter()
            model = load_model(name)
            sample = demo_image(name, seed=seed, size_px=size_px)
            px = float(sample.params["pixel_size_angstrom"])
            result = predict(sample.image, model, pixel_size_angstrom=px)
            folder = tmp / name
            write_prediction(folder, sample.image, result, source={"source": f"simulated {name} demo image",
                                                                   "seed": seed, "params": sample.params},
                             model_name=name)
            analysis = analyze_folder(folder, seed=seed)
            class_names = list(model.gombnet_config["class_names"])
            found = {k: result.atoms[k] for k in ("channel", "x_px", "y_px", "score")}
            metrics = best_atom_assignment(found, sample.columns, n_layers=result.n_layers,
                                           class_names=class_names, radius_px=0.5 / px, pixel_size_angstrom=px,
                                           dopant_class=dopant_class(class_names))
            seconds = time.perf_counter() - t0
            summary[name] = {"counts": result.counts(), "headline": analysis["headline"],
                             "f1_per_layer": {k: v["f1"] for k, v in metrics["per_layer"].items()},
                             "rmse_angstrom": metrics["overall"]["rmse_angstrom"], "seconds": seconds}
            echo(f"{name}: twist {sample.params['twist_deg']:.1f}° simulated, {px:.3f} Å/px, "
                 f"{sample.image.shape[1]}x{sample.image.shape[0]} px")
            echo(f"  found: {analysis['headline']}")
            f1 = ", ".join(f"{k} {v:.3f}" for k, v in summary[name]["f1_per_layer"].items())
            echo(f"  accuracy against the simulation: atom F1 {f1}; RMSE {metrics['overall']['rmse_angstrom']:.3f} Å "
                 f"({seconds:.1f} s)")
    echo(f"atoms.csv, overlays, analyses and report.html written to {out}/")
    return summary

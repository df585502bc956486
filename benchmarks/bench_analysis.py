"""Physics measured from predictions against the simulation's truth.

Simulates images of typical experimental conditions (``gombnet.demo.DEMO_CONDITIONS``: 60 kV,
30 mrad, 2000 counts/px, twist 10-50 deg, scan drift up to 1 %) with known atoms, runs a
model, and compares with the truth: graphene C-C bond length and lattice constant per layer
(truth: the drawn lattice constant, bond = a/sqrt(3)), twist angle (folded to 0-30 deg);
WS2-WSSe W-W lattice constant, twist and Se fraction per layer.

    python benchmarks/bench_analysis.py --model graphene --preset graphene --n 8
    python benchmarks/bench_analysis.py --model ws2-wsse --preset ws2-wsse --n 8
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from gombnet.analysis import bonds, composition, lattice
from gombnet.demo import demo_image
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model


def fold_twist(deg: float) -> float:
    t = deg % 60.0
    return min(t, 60.0 - t)


def positions(atoms, layer, species):
    sel = (atoms["layer"] == layer) & np.isin(atoms["species"], species)
    return np.column_stack([atoms["x_angstrom"][sel], atoms["y_angstrom"][sel]])


def match_layers(measured_a, true_a):
    """Predicted layer order is arbitrary: pair by the closer lattice constants."""
    straight = abs(measured_a[0] - true_a[0]) + abs(measured_a[1] - true_a[1])
    swapped = abs(measured_a[0] - true_a[1]) + abs(measured_a[1] - true_a[0])
    return (0, 1) if straight <= swapped else (1, 0)


def model_arguments(doc: str) -> argparse.ArgumentParser:
    """--model, --preset, --n (images), --size (px): the arguments of the simulated-image benchmarks."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="graphene")
    ap.add_argument("--preset", default="graphene")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    return ap


def main() -> None:
    args = model_arguments(__doc__).parse_args()
    model = load_model(args.model)
    tmd = args.preset != "graphene"
    err = {"a": [], "bond": [], "twist": [], "x": []}
    for seed in range(args.n):
        s = demo_image(args.preset, seed=1000 + seed, size_px=args.size)
        px = s.params["pixel_size_angstrom"]
        h, w = s.image.shape
        box = (-0.5 * px, -0.5 * px, (w - 0.5) * px, (h - 0.5) * px)
        atoms = predict(s.image, model, pixel_size_angstrom=px).atoms
        true_a = [s.params[f"lattice_constant_angstrom_layer{k}"] for k in range(2)]
        species = ["W"] if tmd else ["C"]
        kind = "triangular" if tmd else "honeycomb"
        meas = []
        for k in range(2):
            m = lattice.measure_lattice(positions(atoms, k, species), kind=kind, field_of_view_angstrom=box)
            meas.append(m.a_angstrom)
        order = match_layers(meas, true_a)
        line = f"seed {1000 + seed}: "
        for k in range(2):
            a_m, a_t = meas[order[k]], true_a[k]
            err["a"].append(a_m - a_t)
            line += f"a{k} {a_m:.3f}/{a_t:.3f} "
            if not tmd:
                d = bonds.nearest_neighbor_distances(positions(atoms, order[k], species), max_distance_angstrom=1.75,
                                                     edge_exclusion_angstrom=2.0, field_of_view_angstrom=box)
                b = bonds.bond_statistics(d)
                err["bond"].append(b.mean - a_t / math.sqrt(3))
                line += f"CC{k} {b.mean:.3f}/{a_t / math.sqrt(3):.3f} (FWHM {b.fwhm:.3f}) "
            else:
                counts = {c: int(np.sum((atoms["layer"] == order[k]) & (atoms["species"] == c)))
                          for c in ("S2", "SSe")}
                x = composition.se_fraction(counts["S2"], counts["SSe"]).x
                x_t = s.params[f"se_fraction_layer{k}"]
                err["x"].append(x - x_t)
                line += f"x{k} {x:.3f}/{x_t:.3f} "
        tw = lattice.twist_angle(positions(atoms, 0, species), positions(atoms, 1, species), kind=kind).twist_deg
        tw_t = fold_twist(s.params["twist_deg"])
        err["twist"].append(tw - tw_t)
        print(line + f"twist {tw:.2f}/{tw_t:.2f} deg", flush=True)
    print(f"\n{args.n} images of {args.size} px, model {args.model}: median |measured - true|")
    for key, unit in (("a", "Å"), ("bond", "Å"), ("twist", "deg"), ("x", "")):
        if err[key]:
            v = np.abs(err[key])
            print(f"  {key:6s} median {np.median(v):.4f} {unit}, max {v.max():.4f} {unit}, "
                  f"mean signed {np.mean(err[key]):+.4f} {unit}")


if __name__ == "__main__":
    main()

"""AA / AB / BA / SP stacking maps of small-twist graphene from predictions against the truth.

Simulates images of typical experimental conditions (``gombnet.demo.DEMO_CONDITIONS``) at fixed
small twists, runs a model, and compares ``gombnet.analysis.graphene_stacking`` on its atoms
with the same map from the true columns: the area share of each class, and the share of
pixels given the same class (AB and BA are named by a sublattice convention of each map, so the
better of the two namings counts).

    python benchmarks/bench_graphene_stacking.py --model graphene --n 3 --twists 1,2,3,5,8
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench_analysis import model_arguments  # benchmarks/ is on the path when run as a script
from gombnet.analysis.graphene_stacking import STACKING_CLASSES, graphene_stacking_map, stacking_fractions
from gombnet.demo import DEMO_CONDITIONS
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model
from gombnet.simulation import load_preset, simulate_sample


def agreement(true_reg: np.ndarray, pred_reg: np.ndarray) -> float:
    swapped = pred_reg.copy()
    swapped[pred_reg == 1], swapped[pred_reg == 2] = 2, 1
    ok = (true_reg >= 0) & (pred_reg >= 0)
    return max(float(np.mean(true_reg[ok] == pred_reg[ok])), float(np.mean(true_reg[ok] == swapped[ok])))


def main() -> None:
    ap = model_arguments(__doc__)
    ap.add_argument("--twists", default="1,2,3,5,8", help="comma-separated twist angles [deg]")
    args = ap.parse_args()
    model = load_model(args.model)
    print(f"{'twist':>6} {'seed':>5}  " + "  ".join(f"{c:>11}" for c in STACKING_CLASSES) + "  agreement")
    summary = []
    for twist in (float(t) for t in args.twists.split(",")):
        preset = dataclasses.replace(load_preset(args.preset), **{**DEMO_CONDITIONS, "twist_deg": (twist, twist)})
        scores = []
        for seed in range(args.n):
            s = simulate_sample(preset, np.random.default_rng(3000 + seed), image_size_px=args.size)
            px, c = s.params["pixel_size_angstrom"], s.columns
            truth = [np.column_stack([c["x_px"][c["layer"] == k], c["y_px"][c["layer"] == k]]) * px for k in (0, 1)]
            atoms = predict(s.image, model, pixel_size_angstrom=px).atoms
            found = [np.column_stack([atoms["x_angstrom"][atoms["layer"] == k], atoms["y_angstrom"][atoms["layer"] == k]])
                     for k in (0, 1)]
            t_reg = graphene_stacking_map(*truth, s.image.shape, px)["registry"]
            p_reg = graphene_stacking_map(*found, s.image.shape, px)["registry"]
            ft, fp = stacking_fractions(t_reg), stacking_fractions(p_reg)
            scores.append(agreement(t_reg, p_reg))
            cells = "  ".join(f"{100 * fp[k]:4.0f}/{100 * ft[k]:3.0f} %" for k in STACKING_CLASSES)
            print(f"{twist:6.1f} {3000 + seed:5d}  {cells}  {scores[-1]:.3f}", flush=True)
        summary.append((twist, float(np.median(scores))))
    print(f"\n{args.size} px images, model {args.model}; class shares found / true; median pixel agreement:")
    print("  " + ", ".join(f"{t:g}°: {a:.3f}" for t, a in summary))


if __name__ == "__main__":
    main()

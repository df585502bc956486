"""The lattice checks of the layers, scored per image: none, bond order only, bond order + local
rotation, and that + the site check of single atoms.

``gombnet predict`` hands regions whose layers the network swapped back
(:func:`gombnet.inference.layers.lattice_layer_assignment`): by the atoms' bond orientations when
the layers are 8° or more apart, else by each layer's local lattice rotation; then it gives single
atoms to the layer whose fitted honeycomb they sit on
(:func:`gombnet.inference.lattice_sites.lattice_site_assignment`; on large fields in cells, a cell the
network swapped as a whole named after its neighbours). This runs the model
once per image (``lattice_layers=False``), applies the variants to the same atoms and scores
each against the true columns (atom F1 under the best layer assignment, matched within 0.5 Å).

Images: either simulated at fixed twists under typical conditions (``gombnet.demo.DEMO_CONDITIONS``)

    python benchmarks/bench_layer_check.py --model graphene --preset graphene --twists 1,2,3,4,6,7,9,12,20,30 --n 4

or every image of a dataset file from ``gombnet simulate``

    python benchmarks/bench_layer_check.py --model graphene --data seed22.h5
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench_analysis import model_arguments  # benchmarks/ is on the path when run as a script
from gombnet.data import read_dataset
from gombnet.demo import DEMO_CONDITIONS, best_atom_assignment
from gombnet.inference.lattice_sites import lattice_site_assignment
from gombnet.inference.layers import lattice_layer_assignment
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model
from gombnet.simulation import load_preset, simulate_sample

VARIANTS = ("none", "bond order", "bond order + local rotation", "+ site check")


def images(args):
    """(label, image, columns, pixel size [Å/px], twist [deg]) for each image."""
    if args.data:
        ds = read_dataset(args.data)
        for i in range(len(ds.images)):
            yield f"{i}", ds.images[i], ds.columns_of(i), ds.pixel_size_angstrom(i), float(ds.params["twist_deg"][i])
        return
    for twist in (float(t) for t in args.twists.split(",")):
        preset = dataclasses.replace(load_preset(args.preset), **{**DEMO_CONDITIONS, "twist_deg": (twist, twist)})
        for seed in range(args.n):
            s = simulate_sample(preset, np.random.default_rng(3000 + seed), image_size_px=args.size)
            yield f"{twist:g}° seed {3000 + seed}", s.image, s.columns, s.params["pixel_size_angstrom"], twist


def main() -> None:
    ap = model_arguments(__doc__)
    ap.add_argument("--twists", default="1,2,3,4,6,7,9,12,20,30", help="comma-separated twists [deg]")
    ap.add_argument("--data", help="score every image of this dataset file instead")
    args = ap.parse_args()
    model = load_model(args.model)
    scores = []
    print(f"{'image':>16} {'twist':>6}  " + "  ".join(f"{v:>26}" for v in VARIANTS) + "  method, atoms moved")
    for label, image, columns, px, twist in images(args):
        p = predict(image, model, pixel_size_angstrom=px, lattice_layers=False)
        atoms, cpl = p.atoms, len(p.class_names)
        layer, cls = atoms["layer"].astype(int), atoms["channel"] % cpl
        lattice = cls == 0  # the first class of each layer is its lattice (C; W)
        x, y = atoms["x_px"], atoms["y_px"]
        everyone = np.ones(len(x), bool)
        variants = [(layer, everyone),
                    (lattice_layer_assignment(x, y, layer, lattice, min_rotation_twist_deg=None)[0], everyone)]
        full, info = lattice_layer_assignment(x, y, layer, lattice)
        variants.append((full, everyone))
        sites, keep, _ = lattice_site_assignment(x, y, full, pixel_size_angstrom=px, n_layers=p.n_layers)
        variants.append((sites, keep))
        row = []
        for lay, keep in variants:
            found = {"channel": (lay * cpl + cls)[keep], "x_px": x[keep], "y_px": y[keep]}
            m = best_atom_assignment(found, columns, n_layers=p.n_layers, class_names=p.class_names,
                                     radius_px=0.5 / px, pixel_size_angstrom=px)
            row.append(m["overall"]["f1"])
        scores.append((twist, row))
        print(f"{label:>16} {twist % 60:6.1f}  " + "  ".join(f"{f:26.4f}" for f in row)
              + f"  {info['method'] if info['applied'] else '-'}, {info['n_moved']}", flush=True)
    f1 = np.array([r for _, r in scores])
    print(f"\n{len(scores)} images, model {args.model}: atom F1 {' / '.join(VARIANTS)}")
    print(f"  mean {' / '.join(f'{v:.4f}' for v in f1.mean(0))}; median {' / '.join(f'{v:.4f}' for v in np.median(f1, 0))}")
    for lo, hi in ((0, 10), (10, 50), (50, 60.01)):
        sel = np.array([lo <= t % 60 < hi for t, _ in scores])
        if sel.any():
            print(f"  twist {lo}-{hi:g}° ({sel.sum()} images): mean {' / '.join(f'{v:.4f}' for v in f1[sel].mean(0))}")
    worse = int(np.sum(f1[:, 2] < f1[:, 1] - 1e-3))
    print(f"  images the local rotation made worse by more than 0.001: {worse}")
    worse = int(np.sum(f1[:, 3] < f1[:, 2] - 1e-3))
    better = int(np.sum(f1[:, 3] > f1[:, 2] + 1e-3))
    print(f"  images the site check made better / worse by more than 0.001: {better} / {worse}")


if __name__ == "__main__":
    main()

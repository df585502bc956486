"""Scan distortion, heterostrain and local twist measured from predictions against the truth.

Simulates images of typical experimental conditions (``gombnet.demo.DEMO_CONDITIONS``) with a
scan drift drawn in ``[-DRIFT, DRIFT]`` (x shift per row and stretch along y), runs a model
and compares ``gombnet.analysis.strain`` on its atoms with the truth:

* the distortion common to both layers against the drift matrix's (symmetric part with unit
  determinant: exx, eyy, exy in %);
* the heterostrain: the simulator strains each layer isotropically, so the isotropic part is
  ``a1 / a0 - 1`` and the anisotropic part 0;
* the spread of the local twist and of each layer's local rotation: the simulated twist is
  uniform, so these are the maps' noise floor (beside the local-twist spread of the true
  columns, which carry thermal displacements); ``--twist 2`` measures it near aligned stacking;
* (graphene) the C-C FWHM before and after removing the common distortion, for the model's
  atoms and for the true columns.

    python benchmarks/bench_strain.py --model graphene --preset graphene --n 8
    python benchmarks/bench_strain.py --model ws2-wsse --preset ws2-wsse --n 8
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.linalg import sqrtm

from bench_analysis import model_arguments  # benchmarks/ is on the path when run as a script
from gombnet.analysis import bonds
from gombnet.analysis.strain import deformation_maps, lattice_distortion
from gombnet.demo import DEMO_CONDITIONS
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model
from gombnet.simulation import load_preset, simulate_sample


def true_distortion(shear: float, stretch: float) -> np.ndarray:
    """exx, eyy, exy [%] of the drift matrix's symmetric part with unit determinant."""
    d = np.array([[1.0, shear], [0.0, 1.0 + stretch]])
    u = np.real(sqrtm(d.T @ d))
    u /= np.sqrt(np.linalg.det(u))
    return 100.0 * np.array([u[0, 0] - 1.0, u[1, 1] - 1.0, u[0, 1]])


def layer_positions(x, y, layer, sel):
    return [np.column_stack([x[sel & (layer == k)], y[sel & (layer == k)]]) for k in range(2)]


def fwhm(layers, box, distortion=None):
    centre = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))
    out = []
    for pos in layers:
        if distortion is not None:
            pos = distortion.undistort(pos, centre)
        d = bonds.nearest_neighbor_distances(pos, max_distance_angstrom=1.75, edge_exclusion_angstrom=2.0,
                                             field_of_view_angstrom=box)
        out.append(bonds.bond_statistics(d).fwhm)
    return out


def main() -> None:
    ap = model_arguments(__doc__)
    ap.add_argument("--drift", type=float, default=0.03, help="drift shear and stretch drawn in [-DRIFT, DRIFT]")
    ap.add_argument("--dose", type=float, default=DEMO_CONDITIONS["dose_counts_per_px"][0], help="counts per pixel")
    ap.add_argument("--twist", type=float, help="a fixed twist [deg] instead of the demo's 10-50")
    args = ap.parse_args()
    model = load_model(args.model)
    conditions = {**DEMO_CONDITIONS, "dose_counts_per_px": (args.dose,) * 2}
    if args.twist is not None:
        conditions["twist_deg"] = (args.twist, args.twist)
    preset = dataclasses.replace(load_preset(args.preset), **conditions,
                                 drift_shear=(-args.drift, args.drift), drift_stretch=(-args.drift, args.drift))
    graphene = args.preset == "graphene"
    species, kind = ("C", "honeycomb") if graphene else ("W", "triangular")
    rows = []
    for seed in range(args.n):
        s = simulate_sample(preset, np.random.default_rng(2000 + seed), image_size_px=args.size)
        px = s.params["pixel_size_angstrom"]
        h, w = s.image.shape
        box = (-0.5 * px, -0.5 * px, (w - 0.5) * px, (h - 0.5) * px)
        atoms = predict(s.image, model, pixel_size_angstrom=px).atoms
        found = layer_positions(atoms["x_angstrom"], atoms["y_angstrom"], atoms["layer"], atoms["species"] == species)
        c = s.columns
        cls = preset.class_names.index(species)
        truth = layer_positions(c["x_px"] * px, c["y_px"] * px, c["layer"], c["class"] == cls)
        dist = lattice_distortion(found, kind=kind, field_of_view_angstrom=box)
        maps = deformation_maps(found, kind=kind, field_of_view_angstrom=box).summary()
        want = true_distortion(s.params["drift_shear"], s.params["drift_stretch"])
        got = np.array([dist.common[k] for k in ("exx", "eyy", "exy")])
        a = [s.params[f"lattice_constant_angstrom_layer{k}"] for k in range(2)]
        # the predicted layer order is arbitrary: the isotropic heterostrain's sign follows it
        iso_true = 100.0 * (a[1] / a[0] - 1.0)
        truth_maps = deformation_maps(truth, kind=kind, field_of_view_angstrom=box).summary()
        row = {
            "twist_std_truth": truth_maps["local_twist_deg"]["std"],
            "distortion_err": float(np.max(np.abs(got - want))),
            "max_shear_true": float(np.hypot(0.5 * (want[0] - want[1]), want[2])),
            "iso_err": abs(abs(dist.heterostrain["isotropic"]) - abs(iso_true)),
            "hetero_shear": dist.heterostrain["max_shear"],
            "twist_std": maps["local_twist_deg"]["std"],
            "rotation_std": np.mean([la["rotation_deg"]["std"] for la in maps["layers"].values()]),
        }
        line = (f"seed {2000 + seed}: drift exx/eyy/exy {want[0]:+.2f}/{want[1]:+.2f}/{want[2]:+.2f} % "
                f"found {got[0]:+.2f}/{got[1]:+.2f}/{got[2]:+.2f}; heterostrain iso {dist.heterostrain['isotropic']:+.2f} "
                f"(true +-{abs(iso_true):.2f}) shear {row['hetero_shear']:.2f} %; local twist std "
                f"{row['twist_std']:.3f} deg, rotation std {row['rotation_std']:.3f} deg")
        if graphene:
            true_dist = lattice_distortion(truth, kind=kind, field_of_view_angstrom=box)
            row["fwhm"] = fwhm(found, box) + fwhm(found, box, dist)
            row["fwhm_truth"] = fwhm(truth, box) + fwhm(truth, box, true_dist)
            f, t = row["fwhm"], row["fwhm_truth"]
            line += (f"; C-C FWHM {f[0]:.3f}/{f[1]:.3f} -> {f[2]:.3f}/{f[3]:.3f} A "
                     f"(true columns {t[0]:.3f}/{t[1]:.3f} -> {t[2]:.3f}/{t[3]:.3f})")
        print(line, flush=True)
        rows.append(row)
    print(f"\n{args.n} images of {args.size} px, {args.dose:g} counts/px, model {args.model}, "
          f"drift up to {100 * args.drift:.0f} %: medians")
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if not isinstance(rows[0][k], list)}
    print(f"  common distortion: largest component error {med['distortion_err']:.3f} % "
          f"(true max shear {med['max_shear_true']:.2f} %)")
    print(f"  heterostrain: isotropic error {med['iso_err']:.3f} %, anisotropic (true 0) {med['hetero_shear']:.3f} %")
    print(f"  noise floor: local twist std {med['twist_std']:.3f} deg (true columns {med['twist_std_truth']:.3f} deg), "
          f"local rotation std {med['rotation_std']:.3f} deg")
    if graphene:
        f = np.median([r["fwhm"] for r in rows], axis=0)
        t = np.median([r["fwhm_truth"] for r in rows], axis=0)
        print(f"  C-C FWHM, model atoms: {np.mean(f[:2]):.3f} A -> {np.mean(f[2:]):.3f} A without the distortion; "
              f"true columns: {np.mean(t[:2]):.3f} -> {np.mean(t[2:]):.3f} A")


if __name__ == "__main__":
    main()

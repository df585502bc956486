"""Shipped models on images from an independent simulator: full multislice (abTEM).

gombnet's own simulator, on which the models were trained, forms an image as the probe
intensity convolved with per-atom projected potentials raised to a power (incoherent, linear
imaging). A full multislice calculation also has channelling along columns, cross-talk between
the two layers' columns, the real annular-detector signal and the exact probe. This script
builds twisted bilayer graphene, or twisted WS2 on WS2(1-x)Se2x, with ASE (not with gombnet's
structure code; for ws2-wsse, layer 1 has one Se in a share 2x of its chalcogen columns, a
Vegard lattice constant, and layer 0 none), computes HAADF
images with abTEM's PRISM multislice, adds source-size blur and Poisson noise, runs a model and
scores its atoms against the true positions (one layer assignment per image, matched within
0.5 Å), and measures C-C bonds and the twist from the found atoms. The same structure is also
imaged with gombnet's own simulator (``render_haadf``, same probe, source size and dose), so that
the gap between the simulators is not confused with how hard a structure is.

abTEM is GPL-3.0, so it is an optional extra, not a dependency of gombnet:

    pip install -e ".[multislice]"
    python benchmarks/bench_multislice.py --model graphene --twists 5,13.2,21.8,30 --json out.json
    python benchmarks/bench_multislice.py --preset ws2-wsse --model ws2-wsse --se-fraction 0.3
    python benchmarks/bench_multislice.py --preset ws2-wsse --model ws2-wsse-monolayer --layers 1 --configs 5

About 1 min per 20 x 20 Å multislice image on a 2-core CPU (60 kV, 30 mrad, PRISM
interpolation 3; abTEM agrees with its plain multislice to a correlation of 0.99994 here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from gombnet.analysis.bonds import bond_statistics, nearest_neighbor_distances
from gombnet.analysis.lattice import twist_angle
from gombnet.demo import best_atom_assignment
from gombnet.errors import GombnetError
from gombnet.evaluate import dopant_class, dopant_sites, inside_border
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model
from gombnet.simulation.imaging import render_haadf
from gombnet.simulation.lattices import ATOMIC_NUMBER
from gombnet.simulation.sample import atom_weights

ATOM_SIGMA_ANGSTROM = 0.2  # gombnet's simulator: Gaussian atom size (training range 0.1-0.3 Å)
# lattice constant [Å], interlayer spacing [Å], class names and the atom that marks a layer's lattice
PRESETS = {"graphene": {"a": 1.42 * np.sqrt(3), "spacing": 3.35, "classes": ["C"], "lattice_class": 0},
           "ws2-wsse": {"a": 3.18, "a_wse2": 3.282, "spacing": 6.2, "classes": ["W", "S2", "SSe"],
                        "lattice_class": 0}}


def layer_atoms(preset: str, theta_deg: float, shift_angstrom, cell_angstrom: float, rng: np.random.Generator,
                se_fraction: float = 0.0):
    """One layer rotated by ``theta_deg`` about the cell centre and shifted, cut to the square cell
    [0, cell): atoms ``(xyz (N, 3) [Å, z about the layer's middle], symbols (N,))`` and projected
    columns ``(xy (M, 2) [Å], class index (M,))``. For ws2-wsse, one S of a share ``2 x`` of the
    chalcogen columns becomes Se (x = Se/(S+Se); at most one Se per column, as gombnet's labels)."""
    from ase.build import graphene, mx2

    spec = PRESETS[preset]
    a = spec["a"] + se_fraction * (spec.get("a_wse2", spec["a"]) - spec["a"])  # Vegard's law
    n = int(2 * cell_angstrom / a) + 4
    unit = (graphene(formula="C2", a=a, vacuum=None) if preset == "graphene"
            else mx2(formula="WS2", kind="2H", a=a, thickness=3.19, vacuum=None))
    atoms = unit.repeat((n, n, 1))
    xyz, symbols = atoms.positions.copy(), np.array(atoms.get_chemical_symbols(), dtype=object)
    xy = xyz[:, :2] - xyz[:, :2].mean(axis=0) + np.asarray(shift_angstrom)
    c, s = np.cos(np.radians(theta_deg)), np.sin(np.radians(theta_deg))
    xyz[:, :2] = xy @ np.array([[c, s], [-s, c]]) + cell_angstrom / 2
    keep = np.all((xyz[:, :2] >= 0) & (xyz[:, :2] < cell_angstrom), axis=1)
    xyz, symbols = xyz[keep], symbols[keep]
    xyz[:, 2] -= xyz[:, 2].mean()
    if preset == "graphene":
        return xyz, symbols, xyz[:, :2].copy(), np.zeros(len(xyz), int)
    metal = symbols == "W"
    top = (symbols == "S") & (xyz[:, 2] > 0)  # one atom per chalcogen column (the pair shares x, y)
    doped = top & (rng.random(len(xyz)) < 2 * se_fraction)
    symbols[doped] = "Se"
    col_xy = np.vstack([xyz[metal, :2], xyz[top, :2]])
    col_class = np.r_[np.zeros(metal.sum(), int), np.where(doped[top], 2, 1)]
    return xyz, symbols, col_xy, col_class


def haadf_multislice(layers: list, spacing_angstrom: float, cell_angstrom: float, scan_box,
                     pixel_size_angstrom: float, *, energy_ev: float, semiangle_mrad: float, detector_mrad,
                     n_phonons: int, seed: int):
    """HAADF image (rows = y, columns = x) over ``scan_box`` = (x0, y0, x1, y1) [Å] of the layers
    (``(xyz, symbols)`` each, stacked ``spacing_angstrom`` apart) and the scan's actual start and
    sampling [Å]."""
    import abtem
    from ase import Atoms

    abtem.config.set({"device": "cpu"})
    z0 = 2.0 + max(np.abs(xyz[:, 2]).max() for xyz, _ in layers)  # 2 Å of vacuum below the lowest atom
    pos = np.vstack([xyz + [0, 0, z0 + i * spacing_angstrom] for i, (xyz, _) in enumerate(layers)])
    symbols = [str(el) for _, sym in layers for el in sym]
    atoms = Atoms(symbols, positions=pos, pbc=True,
                  cell=[cell_angstrom, cell_angstrom, 2 * z0 + spacing_angstrom * (len(layers) - 1)])
    if n_phonons > 1:  # thermal diffuse scattering: frozen phonons (0.08 Å rms in-plane for C)
        atoms = abtem.FrozenPhonons(atoms, num_configs=n_phonons, sigmas=0.08, seed=seed)  # same rms for all
    potential = abtem.Potential(atoms, sampling=0.05, slice_thickness=1.0, projection="infinite",
                                parametrization="lobato")
    s_matrix = abtem.SMatrix(potential=potential, energy=energy_ev, semiangle_cutoff=semiangle_mrad,
                             interpolation=3)
    x0, y0, x1, y1 = scan_box
    scan = abtem.GridScan(start=(x0, y0), end=(x1, y1), sampling=pixel_size_angstrom)
    detector = abtem.AnnularDetector(inner=detector_mrad[0], outer=detector_mrad[1])
    measurement = s_matrix.scan(scan=scan, detectors=detector).compute(progress_bar=False)
    image = np.asarray(measurement.array, dtype=np.float64)
    if image.ndim == 3:  # one image per frozen-phonon configuration
        image = image.mean(axis=0)
    return image.T, np.asarray(scan.start, float), np.asarray(scan.sampling, float)


def score(image: np.ndarray, model, cols: dict, pixel: float, edge_px: float, preset: str,
          lattice_layers: bool = True, n_layers: int = 2, refine: bool = True, lattice_sites: bool = True) -> dict:
    """Atom F1 per layer (and class), RMSE, Se-S in the Se-free layer, graphene's C-C bonds and the
    twist (two layers) of the atoms ``model`` finds in ``image``."""
    h, w = image.shape
    classes = PRESETS[preset]["classes"]
    result = predict(image, model, pixel_size_angstrom=pixel, lattice_layers=lattice_layers,
                     lattice_sites=lattice_sites, refine=refine)
    found = {k: result.atoms[k] for k in ("channel", "x_px", "y_px", "score")}
    # Se-S in the Se-free layer per chalcogen column found there, as gombnet evaluate counts it
    m = best_atom_assignment(inside_border(found, h, w, edge_px), inside_border(cols, h, w, edge_px),
                             n_layers=n_layers, class_names=classes, radius_px=0.5 / pixel, pixel_size_angstrom=pixel,
                             dopant_class=dopant_class(classes), dopant_sites=dopant_sites(classes))
    lattice = [found["channel"] == i * len(classes) + PRESETS[preset]["lattice_class"] for i in range(n_layers)]
    xy_found = [np.c_[found["x_px"], found["y_px"]][sel] * pixel for sel in lattice]
    stats = None
    if preset == "graphene":
        fov = (0.0, 0.0, w * pixel, h * pixel)
        bonds = [nearest_neighbor_distances(p, k=3, max_distance_angstrom=1.8, edge_exclusion_angstrom=1.5,
                                            field_of_view_angstrom=fov) for p in xy_found if len(p) >= 7]
        bonds = np.concatenate(bonds) if bonds else np.zeros(0)
        stats = bond_statistics(bonds) if len(bonds) >= 2 else None
    try:
        found_twist = (twist_angle(*xy_found, kind="honeycomb" if preset == "graphene" else "triangular").twist_deg
                       if n_layers == 2 else float("nan"))
    except GombnetError:  # too few atoms in a layer to measure a lattice
        found_twist = float("nan")
    dopant = m.get("dopant") or {}
    return {"f1_per_layer": [m["per_layer"][f"layer{i}"]["f1"] for i in range(n_layers)],
            "f1_per_layer_class": {k: v["f1"] for k, v in m["per_layer_class"].items()},
            "rmse_angstrom": m["overall"]["rmse_angstrom"], "n_found": [int(s.sum()) for s in lattice],
            "dopant_wrong_layer_rate": dopant.get("wrong_layer_rate"),
            "dopant_clean_layer_site_rate": dopant.get("clean_layer_site_rate"),
            "cc_mean_angstrom": stats.mean if stats else None, "cc_fwhm_angstrom": stats.fwhm if stats else None,
            "twist_found_deg": found_twist}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="graphene")
    ap.add_argument("--model", action="append", help="model name or path (repeatable; default: the preset)")
    ap.add_argument("--se-fraction", type=float, default=0.3,
                    help="ws2-wsse: Se fraction x of layer 1 (of the one layer with --layers 1)")
    ap.add_argument("--layers", type=int, choices=(1, 2), default=2,
                    help="2: twisted bilayers; 1: monolayers (for one-layer models; --twists is ignored)")
    ap.add_argument("--twists", default="5,13.2,21.8,30", help="twist angles [deg], comma-separated")
    ap.add_argument("--configs", type=int, default=2,
                    help="structures per twist (random orientation and layer shifts)")
    ap.add_argument("--scan-angstrom", type=float, default=20.0, help="side of the scanned square [Å]")
    ap.add_argument("--pixel-size", type=float, default=0.1, help="scan step [Å/px]")
    ap.add_argument("--energy-kev", type=float, default=60.0)
    ap.add_argument("--semiangle-mrad", type=float, default=30.0)
    ap.add_argument("--detector-mrad", default="70,200", help="HAADF inner,outer angle [mrad]")
    ap.add_argument("--source-sigma", type=float, default=0.3, help="source size (Gaussian sigma) [Å]")
    ap.add_argument("--doses", default="2000,100", help="mean counts per pixel, comma-separated")
    ap.add_argument("--phonons", type=int, default=1, help="frozen-phonon configurations (1: none)")
    ap.add_argument("--edge-angstrom", type=float, default=0.0,
                    help="score only atoms (true and found) at least this far inside the image [Å]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lattice-layers", choices=("on", "off", "both"), default="on",
                    help="lattice check of the layers in predict (both: score every image both ways)")
    ap.add_argument("--lattice-sites", choices=("on", "off", "both"), default="on",
                    help="with the lattice check: the site check of single atoms in predict (both: score both ways)")
    ap.add_argument("--refine", choices=("on", "off", "both"), default="off",
                    help="the model's position refiner in predict, where it has one (both: score both ways)")
    ap.add_argument("--json", type=Path, help="save every number here")
    args = ap.parse_args()
    try:
        import abtem  # noqa: F401
    except ImportError:
        sys.exit("error: abTEM is not installed; pip install -e \".[multislice]\" (abTEM is GPL-3.0)")
    if args.json and args.json.exists():
        sys.exit(f"error: {args.json} exists; remove it first")
    models = {m: load_model(m) for m in (args.model or [args.preset])}
    # the same noisy image scored with and without the lattice check of the layers: abTEM's
    # images differ in the last bits from run to run, which changes the Poisson draws
    checks = {"on": [True], "off": [False], "both": [True, False]}[args.lattice_layers]
    refines = {"on": [True], "off": [False], "both": [True, False]}[args.refine]
    sites = {"on": [True], "off": [False], "both": [True, False]}[args.lattice_sites]
    spec = PRESETS[args.preset]
    twists = [float(t) for t in args.twists.split(",")] if args.layers == 2 else [0.0]
    doses = [float(d) for d in args.doses.split(",")]
    detector = tuple(float(v) for v in args.detector_mrad.split(","))
    margin = 5.0  # Å of structure beyond the scan on each side: the PRISM window stays inside the cell
    cell = args.scan_angstrom + 2 * margin
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{'twist':>6s} {'dose':>6s} {'model':14s} {'simulator':10s} {'F1 L0':>6s} {'F1 L1':>6s} {'RMSE Å':>7s} "
          f"{'C-C Å':>6s} {'FWHM Å':>7s} {'twist found':>11s}")
    for twist_index, twist in enumerate(twists):
        for config in range(args.configs):
            rotation = rng.uniform(0, 60)
            layers = [layer_atoms(args.preset, rotation + i * twist, rng.uniform(-1, 1, 2), cell, rng,
                                  se_fraction=args.se_fraction if i == args.layers - 1 else 0.0)
                      for i in range(args.layers)]
            t0 = time.perf_counter()
            multislice, start, step = haadf_multislice(
                [(xyz, sym) for xyz, sym, _, _ in layers], spec["spacing"], cell,
                (margin, margin, margin + args.scan_angstrom, margin + args.scan_angstrom),
                args.pixel_size, energy_ev=1e3 * args.energy_kev, semiangle_mrad=args.semiangle_mrad,
                detector_mrad=detector, n_phonons=args.phonons, seed=int(rng.integers(2**31)))
            t_sim = time.perf_counter() - t0
            # noise from its own generator: abTEM's images vary in the last bits between runs, and
            # the Poisson draws of one must not shift the structures of the next
            noise_rng = np.random.default_rng([args.seed, twist_index, config, 1])
            pixel = float(step[0])
            h, w = multislice.shape
            # pixel (r, c) is the scan position start + (c, r) * step
            all_px = np.vstack([(xyz[:, :2] - start) / step for xyz, _, _, _ in layers])
            weights = atom_weights([ATOMIC_NUMBER[str(el)] for _, sym, _, _ in layers for el in sym], z_exponent=1.7)
            ours = render_haadf(all_px[:, 0], all_px[:, 1], weights, (h, w),
                                sigma_px=np.hypot(ATOM_SIGMA_ANGSTROM, args.source_sigma) / pixel,
                                pixel_size_angstrom=pixel, energy_kev=args.energy_kev,
                                convergence_mrad=args.semiangle_mrad)
            clean = {"multislice": gaussian_filter(multislice, args.source_sigma / pixel), "gombnet": ours}
            col_px = np.vstack([(col_xy - start) / step for _, _, col_xy, _ in layers])
            cols = inside_border({"x_px": col_px[:, 0], "y_px": col_px[:, 1],
                                  "layer": np.concatenate([np.full(len(c), i) for i, (_, _, c, _) in enumerate(layers)]),
                                  "class": np.concatenate([c for _, _, _, c in layers])}, h, w, 0.0)
            for dose in doses:
                for simulator, image in clean.items():
                    noisy = noise_rng.poisson(image / image.mean() * dose).astype(np.float32)
                    for (name, model), check, refine, site in ((m, c, r, st) for m in models.items()
                                                               for c in checks for r in refines for st in sites):
                        if not check and not site and True in sites:
                            continue  # without the lattice check there is no site check either
                        name = name if check else f"{name} (no lattice check)"
                        if check and not site:
                            name = f"{name} (no site check)"
                        has_refiner = getattr(model, "gombnet_refiner", None) is not None
                        if refine and not has_refiner:
                            if False in refines:
                                continue  # its row without a refiner is the only one it has
                            refine = False
                        elif not refine and has_refiner and True in refines:
                            name = f"{name} (no refiner)"
                        row = {"twist_deg": twist, "config": config, "rotation_deg": rotation,
                               "dose_counts_per_px": dose, "model": name, "simulator": simulator,
                               "pixel_size_angstrom": pixel, "image_px": [h, w],
                               "n_true": [int(np.sum(cols["layer"] == i)) for i in range(args.layers)],
                               "multislice_seconds": round(t_sim, 1),
                               **score(noisy, model, cols, pixel, args.edge_angstrom / pixel, args.preset,
                                       lattice_layers=check, n_layers=args.layers, refine=refine,
                                       lattice_sites=site)}
                        rows.append(row)
                        f1 = row["f1_per_layer"] + [float("nan")] * (2 - args.layers)
                        print(f"{twist:6.1f} {dose:6.0f} {name[:14]:14s} {simulator:10s} {f1[0]:6.3f} {f1[1]:6.3f} "
                              f"{row['rmse_angstrom']:7.3f} {row['cc_mean_angstrom'] or float('nan'):6.3f} "
                              f"{row['cc_fwhm_angstrom'] or float('nan'):7.3f} {row['twist_found_deg']:11.2f}",
                              flush=True)
            print(f"  (structure {config + 1} at {twist}°, orientation {rotation:.1f}°: multislice {t_sim:.0f} s "
                  f"for {h}x{w} px)", flush=True)
    print()
    for name in dict.fromkeys(r["model"] for r in rows):  # every model, with and without the check
        for simulator in ("multislice", "gombnet"):
            for dose in doses:
                sel = [r for r in rows if r["model"] == name and r["simulator"] == simulator
                       and r["dose_counts_per_px"] == dose]
                f1 = np.array([r["f1_per_layer"] for r in sel])
                err = [abs(r["twist_found_deg"] - r["twist_deg"]) for r in sel]
                twist = (f", median |twist error| {np.nanmedian(err):.2f}° (max {np.nanmax(err):.2f}°)"
                         if args.layers == 2 else "")
                print(f"{name} on {simulator} images at {dose:.0f} counts/px ({len(sel)}): median F1 "
                      f"{' / '.join(f'{v:.3f}' for v in np.median(f1, axis=0))} (min {f1.min():.3f}), median RMSE "
                      f"{np.median([r['rmse_angstrom'] for r in sel]):.3f} Å{twist}")
                if len(spec["classes"]) > 1:
                    per_class = {k: np.median([r["f1_per_layer_class"][k] for r in sel])
                                 for k in sel[0]["f1_per_layer_class"]}
                    site = [r["dopant_clean_layer_site_rate"] for r in sel if r["dopant_clean_layer_site_rate"] is not None]
                    print("    median F1 " + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items())
                          + (f"; Se-S per chalcogen column of the Se-free layer {np.median(site):.3f}" if site else ""))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
        tmp.replace(args.json)
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()

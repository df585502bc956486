"""Run every analysis that fits a result folder and write figures, numbers and a report.

Input: a folder written by ``gombnet predict`` (``atoms.csv``, ``summary.json``,
``image.npy``). Output, in the same folder: ``analysis.json`` (every number),
``bonds.png``, ``reconstruction.png``, ``strain.png`` (maps as arrays in ``strain.npz``), for TMDs ``stacking.png`` and
``se_sites.png``, and ``report.html`` (self-contained: figures embedded). Graphene gets C-C bonds
(also with the image's shared distortion undone), lattice constants and twist; TMDs get W-W
lattice constants, twist, Se fraction per layer with Vegard's law, column brightness ratios,
moiré stacking maps and the Se-site statistics; graphene bilayers twisted under 10° get an
AA / AB / BA / SP stacking map (``stacking.png`` too); both get the layers' distortion (scan
distortion, heterostrain) and maps of local strain, rotation and twist. Every result is checked
against the image's lattice for a wrong pixel size.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, check_output_path, write_text_atomic
from ..errors import GombnetError, check
from ..jsonio import dumps, json_safe
from ..simulation.lattices import get_material
from . import bonds, composition, contrast, graphene_stacking, lattice, moire, stats, strain

CHALCOGEN_CLASSES = ("S2", "SSe", "Se2")
GRAPHENE_BOND_MAX_ANGSTROM = 1.75  # C-C is 1.42 Å; second neighbours are at 2.46 Å
# Beyond this relative mismatch of the lattice constants the pixel size is called into question:
# wider than Vegard's-law and strain effects in a TMD (WS2 3.15 Å to Janus WSSe 3.24 Å, ~3 %).
CALIBRATION_TOLERANCE = 0.04
# Below this metal : chalcogen brightness a one-layer TMD result is called into question
# (contrast.py: a WS2 monolayer shows 2-4, MoS2 about 2; end-on 2H stacks about 1).
MONOLAYER_MIN_METAL_CONTRAST = 1.4
VECTOR_FORMATS = ("pdf", "svg")
OUTPUT_FILES = ("analysis.json", "report.html", "bonds.png", "reconstruction.png", "stacking.png",
                "se_sites.png", "strain.png", "strain.npz")
# Graphene stacking maps only below this twist [deg]: moiré cells a / (2 sin(twist / 2)) under
# 14 Å hold too few atoms for AA / AB / BA domains.
GRAPHENE_STACKING_MAX_TWIST_DEG = 10.0
# A common distortion of the layers beyond this maximum shear [%] is named in the headline.
DISTORTION_HEADLINE_PERCENT = 1.0


def _positions(atoms: dict, layer: int, species) -> np.ndarray:
    species = (species,) if isinstance(species, str) else tuple(species)
    sel = (atoms["layer"] == layer) & np.isin(atoms["species"], species)
    return np.column_stack([atoms["x_angstrom"][sel], atoms["y_angstrom"][sel]])


def _try(fn, *args, **kwargs):
    """Run one analysis; a GombnetError (too few atoms, ...) becomes {"error": message}."""
    try:
        return fn(*args, **kwargs)
    except GombnetError as exc:
        return {"error": str(exc)}


def _as_dict(result):
    return result.to_dict() if hasattr(result, "to_dict") else result


def deformation_analysis(layers: list, kind: str, fov_angstrom, *,
                         sigma_angstrom: float | None = None) -> tuple[dict, object, object]:
    """Mean-lattice distortion of every layer (scan distortion, heterostrain) and maps of the
    local strain, rotation and twist.

    Returns ``(numbers, distortion, maps)``: the numbers for ``analysis.json`` and the
    :class:`~gombnet.analysis.strain.LatticeDistortion` and
    :class:`~gombnet.analysis.strain.DeformationMaps` (None where they could not be measured).
    ``sigma_angstrom`` is the maps' Gaussian window [Å] (default 2 lattice constants).
    """
    distortion = _try(strain.lattice_distortion, layers, kind=kind, field_of_view_angstrom=fov_angstrom)
    # a 1 Å grid, coarser beyond 256 Å so that a large image's maps stay quick and small
    step = max(1.0, max(fov_angstrom[2] - fov_angstrom[0], fov_angstrom[3] - fov_angstrom[1]) / 256.0)
    maps = _try(strain.deformation_maps, layers, kind=kind, field_of_view_angstrom=fov_angstrom,
                smoothing_sigma_angstrom=sigma_angstrom, grid_spacing_angstrom=step)
    numbers = {"distortion": _as_dict(distortion), "strain": maps if isinstance(maps, dict) else maps.summary()}
    if not isinstance(maps, dict) and not any(np.isfinite(d.rotation_deg).any() for d in maps.layers):
        maps = {"error": "no lattice covers the field densely enough for a map"}  # no figure of nothing
    return (numbers, None if isinstance(distortion, dict) else distortion, None if isinstance(maps, dict) else maps)


def _bond_entry(d) -> dict:
    return d if isinstance(d, dict) else _as_dict(_try(bonds.bond_statistics, d))


def graphene_analysis(atoms: dict, n_layers: int, fov_angstrom, *, shape=None, pixel_size_angstrom=None,
                      strain_sigma_angstrom: float | None = None) -> tuple[dict, dict]:
    """C-C bonds, lattice constant and orientation per layer, twist between layers 0 and 1,
    lattice distortion and local strain maps; with the image ``shape`` and pixel size, the
    AA / AB / BA / SP stacking map of bilayers twisted less than 10°.

    ``fov_angstrom`` is the field of view (x_min, y_min, x_max, y_max) [Å]. Returns the
    numbers and ``extra`` with the bond lengths per layer (``distances``), the strain maps
    (``maps``) and the stacking map (``registry``), when measured."""
    out, extra = {"layers": {}}, {"distances": {}}
    positions = [_positions(atoms, layer, "C") for layer in range(n_layers)]
    numbers, distortion, maps = deformation_analysis(positions, "honeycomb", fov_angstrom,
                                                     sigma_angstrom=strain_sigma_angstrom)
    centre = (0.5 * (fov_angstrom[0] + fov_angstrom[2]), 0.5 * (fov_angstrom[1] + fov_angstrom[3]))
    bond_kw = dict(max_distance_angstrom=GRAPHENE_BOND_MAX_ANGSTROM, edge_exclusion_angstrom=2.0,
                   field_of_view_angstrom=fov_angstrom)
    area = (fov_angstrom[2] - fov_angstrom[0]) * (fov_angstrom[3] - fov_angstrom[1])
    for layer, pos in enumerate(positions):
        d = _try(bonds.nearest_neighbor_distances, pos, **bond_kw)
        entry = {"n_atoms": int(len(pos)), "atoms_per_square_angstrom": len(pos) / area, "bonds": _bond_entry(d)}
        if not isinstance(d, dict):
            extra["distances"][layer] = d
        if distortion is not None:
            # the bonds without the image distortion that all layers share (scan distortion)
            u = _try(bonds.nearest_neighbor_distances, distortion.undistort(pos, centre), **bond_kw)
            entry["bonds_undistorted"] = _bond_entry(u)
            if not isinstance(u, dict):
                extra.setdefault("undistorted", {})[layer] = u
        entry["lattice"] = _as_dict(_try(lattice.measure_lattice, pos, kind="honeycomb",
                                         field_of_view_angstrom=fov_angstrom))
        out["layers"][f"layer{layer}"] = entry
    if n_layers >= 2:
        out["twist"] = _as_dict(_try(lattice.twist_angle, positions[0], positions[1], kind="honeycomb"))
        twist = out["twist"].get("twist_deg")
        if shape is not None and twist is not None and twist < GRAPHENE_STACKING_MAX_TWIST_DEG:
            reg = _try(graphene_stacking.graphene_stacking_map, positions[0], positions[1], shape,
                       pixel_size_angstrom, field_of_view_angstrom=fov_angstrom)
            if isinstance(reg, dict) and "error" in reg:
                out["stacking"] = reg
            else:
                out["stacking"] = {"fractions": graphene_stacking.stacking_fractions(reg["registry"]),
                                   "b_angstrom": reg["b_angstrom"]}
                extra["registry"] = reg["registry"]
        elif twist is not None:
            out["stacking"] = {"skipped": f"twist {twist:.1f}° is over {GRAPHENE_STACKING_MAX_TWIST_DEG:.0f}°: "
                                          "moiré cells too small for stacking domains"}
    out.update(numbers)
    if maps is not None:
        extra["maps"] = maps
    return out, extra


def tmd_analysis(atoms: dict, n_layers: int, class_names, fov_angstrom, shape, pixel_size_angstrom: float,
                 *, rng: np.random.Generator, n_bootstrap: int, image=None,
                 strain_sigma_angstrom: float | None = None) -> tuple[dict, dict]:
    """W-W lattice, W-X bonds, Se fraction and Vegard estimate per layer; column brightness
    ratios per layer (with ``image``); twist; moiré maps; the W lattices' distortion and local
    strain maps (``extra["maps"]``)."""
    chalcogens = [c for c in class_names if c in CHALCOGEN_CLASSES]
    out, extra = {"layers": {}}, {}
    brightness = (None if image is None or not len(atoms["x_px"]) else
                  contrast.column_brightness(image, atoms["x_px"], atoms["y_px"], pixel_size_angstrom))
    for layer in range(n_layers):
        w = _positions(atoms, layer, "W")
        x = _positions(atoms, layer, chalcogens)
        counts = {c: int(np.sum((atoms["layer"] == layer) & (atoms["species"] == c))) for c in class_names}
        entry = {"counts": counts}
        entry["lattice"] = _as_dict(_try(lattice.measure_lattice, w, kind="triangular",
                                         field_of_view_angstrom=fov_angstrom))
        if len(w) and len(x):
            d = _try(bonds.nearest_neighbor_distances, w, neighbors_angstrom=x, k=3, max_distance_angstrom=2.4,
                     edge_exclusion_angstrom=3.0, field_of_view_angstrom=fov_angstrom)
            entry["w_x_projected_bonds"] = d if isinstance(d, dict) else _as_dict(_try(bonds.bond_statistics, d))
            if not isinstance(d, dict):
                extra.setdefault("w_x", {})[layer] = d
        if "SSe" in counts:
            se = _try(composition.se_fraction, counts.get("S2", 0), counts.get("SSe", 0), counts.get("Se2", 0))
            entry["se_fraction"] = _as_dict(se)
            if not isinstance(se, dict):
                entry["vegard_lattice_constant_angstrom"] = float(composition.vegard_lattice_constant(se.x))
        if brightness is not None:
            entry["brightness"] = _layer_brightness(brightness, atoms, layer, chalcogens)
        out["layers"][f"layer{layer}"] = entry
    numbers, _, strain_maps = deformation_analysis([_positions(atoms, k, "W") for k in range(n_layers)],
                                                   "triangular", fov_angstrom, sigma_angstrom=strain_sigma_angstrom)
    out.update(numbers)
    if strain_maps is not None:
        extra["maps"] = strain_maps
    if n_layers >= 2:
        w_a, w_b = _positions(atoms, 0, "W"), _positions(atoms, 1, "W")
        x_a, x_b = _positions(atoms, 0, chalcogens), _positions(atoms, 1, chalcogens)
        out["twist"] = _as_dict(_try(lattice.twist_angle, w_a, w_b, kind="triangular",
                                     chalcogens_a_angstrom=x_a, chalcogens_b_angstrom=x_b))
        if min(len(w_a), len(w_b), len(x_a), len(x_b)) >= 3:
            maps = moire.stacking_map(w_a, x_a, w_b, x_b, shape, pixel_size_angstrom, max_site_distance_angstrom=3.0)
            extra["stacking"] = maps
            finite = maps["stacking"][np.isfinite(maps["stacking"])]
            out["stacking_map"] = {"median_angstrom": float(np.median(finite)) if finite.size else None,
                                   "reference_values_angstrom": moire.stacking_reference_values()}
            # Se sites: the Se-S columns of the layer with more Se (the exposed layer)
            se_counts = [np.sum((atoms["layer"] == k) & (atoms["species"] == "SSe")) for k in range(2)]
            exposed = int(np.argmax(se_counts))
            sites = _positions(atoms, exposed, "SSe")
            out["se_sites"] = {"layer": exposed, "n_sites": int(len(sites))}
            if len(sites) >= 5 and finite.size >= 5:
                values = moire.stacking_at(sites, w_a, x_a, w_b, x_b, max_site_distance_angstrom=3.0)
                site_values = values["stacking"][np.isfinite(values["stacking"])]
                comparison = _try(stats.compare_site_distributions, site_values, finite, rng=rng,
                                  n_bootstrap=n_bootstrap)
                out["se_sites"]["statistics"] = _as_dict(comparison)
                if not isinstance(comparison, dict):
                    extra["se_comparison"] = comparison
                    extra["se_sites"] = sites
    return out, extra


def reconstruct(image: np.ndarray, atoms: dict, pixel_size_angstrom: float, *,
                sigmas_angstrom=(0.2, 0.3, 0.4, 0.5, 0.65)) -> tuple[np.ndarray, dict]:
    """Simulate an image from the found atoms and compare it with the input.

    Each column is rendered with weight sum(Z^1.7) of its atoms, blurred by a Gaussian
    whose width is chosen among ``sigmas_angstrom`` to maximise the correlation with the
    input; the result is scaled to the input by least squares.

    Returns
    -------
    reconstruction : (H, W) float32
    numbers : dict
        ``pearson_r``, ``sigma_angstrom``, ``rms_difference`` (in input units).
    """
    from ase.data import atomic_numbers

    from ..report.outputs import column_elements
    from ..simulation.imaging import render_haadf

    weights = np.array([sum(atomic_numbers[e] ** 1.7 for e in column_elements(str(s)))
                        for s in atoms["species"]], dtype=float)
    img = np.asarray(image, np.float64)
    best = None
    for sigma in sigmas_angstrom:
        sim = render_haadf(atoms["x_px"], atoms["y_px"], weights, img.shape,
                           sigma_px=sigma / pixel_size_angstrom, pixel_size_angstrom=pixel_size_angstrom)
        sim = sim.astype(np.float64)
        r = float(np.corrcoef(sim.ravel(), img.ravel())[0, 1]) if sim.std() > 0 else float("nan")
        if best is None or (np.isfinite(r) and r > best[0]):
            best = (r, sigma, sim)
    r, sigma, sim = best
    design = np.column_stack([sim.ravel(), np.ones(sim.size)])
    coef, *_ = np.linalg.lstsq(design, img.ravel(), rcond=None)
    fitted = (design @ coef).reshape(img.shape)
    return fitted.astype(np.float32), {"pearson_r": r, "sigma_angstrom": sigma,
                                       "rms_difference": float(np.sqrt(np.mean((img - fitted) ** 2)))}


def reconstruction_figure(image, reconstruction, numbers: dict):
    """Input, reconstruction, difference and pixel correlation side by side (as Fig. 3b)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.4), constrained_layout=True)
    axes = fig.subplots(1, 4)
    lo, hi = np.percentile(image, [0.5, 99.5])
    for ax, data, title in ((axes[0], image, "input"), (axes[1], reconstruction, "reconstruction")):
        ax.imshow(data, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    diff = image - reconstruction
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    im = axes[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_title("difference")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    step = max(1, image.size // 20000)
    axes[3].scatter(reconstruction.ravel()[::step], image.ravel()[::step], s=1, alpha=0.3, color="#0072B2")
    axes[3].set_xlabel("reconstruction")
    axes[3].set_ylabel("input")
    axes[3].set_title(f"r = {numbers['pearson_r']:.3f}")
    return fig


def _layer_brightness(brightness, atoms: dict, layer: int, chalcogens) -> dict:
    """Brightness medians and ratios of one layer's columns, and metal over all chalcogens."""
    sel = atoms["layer"] == layer
    b, species = brightness[sel], atoms["species"][sel]
    out = contrast.brightness_ratios(b, species)
    metal, chal = b[species == "W"], b[np.isin(species, chalcogens)]
    if len(metal) >= 5 and len(chal) >= 5 and np.median(chal) > 0:
        out["metal_over_chalcogen"] = float(np.median(metal) / np.median(chal))
    return out


def calibration_check(material: str, result: dict, pixel_size_angstrom: float, *,
                      tolerance: float = CALIBRATION_TOLERANCE) -> dict | None:
    """Check the image's pixel size against the lattice constant the image shows.

    The strongest lattice of the image's Fourier transform (``result["fft"]``; independent of
    the atoms found, so a model that mislabels atoms cannot fake a calibration error), else the
    median lattice constant of the layers' atoms, is compared with the material's: graphene
    2.460 Å; a TMD by Vegard's law at the layers' median Se fraction (3.15 Å without Se). The
    ratio is the factor by which the pixel size would have to change for the lattice to come
    out right; a file whose calibration is off (a wrong tag, a magnification not recalibrated)
    shows as a factor beyond ``tolerance``.

    Parameters
    ----------
    material : {"graphene", "tmd"}
    result : dict
        ``analysis.json`` so far: its ``fft`` and ``layers`` (``lattice.a_angstrom`` and, for
        TMDs, ``vegard_lattice_constant_angstrom`` of each layer).
    pixel_size_angstrom : float
        Pixel size the image was read with [Å/px].
    tolerance : float
        Largest relative mismatch still called consistent.

    Returns
    -------
    dict or None
        ``measured_a_angstrom`` and its ``source``, ``expected_a_angstrom``, ``scale``
        (expected / measured), ``suggested_pixel_size_angstrom`` and ``consistent``; None when
        the material has no reference or no lattice was measured.
    """
    if material not in ("graphene", "tmd"):
        return None
    layers = result.get("layers", {}).values()
    if material == "graphene":
        expected = get_material("graphene").lattice_constant_angstrom
    else:
        vegard = [la["vegard_lattice_constant_angstrom"] for la in layers if "vegard_lattice_constant_angstrom" in la]
        expected = float(np.median(vegard)) if vegard else composition.A_WS2_ANGSTROM
    fft_lattices = result.get("fft", {}).get("lattices") or []
    atoms_a = [la["lattice"]["a_angstrom"] for la in layers if la.get("lattice", {}).get("a_angstrom")]
    if fft_lattices:
        measured, source = max(fft_lattices, key=lambda f: f["strength"])["a_angstrom"], "fft"
    elif atoms_a:
        measured, source = float(np.median(atoms_a)), "atoms"
    else:
        return None
    scale = expected / measured
    return {"measured_a_angstrom": float(measured), "source": source, "expected_a_angstrom": float(expected),
            "scale": float(scale), "pixel_size_angstrom": float(pixel_size_angstrom),
            "suggested_pixel_size_angstrom": float(pixel_size_angstrom) * scale,
            "tolerance": float(tolerance), "consistent": bool(abs(scale - 1.0) <= tolerance)}


def _headline(material: str, result: dict) -> str:
    parts, layers = [], result.get("layers", {})
    for name, layer in layers.items():
        if material == "graphene":
            b = layer.get("bonds", {})
            parts.append(f"{name} {layer['n_atoms']} C, C-C {b.get('mean', float('nan')):.3f} Å"
                         if "mean" in b else f"{name} {layer['n_atoms']} C")
        else:
            a = layer.get("lattice", {}).get("a_angstrom")
            text = f"{name} {sum(layer['counts'].values())} columns" + (f", a {a:.3f} Å" if a else "")
            if "se_fraction" in layer and "x" in layer["se_fraction"]:
                text += f", x(Se) {layer['se_fraction']['x']:.3f}"
            parts.append(text)
    twist = result.get("twist", {})
    if "twist_deg" in twist:
        spread = ((result.get("strain") or {}).get("local_twist_deg") or {}).get("std")
        parts.append(f"twist {twist['twist_deg']:.2f}°" + (f" (local spread {spread:.2f}°)" if spread is not None else ""))
    shares = (result.get("stacking") or {}).get("fractions")
    if material == "graphene" and shares:
        parts.append("stacking " + " ".join(f"{name} {100 * share:.0f} %" for name, share in shares.items()))
    common = (result.get("distortion") or {}).get("common") or {}
    if common.get("max_shear", 0.0) > DISTORTION_HEADLINE_PERCENT:
        text = f"lattice distorted by {common['max_shear']:.1f} % shear (stretched along {common['stretch_axis_deg']:.0f}°"
        parts.append(text + (", alike in every layer: scan distortion?)" if len(layers) >= 2 else ")"))
    if material == "tmd" and len(layers) == 1:
        ratio = next(iter(layers.values())).get("brightness", {}).get("metal_over_chalcogen")
        if ratio is not None and ratio < MONOLAYER_MIN_METAL_CONTRAST:
            parts.append(f"NOT A MONOLAYER? metal columns only {ratio:.2f}x as bright as the chalcogen columns "
                         f"(a WS2 monolayer: 2-4x; a 2H-stacked bilayer: about 1x)")
    cal = result.get("calibration")
    if cal and not cal["consistent"]:
        parts.append(f"CHECK THE PIXEL SIZE: the lattice says {cal['suggested_pixel_size_angstrom']:.4f} Å/px, "
                     f"not {cal['pixel_size_angstrom']:.4f} (predict --pixel-size)")
    return "; ".join(parts)


def analyze_folder(folder: str | os.PathLike, *, overwrite: bool = False, seed: int = 0,
                   n_bootstrap: int = 1000, figure_format: str | None = None,
                   strain_sigma_angstrom: float | None = None) -> dict:
    """Analyse one result folder of ``gombnet predict``; write figures, JSON and HTML there.

    Parameters
    ----------
    folder : path-like
    overwrite : bool
        Replace earlier analysis files.
    seed : int
        Seed of the bootstrap resampling.
    n_bootstrap : int
        Bootstrap resamples for the Se-site statistics.
    figure_format : {"pdf", "svg"}, optional
        Also save every figure, and the overlay of the atoms on the image, in this vector format
        (for papers; the image itself stays a bitmap inside it).
    strain_sigma_angstrom : float, optional
        Gaussian window [Å] of the strain and local-twist maps; default 2 lattice constants.

    Returns
    -------
    dict
        Every number (also written to ``analysis.json``), with a one-line ``headline``.
    """
    from ..report.figures import (bond_length_figure, deformation_figure, kde_comparison_figure,
                                  registry_map_figure, save_figure, stacking_map_figure)
    from ..report.outputs import read_atoms_csv, read_summary, result_overlay

    folder = Path(folder)
    check(folder.is_dir(), f"{folder}: no such result folder")
    check(n_bootstrap >= 0, f"bootstrap resamples must be >= 0, got {n_bootstrap}")
    check(figure_format in (None, *VECTOR_FORMATS),
          f"figure format must be one of {', '.join(VECTOR_FORMATS)}, got {figure_format!r}")
    vector_files = () if figure_format is None else tuple(
        f"{Path(name).stem}.{figure_format}" for name in (*OUTPUT_FILES, "overlay.png") if name.endswith(".png"))
    for name in (*OUTPUT_FILES, *vector_files):
        if (folder / name).exists():
            check_output_path(folder / name, overwrite)
    summary = read_summary(folder)
    atoms = read_atoms_csv(folder / "atoms.csv")
    image_path = folder / "image.npy"
    check(image_path.is_file(), f"{folder}: image.npy missing")
    image = np.load(image_path, allow_pickle=False)
    px = float(summary["pixel_size_angstrom"])
    n_layers, class_names = int(summary["n_layers"]), list(summary["class_names"])
    fov = (image.shape[1] * px, image.shape[0] * px)
    # the image covers pixel edges -0.5 .. n-0.5 [px] (pixel centres at integers)
    box = (-0.5 * px, -0.5 * px, (image.shape[1] - 0.5) * px, (image.shape[0] - 0.5) * px)
    material = "graphene" if class_names == ["C"] else "tmd" if "W" in class_names else "other"
    result = {"material": material, "pixel_size_angstrom": px, "field_of_view_angstrom": list(fov),
              "counts": summary.get("counts", {})}
    figures = {}
    if material == "graphene":
        part, extra = graphene_analysis(atoms, n_layers, box, shape=image.shape, pixel_size_angstrom=px,
                                        strain_sigma_angstrom=strain_sigma_angstrom)
        result.update(part)
        distances = extra["distances"]
        all_d = np.concatenate([np.zeros(0), *distances.values()])
        if len(all_d) >= 3:
            undistorted = np.concatenate([np.zeros(0), *extra.get("undistorted", {}).values()])
            figures["bonds.png"] = bond_length_figure(all_d, stats=bonds.bond_statistics(all_d),
                                                      title=f"C–C bonds, {len(distances)} layers",
                                                      undistorted_angstrom=undistorted if len(undistorted) >= 3
                                                      else None)
        if "registry" in extra:
            figures["stacking.png"] = registry_map_figure(extra["registry"], px,
                                                          title="local stacking of the two layers")
    elif material == "tmd":
        part, extra = tmd_analysis(atoms, n_layers, class_names, box, image.shape, px,
                                   rng=np.random.default_rng(seed), n_bootstrap=n_bootstrap, image=image,
                                   strain_sigma_angstrom=strain_sigma_angstrom)
        result.update(part)
        all_d = np.concatenate([np.zeros(0), *extra.get("w_x", {}).values()])
        if len(all_d) >= 3:
            figures["bonds.png"] = bond_length_figure(all_d, reference_angstrom=3.153 / math.sqrt(3),
                                                      reference_label="WS2 (projected)", bond_label="W–X",
                                                      title="projected W–chalcogen distances")
        if "stacking" in extra:
            figures["stacking.png"] = stacking_map_figure(extra["stacking"]["stacking"], px,
                                                          sites_angstrom=extra.get("se_sites"),
                                                          title="moiré stacking order")
        if "se_comparison" in extra:
            figures["se_sites.png"] = kde_comparison_figure(extra["se_comparison"])
    if material in ("graphene", "tmd") and "maps" in extra:
        figures["strain.png"] = deformation_figure(extra["maps"])
    if len(atoms["x_px"]):
        recon, numbers = reconstruct(image, atoms, px)
        result["reconstruction"] = numbers
        figures["reconstruction.png"] = reconstruction_figure(image, recon, numbers)
    try:
        fft = lattice.fft_lattice(image, px)
        result["fft"] = _as_dict(fft)
    except GombnetError as exc:
        result["fft"] = {"error": str(exc)}
    calibration = calibration_check(material, result, px)
    if calibration is not None:
        result["calibration"] = calibration
    result["headline"] = _headline(material, result)
    result = json_safe(result)
    for name, fig in figures.items():
        save_figure(fig, folder / name, overwrite=True, dpi=150)
    if figure_format is not None:
        figures["overlay.png"] = result_overlay(image, atoms, summary)  # as predict drew overlay.png
        for name, fig in figures.items():
            save_figure(fig, folder / f"{Path(name).stem}.{figure_format}", overwrite=True, dpi=300)
        del figures["overlay.png"]  # the HTML report embeds the PNG that predict wrote
    if material in ("graphene", "tmd") and "maps" in extra:
        with atomic_path(folder / "strain.npz", overwrite=True) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **extra["maps"].to_arrays())
    write_text_atomic(folder / "analysis.json", dumps(result), overwrite=True)
    write_text_atomic(folder / "report.html", html_report(folder, summary, result, list(figures)),
                      overwrite=True)
    return result


def vegard_across(results: list[dict], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Vegard's-law plot (lattice constant vs Se fraction) of every TMD layer in ``results``."""
    from ..report.figures import save_figure, vegard_figure

    xs, x_err, a, a_err, labels = [], [], [], [], []
    for k, res in enumerate(results):
        for name, layer in res.get("layers", {}).items():
            se, lat = layer.get("se_fraction") or {}, layer.get("lattice") or {}
            if se.get("x") is not None and lat.get("a_angstrom") is not None:
                xs.append(se["x"])
                x_err.append(se.get("x_err") or 0.0)
                a.append(lat["a_angstrom"])
                a_err.append(lat.get("a_sem_angstrom") or lat.get("a_std_angstrom") or 0.0)
                labels.append(f"{k}:{name}")
    check(len(xs) > 0, "no layer with both a Se fraction and a lattice constant to plot")
    fig = vegard_figure(np.array(xs), np.array(a), x_err=np.array(x_err), a_err_angstrom=np.array(a_err))
    return save_figure(fig, path, overwrite=overwrite)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _rows(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_rows(v, key + " / "))
        elif isinstance(v, list) and len(v) > 12:
            continue  # curves and spot lists belong in analysis.json, not in the table
        elif isinstance(v, float):
            rows.append((key, f"{v:.5g}"))
        else:
            rows.append((key, html.escape(str(v))))
    return rows


def html_report(folder: Path, summary: dict, result: dict, figure_names: list[str]) -> str:
    """One self-contained HTML page: the overlay, every figure and every number."""
    images = [n for n in ["overlay.png", *figure_names] if (folder / n).is_file()]
    source = html.escape(str(summary.get("source", {}).get("source", folder.name)))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>gombnet report - {source}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}"
        "table{border-collapse:collapse;font-size:0.9em}td{border:1px solid #ccc;padding:2px 8px}"
        "</style></head><body>",
        f"<h1>gombnet report</h1><p><b>{source}</b> - {html.escape(result.get('headline', ''))}</p>",
        f"<p>model: {html.escape(str(summary.get('model', '')))}; pixel size {summary['pixel_size_angstrom']:.4f} Å/px; "
        f"{summary.get('n_atoms', 0)} atoms</p>",
        f"<p>{html.escape(_layer_check_text(summary.get('layer_check')))}"
        f"{html.escape(_site_check_text(summary.get('site_check')))}</p>",
    ]
    if summary.get("positions_refined"):
        parts.append("<p>Positions corrected by the model's position refiner (gombnet predict --refine): a lower "
                     "error per atom, but bond lengths of a distorted lattice evened out; measure strain from the "
                     "lattice, not from single bonds.</p>")
    for name in images:
        parts.append(f"<h2>{html.escape(name[:-4])}</h2><img src='{_png_data_uri(folder / name)}' alt='{name}'>")
    parts.append("<h2>numbers</h2><table>")
    for key, value in _rows({"counts": summary.get("counts", {}),
                             **{k: v for k, v in result.items() if k not in ("headline",)}}):
        parts.append(f"<tr><td>{html.escape(key)}</td><td>{value}</td></tr>")
    parts.append("</table><p>All numbers: analysis.json; atoms: atoms.csv.</p></body></html>")
    return "\n".join(parts)


def _site_check_text(check: dict | None) -> str:
    """One sentence (with a leading space) on what the site check did (gombnet.inference.lattice_sites)."""
    if not check or not check.get("n_cells"):
        return ""
    if not check.get("n_cells_fitted"):
        return " Site check: no clear honeycomb in every layer, atoms left where the network put them."
    return (f" Site check: each layer's honeycomb fitted in {check['n_cells_fitted']} of {check['n_cells']} "
            f"cells of the field{_swapped_cells_text(check)}; {check['n_moved']} atoms moved to the layer whose "
            f"lattice sites they sit on, "
            f"{check['n_dropped']} copies reported in two layers and {check.get('n_too_close', 0)} atoms too close to "
            f"another of their layer dropped.")


def _swapped_cells_text(check: dict) -> str:
    n = check.get("n_cells_swapped", 0)
    return f" ({n} {'cell' if n == 1 else 'cells'} the network had swapped as a whole)" if n else ""


def _layer_check_text(check: dict | None) -> str:
    """One sentence on what the lattice check of the layers did (gombnet.inference.layers)."""
    if not check:
        return "Layers as the network gave them (no lattice check)."
    if not check.get("applied"):
        return f"Layers as the network gave them; lattice check not applied: {check.get('reason', '')}."
    a, b = check["orientations_deg"]
    return (f"Lattice check of the layers: orientations {a:.1f}° and {b:.1f}° (mod 60°); "
            f"{check['n_moved']} atoms moved to the layer whose orientation they have.")

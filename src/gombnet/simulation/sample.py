"""One simulated training sample: image, per-layer per-class masks, columns, atoms, parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import GombnetError
from .imaging import (
    SPLAT_SIGMA_PX,
    SmoothField,
    add_detector_noise,
    default_pad_px,
    normalize_image,
    probe_sigma_angstrom,
    render_haadf,
)
from .labels import disk_masks
from .lattices import ATOMIC_NUMBER, alloy_endmember, get_material
from .presets import NOISE_PARAMS, SCENARIOS, Preset
from .structure import SCENARIO_CODE, Structure, build_structure

_CARBON_Z = 6
_BACKGROUND_CONTRAST = 0.6  # log-amplitude of the contamination patches: exp(0.6 * g), g ~ N(0, 1)


@dataclass
class Sample:
    """One simulated HAADF-STEM image with its ground truth.

    Attributes
    ----------
    image : ndarray, float32, shape (H, W)
        Detector counts normalised by :func:`gombnet.simulation.imaging.normalize_image`:
        0.5th percentile -> 0, 99.5th percentile -> 1, not clipped (about [-0.1, 1.2]).
    masks : ndarray, uint8, shape (n_layers * n_classes, H, W)
        Binary disks of radius ``preset.disk_radius_angstrom`` centred on every column, layer
        major: channel ``layer * n_classes + class`` (layer 0's classes, then layer 1's).
    columns : dict of ndarray
        Projected atomic columns whose centre lies inside the image
        (-0.5 <= x_px < W - 0.5, same for y): ``x_px``, ``y_px`` float32 (where the column
        appears in the image, scan distortions included), ``layer`` int16, ``class`` int16
        (index into ``preset.class_names``).
    atoms : dict of ndarray
        Every atom of those columns: ``x``, ``y``, ``z`` [Å] float32 in the specimen frame
        (x/pixel_size, y/pixel_size are pixel coordinates before scan distortion; z is the
        height, layer i's mid-plane at i * interlayer spacing), ``Z`` int16 atomic number,
        ``layer`` int16. Thermal displacements are included. Amorphous contamination atoms
        are not listed.
    params : dict of str -> float
        The parameters drawn for this image, keys ``preset.param_names`` in that order (see
        :func:`simulate_sample`).
    """

    image: np.ndarray
    masks: np.ndarray
    columns: dict[str, np.ndarray]
    atoms: dict[str, np.ndarray]
    params: dict[str, float]


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def atom_weights(z, *, z_exponent: float, heavy_atom_scale: float = 1.0, heavy_atom_min_z: int = 37) -> np.ndarray:
    """HAADF weight of each atom: ``Z ** z_exponent``, times ``heavy_atom_scale`` where Z >= ``heavy_atom_min_z``.

    Why two numbers: a HAADF cross-section grows more slowly with Z for heavy atoms than a
    power law fitted to light ones. In multislice at 60 kV (70-200 mrad) W : S2 reads as
    Z^1.34 while Se-S : S2 reads as Z^1.7, which no single exponent gives.
    """
    z = np.asarray(z)
    w = z.astype(np.float64) ** z_exponent
    if heavy_atom_scale != 1.0:
        w = np.where(z >= heavy_atom_min_z, heavy_atom_scale * w, w)
    return w


def draw_parameters(preset: Preset, rng: np.random.Generator) -> dict[str, float]:
    """Draw every per-image scalar parameter from the preset's ranges.

    Returns a dict with the keys of ``preset.param_names`` except the realised dopant
    fractions, which :func:`simulate_sample` adds after building the structure.
    """
    n = preset.n_layers
    mats = [get_material(m) for m in preset.materials]
    p: dict[str, float] = {}
    p["pixel_size_angstrom"] = _uniform(rng, preset.pixel_size_angstrom)
    p["rotation_deg"] = _uniform(rng, preset.rotation_deg) % 360.0
    for i in range(1, n):
        sym = max(mats[0].symmetry_deg, mats[i].symmetry_deg)
        if rng.random() < preset.small_twist_probability:
            # near an aligned stacking: a multiple of 60 deg plus a small signed angle
            k = int(rng.integers(0, int(round(sym / 60.0))))
            sign = 1.0 if rng.random() < 0.5 else -1.0
            twist = (60.0 * k + sign * _uniform(rng, preset.small_twist_deg)) % sym
        else:
            twist = _uniform(rng, preset.twist_deg)
        p["twist_deg" if i == 1 else f"twist_deg_layer{i}"] = twist
    if n >= 2:
        p["interlayer_spacing_angstrom"] = _uniform(rng, preset.interlayer_spacing_angstrom)

    # substitution first: Vegard's law makes the lattice constant depend on it
    targets = [0.0] * n
    scenario, sublayer = 0, -1
    if preset.has_substitution:
        w = np.asarray(preset.scenario_weights, dtype=float)
        scenario = int(rng.choice(len(SCENARIOS), p=w / w.sum()))
        eligible = [i for i, m in enumerate(mats) if m.kind == "mx2" and m.chalcogen == preset.host]
        if scenario == SCENARIO_CODE["one_sublayer"]:
            layer = eligible[int(rng.integers(len(eligible)))]
            sublayer = int(rng.integers(0, 2))
            targets[layer] = _uniform(rng, preset.sublayer_fraction) / 2.0
        elif scenario == SCENARIO_CODE["one_layer"]:
            layer = eligible[int(rng.integers(len(eligible)))]
            targets[layer] = _uniform(rng, preset.layer_fraction)
        elif scenario == SCENARIO_CODE["both_layers"]:
            for layer in eligible:
                targets[layer] = _uniform(rng, preset.both_fraction)
    for i, mat in enumerate(mats):
        a = mat.lattice_constant_angstrom
        if preset.has_substitution and preset.vegard and targets[i] > 0:
            end = alloy_endmember(mat, preset.dopant)
            a += targets[i] * (end.lattice_constant_angstrom - a)  # Vegard's law
        p[f"lattice_constant_angstrom_layer{i}"] = a * (1.0 + _uniform(rng, preset.lattice_strain))
    for i in range(n):
        p[f"vacancy_fraction_layer{i}"] = _uniform(rng, preset.vacancy_fraction)
    if preset.has_chalcogens:
        for i, mat in enumerate(mats):
            p[f"chalcogen_vacancy_fraction_layer{i}"] = (
                _uniform(rng, preset.chalcogen_vacancy_fraction) if mat.kind == "mx2" else 0.0
            )
    p["vibration_sigma_angstrom"] = _uniform(rng, preset.vibration_sigma_angstrom)
    p["n_holes"] = float(rng.integers(preset.n_holes[0], preset.n_holes[1] + 1))
    p["boundary_roughness_angstrom"] = _uniform(rng, preset.boundary_roughness_angstrom)
    for i in range(n):
        p[f"edge_layer{i}"] = float(rng.random() < preset.edge_probability)
    if preset.has_substitution:
        p["substitution_scenario"] = float(scenario)
        p["substitution_sublayer"] = float(sublayer)
        d = preset.dopant.lower()
        for i in range(n):
            p[f"{d}_fraction_target_layer{i}"] = targets[i]
    p["energy_kev"] = _uniform(rng, preset.energy_kev)
    p["convergence_mrad"] = _uniform(rng, preset.convergence_mrad)
    p["source_sigma_angstrom"] = _uniform(rng, preset.source_sigma_angstrom)
    p["defocus_angstrom"] = _uniform(rng, preset.defocus_angstrom)
    p["astigmatism_angstrom"] = _uniform(rng, preset.astigmatism_angstrom)
    p["astigmatism_angle_deg"] = float(rng.uniform(0.0, 180.0))
    p["c3_um"] = _uniform(rng, preset.c3_um)
    p["probe_tail_fraction"] = _uniform(rng, preset.probe_tail_fraction)
    p["probe_tail_sigma_angstrom"] = _uniform(rng, preset.probe_tail_sigma_angstrom)
    p["atom_sigma_angstrom"] = _uniform(rng, preset.atom_sigma_angstrom)
    p["z_exponent"] = _uniform(rng, preset.z_exponent)
    # drawn only where a preset sets it, so presets without it give the same images per seed as before
    scale = preset.heavy_atom_scale
    p["heavy_atom_scale"] = _uniform(rng, scale) if scale != (1.0, 1.0) else 1.0
    lo, hi = preset.dose_counts_per_px
    p["dose_counts_per_px"] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))  # log-uniform
    for key in NOISE_PARAMS:
        p[key] = _uniform(rng, getattr(preset, key))
    return p


@dataclass
class Scene:
    """Everything one simulated image is made of before detector noise, in image pixels.

    :func:`simulate_scene` draws it; :func:`simulate_sample` renders it, adds detector noise and
    draws the labels. Kept apart so that the noiseless image and each column's share of it can be
    recomputed, e.g. for the Cramér-Rao bound of
    :func:`gombnet.simulation.precision.column_position_bound`.

    Attributes
    ----------
    params : dict of str -> float
        Every parameter drawn for the image (see :func:`simulate_sample`).
    shape : (int, int)
        Image size (rows, columns).
    atom_x_px, atom_y_px : ndarray, float64, shape (n,)
        Where each scatterer is rendered (scan drift applied; line jitter is applied row by row
        by the renderer, ``render_kwargs["row_shift_px"]``).
    atom_weight : ndarray, float64, shape (n,)
        Its weight ``Z ** n`` (see :func:`atom_weights`).
    atom_column : ndarray, int64, shape (n,)
        Index of its column in the ``column_*`` arrays; -1 for amorphous contamination atoms.
    column_x_px, column_y_px : ndarray, float64, shape (m,)
        Where each column appears in the image (drift and its rows' average jitter applied):
        the label positions.
    in_fov : ndarray, bool, shape (m,)
        Columns whose centre lies inside the image: the ones :class:`Sample` lists, in this order.
    render_kwargs : dict
        Keyword arguments of :func:`~gombnet.simulation.imaging.render_haadf` for this image
        (blur, probe, aberrations, line jitter, canvas padding).
    background : ndarray, float32, shape ``shape``, or None
        Contamination pattern (mean 1); the image gets ``background_amplitude`` times its mean
        times this pattern.
    structure : Structure
        The specimen: atoms and columns in Å, before scan distortion (``structure.sites`` holds
        each column's layer and class, in the order of the ``column_*`` arrays).
    """

    params: dict[str, float]
    shape: tuple[int, int]
    atom_x_px: np.ndarray
    atom_y_px: np.ndarray
    atom_weight: np.ndarray
    atom_column: np.ndarray
    column_x_px: np.ndarray
    column_y_px: np.ndarray
    in_fov: np.ndarray
    render_kwargs: dict
    background: np.ndarray | None
    structure: Structure

    @property
    def column_layer(self) -> np.ndarray:
        """Layer of each column (int16, shape (m,))."""
        return self.structure.sites["layer"]

    def noiseless_image(self) -> np.ndarray:
        """The image before detector noise, float32 (arbitrary intensity units)."""
        image = render_haadf(self.atom_x_px, self.atom_y_px, self.atom_weight, self.shape, **self.render_kwargs)
        if self.background is not None:
            image += (self.params["background_amplitude"] * float(image.mean())) * self.background
        return image


def simulate_scene(preset: Preset, rng: np.random.Generator, *, image_size_px: int | None = None) -> Scene:
    """Draw one image's specimen, microscope and scan: everything but the detector noise.

    Draws from ``rng`` exactly what :func:`simulate_sample` draws before the noise, so the same
    generator state gives the scene of that sample (image ``i`` of a dataset file: child ``i``
    of ``numpy.random.SeedSequence(seed)``, see :func:`gombnet.data.write_dataset`).

    Parameters
    ----------
    preset : Preset
        From :func:`gombnet.simulation.presets.load_preset`.
    rng : numpy.random.Generator
    image_size_px : int, optional
        Output size (square); default ``preset.image_size_px``.

    Returns
    -------
    Scene
    """
    if not isinstance(preset, Preset):
        raise GombnetError(f"preset must be a Preset (use load_preset), got {type(preset).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise GombnetError("rng must be a numpy.random.Generator, e.g. numpy.random.default_rng(seed)")
    size = preset.image_size_px if image_size_px is None else image_size_px
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 16384:
        raise GombnetError(f"image_size_px must be an integer in 16..16384, got {image_size_px!r}")
    size = int(size)

    p = draw_parameters(preset, rng)
    px = p["pixel_size_angstrom"]
    sigma_px = math.hypot(p["atom_sigma_angstrom"], p["source_sigma_angstrom"]) / px
    jitter_px = p["jitter_sigma_angstrom"] / px
    pad = default_pad_px(px, sigma_px) + int(math.ceil(4.0 * jitter_px))
    if p["probe_tail_fraction"] > 0:
        # the smooth halo only needs a partial margin: what wraps around is lattice of the same kind
        pad = max(pad, int(math.ceil(1.5 * p["probe_tail_sigma_angstrom"] / px)))
    centre = (size - 1) / 2.0
    shear, stretch = p["drift_shear"], p["drift_stretch"]

    # fill the padded canvas with atoms; drift maps specimen to image coordinates, so widen the box
    dm = (abs(shear) + abs(stretch)) * (size / 2.0 + pad) / (1.0 - abs(stretch)) + 1.0
    lo_px, hi_px = -pad + 3.0 - dm, size - 1 + pad - 4.0 + dm
    box = (lo_px * px, hi_px * px, lo_px * px, hi_px * px)
    fov_box = (-0.5 * px, (size - 0.5) * px, -0.5 * px, (size - 0.5) * px)
    structure = build_structure(preset, p, rng, box=box, fov_box=fov_box)
    atoms, sites = structure.atoms, structure.sites

    def to_image(x_a: np.ndarray, y_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xp, yp = x_a / px, y_a / px
        return xp + shear * (yp - centre), centre + (1.0 + stretch) * (yp - centre)

    xi, yi = to_image(atoms["x"], atoms["y"])
    weights = atom_weights(atoms["Z"], z_exponent=p["z_exponent"], heavy_atom_scale=p["heavy_atom_scale"],
                           heavy_atom_min_z=preset.heavy_atom_min_z)
    column = atoms["site"].astype(np.int64)

    # contamination: a smooth patchy field drives both the background and the amorphous atoms
    t_grid = None
    rho = p["amorphous_carbon_per_angstrom2"]
    if p["background_amplitude"] > 0 or rho > 0:
        field = SmoothField(rng, (-pad, size - 1 + pad, -pad, size - 1 + pad), p["background_length_angstrom"] / px)
        g = field.grid((size, size))
        t_grid = np.exp(_BACKGROUND_CONTRAST * g)
        t_mean, t_max = float(t_grid.mean()), float(t_grid.max())
        if rho > 0:
            side = (size - 1 + 2 * pad) * px
            n0 = int(rng.poisson(rho * side * side * t_max / t_mean))
            cx = rng.uniform(-pad, size - 1 + pad, n0)
            cy = rng.uniform(-pad, size - 1 + pad, n0)
            accept = rng.random(n0) * t_max < np.exp(_BACKGROUND_CONTRAST * field.at(cx, cy))
            n_acc = int(accept.sum())
            xi = np.concatenate([xi, cx[accept]])
            yi = np.concatenate([yi, cy[accept]])
            weights = np.concatenate([weights, np.full(n_acc, float(_CARBON_Z) ** p["z_exponent"])])
            column = np.concatenate([column, np.full(n_acc, -1, dtype=np.int64)])
        t_grid = (t_grid / t_mean).astype(np.float32)

    jitter = rng.standard_normal(size) * jitter_px if jitter_px > 0 else None

    # columns where they appear in the image (drift, then the jitter their rows carry)
    sx, sy = to_image(sites["x"], sites["y"])
    if jitter is not None:
        sig_e = math.hypot(
            max(sigma_px, SPLAT_SIGMA_PX), probe_sigma_angstrom(p["energy_kev"], p["convergence_mrad"]) / px
        )
        sx = sx + _row_average(jitter, sy, sig_e)
    in_fov = (sx >= -0.5) & (sx < size - 0.5) & (sy >= -0.5) & (sy < size - 0.5)
    render_kwargs = dict(
        sigma_px=sigma_px,
        pixel_size_angstrom=px,
        energy_kev=p["energy_kev"],
        convergence_mrad=p["convergence_mrad"],
        defocus_angstrom=p["defocus_angstrom"],
        astigmatism_angstrom=p["astigmatism_angstrom"],
        astigmatism_angle_deg=p["astigmatism_angle_deg"],
        c3_um=p["c3_um"],
        probe_tail_fraction=p["probe_tail_fraction"],
        probe_tail_sigma_angstrom=p["probe_tail_sigma_angstrom"],
        row_shift_px=jitter,
        pad_px=pad,
    )
    return Scene(params=p, shape=(size, size), atom_x_px=xi, atom_y_px=yi, atom_weight=weights,
                 atom_column=column, column_x_px=sx, column_y_px=sy, in_fov=in_fov, render_kwargs=render_kwargs,
                 background=t_grid if p["background_amplitude"] > 0 else None, structure=structure)


def simulate_sample(preset: Preset, rng: np.random.Generator, *, image_size_px: int | None = None) -> Sample:
    """Simulate one HAADF-STEM image of a twisted multilayer with its labels.

    Every random choice comes from ``rng``: the same preset and generator state give an
    identical sample.

    Parameters
    ----------
    preset : Preset
        From :func:`gombnet.simulation.presets.load_preset`.
    rng : numpy.random.Generator
    image_size_px : int, optional
        Output size (square); default ``preset.image_size_px``. Everything physical (pixel
        size, lattice, probe) is unchanged, so a larger size shows a larger field of view.

    Returns
    -------
    Sample

    Notes
    -----
    ``Sample.params`` (numeric scalars; keys ``preset.param_names``):

    - ``pixel_size_angstrom`` [Å/px] (magnification); ``rotation_deg``: in-plane rotation of
      layer 0; ``twist_deg``: rotation of layer 1 relative to layer 0 (``twist_deg_layer<i>``
      for further layers); ``interlayer_spacing_angstrom``: distance between layer mid-planes;
      ``lattice_constant_angstrom_layer<i>`` (strain and Vegard's law included).
    - ``vacancy_fraction_layer<i>`` (C, B, N or metal atoms), ``chalcogen_vacancy_fraction_layer<i>``
      (MX2 only): probability that an atom is missing; ``vibration_sigma_angstrom``: standard
      deviation of the independent per-atom thermal displacement (x, y, z); ``n_holes``;
      ``boundary_roughness_angstrom``: waviness of hole and edge boundaries;
      ``edge_layer<i>``: 1 when layer i ends inside the image (covers only part of it).
    - Substitution presets only: ``substitution_scenario``: 0 pristine, 1 one chalcogen
      sublayer, 2 one whole layer, 3 all (both) layers; ``substitution_sublayer``: -1, or
      0 bottom / 1 top chalcogen sublayer for scenario 1; ``<dopant>_fraction_target_layer<i>``:
      the requested composition x = dopant / (host + dopant) of layer i;
      ``<dopant>_fraction_layer<i>``: the realised x over the chalcogen atoms of the columns in
      the image (e.g. ``se_fraction_layer0``).
    - Probe: ``energy_kev``, ``convergence_mrad`` (semi-angle), ``source_sigma_angstrom``
      (Gaussian effective source size), ``defocus_angstrom`` (C1), ``astigmatism_angstrom`` and
      ``astigmatism_angle_deg`` (A1), ``c3_um`` (C3), ``probe_tail_fraction`` and
      ``probe_tail_sigma_angstrom`` (share and width of a broad Gaussian halo around the probe,
      from chromatic aberration). ``atom_sigma_angstrom``: Gaussian size of
      each atom; ``z_exponent``: n in the weight Z**n; ``heavy_atom_scale``: extra factor on
      the weight of atoms with Z >= ``preset.heavy_atom_min_z`` (see :func:`atom_weights`).
    - Noise: ``dose_counts_per_px`` (mean counts per pixel before Poisson noise),
      ``background_amplitude`` (smooth contamination background, times the mean atom signal),
      ``background_length_angstrom`` (its correlation length), ``amorphous_carbon_per_angstrom2``
      (mean density of random contamination C atoms, patchy like the background),
      ``read_noise`` (per pixel) and ``line_offset`` (per scan row), both times the dose;
      ``line_gain`` (relative gain change per scan row); ``jitter_sigma_angstrom`` (random x
      shift of each scan row); ``drift_shear`` (x shift per row, px/px) and ``drift_stretch``
      (relative stretch along y).

    Scan distortions move atoms and labels together: drift is applied to the atom positions
    before rendering, line jitter shifts image rows and each column's label by the jitter
    averaged over the rows its intensity covers.

    Labels: a column's position is the ``Z ** n``-weighted centroid of its (vibrating) atoms;
    its class follows its content, a missing chalcogen counting as the layer's host element
    (S + vacancy -> ``S2``, Se + vacancy -> ``SSe``); a column without atoms has no label.
    """
    scene = simulate_scene(preset, rng, image_size_px=image_size_px)
    p, (size, _) = scene.params, scene.shape
    counts = add_detector_noise(
        scene.noiseless_image(),
        rng,
        dose_counts_per_px=p["dose_counts_per_px"],
        read_noise=p["read_noise"],
        line_offset=p["line_offset"],
        line_gain=p["line_gain"],
    )
    image = normalize_image(counts)

    atoms, sites = scene.structure.atoms, scene.structure.sites
    sx, sy, in_fov = scene.column_x_px, scene.column_y_px, scene.in_fov
    n_cls = len(preset.class_names)
    r_px = preset.disk_radius_angstrom / p["pixel_size_angstrom"]
    near = (sx > -0.5 - r_px - 1) & (sx < size - 0.5 + r_px + 1) & (sy > -0.5 - r_px - 1) & (sy < size - 0.5 + r_px + 1)
    masks = disk_masks(
        sx[near],
        sy[near],
        sites["layer"][near].astype(np.intp) * n_cls + sites["cls"][near],
        preset.n_channels,
        (size, size),
        radius_px=r_px,
    )
    columns = {
        "x_px": sx[in_fov].astype(np.float32),
        "y_px": sy[in_fov].astype(np.float32),
        "layer": sites["layer"][in_fov].astype(np.int16),
        "class": sites["cls"][in_fov].astype(np.int16),
    }
    atom_in = in_fov[atoms["site"]]
    out_atoms = {
        "x": atoms["x"][atom_in].astype(np.float32),
        "y": atoms["y"][atom_in].astype(np.float32),
        "z": atoms["z"][atom_in].astype(np.float32),
        "Z": atoms["Z"][atom_in].astype(np.int16),
        "layer": atoms["layer"][atom_in].astype(np.int16),
    }

    if preset.has_substitution:
        d = preset.dopant.lower()
        z_host, z_dop = ATOMIC_NUMBER[preset.host], ATOMIC_NUMBER[preset.dopant]
        for i, name in enumerate(preset.materials):
            mat = get_material(name)
            frac = 0.0
            if mat.kind == "mx2" and mat.chalcogen == preset.host:
                sel = out_atoms["layer"] == i
                n_dop = int(np.count_nonzero(out_atoms["Z"][sel] == z_dop))
                n_all = n_dop + int(np.count_nonzero(out_atoms["Z"][sel] == z_host))
                frac = n_dop / n_all if n_all else 0.0
            p[f"{d}_fraction_layer{i}"] = frac
    params = {k: float(p[k]) for k in preset.param_names}
    return Sample(image=image, masks=masks, columns=columns, atoms=out_atoms, params=params)


def _row_average(values: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """Average of per-row ``values`` around each y, weighted by a Gaussian of width ``sigma`` rows.

    Rows outside the image count as 0 (they are not shifted).
    """
    k = int(math.ceil(4.0 * sigma)) + 1
    rows = np.floor(y).astype(np.intp)[:, None] + np.arange(-k, k + 2)
    g = np.exp(-0.5 * ((rows - y[:, None]) / sigma) ** 2)
    valid = (rows >= 0) & (rows < values.size)
    v = np.where(valid, values[np.clip(rows, 0, values.size - 1)], 0.0)
    return (g * v).sum(axis=1) / g.sum(axis=1)

"""Atomic structure of a twisted multilayer: lattices, substitution, vacancies, holes, edges, vibration.

Coordinates are in Å in the *image frame*: x along image columns, y along image rows, origin at
the centre of pixel (0, 0); z is the height (layer 0 at z = 0, layer i at i * interlayer spacing).

Column ("site") bookkeeping: every projected column of a layer (a graphene C, a metal atom, a
chalcogen pair) is one site. Its class is named after its content (see
:func:`gombnet.simulation.presets.column_class_name`); a chalcogen column that lost one atom to a
vacancy is labelled as if the missing atom were the layer's host chalcogen (an S + vacancy column
is "S2", an Se + vacancy column is "SSe"), so the label only depends on which dopants are present.
A column that lost all its atoms is not a column any more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lattices import ATOMIC_NUMBER, get_material, lattice_vectors, tile_sites, unit_cell
from .presets import SCENARIOS, Preset, column_class_name

SCENARIO_CODE = {name: i for i, name in enumerate(SCENARIOS)}


@dataclass
class Structure:
    """Atoms and projected columns of one simulated specimen.

    Attributes
    ----------
    atoms : dict of ndarray
        ``x``, ``y``, ``z`` [Å] float64 (with vibration), ``Z`` int16, ``layer`` int16,
        ``site`` int64 (index into ``sites``).
    sites : dict of ndarray
        ``x``, ``y`` [Å] float64: centroid of the column's atoms weighted by ``Z ** z_exponent``
        (where its HAADF intensity is centred); ``layer`` int16; ``cls`` int16 (index into the
        preset's class_names); ``n_dopant`` int16 (dopant atoms in the column).
    """

    atoms: dict[str, np.ndarray]
    sites: dict[str, np.ndarray]


@dataclass(frozen=True)
class Hole:
    """A roughly circular hole: centre [Å], radius [Å], boundary waviness, layers it cuts."""

    x: float
    y: float
    radius: float
    harmonics: np.ndarray  # (4, 2): amplitude [Å], phase of cos(k theta + phase), k = 1..4
    layers: tuple[int, ...]

    def contains(self, xy: np.ndarray) -> np.ndarray:
        dx, dy = xy[:, 0] - self.x, xy[:, 1] - self.y
        theta = np.arctan2(dy, dx)
        k = np.arange(1, len(self.harmonics) + 1)
        r = self.radius + (self.harmonics[:, 0] * np.cos(k * theta[:, None] + self.harmonics[:, 1])).sum(axis=1)
        return dx * dx + dy * dy < r * r


def draw_holes(
    rng: np.random.Generator, n_holes: int, preset: Preset, fov_box: tuple[float, float, float, float], roughness: float
) -> list[Hole]:
    """Random holes with centres uniform in the field of view (box in Å)."""
    holes = []
    x0, x1, y0, y1 = fov_box
    for _ in range(n_holes):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        radius = rng.uniform(*preset.hole_radius_angstrom)
        harm = np.stack([0.5 * roughness * rng.standard_normal(4), rng.uniform(0, 2 * np.pi, 4)], axis=1)
        if preset.n_layers == 1 or rng.random() < preset.hole_both_layers_probability:
            layers = tuple(range(preset.n_layers))
        else:
            layers = (int(rng.integers(preset.n_layers)),)
        holes.append(Hole(cx, cy, radius, harm, layers))
    return holes


def _edge_keep(
    rng: np.random.Generator, xy: np.ndarray, fov_box: tuple[float, float, float, float], roughness: float
) -> np.ndarray:
    """Keep-mask for a layer edge: a wavy line crossing the field of view, one side removed."""
    x0, x1, y0, y1 = fov_box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    size = max(x1 - x0, y1 - y0)
    phi = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(phi), np.sin(phi)])
    offset = rng.uniform(-0.35, 0.35) * size  # the edge always crosses the field of view
    amp = 0.5 * roughness * rng.standard_normal(4)
    phase = rng.uniform(0, 2 * np.pi, 4)
    rel = xy - centre
    s = rel @ normal
    t = rel @ np.array([-normal[1], normal[0]])
    k = np.arange(1, 5)
    wobble = (amp * np.sin(2 * np.pi * k * t[:, None] / size + phase)).sum(axis=1)
    return s <= offset + wobble


def _atom_tables(name: str):
    """Per site type: number of atoms, atomic numbers and z offsets per slot (padded)."""
    uc = unit_cell(name)
    n_types = len(uc.site_atoms)
    n_slots = max(len(a) for a in uc.site_atoms)
    nat = np.array([len(a) for a in uc.site_atoms])
    z_num = np.zeros((n_types, n_slots), dtype=np.int16)
    z_off = np.zeros((n_types, n_slots))
    for t, atoms in enumerate(uc.site_atoms):
        for s, (el, dz) in enumerate(atoms):
            z_num[t, s] = ATOMIC_NUMBER[el]
            z_off[t, s] = dz
    return nat, z_num, z_off, uc


def build_structure(
    preset: Preset,
    params: dict[str, float],
    rng: np.random.Generator,
    *,
    box: tuple[float, float, float, float],
    fov_box: tuple[float, float, float, float],
) -> Structure:
    """Build all layers with the drawn parameters and apply every defect.

    Parameters
    ----------
    preset : Preset
    params : dict
        Drawn parameters (see :func:`gombnet.simulation.sample.draw_parameters`); reads the
        rotation, twists, lattice constants, spacing, defect fractions, vibration, holes,
        edges and substitution entries.
    rng : numpy.random.Generator
        Source of every per-atom random choice (shift, vacancies, dopant sites, vibration,
        hole and edge geometry).
    box : (x_min, x_max, y_min, y_max)
        Region [Å] to fill with atoms (the padded canvas).
    fov_box : (x_min, x_max, y_min, y_max)
        The field of view [Å]; holes and edges are placed so that they cross it.

    Returns
    -------
    Structure
    """
    class_index = {name: i for i, name in enumerate(preset.class_names)}
    roughness = params.get("boundary_roughness_angstrom", 0.0)
    holes = draw_holes(rng, int(params["n_holes"]), preset, fov_box, roughness)
    centre = np.array([(fov_box[0] + fov_box[1]) / 2, (fov_box[2] + fov_box[3]) / 2])
    z_exp = params["z_exponent"]
    scenario = int(params.get("substitution_scenario", 0))
    sublayer = int(params.get("substitution_sublayer", -1))
    dkey = preset.dopant.lower()
    z_dopant = ATOMIC_NUMBER[preset.dopant] if preset.has_substitution else -1

    atoms_parts: list[dict[str, np.ndarray]] = []
    sites_parts: list[dict[str, np.ndarray]] = []
    n_sites_before = 0
    for layer, name in enumerate(preset.materials):
        mat = get_material(name)
        nat, z_num, z_off, uc = _atom_tables(name)
        a = params[f"lattice_constant_angstrom_layer{layer}"]
        rot = params["rotation_deg"] + (
            0.0 if layer == 0 else params["twist_deg" if layer == 1 else f"twist_deg_layer{layer}"]
        )
        vecs = lattice_vectors(name, lattice_constant_angstrom=a, rotation_deg=rot)
        origin = centre + rng.random(2) @ vecs  # random lateral shift within one unit cell
        xy, stype = tile_sites(name, lattice_constant_angstrom=a, rotation_deg=rot, origin_xy=tuple(origin), box=box)

        # site-level removal: holes and edges take whole columns
        keep = np.ones(len(xy), dtype=bool)
        for hole in holes:
            if layer in hole.layers:
                keep &= ~hole.contains(xy)
        if params[f"edge_layer{layer}"]:
            keep &= _edge_keep(rng, xy, fov_box, roughness)
        xy, stype = xy[keep], stype[keep]
        n_sites = len(xy)

        # expand sites to atoms, slot by slot
        site_idx, slot_idx = [], []
        for s in range(z_num.shape[1]):
            idx = np.nonzero(nat[stype] > s)[0]
            site_idx.append(idx)
            slot_idx.append(np.full(idx.size, s))
        site = np.concatenate(site_idx)
        slot = np.concatenate(slot_idx)
        Z = z_num[stype[site], slot].copy()
        dz = z_off[stype[site], slot]
        is_chalc = np.zeros(site.size, dtype=bool)
        if mat.kind == "mx2":
            is_chalc = Z == ATOMIC_NUMBER[mat.chalcogen]

        # chalcogen substitution (before vacancies, so the requested fraction is of all sites)
        target = params.get(f"{dkey}_fraction_target_layer{layer}", 0.0) if preset.has_substitution else 0.0
        if target > 0 and mat.kind == "mx2" and mat.chalcogen == preset.host:
            chosen = _choose_dopant_atoms(rng, preset, scenario, sublayer, target, site, slot, dz, is_chalc, n_sites)
            Z[chosen] = z_dopant

        # vacancies
        frac = np.where(
            is_chalc,
            params.get(f"chalcogen_vacancy_fraction_layer{layer}", 0.0),
            params[f"vacancy_fraction_layer{layer}"],
        )
        present = rng.random(site.size) >= frac
        site, slot, Z, dz = site[present], slot[present], Z[present], dz[present]

        # thermal vibration: a fresh independent displacement per atom and image
        sig = params["vibration_sigma_angstrom"]
        disp = rng.standard_normal((site.size, 3)) * sig if sig > 0 else np.zeros((site.size, 3))
        x = xy[site, 0] + disp[:, 0]
        y = xy[site, 1] + disp[:, 1]
        z = layer * params.get("interlayer_spacing_angstrom", 0.0) + dz + disp[:, 2]

        # columns: intensity-weighted centroid of their atoms, class from content
        w = Z.astype(np.float64) ** z_exp
        n_present = np.bincount(site, minlength=n_sites)
        wsum = np.bincount(site, weights=w, minlength=n_sites)
        sx = np.bincount(site, weights=w * x, minlength=n_sites)
        sy = np.bincount(site, weights=w * y, minlength=n_sites)
        n_dop = np.bincount(site, weights=(Z == z_dopant).astype(np.float64), minlength=n_sites).astype(np.int16)
        cls = _site_classes(mat, uc, stype, n_dop, class_index, preset)
        alive = n_present > 0
        new_index = np.cumsum(alive) - 1 + n_sites_before
        sites_parts.append(
            {
                "x": sx[alive] / wsum[alive],
                "y": sy[alive] / wsum[alive],
                "layer": np.full(int(alive.sum()), layer, dtype=np.int16),
                "cls": cls[alive],
                "n_dopant": n_dop[alive],
            }
        )
        atoms_parts.append(
            {
                "x": x,
                "y": y,
                "z": z,
                "Z": Z.astype(np.int16),
                "layer": np.full(site.size, layer, dtype=np.int16),
                "site": new_index[site],
            }
        )
        n_sites_before += int(alive.sum())

    atoms = {k: np.concatenate([p[k] for p in atoms_parts]) for k in atoms_parts[0]}
    sites = {k: np.concatenate([p[k] for p in sites_parts]) for k in sites_parts[0]}
    return Structure(atoms=atoms, sites=sites)


def _choose_dopant_atoms(rng, preset, scenario, sublayer, target, site, slot, dz, is_chalc, n_sites):
    """Indices of chalcogen atoms to replace by the dopant, exactly round(fraction * n) of them."""
    chalc = np.nonzero(is_chalc)[0]
    if scenario == SCENARIO_CODE["one_sublayer"]:
        # target is the layer composition x; within the chosen sublayer the fraction is 2x
        cand = chalc[(dz[chalc] > 0) if sublayer == 1 else (dz[chalc] < 0)]
        k = min(int(round(2.0 * target * cand.size)), cand.size)
        return rng.choice(cand, size=k, replace=False)
    if preset.max_per_column == 2:
        k = min(int(round(target * chalc.size)), chalc.size)
        return rng.choice(chalc, size=k, replace=False)
    # at most one dopant per column: pick 2x of the columns, then one of each column's atoms
    lookup = np.full((n_sites, 2), -1, dtype=np.int64)
    lookup[site[chalc], slot[chalc]] = chalc
    cols = np.nonzero((lookup >= 0).all(axis=1))[0]
    k = min(int(round(2.0 * target * cols.size)), cols.size)
    picked = rng.choice(cols, size=k, replace=False)
    return lookup[picked, rng.integers(0, 2, size=k)]


def _site_classes(mat, uc, stype, n_dop, class_index, preset) -> np.ndarray:
    """Class index of every site from its type and number of dopant atoms."""
    n_types = len(uc.site_atoms)
    table = np.full((n_types, 3), -1, dtype=np.int16)
    for t, atoms in enumerate(uc.site_atoms):
        elements = [el for el, _ in atoms]
        if len(elements) == 1:
            table[t, :] = class_index[elements[0]]
        else:  # chalcogen pair: host, host + dopant, dopant + dopant
            host = mat.chalcogen
            options = [[host, host]]
            if preset.has_substitution and host == preset.host:
                options += [[host, preset.dopant], [preset.dopant, preset.dopant]]
            for nd, els in enumerate(options):
                name = column_class_name(els)
                if name in class_index:
                    table[t, nd] = class_index[name]
    cls = table[stype, np.minimum(n_dop, 2)]
    return cls

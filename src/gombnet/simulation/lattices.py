"""Monolayer unit cells of the supported 2D materials, and fast tiling of them.

The unit cells come from ASE (:func:`ase.build.graphene`, :func:`ase.build.mx2`) once per
material (cached); tiling, rotation and cropping are done with numpy, because building an ASE
supercell for every simulated image would dominate the simulation time.

Each unit cell is described by *sites*: projected columns (atoms sharing the same in-plane
position). Graphene has two single-atom C sites; a 2H MX2 layer has a single-atom metal site
and a two-atom chalcogen site (one chalcogen at +h above the metal plane, one at -h below).

Lattice constants (Å) and chalcogen heights h (Å, half the chalcogen-chalcogen distance):

========  =======  ======  ==========================================
material  a        h       note
========  =======  ======  ==========================================
graphene  2.460    -       C-C 1.42 Å
hBN       2.504    -       B and N sites
MoS2      3.160    1.586
WS2       3.153    1.570
MoSe2     3.289    1.669
WSe2      3.282    1.680
MoTe2     3.519    1.805   2H
WTe2      3.496    1.800   2H (hypothetical 2H phase; for alloys only)
========  =======  ======  ==========================================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import GombnetError

# atomic numbers of every element the tables below use
ATOMIC_NUMBER = {"B": 5, "C": 6, "N": 7, "S": 16, "Se": 34, "Te": 52, "Mo": 42, "W": 74}

# name -> (kind, lattice constant [Å], chalcogen height [Å] or 0, metal, chalcogen)
_MATERIALS = {
    "graphene": ("graphene", 2.460, 0.0, "", ""),
    "hBN": ("hbn", 2.504, 0.0, "", ""),
    "MoS2": ("mx2", 3.160, 1.586, "Mo", "S"),
    "WS2": ("mx2", 3.153, 1.570, "W", "S"),
    "MoSe2": ("mx2", 3.289, 1.669, "Mo", "Se"),
    "WSe2": ("mx2", 3.282, 1.680, "W", "Se"),
    "MoTe2": ("mx2", 3.519, 1.805, "Mo", "Te"),
    "WTe2": ("mx2", 3.496, 1.800, "W", "Te"),
}

# in-plane rotational symmetry of the projected monolayer [deg]
_SYMMETRY_DEG = {"graphene": 60.0, "hbn": 120.0, "mx2": 120.0}


def list_materials() -> list[str]:
    """Names accepted as a layer material in presets."""
    return list(_MATERIALS)


@dataclass(frozen=True)
class Material:
    """A monolayer 2D material.

    Attributes
    ----------
    name : str
        Key in the material table (``"graphene"``, ``"WS2"``, ...).
    kind : str
        ``"graphene"``, ``"hbn"`` or ``"mx2"`` (2H transition-metal dichalcogenide).
    lattice_constant_angstrom : float
        In-plane lattice constant a [Å].
    chalcogen_height_angstrom : float
        Height of each chalcogen plane above/below the metal plane [Å] (0 for flat layers).
    metal, chalcogen : str
        Element symbols for MX2 (empty strings otherwise).
    symmetry_deg : float
        Rotation that maps the projected monolayer onto itself (60 for graphene, 120 for
        hBN and 2H MX2).
    """

    name: str
    kind: str
    lattice_constant_angstrom: float
    chalcogen_height_angstrom: float
    metal: str
    chalcogen: str
    symmetry_deg: float


def get_material(name: str) -> Material:
    """Look up a material by name; raise GombnetError for unknown names."""
    if name not in _MATERIALS:
        raise GombnetError(
            f"unknown material {name!r}; known materials: {', '.join(_MATERIALS)}"
        )
    kind, a, h, metal, chalcogen = _MATERIALS[name]
    return Material(name, kind, a, h, metal, chalcogen, _SYMMETRY_DEG[kind])


def alloy_endmember(material: Material, dopant: str) -> Material | None:
    """The material with every chalcogen of ``material`` replaced by ``dopant`` (for Vegard's law).

    Returns None when the table has no such material.
    """
    if material.kind != "mx2":
        return None
    name = f"{material.metal}{dopant}2"
    return get_material(name) if name in _MATERIALS else None


@dataclass(frozen=True)
class UnitCell:
    """Projected unit cell of a monolayer, scaled to lattice constant 1.

    Attributes
    ----------
    cell : ndarray, shape (2, 2)
        In-plane lattice vectors (rows) for a = 1.
    site_frac : ndarray, shape (n_sites, 2)
        Site positions as fractions of the lattice vectors.
    site_atoms : tuple of tuple of (str, float)
        For each site, its atoms as (element, z offset [Å] from the layer's mid-plane).
    """

    cell: np.ndarray
    site_frac: np.ndarray
    site_atoms: tuple


@functools.lru_cache(maxsize=None)
def unit_cell(name: str) -> UnitCell:
    """Build (once, cached) the projected unit cell of a material from ASE.

    ASE atoms with the same in-plane position are grouped into one site (a projected column).
    """
    from ase.build import graphene as ase_graphene
    from ase.build import mx2 as ase_mx2

    mat = get_material(name)
    a = mat.lattice_constant_angstrom
    if mat.kind == "graphene":
        atoms = ase_graphene(formula="C2", a=a, vacuum=None)
    elif mat.kind == "hbn":
        atoms = ase_graphene(formula="BN", a=a, vacuum=None)
    else:
        h = mat.chalcogen_height_angstrom
        atoms = ase_mx2(
            formula=f"{mat.metal}{mat.chalcogen}2", kind="2H", a=a, thickness=2 * h, vacuum=None
        )
    cell = np.asarray(atoms.cell[:2, :2], dtype=float)
    pos = np.asarray(atoms.positions, dtype=float)
    symbols = atoms.get_chemical_symbols()
    frac = np.linalg.solve(cell.T, pos[:, :2].T).T % 1.0
    sites: list[list[int]] = []
    for i in range(len(pos)):
        for site in sites:
            if np.allclose(frac[site[0]], frac[i], atol=1e-6):
                site.append(i)
                break
        else:
            sites.append([i])
    z_mid = pos[:, 2].mean()
    site_frac = np.array([frac[s[0]] for s in sites])
    site_atoms = tuple(
        tuple(sorted(((symbols[i], float(pos[i, 2] - z_mid)) for i in s), key=lambda t: t[1]))
        for s in sites
    )
    return UnitCell(cell=cell / a, site_frac=site_frac, site_atoms=site_atoms)


def tile_sites(
    name: str,
    *,
    lattice_constant_angstrom: float,
    rotation_deg: float,
    origin_xy: tuple[float, float],
    box: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Projected site positions of an infinite monolayer, cropped to a box.

    Parameters
    ----------
    name : str
        Material name.
    lattice_constant_angstrom : float
        Lattice constant a [Å] (strain and alloying already applied).
    rotation_deg : float
        In-plane rotation of the lattice [deg]; a positive angle turns +x towards +y
        (clockwise on screen, where y points down).
    origin_xy : (float, float)
        Position [Å] of the lattice origin (a lattice point), i.e. the lateral shift.
    box : (x_min, x_max, y_min, y_max)
        Keep sites inside this box [Å].

    Returns
    -------
    xy : ndarray, shape (n, 2), float64
        Site positions [Å].
    site_type : ndarray, shape (n,), int
        Index into :attr:`UnitCell.site_atoms`.
    """
    uc = unit_cell(name)
    vecs = lattice_vectors(name, lattice_constant_angstrom=lattice_constant_angstrom, rotation_deg=rotation_deg)
    x0, x1, y0, y1 = box
    corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]]) - np.asarray(origin_xy)
    # fractional coordinates of the box corners bound the index range needed
    frac = np.linalg.solve(vecs.T, corners.T).T
    lo = np.floor(frac.min(axis=0)).astype(int) - 1
    hi = np.ceil(frac.max(axis=0)).astype(int) + 1
    i = np.arange(lo[0], hi[0] + 1)
    j = np.arange(lo[1], hi[1] + 1)
    ij = np.stack(np.meshgrid(i, j, indexing="ij"), axis=-1).reshape(-1, 1, 2).astype(float)
    f = ij + uc.site_frac[None, :, :]  # (cells, sites, 2)
    xy = f.reshape(-1, 2) @ vecs + np.asarray(origin_xy)
    site_type = np.tile(np.arange(len(uc.site_frac)), len(ij))
    keep = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    return xy[keep], site_type[keep]


def lattice_vectors(name: str, *, lattice_constant_angstrom: float, rotation_deg: float) -> np.ndarray:
    """In-plane lattice vectors (rows, [Å]) of a material, rotated like :func:`tile_sites`."""
    uc = unit_cell(name)
    theta = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (uc.cell * lattice_constant_angstrom) @ rot.T

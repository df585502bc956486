"""The result folder of ``gombnet predict``: one folder per input file.

``atoms.csv``            layer, species, x_px, y_px, x_angstrom, y_angstrom, score
``probabilities.npz``    probability maps (float16) at the model's pixel size, uncertainty if any
``image.npy``            the input image (float32), for ``gombnet analyze``
``overlay.png``          atoms per layer on the image
``structure.extxyz``     atoms in 3-D (layers at their z) through ASE, also ``structure.cif``
``summary.json``         counts per layer and species, pixel size, model, timings, layer check, file metadata

The folder is assembled in a temporary folder and renamed when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_dir
from ..errors import GombnetError, check
from ..jsonio import dumps

ATOM_COLUMNS = ("layer", "species", "x_px", "y_px", "x_angstrom", "y_angstrom", "score")

# typical z of each layer's metal / carbon plane above the previous one [Å]
INTERLAYER_SPACING_ANGSTROM = {"C": 3.35, "default": 6.2}
CHALCOGEN_HALF_THICKNESS_ANGSTROM = 1.57


def atoms_to_csv(atoms: dict) -> str:
    """The atom table as CSV text (columns :data:`ATOM_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(ATOM_COLUMNS)
    for row in zip(*(atoms[k] for k in ATOM_COLUMNS)):
        layer, species, *values = row
        writer.writerow([int(layer), species, *(f"{v:.4f}" for v in values)])
    return buf.getvalue()


def read_atoms_csv(path: str | os.PathLike) -> dict:
    """Read an ``atoms.csv`` back into arrays."""
    path = Path(path)
    check(path.is_file(), f"{path}: no atoms.csv (run `gombnet predict` first)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        check(reader.fieldnames is not None and set(ATOM_COLUMNS) <= set(reader.fieldnames),
              f"{path}: not a gombnet atoms.csv (needs columns {', '.join(ATOM_COLUMNS)})")
        rows = list(reader)
    out = {"layer": np.array([int(r["layer"]) for r in rows], dtype=int),
           "species": np.array([r["species"] for r in rows], dtype=object)}
    for k in ATOM_COLUMNS[2:]:
        out[k] = np.array([float(r[k]) for r in rows], dtype=float)
    return out


def column_elements(species: str) -> list[str]:
    """Chemical elements of one projected column class: "SSe" -> ["S", "Se"], "S2" -> ["S", "S"]."""
    out = []
    for symbol, count in re.findall(r"([A-Z][a-z]?)(\d*)", species):
        out.extend([symbol] * (int(count) if count else 1))
    return out


def atoms_to_ase(atoms: dict, *, n_layers: int, image_shape, pixel_size_angstrom: float):
    """An :class:`ase.Atoms` of the found columns, each layer at its own height.

    Chalcogen columns with two atoms are split into top and bottom atoms at
    ±1.57 Å from the metal plane (which of the two is Se in an S-Se column is not
    visible in projection; Se is put on top).
    """
    from ase import Atoms

    symbols, positions = [], []
    graphene = set(np.unique(atoms["species"])) <= {"C"}
    spacing = INTERLAYER_SPACING_ANGSTROM["C" if graphene else "default"]
    for layer, species, x, y in zip(atoms["layer"], atoms["species"], atoms["x_angstrom"], atoms["y_angstrom"]):
        z0 = float(layer) * spacing
        elements = column_elements(str(species))
        if len(elements) == 1:
            symbols.append(elements[0])
            positions.append((x, y, z0))
        else:
            for el, dz in zip(sorted(elements, key=lambda e: e != "Se"),
                              (CHALCOGEN_HALF_THICKNESS_ANGSTROM, -CHALCOGEN_HALF_THICKNESS_ANGSTROM)):
                symbols.append(el)
                positions.append((x, y, z0 + dz))
    h, w = image_shape
    cell = [w * pixel_size_angstrom, h * pixel_size_angstrom, max(n_layers * spacing + 10.0, 20.0)]
    structure = Atoms(symbols=symbols, positions=np.reshape(positions, (-1, 3)), cell=cell, pbc=False)
    structure.set_array("layer", np.repeat(
        np.asarray(atoms["layer"], int), [len(column_elements(str(s))) for s in atoms["species"]]))
    return structure


def write_prediction(folder: str | os.PathLike, image: np.ndarray, prediction, *, source: dict | None = None,
                     model_name: str = "", overwrite: bool = False, overlay: bool = True) -> Path:
    """Write the result folder of one image (see the module docstring).

    Parameters
    ----------
    folder : path-like
        Destination folder; an existing one is replaced only with ``overwrite``.
    image : (H, W) array
        The input image at its own pixel size.
    prediction : gombnet.inference.predict.Prediction
    source : dict, optional
        Metadata of the input file (from :func:`gombnet.read_image`).
    model_name : str
        How the model was named by the user.
    """
    from ase.io import write as ase_write

    from .figures import save_figure

    folder = Path(folder)
    atoms = prediction.atoms
    summary = {
        "gombnet_version": __version__,
        "model": model_name,
        "n_layers": prediction.n_layers,
        "class_names": prediction.class_names,
        "counts": prediction.counts(),
        "n_atoms": int(len(atoms["layer"])),
        "pixel_size_angstrom": prediction.pixel_size_angstrom,
        "model_pixel_size_angstrom": prediction.model_pixel_size_angstrom,
        "image_shape": list(image.shape),
        "field_of_view_angstrom": [image.shape[1] * prediction.pixel_size_angstrom,
                                   image.shape[0] * prediction.pixel_size_angstrom],
        "timings_seconds": {k: round(v, 4) for k, v in prediction.timings.items()},
        "layer_check": prediction.layer_check,
        "site_check": prediction.site_check,
        "positions_refined": prediction.refined,
        "source": source or {},
    }
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        (tmp / "atoms.csv").write_text(atoms_to_csv(atoms))
        maps = {"probabilities": prediction.probabilities.astype(np.float16)}
        if prediction.uncertainty is not None:
            maps["uncertainty"] = prediction.uncertainty.astype(np.float16)
        np.savez_compressed(tmp / "probabilities.npz", **maps)
        np.save(tmp / "image.npy", np.asarray(image, np.float32))
        structure = atoms_to_ase(atoms, n_layers=prediction.n_layers, image_shape=image.shape,
                                 pixel_size_angstrom=prediction.pixel_size_angstrom)
        ase_write(tmp / "structure.extxyz", structure, format="extxyz")
        ase_write(tmp / "structure.cif", structure, format="cif")
        if overlay:
            save_figure(result_overlay(image, atoms, summary), tmp / "overlay.png", dpi=150)
        (tmp / "summary.json").write_text(dumps(summary))
    return folder


def result_overlay(image: np.ndarray, atoms: dict, summary: dict):
    """The overlay figure of a result folder's ``image`` and ``atoms``, titled with the source file's name;
    layers, classes and pixel size from its ``summary`` (:func:`write_prediction`'s ``summary.json``)."""
    from .overlay import overlay_figure

    return overlay_figure(image, atoms, n_layers=int(summary["n_layers"]), class_names=list(summary["class_names"]),
                          pixel_size_angstrom=float(summary["pixel_size_angstrom"]),
                          title=Path(str((summary.get("source") or {}).get("source", ""))).name)


def read_summary(folder: str | os.PathLike) -> dict:
    """The ``summary.json`` of a result folder."""
    path = Path(folder) / "summary.json"
    check(path.is_file(), f"{folder}: not a gombnet result folder (no summary.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise GombnetError(f"{path}: corrupt summary.json") from None

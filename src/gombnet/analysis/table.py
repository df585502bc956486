"""One table over many analysed results: a row per image and layer, for a spreadsheet or pandas.

Input: the dictionaries ``gombnet analyze`` returns (and writes to ``analysis.json``). A quantity that
could not be measured for a layer (too few atoms, no Se class) is an empty cell.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import check

FIXED_COLUMNS = (
    "result", "material", "pixel_size_angstrom", "calibration_consistent", "suggested_pixel_size_angstrom",
    "twist_deg", "local_twist_std_deg", "distortion_max_shear_percent", "heterostrain_max_shear_percent",
    "stacking_aa_share", "stacking_ab_share", "stacking_ba_share", "stacking_sp_share",
    "layer", "n_atoms",
)
MEASURED_COLUMNS = (
    "lattice_a_angstrom", "lattice_a_sem_angstrom", "orientation_deg",
    "bond_mean_angstrom", "bond_std_angstrom", "bond_fwhm_angstrom", "n_bonds", "bond_fwhm_undistorted_angstrom",
    "local_rotation_std_deg", "local_area_change_std_percent",
    "se_fraction", "se_fraction_err", "vegard_a_angstrom",
)


def _get(d, *keys):
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def results_table_rows(results: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """Columns and rows of the table of ``results`` (result name -> analysis dictionary).

    Bonds are C–C for graphene and projected W–X for TMDs [Å]; counts get one ``count_<species>``
    column per species found in any result.
    """
    check(len(results) > 0, "no analysed results to tabulate")
    species = []
    for res in results.values():
        for counts in (res.get("counts") or {}).values():
            species.extend(s for s in counts if s not in species)
    rows = []
    for name, res in results.items():
        calibration = res.get("calibration") or {}
        for layer, entry in (res.get("layers") or {}).items():
            counts = (res.get("counts") or {}).get(layer, {})
            bond = entry.get("bonds") or entry.get("w_x_projected_bonds") or {}
            row = {
                "result": name, "material": res.get("material"), "pixel_size_angstrom": res.get("pixel_size_angstrom"),
                "calibration_consistent": calibration.get("consistent"),
                "suggested_pixel_size_angstrom": calibration.get("suggested_pixel_size_angstrom"),
                "twist_deg": _get(res, "twist", "twist_deg"),
                "local_twist_std_deg": _get(res, "strain", "local_twist_deg", "std"),
                "distortion_max_shear_percent": _get(res, "distortion", "common", "max_shear"),
                "heterostrain_max_shear_percent": _get(res, "distortion", "heterostrain", "max_shear"),
                **{f"stacking_{c.lower()}_share": _get(res, "stacking", "fractions", c) for c in ("AA", "AB", "BA", "SP")},
                "layer": layer,
                "n_atoms": sum(int(n) for n in counts.values()),
                "lattice_a_angstrom": _get(entry, "lattice", "a_angstrom"),
                "lattice_a_sem_angstrom": _get(entry, "lattice", "a_sem_angstrom"),
                "orientation_deg": _get(entry, "lattice", "orientation_deg"),
                "bond_mean_angstrom": bond.get("mean"), "bond_std_angstrom": bond.get("std"),
                "bond_fwhm_angstrom": bond.get("fwhm"), "n_bonds": bond.get("count"),
                "bond_fwhm_undistorted_angstrom": _get(entry, "bonds_undistorted", "fwhm"),
                "local_rotation_std_deg": _get(res, "strain", "layers", layer, "rotation_deg", "std"),
                "local_area_change_std_percent": _get(res, "strain", "layers", layer, "dilatation_percent", "std"),
                "se_fraction": _get(entry, "se_fraction", "x"), "se_fraction_err": _get(entry, "se_fraction", "x_err"),
                "vegard_a_angstrom": entry.get("vegard_lattice_constant_angstrom"),
            }
            row.update({f"count_{s}": int(counts.get(s, 0)) for s in species})
            rows.append(row)
    columns = [*FIXED_COLUMNS, *(f"count_{s}" for s in species), *MEASURED_COLUMNS]
    return columns, rows


def write_results_table(results: dict[str, dict], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write :func:`results_table_rows` as CSV to ``path`` (atomically); returns the path."""
    columns, rows = results_table_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text_atomic(path, text.getvalue(), overwrite=overwrite)

"""A TMD model on the real TMD images of ``../shared/real/``, judged by physics (no labels).

For each image, at the file's pixel size and at the one its FFT lattice implies
(``gombnet analyze``'s calibration check): the metal and chalcogen columns per layer against the
areal density of a WS2 lattice, the Se fraction x per layer, the FFT lattice constant, and an
independent check of the species: the chalcogen columns' brightness in the image
(:func:`gombnet.analysis.contrast.column_brightness`) split in two by Otsu's threshold, compared with
the model's S2 / Se-S labels (agreement, and the ratio of the two modes' mean intensities;
a Se-S column is about twice as bright as an S-S one in HAADF). And the strain map against the
composition: the local area change at the metal columns (``gombnet.analysis.strain``) against the
local share of Se-S among the chalcogen columns, both in Gaussian windows of 6.3 and 10 Å
(correlation and slope; Vegard's law expects +5.8 % area per unit Se-S share, WS2 -> Janus WSSe).

    python benchmarks/bench_real_tmd.py --model ws2-wsse-monolayer --model ws2-wsse
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from skimage.filters import threshold_otsu

from gombnet.analysis import composition, contrast, lattice
from gombnet.analysis.strain import local_deformation
from gombnet.analysis.report import calibration_check
from gombnet.inference.io import read_image
from gombnet.inference.predict import predict
from gombnet.nn.checkpoint import load_model

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
IMAGES = ("janus_wsse_partial.tif", "mos2_se_implanted.dm3", "ws2_velox.emd")
BORDER_ANGSTROM = 3.0


def area_change_vs_se(w_xy: np.ndarray, chal_xy: np.ndarray, is_sse: np.ndarray, sigma: float) -> dict:
    """Correlation and slope of the local area change [%] against the local Se-S share."""
    d = local_deformation(w_xy, kind="triangular", smoothing_sigma_angstrom=sigma)
    share = np.full(len(w_xy), np.nan)
    for k, near in enumerate(cKDTree(chal_xy).query_ball_point(w_xy, 3.0 * sigma)):
        if near:
            g = np.exp(-0.5 * np.sum((chal_xy[near] - w_xy[k]) ** 2, axis=1) / sigma**2)
            share[k] = np.sum(g * is_sse[near]) / np.sum(g)
    ok = np.isfinite(d.dilatation) & np.isfinite(share) & (d.coverage > 0.8)  # away from the edges
    if ok.sum() < 20:
        return {"sigma_angstrom": sigma, "n": int(ok.sum())}
    slope = np.polyfit(share[ok], 100.0 * d.dilatation[ok], 1)[0]
    return {"sigma_angstrom": sigma, "n": int(ok.sum()),
            "r": round(float(np.corrcoef(share[ok], d.dilatation[ok])[0, 1]), 3),
            "slope_percent_per_sse_share": round(float(slope), 2)}


def one(path: Path, model, name: str, pixel_size: float | None) -> dict:
    image, px, _ = read_image(path, pixel_size_angstrom=pixel_size)
    result = predict(image, model, pixel_size_angstrom=px)
    atoms = result.atoms
    h, w = image.shape
    b = BORDER_ANGSTROM / px
    inside = (atoms["x_px"] > b) & (atoms["x_px"] < w - 1 - b) & (atoms["y_px"] > b) & (atoms["y_px"] < h - 1 - b)
    area = (w - 2 * b) * (h - 2 * b) * px * px
    fft = lattice.fft_lattice(image, px)
    cal = calibration_check("tmd", {"fft": fft.to_dict()}, px)  # against WS2's 3.15 Å
    out = {"image": path.name, "model": name, "pixel_size_angstrom": round(px, 5),
           "fft_a_angstrom": round(cal["measured_a_angstrom"], 3),
           "lattice_says_pixel_size": round(cal["suggested_pixel_size_angstrom"], 5), "layers": {}}
    n_layers = int(atoms["layer"].max()) + 1 if len(atoms["layer"]) else 0
    for layer in range(n_layers):
        sel = inside & (atoms["layer"] == layer)
        sp = atoms["species"][sel]
        n_w, n_s2, n_sse = int(np.sum(sp == "W")), int(np.sum(sp == "S2")), int(np.sum(sp == "SSe"))
        x = composition.se_fraction(n_s2, n_sse, 0).x if n_s2 + n_sse else float("nan")
        a = composition.vegard_lattice_constant(x) if np.isfinite(x) else composition.A_WS2_ANGSTROM
        per_area = 2.0 / (math.sqrt(3) * a * a)  # metal columns per Å² of a 2H monolayer
        entry = {"W": n_w, "S2": n_s2, "SSe": n_sse, "x_se": round(x, 4),
                 "metal_columns_vs_lattice": round(n_w / (per_area * area), 3)}
        chal = sel & np.isin(atoms["species"], ["S2", "SSe"])
        if chal.sum() >= 20:
            val = contrast.column_brightness(image, atoms["x_px"][chal], atoms["y_px"][chal], px)
            t = threshold_otsu(val)
            bright, model_sse = val > t, atoms["species"][chal] == "SSe"
            entry["intensity_bright_fraction"] = round(float(bright.mean()), 4)
            entry["agreement_with_intensity_split"] = round(float(np.mean(bright == model_sse)), 4)
            if model_sse.any() and (~model_sse).any():
                entry["sse_over_s2_mean_intensity"] = round(float(val[model_sse].mean() / val[~model_sse].mean()), 3)
        w_sel, c_sel = (atoms["layer"] == layer) & (atoms["species"] == "W"), (atoms["layer"] == layer) & np.isin(
            atoms["species"], ["S2", "SSe"])
        if n_layers == 1 and w_sel.sum() >= 50 and c_sel.sum() >= 50:
            w_xy = np.column_stack([atoms["x_angstrom"][w_sel], atoms["y_angstrom"][w_sel]])
            c_xy = np.column_stack([atoms["x_angstrom"][c_sel], atoms["y_angstrom"][c_sel]])
            is_sse = (atoms["species"][c_sel] == "SSe").astype(float)
            entry["area_change_vs_sse_share"] = [area_change_vs_se(w_xy, c_xy, is_sse, s) for s in (6.3, 10.0)]
        out["layers"][f"layer{layer}"] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model name or run folder (repeatable)")
    ap.add_argument("--images", default=",".join(IMAGES), help="comma-separated files in ../shared/real")
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args()
    rows = []
    for name in args.model or ["ws2-wsse-monolayer"]:
        model = load_model(name)
        for file in args.images.split(","):
            path = REAL / file
            first = one(path, model, name, None)
            rows.append(first)
            print(json.dumps(first))
            if abs(first["lattice_says_pixel_size"] / first["pixel_size_angstrom"] - 1) > 0.04:
                rows.append(one(path, model, name, first["lattice_says_pixel_size"]))
                print(json.dumps(rows[-1]))
    if args.json:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()

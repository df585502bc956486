"""Tests for gombnet.report.figures: figures render, carry units, and save atomically."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from gombnet.analysis.composition import fit_vegard, vegard_lattice_constant
from gombnet.analysis.moire import stacking_at, stacking_map
from gombnet.analysis.stats import compare_site_distributions
from gombnet.errors import GombnetError
from gombnet.report.figures import (
    bond_length_figure,
    kde_comparison_figure,
    save_figure,
    stacking_map_figure,
    vegard_figure,
)


def _tmd(a, extent, angle_deg=0.0, side=+1):
    n = int(2 * extent / a) + 6
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    w = i.reshape(-1, 1) * np.array([a, 0.0]) + j.reshape(-1, 1) * np.array([a / 2, a * math.sqrt(3) / 2])
    x = w + side * np.array([a / 2, a * math.sqrt(3) / 6])
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]).T
    keep = lambda p: p[np.all((p > -4) & (p < extent + 4), axis=1)]  # noqa: E731
    return keep(w @ rot), keep(x @ rot)


@pytest.fixture(scope="module")
def moire():
    wa, xa = _tmd(3.15, 30.0)
    wb, xb = _tmd(3.20, 30.0, angle_deg=5.0, side=-1)
    maps = stacking_map(wa, xa, wb, xb, (100, 100), 0.3)
    rng = np.random.default_rng(4)
    se = xb[np.all((xb > 1) & (xb < 29), axis=1)]
    se = se[rng.choice(len(se), 40, replace=False)]
    site = stacking_at(se, wa, xa, wb, xb)["stacking"]
    cmp = compare_site_distributions(site, maps["stacking"].ravel(), rng=rng, n_bootstrap=100)
    return maps, se, cmp


def _figures(moire):
    maps, se, cmp = moire
    rng = np.random.default_rng(0)
    d = rng.normal(1.39, 0.05, 800)
    x = np.array([0.01, 0.02, 0.3, 0.4])
    a = vegard_lattice_constant(x) + rng.normal(0, 0.005, 4)
    fit = fit_vegard(x, a, a_err_angstrom=np.full(4, 0.005))
    return {
        "bonds": bond_length_figure(d),
        "vegard": vegard_figure(x, a, a_err_angstrom=np.full(4, 0.005), fit=fit, labels=["1A", "1B", "2A", "2B"]),
        "map": stacking_map_figure(maps, 0.3, sites_angstrom=se),
        "kde": kde_comparison_figure(cmp),
    }


def _all_text(fig: Figure) -> str:
    parts = []
    for ax in fig.axes:
        parts += [ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.texts]
        leg = ax.get_legend()
        if leg is not None:
            parts += [t.get_text() for t in leg.get_texts()]
    for leg in fig.legends:
        parts += [t.get_text() for t in leg.get_texts()]
    return "\n".join(parts)


def test_figures_have_units_and_statistics(moire):
    figs = _figures(moire)
    assert all(isinstance(f, Figure) for f in figs.values())
    bonds = _all_text(figs["bonds"])
    assert "distance [Å]" in bonds and "FWHM" in bonds and "mean" in bonds
    assert "[Å]" in _all_text(figs["vegard"]) and "Vegard" in _all_text(figs["vegard"])
    m = _all_text(figs["map"])
    assert "x [Å]" in m and "y [Å]" in m and "stacking order [Å]" in m and "n = 40" in m
    k = _all_text(figs["kde"])
    assert "KS p" in k and "χ² p" in k and "MSE" in k and "[Å]" in k


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_save_each_format(moire, tmp_path, suffix, magic):
    for name, fig in _figures(moire).items():
        out = save_figure(fig, tmp_path / f"{name}{suffix}")
        data = out.read_bytes()
        assert out.suffix == suffix
        assert data.startswith(magic), name
        assert len(data) > 5_000, name
    assert not list(tmp_path.glob(".*part"))  # no temporary files left


def test_png_content_is_not_blank(moire, tmp_path):
    for name, fig in _figures(moire).items():
        path = save_figure(fig, tmp_path / f"{name}.png", dpi=100)
        img = imread(path)
        assert img.ndim == 3 and min(img.shape[:2]) > 200
        rgb = img[..., :3].reshape(-1, 3)
        # Non-trivial: many colours and a sizeable non-white area.
        assert len(np.unique(np.round(rgb * 255).astype(int), axis=0)) > 50, name
        assert np.mean(rgb.min(axis=1) < 0.9) > 0.03, name


def test_save_refuses_overwrite_and_bad_suffix(moire, tmp_path):
    fig = _figures(moire)["bonds"]
    path = save_figure(fig, tmp_path / "a.png")
    before = path.read_bytes()
    with pytest.raises(GombnetError):
        save_figure(fig, path)
    assert path.read_bytes() == before
    save_figure(fig, path, overwrite=True, dpi=100)
    assert path.read_bytes() != before
    with pytest.raises(GombnetError):
        save_figure(fig, tmp_path / "a.jpg")
    with pytest.raises(GombnetError):
        save_figure(fig, tmp_path / "b.png", dpi=5)
    with pytest.raises(GombnetError):
        save_figure("not a figure", tmp_path / "c.png")


def test_figure_bad_input(moire):
    maps, se, cmp = moire
    with pytest.raises(GombnetError):
        bond_length_figure([1.4])
    with pytest.raises(GombnetError):
        vegard_figure([0.1, 0.2], [3.16])
    with pytest.raises(GombnetError):
        vegard_figure([0.1, 0.2], [3.16, 3.17], labels=["only one"])
    with pytest.raises(GombnetError):
        stacking_map_figure(np.zeros(10), 0.1)
    with pytest.raises(GombnetError):
        stacking_map_figure(np.full((5, 5), np.nan), 0.1)
    with pytest.raises(GombnetError):
        stacking_map_figure(maps, 0.0)
    with pytest.raises(GombnetError):
        stacking_map_figure(maps, 0.3, origin_angstrom=(np.nan, 0.0))
    with pytest.raises(GombnetError):
        kde_comparison_figure({"not": "a result"})


def _atoms(n_layers, class_names, per=4):
    rng = np.random.default_rng(0)
    rows = [(layer, name) for layer in range(n_layers) for name in class_names for _ in range(per)]
    return {"layer": np.array([r[0] for r in rows]), "species": np.array([r[1] for r in rows]),
            "x_px": rng.uniform(0, 63, len(rows)), "y_px": rng.uniform(0, 63, len(rows))}


def test_overlay_colours_layers_or_for_one_layer_species():
    from matplotlib.colors import to_hex

    from gombnet.report.overlay import overlay_figure

    classes = ["W", "S2", "SSe"]
    image = np.random.default_rng(1).random((64, 64))
    two = overlay_figure(image, _atoms(2, classes), n_layers=2, class_names=classes, pixel_size_angstrom=0.1)
    assert [ax.get_title() for ax in two.axes] == ["all layers", "layer 0", "layer 1"]
    layer0 = {to_hex(c.get_facecolor()[0]) for c in two.axes[1].collections}
    assert len(layer0) == 1  # one colour per layer, the species by marker
    one = overlay_figure(image, _atoms(1, classes), n_layers=1, class_names=classes, pixel_size_angstrom=0.1)
    assert [ax.get_title() for ax in one.axes] == ["image", "layer 0"]
    assert not one.axes[0].collections  # the bare image beside the atoms
    colours = [to_hex(c.get_facecolor()[0]) for c in one.axes[1].collections]
    assert len(set(colours)) == 3
    labels = [t.get_text() for t in one.axes[1].get_legend().get_texts()]
    assert labels == ["W (4)", "S2 (4)", "SSe (4)"]


def test_strain_and_registry_maps():
    from gombnet.analysis.graphene_stacking import STACKING_CLASSES
    from gombnet.analysis.strain import deformation_maps
    from gombnet.report.figures import deformation_figure, registry_map_figure

    a = 2.46
    i, j = np.meshgrid(np.arange(-20, 21), np.arange(-20, 21))
    base = i.reshape(-1, 1) * np.array([a, 0.0]) + j.reshape(-1, 1) * np.array([a / 2, a * math.sqrt(3) / 2])
    layer = np.vstack([base, base + np.array([a / 2, a * math.sqrt(3) / 6])])
    layer = layer[np.all(np.abs(layer) < 20.0, axis=1)]
    t = math.radians(7.0)
    twisted = layer @ np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]).T
    fig = deformation_figure(deformation_maps([layer, twisted], grid_spacing_angstrom=2.0))
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "local twist [°]" in labels and "layer 1 area change [%]" in labels and "y [Å]" in labels
    registry = np.array([[0, 1, 2], [3, -1, 1]])
    fig = registry_map_figure(registry, 0.5)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == [f"{name} {share} %" for name, share in zip(STACKING_CLASSES, (20, 40, 20, 20))]
    with pytest.raises(GombnetError, match="DeformationMaps"):
        deformation_figure({"twist_deg": np.zeros((2, 2))})
    with pytest.raises(GombnetError, match="2-D map"):
        registry_map_figure(np.zeros(5, int), 0.5)


def test_bond_figure_shows_the_undistorted_bonds():
    rng = np.random.default_rng(0)
    d = rng.normal(1.42, 0.06, 500)
    fig = bond_length_figure(d, undistorted_angstrom=rng.normal(1.42, 0.04, 500))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("scan distortion undone: FWHM 0.0") for label in labels)
    assert not any("undone" in t.get_text() for t in bond_length_figure(d).axes[0].get_legend().get_texts())

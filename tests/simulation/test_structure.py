"""Structures: twist, densities, defects and Se substitution scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from gombnet.simulation.lattices import get_material, lattice_vectors, list_materials, unit_cell
from gombnet.simulation.sample import simulate_sample


SE, S, W = 34, 16, 74


def orientation_deg(xy: np.ndarray, fold: int) -> float:
    """Orientation of a lattice modulo 360/fold, from nearest-neighbour bond directions."""
    d, j = cKDTree(xy).query(xy, k=4)
    nn = np.median(d[:, 1])
    vecs = []
    for i in range(len(xy)):
        for dist, k in zip(d[i, 1:], j[i, 1:]):
            if dist < 1.25 * nn:
                vecs.append(xy[k] - xy[i])
    v = np.asarray(vecs)
    ang = np.arctan2(v[:, 1], v[:, 0])
    return math.degrees(np.angle(np.exp(1j * fold * ang).mean())) / fold % (360 / fold)


def test_unit_cells_from_ase():
    assert set(list_materials()) >= {"graphene", "hBN", "MoS2", "WS2", "MoSe2", "WSe2"}
    uc = unit_cell("WS2")
    assert sorted(len(a) for a in uc.site_atoms) == [1, 2]
    pair = next(a for a in uc.site_atoms if len(a) == 2)
    assert [el for el, _ in pair] == ["S", "S"]
    assert sorted(z for _, z in pair) == pytest.approx([-1.57, 1.57], abs=1e-6)
    assert get_material("WS2").lattice_constant_angstrom == 3.153


@pytest.mark.parametrize("twist", [0.7, 17.3, 41.0])
def test_twist_graphene(twist, clean_preset):
    p = clean_preset("graphene", twist_deg=(twist, twist), pixel_size_angstrom=(0.106, 0.106))
    s = simulate_sample(p, np.random.default_rng(1), image_size_px=128)
    xy = np.c_[s.columns["x_px"], s.columns["y_px"]] * 0.106
    layer = s.columns["layer"]
    o0 = orientation_deg(xy[layer == 0], 6)
    o1 = orientation_deg(xy[layer == 1], 6)
    measured = (o1 - o0) % 60
    assert min(abs(measured - twist), 60 - abs(measured - twist)) < 0.05
    assert (o0 - s.params["rotation_deg"]) % 30 == pytest.approx(0, abs=0.05) or (
        (o0 - s.params["rotation_deg"]) % 30 == pytest.approx(30, abs=0.05)
    )


def test_twist_with_vibration_and_strain(clean_preset):
    p = clean_preset(
        "graphene", twist_deg=(23.0, 23.0), vibration_sigma_angstrom=(0.05, 0.05), lattice_strain=(-0.01, 0.01)
    )
    s = simulate_sample(p, np.random.default_rng(2), image_size_px=160)
    xy = np.c_[s.columns["x_px"], s.columns["y_px"]]
    layer = s.columns["layer"]
    measured = (orientation_deg(xy[layer == 1], 6) - orientation_deg(xy[layer == 0], 6)) % 60
    assert measured == pytest.approx(23.0, abs=0.5)


def test_twist_ws2_modulo_120(clean_preset):
    """A 2H layer is only 3-fold symmetric: 77 deg and 17 deg twists are different structures."""
    p = clean_preset("ws2-wsse", twist_deg=(77.0, 77.0), scenario_weights=(1.0, 0.0, 0.0, 0.0))
    s = simulate_sample(p, np.random.default_rng(3), image_size_px=128)
    c = s.columns
    orient = []
    for layer in (0, 1):
        w = np.c_[c["x_px"], c["y_px"]][(c["layer"] == layer) & (c["class"] == 0)]
        x = np.c_[c["x_px"], c["y_px"]][(c["layer"] == layer) & (c["class"] == 1)]
        _, k = cKDTree(x).query(w)  # W -> nearest S2 column points along one of 3 directions
        v = x[k] - w
        ang = np.arctan2(v[:, 1], v[:, 0])
        orient.append(math.degrees(np.angle(np.exp(3j * ang).mean())) / 3)
    assert (orient[1] - orient[0]) % 120 == pytest.approx(77.0, abs=0.1)


def atoms_per_area(s, layer, element=None):
    size = s.image.shape[0] * s.params["pixel_size_angstrom"]
    sel = s.atoms["layer"] == layer
    if element is not None:
        sel &= s.atoms["Z"] == element
    return np.count_nonzero(sel) / size**2


def test_graphene_density(clean_preset):
    p = clean_preset("graphene")
    samples = [simulate_sample(p, np.random.default_rng(i), image_size_px=256) for i in range(3)]
    dens = [atoms_per_area(s, layer) for s in samples for layer in (0, 1)]
    expected = 4 / (math.sqrt(3) * 2.46**2)  # 2 atoms per cell of area sqrt(3)/2 a^2
    assert expected == pytest.approx(0.382, abs=0.001)
    assert np.mean(dens) == pytest.approx(expected, rel=0.015)


def test_ws2_density_and_spacing(clean_preset):
    p = clean_preset("ws2-wsse", scenario_weights=(1.0, 0.0, 0.0, 0.0), interlayer_spacing_angstrom=(6.2, 6.2))
    s = simulate_sample(p, np.random.default_rng(4), image_size_px=256)
    cell = math.sqrt(3) / 2 * 3.153**2
    assert atoms_per_area(s, 0, W) == pytest.approx(1 / cell, rel=0.04)
    assert atoms_per_area(s, 1, S) == pytest.approx(2 / cell, rel=0.04)
    assert not np.any(s.atoms["Z"] == SE)
    z_w = s.atoms["z"][s.atoms["Z"] == W].astype(float)
    assert np.unique(np.round(z_w, 3)).tolist() == [0.0, 6.2]
    z_s0 = s.atoms["z"][(s.atoms["Z"] == S) & (s.atoms["layer"] == 0)].astype(float)
    assert np.unique(np.round(z_s0, 3)).tolist() == [-1.57, 1.57]


def test_vacancies(clean_preset):
    p = clean_preset("graphene", vacancy_fraction=(0.1, 0.1))
    n_clean = len(simulate_sample(clean_preset("graphene"), np.random.default_rng(5), image_size_px=200).atoms["x"])
    n_vac = len(simulate_sample(p, np.random.default_rng(5), image_size_px=200).atoms["x"])
    assert n_vac / n_clean == pytest.approx(0.9, abs=0.03)


def lattice_residuals(s, layer=0):
    """Displacement [Å] of every graphene atom of a layer from its ideal lattice site."""
    vecs = lattice_vectors(
        "graphene",
        lattice_constant_angstrom=s.params[f"lattice_constant_angstrom_layer{layer}"],
        rotation_deg=s.params["rotation_deg"],
    )
    sel = s.atoms["layer"] == layer
    frac = np.linalg.solve(vecs.T, np.c_[s.atoms["x"], s.atoms["y"]][sel].T.astype(float)).T
    wrap = lambda f: (f + 0.5) % 1.0 - 0.5  # noqa: E731
    rel = wrap(frac - frac[0])
    group = np.linalg.norm(rel @ vecs, axis=1) < 0.7  # same sublattice as atom 0 (others are 1.42 A off)
    res = np.zeros_like(frac)
    for g in (group, ~group):
        centre = np.angle(np.exp(2j * np.pi * rel[g]).mean(axis=0)) / (2 * np.pi)
        res[g] = wrap(rel[g] - centre)
    return res @ vecs


def test_vibration_is_drawn_per_atom_and_image(clean_preset):
    sig = 0.05
    p = clean_preset("graphene", vibration_sigma_angstrom=(sig, sig), rotation_deg=(10.0, 10.0))
    rng = np.random.default_rng(6)
    a, b = (lattice_residuals(simulate_sample(p, rng, image_size_px=200)) for _ in range(2))
    for res in (a, b):
        assert res.std(axis=0) == pytest.approx([sig, sig], rel=0.1)
    n = min(len(a), len(b))
    assert abs(np.corrcoef(a[:n, 0], b[:n, 0])[0, 1]) < 0.15  # a new pattern in every image
    still = lattice_residuals(simulate_sample(clean_preset("graphene"), rng, image_size_px=100))
    assert np.allclose(still, 0, atol=1e-5)  # no vibration: on the lattice up to float32 rounding


def test_holes_and_edges(clean_preset):
    px = dict(pixel_size_angstrom=(0.106, 0.106))
    base = simulate_sample(clean_preset("graphene", **px), np.random.default_rng(8), image_size_px=128)
    n0 = np.bincount(base.columns["layer"], minlength=2)
    holes = clean_preset(
        "graphene", n_holes=(2, 2), hole_radius_angstrom=(3.0, 3.0), hole_both_layers_probability=1.0, **px
    )
    s = simulate_sample(holes, np.random.default_rng(8), image_size_px=128)
    n1 = np.bincount(s.columns["layer"], minlength=2)
    assert np.all(n1 < n0)
    edge = clean_preset("graphene", edge_probability=1.0, **px)
    for seed in range(4):
        s = simulate_sample(edge, np.random.default_rng(seed), image_size_px=128)
        frac = np.bincount(s.columns["layer"], minlength=2) / n0
        assert np.all((frac > 0.08) & (frac < 0.92))  # the edge crosses the image
        assert s.params["edge_layer0"] == s.params["edge_layer1"] == 1.0


def column_se_counts(s):
    """Se atoms per layer and SSe columns per layer."""
    se_atoms = [np.count_nonzero((s.atoms["layer"] == k) & (s.atoms["Z"] == SE)) for k in (0, 1)]
    sse_cols = [np.count_nonzero((s.columns["layer"] == k) & (s.columns["class"] == 2)) for k in (0, 1)]
    return se_atoms, sse_cols


def test_scenario_pristine(se_preset):
    s = simulate_sample(se_preset((1, 0, 0, 0)), np.random.default_rng(0), image_size_px=128)
    assert s.params["substitution_scenario"] == 0
    assert column_se_counts(s) == ([0, 0], [0, 0])
    assert s.params["se_fraction_layer0"] == s.params["se_fraction_layer1"] == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_scenario_one_sublayer(seed, se_preset):
    p = se_preset((0, 1, 0, 0), sublayer_fraction=(0.6, 0.6))
    s = simulate_sample(p, np.random.default_rng(seed), image_size_px=512)
    assert s.params["substitution_scenario"] == 1
    layer = int(np.argmax([s.params["se_fraction_target_layer0"], s.params["se_fraction_target_layer1"]]))
    assert s.params[f"se_fraction_target_layer{layer}"] == pytest.approx(0.3)
    assert s.params[f"se_fraction_target_layer{1 - layer}"] == 0
    se = (s.atoms["Z"] == SE)
    assert np.all(s.atoms["layer"][se] == layer)
    z_mid = layer * s.params["interlayer_spacing_angstrom"]
    side = np.sign(s.atoms["z"][se] - z_mid)
    assert np.all(side == side[0])  # one sublayer only
    assert (side[0] > 0) == (s.params["substitution_sublayer"] == 1)
    chalc = (s.atoms["layer"] == layer) & np.isin(s.atoms["Z"], (S, SE)) & (np.sign(s.atoms["z"] - z_mid) == side[0])
    assert np.count_nonzero(se) / np.count_nonzero(chalc) == pytest.approx(0.6, abs=0.08)
    assert s.params[f"se_fraction_layer{layer}"] == pytest.approx(0.3, abs=0.05)
    se_atoms, sse_cols = column_se_counts(s)
    assert se_atoms == sse_cols  # without vacancies every Se sits in its own SSe column


def test_scenario_one_layer(se_preset):
    p = se_preset((0, 0, 1, 0), layer_fraction=(0.3, 0.3))
    s = simulate_sample(p, np.random.default_rng(2), image_size_px=512)
    assert s.params["substitution_scenario"] == 2
    layer = 0 if s.params["se_fraction_target_layer0"] > 0 else 1
    assert s.params[f"se_fraction_layer{layer}"] == pytest.approx(0.3, abs=0.05)
    assert s.params[f"se_fraction_layer{1 - layer}"] == 0
    se = s.atoms["Z"] == SE
    z_mid = layer * s.params["interlayer_spacing_angstrom"]
    assert len(set(np.sign(s.atoms["z"][se] - z_mid))) == 2  # both sublayers of the layer
    se_atoms, sse_cols = column_se_counts(s)
    assert se_atoms == sse_cols  # max one Se per column
    # Vegard's law between WS2 (3.153 A) and WSe2 (3.282 A)
    assert s.params[f"lattice_constant_angstrom_layer{layer}"] == pytest.approx(3.153 + 0.3 * (3.282 - 3.153))
    assert s.params[f"lattice_constant_angstrom_layer{1 - layer}"] == pytest.approx(3.153)


def test_scenario_both_layers(se_preset):
    p = se_preset((0, 0, 0, 1), both_fraction=(0.2, 0.2))
    s = simulate_sample(p, np.random.default_rng(3), image_size_px=512)
    assert s.params["substitution_scenario"] == 3
    for layer in (0, 1):
        assert s.params[f"se_fraction_layer{layer}"] == pytest.approx(0.2, abs=0.05)
    se_atoms, sse_cols = column_se_counts(s)
    assert se_atoms == sse_cols


def test_scenario_choice_follows_weights(se_preset):
    p = se_preset((1, 1, 1, 1))
    rng = np.random.default_rng(0)
    codes = [simulate_sample(p, rng, image_size_px=32).params["substitution_scenario"] for _ in range(40)]
    assert set(codes) == {0, 1, 2, 3}


def test_se2_columns_and_vacancy_labels(clean_preset):
    """Column classes follow the column content; a vacancy counts as the host S."""
    p = clean_preset(
        "ws2-wsse",
        class_names=("W", "S2", "SSe", "Se2"),
        max_per_column=2,
        scenario_weights=(0, 0, 1, 0),
        layer_fraction=(0.6, 0.6),
        chalcogen_vacancy_fraction=(0.2, 0.2),
    )
    s = simulate_sample(p, np.random.default_rng(4), image_size_px=128)
    px = s.params["pixel_size_angstrom"]
    cols = np.c_[s.columns["x_px"], s.columns["y_px"]] * px
    tree = cKDTree(cols)
    d, k = tree.query(np.c_[s.atoms["x"], s.atoms["y"]])
    assert d.max() < 1e-3  # every atom sits on one of the columns (no vibration here)
    chalc_cols = np.isin(s.columns["class"], (1, 2, 3))
    n_se = np.bincount(k, weights=s.atoms["Z"] == SE, minlength=len(cols))
    n_at = np.bincount(k, minlength=len(cols))
    assert np.all(s.columns["layer"][k] == s.atoms["layer"])
    expected_class = np.where(chalc_cols, 1 + n_se, 0)  # S2 (0 Se), SSe (1 Se), Se2 (2 Se)
    assert np.array_equal(s.columns["class"], expected_class)
    assert np.count_nonzero(s.columns["class"] == 3) > 0
    assert np.count_nonzero(chalc_cols & (n_at == 1)) > 0  # single-atom columns exist and are labelled


def test_other_materials_and_three_layers():
    from gombnet.simulation.presets import preset_from_dict

    p = preset_from_dict(
        {
            "image_size_px": 96,
            "class_names": ["B", "N", "C", "Mo", "S2"],
            "structure": {"materials": ["hBN", "graphene", "MoS2"], "interlayer_spacing_angstrom": 3.4},
        }
    )
    assert p.n_layers == 3 and p.n_channels == 15
    assert "twist_deg_layer2" in p.param_names
    s = simulate_sample(p, np.random.default_rng(0))
    c = s.columns
    names = np.array(p.class_names)[c["class"]]
    assert set(names[c["layer"] == 0]) == {"B", "N"}
    assert set(names[c["layer"] == 1]) == {"C"}
    assert set(names[c["layer"] == 2]) == {"Mo", "S2"}
    n_b, n_n = np.count_nonzero(names == "B"), np.count_nonzero(names == "N")
    assert abs(n_b - n_n) < 0.1 * n_b
    assert set(s.atoms["Z"][s.atoms["layer"] == 2]) == {42, 16}
    assert s.masks.shape == (15, 96, 96)
    assert s.masks[[2, 3, 4, 5, 6, 8, 9, 10, 11, 12]].sum() == 0  # classes absent from a layer stay empty

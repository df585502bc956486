"""Preset loading and validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.simulation.presets import (
    PRESET_DIR,
    SCHEMA,
    Preset,
    column_class_name,
    list_presets,
    load_preset,
    possible_classes,
    preset_from_dict,
    with_overrides,
)
from gombnet.simulation.sample import simulate_sample

MINIMAL = """
image_size_px = 64
class_names = ["C"]
[structure]
materials = ["graphene", "graphene"]
"""


def write(tmp_path, text, name="my.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path, text) -> str:
    with pytest.raises(GombnetError) as info:
        load_preset(write(tmp_path, text))
    msg = str(info.value)
    assert "\n" not in msg  # one line for the CLI
    return msg


def test_builtin_presets_load():
    assert {"graphene", "ws2-wsse"} <= set(list_presets())
    g = load_preset("graphene")
    assert isinstance(g, Preset)
    assert (g.n_layers, g.class_names, g.image_size_px, g.n_channels) == (2, ("C",), 256, 2)
    assert g.pixel_size_angstrom[0] < 0.106 < g.pixel_size_angstrom[1]
    w = load_preset("ws2-wsse")
    assert (w.n_layers, w.class_names, w.n_channels) == (2, ("W", "S2", "SSe"), 6)
    assert w.materials == ("WS2", "WS2") and w.host == "S" and w.dopant == "Se"
    for p in (g, w):
        assert len(set(p.param_names)) == len(p.param_names)
        assert p.dose_counts_per_px[0] <= 10 and p.dose_counts_per_px[1] >= 1e4


def test_load_by_path_and_name_agree():
    assert load_preset(PRESET_DIR / "graphene.toml") == load_preset("graphene")


def test_minimal_preset_uses_defaults(tmp_path):
    p = load_preset(write(tmp_path, MINIMAL))
    assert p.name == "my" and p.n_layers == 2 and p.image_size_px == 64
    assert not p.has_substitution
    s = simulate_sample(p, np.random.default_rng(0))
    assert s.image.shape == (64, 64) and s.masks.shape == (2, 64, 64)
    assert list(s.params) == list(p.param_names)


def test_to_dict_round_trip():
    for name in list_presets():
        p = load_preset(name)
        assert preset_from_dict(p.to_dict()) == p


def test_unknown_preset_name():
    with pytest.raises(GombnetError, match="unknown preset 'grafene'.*graphene"):
        load_preset("grafene")


def test_missing_file(tmp_path):
    with pytest.raises(GombnetError, match="not found"):
        load_preset(tmp_path / "nope.toml")


def test_malformed_toml(tmp_path):
    assert "malformed TOML" in error_of(tmp_path, MINIMAL + "\n[noise\ndose = 3\n")


def test_inverted_range(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "twist_deg = [10.0, 5.0]\n")
    assert "structure.twist_deg" in msg and "inverted" in msg


def test_negative_range(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "[defects]\nvibration_sigma_angstrom = [-0.1, 0.1]\n")
    assert "defects.vibration_sigma_angstrom" in msg and "negative" in msg


def test_non_positive_dose(tmp_path):
    assert "noise.dose_counts_per_px" in error_of(tmp_path, MINIMAL + "[noise]\ndose_counts_per_px = [0, 10]\n")


def test_unknown_key(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "[noise]\nshot_noise = 3\n")
    assert "noise.shot_noise" in msg and "dose_counts_per_px" in msg  # lists the known keys
    assert "colour" in error_of(tmp_path, 'colour = "red"\n' + MINIMAL)
    assert "optics" in error_of(tmp_path, MINIMAL + "[optics]\nx = 1\n")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[noise]\ndose_counts_per_px = "lots"\n', "noise.dose_counts_per_px"),
        ("[noise]\ndose_counts_per_px = [1, 2, 3]\n", "noise.dose_counts_per_px"),
        ("[defects]\nn_holes = [0.5, 2]\n", "defects.n_holes"),
        ("[defects]\nedge_probability = 1.5\n", "defects.edge_probability"),
        ("[defects]\nvacancy_fraction = [0.0, 2.0]\n", "defects.vacancy_fraction"),
        ("[image]\npixel_size_angstrom = [true, 1]\n", "image.pixel_size_angstrom"),
        ("[labels]\ndisk_radius_angstrom = -1\n", "labels.disk_radius_angstrom"),
        ("[image]\nheavy_atom_scale = [0, 1]\n", "image.heavy_atom_scale"),
        ("[image]\nheavy_atom_min_z = 0\n", "image.heavy_atom_min_z"),
        ("[image]\nheavy_atom_min_z = 37.5\n", "image.heavy_atom_min_z"),
    ],
)
def test_wrong_types(tmp_path, extra, key):
    assert key in error_of(tmp_path, MINIMAL + extra)


def test_bad_structure(tmp_path):
    assert "unknown material" in error_of(tmp_path, MINIMAL.replace('"graphene", "graphene"', '"graphite"'))
    assert "class_names" in error_of(tmp_path, MINIMAL.replace('["C"]', '["W"]'))
    assert "image_size_px" in error_of(tmp_path, MINIMAL.replace("64", "8"))
    text = MINIMAL.replace('["C"]', '["W", "S2"]').replace('"graphene", "graphene"', '"WS2", "WS2"')
    load_preset(write(tmp_path, text))  # fine without substitution
    sub = text + '[substitution]\nhost = "S"\ndopant = "Se"\n'
    assert "SSe" in error_of(tmp_path, sub)  # class_names lacks the Se-S column
    sub = sub.replace('["W", "S2"]', '["W", "S2", "SSe"]')
    load_preset(write(tmp_path, sub))
    assert "max_per_column" in error_of(tmp_path, sub + "layer_fraction = [0.1, 0.8]\n")
    assert "substitution.host" in error_of(tmp_path, sub.replace('host = "S"', 'host = "Te"'))


def test_class_names_and_possible_classes():
    assert column_class_name(["Se", "S"]) == "SSe"
    assert column_class_name(["S", "S"]) == "S2"
    assert column_class_name(["Se", "Se"]) == "Se2"
    w = load_preset("ws2-wsse")
    assert possible_classes(w) == {"W", "S2", "SSe"}
    assert possible_classes(dataclasses.replace(w, max_per_column=2)) == {"W", "S2", "SSe", "Se2"}
    assert possible_classes(dataclasses.replace(w, materials=("MoS2", "WSe2"), host="")) == {"Mo", "W", "S2", "Se2"}


def test_to_toml_round_trip(tmp_path):
    for name in list_presets():
        p = load_preset(name)
        text = p.to_toml()
        assert "[structure]" in text and "dose_counts_per_px" in text
        assert load_preset(write(tmp_path, text, f"{name}-copy.toml")) == p


def test_schema_keys_are_unique():
    # with_overrides accepts KEY=VALUE without the section: it must be unambiguous
    keys = [k for _s, k, *_ in SCHEMA]
    assert len(keys) == len(set(keys))


def test_with_overrides_sets_keys_and_keeps_the_rest():
    base = load_preset("ws2-wsse")
    p = with_overrides("ws2-wsse", ["probe.energy_kev=80", "heavy_atom_scale=[0.5, 1.0]",
                                    "noise.dose_counts_per_px = 100", "description=my microscope",
                                    "probe.energy_kev=100"])  # a later setting wins
    assert p.energy_kev == (100.0, 100.0)
    assert p.heavy_atom_scale == (0.5, 1.0)
    assert p.dose_counts_per_px == (100.0, 100.0)  # a single number is a fixed value
    assert p.description == "my microscope"  # a bare word is a string
    assert p.name == base.name
    assert dataclasses.replace(p, energy_kev=base.energy_kev, heavy_atom_scale=base.heavy_atom_scale,
                               dose_counts_per_px=base.dose_counts_per_px, description=base.description) == base
    assert with_overrides(base, []) is base
    # the draw follows the new ranges
    s = simulate_sample(with_overrides("graphene", ["image_size_px=32", "probe.energy_kev=80"]),
                        np.random.default_rng(0))
    assert s.image.shape == (32, 32) and s.params["energy_kev"] == 80.0


@pytest.mark.parametrize("setting, words", [
    ("probe.energy_kev", ("SECTION.KEY=VALUE",)),
    ("=80", ("SECTION.KEY=VALUE",)),
    ("probe.energy_kev=", ("SECTION.KEY=VALUE",)),
    ("probe.nonsense=1", ("unknown preset key", "probe.nonsense")),
    ("noise.energy_kev=80", ("unknown preset key", "noise.energy_kev")),
    ("noise.dose_counts_per_px=[-1, 10]", ("dose_counts_per_px", "> 0")),
    ("noise.dose_counts_per_px=[100, 10]", ("inverted",)),
    ("image.heavy_atom_min_z=1.5", ("heavy_atom_min_z",)),
    ("structure.materials=[\"graphene\", \"unobtainium\"]", ("unobtainium",)),
])
def test_with_overrides_errors(setting, words):
    with pytest.raises(GombnetError) as info:
        with_overrides("graphene", [setting])
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_monolayer_preset_is_the_bilayer_one_with_one_layer():
    from gombnet.simulation.presets import with_overrides

    mono = load_preset("ws2-wsse-monolayer")
    same = with_overrides("ws2-wsse", ['structure.materials=["WS2"]', "n_layers=1",
                                       "image.z_exponent=[1.4, 1.9]", "image.heavy_atom_scale=[0.5, 1.0]"])
    assert mono.n_layers == 1 and mono.class_names == ("W", "S2", "SSe")
    differ = {k for k, v in mono.to_dict().items() if same.to_dict().get(k) != v}
    assert differ <= {"name", "description"}, differ

"""Helpers for the simulation tests: presets with every effect switched off unless asked for."""

from __future__ import annotations

import dataclasses

import pytest

from gombnet.simulation.presets import load_preset

# everything that moves, blurs or hides atoms, set to "off"
CLEAN = dict(
    lattice_strain=(0.0, 0.0),
    small_twist_probability=0.0,
    vacancy_fraction=(0.0, 0.0),
    chalcogen_vacancy_fraction=(0.0, 0.0),
    vibration_sigma_angstrom=(0.0, 0.0),
    n_holes=(0, 0),
    edge_probability=0.0,
    boundary_roughness_angstrom=(0.0, 0.0),
    defocus_angstrom=(0.0, 0.0),
    astigmatism_angstrom=(0.0, 0.0),
    c3_um=(0.0, 0.0),
    probe_tail_fraction=(0.0, 0.0),
    background_amplitude=(0.0, 0.0),
    amorphous_carbon_per_angstrom2=(0.0, 0.0),
    read_noise=(0.0, 0.0),
    line_offset=(0.0, 0.0),
    line_gain=(0.0, 0.0),
    jitter_sigma_angstrom=(0.0, 0.0),
    drift_shear=(0.0, 0.0),
    drift_stretch=(0.0, 0.0),
    dose_counts_per_px=(1e6, 1e6),
)


def _clean_preset(name: str, **overrides):
    """A built-in preset with every defect, distortion and noise source off, then ``overrides``."""
    return dataclasses.replace(load_preset(name), **{**CLEAN, **overrides})


@pytest.fixture
def clean_preset():
    """``clean_preset(name, **overrides)``: a built-in preset with every effect off, then overrides."""
    return _clean_preset


@pytest.fixture
def se_preset(clean_preset):
    """``se_preset(scenario_weights, **overrides)``: a clean ws2-wsse preset with those scenario weights."""
    return lambda weights, **kw: clean_preset("ws2-wsse", scenario_weights=weights, **kw)


@pytest.fixture
def sparse_preset(clean_preset):
    """One graphene layer with 99 % vacancies: isolated atoms whose centres can be measured."""

    def make(**kw):
        return clean_preset(
            "graphene",
            materials=("graphene",),
            n_layers=1,
            vacancy_fraction=(0.99, 0.99),
            dose_counts_per_px=(1e7, 1e7),
            **kw,
        )

    return make

"""gombnet.simulation: HAADF-STEM training images of twisted multilayers with per-layer labels.

Main entry points::

    from gombnet.simulation import load_preset, simulate_sample
    preset = load_preset("graphene")                  # or "ws2-wsse", or a .toml path
    preset = with_overrides(preset, ["probe.energy_kev=80"])  # optional: change keys
    sample = simulate_sample(preset, np.random.default_rng(0))
    sample.image, sample.masks, sample.columns, sample.atoms, sample.params

``render_haadf`` (in :mod:`gombnet.simulation.imaging`) renders an image from any atom list,
e.g. to re-simulate an experiment from found atoms.
"""

from .imaging import add_detector_noise, normalize_image, probe_otf, render_haadf
from .presets import Preset, list_presets, load_preset, with_overrides
from .sample import Sample, simulate_sample

__all__ = [
    "Preset",
    "Sample",
    "add_detector_noise",
    "list_presets",
    "load_preset",
    "normalize_image",
    "probe_otf",
    "render_haadf",
    "simulate_sample",
    "with_overrides",
]

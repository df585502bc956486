"""gombnet: find every atom in HAADF-STEM images of twisted bilayer 2D materials.

The public API is imported lazily so that ``import gombnet`` stays fast and a CLI call
only loads the parts it needs (PyTorch takes seconds to import).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "GombnetError": "gombnet.errors",
    "load_preset": "gombnet.simulation.presets",
    "list_presets": "gombnet.simulation.presets",
    "with_overrides": "gombnet.simulation.presets",
    "simulate_sample": "gombnet.simulation.sample",
    "write_dataset": "gombnet.data",
    "read_dataset": "gombnet.data",
    "GombNet": "gombnet.nn.model",
    "GombLoss": "gombnet.nn.losses",
    "DiceLoss": "gombnet.nn.losses",
    "load_model": "gombnet.nn.checkpoint",
    "save_model": "gombnet.nn.checkpoint",
    "read_image": "gombnet.inference.io",
    "find_atoms": "gombnet.inference.atoms",
    "predict": "gombnet.inference.predict",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gombnet' has no attribute {name!r}")

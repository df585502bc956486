"""Model files: weights as safetensors, everything else as JSON. Never pickles.

A model is a folder (a training run) or a pair ``<name>.safetensors`` + ``<name>.json``
(shipped models in ``gombnet/weights``). The JSON config holds the architecture, the
physical layers and class names, the pixel size the model was trained at [Å/px], the
intensity normalisation, the data file hash and the metrics, so
:func:`load_model` rebuilds the model from these files alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path, write_text_atomic
from ..errors import GombnetError, check
from ..jsonio import dumps

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CONFIG_FORMAT = "gombnet-model/1"


def build_model(architecture: dict) -> torch.nn.Module:
    """Instantiate the network described by ``config["architecture"]``."""
    from .model import GombNet

    arch = dict(architecture)
    name = arch.pop("name", "GombNet")
    check(name == "GombNet", f"unknown architecture {name!r}")
    try:
        return GombNet(**arch)
    except TypeError as exc:
        raise GombnetError(f"model config does not fit GombNet: {exc}") from None


def save_weights(model: torch.nn.Module, path: str | os.PathLike, *, half: bool = False,
                 overwrite: bool = True) -> Path:
    """Write the model's state dict to a safetensors file atomically.

    Parameters
    ----------
    half : bool
        Store floating-point tensors as float16 (shipped models; halves the size).
    """
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def save_model(model: torch.nn.Module, folder: str | os.PathLike, config: dict, *,
               stem: str = "model", half: bool = False, overwrite: bool = True) -> Path:
    """Write ``<stem>.safetensors`` and ``config.json`` (or ``<stem>.json``) into ``folder``.

    ``config`` is completed with the architecture taken from ``model.config``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config["format"] = CONFIG_FORMAT
    config["architecture"] = {"name": type(model).__name__, **model.config}
    save_weights(model, folder / f"{stem}.safetensors", half=half, overwrite=overwrite)
    json_name = "config.json" if stem == "model" else f"{stem}.json"
    write_text_atomic(folder / json_name, dumps(config), overwrite=overwrite)
    return folder


def resolve_model_files(path_or_name: str | os.PathLike) -> tuple[Path, Path]:
    """Find the (weights, config) pair for a run folder, a file pair or a shipped name."""
    p = Path(path_or_name)
    if p.is_dir():
        return p / "model.safetensors", p / "config.json"
    if p.suffix in (".safetensors", ".json") and p.exists():
        stem = p.with_suffix("")
        if stem.name == "model":
            return p.with_suffix(".safetensors"), p.parent / "config.json"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    shipped = WEIGHTS_DIR / f"{path_or_name}.safetensors"
    if shipped.exists():
        return shipped, shipped.with_suffix(".json")
    names = ", ".join(list_shipped_models()) or "none"
    raise GombnetError(f"model {str(path_or_name)!r} not found: not a run folder, model file, "
                       f"or shipped model (shipped: {names})")


def list_shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors") if p.with_suffix(".json").exists())


def read_config(config_path: str | os.PathLike) -> dict:
    """Read and check a model config JSON."""
    config_path = Path(config_path)
    check(config_path.is_file(), f"{config_path}: model config missing")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GombnetError(f"{config_path}: not a valid JSON model config") from None
    for key in ("architecture", "class_names", "n_layers"):
        check(key in config, f"{config_path}: model config lacks {key!r}")
    return config


def load_state(model: torch.nn.Module, weights_path: str | os.PathLike) -> None:
    """Load a safetensors state dict into ``model`` (converted to the model's dtypes)."""
    weights_path = Path(weights_path)
    check(weights_path.is_file(), f"{weights_path}: model weights missing")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise GombnetError(f"{weights_path}: cannot read weights ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    check(not missing and not unexpected,
          f"{weights_path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in state.items():
        check(v.shape == own[k].shape,
              f"{weights_path}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(own[k].shape)}")
        state[k] = v.to(own[k].dtype)
    model.load_state_dict(state)


def load_model(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a trained model from its safetensors weights and JSON config.

    Parameters
    ----------
    path_or_name : path-like or str
        A training run folder, a ``.safetensors``/``.json`` file, or the name of a shipped
        model (see ``gombnet models``).
    device : str or torch.device

    Returns
    -------
    torch.nn.Module
        In eval mode, with the full config as ``model.gombnet_config``, and its position refiner
        (:class:`~gombnet.nn.refiner.PositionRefiner`) as ``model.gombnet_refiner`` when the
        config has one, else None.
    """
    weights, config_path = resolve_model_files(path_or_name)
    config = read_config(config_path)
    model = build_model(config["architecture"])
    load_state(model, weights)
    model.gombnet_config = config
    refiner = None
    if "refiner" in config:
        from .refiner import load_refiner

        refiner = load_refiner(config, weights).to(device)
    model.to(device).eval()
    # assigned after .to(): a plain attribute, not a registered submodule of the network's state
    object.__setattr__(model, "gombnet_refiner", refiner)
    return model

"""From an image of any size and pixel size to atoms per layer and species.

Steps: resample to the model's pixel size -> robust intensity normalisation (as the
training data) -> tiled inference with a consistent layer order (optionally test-time
augmentation / several models, giving an uncertainty map) -> atoms at sub-pixel
positions -> positions mapped back to the input image's pixels and to ångström.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..arrays import as_real_array
from ..errors import GombnetError, check
from .atoms import find_atoms, site_grouping
from .lattice_sites import check_found_layers
from .refine import refine_positions
from .tiling import ensemble_predict, normalize_intensity, predict_tiled, resample, to_original_px

MIN_IMAGE_PX = 32
MAX_PIXEL_SIZE_RATIO = 3.0  # beyond this the model sees atoms of a size it never learned


@dataclass
class Prediction:
    """What :func:`predict` finds in one image.

    Attributes
    ----------
    atoms : dict of numpy arrays
        ``channel`` (int, layer-major: layer x classes + class), ``layer`` (int), ``species`` (str), ``x_px``, ``y_px`` (input-image pixels, x = column,
        y = row), ``x_angstrom``, ``y_angstrom`` (x_px * pixel size), ``score`` (peak probability).
    probabilities : numpy.ndarray (C, H', W') float32
        Probability maps at the model's pixel size (C = layers x classes, layer-major).
    uncertainty : numpy.ndarray (C, H', W') float32 or None
        Standard deviation over augmentation passes / models (None for a single pass).
    pixel_size_angstrom : float
        Of the input image [Å/px].
    model_pixel_size_angstrom : float
        Of the probability maps [Å/px].
    class_names : list of str
    n_layers : int
    timings : dict
        Seconds per step.
    layer_check : dict or None
        What the lattice-orientation check of the layers did (see
        :func:`gombnet.inference.layers.lattice_layer_assignment`); None when not run.
    site_check : dict or None
        What the site check did (``n_moved``, ``n_dropped``, ``n_too_close``, ``n_cells_fitted`` of
        ``n_cells``, ``n_cells_swapped``; see :func:`gombnet.inference.lattice_sites.lattice_site_assignment`);
        None when not run. The probability (and uncertainty) maps follow the atoms both checks
        moved (:func:`gombnet.inference.lattice_sites.relabel_maps`).
    refined : bool
        Whether the model's position refiner moved the atoms (see ``refine`` of :func:`predict`).
    """

    atoms: dict
    probabilities: np.ndarray
    uncertainty: np.ndarray | None
    pixel_size_angstrom: float
    model_pixel_size_angstrom: float
    class_names: list
    n_layers: int
    timings: dict = field(default_factory=dict)
    layer_check: dict | None = None
    refined: bool = False
    site_check: dict | None = None

    def counts(self) -> dict:
        """Number of atoms per layer and species, e.g. ``{"layer0": {"C": 1130}, ...}``."""
        out = {}
        for layer in range(self.n_layers):
            sel = self.atoms["layer"] == layer
            out[f"layer{layer}"] = {name: int(np.sum(self.atoms["species"][sel] == name))
                                    for name in self.class_names}
        return out


def inference_network(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """A copy of a trained network made faster for inference; ``model`` itself is left as it is.

    In evaluation mode, each BatchNorm that follows a convolution in a ``Sequential`` is folded
    into that convolution's weights (one pass over every feature map fewer), and the weights are
    stored channels-last, the layout the CPU's and GPU's convolution kernels prefer. On the 2-core
    development CPU a 128 px tile of ``graphene`` took 17.3 -> 13.0 ms (batch of 4, medians);
    the logits change by ~1e-4 (floating-point rounding).
    """
    net = copy.deepcopy(model).to(device).eval()
    for seq in net.modules():
        if not isinstance(seq, torch.nn.Sequential):
            continue
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                seq._modules[first] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = torch.nn.Identity()
    return net.to(memory_format=torch.channels_last)


def torch_predict_fn(model: torch.nn.Module, device: str | torch.device | None = None):
    """Wrap a network as ``predict_fn(batch (B,1,h,w) numpy) -> probabilities (B,C,h,w) numpy``
    (through :func:`inference_network`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    net = inference_network(model, device)

    @torch.no_grad()
    def predict_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = net(x.to(memory_format=torch.channels_last))
        return torch.sigmoid(logits.float()).contiguous().cpu().numpy()

    return predict_fn


def atom_settings(config: dict, class_weights: dict | None = None) -> tuple[dict, int]:
    """How a model's atoms are found: :func:`find_atoms` arguments for the classes that share a
    site (the card's ``site_groups`` and ``class_weights``, the latter overridden by
    ``class_weights``), and the class that forms each layer's lattice (the card's
    ``lattice_class``, default the first class) for the lattice check of the layers."""
    class_names, n_layers = list(config["class_names"]), int(config["n_layers"])
    lattice = config.get("lattice_class", class_names[0])
    check(lattice in class_names, f"model config: lattice_class {lattice!r} is not one of its classes {class_names}")
    grouping = site_grouping(class_names, n_layers, config.get("site_groups"),
                             config.get("class_weights") if class_weights is None else class_weights)
    return grouping, class_names.index(lattice)


def check_image(image) -> np.ndarray:
    """A finite, non-constant 2-D image of at least 32 x 32 px, as float32."""
    arr = as_real_array(image, "image", (2,), "2-D")
    check(min(arr.shape) >= MIN_IMAGE_PX, f"image of {arr.shape[1]}x{arr.shape[0]} px is smaller than "
                                          f"{MIN_IMAGE_PX} px")
    check(float(arr.max()) > float(arr.min()), "image is constant")
    return arr


def predict(image, model, *, pixel_size_angstrom: float, threshold: float = 0.5,
            tta: Sequence[str] | str | None = None, tile_px: int | None = None, overlap_px: int | None = None,
            batch_size: int = 4, device: str | None = None, progress: bool = False,
            class_weights: dict | None = None, lattice_layers: bool = True, lattice_sites: bool = True,
            refine: bool = False) -> Prediction:
    """Find the atoms of every layer in an image.

    Parameters
    ----------
    image : array (H, W)
        HAADF image, any real dtype and scale.
    model : torch.nn.Module or sequence of them, or a model name / run folder
        Trained model(s) (see :func:`gombnet.load_model`); several models form an ensemble.
    pixel_size_angstrom : float
        Pixel size of ``image`` [Å/px].
    threshold : float
        Probability threshold for atoms.
    tta : sequence of str, "d4" or None
        Test-time augmentation transforms (see :data:`gombnet.inference.tiling.D4_TRANSFORMS`).
    tile_px, overlap_px : int, optional
        Tile size and overlap [px at the model's pixel size]; default: the training image
        size and a quarter of it.
    batch_size : int
        Tiles per forward pass.
    device : str, optional
        torch device of the model (default: where the model is).
    progress : bool
        Show a progress bar over tiles.
    class_weights : dict of str to float, optional
        Weights for choosing the species of a column whose classes share a site (e.g.
        ``{"SSe": 1.5}``; see :func:`gombnet.inference.atoms.find_atoms`); default: the
        model card's ``class_weights``, else 1 for every class.
    lattice_layers : bool
        Give regions where the network swapped the two layers back to the layer whose lattice
        orientation their atoms have (:func:`gombnet.inference.layers.lattice_layer_assignment`:
        by bond orientations from 8° of twist, by each layer's local lattice rotation down to
        about 1°; aligned layers are left alone). The first class
        of a layer (or the card's ``lattice_class``) is its lattice. ``timings`` is unchanged;
        what it did is in ``Prediction.layer_check``.
    lattice_sites : bool
        With ``lattice_layers``, then fit each layer's honeycomb (graphene; W + chalcogen columns
        of a TMD) and move a single atom that sits on another layer's honeycomb, far from its
        own, to that layer, or drop it where that layer already has it; of two atoms of one
        layer closer than 0.6 bond lengths keep the one on the lattice
        (:func:`gombnet.inference.lattice_sites.lattice_site_assignment`); what it did is in
        ``Prediction.site_check``.
    refine : bool
        Move each atom by the model's position refiner
        (:func:`gombnet.inference.refine.refine_positions`); the model must have one (the shipped
        ``graphene`` does) and be used alone (no ensemble of models). It reads the image and the
        maps around each atom again and corrects the centre of mass of its blob; counts, layers
        and species stay as they are. Off by default: it lowers the position error a little, but
        like any least-squares estimator it pulls positions toward what is typical, and evens out
        the lengths of differently oriented bonds in a distorted lattice (README, "Position
        refiner"), which bond-length strain measurements must not have.

    Returns
    -------
    Prediction
    """
    from ..nn.checkpoint import load_model

    timings = {}
    t0 = time.perf_counter()
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    models = [load_model(m) if not isinstance(m, torch.nn.Module) else m for m in models]
    configs = [getattr(m, "gombnet_config", None) for m in models]
    check(all(c is not None for c in configs), "model has no gombnet config; load it with gombnet.load_model")
    config = configs[0]
    for c in configs[1:]:
        check(c["class_names"] == config["class_names"] and c["n_layers"] == config["n_layers"],
              "ensemble models must have the same layers and classes")
    arr = check_image(image)
    check(np.isfinite(pixel_size_angstrom) and pixel_size_angstrom > 0,
          f"pixel size must be a positive number of Å, got {pixel_size_angstrom}")
    check(0 < threshold < 1, f"threshold must be in (0, 1), got {threshold}")
    model_px = float(config["pixel_size_angstrom"])
    ratio = max(pixel_size_angstrom / model_px, model_px / pixel_size_angstrom)
    check(ratio <= MAX_PIXEL_SIZE_RATIO,
          f"pixel size {pixel_size_angstrom:.4g} Å is {ratio:.1f}x off the model's {model_px:.4g} Å "
          f"(more than {MAX_PIXEL_SIZE_RATIO:g}x); check the calibration or pass the right pixel size")
    n_layers, class_names = int(config["n_layers"]), list(config["class_names"])
    cpl = len(class_names)
    grouping, lattice_class = atom_settings(config, class_weights)
    tile = int(tile_px or config.get("tile_px", 256))
    overlap = int(overlap_px if overlap_px is not None else tile // 4)
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    work, zoom = (arr, 1.0) if abs(pixel_size_angstrom - model_px) < 1e-6 * model_px else resample(
        arr, from_pixel_size_angstrom=pixel_size_angstrom, to_pixel_size_angstrom=model_px)
    norm = config.get("normalization", {})
    work = normalize_intensity(work, low_percentile=norm.get("low_percentile", 0.5),
                               high_percentile=norm.get("high_percentile", 99.5))
    timings["resample_normalize"] = time.perf_counter() - t

    t = time.perf_counter()
    fns = [torch_predict_fn(m, device) for m in models]
    # a single-decoder U-Net has no branches to align: its channels are already in order
    align = all(c["architecture"].get("n_layers", n_layers) > 1 for c in configs)
    kwargs = dict(n_layers=n_layers, classes_per_layer=cpl, tile_px=tile, overlap_px=overlap,
                  batch_size=batch_size, align_layers=align, progress=progress)
    if len(fns) == 1 and not tta:
        probs, uncertainty = predict_tiled(work, fns[0], **kwargs), None
    else:
        probs, uncertainty = ensemble_predict(work, fns, transforms=tta or ("identity",), **kwargs)
    timings["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    found = find_atoms(probs, threshold=threshold, **grouping)
    layer_check = site_check = None
    if lattice_layers:
        found, probs, layer_check, site_check, (uncertainty,) = check_found_layers(
            found, probs, n_layers=n_layers, classes_per_layer=cpl, pixel_size_angstrom=model_px,
            lattice_class=lattice_class, lattice_sites=lattice_sites, extra_maps=(uncertainty,))
    refiner = None
    if refine:
        check(len(models) == 1, "the position refiner serves one model, not an ensemble; "
                                "run without refine (--refine)")
        refiner = getattr(models[0], "gombnet_refiner", None)
        check(refiner is not None, "this model has no position refiner (benchmarks/train_refiner.py trains one); "
                                   "run without refine (--refine)")
    if refiner is not None:
        found = refine_positions(work, probs, found, refiner, n_layers=n_layers, classes_per_layer=cpl,
                                 pixel_size_angstrom=model_px)
    x_px, y_px = to_original_px(found["x_px"], found["y_px"], zoom)
    channel = found["channel"].astype(int)
    atoms = {
        "channel": channel,
        "layer": channel // cpl,
        "species": np.asarray(class_names, dtype=object)[channel % cpl] if len(channel) else
        np.zeros(0, dtype=object),
        "x_px": np.asarray(x_px, np.float64),
        "y_px": np.asarray(y_px, np.float64),
        "x_angstrom": np.asarray(x_px, np.float64) * pixel_size_angstrom,
        "y_angstrom": np.asarray(y_px, np.float64) * pixel_size_angstrom,
        "score": found["score"].astype(np.float64),
    }
    timings["atoms"] = time.perf_counter() - t
    return Prediction(atoms=atoms, probabilities=probs, uncertainty=uncertainty,
                      pixel_size_angstrom=float(pixel_size_angstrom), model_pixel_size_angstrom=model_px,
                      class_names=class_names, n_layers=n_layers, timings=timings, layer_check=layer_check,
                      refined=refiner is not None, site_check=site_check)


__all__ = ["Prediction", "predict", "atom_settings", "torch_predict_fn", "inference_network", "check_image",
           "GombnetError"]

"""A small network that refines found atom positions, how to train it, and its files.

:class:`PositionRefiner` reads a window around each atom found in a Gomb-Net's probability
maps - the image, the atom's own layer's map and the other layers' map (see
:func:`gombnet.inference.refine.atom_crops`) - and returns the correction to the atom's
position [px]. It is trained on simulated images with the Gomb-Net it serves: the atoms that
network finds, the true columns they match, and the Huber loss of the remaining error in Å.

Files: the refiner of a model ``<stem>.safetensors`` + its JSON config is
``<stem>.refiner.safetensors`` beside it, described by the config's ``"refiner"`` entry
(architecture, file name and its own card); :func:`gombnet.load_model` attaches it to the model
as ``model.gombnet_refiner``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_text_atomic
from ..errors import GombnetError, check
from ..jsonio import dumps

DEFAULT_CROP_RADIUS_PX = 9


class PositionRefiner(nn.Module):
    """Correction to an atom's position from a window around it.

    Parameters
    ----------
    width : int
        Channels of the first convolutions (doubled after each of the two stride-2 steps' first).
    crop_radius_px : int
        Half width of the window [px]; its side is ``2 * crop_radius_px + 1``.
    hidden : int
        Width of the fully connected layer.

    The forward pass takes ``crops`` (B, 3, k, k), ``offset_px`` (B, 2): the atom's (x, y)
    relative to the window's centre pixel, and ``pixel_size_angstrom`` (B,), and returns the
    (dx, dy) correction [px]. The last layer starts at zero, so an untrained refiner moves
    nothing.
    """

    def __init__(self, width: int = 32, crop_radius_px: int = DEFAULT_CROP_RADIUS_PX, hidden: int = 128):
        super().__init__()
        check(isinstance(width, int) and width >= 1, f"width must be a positive integer, got {width!r}")
        check(isinstance(crop_radius_px, int) and crop_radius_px >= 2,
              f"crop_radius_px must be an integer >= 2, got {crop_radius_px!r}")
        check(isinstance(hidden, int) and hidden >= 1, f"hidden must be a positive integer, got {hidden!r}")
        self.config = {"width": width, "crop_radius_px": crop_radius_px, "hidden": hidden}
        self.crop_radius_px = crop_radius_px
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        )
        side = 2 * crop_radius_px + 1
        reduced = ((side + 1) // 2 + 1) // 2  # two stride-2 convolutions with padding 1
        # the position inside the window and the pixel size join the image features
        self.head = nn.Sequential(nn.Linear(2 * w * reduced * reduced + 3, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, crops: torch.Tensor, offset_px: torch.Tensor, pixel_size_angstrom: torch.Tensor) -> torch.Tensor:
        z = self.features(crops).flatten(1)
        # pixel size in units of 0.1 Å: inputs of order 1
        return self.head(torch.cat([z, offset_px, 10.0 * pixel_size_angstrom[:, None]], dim=1))


def dihedral(crops: torch.Tensor, vectors: list[torch.Tensor], k: int):
    """One of the 8 symmetries of the square applied to windows and to (x, y) vectors alike.

    Bit 0 mirrors x (columns), bit 1 mirrors y (rows), bit 2 swaps x and y (transpose); the
    windows' centre pixel stays in place. Returns the windows and the list of vectors."""
    check(0 <= int(k) < 8, f"k must be in 0..7, got {k}")
    vectors = list(vectors)
    if k & 1:
        crops = crops.flip(-1)
        vectors = [v * v.new_tensor([-1.0, 1.0]) for v in vectors]
    if k & 2:
        crops = crops.flip(-2)
        vectors = [v * v.new_tensor([1.0, -1.0]) for v in vectors]
    if k & 4:
        crops = crops.transpose(-1, -2)
        vectors = [v.flip(-1) for v in vectors]
    return crops, vectors


def refiner_training_set(model, data, *, split: str = "train", max_images: int | None = None,
                         radius_angstrom: float = 0.5, threshold: float = 0.5, batch_size: int = 16,
                         crop_radius_px: int = DEFAULT_CROP_RADIUS_PX, progress: bool = False) -> dict:
    """Windows around the atoms ``model`` finds in simulated images, with the true positions.

    Atoms are found as ``gombnet evaluate`` finds them (the model card's site groups and the
    lattice check of the layers), the image's branches put in the order of its true layers (best
    Dice), and each atom is paired with the nearest true column of its layer within
    ``radius_angstrom``; atoms without one are left out.

    Returns
    -------
    dict of numpy arrays
        ``crops`` (N, 3, k, k) float16, ``offset_px`` (N, 2) and ``target_px`` (N, 2): the
        found and the true position relative to the window's centre pixel, ``pixel_size_angstrom``
        (N,), ``image`` (N,): the image index in the data file.
    """
    from scipy.spatial import cKDTree

    from ..data import read_dataset
    from ..inference.atoms import find_atoms
    from ..inference.layers import relabel_found_atoms
    from ..inference.predict import atom_settings
    from ..inference.refine import atom_crops, layer_maps
    from ..metrics import best_layer_assignment, permute_layers
    from .dataset import normalize_batch
    from .train import predict_probabilities

    config = model.gombnet_config
    ds = read_dataset(data, in_memory=False)  # batches are read as they are needed
    check(list(config["class_names"]) == list(ds.class_names) and config["n_layers"] == ds.n_layers,
          f"model classes {config['class_names']} x {config['n_layers']} layers do not match the data's "
          f"{ds.class_names} x {ds.n_layers} layers")
    n_layers, cpl = ds.n_layers, len(ds.class_names)
    grouping, lattice_class = atom_settings(config)
    idx = ds.indices(split)[:max_images] if max_images else ds.indices(split)
    check(len(idx) > 0, f"{data}: the {split} split is empty")
    parts = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("finding atoms", total=len(idx))
        bar.start()
    try:
        for start in range(0, len(idx), batch_size):
            batch = idx[start:start + batch_size]
            images = ds.images[batch]
            probs = predict_probabilities(model, images, batch_size=batch_size)
            for i, image, p in zip(batch, normalize_batch(images), probs):
                perm = best_layer_assignment(p > threshold, ds.masks[i].astype(bool), n_layers)
                p = permute_layers(p, perm, n_layers)
                found = find_atoms(p, threshold=threshold, **grouping)
                found, _ = relabel_found_atoms(found, n_layers=n_layers, classes_per_layer=cpl,
                                               lattice_class=lattice_class)
                layer = found["channel"] // cpl
                truth = ds.columns_of(i)
                px = ds.pixel_size_angstrom(i)
                target = np.full((len(layer), 2), np.nan)
                for lay in range(n_layers):
                    sel, tsel = np.flatnonzero(layer == lay), truth["layer"] == lay
                    if sel.size == 0 or not tsel.any():
                        continue
                    tx, ty = truth["x_px"][tsel], truth["y_px"][tsel]
                    d, j = cKDTree(np.c_[tx, ty]).query(np.c_[found["x_px"][sel], found["y_px"][sel]])
                    ok = d <= radius_angstrom / px
                    target[sel[ok]] = np.c_[tx[j[ok]], ty[j[ok]]]
                keep = np.isfinite(target[:, 0])
                if not keep.any():
                    continue
                fx, fy = found["x_px"][keep], found["y_px"][keep]
                crops, offset = atom_crops(image, layer_maps(p, n_layers, cpl), layer[keep], fx, fy,
                                           crop_radius_px=crop_radius_px)
                centre = np.c_[fx, fy] - offset
                parts.append({"crops": crops.astype(np.float16), "offset_px": offset,
                              "target_px": (target[keep] - centre).astype(np.float32),
                              "pixel_size_angstrom": np.full(keep.sum(), px, np.float32),
                              "image": np.full(keep.sum(), i, np.int64)})
            if bar:
                bar.advance(task, len(batch))
    finally:
        if bar:
            bar.stop()
    check(len(parts) > 0, f"{data}: the model found no atom near a true column in the {split} split")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def position_errors_angstrom(refiner: PositionRefiner | None, samples: dict, batch_size: int = 4096) -> np.ndarray:
    """Distance [Å] between each sample's true position and its found one, moved by ``refiner``
    (None: as found)."""
    from ..inference.refine import refiner_shifts

    offset, target = samples["offset_px"], samples["target_px"]
    shift = np.zeros_like(offset)
    if refiner is not None:
        shift = refiner_shifts(refiner, samples["crops"], offset, samples["pixel_size_angstrom"], batch_size)
    return np.hypot(*(target - offset - shift).T) * samples["pixel_size_angstrom"]


def train_refiner(refiner: PositionRefiner, samples: dict, *, epochs: int = 8, batch_size: int = 256,
                  lr: float = 2e-3, huber_angstrom: float = 0.15, seed: int = 0, val_samples: dict | None = None,
                  progress: bool = False) -> list[dict]:
    """Train ``refiner`` in place on :func:`refiner_training_set` samples.

    Adam with a one-cycle learning rate (peak ``lr``, warm-up over the first tenth), one random
    symmetry of the square per batch, and the Huber loss (``huber_angstrom`` [Å]: beyond it the
    loss grows linearly, so atoms paired with the wrong column weigh less) of the remaining
    position error in Å. Batches are drawn by a ``torch.Generator`` seeded with ``seed``.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``train_loss``, ``seconds`` and, with ``val_samples``,
        ``val_rmse_angstrom`` and ``val_median_angstrom`` after the epoch.
    """
    n = len(samples["offset_px"])
    check(epochs >= 1, f"epochs must be >= 1, got {epochs}")
    check(1 <= batch_size <= n, f"batch size {batch_size} must be in 1..{n} (training samples)")
    check(lr > 0 and huber_angstrom > 0, "lr and huber_angstrom must be > 0")
    crops = torch.from_numpy(samples["crops"])
    offset = torch.from_numpy(samples["offset_px"])
    target = torch.from_numpy(samples["target_px"])
    px = torch.from_numpy(samples["pixel_size_angstrom"])
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = n // batch_size
    opt = torch.optim.Adam(refiner.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    history = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("training the refiner", total=epochs * steps_per_epoch)
        bar.start()
    try:
        for epoch in range(1, epochs + 1):
            refiner.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(steps_per_epoch):
                i = order[s * batch_size:(s + 1) * batch_size]
                k = int(torch.randint(8, (1,), generator=gen))
                x, (o, t) = dihedral(crops[i].float(), [offset[i], target[i]], k)
                err = (refiner(x, o, px[i]) - (t - o)) * px[i][:, None]
                loss = nn.functional.huber_loss(err, torch.zeros_like(err), delta=huber_angstrom)
                if not torch.isfinite(loss):
                    raise GombnetError(f"refiner training: loss became {loss.item()} in epoch {epoch}; lower the lr")
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                if bar:
                    bar.advance(task)
            row = {"epoch": epoch, "train_loss": total / steps_per_epoch,
                   "seconds": round(time.perf_counter() - t0, 1)}
            if val_samples is not None:
                e = position_errors_angstrom(refiner, val_samples)
                row.update(val_rmse_angstrom=float(np.sqrt(np.mean(e ** 2))), val_median_angstrom=float(np.median(e)))
            history.append(row)
    finally:
        if bar:
            bar.stop()
    refiner.eval()
    return history


def refiner_file(weights_path: str | Path) -> Path:
    """Where the refiner of the model whose weights are ``weights_path`` lives."""
    p = Path(weights_path)
    return p.with_name(p.stem + ".refiner.safetensors")


def save_refiner(refiner: PositionRefiner, model: str | Path, *, card: dict | None = None,
                 overwrite: bool = False) -> Path:
    """Store ``refiner`` with a model (run folder, model file or shipped name).

    Writes ``<stem>.refiner.safetensors`` beside the model's weights and adds its ``"refiner"``
    entry (architecture, file name, ``card``) to the model's JSON config, both atomically. An
    existing refiner is replaced only with ``overwrite``. Returns the refiner's weights path.
    """
    from .checkpoint import read_config, resolve_model_files, save_weights

    weights, config_path = resolve_model_files(model)
    config = read_config(config_path)
    path = refiner_file(weights)
    check(overwrite or ("refiner" not in config and not path.exists()),
          f"{config_path}: the model already has a refiner; pass overwrite=True to replace it")
    save_weights(refiner, path, overwrite=True)
    config["refiner"] = {"architecture": {"name": type(refiner).__name__, **refiner.config},
                         "weights": path.name, "card": card or {}}
    write_text_atomic(config_path, dumps(config), overwrite=True)
    return path


def load_refiner(config: dict, weights_path: str | Path) -> PositionRefiner:
    """The refiner a model config's ``"refiner"`` entry describes, its file found beside
    ``weights_path`` (the model's weights), in eval mode on the CPU."""
    from .checkpoint import load_state

    entry = config["refiner"]
    check(isinstance(entry, dict) and isinstance(entry.get("architecture"), dict) and "weights" in entry,
          "model config: the 'refiner' entry needs 'architecture' and 'weights'")
    arch = dict(entry["architecture"])
    check(arch.pop("name", "PositionRefiner") == "PositionRefiner",
          f"model config: unknown refiner architecture {entry['architecture'].get('name')!r}")
    try:
        refiner = PositionRefiner(**arch)
    except TypeError as exc:
        raise GombnetError(f"model config: refiner architecture does not fit PositionRefiner: {exc}") from None
    load_state(refiner, Path(weights_path).with_name(Path(entry["weights"]).name))
    return refiner.eval()


__all__ = ["PositionRefiner", "dihedral", "load_refiner", "position_errors_angstrom", "refiner_file",
           "refiner_training_set", "save_refiner", "train_refiner"]

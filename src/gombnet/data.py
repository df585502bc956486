"""The HDF5 dataset file: simulate many images in parallel, write, read and validate.

Layout (every later stage relies on it; documented in README.md):

``images``        (N, H, W) float32, normalised HAADF images
``masks``         (N, C, H, W) uint8, C = n_layers x n_classes, layer-major
``split``         (N,) uint8: 0 train, 1 validation, 2 test
``atoms/image``   (M,) int32 index of the image a projected column belongs to
``atoms/x_px``    (M,) float32 column position, x = image column
``atoms/y_px``    (M,) float32 column position, y = image row
``atoms/layer``   (M,) int16 layer index
``atoms/class``   (M,) int16 class index into ``class_names``
``params/<name>`` (N,) float64, one per drawn simulation parameter
attributes: ``class_names``, ``n_layers``, ``preset``, ``preset_toml``, ``seed``,
``gombnet_version``, ``format_version``.

Image ``i`` is simulated from the ``i``-th child of ``numpy.random.SeedSequence(seed)``,
so the content is identical whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import h5py
import numpy as np

from . import __version__
from .atomic import atomic_path
from .errors import GombnetError, check

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
_REQUIRED = ("images", "masks", "split", "atoms/image", "atoms/x_px", "atoms/y_px",
             "atoms/layer", "atoms/class")


def split_labels(n: int, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Assign each of ``n`` images to train (0), validation (1) or test (2).

    Parameters
    ----------
    n : int
        Number of images.
    fractions : sequence of 3 floats
        Train, validation and test fractions; they must sum to 1.
    rng : numpy.random.Generator
        Source of the random assignment.

    Returns
    -------
    numpy.ndarray of uint8, shape (n,)
    """
    fractions = np.asarray(fractions, dtype=float)
    check(fractions.shape == (3,) and np.all(fractions >= 0) and abs(fractions.sum() - 1) < 1e-6,
          f"split fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    counts = np.floor(fractions * n).astype(int)
    # the rounding remainder goes to train
    counts[0] += n - counts.sum()
    labels = np.repeat(np.arange(3, dtype=np.uint8), counts)
    return labels[rng.permutation(n)]


def _simulate_one(args):
    preset, seed_seq, image_size_px = args
    from .simulation.sample import simulate_sample

    return simulate_sample(preset, np.random.default_rng(seed_seq), image_size_px=image_size_px)


def limit_blas_threads() -> None:
    """Initializer of worker processes: one BLAS/OpenMP thread each.

    Per-image work (simulation, scoring) gains nothing from BLAS threads, which only compete
    with the other workers for the cores (measured: 2 simulation workers ran no faster than 1).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _iter_samples(preset, seeds, workers: int, image_size_px) -> Iterator:
    from threadpoolctl import threadpool_limits

    jobs = ((preset, s, image_size_px) for s in seeds)
    if workers <= 1:
        with threadpool_limits(1):
            yield from map(_simulate_one, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=limit_blas_threads) as pool:
        # map keeps the order, so the file does not depend on scheduling
        yield from pool.map(_simulate_one, jobs, chunksize=8)


def write_dataset(
    path: str | os.PathLike,
    preset,
    n: int,
    *,
    seed: int = 0,
    workers: int | None = None,
    split_fractions: Sequence[float] = (0.7, 0.2, 0.1),
    image_size_px: int | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int], None] = False,
) -> Path:
    """Simulate ``n`` images of ``preset`` and write them to an HDF5 dataset file.

    Parameters
    ----------
    path : path-like
        Output ``.h5`` file. Written to a temporary file and renamed when complete.
    preset : Preset or str
        Simulation preset (name, TOML path or loaded preset).
    n : int
        Number of images (> 0).
    seed : int
        Seed of the whole dataset; image ``i`` uses child ``i`` of ``SeedSequence(seed)``.
    workers : int, optional
        Worker processes (default: number of CPU cores). The content does not depend on it.
    split_fractions : 3 floats
        Train / validation / test fractions.
    image_size_px : int, optional
        Override the preset's image size [px].
    overwrite : bool
        Replace an existing file.
    progress : bool or callable
        True shows a progress bar; a callable is called with the number of images done.

    Returns
    -------
    pathlib.Path
    """
    from .simulation.presets import Preset, load_preset

    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    check(isinstance(n, (int, np.integer)) and n > 0, f"number of images must be > 0, got {n}")
    check(isinstance(seed, (int, np.integer)) and seed >= 0, f"seed must be a non-negative integer, got {seed}")
    if workers is None:
        workers = os.cpu_count() or 1
    check(workers >= 1, f"workers must be >= 1, got {workers}")
    if image_size_px is not None:
        check(32 <= image_size_px <= 8192, f"image size must be 32..8192 px, got {image_size_px}")
    root = np.random.SeedSequence(seed)
    image_seeds = root.spawn(n)
    (split_seed,) = np.random.SeedSequence([seed, 1]).spawn(1)
    split = split_labels(n, split_fractions, np.random.default_rng(split_seed))
    size = image_size_px or preset.image_size_px
    n_channels = preset.n_channels

    bar = None
    if progress is True:
        from rich.progress import Progress

        bar = Progress(transient=False)
        task = bar.add_task(f"simulating {preset.name}", total=n)
        bar.start()
        progress = lambda done: bar.update(task, completed=done)  # noqa: E731

    try:
        with atomic_path(path, overwrite) as tmp:
            with h5py.File(tmp, "w") as f:
                images = f.create_dataset("images", (n, size, size), np.float32,
                                          chunks=(1, size, size))
                masks = f.create_dataset("masks", (n, n_channels, size, size), np.uint8,
                                         chunks=(1, n_channels, size, size), compression="lzf")
                f.create_dataset("split", data=split)
                params = {k: np.zeros(n, np.float64) for k in preset.param_names}
                cols = {"image": [], "x_px": [], "y_px": [], "layer": [], "class": []}
                for i, sample in enumerate(_iter_samples(preset, image_seeds, workers, image_size_px)):
                    images[i] = sample.image
                    masks[i] = sample.masks
                    for k in params:
                        params[k][i] = sample.params[k]
                    m = len(sample.columns["x_px"])
                    cols["image"].append(np.full(m, i, np.int32))
                    for k in ("x_px", "y_px", "layer", "class"):
                        cols[k].append(sample.columns[k])
                    if callable(progress):
                        progress(i + 1)
                dtypes = {"image": np.int32, "x_px": np.float32, "y_px": np.float32,
                          "layer": np.int16, "class": np.int16}
                for k, parts in cols.items():
                    f.create_dataset(f"atoms/{k}", data=np.concatenate(parts).astype(dtypes[k]))
                for k, v in params.items():
                    f.create_dataset(f"params/{k}", data=v)
                f.attrs["class_names"] = json.dumps(list(preset.class_names))
                f.attrs["n_layers"] = preset.n_layers
                f.attrs["preset"] = preset.name
                f.attrs["preset_toml"] = preset.to_toml()
                f.attrs["seed"] = seed
                f.attrs["gombnet_version"] = __version__
                f.attrs["format_version"] = FORMAT_VERSION
    finally:
        if bar is not None:
            bar.stop()
    return Path(path)


@dataclass
class Dataset:
    """A dataset file read into memory (or lazily, for the images and masks).

    Attributes
    ----------
    images : array-like (N, H, W) float32
    masks : array-like (N, C, H, W) uint8, layer-major channels
    split : numpy.ndarray (N,) uint8, 0 train / 1 val / 2 test
    columns : dict of numpy.ndarray, the flat atom table (keys image, x_px, y_px, layer, class)
    params : dict of numpy.ndarray, per-image drawn parameters
    class_names : list of str, classes of one layer
    n_layers : int
    attrs : dict, the file's attributes
    path : pathlib.Path
    """

    images: np.ndarray
    masks: np.ndarray
    split: np.ndarray
    columns: dict
    params: dict
    class_names: list
    n_layers: int
    attrs: dict
    path: Path

    @property
    def n_channels(self) -> int:
        return self.n_layers * len(self.class_names)

    def indices(self, split: str | None) -> np.ndarray:
        """Indices of the images in ``split`` ("train", "val", "test"; None or "all" for all)."""
        if split in (None, "all"):
            return np.arange(len(self.split))
        check(split in SPLIT_NAMES, f"unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}, all")
        return np.flatnonzero(self.split == SPLIT_NAMES.index(split))

    def columns_of(self, i: int) -> dict:
        """The true columns of image ``i`` (x_px, y_px, layer, class)."""
        sel = self.columns["image"] == i
        return {k: v[sel] for k, v in self.columns.items() if k != "image"}

    def pixel_size_angstrom(self, i: int) -> float:
        """Pixel size of image ``i`` [Å/px]."""
        return float(self.params["pixel_size_angstrom"][i])


def read_dataset(path: str | os.PathLike, *, in_memory: bool = True) -> Dataset:
    """Open a dataset file written by :func:`write_dataset` and check its layout.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file.
    in_memory : bool
        Load images and masks into memory (fast training); otherwise keep h5py datasets
        (the file stays open).

    Raises
    ------
    GombnetError
        Missing file, not HDF5, or not in the gombnet layout.
    """
    path = Path(path)
    check(path.is_file(), f"{path}: no such dataset file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise GombnetError(f"{path}: not an HDF5 file (or corrupt)") from None
    try:
        missing = [k for k in _REQUIRED if k not in f]
        check(not missing, f"{path}: not a gombnet dataset (missing {', '.join(missing)})")
        for a in ("class_names", "n_layers"):
            check(a in f.attrs, f"{path}: not a gombnet dataset (missing attribute {a})")
        class_names = json.loads(f.attrs["class_names"])
        n_layers = int(f.attrs["n_layers"])
        n, h, w = f["images"].shape
        check(f["masks"].shape == (n, n_layers * len(class_names), h, w),
              f"{path}: masks shape {f['masks'].shape} does not match images {f['images'].shape} "
              f"and {n_layers} layers x {len(class_names)} classes")
        check(f["split"].shape == (n,), f"{path}: split has shape {f['split'].shape}, expected ({n},)")
        check(n > 0, f"{path}: dataset holds no images")
        split = f["split"][()]
        columns = {k: f[f"atoms/{k}"][()] for k in ("image", "x_px", "y_px", "layer", "class")}
        params = {k: f[f"params/{k}"][()] for k in f.get("params", {})}
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        if in_memory:
            images, masks = f["images"][()], f["masks"][()]
            f.close()
        else:
            images, masks = f["images"], f["masks"]
    except Exception:
        f.close()
        raise
    return Dataset(images=images, masks=masks, split=split,
                   columns=columns, params=params, class_names=class_names, n_layers=n_layers,
                   attrs=attrs, path=path)


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file, hex (recorded in model configs to tie a model to its data)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()

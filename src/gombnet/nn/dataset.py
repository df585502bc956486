"""PyTorch view of a dataset file, with augmentations that keep masks aligned.

Every random draw comes from the ``numpy.random.Generator`` handed to the dataset, so a
training run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..inference.tiling import normalize_intensity


def normalize_batch(images) -> np.ndarray:
    """Normalise each image (N, H, W) as inference does (robust percentiles, see
    :func:`gombnet.inference.tiling.normalize_intensity`), so that training, evaluation and
    prediction see the same intensity scale whatever the simulator's output scale."""
    return np.stack([normalize_intensity(im) for im in np.asarray(images, np.float32)])


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the training-time augmentations.

    Attributes
    ----------
    dihedral : bool
        Random flips and 90-degree turns (the 8 symmetries of the square); images and
        masks are transformed together.
    gain : (float, float)
        Range of a multiplicative contrast factor.
    offset : (float, float)
        Range of an additive intensity offset (image units, images are ~[0, 1]).
    gamma : (float, float)
        Range of a gamma applied to the image after clipping at 0.
    noise_std : (float, float)
        Range of the standard deviation of extra Gaussian noise (image units).
    """

    dihedral: bool = True
    gain: tuple = (0.8, 1.25)
    offset: tuple = (-0.1, 0.1)
    gamma: tuple = (0.8, 1.25)
    noise_std: tuple = (0.0, 0.05)


def augment(image: np.ndarray, masks: np.ndarray, aug: Augmentation, rng: np.random.Generator):
    """Apply one random draw of ``aug`` to an image (H, W) and its masks (C, H, W)."""
    if aug.dihedral:
        k = int(rng.integers(4))
        image, masks = np.rot90(image, k), np.rot90(masks, k, axes=(1, 2))
        if rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
    image = np.clip(image, 0, None) ** rng.uniform(*aug.gamma)
    image = image * rng.uniform(*aug.gain) + rng.uniform(*aug.offset)
    std = rng.uniform(*aug.noise_std)
    if std > 0:
        image = image + rng.normal(0.0, std, image.shape)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(masks)


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and masks of selected indices as ``(1, H, W)`` float and ``(C, H, W)`` float tensors.

    Parameters
    ----------
    images : array-like (N, H, W) float32
    masks : array-like (N, C, H, W) uint8
    indices : array of int
        Which images to use.
    augmentation : Augmentation or None
        None for validation and test data.
    rng : numpy.random.Generator, optional
        Required with an augmentation.
    """

    def __init__(self, images, masks, indices, augmentation: Augmentation | None = None,
                 rng: np.random.Generator | None = None):
        if augmentation is not None and rng is None:
            raise ValueError("an augmented dataset needs a numpy Generator")
        self.images, self.masks = images, masks
        self.indices = np.asarray(indices)
        self.augmentation, self.rng = augmentation, rng

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        image, masks = normalize_intensity(np.asarray(self.images[i], np.float32)), np.asarray(self.masks[i])
        if self.augmentation is not None:
            image, masks = augment(image, masks, self.augmentation, self.rng)
        return torch.from_numpy(image[None]), torch.from_numpy(masks.astype(np.float32))

"""Training batches from a dataset file, with augmentations that keep masks aligned.

Every random draw comes from a ``numpy.random.Generator`` or ``torch.Generator`` handed in,
so a training run is reproducible from its seed.
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


def augment_batch(images: torch.Tensor, masks: torch.Tensor, aug: Augmentation,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply an independent random draw of ``aug`` to each image of a batch and its masks.

    Works on whatever device the tensors live on, so on a GPU the augmentation costs no CPU
    time. Every draw, including the seed of the extra noise, comes from ``rng``: the same
    generator state gives the same batch on the same device.

    Parameters
    ----------
    images : Tensor (B, 1, H, W) float
        Normalised images.
    masks : Tensor (B, C, H, W) float
        Their masks; turned and flipped with the images.
    aug : Augmentation
    rng : numpy.random.Generator

    Returns
    -------
    images, masks : Tensor
        New tensors (the inputs are not modified).
    """
    b, _, h, w = images.shape
    device, dtype = images.device, images.dtype
    if aug.dihedral:
        # quarter turns of a non-square batch would change its shape: only half turns then
        turns = rng.integers(4, size=b) if h == w else 2 * rng.integers(2, size=b)
        flips = rng.random(b) < 0.5
        images, masks = images.clone(), masks.clone()
        for k in range(4):  # one transform per group of samples, not one per sample
            for flip in (False, True):
                sel = np.flatnonzero((turns == k) & (flips == flip))
                if sel.size == 0 or (k == 0 and not flip):
                    continue
                idx = torch.from_numpy(sel).to(device)
                x, y = torch.rot90(images[idx], k, dims=(2, 3)), torch.rot90(masks[idx], k, dims=(2, 3))
                if flip:
                    x, y = x.flip(3), y.flip(3)
                images[idx], masks[idx] = x, y

    def per_sample(bounds):
        return torch.from_numpy(rng.uniform(*bounds, size=b)).to(device=device, dtype=dtype).view(b, 1, 1, 1)

    gamma, gain, offset, std = (per_sample(r) for r in (aug.gamma, aug.gain, aug.offset, aug.noise_std))
    images = images.clamp_min(0) ** gamma * gain + offset
    noise = torch.Generator(device=device)
    noise.manual_seed(int(rng.integers(2**63)))
    images = images + std * torch.randn(images.shape, generator=noise, device=device, dtype=dtype)
    return images, masks


class TrainingBatches:
    """Shuffled training batches, drawn the way a ``DataLoader(shuffle=True, drop_last=True)``
    draws them, from images normalised once up front.

    Normalising every image once (not at every epoch) and gathering a batch by fancy
    indexing keeps the CPU side of a step to a memory copy, so a GPU is not left waiting.

    Parameters
    ----------
    images : array-like (N, H, W)
    masks : array-like (N, C, H, W) uint8
        Yielded as uint8 (a quarter of the bytes to move to the device); convert there.
    indices : array of int
        Which images to use.
    batch_size : int
    generator : torch.Generator
        Decides the order of every epoch (its state is saved for resuming).
    """

    def __init__(self, images, masks, indices, batch_size: int, generator: torch.Generator):
        self.indices = np.asarray(indices)
        self.images = normalize_batch(np.asarray(images)[self.indices])
        self.masks = np.asarray(masks)
        self.batch_size, self.generator = batch_size, generator

    def __len__(self) -> int:
        return len(self.indices) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.indices), generator=self.generator).numpy()
        for step in range(len(self)):
            rows = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield (torch.from_numpy(self.images[rows][:, None]),
                   torch.from_numpy(self.masks[self.indices[rows]]))

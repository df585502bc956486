import numpy as np
import torch

from gombnet.nn.dataset import Augmentation, TrainingBatches, augment_batch, normalize_batch

GEOMETRY_ONLY = Augmentation(gain=(1.0, 1.0), offset=(0.0, 0.0), gamma=(1.0, 1.0), noise_std=(0.0, 0.0))


def _batch(b=16, size=12, seed=0):
    """Masks of random dots and images drawn from them, so alignment can be checked exactly."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((b, 2, size, size)) < 0.1).astype(np.float32)
    images = (masks[:, :1] + 2 * masks[:, 1:]).astype(np.float32)
    return torch.from_numpy(images), torch.from_numpy(masks)


def test_masks_follow_the_image():
    x, y = _batch()
    ax, ay = augment_batch(x, y, GEOMETRY_ONLY, np.random.default_rng(1))
    torch.testing.assert_close(ax, ay[:, :1] + 2 * ay[:, 1:])
    # every sample is one of the 8 symmetries of its own original
    for i in range(len(x)):
        d4 = [torch.rot90(x[i], k, dims=(1, 2)).flip(2) if f else torch.rot90(x[i], k, dims=(1, 2))
              for k in range(4) for f in (False, True)]
        assert any(torch.equal(ax[i], t) for t in d4)
    # and the draws differ between samples (16 samples: not all left alone)
    assert sum(not torch.equal(ax[i], x[i]) for i in range(len(x))) >= 8
    assert torch.equal(x, _batch()[0])  # inputs untouched


def test_non_square_batches_keep_their_shape():
    x, y = torch.rand(8, 1, 6, 10), (torch.rand(8, 3, 6, 10) > 0.5).float()
    ax, ay = augment_batch(x, y, Augmentation(), np.random.default_rng(0))
    assert ax.shape == x.shape and ay.shape == y.shape


def test_intensity_draws_are_per_sample_and_reproducible():
    x, y = torch.full((32, 1, 8, 8), 0.5), torch.zeros(32, 1, 8, 8)
    a1, _ = augment_batch(x, y, Augmentation(), np.random.default_rng(7))
    a2, _ = augment_batch(x, y, Augmentation(), np.random.default_rng(7))
    a3, _ = augment_batch(x, y, Augmentation(), np.random.default_rng(8))
    torch.testing.assert_close(a1, a2)
    assert not torch.allclose(a1, a3)
    means = a1.mean(dim=(1, 2, 3))
    assert means.std() > 0.02  # gain/offset/gamma differ between samples
    # 0.5 ** gamma * gain + offset over the default ranges stays inside these bounds
    assert means.min() > 0.5 ** 1.25 * 0.8 - 0.1 - 0.05 and means.max() < 0.5 ** 0.8 * 1.25 + 0.1 + 0.05


def test_training_batches_cover_each_index_once_per_epoch():
    rng = np.random.default_rng(0)
    images = rng.random((20, 8, 8)).astype(np.float32)
    masks = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 8, 8), np.uint8)
    indices = np.array([3, 5, 6, 9, 10, 11, 14, 15, 17])
    batches = TrainingBatches(images, masks, indices, 4, torch.Generator().manual_seed(0))
    assert len(batches) == 2  # the last partial batch is dropped
    seen = []
    for x, y in batches:
        assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.uint8
        ids = y[:, 0, 0, 0].numpy().astype(int)
        # each image arrives normalised, next to its own masks
        np.testing.assert_allclose(x[:, 0].numpy(), normalize_batch(images[ids]))
        seen += list(ids)
    assert len(set(seen)) == 8 and set(seen) <= set(indices)
    again = TrainingBatches(images, masks, indices, 4, torch.Generator().manual_seed(0))
    assert [int(v) for _, y in again for v in y[:, 0, 0, 0]] == seen

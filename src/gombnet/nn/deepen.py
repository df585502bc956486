"""Grow a trained network by one level without losing what it learned.

A deeper U-Net sees about twice as far around each pixel, which helps to tell the two
layers apart where they overlap over long distances (small twist angles). Training such a
network from scratch costs hours; instead the trained network is kept inside the deeper one:
its bottleneck becomes the deepest encoder block, its decoder levels move down by one, and
the new top decoder level starts as the identity on its skip connection. At the start the
deeper network therefore computes the same logits as the trained one (in eval mode), and
fine-tuning only has to learn what the extra level adds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..errors import check
from .model import GombNet


def _skip_statistics(source: GombNet, images: np.ndarray, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance of ``source``'s bottleneck output over ``images``.

    Taken in train mode (batch statistics), as the new level will see it when training
    starts; on a copy, so that the source's running statistics stay as they are.
    """
    probe = copy.deepcopy(source).train()
    feats = []
    probe.bottleneck.register_forward_hook(lambda module, inputs, output: feats.append(output.detach()))
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            probe(torch.as_tensor(images[start:start + batch_size], dtype=torch.float32)[:, None])
    f = torch.cat(feats).transpose(0, 1).reshape(feats[0].shape[1], -1)
    return f.mean(dim=1), f.var(dim=1)


def deepen_into(target: GombNet, source: GombNet, images, *, batch_size: int = 16) -> GombNet:
    """Fill ``target`` (one level deeper than ``source``) so that it computes what ``source`` does.

    Parameters
    ----------
    target : GombNet
        Freshly built network whose ``filters`` are ``source``'s plus one more width; its
        new bottleneck keeps its random initial weights. Changed in place.
    source : GombNet
        Trained network (not changed).
    images : array_like, shape (N, H, W)
        Normalised training images; the batch-norm layers of the new level are set to the
        statistics of the old bottleneck output over them (in train mode), so that the new
        level is also close to the identity when training starts (batch statistics).
    batch_size : int
        Images per forward pass while collecting the statistics.

    Returns
    -------
    GombNet
        ``target``. In eval mode its logits equal ``source``'s up to float rounding.

    Raises
    ------
    GombnetError
        If the architectures differ in anything but one extra level, or no images are given.
    """
    old, new = list(source.config["filters"]), list(target.config["filters"])
    check(new[:-1] == old,
          f"deepening needs the filters of the trained model plus one more width ({old} + [w]), got {new}")
    same = ("in_channels", "n_layers", "classes_per_layer")
    check(all(source.config[k] == target.config[k] for k in same),
          "deepening needs the same inputs, layers and classes: "
          + ", ".join(f"{k} {source.config[k]} vs {target.config[k]}" for k in same))
    images = np.asarray(images, dtype=np.float32)
    check(images.ndim == 3 and len(images) > 0, f"deepening needs images of shape (N, H, W), got {images.shape}")

    depth_old = len(old) - 1
    with torch.no_grad():
        for k in range(depth_old):
            target.encoder[k].load_state_dict(source.encoder[k].state_dict())
        target.encoder[depth_old].load_state_dict(source.bottleneck.state_dict())
        for d_new, d_old in zip(target.decoders, source.decoders):
            for k, up in enumerate(d_old.ups):
                d_new.ups[k + 1].load_state_dict(up.state_dict())
            d_new.head.load_state_dict(d_old.head.state_dict())

    mean, var = _skip_statistics(source, images, batch_size)
    width = old[-1]
    with torch.no_grad():
        for decoder in target.decoders:
            conv1, bn1, _, conv2, bn2, _ = decoder.ups[0].conv
            # conv1 sees [upsampled, skip]: read only the skip; the up-path enters through
            # weights that start at zero and are learnt
            conv1.weight.zero_()
            torch.nn.init.dirac_(conv1.weight[:, width:])
            torch.nn.init.dirac_(conv2.weight)
            for conv in (conv1, conv2):
                conv.bias.zero_()
            # BatchNorm that undoes its own normalisation: (x - mean) / std * std + mean = x;
            # the skip is a ReLU output (>= 0), so the following ReLUs pass it unchanged
            for bn in (bn1, bn2):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.weight.copy_((var + bn.eps).sqrt())
                bn.bias.copy_(mean)
    return target

"""Gomb-Net: a U-Net with one shared encoder and one decoder per atomic layer.

The network takes a HAADF-STEM image (B, in_channels, H, W) and returns logits of shape
(B, n_layers * classes_per_layer, H, W), *layer-major*: the ``classes_per_layer`` channels
of decoder branch 0 come first, then those of branch 1, and so on. Which branch ends up
describing which physical layer is not fixed; the Gomb loss
(:class:`gombnet.nn.losses.GombLoss`) is invariant to the branch order.

Architecture (``filters = (f0, ..., fD)``, depth ``D = len(filters) - 1``):

* encoder: ``D`` blocks of two 3x3 conv (padding 1) + BatchNorm + ReLU, each followed by a
  2x2 max-pool; block ``k`` has ``filters[k]`` channels;
* bottleneck: the same double convolution with ``filters[-1]`` channels, then dropout
  (the only dropout in the network);
* ``n_layers`` identical, independent decoders: per level a 2x2 transposed conv
  (stride 2), concatenation with the encoder output of that level (skip connection),
  then a double convolution; each decoder ends with a 1x1 conv to its classes.

``n_layers=1`` with ``classes_per_layer = layers * classes`` is the single-decoder U-Net
baseline of the paper. With ``filters=(32, 64, 128, 256)`` the two-branch graphene model
has 2,682,082 parameters and the single-decoder baseline (2 output channels) 1,927,874,
as in the published models.

Any image size >= ``size_multiple`` (= 2**depth) px works: the input is reflect-padded to a
multiple of ``size_multiple`` and the output is cropped back to the input size.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GombnetError

__all__ = ["GombNet", "padded_size"]


def padded_size(n: int, size_multiple: int) -> int:
    """Return the size [px] an image side of ``n`` px is reflect-padded to.

    Parameters
    ----------
    n : int
        Image side length [px].
    size_multiple : int
        The network's size multiple (``2**depth``).

    Returns
    -------
    int
        The smallest multiple of ``size_multiple`` that is >= ``n``.

    Raises
    ------
    GombnetError
        If ``n < size_multiple``: reflect padding cannot grow such a small side, and the
        bottleneck would have less than one pixel. The nearest valid size is
        ``size_multiple``.
    """
    n = int(n)
    if n < size_multiple:
        raise GombnetError(
            f"image side of {n} px is too small for this network; "
            f"the nearest valid size is {size_multiple} px")
    return -(-n // size_multiple) * size_multiple


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise GombnetError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv (padding 1), each followed by BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _UpBlock(nn.Module):
    """2x2 transposed conv (stride 2), concatenate the skip, double convolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = _double_conv(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        # under autocast the skip (BatchNorm output) and x may differ in dtype
        if x.dtype != skip.dtype:
            skip = skip.to(x.dtype)
        return self.conv(torch.cat([x, skip], dim=1))


class _Decoder(nn.Module):
    """One decoder branch: up-blocks from the bottleneck to full size, then a 1x1 head."""

    def __init__(self, filters: Sequence[int], n_classes: int):
        super().__init__()
        # from the deepest level up: filters[k+1] -> filters[k]
        self.ups = nn.ModuleList(
            _UpBlock(filters[k + 1], filters[k]) for k in reversed(range(len(filters) - 1)))
        self.head = nn.Conv2d(filters[0], n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.head(x)


class GombNet(nn.Module):
    """Shared-encoder U-Net with one decoder branch per atomic layer.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for HAADF-STEM).
    n_layers : int
        Number of decoder branches (atomic layers). 1 gives a plain U-Net.
    classes_per_layer : int
        Output channels of each branch (atom classes per layer).
    filters : sequence of int
        Channels per encoder level; the last entry is the bottleneck width, so
        ``len(filters) - 1`` is the number of poolings (the depth). Graphene model:
        (32, 64, 128, 256); WS2-WSSe model: (32, 64, 128, 256, 512).
    dropout : float
        Dropout probability at the bottleneck, in [0, 1).

    Attributes
    ----------
    config : dict
        The constructor arguments as a JSON-serialisable dict; ``GombNet(**model.config)``
        rebuilds the same architecture.
    depth : int
        Number of 2x2 poolings.
    size_multiple : int
        ``2**depth``; inputs are reflect-padded to a multiple of it internally.
    out_channels : int
        ``n_layers * classes_per_layer``.

    Notes
    -----
    The forward pass returns logits (no sigmoid), layer-major: channel
    ``layer * classes_per_layer + class``.
    """

    def __init__(self, in_channels: int = 1, n_layers: int = 2, classes_per_layer: int = 1,
                 filters: Sequence[int] = (32, 64, 128, 256), dropout: float = 0.2):
        super().__init__()
        in_channels = _check_int("in_channels", in_channels)
        n_layers = _check_int("n_layers", n_layers)
        classes_per_layer = _check_int("classes_per_layer", classes_per_layer)
        try:
            filters = [] if isinstance(filters, (str, bytes)) else list(filters)
        except TypeError:
            filters = []
        if not filters:
            raise GombnetError("filters must be a non-empty sequence of integers")
        filters = [_check_int("each entry of filters", f) for f in filters]
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0.0 <= float(dropout) < 1.0:
            raise GombnetError(f"dropout must be a number in [0, 1), got {dropout!r}")
        dropout = float(dropout)

        self.config = {
            "in_channels": in_channels,
            "n_layers": n_layers,
            "classes_per_layer": classes_per_layer,
            "filters": list(filters),
            "dropout": dropout,
        }
        self.in_channels = in_channels
        self.n_layers = n_layers
        self.classes_per_layer = classes_per_layer
        self.out_channels = n_layers * classes_per_layer
        self.depth = len(filters) - 1
        self.size_multiple = 2 ** self.depth

        self.encoder = nn.ModuleList()
        ch = in_channels
        for f in filters[:-1]:
            self.encoder.append(_double_conv(ch, f))
            ch = f
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = _double_conv(ch, filters[-1])
        self.dropout = nn.Dropout(p=dropout)
        self.decoders = nn.ModuleList(_Decoder(filters, classes_per_layer) for _ in range(n_layers))

    def padded_size(self, n: int) -> int:
        """Size [px] an image side of ``n`` px is padded to (see :func:`padded_size`)."""
        return padded_size(n, self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (B, n_layers * classes_per_layer, H, W) for images (B, C, H, W)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GombnetError(
                f"GombNet expects a tensor of shape (batch, {self.in_channels}, height, width), "
                f"got {shape}")
        height, width = x.shape[-2:]
        pad_h = self.padded_size(height) - height
        pad_w = self.padded_size(width) - width
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            # reflect keeps the lattice texture at the border (zero padding would add an edge)
            x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect")

        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))

        outs = [decoder(x, skips) for decoder in self.decoders]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        if pad_h or pad_w:
            y = y[..., top:top + height, left:left + width]
        return y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

"""Losses for layer-resolved atom segmentation: the Gomb loss and Dice/BCE baselines.

All loss modules take ``logits`` (B, C, H, W) straight from the network and ``targets``
(B, C, H, W) with values in {0, 1}, and return a scalar tensor (mean over the batch).
Channels are *layer-major*: with ``n_layers`` layers of ``c = C / n_layers`` classes,
channel ``layer * c + class``.

False-positive weighted Dice
----------------------------
``D = (2 sum(p t) + s) / (alpha sum(p) + sum(t) + s)`` with probabilities ``p`` and targets
``t``. Because ``sum(p t) <= min(sum(p), sum(t))`` for values in [0, 1], ``D <= 2 / (alpha + 1)``,
reached only by a perfect prediction. With the paper's ``alpha = 2`` a perfect prediction
therefore scores ``D = 2/3`` and its Dice loss ``1 - D`` never goes below 1/3 (except for an
empty target predicted empty, which scores ``s / s = 1``). ``normalized=True`` rescales
``D`` by ``(alpha + 1) / 2`` so that a perfect prediction scores 1 and the loss floor is 0
whatever ``alpha``; for ``alpha = 1`` both variants are the ordinary Dice.

Gomb loss (paper Eq. 1)
-----------------------
For layers ``A, B`` with targets ``T`` and predicted branches ``P``::

    a = DL(P_A, T_A) + DL(P_B, T_B)          # branches in target order
    b = DL(P_A, T_B) + DL(P_B, T_A)          # branches swapped
    combined = 1 / (1 / (a + eps) + 1 / (b + eps) + eps)     # soft minimum
    m = sigmoid((DLs(T_A, T_B) - DLs(P_A, P_B)) ** 2)        # similarity penalty
    loss = m * combined

For ``K`` layers the soft minimum runs over all ``K!`` assignments of predicted branches to
target layers. Choices made here (documented because the paper and the authors' code leave
them open or disagree):

* Each ``DL`` pools all classes of a layer together (the authors' code; "groupwise"), so the
  paper's ``1/N`` class average has nothing to average. ``per_class=True`` instead averages
  per-class Dice losses inside each layer pair; the layer assignment stays shared by all
  classes either way (a per-class assignment would no longer be groupwise).
* The similarity penalty uses the *plain, symmetric* Dice loss ``DLs`` (alpha = 1). The
  false-positive Dice is asymmetric in its two arguments, which would make the loss depend
  on the branch order it is meant to ignore. The penalty lies in [sigmoid(0), sigmoid(1)] =
  [0.5, 0.73].
* For ``K > 2`` layers the penalty of an assignment ``sigma`` is the mean over layer pairs
  ``i < j`` of ``sigmoid((DLs(T_i, T_j) - DLs(P_sigma(i), P_sigma(j))) ** 2)``, and the
  penalties of all assignments are averaged with the soft-minimum weights
  ``(1 / (a_sigma + eps)) / sum(1 / (a + eps))``, so the best assignment dominates. For two
  layers every assignment has the same penalty and this reduces exactly to Eq. 1.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GombnetError

__all__ = [
    "dice_fp",
    "layer_permutations",
    "best_permutation",
    "reorder_layers",
    "GombLoss",
    "DiceLoss",
    "BCELoss",
    "BCEDiceLoss",
    "make_loss",
]

#: Largest number of layers the Gomb loss accepts (6! = 720 assignments).
MAX_LAYERS = 6


# --------------------------------------------------------------------------- helpers

def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(float(value)) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise GombnetError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _check_n_layers(n_layers) -> int:
    if isinstance(n_layers, bool) or not isinstance(n_layers, numbers.Integral) \
            or not 1 <= n_layers <= MAX_LAYERS:
        raise GombnetError(f"n_layers must be an integer from 1 to {MAX_LAYERS}, got {n_layers!r}")
    return int(n_layers)


def _full_precision(device: torch.device):
    """Context that switches autocast off: Dice sums over many pixels need float32."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _check_pair(logits: torch.Tensor, targets: torch.Tensor, n_layers: int = 1) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise GombnetError("logits and targets must be torch tensors")
    if logits.ndim != 4:
        raise GombnetError(f"logits must have shape (batch, channels, height, width), got {tuple(logits.shape)}")
    if logits.shape != targets.shape:
        raise GombnetError(
            f"logits shape {tuple(logits.shape)} differs from targets shape {tuple(targets.shape)}")
    if logits.shape[1] % n_layers:
        raise GombnetError(
            f"{logits.shape[1]} channels cannot be split into {n_layers} layers of equal size")


# Dice smoothing [pixels]. Per class, a class absent from a sample (no Se-S column in a
# pristine layer) has Dice = smooth / (alpha * sum(p) + smooth): with the default 1e-6 that is
# ~0 whatever is predicted, so the class adds a constant and its false positives cost nothing;
# with 1 they are penalised (see TrainConfig.dice_smooth for what that did to a real model).
DEFAULT_SMOOTH = 1e-6


def _dice_from_sums(inter: torch.Tensor, sum_x: torch.Tensor, sum_y: torch.Tensor,
                    alpha: float, smooth: float, normalized: bool) -> torch.Tensor:
    d = (2.0 * inter + smooth) / (alpha * sum_x + sum_y + smooth)
    if normalized:
        d = d * ((alpha + 1.0) / 2.0)
    return d.clamp(0.0, 1.0)


def _pairwise_dice_loss(x: torch.Tensor, y: torch.Tensor, alpha: float, smooth: float,
                        normalized: bool, per_class: bool) -> torch.Tensor:
    """Dice loss between every group of ``x`` and every group of ``y``.

    ``x``, ``y``: (B, K, c, N). Returns (B, K, K) with entry [b, j, i] = DL(x_j, y_i), where
    ``x_j`` takes the "prediction" slot (weighted by ``alpha``).
    """
    if per_class:
        inter = torch.einsum("bjcn,bicn->bjic", x, y)          # (B, K, K, c)
        sx = x.sum(-1)[:, :, None, :]                          # (B, K, 1, c)
        sy = y.sum(-1)[:, None, :, :]                          # (B, 1, K, c)
        return (1.0 - _dice_from_sums(inter, sx, sy, alpha, smooth, normalized)).mean(-1)
    x = x.flatten(2)
    y = y.flatten(2)
    inter = torch.einsum("bjn,bin->bji", x, y)                 # (B, K, K)
    sx = x.sum(-1)[:, :, None]
    sy = y.sum(-1)[:, None, :]
    return 1.0 - _dice_from_sums(inter, sx, sy, alpha, smooth, normalized)


def _groups(t: torch.Tensor, n_layers: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, K, c, H*W) in float32 (reshape, not view: channels_last safe)."""
    b, c = t.shape[:2]
    return t.float().reshape(b, n_layers, c // n_layers, -1)


# --------------------------------------------------------------------------- functions

def dice_fp(probs: torch.Tensor, targets: torch.Tensor, alpha: float = 2.0, smooth: float = DEFAULT_SMOOTH,
            normalized: bool = False) -> torch.Tensor:
    """False-positive weighted Dice coefficient per sample.

    ``D = (2 sum(p t) + s) / (alpha sum(p) + sum(t) + s)``, the sums running over every
    non-batch element (all classes of the given channels pooled together), clamped to [0, 1].

    Parameters
    ----------
    probs : torch.Tensor
        Probabilities in [0, 1], shape (B, ...).
    targets : torch.Tensor
        Targets in {0, 1} (or [0, 1]), same shape.
    alpha : float
        Weight of the predicted mass; ``alpha > 1`` penalises false positives.
    smooth : float
        Smoothing term ``s`` (> 0; empty target and empty prediction give D = 1).
    normalized : bool
        Scale ``D`` by ``(alpha + 1) / 2`` so a perfect prediction gives 1 instead of
        ``2 / (alpha + 1)`` (2/3 for alpha = 2).

    Returns
    -------
    torch.Tensor
        Dice coefficient (not the loss) of shape (B,), float32.
    """
    alpha = _check_positive("alpha", alpha)
    smooth = _check_positive("smooth", smooth)
    if not isinstance(probs, torch.Tensor) or not isinstance(targets, torch.Tensor) \
            or probs.shape != targets.shape or probs.ndim < 1:
        raise GombnetError("dice_fp needs two tensors of the same shape (batch, ...)")
    with _full_precision(probs.device):
        p = probs.float().reshape(probs.shape[0], -1)
        t = targets.float().reshape(targets.shape[0], -1)
        return _dice_from_sums((p * t).sum(-1), p.sum(-1), t.sum(-1), alpha, smooth, normalized)


def layer_permutations(n_layers: int) -> list[tuple[int, ...]]:
    """All assignments of predicted branches to target layers, identity first.

    Entry ``sigma`` of the list means: target layer ``i`` is matched with predicted branch
    ``sigma[i]``. The order is that of :func:`itertools.permutations`, so index 0 is the
    identity and, for two layers, index 1 is the swap.
    """
    n_layers = _check_n_layers(n_layers)
    return list(itertools.permutations(range(n_layers)))


def reorder_layers(x: torch.Tensor, perm_index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Reorder the layer groups of ``x`` per sample so they line up with the targets.

    Parameters
    ----------
    x : torch.Tensor
        Layer-major tensor (B, C, ...) such as logits or probabilities.
    perm_index : torch.Tensor
        (B,) integer indices into :func:`layer_permutations`, e.g. from
        :func:`best_permutation`.
    n_layers : int
        Number of layers the C channels are split into.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``; output group ``i`` of sample ``b`` is input group
        ``sigma_b[i]``.
    """
    n_layers = _check_n_layers(n_layers)
    if x.ndim < 2 or x.shape[1] % n_layers:
        raise GombnetError(f"cannot split {tuple(x.shape)} into {n_layers} layer groups along dim 1")
    perms = torch.tensor(layer_permutations(n_layers), device=x.device)
    perm_index = torch.as_tensor(perm_index, device=x.device).long()
    if perm_index.shape != (x.shape[0],):
        raise GombnetError(f"perm_index must have shape ({x.shape[0]},), got {tuple(perm_index.shape)}")
    b, c = x.shape[:2]
    g = x.reshape(b, n_layers, c // n_layers, *x.shape[2:])
    sigma = perms[perm_index]                                   # (B, K)
    idx = sigma.reshape(b, n_layers, *([1] * (g.ndim - 2))).expand_as(g)
    return torch.gather(g, 1, idx).reshape(x.shape)


def best_permutation(logits: torch.Tensor, targets: torch.Tensor, n_layers: int, alpha: float = 2.0,
                     normalized: bool = False, per_class: bool = False,
                     smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """Index (into :func:`layer_permutations`) of the best branch-to-layer assignment.

    The best assignment minimises the summed false-positive Dice loss, the same quantity
    ``a`` the Gomb loss soft-minimises.

    Returns
    -------
    torch.Tensor
        (B,) int64 tensor.
    """
    n_layers = _check_n_layers(n_layers)
    _check_pair(logits, targets, n_layers)
    with torch.no_grad():
        a = _assignment_losses(logits, targets, n_layers, _check_positive("alpha", alpha),
                               _check_positive("smooth", smooth), normalized, per_class)[0]
    return a.argmin(dim=1)


def _assignment_losses(logits, targets, n_layers, alpha, smooth, normalized, per_class):
    """Return (a, probs_groups, target_groups, perms): a[b, p] = sum_i DL(P_sigma_p(i), T_i)."""
    with _full_precision(logits.device):
        p = torch.sigmoid(_groups(logits, n_layers))
        t = _groups(targets, n_layers)
        dl = _pairwise_dice_loss(p, t, alpha, smooth, normalized, per_class)   # (B, K, K)
        perms = torch.tensor(layer_permutations(n_layers), device=logits.device)  # (P, K)
        layer = torch.arange(n_layers, device=logits.device)
        a = dl[:, perms, layer].sum(-1)                                        # (B, P)
    return a, p, t, perms


# --------------------------------------------------------------------------- modules

class GombLoss(nn.Module):
    """Groupwise combinatorial (Gomb) loss: layer-order invariant FP-Dice loss.

    Parameters
    ----------
    n_layers : int
        Number of layers the channels are split into (layer-major), 1 to 6.
    alpha : float
        False-positive weight of the Dice terms (paper: 2).
    similarity_penalty : bool
        Multiply by the paper's "numerator" term, which discourages all branches from
        predicting the same thing (see module docstring).
    normalized : bool
        Use the normalised Dice (perfect prediction -> Dice loss 0, so the Gomb loss of a
        perfect prediction is ~0 instead of >= 1/4 for two layers with alpha = 2).
    eps : float
        Stabilising constant of the soft minimum (paper: 1e-6).
    per_class : bool
        Average per-class Dice losses inside each layer instead of pooling the classes.
    smooth : float
        Dice smoothing term [pixels]. With ``per_class``, 1e-6 lets a class that is absent
        from a sample add a constant (its false positives cost nothing); 1 penalises them.
    bce_weight : float
        Add ``bce_weight`` times the pixel-mean binary cross-entropy of the branches under
        the sample's best assignment (the one with the lowest summed Dice loss, chosen
        without gradient). Unlike any Dice, BCE charges every false-positive pixel, also of
        a class absent from the sample, so it does not depend on the smoothing. 0 (default)
        is the paper's loss.
    reduction : {"mean", "none"}
        Mean over the batch, or the (B,) per-sample losses.

    Notes
    -----
    Cost: one (B, K, c*H*W) x (B, c*H*W, K) product; no loop over samples or assignments.
    Computed in float32 even under autocast.
    """

    def __init__(self, n_layers: int = 2, alpha: float = 2.0, similarity_penalty: bool = True,
                 normalized: bool = False, eps: float = 1e-6, per_class: bool = False,
                 smooth: float = DEFAULT_SMOOTH, bce_weight: float = 0.0, reduction: str = "mean"):
        super().__init__()
        self.n_layers = _check_n_layers(n_layers)
        self.bce_weight = _check_positive("bce_weight", bce_weight, allow_zero=True)
        self.alpha = _check_positive("alpha", alpha)
        self.eps = _check_positive("eps", eps)
        self.smooth = _check_positive("smooth", smooth)
        self.similarity_penalty = bool(similarity_penalty)
        self.normalized = bool(normalized)
        self.per_class = bool(per_class)
        if reduction not in ("mean", "none"):
            raise GombnetError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_pair(logits, targets, self.n_layers)
        k = self.n_layers
        a, p, t, perms = _assignment_losses(logits, targets, k, self.alpha, self.smooth,
                                            self.normalized, self.per_class)
        with _full_precision(logits.device):
            inv = 1.0 / (a + self.eps)                                   # (B, P)
            inv_sum = inv.sum(-1)
            loss = 1.0 / (inv_sum + self.eps)                            # soft minimum
            if self.similarity_penalty and k > 1:
                # plain symmetric Dice between layers, so swapping branches changes nothing
                d_t = _pairwise_dice_loss(t, t, 1.0, self.smooth, False, self.per_class)
                d_p = _pairwise_dice_loss(p, p, 1.0, self.smooth, False, self.per_class)
                i, j = torch.triu_indices(k, k, offset=1, device=logits.device)
                diff = d_t[:, i, j][:, None, :] - d_p[:, perms[:, i], perms[:, j]]  # (B, P, pairs)
                m = torch.sigmoid(diff ** 2).mean(-1)                    # (B, P)
                # soft-minimum weights: the penalty of the best assignment dominates
                m = (m * inv).sum(-1) / inv_sum
                loss = m * loss
            if self.bce_weight > 0:
                aligned = reorder_layers(logits.float(), a.detach().argmin(dim=1), k)
                bce = F.binary_cross_entropy_with_logits(aligned, targets.float(), reduction="none")
                loss = loss + self.bce_weight * bce.flatten(1).mean(-1)
            return loss.mean() if self.reduction == "mean" else loss

    def extra_repr(self) -> str:
        return (f"n_layers={self.n_layers}, alpha={self.alpha}, "
                f"similarity_penalty={self.similarity_penalty}, normalized={self.normalized}, "
                f"eps={self.eps}, per_class={self.per_class}, bce_weight={self.bce_weight}")


class DiceLoss(nn.Module):
    """Dice loss ``1 - D`` for a fixed channel order (the plain U-Net baseline).

    Parameters
    ----------
    alpha : float
        False-positive weight; 1 is the ordinary Dice.
    normalized : bool
        Rescale so a perfect prediction gives loss 0 (only matters for alpha != 1).
    per_class : bool
        False (default): all channels of a sample pooled into one Dice, as the authors'
        Dice baseline and the Gomb loss do. True: one Dice per (sample, channel), averaged;
        this weights rare classes up.
    smooth : float
        Smoothing term [pixels] (see :class:`GombLoss`).
    """

    def __init__(self, alpha: float = 1.0, normalized: bool = False, per_class: bool = False,
                 smooth: float = DEFAULT_SMOOTH):
        super().__init__()
        self.alpha = _check_positive("alpha", alpha)
        self.smooth = _check_positive("smooth", smooth)
        self.normalized = bool(normalized)
        self.per_class = bool(per_class)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_pair(logits, targets)
        with _full_precision(logits.device):
            p = torch.sigmoid(logits.float())
            t = targets.float()
            if self.per_class:
                p = p.reshape(p.shape[0] * p.shape[1], -1)
                t = t.reshape(t.shape[0] * t.shape[1], -1)
            d = dice_fp(p, t, alpha=self.alpha, smooth=self.smooth, normalized=self.normalized)
            return (1.0 - d).mean()


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, mean over all pixels and channels.

    Parameters
    ----------
    pos_weight : float or None
        Weight of the positive (atom) pixels, e.g. the background/foreground ratio.
    """

    def __init__(self, pos_weight: float | None = None):
        super().__init__()
        self.pos_weight = None if pos_weight is None else _check_positive("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_pair(logits, targets)
        with _full_precision(logits.device):
            pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
            return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pw)


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice loss`` for a fixed channel order."""

    def __init__(self, alpha: float = 1.0, normalized: bool = False, per_class: bool = False,
                 bce_weight: float = 1.0, dice_weight: float = 1.0, pos_weight: float | None = None,
                 smooth: float = DEFAULT_SMOOTH):
        super().__init__()
        self.bce_weight = _check_positive("bce_weight", bce_weight, allow_zero=True)
        self.dice_weight = _check_positive("dice_weight", dice_weight, allow_zero=True)
        self.bce = BCELoss(pos_weight=pos_weight)
        self.dice = DiceLoss(alpha=alpha, normalized=normalized, per_class=per_class, smooth=smooth)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, targets) + self.dice_weight * self.dice(logits, targets)


_LOSSES = {"gomb": GombLoss, "dice": DiceLoss, "bce": BCELoss, "bce_dice": BCEDiceLoss}


def make_loss(name: str, n_layers: int = 2, **kwargs) -> nn.Module:
    """Build a loss by name.

    Parameters
    ----------
    name : {"gomb", "dice", "bce", "bce_dice"}
        Case-insensitive; "bce-dice" and "bcedice" are accepted for "bce_dice".
    n_layers : int
        Number of atomic layers; used by "gomb" (the other losses keep a fixed channel
        order and ignore it).
    **kwargs
        Passed to the loss class (e.g. ``alpha``, ``normalized``).

    Raises
    ------
    GombnetError
        Unknown name or keyword argument.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = {"bcedice": "bce_dice"}.get(key, key)
    if key not in _LOSSES:
        raise GombnetError(f"unknown loss {name!r}; choose one of {', '.join(_LOSSES)}")
    cls = _LOSSES[key]
    if cls is GombLoss:
        kwargs = {"n_layers": n_layers, **kwargs}
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise GombnetError(f"loss {key!r}: {exc}") from None
    return cls(**kwargs)

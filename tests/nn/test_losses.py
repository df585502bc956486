"""Tests for gombnet.nn.losses (Gomb loss and baselines)."""

from __future__ import annotations

import itertools

import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.nn.losses import (BCEDiceLoss, BCELoss, DiceLoss, GombLoss, best_permutation, dice_fp,
                               layer_permutations, make_loss, reorder_layers)
from gombnet.nn.model import GombNet


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _disk_masks(b, k, c, size, seed, n_disks=6, radius=3):
    """Random binary disk masks (B, K*c, size, size) like atom labels."""
    g = _gen(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros(b, k * c, size, size)
    for idx in itertools.product(range(b), range(k * c)):
        centres = torch.randint(0, size, (n_disks, 2), generator=g)
        for r, col in centres.tolist():
            out[idx][(yy - r) ** 2 + (xx - col) ** 2 <= radius ** 2] = 1.0
    return out


def _swap_groups(x, perm, k):
    b, c = x.shape[:2]
    g = x.reshape(b, k, c // k, *x.shape[2:])
    return g[:, list(perm)].reshape(x.shape)


# ---------------------------------------------------------------- dice_fp

def test_dice_fp_perfect_prediction_values():
    t = _disk_masks(2, 1, 2, 16, seed=1)
    assert torch.allclose(dice_fp(t, t, alpha=2.0), torch.full((2,), 2 / 3), atol=1e-6)
    assert torch.allclose(dice_fp(t, t, alpha=3.0), torch.full((2,), 0.5), atol=1e-6)
    assert torch.allclose(dice_fp(t, t, alpha=2.0, normalized=True), torch.ones(2), atol=1e-6)
    assert torch.allclose(dice_fp(t, t, alpha=1.0), torch.ones(2), atol=1e-6)


def test_dice_fp_penalises_false_positives_more():
    t = torch.zeros(1, 1, 10, 10)
    t[..., :5] = 1.0
    over = t.clone()
    over[..., 5:7] = 1.0       # 20 false-positive pixels
    under = t.clone()
    under[..., 3:5] = 0.0      # 20 false-negative pixels
    # plain Dice prefers the over-prediction (100/120 vs 60/80); alpha = 2 flips that
    # (100/190 vs 60/110)
    assert dice_fp(over, t, alpha=1.0) > dice_fp(under, t, alpha=1.0)
    assert dice_fp(over, t, alpha=2.0) < dice_fp(under, t, alpha=2.0)
    assert dice_fp(under, t, alpha=2.0).item() == pytest.approx(60 / 110, rel=1e-5)
    # hand computation: sum(pt)=50, sum(p)=70, sum(t)=50 -> 100 / 190
    assert dice_fp(over, t, alpha=2.0, smooth=1e-6).item() == pytest.approx(100 / 190, rel=1e-5)


def test_dice_fp_bad_arguments():
    t = torch.zeros(1, 4)
    with pytest.raises(GombnetError):
        dice_fp(t, t, alpha=0.0)
    with pytest.raises(GombnetError):
        dice_fp(t, t, smooth=0.0)
    with pytest.raises(GombnetError):
        dice_fp(t, torch.zeros(1, 5))


# ---------------------------------------------------------------- permutations

def test_layer_permutations():
    assert layer_permutations(2) == [(0, 1), (1, 0)]
    perms = layer_permutations(3)
    assert len(perms) == 6 and perms[0] == (0, 1, 2) and len(set(perms)) == 6
    with pytest.raises(GombnetError):
        layer_permutations(0)
    with pytest.raises(GombnetError):
        layer_permutations(7)


@pytest.mark.parametrize("k", [2, 3])
def test_best_permutation_and_reorder(k):
    c = 2
    t = _disk_masks(len(layer_permutations(k)), k, c, 16, seed=2)
    logits = 12.0 * (2 * t - 1)
    # sample p gets its branches shuffled so that target layer i sits in branch sigma_p(i)
    shuffled = torch.empty_like(logits)
    for p, sigma in enumerate(layer_permutations(k)):
        inv = [sigma.index(j) for j in range(k)]   # branch j holds target layer inv[j]
        shuffled[p:p + 1] = _swap_groups(logits[p:p + 1], inv, k)
    idx = best_permutation(shuffled, t, k)
    assert idx.tolist() == list(range(len(layer_permutations(k))))
    assert torch.equal(reorder_layers(shuffled, idx, k), logits)


# ---------------------------------------------------------------- GombLoss

def _paper_loss_two_layers(logits, targets, alpha=2.0, eps=1e-6, s=1e-6, penalty=True):
    """Eq. 1 written out for two layers, one sample at a time, classes pooled per layer."""
    def dl(x, y, a):
        d = (2 * (x * y).sum() + s) / (a * x.sum() + y.sum() + s)
        return 1 - d.clamp(0, 1)

    probs = torch.sigmoid(logits)
    c = logits.shape[1] // 2
    losses = []
    for pb, tb in zip(probs, targets):
        pa_, pb_ = pb[:c], pb[c:]
        ta_, tb_ = tb[:c], tb[c:]
        a = dl(pa_, ta_, alpha) + dl(pb_, tb_, alpha)
        b = dl(pa_, tb_, alpha) + dl(pb_, ta_, alpha)
        total = 1 / (1 / (a + eps) + 1 / (b + eps) + eps)
        if penalty:
            # layer-to-layer similarity with the symmetric (alpha = 1) Dice
            total = torch.sigmoid((dl(ta_, tb_, 1.0) - dl(pa_, pb_, 1.0)) ** 2) * total
        losses.append(total)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("penalty", [True, False])
def test_gomb_matches_paper_formula_two_layers(c, penalty):
    t = _disk_masks(3, 2, c, 20, seed=3)
    logits = torch.randn(3, 2 * c, 20, 20, generator=_gen(4)) * 3
    got = GombLoss(2, similarity_penalty=penalty)(logits, t)
    want = _paper_loss_two_layers(logits, t, penalty=penalty)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("per_class", [False, True])
def test_gomb_invariant_to_branch_order(k, per_class):
    c = 2
    t = _disk_masks(2, k, c, 16, seed=5)
    logits = torch.randn(2, k * c, 16, 16, generator=_gen(6)) * 2 + 2 * (2 * t - 1)
    loss = GombLoss(k, per_class=per_class, reduction="none")
    ref = loss(logits, t)
    for perm in layer_permutations(k)[1:]:
        out = loss(_swap_groups(logits, perm, k), t)
        assert torch.allclose(out, ref, rtol=1e-6, atol=0), perm
    # swapping the classes inside a layer is NOT a symmetry: the loss must notice
    assert not torch.allclose(loss(logits.flip(1), t), ref)


def test_gomb_three_layers_target_order_invariant_too():
    t = _disk_masks(2, 3, 1, 16, seed=7)
    logits = torch.randn(2, 3, 16, 16, generator=_gen(8))
    loss = GombLoss(3, reduction="none")
    for perm in layer_permutations(3):
        both = loss(_swap_groups(logits, perm, 3), _swap_groups(t, perm, 3))
        assert torch.allclose(both, loss(logits, t), rtol=1e-6)


def test_gomb_soft_minimum_bounds():
    """Without the penalty the loss lies in [min_a / n_perm, min_a] (harmonic combination)."""
    t = _disk_masks(4, 3, 1, 16, seed=9)
    logits = torch.randn(4, 3, 16, 16, generator=_gen(10)) * 2
    loss = GombLoss(3, similarity_penalty=False, reduction="none")(logits, t)
    p = torch.sigmoid(logits)
    a_min = []
    for b in range(4):
        vals = [sum(1 - dice_fp(p[b:b + 1, [s[i]]], t[b:b + 1, [i]]) for i in range(3))
                for s in layer_permutations(3)]
        a_min.append(min(vals).item())
    a_min = torch.tensor(a_min)
    assert (loss <= a_min + 1e-6).all()
    assert (loss >= a_min / 6 - 1e-6).all()


def test_gomb_better_prediction_lower_loss():
    t = _disk_masks(2, 2, 1, 24, seed=11)
    noise = torch.randn(2, 2, 24, 24, generator=_gen(12))
    good = 4 * (2 * t - 1) + noise
    poor = 1 * (2 * t - 1) + 2 * noise
    same = torch.cat([good[:, :1], good[:, :1]], 1)   # both branches predict layer 0
    for normalized in (False, True):
        loss = GombLoss(2, normalized=normalized)
        assert loss(good, t) < loss(poor, t)
        assert loss(good, t) < loss(same, t)
        assert loss(good.flip(1), t) < loss(poor, t)  # swapped layers are just as good


def test_normalized_perfect_prediction_near_zero():
    t = _disk_masks(2, 2, 3, 16, seed=13)
    perfect = 30.0 * (2 * t - 1)
    assert GombLoss(2, normalized=True)(perfect, t).item() < 1e-4
    assert GombLoss(3, normalized=True)(30.0 * (2 * _disk_masks(2, 3, 1, 16, 14) - 1),
                                        _disk_masks(2, 3, 1, 16, 14)).item() < 1e-4
    # the paper's un-normalised loss keeps a floor: a = 2/3 for the right order
    raw = GombLoss(2, normalized=False, similarity_penalty=False)(perfect, t).item()
    assert 0.2 < raw < 2 / 3 + 1e-6
    assert DiceLoss(alpha=2.0, normalized=True)(perfect, t).item() < 1e-4
    assert DiceLoss(alpha=2.0)(perfect, t).item() == pytest.approx(1 / 3, abs=1e-4)


def test_finite_gradients_on_empty_masks():
    t = torch.zeros(2, 4, 16, 16)
    t[1, :2] = _disk_masks(1, 1, 2, 16, seed=15)[0]   # sample 1: only layer 0 has atoms
    for logits0 in (torch.randn(2, 4, 16, 16, generator=_gen(16)), torch.full((2, 4, 16, 16), -50.0)):
        logits = logits0.clone().requires_grad_(True)
        for loss in (GombLoss(2), GombLoss(2, normalized=True), GombLoss(2, per_class=True),
                     DiceLoss(), BCEDiceLoss()):
            logits.grad = None
            value = loss(logits, t)
            value.backward()
            assert torch.isfinite(value)
            assert torch.isfinite(logits.grad).all()


def test_bf16_autocast_and_channels_last_inputs():
    t = _disk_masks(2, 2, 1, 16, seed=17)
    logits = torch.randn(2, 2, 16, 16, generator=_gen(18))
    ref = GombLoss(2)(logits, t)
    cl = GombLoss(2)(logits.contiguous(memory_format=torch.channels_last),
                     t.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, ref, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf = GombLoss(2)(logits.bfloat16(), t)
    assert bf.dtype == torch.float32
    assert bf.item() == pytest.approx(ref.item(), rel=2e-2)


def test_shape_errors():
    loss = GombLoss(2)
    with pytest.raises(GombnetError):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))   # 3 channels, 2 layers
    with pytest.raises(GombnetError):
        loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(GombnetError):
        GombLoss(2, alpha=-1.0)
    with pytest.raises(GombnetError):
        GombLoss(2, reduction="sum")


# ---------------------------------------------------------------- baselines and factory

def test_dice_and_bce_baselines():
    t = _disk_masks(2, 2, 1, 16, seed=19)
    good, bad = 5 * (2 * t - 1), -5 * (2 * t - 1)
    for loss in (DiceLoss(), DiceLoss(per_class=True), BCELoss(), BCEDiceLoss(), BCELoss(pos_weight=3.0)):
        assert loss(good, t) < loss(bad, t)
    # a fixed-order loss is NOT invariant to a layer swap (unlike Gomb)
    assert DiceLoss()(good.flip(1), t) > DiceLoss()(good, t) + 0.2
    bce = torch.nn.BCEWithLogitsLoss()(good, t)
    assert BCELoss()(good, t).item() == pytest.approx(bce.item(), rel=1e-6)
    assert BCEDiceLoss(bce_weight=1.0, dice_weight=0.0)(good, t).item() == pytest.approx(bce.item(), rel=1e-6)


def test_make_loss():
    assert isinstance(make_loss("gomb", 3), GombLoss) and make_loss("gomb", 3).n_layers == 3
    assert make_loss("Gomb", 2, alpha=3.0, normalized=True).alpha == 3.0
    assert isinstance(make_loss("dice", 2), DiceLoss)
    assert isinstance(make_loss("bce", 2), BCELoss)
    assert isinstance(make_loss("bce-dice", 2), BCEDiceLoss)
    with pytest.raises(GombnetError, match="unknown loss"):
        make_loss("focal", 2)
    with pytest.raises(GombnetError):
        make_loss("dice", 2, similarity_penalty=True)


# ---------------------------------------------------------------- training smoke test

def test_tiny_gombnet_overfits_one_example():
    t = _disk_masks(1, 2, 1, 32, seed=20, n_disks=8, radius=2)
    # image: both layers summed, with the second layer dimmer (like two atom species)
    g = _gen(21)
    image = (t[:, :1] + 0.6 * t[:, 1:]) + 0.05 * torch.randn(1, 1, 32, 32, generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GombNet(filters=(8, 16, 32), dropout=0.0)
    loss_fn = GombLoss(2, normalized=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(image), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda v: v == v, losses))
    assert min(losses[-5:]) < 0.3 * losses[0], losses
    model.eval()
    with torch.no_grad():
        pred = torch.sigmoid(model(image)) > 0.5
    idx = best_permutation(model(image).detach(), t, 2)
    pred = reorder_layers(pred.float(), idx, 2)
    # most atom pixels of each layer recovered
    recall = (pred * t).sum((2, 3)) / t.sum((2, 3))
    assert (recall > 0.5).all(), recall


def test_per_class_dice_smoothing_decides_what_an_absent_class_costs():
    # layer 0 has atoms of class 0 only; class 1 is absent from both layers (a pristine WS2
    # layer has no Se-S column)
    t = torch.zeros(1, 4, 32, 32)
    t[0, 0, 8:12, 8:12] = 1
    t[0, 2, 20:24, 20:24] = 1
    clean = torch.where(t > 0, 8.0, -8.0)               # a network's background: p ~ 3e-4 per pixel
    spurious = clean.clone()
    spurious[0, 1, 20:24, 4:8] = 8.0                    # 16 px of the absent class in layer 0
    # smoothing of one pixel: predicting the absent class costs something
    for loss in (GombLoss(2, per_class=True, similarity_penalty=False, smooth=1.0),
                 DiceLoss(per_class=True, smooth=1.0)):
        assert loss(spurious, t).item() > loss(clean, t).item() + 0.1
    # the default tiny smoothing: the absent class sits at loss 1 either way
    tiny = GombLoss(2, per_class=True, similarity_penalty=False)
    assert tiny(spurious, t).item() == pytest.approx(tiny(clean, t).item(), abs=1e-3)


def test_gomb_bce_term_charges_absent_class_and_ignores_branch_order():
    t = torch.zeros(2, 4, 32, 32)
    t[:, 0, 8:12, 8:12] = 1
    t[:, 2, 20:24, 20:24] = 1
    clean = torch.where(t > 0, 8.0, -8.0)
    spurious = clean.clone()
    spurious[:, 1, 20:24, 4:8] = 8.0                    # absent class predicted in layer 0
    plain = GombLoss(2, per_class=True, similarity_penalty=False)
    with_bce = GombLoss(2, per_class=True, similarity_penalty=False, bce_weight=1.0, reduction="none")
    gap_plain = plain(spurious, t).item() - plain(clean, t).item()
    gap_bce = (with_bce(spurious, t) - with_bce(clean, t)).mean().item()
    assert abs(gap_plain) < 1e-3
    # 16 confidently wrong pixels of 4096 cost about 16 * 8 / 4096 in mean BCE
    assert gap_bce == pytest.approx(16 * 8 / 4096, rel=0.05)
    # the BCE follows the Dice's choice of assignment: swapped branches, same loss
    swapped = _swap_groups(spurious, (1, 0), 2)
    assert torch.allclose(with_bce(swapped, t), with_bce(spurious, t), rtol=1e-6)
    # weight 0 is exactly the paper's loss
    logits = torch.randn(2, 4, 32, 32, generator=_gen(40))
    assert GombLoss(2, bce_weight=0.0)(logits, t).item() == GombLoss(2)(logits, t).item()
    with pytest.raises(GombnetError, match="bce_weight"):
        GombLoss(2, bce_weight=-1.0)

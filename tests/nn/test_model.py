"""Tests for gombnet.nn.model (GombNet)."""

from __future__ import annotations

import json

import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.nn.model import GombNet, padded_size


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(**kwargs) -> GombNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return GombNet(**{"filters": (4, 8), "dropout": 0.0, **kwargs})


def test_parameter_counts_match_published_models():
    # figures published by the authors for their graphene models
    assert _n_params(GombNet()) == 2_682_082
    assert _n_params(GombNet(n_layers=1, classes_per_layer=2)) == 1_927_874


def test_parameter_count_formula_for_other_configs():
    # independent count: double conv = 2 * (conv weights + bias + BN weight/bias)
    def double(ci, co):
        return 9 * ci * co + co + 2 * co + 9 * co * co + co + 2 * co

    filters, k, c, cin = (8, 16, 32), 3, 3, 2
    enc = double(cin, 8) + double(8, 16) + double(16, 32)
    dec = sum(4 * fi * fo + fo + double(2 * fo, fo) for fi, fo in [(32, 16), (16, 8)]) + 8 * c + c
    model = GombNet(in_channels=cin, n_layers=k, classes_per_layer=c, filters=filters)
    assert _n_params(model) == enc + k * dec


@pytest.mark.parametrize("shape", [(37, 50), (32, 32), (8, 9), (63, 17)])
def test_output_shape_any_size(shape):
    model = GombNet(n_layers=2, classes_per_layer=3, filters=(4, 8, 16, 16)).eval()
    x = torch.randn(2, 1, *shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 6, *shape)
    assert torch.isfinite(y).all()


def test_single_decoder_baseline_shape():
    model = _tiny(n_layers=1, classes_per_layer=4).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 20, 24))
    assert y.shape == (1, 4, 20, 24)


def test_too_small_input_names_nearest_valid_size():
    model = GombNet(filters=(4, 8, 16)).eval()  # depth 2 -> multiple of 4
    assert model.size_multiple == 4
    with pytest.raises(GombnetError, match="4 px"):
        model(torch.randn(1, 1, 3, 40))
    assert model.padded_size(4) == 4
    assert model.padded_size(5) == 8
    assert padded_size(37, 8) == 40
    with pytest.raises(GombnetError):
        padded_size(7, 8)


def test_bad_input_shape_raises():
    model = _tiny().eval()
    with pytest.raises(GombnetError, match="shape"):
        model(torch.randn(1, 2, 16, 16))
    with pytest.raises(GombnetError):
        model(torch.randn(16, 16))


@pytest.mark.parametrize("kwargs", [
    {"n_layers": 0}, {"classes_per_layer": -1}, {"filters": ()}, {"filters": (4, 0)},
    {"dropout": 1.0}, {"dropout": -0.1}, {"in_channels": True}, {"filters": "abc"},
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(GombnetError):
        GombNet(**kwargs)


def test_config_roundtrip_json():
    model = GombNet(n_layers=3, classes_per_layer=2, filters=(4, 8, 16), dropout=0.3)
    config = json.loads(json.dumps(model.config))
    rebuilt = GombNet(**config)
    assert rebuilt.config == model.config
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in model.state_dict().items())


def test_eval_forward_is_deterministic_and_dropout_only_in_train():
    model = _tiny(dropout=0.5)
    x = torch.randn(2, 1, 24, 24)
    model.eval()
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert torch.equal(y1, y2)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 1


def test_branches_are_independent_decoders():
    """Channels are layer-major: changing decoder 1 only changes its channels."""
    model = _tiny(n_layers=2, classes_per_layer=2).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
        model.decoders[1].head.bias.add_(1.0)
        after = model(x)
    assert torch.equal(before[:, :2], after[:, :2])
    assert torch.allclose(after[:, 2:] - before[:, 2:], torch.ones_like(before[:, 2:]))


def test_channels_last_and_bf16_autocast():
    model = _tiny(n_layers=2, classes_per_layer=1).eval()
    x = torch.randn(2, 1, 21, 30)
    with torch.no_grad():
        ref = model(x)
        model_cl = _tiny(n_layers=2, classes_per_layer=1).eval().to(memory_format=torch.channels_last)
        y_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, y_cl, atol=1e-5)
    assert y_bf.shape == ref.shape
    assert torch.allclose(ref, y_bf.float(), atol=0.1 + 0.05 * ref.abs().max().item())


def test_train_step_backward_finite():
    model = _tiny(dropout=0.2).train()
    y = model(torch.randn(2, 1, 16, 16))
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

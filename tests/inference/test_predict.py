import numpy as np
import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.inference.predict import predict


class BlobModel(torch.nn.Module):
    """A stand-in network: bright pixels are atoms of layer 0, nothing in layer 1."""

    size_multiple = 1

    def __init__(self, pixel_size_angstrom=0.1):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(30.0))
        self.gombnet_config = {"n_layers": 2, "class_names": ["C"], "pixel_size_angstrom": pixel_size_angstrom,
                               "tile_px": 64, "architecture": {"n_layers": 2},
                               "normalization": {"low_percentile": 0.5, "high_percentile": 99.5}}

    def forward(self, x):
        layer0 = self.scale * (x - 0.5)
        return torch.cat([layer0, torch.full_like(x, -20.0)], dim=1)


def blob_image(xy_px, shape, sigma_px):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for x, y in xy_px:
        img += np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma_px**2))
    return img


@pytest.mark.parametrize("pixel_size", [0.1, 0.075, 0.14])
def test_positions_come_back_in_input_pixels(pixel_size):
    rng = np.random.default_rng(0)
    # atoms 1.5 Å apart on a jittered grid, imaged at various pixel sizes
    grid = np.stack(np.meshgrid(np.arange(2, 9) * 1.5, np.arange(2, 9) * 1.5), -1).reshape(-1, 2)
    xy_angstrom = grid + rng.uniform(-0.2, 0.2, grid.shape)
    xy_px = xy_angstrom / pixel_size
    shape = (int(15 / pixel_size), int(14 / pixel_size))
    image = blob_image(xy_px, shape, sigma_px=0.25 / pixel_size)
    result = predict(image * 1000 + 50, BlobModel(0.1), pixel_size_angstrom=pixel_size)
    assert set(result.atoms["layer"].tolist()) == {0}
    assert len(result.atoms["x_px"]) == len(xy_px)
    found = np.column_stack([result.atoms["x_px"], result.atoms["y_px"]])
    d = np.linalg.norm(found[:, None] - xy_px[None], axis=-1).min(axis=1)
    # [Å]; a blob of the 0.14 Å image shrunk to 0.1 Å/px keeps some interpolation bias
    assert d.max() * pixel_size < 0.03
    np.testing.assert_allclose(result.atoms["x_angstrom"], result.atoms["x_px"] * pixel_size)
    assert result.counts() == {"layer0": {"C": len(xy_px)}, "layer1": {"C": 0}}
    assert result.probabilities.shape[0] == 2


def test_tta_gives_uncertainty():
    image = blob_image([(20.3, 30.7), (40, 41)], (64, 64), 2.5)
    result = predict(image, BlobModel(0.1), pixel_size_angstrom=0.1, tta="d4")
    assert result.uncertainty is not None and result.uncertainty.shape == result.probabilities.shape
    assert len(result.atoms["x_px"]) == 2


@pytest.mark.parametrize("image, px, message", [
    (np.ones((64, 64)), 0.1, "constant"),
    (np.full((64, 64), np.nan), 0.1, "NaN"),
    (np.random.default_rng(0).random((20, 64)), 0.1, "smaller than 32"),
    (np.random.default_rng(0).random(64), 0.1, "2-D"),
    (np.random.default_rng(0).random((2, 64, 64)), 0.1, "2-D"),
    (np.random.default_rng(0).random((64, 64)), 0.5, "off the model"),
    (np.random.default_rng(0).random((64, 64)), -1.0, "positive"),
])
def test_bad_input(image, px, message):
    with pytest.raises(GombnetError, match=message):
        predict(image, BlobModel(0.1), pixel_size_angstrom=px)


def test_atom_settings_from_a_model_card():
    from gombnet.inference.predict import atom_settings

    card = {"class_names": ["W", "S2", "SSe"], "n_layers": 2}
    grouping, lattice = atom_settings(card)
    assert grouping["site_groups"] == [[1, 2], [4, 5]] and lattice == 0
    grouping, lattice = atom_settings({**card, "class_weights": {"SSe": 2.0}, "lattice_class": "S2"})
    assert grouping["class_weights"][2] == 2.0 and lattice == 1
    assert atom_settings({**card, "class_weights": {"SSe": 2.0}}, {"SSe": 1.0})[0]["class_weights"][2] == 1.0
    with pytest.raises(GombnetError, match="lattice_class 'Mo'"):
        atom_settings({**card, "lattice_class": "Mo"})


def test_inference_network_folds_batchnorm_and_leaves_the_model_alone():
    from gombnet import GombNet
    from gombnet.inference.predict import inference_network, torch_predict_fn

    torch.manual_seed(0)
    model = GombNet(filters=(4, 8), dropout=0.2)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        # running statistics far from the identity, so that a wrong fold would show
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    net = inference_network(model, "cpu")

    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n_bn == 8 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == n_bn
    assert model.training  # the caller's model keeps its mode and weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    x = torch.rand(3, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    got = torch_predict_fn(model, "cpu")(x.numpy())
    assert got.shape == expected.shape and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


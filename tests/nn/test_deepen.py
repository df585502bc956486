import numpy as np
import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.nn.checkpoint import load_model
from gombnet.nn.deepen import deepen_into
from gombnet.nn.model import GombNet
from gombnet.nn.train import TrainConfig, train


def trained_like(filters, n_layers=2, classes=1, seed=0):
    """A network with non-trivial weights and batch-norm statistics, as after training."""
    torch.manual_seed(seed)
    net = GombNet(n_layers=n_layers, classes_per_layer=classes, filters=filters)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # a few forward passes give the BN layers running statistics
            net(torch.rand(4, 1, 32, 32))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("n_layers,classes", [(2, 1), (1, 3), (3, 2)])
def test_deeper_network_computes_the_same_logits(n_layers, classes):
    source = trained_like((4, 8, 16), n_layers, classes)
    images = np.random.default_rng(0).random((6, 32, 32), dtype=np.float32)
    target = GombNet(n_layers=n_layers, classes_per_layer=classes, filters=(4, 8, 16, 32))
    deepen_into(target, source, images, batch_size=4)
    x = torch.rand(3, 1, 40, 48)
    with torch.no_grad():
        a, b = source(x), target.eval()(x)
    assert b.shape == a.shape
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert target.depth == source.depth + 1
    # the new level is there to be learnt: its up-path and bottleneck are not all zero
    assert target.bottleneck[0].weight.abs().sum() > 0
    assert target.decoders[0].ups[0].up.weight.abs().sum() > 0


def test_new_level_is_near_identity_in_train_mode_too():
    # BN of the new level is set to the skip's statistics over the given images, so with batch
    # statistics of a batch of them the new level changes the logits little
    source = trained_like((4, 8, 16))
    source.dropout.p = 0.0
    rng = np.random.default_rng(1)
    images = rng.random((16, 32, 32), dtype=np.float32)
    target = deepen_into(GombNet(filters=(4, 8, 16, 32), dropout=0.0), source, images)
    x = torch.as_tensor(images)[:, None]
    with torch.no_grad():
        a = source.train()(x)
        b = target.train()(x)
        # without the statistics (BN left at its defaults) the new level would distort the skip
        plain = GombNet(filters=(4, 8, 16, 32), dropout=0.0)
        deepen_into(plain, source, images)
        for d in plain.decoders:
            for bn in (d.ups[0].conv[1], d.ups[0].conv[4]):
                bn.reset_parameters()
        c = plain.train()(x)
    assert float((a - b).abs().mean()) < 0.02 * float(a.abs().mean())
    assert float((a - c).abs().mean()) > 5 * float((a - b).abs().mean())


def test_deepen_refuses_other_architectures():
    source = trained_like((4, 8, 16))
    images = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(GombnetError, match="one more width"):
        deepen_into(GombNet(filters=(4, 8, 16, 32, 64)), source, images)
    with pytest.raises(GombnetError, match="one more width"):
        deepen_into(GombNet(filters=(4, 8, 32, 64)), source, images)
    with pytest.raises(GombnetError, match="layers and classes"):
        deepen_into(GombNet(n_layers=3, filters=(4, 8, 16, 32)), source, images)
    with pytest.raises(GombnetError, match="images of shape"):
        deepen_into(GombNet(filters=(4, 8, 16, 32)), source, images[:0])


def test_train_init_with_one_more_level_deepens(tmp_path, tiny_graphene):
    base = dict(batch_size=3, lr=2e-3, device="cpu", seed=1)
    train(tiny_graphene, tmp_path / "a", TrainConfig(epochs=1, filters=(4, 8, 16), **base))
    config = train(tiny_graphene, tmp_path / "b",
                   TrainConfig(epochs=1, filters=(4, 8, 16, 32), init_weights=str(tmp_path / "a"), **base))
    assert config["architecture"]["filters"] == [4, 8, 16, 32]
    deep, shallow = load_model(tmp_path / "b"), load_model(tmp_path / "a")
    # the trained encoder moved one step (1 epoch) from where it started, not to a random place
    w_deep, w_shallow = deep.encoder[0][0].weight, shallow.encoder[0][0].weight
    assert float((w_deep - w_shallow).detach().abs().max()) < 0.2 * float(w_shallow.detach().abs().max())
    with pytest.raises(GombnetError, match="one more width"):
        train(tiny_graphene, tmp_path / "c",
              TrainConfig(epochs=1, filters=(4, 8, 16, 32, 64), init_weights=str(tmp_path / "a"), **base))

import json
import shutil

import numpy as np
import pytest
import torch

from gombnet.data import read_dataset
from gombnet.errors import GombnetError
from gombnet.nn.checkpoint import load_model
from gombnet.nn.refiner import (PositionRefiner, dihedral, position_errors_angstrom, refiner_file,
                                refiner_training_set, save_refiner, train_refiner)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_moves_windows_and_vectors_alike(k):
    r = 3
    crops = torch.zeros(1, 3, 2 * r + 1, 2 * r + 1)
    dx, dy = 2, -1
    crops[0, :, r + dy, r + dx] = 1.0  # a bright pixel at (x, y) = (dx, dy) from the centre
    out, (v,) = dihedral(crops, [torch.tensor([[float(dx), float(dy)]])], k)
    row, col = np.argwhere(out[0, 0].numpy() == 1.0)[0]
    assert (col - r, row - r) == (v[0, 0].item(), v[0, 1].item())


def spot_samples(n, rng, r=4, px=0.1):
    """Windows with a Gaussian spot at a true position anywhere within half a pixel of the
    centre; the 'found' position is the centre pixel itself."""
    true = rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    spot = np.exp(-((xx[None] - true[:, 0, None, None]) ** 2 + (yy[None] - true[:, 1, None, None]) ** 2) / 2.0)
    crops = np.zeros((n, 3, 2 * r + 1, 2 * r + 1), np.float16)
    crops[:, 0], crops[:, 1] = spot, spot > 0.5
    return {"crops": crops, "offset_px": np.zeros((n, 2), np.float32), "target_px": true,
            "pixel_size_angstrom": np.full(n, px, np.float32), "image": np.zeros(n, np.int64)}


def test_training_learns_to_read_the_position_off_the_image():
    rng = np.random.default_rng(0)
    train, val = spot_samples(3000, rng), spot_samples(500, rng)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        refiner = PositionRefiner(width=8, crop_radius_px=4, hidden=32)
    before = np.sqrt(np.mean(position_errors_angstrom(refiner, val) ** 2))
    np.testing.assert_allclose(before, np.sqrt(np.mean(position_errors_angstrom(None, val) ** 2)))
    history = train_refiner(refiner, train, epochs=3, batch_size=64, lr=3e-3, seed=1, val_samples=val)
    after = np.sqrt(np.mean(position_errors_angstrom(refiner, val) ** 2))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["val_rmse_angstrom"] == pytest.approx(after, rel=1e-5)
    assert after < 0.3 * before, (before, after)  # uniform within a pixel: 0.041 Å RMS before
    assert not refiner.training


def test_training_rejects_bad_settings():
    samples = spot_samples(10, np.random.default_rng(0))
    with pytest.raises(GombnetError, match="batch size"):
        train_refiner(PositionRefiner(width=4, crop_radius_px=4), samples, batch_size=11)
    with pytest.raises(GombnetError, match="epochs"):
        train_refiner(PositionRefiner(width=4, crop_radius_px=4), samples, epochs=0)
    with pytest.raises(GombnetError, match="crop_radius_px"):
        PositionRefiner(crop_radius_px=1)


def test_training_set_pairs_found_atoms_with_their_true_columns(tiny_run, tiny_graphene):
    model = load_model(tiny_run)
    s = refiner_training_set(model, tiny_graphene, split="train", crop_radius_px=5)
    n = len(s["offset_px"])
    assert n > 0 and s["crops"].shape == (n, 3, 11, 11) and s["crops"].dtype == np.float16
    assert np.all(np.abs(s["offset_px"]) <= 0.5 + 1e-6)
    # every pair within the matching radius of 0.5 Å
    assert np.all(position_errors_angstrom(None, s) <= 0.5 + 1e-6)
    assert set(np.unique(s["image"])) <= set(read_dataset(tiny_graphene).indices("train"))
    with pytest.raises(GombnetError, match="unknown split"):
        refiner_training_set(model, tiny_graphene, split="nope")


def test_refiner_is_saved_beside_the_model_and_loaded_with_it(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert load_model(run).gombnet_refiner is None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        refiner = PositionRefiner(width=4, crop_radius_px=3)
        torch.nn.init.normal_(refiner.head[-1].weight)
    path = save_refiner(refiner, run, card={"note": "test"})
    assert path == refiner_file(run / "model.safetensors") == run / "model.refiner.safetensors"
    model = load_model(run)
    loaded = model.gombnet_refiner
    assert isinstance(loaded, PositionRefiner) and not loaded.training
    for k, v in refiner.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    # the refiner is no part of the network's own weights
    assert not any(k.startswith("gombnet_refiner") for k in model.state_dict())
    assert json.loads((run / "config.json").read_text())["refiner"]["card"] == {"note": "test"}
    with pytest.raises(GombnetError, match="already has a refiner"):
        save_refiner(refiner, run)
    save_refiner(refiner, run, overwrite=True)
    (run / "model.refiner.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(GombnetError, match="cannot read weights"):
        load_model(run)

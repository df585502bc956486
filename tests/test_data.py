import h5py
import numpy as np
import pytest

from gombnet.data import read_dataset, split_labels, write_dataset
from gombnet.errors import GombnetError
from gombnet.simulation.presets import load_preset, preset_from_dict, tomllib


def test_layout(tiny_graphene):
    with h5py.File(tiny_graphene) as f:
        assert f["images"].shape == (12, 64, 64) and f["images"].dtype == np.float32
        assert f["masks"].shape == (12, 2, 64, 64) and f["masks"].dtype == np.uint8
        assert f["split"].shape == (12,)
        for k in ("image", "x_px", "y_px", "layer", "class"):
            assert f[f"atoms/{k}"].shape == f["atoms/image"].shape
        assert "pixel_size_angstrom" in f["params"] and "twist_deg" in f["params"]
        assert f.attrs["preset"] == "graphene" and f.attrs["n_layers"] == 2 and f.attrs["seed"] == 3
        stored = tomllib.loads(f.attrs["preset_toml"])  # the full preset travels with the data
    assert preset_from_dict(stored) == load_preset("graphene")
    ds = read_dataset(tiny_graphene)
    assert ds.class_names == ["C"] and ds.n_channels == 2
    assert np.bincount(ds.split, minlength=3).tolist() == [9, 2, 1]
    # both layers occur; every column lies in its image and its image's mask covers it
    assert set(np.unique(ds.columns["layer"]).tolist()) == {0, 1}
    assert sum(len(ds.columns_of(i)["x_px"]) > 0 for i in range(12)) >= 9
    for i in range(12):
        cols = ds.columns_of(i)
        if len(cols["x_px"]) == 0:  # a hole or layer edge can empty a tiny field of view
            continue
        assert cols["x_px"].min() > -1 and cols["x_px"].max() < 64
        r, c = np.round(cols["y_px"]).astype(int), np.round(cols["x_px"]).astype(int)
        inside = (r >= 0) & (r < 64) & (c >= 0) & (c < 64)
        channel = cols["layer"][inside] * 1 + cols["class"][inside]
        assert ds.masks[i][channel, r[inside], c[inside]].all()


def test_same_content_whatever_the_worker_count(tmp_path, tiny_wsse):
    a = write_dataset(tmp_path / "a.h5", "ws2-wsse", 8, seed=5, workers=2, image_size_px=64)
    with h5py.File(a) as fa, h5py.File(tiny_wsse) as fb:
        for key in ("images", "masks", "split", "atoms/x_px", "atoms/class", "params/twist_deg"):
            np.testing.assert_array_equal(fa[key][()], fb[key][()])


def test_different_seeds_differ(tmp_path):
    a = read_dataset(write_dataset(tmp_path / "a.h5", "graphene", 2, seed=0, workers=1, image_size_px=48))
    b = read_dataset(write_dataset(tmp_path / "b.h5", "graphene", 2, seed=1, workers=1, image_size_px=48))
    assert not np.array_equal(a.images, b.images)


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "d.h5"
    write_dataset(path, "graphene", 1, workers=1, image_size_px=48)
    before = path.read_bytes()
    with pytest.raises(GombnetError, match="--overwrite"):
        write_dataset(path, "graphene", 1, seed=9, workers=1, image_size_px=48)
    assert path.read_bytes() == before
    write_dataset(path, "graphene", 1, seed=9, workers=1, image_size_px=48, overwrite=True)
    assert path.read_bytes() != before


def test_interrupted_write_leaves_nothing(tmp_path):
    def interrupt(done):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "d.h5", "graphene", 4, workers=1, image_size_px=48, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "> 0"),
    (dict(n=-3), "> 0"),
    (dict(n=2, seed=-1), "seed"),
    (dict(n=2, workers=0), "workers"),
    (dict(n=2, image_size_px=8), "image size"),
    (dict(n=2, split_fractions=(0.5, 0.5, 0.5)), "split fractions"),
])
def test_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(GombnetError, match=message):
        write_dataset(tmp_path / "d.h5", "graphene", **kwargs)
    assert not (tmp_path / "d.h5").exists()


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GombnetError, match="cannot create folder"):
        write_dataset(blocker / "sub" / "d.h5", "graphene", 1, workers=1)


def test_read_errors(tmp_path):
    with pytest.raises(GombnetError, match="no such dataset"):
        read_dataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(GombnetError, match="not an HDF5"):
        read_dataset(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images"] = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(GombnetError, match="missing masks"):
        read_dataset(tmp_path / "other.h5")


def test_split_labels():
    labels = split_labels(100, (0.7, 0.2, 0.1), np.random.default_rng(0))
    assert np.bincount(labels).tolist() == [70, 20, 10]
    again = split_labels(100, (0.7, 0.2, 0.1), np.random.default_rng(0))
    np.testing.assert_array_equal(labels, again)

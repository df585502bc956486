"""Shared fixtures: tiny simulated datasets, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of the real experimental images (../shared/real); skips when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip("../shared/real is not available")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_graphene(tmp_path_factory) -> Path:
    """12 graphene images of 64x64 px (split 70/20/10 -> 9/2/1)."""
    from gombnet.data import write_dataset

    path = tmp_path_factory.mktemp("data") / "graphene.h5"
    return write_dataset(path, "graphene", 12, seed=3, workers=1, image_size_px=64)


@pytest.fixture(scope="session")
def tiny_wsse(tmp_path_factory) -> Path:
    """8 WS2-WSSe images of 64x64 px."""
    from gombnet.data import write_dataset

    path = tmp_path_factory.mktemp("data") / "wsse.h5"
    return write_dataset(path, "ws2-wsse", 8, seed=5, workers=1, image_size_px=64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_graphene) -> Path:
    """A tiny graphene model trained for one epoch (a run folder)."""
    from gombnet.nn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "graphene"
    train(tiny_graphene, out, TrainConfig(epochs=1, filters=(4, 8), batch_size=3, device="cpu"))
    return out

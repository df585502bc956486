"""The preset preview PNG (gombnet.report.preview; kept here with the simulation tests)."""

from __future__ import annotations

import pytest

from gombnet.errors import GombnetError
from gombnet.report.preview import save_preview

SMALL = """
name = "tiny-wsse"
description = "64 px test preset"
image_size_px = 64
class_names = ["W", "S2", "SSe"]
[structure]
materials = ["WS2", "WS2"]
[substitution]
host = "S"
dopant = "Se"
"""


def test_save_preview(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "sub" / "preview.png"
    assert save_preview(preset, out, n_samples=2, seed=1) == out
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(GombnetError, match="exists"):
        save_preview(preset, out, n_samples=1)
    save_preview(preset, out, n_samples=1, overwrite=True)
    assert out.read_bytes() != data
    assert [p.name for p in out.parent.iterdir()] == ["preview.png"]  # no temporary files left


def test_save_preview_errors(tmp_path):
    with pytest.raises(GombnetError, match="n_samples"):
        save_preview("graphene", tmp_path / "x.png", n_samples=0)
    with pytest.raises(GombnetError, match="unknown preset"):
        save_preview("nope", tmp_path / "x.png")

"""Watching a folder: each image handed over once, only after it stopped growing."""

import numpy as np
import pytest

from gombnet.errors import GombnetError
from gombnet.inference.watch import image_files, new_images


class FakeTime:
    """A clock that advances only when slept; ``actions[k]`` runs during the k-th sleep."""

    def __init__(self, actions=()):
        self.now = 0.0
        self.actions = list(actions)
        self.sleeps = 0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        if self.sleeps < len(self.actions):
            self.actions[self.sleeps]()
        self.sleeps += 1
        self.now += seconds


def test_image_files_lists_only_images(tmp_path):
    for name in ("b.dm4", "a.EMD", "notes.txt", ".hidden.dm4", "~lock.tif", "c.npy"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.dm4").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["a.EMD", "b.dm4", "c.npy"]


def test_a_growing_file_waits_until_it_stops(tmp_path):
    growing = tmp_path / "scan.dm4"

    def write(n):
        def action():
            with open(growing, "ab") as fh:
                fh.write(b"x" * n)
        return action

    # written during the first three polls, then left alone
    fake = FakeTime([write(10), write(10), write(10)])
    seen = []
    for path in new_images(tmp_path, interval_s=1.0, idle_exit_s=5.0, sleep=fake.sleep, clock=fake.clock):
        seen.append((path.name, path.stat().st_size, fake.sleeps))
    # first seen complete after the 3rd sleep, confirmed unchanged at the next look
    assert seen == [("scan.dm4", 30, 4)]


def test_each_file_once_done_ones_skipped_changed_ones_again(tmp_path):
    (tmp_path / "old.npy").write_bytes(b"o" * 8)
    (tmp_path / "first.npy").write_bytes(b"f" * 8)
    (tmp_path / "empty.npy").write_bytes(b"")

    def add_second():
        (tmp_path / "second.tif").write_bytes(b"s" * 8)

    def rewrite_first():
        (tmp_path / "first.npy").write_bytes(b"f" * 16)

    asked = []

    def is_done(path):
        asked.append(path.name)
        return path.name == "old.npy"

    fake = FakeTime([lambda: None, add_second, lambda: None, rewrite_first])
    names = [p.name for p in new_images(tmp_path, interval_s=0.5, idle_exit_s=3.0, is_done=is_done,
                                        sleep=fake.sleep, clock=fake.clock)]
    assert names == ["first.npy", "second.tif", "first.npy"]
    assert asked.count("old.npy") == 1  # asked once, not at every look
    assert fake.now >= 3.0  # stopped by the idle time, not earlier


@pytest.mark.parametrize("kwargs, words", [
    ({"interval_s": 0}, "poll interval"),
    ({"interval_s": float("nan")}, "poll interval"),
    ({"idle_exit_s": -1}, "idle time"),
])
def test_bad_parameters(tmp_path, kwargs, words):
    with pytest.raises(GombnetError, match=words):
        new_images(tmp_path, **kwargs)  # checked at the call, before any file


def test_missing_folder(tmp_path):
    with pytest.raises(GombnetError, match="no such folder"):
        new_images(tmp_path / "nowhere")


def test_predict_watch_command(tmp_path, tiny_run, real_data):
    from typer.testing import CliRunner

    from gombnet.cli import app

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with np.load(real_data / "twisted_bilayer_graphene.npz") as z:
        image = z["im_array"][:128, :128].astype(np.float32)
    np.save(incoming / "a.npy", image)
    np.save(incoming / "b.npy", image[::-1])
    (incoming / "broken.dm4").write_bytes(b"\x00" * 500)
    out = tmp_path / "results"
    args = ["predict", "--watch", str(incoming), "--model", str(tiny_run), "--out", str(out),
            "--pixel-size", "0.1062", "--interval", "0.05", "--idle-exit", "0.3"]

    # a folder given as a file stands for the images in it
    result = CliRunner().invoke(app, ["predict", str(incoming), "--model", str(tiny_run), "--out",
                                      str(tmp_path / "batch"), "--pixel-size", "0.1062"])
    assert result.exit_code == 2 and "1 of 3 failed" in result.output and "broken.dm4" in result.output
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["a", "b"]
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "empty"), "--model", str(tiny_run)])
    assert result.exit_code == 2 and "folder without microscope images" in result.output

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # the broken file is reported, the others are done
    assert "broken.dm4" in result.output and "2 new result(s), 1 failed" in result.output
    assert "Traceback" not in result.output
    for name in ("a", "b"):
        assert (out / name / "atoms.csv").is_file()
    before = (out / "a" / "atoms.csv").read_bytes()

    # run again: the two finished files are skipped, nothing is overwritten
    (incoming / "broken.dm4").unlink()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "0 new result(s)" in result.output
    assert (out / "a" / "atoms.csv").read_bytes() == before


@pytest.mark.parametrize("extra, words", [
    ([], "give image files or --watch"),
    (["x.npy", "--watch", "."], "not both"),
    (["--watch", "nowhere"], "no such folder"),
    (["--watch", ".", "--interval", "0"], "poll interval"),
])
def test_predict_watch_bad_input(tmp_path, tiny_run, extra, words, monkeypatch):
    from typer.testing import CliRunner

    from gombnet.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_run), *extra])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("error:") and words in result.output
    assert "Traceback" not in result.output

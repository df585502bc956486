import os
import stat

import pytest

from gombnet.atomic import atomic_dir, atomic_path, write_text_atomic
from gombnet.errors import GombnetError


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f.txt").write_text("y")
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "folder") == 0o755
    assert (tmp_path / "folder" / "f.txt").read_text() == "y"


def test_failed_writes_leave_nothing_and_keep_the_old_result(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "res") as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "res", overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["old.txt"]
    with pytest.raises(GombnetError, match="--overwrite"):
        with atomic_dir(tmp_path / "res"):
            pass

"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted write (exception, Ctrl-C) removes the temporary file, so the target is
either absent, the old version, or complete - never half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import GombnetError


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path after checking it can be written.

    Raises
    ------
    GombnetError
        If the file exists and ``overwrite`` is False, or its folder cannot be created
        or written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise GombnetError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise GombnetError(f"{path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GombnetError(f"cannot create folder {path.parent}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise GombnetError(f"cannot write to folder {path.parent}")
    return path


def _chmod_as_new(path: Path, mode: int) -> None:
    """Give ``path`` the permissions a plain ``open``/``mkdir`` would: ``mode`` less the umask."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``.

    Parameters
    ----------
    path : path-like
        Final destination.
    overwrite : bool
        Replace an existing file. Otherwise an existing file raises GombnetError.
    """
    path = check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.exists() and not overwrite:  # created by someone else meanwhile
            raise GombnetError(f"{path} exists; pass --overwrite to replace it")
        # mkstemp makes the file private (0600), and some writers recreate it: give the
        # result the usual permissions of a new file
        _chmod_as_new(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` raises GombnetError unless ``overwrite``; then it is replaced only
    once the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise GombnetError(f"{path} exists; pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    except OSError as exc:
        raise GombnetError(f"cannot write to folder {path.parent}: {exc.strerror}") from None
    try:
        yield tmp
        _chmod_as_new(tmp, 0o777)  # mkdtemp makes the folder private (0700)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

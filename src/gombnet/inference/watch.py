"""Watch a folder during an experiment and hand over each new image once it is completely written.

Microscope software writes a file over seconds (a Velox ``.emd`` or a DigitalMicrograph ``.dm4`` grows
while it is saved), so a file counts as ready only when its size and modification time did not change
between two looks at the folder, one poll interval apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import GombnetError
from .io import SUPPORTED_EXTENSIONS


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The readable microscope images in ``folder`` (not its subfolders), sorted by name.

    Hidden files and the temporary files of editors and copy tools (names starting with ``.`` or ``~``)
    are left out.
    """
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS and p.name[0] not in ".~")


def new_images(folder: str | os.PathLike, *, interval_s: float = 1.0, idle_exit_s: float | None = None,
               is_done: Callable[[Path], bool] = lambda path: False,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[Path]:
    """Yield every image file that appears in ``folder``, once, after it has stopped changing.

    Parameters
    ----------
    folder : path
        Folder to watch (an existing directory).
    interval_s : float
        Seconds between two looks at the folder [s]; a file is ready when it was the same size and
        age at two consecutive looks.
    idle_exit_s : float, optional
        Stop after this many seconds [s] without a new ready file; by default watch until interrupted.
    is_done : callable, optional
        ``is_done(path)`` True for files found already processed (their results exist); they are
        skipped. Asked once per file, unless the file changes later.
    sleep, clock : callable, optional
        Waiting and time functions (replaceable in tests).

    Returns
    -------
    iterator of pathlib.Path
        Each ready file, in order of arrival. A file written again later (new size or time) comes
        again. The arguments are checked at the call, before the first look.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GombnetError(f"{folder}: no such folder to watch")
    if not interval_s > 0:
        raise GombnetError(f"the poll interval must be > 0 s, got {interval_s}")
    if idle_exit_s is not None and not idle_exit_s >= 0:
        raise GombnetError(f"the idle time before stopping must be >= 0 s, got {idle_exit_s}")
    return _poll(folder, interval_s, idle_exit_s, is_done, sleep, clock)  # checked now, not at the first file


def _poll(folder: Path, interval_s, idle_exit_s, is_done, sleep, clock) -> Iterator[Path]:
    handled: dict[Path, tuple[int, int]] = {}  # file -> its (size, mtime) when handed over or skipped
    previous: dict[Path, tuple[int, int]] = {}  # file -> its (size, mtime) at the last look
    last_new = clock()
    while True:
        current = {}
        for path in image_files(folder):
            try:
                stat = path.stat()
            except FileNotFoundError:  # moved or deleted between listing and looking
                continue
            current[path] = (stat.st_size, stat.st_mtime_ns)
        for path, signature in current.items():
            if handled.get(path) == signature:
                continue
            if path not in handled and is_done(path):
                handled[path] = signature
                continue
            # unchanged since the last look and not empty: the writer has finished
            if previous.get(path) == signature and signature[0] > 0:
                handled[path] = signature
                last_new = clock()
                yield path
        previous = current
        if idle_exit_s is not None and clock() - last_new >= idle_exit_s:
            return
        sleep(interval_s)

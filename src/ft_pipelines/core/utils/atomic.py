"""The one way this project writes a file that must never be seen half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o644  # rw-r--r--, what Kedro's own datasets create (mkstemp alone gives 0600)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Create or replace ``path`` all at once: ``write(tmp)`` fills a temporary file in the same
    folder, which is flushed to disk (fsync) and renamed over ``path`` (``os.replace``, atomic on
    POSIX). If anything fails, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise

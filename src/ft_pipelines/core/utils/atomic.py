"""The one way this project writes a file (or a folder of files) that must never be seen
half-written."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o644  # rw-r--r--, what Kedro's own datasets create (mkstemp alone gives 0600)
DIR_MODE = 0o755


def _fsync_tree(path: Path) -> None:
    """Flush ``path`` (a file, or every file in a folder) to disk and give it the usual modes."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if path.is_dir():
        os.chmod(path, DIR_MODE)
    for file in files:
        os.chmod(file, FILE_MODE)
        with open(file, "rb") as written:
            os.fsync(written.fileno())


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Create or replace ``path`` all at once.

    ``write(tmp)`` creates ``tmp`` (a file, or a folder of files): a hidden, unused name next to
    ``path`` (``.<name>.<random>.tmp``, which matches no Kedro version pattern nor ``*.<ext>``).
    It is flushed to disk (fsync) and renamed onto ``path`` (``os.replace``, atomic on POSIX; a
    folder only onto a missing path). If anything fails, the temporary is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write(str(tmp))
        if not tmp.exists():
            raise FileNotFoundError(f"The writer for {path} created nothing at {tmp}")
        _fsync_tree(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise

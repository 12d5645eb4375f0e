"""What every versioned dataset of this project adds to Kedro's versioning: errors that say which
versions exist, and the cleanup of what a killed save left behind.

- A version pinned with ``--load-versions`` that is not stored: the error lists the stored
  versions and the ``--load-versions`` that would work (Kedro's says the file is missing, and
  the dataset's own fix, "run the stage", would make a new version, not the pinned one).
- No version stored at all: the error says what writes the first one (``first_version_fix``).
- Hidden temporaries (``.<name>.<random>.tmp``, or an ONNX export's ``.<name>.<random>``) that a
  killed save left in a version folder are removed by the next save of the dataset once they
  are older than ``STALE_AFTER_S`` (a concurrent run may be writing a younger one right now),
  with the version folder when that leaves it empty.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath

from kedro.io.core import DatasetError, VersionNotFoundError

logger = logging.getLogger(__name__)

STALE_AFTER_S = 6 * 3600  # no save takes this long; a younger temporary may be in use
LISTED_VERSIONS = 10


class VersionedPathsMixin:
    """Put before ``AbstractVersionedDataset`` (or a kedro-datasets class) in the bases."""

    #: what writes the first version (said when none is stored)
    first_version_fix = "run the pipeline that writes it (`kedro run`)"

    def stored_versions(self) -> list[str]:
        """Versions stored on disk, oldest first."""
        try:
            paths = self._get_versions()  # type: ignore[attr-defined]
        except VersionNotFoundError:
            return []
        return sorted(PurePosixPath(p).parent.name for p in paths)

    def _get_load_path(self) -> PurePosixPath:
        try:
            path = super()._get_load_path()  # type: ignore[misc]
        except VersionNotFoundError as error:
            raise VersionNotFoundError(
                f"No version of {self._filepath} is stored yet: "  # type: ignore[attr-defined]
                f"{self.first_version_fix}.") from error
        version = getattr(self, "_version", None)
        if version and version.load and not self._exists_function(str(path)):  # type: ignore
            raise DatasetError(self._missing_pin_message(version.load, path))
        return path

    def _missing_pin_message(self, pinned: str, path: PurePosixPath) -> str:
        stored = self.stored_versions()
        listing = ", ".join(stored[-LISTED_VERSIONS:]) if stored else "none"
        if len(stored) > LISTED_VERSIONS:
            listing = f"... ({len(stored) - LISTED_VERSIONS} older), {listing}"
        fix = (f"pin one of them, e.g. --load-versions=<dataset>:{stored[-1]}, or leave this "
               "dataset out of --load-versions to load the newest" if stored
               else self.first_version_fix)
        return (f"Version {pinned!r} of {self._filepath.name} (pinned with --load-versions) is "  # type: ignore[attr-defined]
                f"not stored: no {path}. Stored versions, oldest first: {listing}. Fix: {fix}.")

    def _remove_stale_temporaries(self) -> None:
        if getattr(self, "_protocol", "file") != "file" or not getattr(self, "_version", None):
            return
        remove_stale_temporaries(Path(str(self._filepath)))  # type: ignore[attr-defined]


def remove_stale_temporaries(dataset_path: Path, stale_after_s: float = STALE_AFTER_S) -> int:
    """Delete hidden entries older than ``stale_after_s`` in the version folders of the
    versioned dataset at ``dataset_path`` (and version folders left empty); returns how many."""
    if not dataset_path.is_dir():
        return 0
    cutoff, removed = time.time() - stale_after_s, []
    for folder in dataset_path.iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        stale = [e for e in folder.iterdir() if e.name.startswith(".") and e.is_file()
                 and e.stat().st_mtime < cutoff]
        for entry in stale:
            entry.unlink(missing_ok=True)
            removed.append(f"{folder.name}/{entry.name}")
        if stale and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:  # a concurrent save wrote into it meanwhile
                pass
    if removed:
        logger.info("Removed %d temporary files that killed saves left under %s: %s",
                    len(removed), dataset_path, ", ".join(removed[:LISTED_VERSIONS]))
    return len(removed)

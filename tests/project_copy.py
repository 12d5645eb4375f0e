"""A throw-away copy of the project for tests that run Kedro: configuration only (the code is the
installed package), an empty conf/local, so nothing touches the real data/ folder."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(destination: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copy(ROOT / ".telemetry", destination / ".telemetry")
    shutil.copytree(ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    (destination / "src").mkdir()  # kedro checks it exists
    return destination

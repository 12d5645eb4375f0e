"""Entry point so the project runs as ``python -m ft_pipelines``."""

import atexit
import gc
import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs) -> None:
    # the process ends with the run: its last garbage collection would walk every object torch
    # made (~1 s per process, per rank under torchrun); they are left to the exit instead
    atexit.register(gc.freeze)
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()

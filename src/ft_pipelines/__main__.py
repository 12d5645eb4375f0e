"""Entry point so the project runs as ``python -m ft_pipelines``."""

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

from ft_pipelines.core.utils import leave_objects_to_exit


def main(*args, **kwargs) -> None:
    leave_objects_to_exit()  # the process ends with the run (under torchrun: each rank)
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()

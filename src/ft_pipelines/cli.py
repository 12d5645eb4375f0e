"""Project commands (Kedro loads ``<package>.cli`` and lets its commands replace the built-in
ones): Kedro's own ``kedro run``, except that a malformed ``--load-versions`` is reported as
click reports a bad option (Kedro's error prints ``NoneType: None`` instead of its message)."""

from __future__ import annotations

import copy
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import KedroCliError, _split_load_versions

EXAMPLE = "--load-versions=finetuned_model:2026-01-01T00.00.00.000Z"


def split_load_versions(ctx: click.Context, param: click.Parameter, value: str
                        ) -> dict[str, str]:
    """Kedro's parsing of ``dataset:version[,dataset:version]``, its error as a click one."""
    try:
        return _split_load_versions(ctx, param, value)
    except KedroCliError as error:
        raise click.BadParameter(
            f"{error.message}. Give dataset:version pairs separated by commas, e.g. {EXAMPLE}; "
            "a dataset's versions are the folder names under its path in data/ "
            "(`kedro catalog describe-datasets` lists the datasets).", ctx, param) from None


def _with_callback(command: click.Command, name: str, callback: Any) -> click.Command:
    changed = copy.copy(command)
    changed.params = [copy.copy(p) for p in command.params]
    for param in changed.params:
        if param.name == name:
            param.callback = callback
    return changed


@click.group(name="ft_pipelines")
def cli() -> None:
    """ft_pipelines project commands."""


run = _with_callback(kedro_run, "load_versions", split_load_versions)
cli.add_command(run, "run")

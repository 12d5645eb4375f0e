"""Kedro hook: the one validation of the parameters per session, then ``runtime.threads``.

Every other hook and every node reads the typed ``Parameters`` this hook made (``session``):
the configuration is checked once, when the session starts, and nothing runs with bad values.
"""

from __future__ import annotations

from typing import Any

import click
from kedro.framework.hooks import hook_impl

from ft_pipelines.core.utils.environment import apply_threads
from ft_pipelines.core.utils.runtime import resolve_device, resolve_precision
from ft_pipelines.params import ParameterError, Parameters, RuntimeParams, validate_parameters


class InvalidParameters(ParameterError, click.ClickException):
    """A ``ParameterError`` that ``kedro`` commands print as ``Error: <message>`` with exit code
    1, without a traceback (the traceback says nothing the message does not)."""

    def __init__(self, problems: list[str]) -> None:
        ParameterError.__init__(self, problems)
        click.ClickException.__init__(self, self.args[0])


class ParametersHook:
    """Raises ``InvalidParameters`` listing every problem; holds the validated ``Parameters``."""

    def __init__(self) -> None:
        self.parameters: Parameters | None = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        # The raw merged configuration (conf/<env> + --params), not ``context.params``: that
        # one also runs Kedro's per-node validation, whose errors are pydantic's raw text.
        try:
            parameters = validate_parameters(context.config_loader["parameters"])
        except ParameterError as error:
            raise InvalidParameters(error.problems) from None
        problem = machine_problem(parameters.runtime)
        if problem:
            raise InvalidParameters([problem])
        apply_threads(parameters.runtime.threads)
        self.parameters = parameters

    @hook_impl(tryfirst=True)
    def after_catalog_created(self, catalog: Any) -> None:
        """Nodes get the blocks of the validated object, the very values the session checked
        (cross-block checks included), not a copy Kedro rebuilt from the raw configuration."""
        parameters = self.validated()
        for name in type(parameters).model_fields:
            if f"params:{name}" in catalog:
                catalog[f"params:{name}"] = getattr(parameters, name)

    def validated(self) -> Parameters:
        if self.parameters is None:
            raise RuntimeError("ParametersHook has not validated this session's parameters "
                               "yet: register it first in settings.HOOKS")
        return self.parameters

    def plain(self) -> dict[str, Any]:
        """Every key with its value, as plain JSON (lineage, MLflow)."""
        return self.validated().model_dump(mode="json")


def machine_problem(runtime: RuntimeParams) -> str | None:
    """Whether this machine can run ``runtime.device`` / ``runtime.precision`` (CUDA asked for
    on a machine without it), checked at session start: the nodes would refuse it only after
    the stages before them had written their versions."""
    try:
        resolve_precision(runtime.precision, resolve_device(runtime.device))
    except ValueError as error:
        key = "runtime.precision" if str(error).startswith("runtime.precision") else \
            "runtime.device"
        return f"`{key}`: {error}"
    return None

"""Kedro hook: check the whole parameter configuration when a session starts, then apply
``runtime.threads`` (before any node, for every stage, whichever pipelines the run includes)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from ft_pipelines.params.environment import apply_threads
from ft_pipelines.params.validate import validate_parameters


class ParametersHook:
    """Raises ``ParameterError`` listing every problem; nothing runs with bad parameters."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        # The raw merged configuration (conf/<env> + --params), not ``context.params``: that
        # one also runs Kedro's per-node validation, whose errors are pydantic's raw text.
        parameters = validate_parameters(context.config_loader["parameters"])
        apply_threads(parameters.runtime.threads)

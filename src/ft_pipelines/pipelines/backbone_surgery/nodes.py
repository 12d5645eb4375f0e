"""Thin node: carry out the plan's surgery on a copy of the pretrained network."""

from __future__ import annotations

import copy

import pandas as pd
from torch import nn

from ft_pipelines.core.models import (
    apply_surgery,
    record_sources,
    record_training_data,
    surgery_summary,
)
from ft_pipelines.params import SurgeryParams


def perform_surgery(pretrained_model: nn.Module, pilot_model: nn.Module, finetune_plan: dict,
                    class_names: list[str], surgery: SurgeryParams
                    ) -> tuple[nn.Module, pd.DataFrame]:
    """The plan's surgery on a copy of the pretrained network; when the plan says
    ``start_from: pilot``, the pilot winner (already surgered and partly trained) as it is.
    The model records the classes and the plan it was made for: fine-tuning refuses it with
    another plan."""
    if finetune_plan["num_classes"] != len(class_names):
        raise ValueError(
            f"finetune_plan is for {finetune_plan['num_classes']} classes but class_names has "
            f"{len(class_names)}: the plan was made for other data. Re-run strategy_selection "
            "on the current images (or pin matching versions with --load-versions).")
    if finetune_plan.get("start_from") == "pilot":
        model = copy.deepcopy(pilot_model)
    else:
        model = apply_surgery(copy.deepcopy(pretrained_model), len(class_names),
                              finetune_plan["trainable_blocks"], finetune_plan["drop_last_blocks"],
                              finetune_plan["reinitialize"], surgery.seed)
    record_training_data(model, class_names=class_names)  # the head is for these classes
    record_sources(model, finetune_plan=finetune_plan)
    return model, surgery_summary(model)

"""The finetune node trains with the plan's recipe (the user's finetune.* already won there)."""

from types import SimpleNamespace

import pandas as pd

from ft_pipelines.params import FinetuneParams, RuntimeParams
from ft_pipelines.pipelines.regularized_finetuning import nodes


def test_finetune_node_applies_the_plans_recipe(monkeypatch):
    seen = {}

    def fake_finetune_model(model, splits, plan, settings, *args):
        seen.update(settings)
        return model, pd.DataFrame({"val_acc": [0.5]})

    monkeypatch.setattr(nodes, "split_image_data", lambda *a: {})
    monkeypatch.setattr(nodes, "finetune_model", fake_finetune_model)
    monkeypatch.setattr(nodes, "record_training_data", lambda model, images: model)
    monkeypatch.setattr(nodes, "learning_curves", lambda history: None)
    model = SimpleNamespace(backbone_cfg=SimpleNamespace(input_size=32))
    plan = {"recipe": {"class_balance": {"value": "weights", "source": "plan", "reason": "r"},
                       "mixup": {"value": 0.2, "source": "plan", "reason": "r"},
                       "lr_find": {"value": False, "source": "plan", "reason": "lr_find off"}}}
    _, _, _, lr_plot = nodes.finetune(model, pd.DataFrame(), plan, pd.DataFrame(),
                                      FinetuneParams(resume=False), None, RuntimeParams())
    assert seen["class_balance"] == "weights" and seen["augment"]["mixup"] == 0.2
    assert "lr_find off" in lr_plot.axes[0].texts[0].get_text()

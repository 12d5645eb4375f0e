"""The parameter schemas: every misspelt key, out-of-range value and bad combination is
reported with its full dotted key; defaults and dumps are what core received before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ft_pipelines.params import (
    FinetuneParams,
    ParameterError,
    Parameters,
    StrategyParams,
    validate_parameters,
)


def problems(raw: dict) -> list[str]:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(raw)
    assert str(caught.value).count("\n  - ") == len(caught.value.problems)
    return caught.value.problems


@pytest.mark.parametrize(("raw", "expected"), [
    ({"finetune": {"batchsize": 32}},
     "`finetune.batchsize`: unknown key; did you mean `finetune.batch_size`?"),
    ({"pruning": {"ratoi": 0.5}}, "`pruning.ratoi`: unknown key; did you mean `pruning.ratio`?"),
    ({"ingestion": {"max_per_clas": 3}},
     "`ingestion.max_per_clas`: unknown key; did you mean `ingestion.max_per_class`?"),
    ({"finetune": {"augment": {"horizontl_flip": True}}},
     "did you mean `finetune.augment.horizontal_flip`?"),
    ({"strategy": {"partial": {"min_block": 2}}}, "did you mean `strategy.partial.min_blocks`?"),
    ({"finetun": {}}, "`finetun`: unknown key; did you mean `finetune`?"),
])
def test_a_misspelt_key_is_named_in_full_with_the_key_meant(raw, expected):
    assert any(expected in p for p in problems(raw))


def test_an_unknown_key_with_no_near_match_lists_the_keys_allowed():
    (problem,) = problems({"surgery": {"colour": "red"}})
    assert problem == "`surgery.colour`: unknown key; `surgery` takes: seed"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"finetune": {"lr_new": -1}}, "`finetune.lr_new`: must be > 0, got -1"),
    ({"finetune": {"lr_pretrained": 0}}, "`finetune.lr_pretrained`: must be > 0, got 0"),
    ({"pruning": {"lr": -0.1}}, "`pruning.lr`: must be > 0, got -0.1"),
    ({"importance": {"gate_lr": 0}}, "`importance.gate_lr`: must be > 0, got 0"),
    ({"strategy": {"training": {"head_only": {"lr_new": -1}}}},
     "`strategy.training.head_only.lr_new`: must be > 0, got -1"),
    ({"finetune": {"epochs": 0}}, "`finetune.epochs`: must be >= 1, got 0"),
    ({"strategy": {"training": {"from_scratch": {"epochs": 0}}}},
     "`strategy.training.from_scratch.epochs`: must be >= 1, got 0"),
    ({"pruning": {"finetune_epochs": 0}}, "`pruning.finetune_epochs`: must be >= 1, got 0"),
    ({"importance": {"gate_epochs": 0}}, "`importance.gate_epochs`: must be >= 1, got 0"),
    ({"finetune": {"batch_size": 0}}, "`finetune.batch_size`: must be >= 1, got 0"),
    ({"similarity": {"batch_size": -4}}, "`similarity.batch_size`: must be >= 1, got -4"),
    ({"pruning": {"ratio": 1.5}}, "`pruning.ratio`: must be < 1, got 1.5"),
    ({"pruning": {"ratio": 0}}, "`pruning.ratio`: must be > 0, got 0"),
    ({"finetune": {"momentum": 1.0}}, "`finetune.momentum`: must be < 1, got 1.0"),
    ({"finetune": {"label_smoothing": -0.1}}, "`finetune.label_smoothing`: must be >= 0"),
    ({"ingestion": {"splits": {"val": 1.2}}}, "`ingestion.splits.val`: must be <= 1, got 1.2"),
    ({"ingestion": {"min_per_class": 0}}, "`ingestion.min_per_class`: must be >= 1, got 0"),
    ({"runtime": {"threads": 0}}, "`runtime.threads`: must be >= 1, got 0"),
    ({"runtime": {"distributed": {"processes": 0}}},
     "`runtime.distributed.processes`: must be >= 1, got 0"),
    ({"finetune": {"batch_size": "many"}}, "`finetune.batch_size`: must be a valid integer"),
])
def test_a_value_out_of_range_is_named_in_full_with_the_limit(raw, expected):
    assert any(p.startswith(expected) for p in problems(raw)), problems(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"ingestion": {"source": "csv"}},
     "`ingestion.source`: must be one of 'sklearn_digits', 'lfw_faces', 'image_folder' or "
     "'parquet', got 'csv'"),
    ({"strategy": {"override": "full"}}, "'auto', 'head_only', 'partial_finetune', "
                                         "'full_finetune' or 'from_scratch', got 'full'"),
    ({"finetune": {"optimizer": "adam"}}, "must be one of 'sgd' or 'adamw', got 'adam'"),
    ({"finetune": {"schedule": "linear"}}, "'cosine', 'step' or 'constant'"),
    ({"pruning": {"importance": "l2"}}, "'taylor_gate', 'l1' or 'random'"),
    ({"pruning": {"target": "flops"}},
     "`pruning.target`: must be one of 'channels', 'macs' or 'latency'"),
    ({"ingestion": {"on_bad_image": "ignore"}}, "'error' or 'skip', got 'ignore'"),
    ({"ingestion": {"on_duplicate": "keep"}}, "'error' or 'skip', got 'keep'"),
    ({"backbone": {"source": "hub"}},
     "'bundled', 'torchvision', 'timm', 'file', 'none' or 'artifact'"),
    ({"runtime": {"precision": "fp8"}}, "`runtime.precision`: must be one of 'auto', 'fp32', "
                                        "'bf16' or 'fp16', got 'fp8'"),
    ({"runtime": {"device": "gpu"}}, "`runtime.device`: must be auto, cpu, cuda or cuda:N"),
    ({"runtime": {"device": "cuda:x"}}, "`runtime.device`: must be auto, cpu, cuda or cuda:N"),
    ({"finetune": {"device": "cpu"}}, "`finetune.device`: unknown key"),
    ({"finetune": {"regularizer": {"name": "l3"}}},  # the registry's order
     "`finetune.regularizer.name`: must be one of 'none', 'delta', 'l2' or 'l2_sp'"),
    ({"strategy": {"partial": {"trainable_blocks": "most"}}},
     "`strategy.partial.trainable_blocks`: must be auto or an integer >= 1, got 'most'"),
])
def test_an_enum_names_its_allowed_values(raw, expected):
    assert any(expected in p for p in problems(raw)), problems(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"ingestion": {"splits": {"train": 0.8, "val": 0.15, "test": 0.15}}},
     "`ingestion.splits.test`: the splits must sum to 1, got train 0.8 + val 0.15 + test 0.15"),
    ({"ingestion": {"splits": {"train": 0, "val": 0.5, "test": 0.5}}},
     "`ingestion.splits.train`: must be > 0"),
    ({"ingestion": {"max_per_class": 3}},
     "`ingestion.max_per_class`: must be >= ingestion.min_per_class (5) or null, got 3"),
    ({"ingestion": {"source": "image_folder"}}, "`ingestion.path`: required when"),
    ({"backbone": {"source": "file"}}, "`backbone.path`: required when backbone.source is file"),
    ({"strategy": {"partial": {"min_blocks": 6}}},
     "`strategy.partial.max_blocks`: must be >= strategy.partial.min_blocks (6), got 5"),
    ({"finetune": {"regularizer": {"name": "l2", "alpha": 0.1}}},
     "`finetune.regularizer.alpha`: does not apply to regulariser l2 (it takes: beta)"),
    ({"finetune": {"augment": {"random_resized_crop": {"scale": [0.9, 0.5]}}}},
     "`finetune.augment.random_resized_crop.scale`: must be [low, high]"),
    ({"ingestion": 3}, "`ingestion`: must be a mapping of keys, got 3"),
])
def test_a_bad_combination_is_named_in_full(raw, expected):
    assert any(p.startswith(expected) for p in problems(raw)), problems(raw)


def test_every_problem_is_reported_at_once():
    found = problems({"finetune": {"batchsize": 32, "lr_new": -1, "epochs": 0},
                      "pruning": {"ratio": 2, "target": "flops"}, "extra": {}})
    keys = sorted(p.split("`")[1] for p in found)
    assert keys == ["extra", "finetune.batchsize", "finetune.epochs", "finetune.lr_new",
                    "pruning.ratio", "pruning.target"]


def test_the_error_carries_no_pydantic_internals():
    with pytest.raises(ParameterError) as caught:
        validate_parameters({"finetune": {"lr_new": -1}})
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "errors.pydantic.dev" not in str(caught.value)
    assert "[type=" not in str(caught.value)


def test_good_values_pass_and_are_coerced():
    params = validate_parameters({"finetune": {"batch_size": "32"},
                                  "runtime": {"threads": 4, "device": "cuda:0"},
                                  "strategy": {"partial": {"trainable_blocks": 2}}})
    assert params.finetune.batch_size == 32
    assert params.runtime.threads == 4
    assert params.strategy.partial.trainable_blocks == 2


def test_blocks_are_immutable():
    with pytest.raises(ValidationError):
        Parameters().finetune.batch_size = 8  # type: ignore[misc]


def test_an_unset_override_is_absent_so_the_plan_decides():
    dumped = FinetuneParams().model_dump()
    assert not {"epochs", "lr_pretrained", "lr_new"} & set(dumped)
    assert dumped["regularizer"] == {}  # core merges it over the plan's regulariser
    given = FinetuneParams(epochs=3, regularizer={"name": "delta", "alpha": 0.02}).model_dump()
    assert given["epochs"] == 3
    assert given["regularizer"] == {"name": "delta", "alpha": 0.02}


def test_the_plans_regularizers_dump_as_written_in_the_yaml():
    training = StrategyParams().model_dump()["training"]
    assert training["head_only"]["regularizer"] == {"name": "l2", "beta": 0.0001}
    assert training["full_finetune"]["regularizer"] == {"name": "l2_sp", "alpha": 0.1,
                                                        "beta": 0.01}


def test_a_strategy_given_in_part_keeps_its_other_defaults():
    params = StrategyParams.model_validate({"training": {"head_only": {"epochs": 2}}})
    assert params.training.head_only.epochs == 2
    assert params.training.head_only.lr_new == 0.05
    assert params.training.head_only.regularizer.name == "l2"

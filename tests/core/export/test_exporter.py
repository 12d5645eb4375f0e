import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from ft_pipelines.core.export.artifact import OnnxModel
from ft_pipelines.core.export.exporter import describe_source, export_classifier, export_onnx
from ft_pipelines.core.export.runtime import OnnxRunner
from ft_pipelines.core.export.verify import ExportMismatchError, torch_logits, verify_export
from ft_pipelines.core.models import replace_head
from ft_pipelines.core.models.artifact import model_to_bytes
from tests.core.export.conftest import CLASSES, MEAN, SIZE, STD, tiny_net


def test_round_trip_matches_pytorch_at_any_batch(tiny_model, tiny_onnx, tiny_data):
    runner = OnnxRunner(tiny_onnx)
    for count in (1, 5, 24):
        images = tiny_data.images[:count]
        expected = torch_logits(tiny_model, images, MEAN, STD)
        np.testing.assert_allclose(runner.logits(images.numpy(), batch_size=16), expected,
                                   atol=1e-4, rtol=0)


def test_graph_names_opset_and_dynamic_batch(tiny_onnx):
    proto = onnx.load_from_string(tiny_onnx.model_bytes)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_sidecar_carries_classes_normalisation_and_hash(tiny_onnx):
    sidecar = json.loads(json.dumps(tiny_onnx.sidecar))  # plain JSON types only
    assert sidecar["class_names"] == CLASSES
    assert sidecar["input"]["mean"] == MEAN and sidecar["input"]["std"] == STD
    assert sidecar["input_size"] == SIZE and sidecar["input"]["layout"] == "NCHW"
    assert sidecar["input"]["name"] == "input" and sidecar["output"]["name"] == "logits"
    assert sidecar["precision"] == "fp32" and sidecar["opset"] >= 17
    assert sidecar["source_model"] == {"note": "tiny test net"}
    with pytest.raises(ValueError, match="does not match the ONNX bytes"):
        OnnxModel(tiny_onnx.model_bytes[:-10], tiny_onnx.sidecar)


def test_refuses_wrong_class_count_and_old_opset(tiny_model):
    with pytest.raises(ValueError, match="3 outputs but class_names has 2"):
        export_onnx(tiny_model, ["a", "b"], SIZE, MEAN, STD)
    with pytest.raises(ValueError, match="export.opset=13"):
        export_onnx(tiny_model, CLASSES, SIZE, MEAN, STD, opset=13)


def test_verification_passes_for_the_same_model(tiny_model, tiny_onnx, tiny_data):
    result = verify_export(tiny_model, tiny_onnx, tiny_data, 0.005,
                           providers=["CPUExecutionProvider"])
    check = result["providers"]["CPUExecutionProvider"]
    assert check["top1_agreement"] == 1.0 and check["passed"]
    assert check["max_abs_logit_diff"] < 1e-4
    assert result["onnx_top1"] == result["torch_top1"]


def test_verification_fails_clearly_for_a_mismatched_model(tiny_onnx, tiny_data):
    other = tiny_net(seed=1)  # same architecture, other weights: not what was exported
    with pytest.raises(ExportMismatchError, match=r"disagrees with PyTorch on \d+ of 24 .*"
                                                  r"export\.max_disagreement=0\.50%"):
        verify_export(other, tiny_onnx, tiny_data, 0.005, name="tiny")


def test_bundled_backbone_round_trip_and_source(fresh_backbone, tiny_data):
    model = replace_head(fresh_backbone, len(CLASSES)).eval()
    exported = export_classifier(model, CLASSES)
    assert exported.input_size == 64
    images = torch.nn.functional.interpolate(tiny_data.images[:6].float(), size=64)
    images = images.to(torch.uint8)
    cfg = model.backbone_cfg
    np.testing.assert_allclose(OnnxRunner(exported).logits(images.numpy()),
                               torch_logits(model, images, cfg.mean, cfg.std), atol=1e-4, rtol=0)
    source = exported.sidecar["source_model"]
    assert source["architecture"] == "efficientnet_lite0" and source["macs"] > 0
    assert source["artifact"] is None  # built in memory, never loaded from a stored artifact
    assert source["sha256"] == describe_source(model)["sha256"]
    assert source["sha256"] == hashlib.sha256(model_to_bytes(model)).hexdigest()

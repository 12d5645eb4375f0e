"""Shipping a trained classifier: ONNX export with a JSON sidecar, verification against PyTorch
with onnxruntime, int8 static quantisation, and onnxruntime inference (evaluation, prediction).

No Kedro here; the ``export`` and ``predict`` pipelines wire these functions.
"""

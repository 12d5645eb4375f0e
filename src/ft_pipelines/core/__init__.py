"""Plain PyTorch/NumPy/scikit-learn, no Kedro: one sub-package per concern (utils, data, models,
similarity, strategy, regularizers, training, pruning, evaluation); see docs/architecture.md."""

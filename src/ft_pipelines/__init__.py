"""ft_pipelines: declarative, versioned fine-tuning and pruning of pretrained CNNs."""

import os
import sys

__version__ = "0.1.0"

# No network at run time: MLflow starts a telemetry client when it is imported, which looks up
# its telemetry host on every run. Kedro imports this package (settings.py) before the tracking
# hook imports MLflow, and so do ``python -m ft_pipelines`` and predict. A user's own setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
if "mlflow.telemetry.client" in sys.modules:  # MLflow came first (a notebook): drop its client
    getattr(sys.modules["mlflow.telemetry.client"], "set_telemetry_client", lambda: None)()

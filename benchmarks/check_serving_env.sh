#!/usr/bin/env bash
# The registered MLflow model needs neither torch nor ft_pipelines: a fresh virtual environment
# (no system site-packages) with only the model's logged requirements (requirements.txt of
# models:/<name>@champion: mlflow, onnxruntime, numpy, pillow, pandas) loads it with
# mlflow.pyfunc.load_model and labels 12 images + 1 broken file; the classes must equal those
# of `kedro run --pipelines=predict` (predict.model: registry) on the same files.
#
#   benchmarks/check_serving_env.sh [PROJECT] [ENV]
#
# PROJECT: a Kedro project of this package where a default run registered a champion
# (default: here); ENV: its Kedro environment (default ci: `kedro run --env ci` first).
# VENV (default /tmp/ft_serving_venv) is created anew. Takes a few minutes (pip installs).
set -euo pipefail
PROJECT=$(cd "${1:-.}" && pwd)
ENV=${2:-ci}
VENV=${VENV:-/tmp/ft_serving_venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export MPLBACKEND=Agg KEDRO_DISABLE_TELEMETRY=true
cd "$PROJECT"

echo "== 1/4 12 test images of the run's images table + 1 broken file, into $WORK/images"
# the store kedro uses for ENV (kedro-mlflow's config, sqlite paths pinned to the project)
python - "$PROJECT" "$ENV" "$WORK" <<'EOF'
import sys
from pathlib import Path

import mlflow
import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

project, env, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
bootstrap_project(project)
with KedroSession.create(project_path=project, env=env) as session:
    context = session.load_context()
    images = context.catalog.load("images")
    name = context.params["mlflow"].registry.name  # validated parameters (pydantic)
    uri = context.mlflow.server.mlflow_tracking_uri
test = images[images["split"] == "test"].head(12)
folder = work / "images"
folder.mkdir()
for row in test.itertuples():
    (folder / f"{row.Index:05d}_{row.label_name}.png").write_bytes(row.image)
(folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
mlflow.set_tracking_uri(uri)
requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{name}@champion")
(work / "requirements.txt").write_text(Path(requirements).read_text())
(work / "model.env").write_text(f"NAME={name}\nURI={uri}\n")
print(f"model models:/{name}@champion in {uri}; requirements:",
      Path(requirements).read_text().split())
EOF
source "$WORK/model.env"

echo "== 2/4 kedro run --pipelines=predict (predict.model: registry) on them"
kedro run --env "$ENV" --pipelines=predict \
  --params="predict.path=$WORK/images,predict.model=registry" >"$WORK/predict.log" 2>&1 \
  || { tail -40 "$WORK/predict.log"; exit 1; }

echo "== 3/4 a fresh virtual environment ($VENV) with only the model's requirements"
rm -rf "$VENV"
python -m venv "$VENV"
"$VENV/bin/pip" install --quiet -r "$WORK/requirements.txt"
"$VENV/bin/pip" list 2>/dev/null | grep -iE "^(torch|ft.pipelines|kedro) " \
  && { echo "FAIL: torch, kedro or ft_pipelines is installed in $VENV" >&2; exit 1; }

echo "== 4/4 mlflow.pyfunc.load_model there, compared with the predict pipeline"
(cd "$WORK" && env -u PYTHONPATH "$VENV/bin/python" - "$URI" "$NAME" "$WORK" <<'EOF'
import importlib.util
import json
import sys
from pathlib import Path

import mlflow
import pandas as pd

uri, name, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
for module in ("torch", "ft_pipelines", "kedro"):
    assert importlib.util.find_spec(module) is None, f"{module} is importable here"
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
files = sorted((work / "images").iterdir())
answers = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
answers.insert(0, "file", [f.name for f in files])
answers[["file", "predicted_class", "error"]].to_json(work / "served.json", orient="records")
print(answers[["file", "predicted_class", "probability", "error"]].to_string())
EOF
)
python - "$PROJECT" "$ENV" "$WORK" <<'EOF'
import sys
from pathlib import Path

import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

project, env, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
bootstrap_project(project)
with KedroSession.create(project_path=project, env=env) as session:
    predicted = session.load_context().catalog.load("predictions")
served = pd.read_json(work / "served.json", orient="records", dtype={"predicted_class": str})
pipeline = dict(zip(predicted["file"], predicted["predicted_class"], strict=True))
both = {row.file: (row.predicted_class, pipeline.get(row.file)) for row in served.itertuples()}
errors = served[served["error"].notna()]["file"].tolist()
print(f"{len(served)} answers, errors for {errors}; model: {predicted['model'].iloc[0]}")
assert len(served) == 13 and errors == ["broken.png"], (len(served), errors)
differ = {f: pair for f, pair in both.items() if f not in errors and pair[0] != pair[1]}
assert not differ, f"served vs predict pipeline differ: {differ}"
print("PASS: the fresh environment (no torch, no ft_pipelines) labels the 12 images as "
      "`kedro run --pipelines=predict` does, and reports the broken file")
EOF

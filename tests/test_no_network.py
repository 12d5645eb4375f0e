"""The project makes no network call of its own at run time: MLflow's telemetry (a client started
when mlflow is imported, which looks up its host) is off in a Kedro session and in predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SLOW

ROOT = Path(__file__).resolve().parents[1]
# MLflow turns its telemetry off by itself under pytest and in CI: a real user's shell has none
CI_SIGNALS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI",
              "JENKINS_URL", "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "BUILDKITE",
              "CODEBUILD_BUILD_ARN", "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION")

SESSION = """
import json, os, sys
from kedro.framework.startup import bootstrap_project
from kedro.framework.session import KedroSession

bootstrap_project(sys.argv[1])
with KedroSession.create(project_path=sys.argv[1]):  # imports settings.py and its hooks
    from mlflow.telemetry.client import get_telemetry_client
    from mlflow.telemetry.utils import is_telemetry_disabled

    print(json.dumps({"env": [os.environ.get("MLFLOW_DISABLE_TELEMETRY"),
                              os.environ.get("DO_NOT_TRACK")],
                      "disabled": is_telemetry_disabled(),
                      "client": repr(get_telemetry_client())}))
"""


def _user_shell(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (*CI_SIGNALS, "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


def _run(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@SLOW  # a new interpreter imports Kedro, torch and MLflow: pytest -m slow (.ci/run)
def test_a_kedro_session_has_mlflow_telemetry_off():
    seen = _run(SESSION, _user_shell())
    assert seen == {"env": ["true", "true"], "disabled": True, "client": "None"}


def test_importing_the_package_after_mlflow_still_turns_telemetry_off():
    code = ("import json, mlflow, ft_pipelines\n"
            "from mlflow.telemetry.client import get_telemetry_client\n"
            "print(json.dumps({'client': repr(get_telemetry_client())}))\n")
    assert _run(code, _user_shell()) == {"client": "None"}


def test_a_users_own_telemetry_setting_is_kept():
    code = "import json, os, ft_pipelines\nprint(json.dumps(os.environ['DO_NOT_TRACK']))"
    done = subprocess.run([sys.executable, "-c", code], check=False,
                          env=_user_shell(DO_NOT_TRACK="false"), capture_output=True, text=True,
                          timeout=60)
    assert json.loads(done.stdout) == "false"

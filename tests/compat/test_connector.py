"""The SageMaker-SDK connector: unchanged SDK code, pointed at Shipyard by `shipyard sagemaker-env`
and `import shipyard.connector`, with no explicit clients, no call leaving the machine, and none of
the SDK's 5-30 s waits."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipyard.server import ServerProcess


def _sagemaker_env(server: ServerProcess, data_dir: Path) -> dict[str, str]:
    """What `eval "$(shipyard sagemaker-env)"` sets in a shell."""
    printed = subprocess.run(
        [sys.executable, "-m", "shipyard", "sagemaker-env", "--url", server.url, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    exports = {}
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = shlex.split(value)[0]
    return exports


def test_an_unchanged_sdk_script_runs_against_shipyard(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exports = _sagemaker_env(server, tmp_path)
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    assert "TelemetryOptOut: true" in Path(exports["SAGEMAKER_USER_CONFIG_OVERRIDE"]).read_text()

    asked: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (asked.append(s), real_sleep(s)))
    import sagemaker
    from sagemaker.sklearn import SKLearn

    import shipyard.connector

    session = sagemaker.Session()  # nothing passed: the environment points it at Shipyard
    role = sagemaker.get_execution_role(sagemaker_session=session)
    assert session.default_bucket() == "shipyard"
    (tmp_path / "train.py").write_text("import time\ntime.sleep(2)\nprint('trained for 2 s')\n")
    estimator = SKLearn(
        entry_point=str(tmp_path / "train.py"),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=role,
        sagemaker_session=session,
    )
    estimator.fit(logs=True)
    assert "trained for 2 s" in capsys.readouterr().out
    assert estimator.latest_training_job.describe()["TrainingJobStatus"] == "Completed"
    assert asked and max(asked) <= shipyard.connector.MAX_POLL_SECONDS  # the SDK's waits, capped


NOTEBOOK = '''
"""A teaching notebook's cells, as written for SageMaker: fit, tune, deploy, predict, clean up."""
import sys
import time

seen = []  # every address this process connects to or looks up
sys.addaudithook(lambda event, args: seen.append(args[1]) if event == "socket.connect" else
                 seen.append(args[0]) if event == "socket.getaddrinfo" else None)

import shipyard.connector  # the one line added for Shipyard
import sagemaker
from sagemaker.sklearn import SKLearn
from sagemaker.tuner import HyperparameterTuner, IntegerParameter

session = sagemaker.Session()
role = sagemaker.get_execution_role()
bucket = session.default_bucket()
train = session.upload_data("train.csv", bucket=bucket, key_prefix="titanic")

estimator = SKLearn(entry_point="train.py", framework_version="1.2-1", instance_type="ml.m5.large",
                    instance_count=1, role=role, hyperparameters={"max-depth": 3})
started = time.monotonic()
estimator.fit({"train": train})
print(f"FIT {time.monotonic() - started:.2f}")

tuner = HyperparameterTuner(estimator, "accuracy", {"max-depth": IntegerParameter(2, 6)},
                            metric_definitions=[{"Name": "accuracy", "Regex": "train_accuracy=([0-9.]+)"}],
                            max_jobs=2, max_parallel_jobs=2, base_tuning_job_name="nb")
tuner.fit({"train": train})
best = tuner.best_estimator()
predictor = best.deploy(initial_instance_count=1, instance_type="ml.m5.large")
print("PREDICTED", predictor.predict([[3, 0, 22.0, 1, 0, 7.25], [1, 1, 38.0, 1, 0, 71.28]]))
predictor.delete_model()
predictor.delete_endpoint()
outside = sorted({str(a) for a in seen if not str(a).startswith(("127.", "localhost", "('127.", "::1"))})
print("OUTSIDE", outside)
'''


TRAIN = """
import argparse, os, time
import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


if __name__ == "__main__":
    from sklearn.ensemble import RandomForestClassifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--max-depth", type=int, default=3)
    args, _ = parser.parse_known_args()
    rows = np.genfromtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",", skip_header=1)
    y, x = rows[:, 0], np.nan_to_num(rows[:, 1:])
    model = RandomForestClassifier(n_estimators=20, max_depth=args.max_depth, random_state=0).fit(x, y)
    time.sleep(2)  # a 2 s script
    print(f"train_accuracy={model.score(x, y):.4f}")
    joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def test_a_notebook_fits_tunes_deploys_and_predicts_without_leaving_the_machine(
    server: ServerProcess, tmp_path: Path
) -> None:
    import os

    from tests._titanic import numeric_csv

    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "train.csv").write_bytes(numeric_csv("train"))
    (tmp_path / "notebook.py").write_text(NOTEBOOK)
    env = {**os.environ, **_sagemaker_env(server, tmp_path)}
    ran = subprocess.run(
        [sys.executable, "notebook.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    import re

    # How long the fit took is a benchmark's to say (a loaded machine makes any bound flaky); the
    # connector's shorter waits between the SDK's looks at a job are tested on their own.
    assert re.search(r"FIT ([0-9.]+)", ran.stdout), ran.stdout[-2000:]
    assert re.search(r"PREDICTED \[[01]\. [01]\.\]", ran.stdout), ran.stdout[
        -2000:
    ]  # the SDK's dots precede it
    assert "OUTSIDE []" in ran.stdout, ran.stdout[-2000:]

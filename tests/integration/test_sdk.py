"""The Python SDK (``import shipyard``): training without AWS notions, against a real server."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import shipyard
from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

SCRIPT = """
import argparse, os, glob
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from tabulate import tabulate  # from requirements=
p = argparse.ArgumentParser()
p.add_argument("-c", type=float)  # one-letter hyperparameters come as -c, as in SageMaker
a, _ = p.parse_known_args()
rows = np.genfromtxt(glob.glob(os.environ["SM_CHANNEL_TRAINING"] + "/*.csv")[0], delimiter=",", skip_header=1)
y, x = rows[:, 0], np.nan_to_num(rows[:, 1:])
for step in range(3):
    model = LogisticRegression(C=a.c, max_iter=100 * (step + 1)).fit(x, y)
    print(f"accuracy={model.score(x, y):.4f}", flush=True)
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def test_estimator_fit_with_a_local_file_gives_a_job_with_metrics_model_and_cost(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text(SCRIPT)
    data = tmp_path / "titanic.csv"
    data.write_bytes(numeric_csv("train"))
    connection = shipyard.connect(server.url)
    estimator = shipyard.Estimator(
        "train.py",
        source_dir=tmp_path / "code",
        framework="sklearn",
        hyperparameters={"c": 0.5},
        metrics={"accuracy": r"accuracy=([0-9.]+)"},
        requirements=["tabulate==0.9.0"],
        tags={"Project": "titanic"},
        connection=connection,
    )
    job = estimator.fit(data)
    assert job.status == "Completed", job.failure_reason
    assert capsys.readouterr().out.count("accuracy=") == 3  # the log, printed while waiting
    metrics = job.metrics()
    accuracy = metrics[metrics["metric"] == "accuracy"] if hasattr(metrics, "columns") else None
    assert accuracy is not None and list(accuracy["step"]) == [0, 1, 2]
    assert 0.7 < job.final_metrics["accuracy"] < 1.0
    model = job.download_model(tmp_path / "model")
    assert (model / "model.joblib").is_file()
    assert job.cost is not None and job.cost > 0
    assert "Completed" in repr(job) and "accuracy" in job._repr_html_()

    s3 = boto_client("s3", server.url)
    before = s3.list_objects_v2(Bucket="shipyard", Prefix="data/")["KeyCount"]
    again = estimator.fit({"training": data}, logs=False)  # the same file: nothing uploaded again
    assert again.status == "Completed" and again.name != job.name
    assert s3.list_objects_v2(Bucket="shipyard", Prefix="data/")["KeyCount"] == before
    sm = boto_client("sagemaker", server.url)
    tags = sm.list_tags(ResourceArn=sm.describe_training_job(TrainingJobName=job.name)["TrainingJobArn"])[
        "Tags"
    ]
    assert {"Key": "Project", "Value": "titanic"} in tags


def test_bad_estimator_arguments_name_the_field(tmp_path: Path) -> None:
    from shipyard.errors import ValidationError

    with pytest.raises(ValidationError, match="entry_point"):
        shipyard.Estimator(tmp_path / "missing.py")
    (tmp_path / "train.py").write_text("")
    with pytest.raises(Exception, match="framework 'cobol'"):
        shipyard.Estimator(tmp_path / "train.py", framework="cobol")


def test_the_embedded_default_starts_once_and_outlives_its_caller(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = shipyard.connect(data_dir=home)
    announced = json.loads((home / "server.json").read_text())
    try:
        assert announced["url"] == first.url
        assert shipyard.connect(data_dir=home).url == first.url  # reused, not started again
        assert first.native("health")["status"] == "ok"
    finally:
        os.kill(announced["pid"], signal.SIGTERM)

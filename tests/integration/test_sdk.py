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
    out = capsys.readouterr().out
    assert out.count("accuracy=") == 3  # the log, printed while waiting
    # the worst case, said before the launch: an ml.m5.large for all of max_run (a day)
    assert (
        f"Training job {job.name}: $0.115 an hour (1 x ml.m5.large); on SageMaker $0.115 an hour; "
        "with no max_run it may run 24 h" in out
    )
    assert estimator.estimate()["usd"] == "2.760000"
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
    code = [j.describe()["HyperParameters"]["sagemaker_submit_directory"] for j in (job, again)]
    assert code[0] == code[1]  # the same code, uploaded once
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


TUNED = """
import argparse, os, glob
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
if __name__ == "__main__":  # the model server imports this script too, as SageMaker's does
    p = argparse.ArgumentParser()
    p.add_argument("-C", type=float)  # one letter: -C, as SageMaker passes it
    p.add_argument("--solver")
    a, _ = p.parse_known_args()
    rows = np.genfromtxt(glob.glob(os.environ["SM_CHANNEL_TRAIN"] + "/*.csv")[0], delimiter=",", skip_header=1)
    y, x = rows[:, 0], np.nan_to_num(rows[:, 1:])
    model = LogisticRegression(C=a.C, solver=a.solver, max_iter=500).fit(x, y)
    print(f"accuracy={model.score(x, y):.4f}")
    joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def test_tuner_fit_gives_a_leaderboard_whose_best_job_deploys_and_predicts(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    import pandas as pd

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "tuned.py").write_text(TUNED)
    data = tmp_path / "train.csv"
    data.write_bytes(numeric_csv("train"))
    connection = shipyard.connect(server.url)
    estimator = shipyard.Estimator(
        "tuned.py",
        source_dir=tmp_path / "code",
        hyperparameters={"solver": "lbfgs"},
        metrics={"accuracy": r"accuracy=([0-9.]+)"},
        tags={"Project": "sdk-tuning"},
        connection=connection,
    )
    tuner = shipyard.Tuner(
        estimator,
        objective="accuracy",
        params={"C": shipyard.loguniform(0.001, 10.0), "solver": shipyard.choice("lbfgs", "liblinear")},
        max_trials=4,
        parallel=2,
        seed=7,
    )
    result = tuner.fit({"train": data})
    assert result.status == "Completed", [
        shipyard.TrainingJob(j, connection).failure_reason for j in result.leaderboard()["training_job"]
    ]
    out = capsys.readouterr().out
    assert f"Tuning job {result.name}: Completed" in out and "4/4 trials done" in out
    assert f"Tuning job {result.name}: at most $11.04 (4 trials x 1 x ml.m5.large x 24 h)" in out

    board = result.leaderboard()
    assert isinstance(board, pd.DataFrame) and len(board) == 4
    assert list(board["objective"]) == sorted(board["objective"], reverse=True)  # best first
    assert (
        set(board["solver"]) <= {"lbfgs", "liblinear"} and board["C"].astype(float).between(0.001, 10).all()
    )
    best = result.best_job
    assert best is not None and best.name == board["training_job"].iloc[0]
    assert result.best_value == pytest.approx(board["objective"].iloc[0])
    assert result.best_params["C"] == board["C"].iloc[0]
    assert result.cost == pytest.approx(board["cost_usd"].sum())

    endpoint = best.deploy(name=f"sdk-{best.name[-4:]}")
    try:
        frame = pd.read_csv(data).drop(columns=["Survived"]).fillna(0).head(5)
        by_frame = endpoint.predict(frame)  # CSV out, JSON back
        by_array = endpoint.predict(frame.to_numpy())  # NPY out
        by_list = endpoint.predict(frame.to_numpy().tolist())  # JSON out
        assert isinstance(by_array, list) and len(by_array) == 5
        assert by_frame == by_array == by_list and set(by_list) <= {0.0, 1.0}
        as_csv = endpoint.predict(frame, accept="text/csv")
        assert isinstance(as_csv, np.ndarray) and as_csv.tolist() == by_list
        assert endpoint.cost >= 0 and "InService" in repr(endpoint)
    finally:
        endpoint.delete()
    sm = boto_client("sagemaker", server.url)
    assert endpoint.name not in {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert endpoint.name not in {m["ModelName"] for m in sm.list_models()["Models"]}


def test_processor_and_transformer_run_on_local_files(server: ServerProcess, tmp_path: Path) -> None:
    connection = shipyard.connect(server.url)
    (tmp_path / "prepare.py").write_text(
        "import sys, pathlib\n"
        "rows = pathlib.Path('/opt/ml/processing/input/raw/train.csv').read_text().splitlines()[1:]\n"
        "cut = int(len(rows) * float(sys.argv[2]))\n"
        "out = pathlib.Path('/opt/ml/processing/output')\n"
        "(out / 'train' / 'train.csv').write_text('\\n'.join(rows[:cut]) + '\\n')\n"
        "(out / 'test' / 'test.csv').write_text('\\n'.join(r.split(',', 1)[1] for r in rows[cut:]) + '\\n')\n"
        "print(f'kept {cut} of {len(rows)}')\n"
    )
    data = tmp_path / "train.csv"
    data.write_bytes(numeric_csv("train"))
    job = shipyard.Processor(tmp_path / "prepare.py", connection=connection).run(
        inputs={"raw": data}, outputs=["train", "test"], arguments=["--split", "0.8"], logs=False
    )
    assert job.status == "Completed", job.failure_reason
    assert any(line.startswith("kept ") for line in job.log_lines())
    test_rows = (job.download("test", tmp_path / "prepared") / "test.csv").read_text().splitlines()
    assert len(test_rows) > 100 and all(len(r.split(",")) == 6 for r in test_rows)
    with pytest.raises(shipyard.sdk._hosting.ValidationError, match="no output 'valid'"):
        job.download("valid", tmp_path / "x")

    (tmp_path / "fit.py").write_text(
        "import os, glob, joblib, numpy as np\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "if __name__ == '__main__':\n"
        "    rows = np.loadtxt(glob.glob(os.environ['SM_CHANNEL_TRAINING'] + '/*.csv')[0], delimiter=',')\n"
        "    model = DecisionTreeClassifier(max_depth=3).fit(rows[:, 1:], rows[:, 0])\n"
        "    joblib.dump(model, os.path.join(os.environ['SM_MODEL_DIR'], 'model.joblib'))\n"
    )
    trained = shipyard.Estimator(tmp_path / "fit.py", connection=connection).fit(
        job.outputs["train"], logs=False
    )
    assert trained.status == "Completed", trained.failure_reason
    scored = trained.model().transformer().transform(tmp_path / "prepared" / "test.csv", logs=False)
    assert scored.status == "Completed", scored.failure_reason
    assert scored.cost is not None
    results = (scored.download(tmp_path / "scores") / "test.csv.out").read_text().split()
    assert len(results) == len(test_rows) and set(results) <= {"0.0", "1.0"}


def test_search_ranges_and_tuner_arguments_are_checked(tmp_path: Path) -> None:
    from shipyard.errors import ValidationError

    (tmp_path / "train.py").write_text("")
    estimator = shipyard.Estimator(tmp_path / "train.py", metrics={"auc": "auc=(.*)"})
    with pytest.raises(ValidationError, match="low 5 must be below its high 1"):
        shipyard.integer(5, 1)
    with pytest.raises(ValidationError, match="log-scaled range must start above 0"):
        shipyard.loguniform(0, 1)
    with pytest.raises(ValidationError, match="objective 'accuracy' is not one of the estimator's metrics"):
        shipyard.Tuner(estimator, objective="accuracy", params={"x": shipyard.uniform(0, 1)})
    with pytest.raises(ValidationError, match=r"params\['x'\] is \[1, 2\], not a range"):
        shipyard.Tuner(estimator, objective="auc", params={"x": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="parallel 3 must be between 1 and max_trials"):
        shipyard.Tuner(
            estimator, objective="auc", params={"x": shipyard.uniform(0, 1)}, max_trials=2, parallel=3
        )


def test_the_package_exports_the_whole_sdk_lazily() -> None:
    import shipyard.sdk

    assert sorted(shipyard._SDK) == sorted(shipyard.sdk.__all__)
    assert all(getattr(shipyard, name) is getattr(shipyard.sdk, name) for name in shipyard.sdk.__all__)


def test_the_config_file_names_the_server(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.errors import ConfigurationError
    from shipyard.sdk import _connection

    monkeypatch.setattr(_connection, "_default", None)
    monkeypatch.delenv("SHIPYARD_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_CONFIG", raising=False)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text(f'[server]\nport = 9999\n\n[client]\nurl = "{server.url}"\n')
    assert shipyard.connect().url == server.url
    assert not (tmp_path / "server.json").exists()  # no embedded server was started
    monkeypatch.setattr(_connection, "_default", None)
    (tmp_path / "config.toml").write_text("[client]\nurl = 8300\n")
    with pytest.raises(ConfigurationError, match=r"\[client\] url = 8300 is not a known client setting"):
        shipyard.connect()


def test_the_embedded_default_starts_on_shipyard_port_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shipyard.errors import ConfigurationError
    from shipyard.server import free_port

    home = tmp_path / "home"
    port = free_port()
    monkeypatch.setenv("SHIPYARD_PORT", str(port))
    connection = shipyard.connect(data_dir=home)
    announced = json.loads((home / "server.json").read_text())
    try:
        assert connection.url == f"http://127.0.0.1:{port}"
        started = capsys.readouterr().err
        assert f"Started a Shipyard server at {connection.url}" in started and str(home) in started
        # a port another program holds is named, before anything is started on a second data dir
        with pytest.raises(ConfigurationError, match=f"Port {port} .* is in use"):
            shipyard.connect(data_dir=tmp_path / "other")
        assert not (tmp_path / "other" / "server.json").exists()
    finally:
        os.kill(announced["pid"], signal.SIGTERM)


def test_a_tuning_job_says_when_the_machine_runs_fewer_trials_at_once(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.py").write_text("print('score=1')\n")
    estimator = shipyard.Estimator(
        tmp_path / "train.py",
        instance_type="ml.m5.24xlarge",  # 96 vCPUs: scaled down to the whole machine, one at a time
        metrics={"score": r"score=([0-9.]+)"},
        connection=shipyard.connect(server.url),
    )
    tuner = shipyard.Tuner(
        estimator, objective="score", params={"x": shipyard.uniform(0, 1)}, max_trials=2, parallel=2
    )
    result = tuner.fit()
    assert result.status == "Completed"
    said = [line for line in capsys.readouterr().out.splitlines() if "parallel trials run at once" in line]
    assert said and said[0].startswith(f"Tuning job {result.name}: 1 of the 2 parallel trials run at once")
    assert "1 x ml.m5.24xlarge" in said[0] and "cpu_overcommit" in said[0]
    native = shipyard.connect(server.url).native(f"tuning-jobs/{result.name}")
    assert native["parallel_note"] == said[0].split(": ", 1)[1]

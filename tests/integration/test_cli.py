"""The `shipyard` command as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.store._migrate import head_revision


def _shipyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_db_upgrade_on_sqlite_then_up_to_date(data_dir: Path) -> None:
    first = _shipyard("db", "upgrade", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to revision {head_revision()}" in first.stdout
    again = _shipyard("db", "upgrade", "--data-dir", str(data_dir))
    assert f"up to date (revision {head_revision()})" in again.stdout


def test_db_upgrade_on_postgres(data_dir: Path, postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    result = _shipyard("db", "upgrade", "--data-dir", str(data_dir), "--database-url", postgres_url)
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout


def test_bad_input_is_one_readable_line(data_dir: Path) -> None:
    result = _shipyard("server", "--data-dir", str(data_dir), env={"SHIPYARD_PORT": "eighty"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: environment variable SHIPYARD_PORT: port must be an integer, got 'eighty'"
    )
    result = _shipyard("db", "upgrade", "--database-url", "nonsense://", "--data-dir", str(data_dir))
    assert result.returncode == 1 and "nonsense://" in result.stderr and "Traceback" not in result.stderr


def test_demo_trains_tunes_deploys_and_leaves_the_server_running(tmp_path: Path) -> None:
    import re

    env = {"SHIPYARD_HOME": str(tmp_path / "home")}
    result = _shipyard("demo", env={**env, "SHIPYARD_URL": ""})
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "Quickstart complete" in out and "8/8 trials done" in out
        trained = float(re.search(r"held-out accuracy ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
        scored = float(re.search(r"accuracy ([0-9.]+) on 179 passengers", out).group(1))  # type: ignore[union-attr]
        assert trained > 0.75 and scored > 0.75  # boosted trees on Titanic, held out
        assert out.count("survival") == 3 and "endpoint titanic keeps serving" in out
        assert re.search(r"total\s+│\s+│\s+0\.\d+", out)  # the cost table's total
        # The history stays: the server keeps running for `shipyard jobs`, the API and the console.
        listed = _shipyard("jobs", "list", env=env)
        assert listed.returncode == 0 and listed.stdout.count("Completed") >= 9
        assert "InService" in _shipyard("endpoints", "list", env=env).stdout  # for the console
    finally:
        stopped = _shipyard("stop", env=env)
    assert stopped.returncode == 0 and "Stopped the server" in stopped.stdout
    assert not (tmp_path / "home" / "server.json").exists()


def test_jobs_commands_list_describe_logs_and_metrics(server: object, tmp_path: Path) -> None:
    import json

    import shipyard

    url = server.url  # type: ignore[attr-defined]
    (tmp_path / "train.py").write_text("for i in range(3):\n    print(f'loss={1 / (i + 1):.3f}')\n")
    job = shipyard.Estimator(
        tmp_path / "train.py",
        metrics={"loss": r"loss=([0-9.]+)"},
        hyperparameters={"epochs": 3},
        connection=shipyard.connect(url),
    ).fit(logs=False)
    env = {"SHIPYARD_URL": url}
    listed = _shipyard("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert job.name in [j["TrainingJobName"] for j in json.loads(listed.stdout)]
    narrow = _shipyard("jobs", "list", env={**env, "COLUMNS": "80"})  # an 80-column terminal
    assert job.name in narrow.stdout and all(len(line) <= 80 for line in narrow.stdout.splitlines())
    described = _shipyard("jobs", "describe", job.name, env=env)
    assert "Completed" in described.stdout and "loss" in described.stdout
    # when it ran and for how long, what it cost, the hyperparameters it was given (not the SDK's own)
    assert re.search(r"started +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", described.stdout), described.stdout
    assert re.search(r"ended +.* \(\d+\.\d s\)", described.stdout), described.stdout
    assert re.search(r"cost +\$0\.\d+ \(on SageMaker \$0\.\d+\)", described.stdout), described.stdout
    assert re.search(r"epochs +3", described.stdout) and "sagemaker_program" not in described.stdout
    logs = _shipyard("jobs", "logs", job.name, env=env)
    assert [line for line in logs.stdout.splitlines() if line.startswith("loss=")] == [
        "loss=1.000",
        "loss=0.500",
        "loss=0.333",
    ]
    metrics = json.loads(_shipyard("jobs", "metrics", job.name, "--json", env=env).stdout)
    assert [p["value"] for p in metrics["loss"]] == [1.0, 0.5, 0.333]
    missing = _shipyard("jobs", "describe", "no-such-job", env=env)
    assert missing.returncode == 1 and "no-such-job" in missing.stderr and "Traceback" not in missing.stderr
    assert "An error occurred" not in missing.stderr  # the server's words, not botocore's frame


TRAIN = """
import argparse, os
import joblib
from sklearn.linear_model import LogisticRegression
if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-c", type=float, default=1.0)  # one letter: -c, as SageMaker passes it
    p.add_argument("--fail", default="no")
    a, _ = p.parse_known_args()
    if a.fail == "yes":
        raise SystemExit("asked to fail")
    x = [[0.0], [1.0], [2.0], [3.0]]
    model = LogisticRegression(C=a.c).fit(x, [0, 0, 1, 1])
    print(f"score={model.score(x, [0, 0, 1, 1]) - 0.01 * a.c:.4f}")
    joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def test_train_tune_and_endpoints_from_the_terminal(server: object, tmp_path: Path) -> None:
    import json

    url = server.url  # type: ignore[attr-defined]
    env = {"SHIPYARD_URL": url}
    script = tmp_path / "fit.py"
    script.write_text(TRAIN)
    trained = _shipyard(
        "train", str(script), "--hp", "c=0.5", "--metric", "score=score=([0-9.]+)", "--json", env=env
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["status"] == "Completed" and summary["metrics"]["score"] == pytest.approx(0.995)
    assert summary["cost_usd"] > 0

    failed = _shipyard("train", str(script), "--hp", "fail=yes", env=env)
    assert failed.returncode == 1 and "asked to fail" in failed.stdout  # the log, then how it ended

    spec = tmp_path / "tune.yaml"
    spec.write_text(
        "script: fit.py\n"
        "metrics: {score: 'score=([0-9.]+)'}\n"
        "objective: score\n"
        "params:\n  c: {uniform: [0.1, 2.0]}\n"
        "max_trials: 2\nparallel: 2\nseed: 1\n"
    )
    tuned = _shipyard("tune", str(spec), "--json", env=env)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    board = json.loads(tuned.stdout)
    assert board["status"] == "Completed" and len(board["trials"]) == 2
    assert board["trials"][0]["objective"] >= board["trials"][1]["objective"]

    spec.write_text("script: fit.py\nobjective: score\nparams: {c: {normal: [0, 1]}}\n")
    bad = _shipyard("tune", str(spec), env=env)
    assert bad.returncode == 1 and "params.c" in bad.stderr and "Traceback" not in bad.stderr
    spec.write_text("script: fit.py\nobjective: score\nparams: {c: {uniform: [0, 1]}}\ntrials: 3\n")
    bad = _shipyard("tune", str(spec), env=env)
    assert "Unknown setting 'trials'" in bad.stderr

    import shipyard

    endpoint = shipyard.TrainingJob(summary["name"], shipyard.connect(url)).deploy(
        name=f"cli-{summary['name'][-4:]}"
    )
    listed = _shipyard("endpoints", "list", env=env)
    assert endpoint.name in listed.stdout and "InService" in listed.stdout
    answer = _shipyard("endpoints", "invoke", endpoint.name, "--data", "[[0.0], [3.0]]", env=env)
    assert answer.returncode == 0 and json.loads(answer.stdout) == [0, 1]
    deleted = _shipyard("endpoints", "delete", endpoint.name, env=env)
    assert deleted.returncode == 0, deleted.stderr
    again = _shipyard("endpoints", "invoke", endpoint.name, "--data", "[[0.0]]", env=env)
    assert again.returncode == 1 and endpoint.name in again.stderr and "Traceback" not in again.stderr


def test_instance_types_shows_the_catalog_with_prices(server: object) -> None:
    import json

    env = {"SHIPYARD_URL": server.url}  # type: ignore[attr-defined]
    table = _shipyard("instance-types", "--kind", "hosting", env=env)
    assert table.returncode == 0 and "ml.m5.large" in table.stdout and "hosting $/hour" in table.stdout
    gpus = json.loads(_shipyard("instance-types", "--gpu", "--json", env=env).stdout)
    assert gpus and all(t["gpu_count"] > 0 for t in gpus)
    wrong = _shipyard("instance-types", "--kind", "mining", env=env)
    assert wrong.returncode == 1 and "'mining'" in wrong.stderr


def test_pipelines_from_the_terminal_start_watch_and_show_steps(server: object) -> None:
    import json as json_

    from shipyard.server import ServerProcess
    from tests._support import boto_client

    assert isinstance(server, ServerProcess)
    sm = boto_client("sagemaker", server.url)
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Limit", "Type": "Float", "DefaultValue": 1.0}],
        "Steps": [
            {
                "Name": "check",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {"Type": "LessThan", "LeftValue": 0.5, "RightValue": {"Get": "Parameters.Limit"}}
                    ],
                    "ElseSteps": [
                        {"Name": "stop-here", "Type": "Fail", "Arguments": {"ErrorMessage": "over the limit"}}
                    ],
                },
            }
        ],
    }
    sm.create_pipeline(
        PipelineName="cli-pipeline",
        PipelineDefinition=json_.dumps(definition),
        RoleArn="arn:aws:iam::000000000000:role/R",
    )
    url = ("--url", server.url)
    passed = _shipyard("pipelines", "start", "cli-pipeline", *url)
    assert passed.returncode == 0, passed.stderr
    assert "step check: Succeeded (True)" in passed.stdout
    failed = _shipyard("pipelines", "start", "cli-pipeline", "--param", "Limit=0.1", *url)
    assert failed.returncode == 1
    assert "step stop-here: Failed: over the limit" in failed.stdout
    steps = json_.loads(_shipyard("pipelines", "steps", "cli-pipeline", "--json", *url).stdout)
    assert [(s["name"], s["status"]) for s in steps] == [("check", "Succeeded"), ("stop-here", "Failed")]
    runs = _shipyard("pipelines", "runs", "cli-pipeline", *url)
    assert runs.stdout.count("cli-pipeline/") == 2 and "Failed" in runs.stdout and "Succeeded" in runs.stdout
    assert "cli-pipeline" in _shipyard("pipelines", "list", *url).stdout
    bad = _shipyard("pipelines", "start", "cli-pipeline", "--param", "Limit", *url)
    assert bad.returncode != 0 and "NAME=VALUE" in bad.stderr

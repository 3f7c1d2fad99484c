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


def test_an_unchanged_sdk_script_runs_against_shipyard(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "shipyard", "sagemaker-env", "--url", server.url, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in printed.splitlines():  # what `eval "$(shipyard sagemaker-env)"` does in a shell
        name, _, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(name, shlex.split(value)[0])
    assert (
        "TelemetryOptOut: true"
        in Path(shlex.split(printed.split("SAGEMAKER_USER_CONFIG_OVERRIDE=")[1])[0]).read_text()
    )

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
